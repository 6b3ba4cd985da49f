//! The example clients in examples/ (Python and Node.js, each on its
//! language's own gRPC library) run against the real server: the integration
//! pattern the README recommends (deadline, fallback, request_id retries,
//! redemption retries) works as written. `.ci/run` installs their
//! dependencies; outside CI a missing one skips the test with a message.

use std::{path::Path, process::Command};

use crate::support::TestServer;

/// Runs an example and parses the one JSON object it prints.
fn run(program: &str, args: &[&str], dir: &Path) -> serde_json::Value {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// What every example must have done against a live server.
fn check_live(v: &serde_json::Value, who: &str) {
    let shown = &v["shown"];
    let id = shown["decision_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{who}: {v}"));
    assert_eq!(id.len(), 56, "{who}: a version-1 decision id: {v}");
    let offer = shown["offer_id"].as_str().expect("offer_id");
    let offers = [
        "bogo_afternoon",
        "free_pastry",
        "double_points",
        "winback_20pct",
        "coffee_15pct",
    ];
    assert!(offers.contains(&offer), "{who}: {offer}");
    assert!(shown.get("fallback").is_none(), "{who}: {v}");
    assert!(
        !shown["offer_name"].as_str().unwrap_or_default().is_empty(),
        "{who}: the reply names the offer: {v}"
    );
    let p = shown["propensity"].as_f64().expect("propensity");
    assert!(p > 0.0 && p <= 1.0, "{who}: {p}");
    // The retry with the same request_id replayed the decision.
    assert_eq!(
        v["retry"]["decision_id"], shown["decision_id"],
        "{who}: {v}"
    );
    assert_eq!(v["retry"]["replayed"], true, "{who}: {v}");
    // The redemption counted once; its repeat said so.
    assert_eq!(v["redeemed"]["already_recorded"], false, "{who}: {v}");
    assert_eq!(v["redeemed"]["offer_id"], offer, "{who}: {v}");
    assert_eq!(v["redeemed_again"]["already_recorded"], true, "{who}: {v}");
}

/// With nothing listening, checkout shows its fallback and carries on; the
/// fallback's log waits (in a real caller's queue).
fn check_fallback(v: &serde_json::Value, who: &str) {
    assert_eq!(v["shown"]["offer_id"], "double_points", "{who}: {v}");
    // Refused connections (retried per the service config until the
    // deadline): UNAVAILABLE or DEADLINE_EXCEEDED.
    let code = v["shown"]["fallback"].as_str().unwrap_or_default();
    assert!(
        ["UNAVAILABLE", "DEADLINE_EXCEEDED"].contains(&code),
        "{who}: {v}"
    );
    assert!(v["fallback_logged"].is_null(), "{who}: {v}");
    assert!(v.get("redeemed").is_none(), "{who}: {v}");
}

/// With a deadline already past, checkout shows its fallback, and the live
/// server records it as a decision of the `fallback` arm.
fn check_logged_fallback(v: &serde_json::Value, who: &str) {
    assert_eq!(v["shown"]["offer_id"], "double_points", "{who}: {v}");
    assert_eq!(v["shown"]["fallback"], "DEADLINE_EXCEEDED", "{who}: {v}");
    let id = v["fallback_logged"]["decision_id"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(id.len(), 56, "{who}: the fallback is a decision: {v}");
}

/// The campaign report's fallback arm counts what the examples logged.
async fn fallbacks(server: &TestServer) -> u64 {
    let mut admin = server.admin().await;
    let r = admin
        .get_campaign_report(offer_bandit::proto::GetCampaignReportRequest {
            campaign: "coffee".into(),
        })
        .await
        .expect("report")
        .into_inner();
    r.fallback.map_or(0, |a| a.decisions)
}

/// A port nothing listens on: bound, then released.
fn dead_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    drop(l);
    addr
}

fn skip_or_fail(test: &str, why: &str) {
    assert!(std::env::var_os("CI").is_none(), "{why} (required in CI)");
    eprintln!("SKIPPED {test}: {why}");
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn python_example_client() {
    let has = Command::new("python3")
        .args(["-c", "import grpc, grpc_tools"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has {
        return skip_or_fail(
            "python_example_client",
            "python3 with grpcio and grpcio-tools not found (pip install grpcio grpcio-tools)",
        );
    }
    let server = TestServer::start(None, &[]);
    let script = "examples/python/checkout.py";
    let live = run(
        "python3",
        &[script, "--addr", &server.addr, "--deadline-ms", "5000"],
        root(),
    );
    check_live(&live, "python");
    let late = run(
        "python3",
        &[script, "--addr", &server.addr, "--deadline-ms", "0"],
        root(),
    );
    check_logged_fallback(&late, "python");
    assert_eq!(fallbacks(&server).await, 1);
    let down = run(
        "python3",
        &[script, "--addr", &dead_addr(), "--deadline-ms", "300"],
        root(),
    );
    check_fallback(&down, "python");
}

#[tokio::test]
async fn node_example_client() {
    let dir = root().join("examples/node");
    let has = dir.join("node_modules/@grpc/grpc-js").is_dir()
        && Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !has {
        return skip_or_fail(
            "node_example_client",
            "node or examples/node/node_modules not found (cd examples/node && npm ci)",
        );
    }
    let server = TestServer::start(None, &[]);
    let live = run(
        "node",
        &[
            "checkout.js",
            "--addr",
            &server.addr,
            "--deadline-ms",
            "5000",
        ],
        &dir,
    );
    check_live(&live, "node");
    let late = run(
        "node",
        &["checkout.js", "--addr", &server.addr, "--deadline-ms", "0"],
        &dir,
    );
    check_logged_fallback(&late, "node");
    assert_eq!(fallbacks(&server).await, 1);
    let down = run(
        "node",
        &[
            "checkout.js",
            "--addr",
            &dead_addr(),
            "--deadline-ms",
            "300",
        ],
        &dir,
    );
    check_fallback(&down, "node");
}
