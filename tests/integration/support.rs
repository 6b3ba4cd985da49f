//! `TestServer`: the real binary on port 0 in a temp dir, stopped on drop.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use offer_bandit::proto::{
    self, FeatureValue, SelectOfferRequest, campaign_admin_client::CampaignAdminClient,
    feature_value::Kind, offer_service_client::OfferServiceClient,
};
use tonic::transport::Channel;

pub type Offers = OfferServiceClient<Channel>;
pub type Admin = CampaignAdminClient<Channel>;

/// A running server.
pub struct TestServer {
    child: Option<Child>,
    pub addr: String,
    /// The Prometheus endpoint (host:port).
    pub metrics_addr: String,
    /// The JSON/HTTP gateway (host:port), when started with `--http-listen`.
    pub gateway_addr: String,
    pub data_dir: PathBuf,
    config: Option<PathBuf>,
    extra: Vec<String>,
    /// Environment variables the server is started with.
    env: Vec<(String, String)>,
    _tmp: Option<tempfile::TempDir>,
}

impl TestServer {
    /// Starts a server with this campaign config (TOML) or the demo when `None`.
    pub fn start(config_toml: Option<&str>, extra: &[&str]) -> TestServer {
        let tmp = tempfile::tempdir().expect("temp dir");
        let data_dir = tmp.path().join("data");
        let config = config_toml.map(|t| {
            let p = tmp.path().join("campaigns.toml");
            std::fs::write(&p, t).expect("write config");
            p
        });
        let extra = extra.iter().map(|s| s.to_string()).collect();
        let mut s = TestServer {
            child: None,
            addr: String::new(),
            metrics_addr: String::new(),
            gateway_addr: String::new(),
            data_dir,
            config,
            extra,
            env: Vec::new(),
            _tmp: Some(tmp),
        };
        s.spawn();
        s
    }

    /// Starts a server on an existing data directory (not removed on drop).
    pub fn start_on(config_toml: Option<&str>, data_dir: &Path, extra: &[&str]) -> TestServer {
        Self::start_on_env(config_toml, data_dir, extra, &[])
    }

    /// [`TestServer::start_on`] with environment variables set for the server.
    #[allow(dead_code)]
    pub fn start_on_env(
        config_toml: Option<&str>,
        data_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> TestServer {
        let tmp = tempfile::tempdir().expect("temp dir");
        let config = config_toml.map(|t| {
            let p = tmp.path().join("campaigns.toml");
            std::fs::write(&p, t).expect("write config");
            p
        });
        let mut s = TestServer {
            child: None,
            addr: String::new(),
            metrics_addr: String::new(),
            gateway_addr: String::new(),
            data_dir: data_dir.to_path_buf(),
            config,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            _tmp: Some(tmp),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_offer-bandit"));
        cmd.arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--metrics-listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&self.data_dir);
        if let Some(c) = &self.config {
            cmd.arg("--config").arg(c);
        }
        // The server's settings are the test's own: none comes from a
        // variable the shell running the tests exported.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("OFFER_BANDIT_") {
                cmd.env_remove(k);
            }
        }
        cmd.args(&self.extra)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn offer-bandit");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let (mut metrics, mut gateway) = (String::new(), String::new());
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(m) = line.strip_prefix("offer-bandit metrics on ") {
                    metrics = m.to_owned();
                }
                if let Some(g) = line.strip_prefix("offer-bandit gateway on ") {
                    gateway = g.to_owned();
                }
                if let Some(addr) = line.strip_prefix("offer-bandit listening on ") {
                    let _ = tx.send((addr.to_owned(), metrics.clone(), gateway.clone()));
                }
            }
        });
        (self.addr, self.metrics_addr, self.gateway_addr) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("server did not report its address in 30s");
        self.child = Some(child);
    }

    /// The gRPC endpoint.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .expect("url")
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(20))
            .connect()
            .await
            .expect("connect")
    }

    pub async fn offers(&self) -> Offers {
        OfferServiceClient::new(self.channel().await)
    }

    pub async fn admin(&self) -> Admin {
        CampaignAdminClient::new(self.channel().await)
    }

    /// GetCampaignStats of `campaign`, on a new connection.
    #[allow(dead_code)]
    pub async fn stats(&self, campaign: &str) -> proto::GetCampaignStatsResponse {
        campaign_stats(&mut self.admin().await, campaign).await
    }

    /// Forces a checkpoint of the learned models now: a backup takes one
    /// first (the backup's bytes are dropped). Tests that kill the server
    /// "between checkpoints" start it with a long `--checkpoint-interval`
    /// and call this, so where the last checkpoint falls does not depend
    /// on how fast the machine is.
    pub async fn checkpoint(&self) {
        let mut stream = self
            .admin()
            .await
            .backup(proto::BackupRequest {})
            .await
            .expect("backup")
            .into_inner();
        while stream.message().await.expect("backup chunk").is_some() {}
    }

    /// SIGTERM, wait for a clean exit.
    pub fn stop(&mut self) {
        self.sigterm();
        if let Some(mut child) = self.child.take() {
            let code = wait_timeout(&mut child, Duration::from_secs(20));
            assert_eq!(code, Some(0), "server should exit 0 after SIGTERM");
        }
    }

    /// Sends SIGTERM without waiting.
    pub fn sigterm(&self) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status()
                .expect("kill");
            assert!(status.success());
        }
    }

    /// Waits for the process to exit; its exit code, None after `limit`.
    #[allow(dead_code)]
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        wait_timeout(&mut child, limit)
    }

    /// SIGKILL: no chance to flush.
    #[allow(dead_code)]
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same data directory (new port).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Starts a stopped or killed server again on the same data directory.
    #[allow(dead_code)]
    pub fn relaunch(&mut self) {
        assert!(self.child.is_none(), "still running");
        self.spawn();
    }

    /// Replaces the campaign file read at the next start.
    #[allow(dead_code)]
    pub fn rewrite_config(&self, toml: &str) {
        let path = self.config.as_ref().expect("started with a config file");
        std::fs::write(path, toml).expect("write config");
    }

    /// The server's process id.
    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("running")
    }

    #[allow(dead_code)]
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

fn wait_timeout(child: &mut Child, limit: Duration) -> Option<i32> {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    None
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// GetCampaignStats of `campaign`.
#[allow(dead_code)]
pub async fn campaign_stats(admin: &mut Admin, campaign: &str) -> proto::GetCampaignStatsResponse {
    admin
        .get_campaign_stats(proto::GetCampaignStatsRequest {
            campaign: campaign.into(),
        })
        .await
        .expect("stats")
        .into_inner()
}

/// Runs the `offer-bandit` binary with `args`; its stdout, after checking
/// that it succeeded.
#[allow(dead_code)]
pub fn offer_bandit_cli(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_offer-bandit"))
        .args(args)
        .output()
        .expect("run offer-bandit");
    assert!(
        out.status.success(),
        "offer-bandit {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Runs `offer-bandit serve` on `data_dir` (loopback, port 0, no metrics)
/// with `args` and `env`, expecting it to refuse to start; its stderr.
#[allow(dead_code)]
pub fn serve_refuses(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_offer-bandit"))
        .args(["serve", "--listen", "127.0.0.1:0", "--no-metrics"])
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run offer-bandit");
    assert!(!out.status.success(), "offer-bandit serve {args:?} started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// One HTTP/1.1 GET, with `addr` as the Host (as a browser sends it): the
/// response's head and body.
/// Field `n` of a `/proc/.../stat` line, numbered from 1 as proc(5) does:
/// counted after the command name (field 2), which is in parentheses and
/// may itself hold spaces and parentheses.
#[cfg(target_os = "linux")]
pub fn stat_field(stat: &str, n: usize) -> Option<&str> {
    let after_name = stat.get(stat.rfind(')')? + 1..)?;
    after_name.split_whitespace().nth(n.checked_sub(3)?)
}

pub fn http_get(addr: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(s, "GET {path} HTTP/1.1\r\nhost: {addr}\r\n\r\n").expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let (head, body) = out.split_once("\r\n\r\n").expect("http response");
    (head.to_owned(), body.to_owned())
}

pub fn category(v: &str) -> FeatureValue {
    FeatureValue {
        kind: Some(Kind::Category(v.to_owned())),
    }
}

pub fn number(v: f64) -> FeatureValue {
    FeatureValue {
        kind: Some(Kind::Number(v)),
    }
}

/// A select request for `campaign` with categorical features.
pub fn select(campaign: &str, features: &[(&str, &str)]) -> SelectOfferRequest {
    let context: HashMap<String, FeatureValue> = features
        .iter()
        .map(|(k, v)| (k.to_string(), category(v)))
        .collect();
    SelectOfferRequest {
        campaign: campaign.to_owned(),
        context,
        ..Default::default()
    }
}

pub fn redeem(decision_id: &str) -> proto::RecordRedemptionRequest {
    proto::RecordRedemptionRequest {
        decision_id: decision_id.to_owned(),
        ..Default::default()
    }
}

/// A campaign config with `offers`, segmented by `segment_by`.
pub fn campaign_toml(id: &str, segment_by: &[&str], window: &str, offers: &[&str]) -> String {
    let by: Vec<String> = segment_by.iter().map(|s| format!("\"{s}\"")).collect();
    let mut t = format!(
        "[[campaigns]]\nid = \"{id}\"\npolicy = \"segment-ts\"\nsegment_by = [{}]\nreward_window = \"{window}\"\n",
        by.join(", ")
    );
    for o in offers {
        t.push_str(&format!(
            "[[campaigns.offers]]\nid = \"{o}\"\nvalue = 1.0\n"
        ));
    }
    t
}

/// Sends redemptions in one RecordRedemptions stream; returns (applied, duplicates, rejected).
pub async fn redeem_batch(client: &mut Offers, ids: &[String]) -> proto::RecordRedemptionsResponse {
    let reqs: Vec<_> = ids.iter().map(|id| redeem(id)).collect();
    client
        .record_redemptions(tokio_stream::iter(reqs))
        .await
        .expect("record_redemptions")
        .into_inner()
}

/// A `logistic-ts` campaign learning from one categorical feature `type`
/// with values `types`, no segments.
pub fn logistic_campaign_toml(id: &str, types: &[&str], window: &str, offers: &[&str]) -> String {
    let values: Vec<String> = types.iter().map(|s| format!("\"{s}\"")).collect();
    let mut t = format!(
        "[[campaigns]]\nid = \"{id}\"\npolicy = \"logistic-ts\"\nreward_window = \"{window}\"\n\
         [[campaigns.features]]\nkind = \"categorical\"\nname = \"type\"\nvalues = [{}]\n",
        values.join(", ")
    );
    for o in offers {
        t.push_str(&format!(
            "[[campaigns.offers]]\nid = \"{o}\"\nvalue = 1.0\n"
        ));
    }
    t
}

/// Reads from `s` until EOF or error; true when the server closed it within
/// `limit`.
pub fn closed_within(s: &mut std::net::TcpStream, limit: Duration) -> bool {
    let started = std::time::Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut buf = [0u8; 256];
    while started.elapsed() < limit {
        match std::io::Read::read(s, &mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

/// Sends `request` (a whole HTTP/1.1 request) over TLS to `addr`, trusting
/// the PEM certificate `ca_pem` for "localhost" and offering `h2` and
/// `http/1.1` as curl does; the answer as text, and the protocol ALPN
/// agreed. None when the handshake fails.
pub async fn https_request(addr: &str, ca_pem: &str, request: &str) -> Option<(String, Vec<u8>)> {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls::{
        self,
        pki_types::{CertificateDer, ServerName, pem::PemObject as _},
    };
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).ok()?)
        .ok()?;
    let mut client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .ok()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    client.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let name = ServerName::try_from("localhost").ok()?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(name, tcp)
        .await
        .ok()?;
    let alpn = tls.get_ref().1.alpn_protocol().unwrap_or_default().to_vec();
    tls.write_all(request.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    // The server may close without TLS's close_notify after `connection: close`.
    let _ = tls.read_to_end(&mut answer).await;
    Some((String::from_utf8_lossy(&answer).into_owned(), alpn))
}

/// Whether `addr` answers `request` sent in plaintext with a 200 within
/// 5 s (a TLS port must not).
pub async fn plain_http_answered(addr: &str, request: &str) -> bool {
    let (addr, request) = (addr.to_owned(), request.to_owned());
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(&addr) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.write_all(request.as_bytes());
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200")
    })
    .await
    .unwrap_or(false)
}

/// A fresh self-signed certificate for "localhost", written as PEM files.
pub struct TlsFiles {
    /// The certificate, PEM: what a client trusts.
    pub cert_pem: String,
    /// The files' paths, as `--tls-cert` and `--tls-key` take them.
    pub cert_arg: String,
    pub key_arg: String,
}

impl TlsFiles {
    /// `--tls-cert FILE --tls-key FILE`, then `more`.
    pub fn args<'a>(&'a self, more: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![
            "--tls-cert",
            self.cert_arg.as_str(),
            "--tls-key",
            self.key_arg.as_str(),
        ];
        args.extend_from_slice(more);
        args
    }

    /// Writes a new pair to `dir`/cert.pem and `dir`/key.pem (over any
    /// there: a renewal).
    pub fn write(dir: &Path) -> TlsFiles {
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        std::fs::write(&key_path, signing_key.serialize_pem()).expect("write key");
        TlsFiles {
            cert_pem: cert.pem(),
            cert_arg: cert_path.display().to_string(),
            key_arg: key_path.display().to_string(),
        }
    }
}
