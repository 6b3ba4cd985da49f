//! HTTP probes on the metrics port (`/healthz`, `/readyz`), open to any
//! Host and without the dashboard's token; `/metrics` has build info,
//! process series and a `# HELP` for every series.

use std::{
    collections::HashSet,
    io::{Read, Write},
    time::{Duration, Instant},
};

use crate::support::{TestServer, select};

/// One GET with this Host and no credentials: (status line, body).
fn get(addr: &str, path: &str, host: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(s, "GET {path} HTTP/1.1\r\nhost: {host}\r\n\r\n").expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let (head, body) = out.split_once("\r\n\r\n").expect("http response");
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, body.to_owned())
}

const TOKEN: &str = "admin-token-0123456789abcdef";

#[test]
fn probes_answer_without_token_under_any_host() {
    let tmp = tempfile::tempdir().expect("tmp");
    let server = TestServer::start_on_env(
        None,
        &tmp.path().join("data"),
        &[],
        &[("OFFER_BANDIT_AUTH_TOKEN", TOKEN)],
    );
    // The dashboard needs a token and an allowed Host; the probes need neither.
    let (status, _) = get(&server.metrics_addr, "/", "localhost");
    assert!(status.contains(" 401 "), "{status}");
    let (status, _) = get(&server.metrics_addr, "/", "evil.example");
    assert!(status.contains(" 421 "), "{status}");
    for host in ["localhost", "evil.example", "10.1.2.3:9464"] {
        let (status, body) = get(&server.metrics_addr, "/healthz", host);
        assert!(status.contains(" 200 "), "{host}: {status}");
        assert_eq!(body, "ok\n");
        let (status, body) = get(&server.metrics_addr, "/readyz", host);
        assert!(status.contains(" 200 "), "{host}: {status} {body}");
        assert_eq!(body, "ready\n");
    }
    let (status, _) = get(&server.metrics_addr, "/readyz?verbose", "x");
    assert!(status.contains(" 200 "), "{status}");
}

#[tokio::test]
async fn readyz_follows_grpc_health_on_a_storage_problem() {
    // A free-space watermark above any disk: writes fail, health goes
    // NOT_SERVING, and /readyz with it; /healthz stays live.
    let server = TestServer::start(None, &["--min-free-mb", "1000000000"]);
    let started = Instant::now();
    let body = loop {
        let (status, body) = get(&server.metrics_addr, "/readyz", "localhost");
        if status.contains(" 503 ") {
            break body;
        }
        assert!(status.contains(" 200 "), "{status}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "/readyz still ready under the watermark"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(body.starts_with("not ready: storage:"), "{body}");
    assert!(body.contains("nearly full"), "{body}");
    let (status, _) = get(&server.metrics_addr, "/healthz", "localhost");
    assert!(status.contains(" 200 "), "{status}");
    let mut offers = server.offers().await;
    let err = offers
        .select_offer(select("coffee", &[("lifecycle", "active")]))
        .await
        .expect_err("not ready means SelectOffer fails");
    assert_eq!(err.code(), tonic::Code::Unavailable);
}

#[tokio::test]
async fn readyz_is_unready_while_shutting_down() {
    let mut server = TestServer::start(None, &["--shutdown-grace", "10s"]);
    let (status, _) = get(&server.metrics_addr, "/readyz", "localhost");
    assert!(status.contains(" 200 "), "{status}");
    // A RecordRedemptions stream in flight keeps the server draining
    // after SIGTERM (as in `shutdown`).
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut streaming = server.offers().await;
    let call = tokio::spawn(async move {
        streaming
            .record_redemptions(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.sigterm();
    let started = Instant::now();
    let body = loop {
        let (status, body) = get(&server.metrics_addr, "/readyz", "localhost");
        if status.contains(" 503 ") {
            break body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "/readyz still ready after SIGTERM: {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(body, "not ready: shutting down\n");
    let (status, _) = get(&server.metrics_addr, "/healthz", "localhost");
    assert!(
        status.contains(" 200 "),
        "still live while draining: {status}"
    );
    drop(tx);
    call.await
        .expect("task")
        .expect("the in-flight stream finishes");
    assert_eq!(server.wait_exit(Duration::from_secs(20)), Some(0));
}

#[tokio::test]
async fn metrics_have_build_info_process_series_and_help_everywhere() {
    let server = TestServer::start(None, &[]);
    let mut offers = server.offers().await;
    for _ in 0..3 {
        offers
            .select_offer(select("coffee", &[("lifecycle", "active")]))
            .await
            .expect("select");
    }
    let (status, text) = get(&server.metrics_addr, "/metrics", "anything");
    assert!(status.contains(" 200 "), "{status}");
    let build = format!(
        "offer_bandit_build_info{{version=\"{}\",schema=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        offer_bandit::store::SCHEMA_VERSION
    );
    assert!(text.contains(&build), "no {build} in\n{text}");
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
            .parse()
            .expect("a number")
    };
    let rss = value("process_resident_memory_bytes");
    assert!(rss > 1e6 && rss < 1e10, "rss {rss}");
    let fds = value("process_open_fds");
    assert!((5.0..10_000.0).contains(&fds), "fds {fds}");
    assert!(value("process_cpu_seconds_total") >= 0.0);
    assert!(value("process_max_fds") >= fds);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let start = value("process_start_time_seconds");
    assert!(
        start <= now + 1.0 && start > now - 600.0,
        "start {start}, now {now}"
    );

    let mut helped = HashSet::new();
    let mut typed = HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("help text");
            assert!(!help.trim().is_empty(), "{line}");
            helped.insert(name.to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.insert(rest.split(' ').next().expect("name").to_owned());
        }
    }
    let mut samples = 0;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name = line.split(['{', ' ']).next().expect("name");
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|b| typed.contains(*b)))
            .unwrap_or(name);
        assert!(helped.contains(base), "no # HELP for {base}:\n{text}");
        assert!(typed.contains(base), "no # TYPE for {base}");
        samples += 1;
    }
    assert!(samples > 10, "{text}");
}
