//! The red-team findings of issue 16, each checked against the real binary:
//! stray gRPC paths cannot grow `/metrics`; tokens have roles (read, decide,
//! admin) and the dashboard needs a read token; the dashboard answers only
//! to allowed `Host` names and sends security headers; its offer-share chart
//! is cached; the metrics port caps its connections and backs off when
//! accept fails.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use base64::Engine as _;
use offer_bandit::proto::{
    self, campaign_admin_client::CampaignAdminClient, offer_service_client::OfferServiceClient,
};
use tonic::{Code, transport::Channel};

use crate::support::{TestServer, select};

const ADMIN: &str = "admin-token-for-abuse-tests-0123";
const READ: &str = "read-token-for-abuse-tests-45678";
const DECIDE: &str = "decide-token-for-abuse-tests-9ab";

/// Writes the three tokens to files in `dir`; the serve flags naming them.
fn token_flags(dir: &std::path::Path) -> Vec<String> {
    let mut flags = Vec::new();
    for (flag, token) in [
        ("--auth-token-file", ADMIN),
        ("--read-token-file", READ),
        ("--decide-token-file", DECIDE),
    ] {
        let p = dir.join(&flag[2..]);
        std::fs::write(&p, format!("{token}\n")).expect("write token");
        flags.push(flag.to_owned());
        flags.push(p.display().to_string());
    }
    flags
}

fn start(extra: &[String]) -> TestServer {
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    TestServer::start(None, &extra)
}

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

fn code<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Code {
    r.map_or_else(|s| s.code(), |_| Code::Ok)
}

/// One HTTP/1.1 GET with these headers (a `host` header is the caller's
/// business): the status line's code, the head, the body.
fn get(addr: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut req = format!("GET {path} HTTP/1.1\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    (status, head.to_ascii_lowercase(), body.to_owned())
}

/// A GET of a dashboard page as a browser on this machine sends it.
fn page(server: &TestServer, path: &str, auth: Option<&str>) -> (u16, String, String) {
    let mut headers = vec![("host", server.metrics_addr.as_str())];
    if let Some(a) = auth {
        headers.push(("authorization", a));
    }
    get(&server.metrics_addr, path, &headers)
}

fn basic(token: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("anyone:{token}"))
    )
}

fn metrics(server: &TestServer) -> String {
    let (status, _, body) = get(&server.metrics_addr, "/metrics", &[("host", "x")]);
    assert_eq!(status, 200);
    body
}

/// A unary call on any path (the message is a ListCampaignsRequest).
async fn call_path(channel: Channel, path: &str, token: Option<&str>) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel);
    if grpc.ready().await.is_err() {
        return Code::Unavailable;
    }
    let path = http::uri::PathAndQuery::try_from(path.to_owned()).expect("a path");
    let codec = tonic_prost::ProstCodec::<proto::ListCampaignsRequest, proto::ListCampaignsResponse>::default();
    code(
        grpc.unary(
            with_token(proto::ListCampaignsRequest {}, token),
            path,
            codec,
        )
        .await,
    )
}

// --- 1. Metrics labels -----------------------------------------------------

#[tokio::test]
async fn random_grpc_paths_add_no_metric_series() {
    let tmp = tempfile::tempdir().expect("tmp");
    // The admin token only, as before roles: the test runs unchanged
    // against a server from before the fix.
    let mut flags = token_flags(tmp.path());
    flags.truncate(2);
    flags.extend(["--auth-scope".to_owned(), "all".to_owned()]);
    let server = start(&flags);
    let channel = server.channel().await;
    let mut refused = 0;
    for i in 0..200u32 {
        let h = blake3::hash(&i.to_le_bytes()).to_hex();
        // Unknown services, unknown methods of real services, with and
        // without a token (refused requests pass the metrics layer too).
        let path = if i % 2 == 0 {
            format!("/offerbandit.v1.R{}/M", &h[..16])
        } else {
            format!("/offerbandit.v1.OfferService/Bogus{}", &h[..16])
        };
        let token = (i % 4 < 2).then_some(ADMIN);
        let c = call_path(channel.clone(), &path, token).await;
        if token.is_none() {
            assert_eq!(c, Code::Unauthenticated, "{path}");
            refused += 1;
        } else {
            assert_eq!(c, Code::Unimplemented, "{path}");
        }
    }
    assert_eq!(refused, 100);
    // A real method still gets its own series.
    let listed = call_path(
        channel.clone(),
        "/offerbandit.v1.CampaignAdmin/ListCampaigns",
        Some(ADMIN),
    )
    .await;
    assert_eq!(listed, Code::Ok);

    let text = metrics(&server);
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("offer_bandit_rpc_requests_total{"))
        .collect();
    for line in &series {
        assert!(
            !line.contains("offerbandit.v1.R") && !line.contains("Bogus"),
            "a stray path became a label: {line}"
        );
    }
    assert!(
        series.len() <= 4,
        "series after 200 stray paths: {series:#?}"
    );
    let other: u64 = series
        .iter()
        .filter(|l| l.contains("method=\"other\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(other, 200, "{series:#?}");
    assert!(
        text.contains(
            "offer_bandit_rpc_requests_total{method=\"/offerbandit.v1.CampaignAdmin/ListCampaigns\",code=\"0\"} 1"
        ),
        "{text}"
    );
}

// --- 2. Roles, the dashboard's login, Host check, headers, chart cache -----

#[tokio::test]
async fn each_token_calls_what_its_role_allows() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut flags = token_flags(tmp.path());
    flags.extend(["--auth-scope".to_owned(), "all".to_owned()]);
    let server = start(&flags);
    let channel = server.channel().await;
    let mut admin = CampaignAdminClient::new(channel.clone());
    let mut offers = OfferServiceClient::new(channel.clone());
    let sel = || select("coffee", &[("lifecycle", "active")]);
    let report = || proto::GetCampaignReportRequest {
        campaign: "coffee".into(),
    };
    let forget = || proto::ForgetCustomerRequest {
        customer_id: "c1".into(),
    };
    for (token, select_code, read_code, write_code) in [
        (
            None,
            Code::Unauthenticated,
            Code::Unauthenticated,
            Code::Unauthenticated,
        ),
        (
            Some(DECIDE),
            Code::Ok,
            Code::PermissionDenied,
            Code::PermissionDenied,
        ),
        (
            Some(READ),
            Code::PermissionDenied,
            Code::Ok,
            Code::PermissionDenied,
        ),
        (Some(ADMIN), Code::Ok, Code::Ok, Code::Ok),
    ] {
        let who = token.unwrap_or("no token");
        assert_eq!(
            code(offers.select_offer(with_token(sel(), token)).await),
            select_code,
            "SelectOffer, {who}"
        );
        assert_eq!(
            code(
                admin
                    .list_campaigns(with_token(proto::ListCampaignsRequest {}, token))
                    .await
            ),
            read_code,
            "ListCampaigns, {who}"
        );
        assert_eq!(
            code(admin.get_campaign_report(with_token(report(), token)).await),
            read_code,
            "GetCampaignReport, {who}"
        );
        assert_eq!(
            code(admin.forget_customer(with_token(forget(), token)).await),
            write_code,
            "ForgetCustomer, {who}"
        );
        // The decision log holds every customer's context: admin only.
        let export = admin
            .export_decisions(with_token(
                proto::ExportDecisionsRequest {
                    campaign: "coffee".into(),
                    ..Default::default()
                },
                token,
            ))
            .await;
        assert_eq!(code(export), write_code, "ExportDecisions, {who}");
    }
    let denied = admin
        .forget_customer(with_token(forget(), Some(READ)))
        .await
        .expect_err("read token");
    assert!(
        denied.message().contains("read") && denied.message().contains("admin"),
        "{}",
        denied.message()
    );
}

#[tokio::test]
async fn the_dashboard_needs_a_read_or_admin_token() {
    let tmp = tempfile::tempdir().expect("tmp");
    // Default scope ("admin"): the dashboard still needs a token.
    let server = start(&token_flags(tmp.path()));
    for path in ["/", "/campaigns/coffee"] {
        let (status, head, _) = page(&server, path, None);
        assert_eq!(status, 401, "{path}: {head}");
        assert!(
            head.contains("www-authenticate: basic realm=\"offer-bandit\""),
            "{head}"
        );
        for ok in [
            format!("Bearer {READ}"),
            format!("Bearer {ADMIN}"),
            basic(READ),
            basic(ADMIN),
        ] {
            let (status, head, _) = page(&server, path, Some(&ok));
            assert_eq!(status, 200, "{path} with {ok}: {head}");
        }
        let (status, _, _) = page(&server, path, Some(&format!("Bearer {DECIDE}")));
        assert_eq!(status, 403, "{path}: the decide token does not read");
        for bad in [
            "Bearer not-a-token-of-this-server".to_owned(),
            basic("not-a-token-of-this-server"),
            format!("Basic {READ}"),
            "Basic !!!".to_owned(),
        ] {
            let (status, _, _) = page(&server, path, Some(&bad));
            assert_eq!(status, 401, "{path} with {bad}");
        }
    }
    // A token in the URL is not a login (it would end up in logs).
    let (status, _, _) = page(&server, &format!("/?token={READ}"), None);
    assert_ne!(status, 200);
    // Prometheus scrapes without credentials.
    assert!(metrics(&server).contains("offer_bandit_"));
    // And a server without tokens keeps an open dashboard.
    let open = TestServer::start(None, &[]);
    assert_eq!(page(&open, "/", None).0, 200);
}

#[tokio::test]
async fn the_dashboard_answers_only_to_allowed_hosts() {
    let server = TestServer::start(
        None,
        &["--dashboard-allowed-hosts", "dash.internal,Ops.Example"],
    );
    let port = server
        .metrics_addr
        .rsplit(':')
        .next()
        .expect("a port")
        .to_owned();
    for host in [
        server.metrics_addr.clone(),
        format!("localhost:{port}"),
        "localhost".to_owned(),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        format!("dash.internal:{port}"),
        "ops.example".to_owned(),
    ] {
        let (status, head, _) = get(&server.metrics_addr, "/", &[("host", &host)]);
        assert_eq!(status, 200, "{host}: {head}");
    }
    for host in [
        "evil.example".to_owned(),
        format!("evil.example:{port}"),
        "dash.internal.evil.example".to_owned(),
        "localhost.evil.example".to_owned(),
        "10.1.2.3".to_owned(),
    ] {
        for path in ["/", "/campaigns/coffee"] {
            let (status, head, _) = get(&server.metrics_addr, path, &[("host", &host)]);
            assert_eq!(status, 421, "{host}{path}: {head}");
        }
    }
    // No Host at all (HTTP/1.0 style) is refused too.
    let (status, _, _) = get(&server.metrics_addr, "/", &[]);
    assert_eq!(status, 421);
    // /metrics answers whatever the Host.
    let (status, _, _) = get(
        &server.metrics_addr,
        "/metrics",
        &[("host", "evil.example")],
    );
    assert_eq!(status, 200);
}

#[tokio::test]
async fn every_page_sends_security_headers() {
    let tmp = tempfile::tempdir().expect("tmp");
    let server = start(&token_flags(tmp.path()));
    let read = format!("Bearer {READ}");
    let cases = [
        ("/", Some(read.as_str()), 200),
        ("/campaigns/coffee", Some(read.as_str()), 200),
        ("/campaigns/nope", Some(read.as_str()), 404),
        ("/", None, 401),
    ];
    for (path, auth, want) in cases {
        let (status, head, _) = page(&server, path, auth);
        assert_eq!(status, want, "{path}");
        for header in [
            "content-security-policy: default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'",
            "x-frame-options: deny",
            "x-content-type-options: nosniff",
            "referrer-policy: no-referrer",
            "cache-control: no-store",
        ] {
            assert!(head.contains(header), "{path} lacks {header}:\n{head}");
        }
    }
}

/// The "N decisions from ..." note under the offer-share chart.
fn chart_note(html: &str) -> String {
    let at = html
        .find("decisions from")
        .unwrap_or_else(|| panic!("no chart note in {html}"));
    let start = html[..at].rfind('>').map_or(0, |i| i + 1);
    html[start..at].trim().to_owned()
}

#[tokio::test]
async fn the_offer_share_chart_is_cached_briefly() {
    let server = TestServer::start(None, &[]);
    let offers = server.offers().await;
    let decide = |n: usize| {
        let mut offers = offers.clone();
        async move {
            for i in 0..n {
                let mut req = select("coffee", &[("lifecycle", "active")]);
                req.customer_id = format!("c{i}");
                offers.select_offer(req).await.expect("select");
            }
        }
    };
    decide(40).await;
    let (status, _, first) = page(&server, "/campaigns/coffee", None);
    assert_eq!(status, 200);
    decide(10).await;
    let started = Instant::now();
    let (_, _, second) = page(&server, "/campaigns/coffee", None);
    // The report above the chart is live; the chart (a read of up to 100k
    // decision records) is the one from 10 s ago at most.
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_ne!(first, second, "the report is live");
    assert_eq!(
        chart_note(&second),
        chart_note(&first),
        "the chart was read again"
    );
}

#[test]
fn role_tokens_need_the_admin_token_and_stay_off_argv() {
    let tmp = tempfile::tempdir().expect("tmp");
    let read = tmp.path().join("read");
    std::fs::write(&read, READ).expect("write");
    let serve = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_offer-bandit"));
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--no-metrics",
            "--data-dir",
        ])
        .arg(tmp.path().join("d"))
        .args(args)
        .env_remove("OFFER_BANDIT_AUTH_TOKEN")
        .env_remove("OFFER_BANDIT_AUTH_TOKEN_FILE");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run");
        assert!(!out.status.success(), "{args:?} {env:?} started");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = serve(&["--read-token-file", &read.display().to_string()], &[]);
    assert!(err.contains("admin token"), "{err}");
    let err = serve(&[], &[("OFFER_BANDIT_DECIDE_TOKEN", DECIDE)]);
    assert!(err.contains("admin token"), "{err}");
    let err = serve(
        &["--read-token-file", &read.display().to_string()],
        &[("OFFER_BANDIT_AUTH_TOKEN", READ)],
    );
    assert!(err.contains("same"), "{err}");
    // Token values are never flags (they would show in `ps`).
    for flag in ["--read-token", "--decide-token", "--auth-token"] {
        let err = serve(&[flag, ADMIN], &[]);
        assert!(err.contains("unexpected argument"), "{flag}: {err}");
    }
    let help = crate::support::offer_bandit_cli(&["serve", "--help"]);
    assert!(help.contains("--read-token-file") && help.contains("--decide-token-file"));
    assert!(help.contains("--dashboard-allowed-hosts"));
}

// --- 3. The listener: connection cap, accept backoff ------------------------

#[test]
fn connections_beyond_the_cap_are_closed_at_once() {
    let server = TestServer::start(None, &[]);
    // 64 connections that send nothing: each holds a slot until the
    // request-head deadline (5 s).
    let idle: Vec<TcpStream> = (0..64)
        .map(|_| TcpStream::connect(&server.metrics_addr).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let mut s = TcpStream::connect(&server.metrics_addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n");
    let mut out = Vec::new();
    // EOF or a reset, and no response.
    let _ = s.read_to_end(&mut out);
    assert!(
        out.is_empty(),
        "the 65th connection was served: {}",
        String::from_utf8_lossy(&out)
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "closed at once, not after a timeout"
    );
    // Once the idle connections go, the port serves again.
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // Until the server has seen the idle ones close, a new connection
        // may still be over the cap (closed or reset): try again.
        let ok = std::panic::catch_unwind(|| {
            get(&server.metrics_addr, "/metrics", &[("host", "x")]).0 == 200
        })
        .unwrap_or(false);
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "the port did not recover");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// User plus system CPU time of a process, in clock ticks.
#[cfg(target_os = "linux")]
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields 14 and 15: utime and stime.
    let ticks = |n| {
        crate::support::stat_field(&stat, n)
            .and_then(|f| f.parse::<u64>().ok())
            .expect("utime and stime")
    };
    ticks(14) + ticks(15)
}

#[cfg(target_os = "linux")]
#[test]
fn a_failing_accept_backs_off_instead_of_spinning() {
    let prlimit = std::path::Path::new("/usr/bin/prlimit");
    if !prlimit.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run this test: util-linux's prlimit is missing"
        );
        eprintln!("skipping: no /usr/bin/prlimit");
        return;
    }
    let server = TestServer::start(None, &[]);
    let pid = server.pid();
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fds")
        .count();
    // Room for two more descriptors: the third connection's accept fails
    // with EMFILE, and keeps failing while that connection waits.
    let limit = open + 2;
    let status = std::process::Command::new(prlimit)
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={limit}:{limit}"))
        .status()
        .expect("prlimit");
    assert!(status.success());
    let conns: Vec<TcpStream> = (0..6)
        .map(|_| TcpStream::connect(&server.metrics_addr).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_millis(1500));
    let used = cpu_ticks(pid) - before;
    drop(conns);
    // A spinning accept loop burns a whole core: ~150 ticks in 1.5 s.
    assert!(
        used < 40,
        "{used} clock ticks of CPU in 1.5 s with accept failing"
    );
}
