//! Bearer-token authentication (admin only, or every RPC but health) and TLS.

use std::time::Duration;

use offer_bandit::proto::{
    self, campaign_admin_client::CampaignAdminClient, offer_service_client::OfferServiceClient,
};
use tonic::{
    Code,
    transport::{Certificate, Channel, ClientTlsConfig},
};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::support::{TestServer, select};

const TOKEN: &str = "s3cret-token-for-tests-0123456789";

fn with_token<T>(msg: T, token: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(t) = token {
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer {t}").parse().expect("ascii"),
        );
    }
    r
}

fn token_file(dir: &std::path::Path) -> String {
    let p = dir.join("token");
    std::fs::write(&p, format!("{TOKEN}\n")).expect("write token");
    p.display().to_string()
}

async fn code_of<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>) -> Code {
    match r {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

#[tokio::test]
async fn admin_rpcs_need_the_token_and_offers_do_not_by_default() {
    let tmp = tempfile::tempdir().expect("tmp");
    let server = TestServer::start(None, &["--auth-token-file", &token_file(tmp.path())]);
    let mut admin = server.admin().await;
    let mut offers = server.offers().await;
    let list = || proto::ListCampaignsRequest {};
    let none = admin.list_campaigns(with_token(list(), None)).await;
    let err = none.expect_err("no token");
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(
        err.message().contains("authorization: Bearer"),
        "{}",
        err.message()
    );
    let wrong = admin
        .list_campaigns(with_token(list(), Some("not-the-token-at-all-xx")))
        .await;
    assert_eq!(code_of(wrong).await, Code::Unauthenticated);
    let ok = admin.list_campaigns(with_token(list(), Some(TOKEN))).await;
    assert_eq!(code_of(ok).await, Code::Ok);
    // Scope "admin": checkout traffic needs no token.
    let sel = offers
        .select_offer(select("coffee", &[("lifecycle", "active")]))
        .await;
    assert_eq!(code_of(sel).await, Code::Ok);
    // The admin CLI sends the token from the environment.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_offer-bandit"))
        .args(["export", "--server", &server.url(), "--campaign", "coffee"])
        .env("OFFER_BANDIT_AUTH_TOKEN", TOKEN)
        .output()
        .expect("run export");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_offer-bandit"))
        .args(["export", "--server", &server.url(), "--campaign", "coffee"])
        .env_remove("OFFER_BANDIT_AUTH_TOKEN")
        .output()
        .expect("run export");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("authorization: Bearer"), "{err}");
}

#[tokio::test]
async fn scope_all_protects_every_rpc_but_health() {
    let tmp = tempfile::tempdir().expect("tmp");
    let server = TestServer::start(
        None,
        &[
            "--auth-token-file",
            &token_file(tmp.path()),
            "--auth-scope",
            "all",
        ],
    );
    let channel = server.channel().await;
    let mut offers = OfferServiceClient::new(channel.clone());
    let req = || select("coffee", &[("lifecycle", "active")]);
    assert_eq!(
        code_of(offers.select_offer(with_token(req(), None)).await).await,
        Code::Unauthenticated
    );
    assert_eq!(
        code_of(offers.select_offer(with_token(req(), Some(TOKEN))).await).await,
        Code::Ok
    );
    let mut health = HealthClient::new(channel);
    let h = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await;
    assert_eq!(
        code_of(h).await,
        Code::Ok,
        "health stays open for load balancers"
    );
}

#[test]
fn short_tokens_are_refused_at_startup() {
    let tmp = tempfile::tempdir().expect("tmp");
    let stderr = crate::support::serve_refuses(
        &tmp.path().join("d"),
        &[],
        &[("OFFER_BANDIT_AUTH_TOKEN", "short")],
    );
    assert!(stderr.contains("at least 16 bytes"), "{stderr}");
}

/// A renewed certificate and key, written over the files, serve new
/// connections without a restart (`--tls-reload-interval`).
#[tokio::test]
async fn a_renewed_tls_certificate_is_taken_up_without_a_restart() {
    let tmp = tempfile::tempdir().expect("tmp");
    let tls = crate::support::TlsFiles::write(tmp.path());
    let first = tls.cert_pem.clone();
    let server = TestServer::start(
        None,
        &tls.args(&[
            "--tls-reload-interval",
            "100ms",
            "--http-listen",
            "127.0.0.1:0",
        ]),
    );
    let list_trusting = |ca: String| {
        let url = format!("https://{}", server.addr);
        async move {
            let tls = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(ca))
                .domain_name("localhost");
            let channel = Channel::from_shared(url)
                .ok()?
                .tls_config(tls)
                .ok()?
                .connect_timeout(Duration::from_secs(5))
                .connect()
                .await
                .ok()?;
            CampaignAdminClient::new(channel)
                .list_campaigns(proto::ListCampaignsRequest {})
                .await
                .ok()
        }
    };
    assert!(list_trusting(first.clone()).await.is_some());
    let renewed = crate::support::TlsFiles::write(tmp.path()).cert_pem;
    let mut taken = false;
    for _ in 0..100 {
        if list_trusting(renewed.clone()).await.is_some() {
            taken = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(taken, "the renewed certificate was never served");
    assert!(
        list_trusting(first.clone()).await.is_none(),
        "new connections still got the old certificate"
    );
    // The gateway shares the renewal.
    let health = "GET /v1/openapi.json HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n";
    let gw = &server.gateway_addr;
    let (answer, _) = crate::support::https_request(gw, &renewed, health)
        .await
        .expect("the gateway serves the renewed certificate");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        crate::support::https_request(gw, &first, health)
            .await
            .is_none(),
        "the gateway still served the old certificate"
    );
}

/// `--metrics-tls` needs a certificate, but a deployment template's
/// OFFER_BANDIT_METRICS_TLS=false without one starts; with --no-metrics it
/// is refused rather than ignored.
#[tokio::test]
async fn metrics_tls_false_needs_no_certificate_and_no_metrics_conflicts() {
    let tmp = tempfile::tempdir().expect("tmp");
    let server = TestServer::start_on_env(
        None,
        &tmp.path().join("d"),
        &[],
        &[("OFFER_BANDIT_METRICS_TLS", "false")],
    );
    let mut offers = server.offers().await;
    offers
        .select_offer(select("coffee", &[("lifecycle", "active")]))
        .await
        .expect("serves");
    // (serve_refuses adds --no-metrics: this one runs without.)
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_offer-bandit"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-tls",
            "--data-dir",
        ])
        .arg(tmp.path().join("e"))
        .output()
        .expect("run offer-bandit");
    assert!(
        !out.status.success(),
        "--metrics-tls without a certificate started"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--tls-cert"), "{stderr}");
    let tls = crate::support::TlsFiles::write(tmp.path());
    let stderr = crate::support::serve_refuses(
        &tmp.path().join("f"),
        &tls.args(&["--metrics-tls", "--no-metrics"]),
        &[],
    );
    assert!(stderr.contains("--no-metrics"), "{stderr}");
}

#[test]
fn a_reload_interval_that_would_spin_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let stderr = crate::support::serve_refuses(
        &tmp.path().join("d"),
        &["--tls-reload-interval", "1ms"],
        &[],
    );
    assert!(stderr.contains("from 100ms to 1d"), "{stderr}");
}

/// With --metrics-tls the metrics port (probes, /metrics, the dashboard)
/// speaks HTTPS with the same certificate, and not plain HTTP.
#[tokio::test]
async fn metrics_tls_serves_the_metrics_port_over_https() {
    use crate::support::{https_request, plain_http_answered};
    let tmp = tempfile::tempdir().expect("tmp");
    let tls = crate::support::TlsFiles::write(tmp.path());
    let server = TestServer::start(None, &tls.args(&["--metrics-tls"]));
    let addr = server.metrics_addr.clone();
    let (answer, alpn) = https_request(
        &addr,
        &tls.cert_pem,
        "GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n",
    )
    .await
    .expect("TLS handshake with the metrics port");
    assert_eq!(alpn, b"http/1.1");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (metrics, _) = https_request(
        &addr,
        &tls.cert_pem,
        "GET /metrics HTTP/1.1\r\nhost: localhost\r\n\r\n",
    )
    .await
    .expect("TLS handshake with the metrics port");
    assert!(metrics.contains("offer_bandit_build_info"), "{metrics}");
    // The served certificate's expiry: rcgen's default, 4096-01-01.
    let expiry = metrics
        .lines()
        .find_map(|l| l.strip_prefix("offer_bandit_tls_certificate_expiry_timestamp_seconds "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert_eq!(expiry, Some(67_090_118_400.0), "{metrics}");
    assert!(
        !plain_http_answered(&addr, "GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n").await,
        "plain HTTP must not be answered"
    );
}

#[test]
fn a_tls_key_that_is_not_the_certificates_is_refused_at_startup() {
    let tmp = tempfile::tempdir().expect("tmp");
    let tls = crate::support::TlsFiles::write(tmp.path());
    // Another key over the certificate's.
    let other = rcgen::KeyPair::generate().expect("key");
    std::fs::write(&tls.key_arg, other.serialize_pem()).expect("write key");
    let stderr = crate::support::serve_refuses(&tmp.path().join("d"), &tls.args(&[]), &[]);
    assert!(
        stderr.contains("the TLS certificate or key is not usable"),
        "{stderr}"
    );
}

#[tokio::test]
async fn tls_serves_https_with_the_configured_certificate() {
    let tmp = tempfile::tempdir().expect("tmp");
    let tls = crate::support::TlsFiles::write(tmp.path());
    let server = TestServer::start(None, &tls.args(&[]));
    let client_tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&tls.cert_pem))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://{}", server.addr))
        .expect("url")
        .tls_config(client_tls)
        .expect("tls config")
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("TLS connect");
    let mut admin = CampaignAdminClient::new(channel);
    let list = admin
        .list_campaigns(proto::ListCampaignsRequest {})
        .await
        .expect("list over TLS");
    assert!(!list.into_inner().campaigns.is_empty());
    // A plaintext client gets no answer from a TLS server.
    let plain = tokio::time::timeout(Duration::from_secs(5), async {
        let ch = Channel::from_shared(server.url())
            .expect("url")
            .connect()
            .await?;
        CampaignAdminClient::new(ch)
            .list_campaigns(proto::ListCampaignsRequest {})
            .await
            .map_err(|s| -> Box<dyn std::error::Error> { s.into() })
            .map(|_| ())?;
        Ok::<(), Box<dyn std::error::Error>>(())
    })
    .await;
    assert!(!matches!(plain, Ok(Ok(()))), "plaintext must not work");
    // The admin CLI speaks TLS with --ca-cert.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_offer-bandit"))
        .args([
            "export",
            "--campaign",
            "coffee",
            "--tls-domain",
            "localhost",
        ])
        .arg("--server")
        .arg(format!("https://{}", server.addr))
        .arg("--ca-cert")
        .arg(&tls.cert_arg)
        .output()
        .expect("run export");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
