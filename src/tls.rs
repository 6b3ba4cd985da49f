//! The server's TLS identity: the certificate and key files (PEM) made into
//! acceptors, one for the gRPC port (ALPN `h2`) and one for the HTTP/1.1
//! ports (`http/1.1`: the JSON/HTTP gateway, and the metrics port with
//! `--metrics-tls`), and replaced while the server runs when the files
//! change, so that a renewed certificate (cert-manager, Let's Encrypt)
//! needs no restart. The handshake itself is done in
//! [`crate::connections`].

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;
use parking_lot::RwLock;
use tokio_rustls::{TlsAcceptor, rustls};

/// An acceptor that a renewed certificate replaces: each connection takes
/// the one current when it arrives.
#[derive(Clone)]
pub(crate) struct SharedAcceptor(Arc<RwLock<TlsAcceptor>>);

impl SharedAcceptor {
    pub(crate) fn new(acceptor: TlsAcceptor) -> SharedAcceptor {
        SharedAcceptor(Arc::new(RwLock::new(acceptor)))
    }

    /// The acceptor for the next connection.
    pub(crate) fn current(&self) -> TlsAcceptor {
        self.0.read().clone()
    }

    fn replace(&self, acceptor: TlsAcceptor) {
        *self.0.write() = acceptor;
    }
}

impl std::fmt::Debug for SharedAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedAcceptor")
    }
}

/// A TLS acceptor for a PEM certificate chain and its PEM private key: TLS
/// 1.2 and 1.3 on ring, no client certificates, offering `protocol` by
/// ALPN: `h2` on the gRPC port (clients such as grpc-go require it),
/// `http/1.1` on the gateway (what its clients speak: curl, offering both,
/// then keeps to HTTP/1.1).
pub(crate) fn acceptor(
    cert_pem: &[u8],
    key_pem: &[u8],
    protocol: &[u8],
) -> Result<TlsAcceptor, String> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the certificate file is not PEM: {e}"))?;
    if certs.is_empty() {
        return Err("the certificate file holds no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| format!("the key file holds no PEM private key: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("the certificate and key do not make a TLS identity: {e}"))?;
    config.alpn_protocols = vec![protocol.to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The files' contents: (certificate, key).
type Pems = (Vec<u8>, Vec<u8>);

/// A pair's fingerprint: what the reload loop remembers of a pair, so that
/// it holds no copy of the key.
type Fingerprint = [u8; 32];

fn fingerprint((cert, key): &Pems) -> Fingerprint {
    let mut h = blake3::Hasher::new();
    h.update(&(cert.len() as u64).to_le_bytes());
    h.update(cert);
    h.update(key);
    *h.finalize().as_bytes()
}

/// The server's acceptors, and the files they come from.
pub(crate) struct Identity {
    /// The gRPC port's acceptor (ALPN `h2`).
    pub grpc: SharedAcceptor,
    /// The HTTP/1.1 ports' acceptor (ALPN `http/1.1`): the gateway's, and
    /// the metrics port's with `--metrics-tls`.
    pub http: SharedAcceptor,
    cert: PathBuf,
    key: PathBuf,
    /// The pair being served.
    loaded: Fingerprint,
    /// An unusable pair seen once: a renewal caught between its two files,
    /// or one that is wrong; refused if it is still there at the next check.
    unmatched: Option<Fingerprint>,
    /// An unusable pair refused (logged and counted once).
    refused: Option<Fingerprint>,
    /// The last error reading the files (logged and counted once).
    unreadable: Option<String>,
    /// When the certificate served expires (Unix seconds; None: its
    /// validity could not be read).
    expires_s: Option<i64>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

fn read(cert: &Path, key: &Path) -> anyhow::Result<Pems> {
    let cert_pem = std::fs::read(cert)
        .with_context(|| format!("reading the TLS certificate {}", cert.display()))?;
    let key_pem =
        std::fs::read(key).with_context(|| format!("reading the TLS key {}", key.display()))?;
    Ok((cert_pem, key_pem))
}

/// When the chain's first certificate (the server's own) is valid, in Unix
/// seconds: (not before, not after).
fn validity(cert_pem: &[u8]) -> Result<(i64, i64), String> {
    use rustls::pki_types::{CertificateDer, pem::PemObject as _};
    let der = CertificateDer::pem_slice_iter(cert_pem)
        .next()
        .ok_or("the certificate file holds no certificate")?
        .map_err(|e| format!("the certificate file is not PEM: {e}"))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| format!("the certificate cannot be read: {e}"))?;
    let v = cert.validity();
    Ok((v.not_before.timestamp(), v.not_after.timestamp()))
}

/// `unix_s` as an RFC 3339 date, for messages.
fn date(unix_s: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(unix_s).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A pair made into acceptors, with its certificate's validity when it
/// can be read (rustls takes some certificates x509-parser does not: those
/// serve, without an expiry to show).
struct Usable {
    grpc: TlsAcceptor,
    http: TlsAcceptor,
    validity: Option<(i64, i64)>,
}

/// How far ahead of this machine's clock a renewal may start to be valid
/// (clocks differ).
const CLOCK_SKEW_S: i64 = 300;

impl Usable {
    /// Why its certificate is not valid now (None: it is, or its validity
    /// is unknown).
    fn invalid_now(&self) -> Option<String> {
        let (not_before, not_after) = self.validity?;
        let now = now_s();
        if not_after <= now {
            Some(format!("the certificate expired at {}", date(not_after)))
        } else if not_before > now + CLOCK_SKEW_S {
            Some(format!(
                "the certificate is not valid until {}",
                date(not_before)
            ))
        } else {
            None
        }
    }
}

/// Both acceptors for one certificate and key.
fn acceptors((cert, key): &Pems) -> Result<Usable, String> {
    Ok(Usable {
        grpc: acceptor(cert, key, b"h2")?,
        http: acceptor(cert, key, b"http/1.1")?,
        validity: validity(cert)
            .inspect_err(|e| tracing::warn!(error = %e, "the TLS certificate's validity cannot be read: no expiry metric"))
            .ok(),
    })
}

/// What one check of the files did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Check {
    /// The files hold the pair being served.
    Unchanged,
    /// A new, usable pair: new connections get it.
    Reloaded,
    /// A new pair that is not usable, seen for the first time: perhaps a
    /// renewal caught between its two files. Left for the next check.
    Waiting,
    /// The same unusable pair again: refused, logged and counted.
    Refused(String),
    /// A pair already refused.
    StillRefused,
    /// The files could not be read (logged and counted when the error is
    /// new).
    Unreadable { new: bool },
}

impl Identity {
    /// Reads the certificate and key; an unusable pair stops startup with
    /// the reason.
    pub(crate) fn load(cert: &Path, key: &Path) -> anyhow::Result<Identity> {
        let pems = read(cert, key)?;
        let usable = acceptors(&pems)
            .map_err(|e| anyhow::anyhow!("the TLS certificate or key is not usable: {e}"))?;
        if let Some(why) = usable.invalid_now() {
            // Served all the same: refusing to start would turn an expired
            // certificate into an outage of every port.
            tracing::error!(cert = %cert.display(), "{why}: clients will refuse it");
        }
        Ok(Identity {
            grpc: SharedAcceptor::new(usable.grpc),
            http: SharedAcceptor::new(usable.http),
            cert: cert.to_owned(),
            key: key.to_owned(),
            loaded: fingerprint(&pems),
            unmatched: None,
            refused: None,
            unreadable: None,
            expires_s: usable.validity.map(|(_, not_after)| not_after),
        })
    }

    /// Sets `offer_bandit_tls_certificate_expiry_timestamp_seconds` to the
    /// served certificate's expiry (once the metrics recorder is installed;
    /// every reload sets it again).
    pub(crate) fn publish_expiry(&self) {
        if let Some(expires_s) = self.expires_s {
            metrics::gauge!("offer_bandit_tls_certificate_expiry_timestamp_seconds")
                .set(expires_s as f64);
        }
    }

    /// One check of what the files hold (`read`: their contents, or why
    /// they could not be read).
    pub(crate) fn check(&mut self, read: anyhow::Result<Pems>) -> Check {
        let pems = match read {
            Ok(pems) => pems,
            Err(e) => {
                let e = format!("{e:#}");
                let new = self.unreadable.as_ref() != Some(&e);
                if new {
                    tracing::warn!(error = %e, "cannot reread the TLS certificate; serving the one loaded");
                    metrics::counter!("offer_bandit_tls_reloads_total", "result" => "unreadable")
                        .increment(1);
                    self.unreadable = Some(e);
                }
                return Check::Unreadable { new };
            }
        };
        self.unreadable = None;
        let seen = fingerprint(&pems);
        if seen == self.loaded {
            (self.unmatched, self.refused) = (None, None);
            return Check::Unchanged;
        }
        // A renewal must hold a certificate valid now. A pair refused is
        // looked at again each time, quietly: a clock put right can make it
        // valid.
        let usable = acceptors(&pems).and_then(|u| match u.invalid_now() {
            Some(why) => Err(why),
            None => Ok(u),
        });
        match usable {
            Err(_) if self.refused == Some(seen) => Check::StillRefused,
            Ok(usable) => {
                self.grpc.replace(usable.grpc);
                self.http.replace(usable.http);
                self.expires_s = usable.validity.map(|(_, not_after)| not_after);
                self.publish_expiry();
                (self.loaded, self.unmatched, self.refused) = (seen, None, None);
                tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                metrics::counter!("offer_bandit_tls_reloads_total", "result" => "ok").increment(1);
                Check::Reloaded
            }
            Err(e) if self.unmatched == Some(seen) => {
                tracing::warn!(error = %e, cert = %self.cert.display(), "the TLS certificate or key changed but is not usable; serving the one loaded");
                metrics::counter!("offer_bandit_tls_reloads_total", "result" => "refused")
                    .increment(1);
                (self.unmatched, self.refused) = (None, Some(seen));
                Check::Refused(e)
            }
            Err(_) => {
                self.unmatched = Some(seen);
                Check::Waiting
            }
        }
    }

    /// Rereads the files every `every` and [`Identity::check`]s them: a
    /// changed, usable pair serves new connections from then on (open ones
    /// keep theirs); an unusable one (the certificate renewed and the key
    /// not yet, say) is refused if it is still there at the next check,
    /// logged and counted once, and the pair before stays. Runs until the
    /// task is aborted.
    pub(crate) async fn keep_current(mut self, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is now: the files were just read
        loop {
            tick.tick().await;
            let (cert, key) = (self.cert.clone(), self.key.clone());
            match tokio::task::spawn_blocking(move || read(&cert, &key)).await {
                Ok(read) => {
                    self.check(read);
                }
                Err(e) => tracing::warn!(error = %e, "rereading the TLS certificate failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (String, String) {
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
        (cert.pem(), signing_key.serialize_pem())
    }

    #[test]
    fn unusable_certificates_and_keys_are_refused_with_a_reason() {
        let (cert, key) = pair();
        let err = |r: Result<TlsAcceptor, String>| r.err().unwrap_or_default();
        assert!(err(acceptor(b"", key.as_bytes(), b"h2")).contains("no certificate"));
        assert!(err(acceptor(cert.as_bytes(), b"not a key", b"h2")).contains("no PEM private key"));
        // A key that is not the certificate's.
        let other = rcgen::KeyPair::generate().expect("key").serialize_pem();
        assert!(err(acceptor(cert.as_bytes(), other.as_bytes(), b"h2")).contains("TLS identity"));
        assert!(acceptor(cert.as_bytes(), key.as_bytes(), b"h2").is_ok());
    }

    /// The acceptor's certificate, as a client sees it in the handshake.
    async fn served_certificate(shared: &SharedAcceptor) -> Vec<u8> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let server_side = shared.current();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let _ = server_side.accept(tcp).await;
        });
        // Any certificate: the test reads it rather than trusting it.
        #[derive(Debug)]
        struct AnyCert(Arc<rustls::crypto::CryptoProvider>);
        impl rustls::client::danger::ServerCertVerifier for AnyCert {
            fn verify_server_cert(
                &self,
                _: &rustls::pki_types::CertificateDer<'_>,
                _: &[rustls::pki_types::CertificateDer<'_>],
                _: &rustls::pki_types::ServerName<'_>,
                _: &[u8],
                _: rustls::pki_types::UnixTime,
            ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            fn verify_tls12_signature(
                &self,
                message: &[u8],
                cert: &rustls::pki_types::CertificateDer<'_>,
                dss: &rustls::DigitallySignedStruct,
            ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error>
            {
                rustls::crypto::verify_tls12_signature(
                    message,
                    cert,
                    dss,
                    &self.0.signature_verification_algorithms,
                )
            }
            fn verify_tls13_signature(
                &self,
                message: &[u8],
                cert: &rustls::pki_types::CertificateDer<'_>,
                dss: &rustls::DigitallySignedStruct,
            ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error>
            {
                rustls::crypto::verify_tls13_signature(
                    message,
                    cert,
                    dss,
                    &self.0.signature_verification_algorithms,
                )
            }
            fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
                self.0.signature_verification_algorithms.supported_schemes()
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let tls = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(name, tcp)
            .await
            .expect("handshake");
        let der = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref().to_vec())
            .expect("a certificate");
        drop(tls);
        let _ = server.await;
        der
    }

    fn der_of(pem: &str) -> Vec<u8> {
        use rustls::pki_types::{CertificateDer, pem::PemObject as _};
        CertificateDer::from_pem_slice(pem.as_bytes())
            .expect("PEM")
            .as_ref()
            .to_vec()
    }

    /// A renewal as the loop meets it, one check at a time: the certificate
    /// written first waits a check; the key then makes a pair, which is
    /// taken; an unmatched pair still there at the next check is refused
    /// once; unreadable files are said once.
    #[tokio::test]
    async fn renewals_are_taken_waited_for_or_refused_once() {
        let (cert_a, key_a) = pair();
        let (cert_b, key_b) = pair();
        let (cert_c, key_c) = pair();
        let pems = |c: &str, k: &str| Ok((c.as_bytes().to_vec(), k.as_bytes().to_vec()));
        let dir = tempfile::tempdir().expect("tmp");
        let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert_path, &cert_a).expect("write");
        std::fs::write(&key_path, &key_a).expect("write");
        let mut id = Identity::load(&cert_path, &key_path).expect("load");
        let (grpc, http) = (id.grpc.clone(), id.http.clone());
        assert_eq!(id.check(pems(&cert_a, &key_a)), Check::Unchanged);
        // The certificate renewed, its key not yet: waits, A still served.
        assert_eq!(id.check(pems(&cert_b, &key_a)), Check::Waiting);
        assert_eq!(served_certificate(&grpc).await, der_of(&cert_a));
        // The key follows: B is served on both ports.
        assert_eq!(id.check(pems(&cert_b, &key_b)), Check::Reloaded);
        assert_eq!(served_certificate(&grpc).await, der_of(&cert_b));
        assert_eq!(served_certificate(&http).await, der_of(&cert_b));
        assert_eq!(id.check(pems(&cert_b, &key_b)), Check::Unchanged);
        // A pair that stays unmatched is refused at its second sighting,
        // once; B stays.
        assert_eq!(id.check(pems(&cert_c, &key_b)), Check::Waiting);
        assert!(matches!(
            id.check(pems(&cert_c, &key_b)),
            Check::Refused(e) if e.contains("TLS identity")
        ));
        assert_eq!(id.check(pems(&cert_c, &key_b)), Check::StillRefused);
        assert_eq!(served_certificate(&grpc).await, der_of(&cert_b));
        // Back to the pair served, then the bad pair again: waits anew.
        assert_eq!(id.check(pems(&cert_b, &key_b)), Check::Unchanged);
        assert_eq!(id.check(pems(&cert_c, &key_b)), Check::Waiting);
        // Unreadable: said once per error.
        let gone = || Err(anyhow::anyhow!("no such file"));
        assert_eq!(id.check(gone()), Check::Unreadable { new: true });
        assert_eq!(id.check(gone()), Check::Unreadable { new: false });
        assert_eq!(id.check(pems(&cert_c, &key_c)), Check::Reloaded);
        assert_eq!(served_certificate(&grpc).await, der_of(&cert_c));
        // Its Debug names the files, nothing they hold.
        assert_eq!(
            format!("{id:?}"),
            format!("Identity {{ cert: {cert_path:?}, key: {key_path:?}, .. }}")
        );
        // A renewal whose certificate has already expired is refused.
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        let old_key = rcgen::KeyPair::generate().expect("key");
        let old = params.self_signed(&old_key).expect("cert");
        let expired = || pems(&old.pem(), &old_key.serialize_pem());
        assert_eq!(id.check(expired()), Check::Waiting);
        assert!(matches!(
            id.check(expired()),
            Check::Refused(e) if e.contains("expired at 2001-01-01")
        ));
        // So is one not valid yet.
        params.not_before = rcgen::date_time_ymd(2999, 1, 1);
        params.not_after = rcgen::date_time_ymd(3000, 1, 1);
        let early = params.self_signed(&old_key).expect("cert");
        let early = || pems(&early.pem(), &old_key.serialize_pem());
        assert_eq!(id.check(early()), Check::Waiting);
        assert!(matches!(
            id.check(early()),
            Check::Refused(e) if e.contains("not valid until 2999-01-01")
        ));
        assert_eq!(id.check(early()), Check::StillRefused);
        assert_eq!(served_certificate(&grpc).await, der_of(&cert_c));
    }

    #[test]
    fn the_validity_is_the_server_certificates() {
        let (cert, _) = pair();
        // rcgen's default validity ends on 4096-01-01.
        let end = rcgen::date_time_ymd(4096, 1, 1).unix_timestamp();
        let start = rcgen::date_time_ymd(1975, 1, 1).unix_timestamp();
        assert_eq!(validity(cert.as_bytes()), Ok((start, end)));
        assert_eq!(date(end), "4096-01-01T00:00:00Z");
        assert!(validity(b"").is_err());
    }

    /// The loop itself: files renewed on disk are taken up.
    #[tokio::test]
    async fn the_loop_takes_up_renewed_files() {
        let dir = tempfile::tempdir().expect("tmp");
        let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let (cert_a, key_a) = pair();
        std::fs::write(&cert_path, &cert_a).expect("write");
        std::fs::write(&key_path, &key_a).expect("write");
        let identity = Identity::load(&cert_path, &key_path).expect("load");
        let grpc = identity.grpc.clone();
        let watcher = tokio::spawn(identity.keep_current(Duration::from_millis(50)));
        let (cert_b, key_b) = pair();
        std::fs::write(&cert_path, &cert_b).expect("write");
        std::fs::write(&key_path, &key_b).expect("write");
        let mut served = Vec::new();
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            served = served_certificate(&grpc).await;
            if served == der_of(&cert_b) {
                break;
            }
        }
        watcher.abort();
        assert_eq!(
            served,
            der_of(&cert_b),
            "the renewed certificate was not taken"
        );
    }
}
