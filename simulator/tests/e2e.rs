//! End to end: the real server, driven by `offer-sim drive` with scenario
//! traffic under segment-ts; its decision log exported with
//! `offer-bandit export`; `offer-sim ope` estimates other policies' value on
//! that log, and the interval must contain their value simulated directly.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::Value;

fn offer_sim() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_offer-sim"))
}

/// The server binary, built next to offer-sim by `cargo test --workspace`.
fn offer_bandit() -> PathBuf {
    let p = offer_sim().with_file_name(format!("offer-bandit{}", std::env::consts::EXE_SUFFIX));
    assert!(
        p.exists(),
        "{} is missing: run `cargo test --workspace` (it builds the server too)",
        p.display()
    );
    p
}

fn run(bin: &PathBuf, args: &[&str]) -> String {
    let out = Command::new(bin).args(args).output().expect("runs");
    assert!(
        out.status.success(),
        "{} {args:?}: {}",
        bin.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Server(Child);

/// Starts the server with `args` after `serve --listen 127.0.0.1:0`; the
/// running server, and the address it printed.
fn serve(args: &[&std::ffi::OsStr]) -> (Server, String) {
    let mut child = Command::new(offer_bandit())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("server starts");
    let mut line = String::new();
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    while !line.starts_with("offer-bandit listening on") {
        line.clear();
        assert!(
            stdout.read_line(&mut line).expect("address line") > 0,
            "no address line"
        );
    }
    let addr = line.trim().rsplit(' ').next().expect("address").to_owned();
    (Server(child), addr)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn ope_on_an_exported_log_covers_the_directly_simulated_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/coffee-loyalty.toml");
    let config = dir.path().join("campaign.toml");
    let toml = run(
        &offer_sim(),
        &[
            "campaign-config",
            "--scenario",
            scenario,
            "--id",
            "coffee",
            "--reward-window",
            "4s",
        ],
    );
    // A floor on every offer's probability, as a campaign whose log is to
    // be evaluated off-policy should have: without it, a logger that all
    // but stopped showing an offer leaves the fixed policy's estimate
    // without support, and `ope` rightly withholds it (CI saw that once).
    let toml = toml.replacen(
        "policy = \"segment-ts\"",
        "policy = \"segment-ts\"\nmin_propensity = 0.02",
        1,
    );
    assert!(toml.contains("min_propensity"), "{toml}");
    std::fs::write(&config, toml).expect("write config");
    let data = dir.path().join("data");
    let (_server, addr) = serve(&[
        "--metrics-listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--sweep-interval".as_ref(),
        "100ms".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        "--data-dir".as_ref(),
        data.as_os_str(),
    ]);
    let addr = format!("http://{addr}");

    // One policy (the server's segment-ts) makes 4,000 decisions; all resolve.
    let driven = run(
        &offer_sim(),
        &[
            "drive",
            "--target",
            &addr,
            "--scenario",
            scenario,
            "--campaign",
            "coffee",
            "--decisions",
            "4000",
            "--seed",
            "7",
            "--json",
        ],
    );
    let driven: Value = serde_json::from_str(&driven).expect("drive --json");
    // A redemption refused as late would turn a success into a failure in the log.
    assert_eq!(driven["rejected"], 0, "redemptions refused: {driven}");
    // The load command against the same server: the no-work baseline.
    let load = run(
        &offer_sim(),
        &[
            "load",
            "--target",
            &addr,
            "--rpc",
            "health",
            "--concurrency",
            "4",
            "--connections",
            "2",
            "--duration",
            "1s",
            "--json",
        ],
    );
    let load: Value = serde_json::from_str(&load).expect("load --json");
    assert!(load["rpcs"][0]["ok"].as_u64().unwrap_or(0) > 100, "{load}");
    assert_eq!(load["connections"], 2, "{load}");
    // The load generator's own CPU, in cores: it did some work.
    let busy = load["client_cores_busy"]
        .as_f64()
        .expect("client_cores_busy on Linux");
    assert!(busy > 0.0 && busy.is_finite(), "{load}");
    assert!(load["client_cores"].as_u64().unwrap_or(0) >= 1, "{load}");
    assert!(
        load["rpcs"][0]["errors"]
            .as_object()
            .is_some_and(|e| e.is_empty()),
        "{load}"
    );
    // A refusal is counted by its status, not as a call: an unknown campaign
    // (a trailers-only reply, read by the load generator's own client).
    let refused = run(
        &offer_sim(),
        &[
            "load",
            "--target",
            &addr,
            "--campaign",
            "no-such-campaign",
            "--concurrency",
            "2",
            "--duration",
            "300ms",
            "--json",
        ],
    );
    let refused: Value = serde_json::from_str(&refused).expect("load --json");
    assert_eq!(refused["rpcs"][0]["ok"], 0, "{refused}");
    assert!(
        refused["rpcs"][0]["errors"]["NotFound"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "{refused}"
    );
    // Let every reward window close and the sweep expire the rest.
    std::thread::sleep(Duration::from_millis(4_600));
    let log = dir.path().join("log.jsonl");
    run(
        &offer_bandit(),
        &[
            "export",
            "--server",
            &addr,
            "--campaign",
            "coffee",
            "--out",
            log.to_str().expect("utf-8"),
        ],
    );
    let lines = std::fs::read_to_string(&log).expect("log");
    assert_eq!(lines.lines().count(), 4_000);
    assert!(
        !lines.contains("\"pending\""),
        "every decision resolved before the export"
    );
    // SelectOffer through the load generator's own client, after the
    // export: answered (replies decoded), no errors.
    let select = run(
        &offer_sim(),
        &[
            "load",
            "--target",
            &addr,
            "--campaign",
            "coffee",
            "--scenario",
            scenario,
            "--concurrency",
            "4",
            "--duration",
            "500ms",
            "--json",
        ],
    );
    let select: Value = serde_json::from_str(&select).expect("load --json");
    assert_eq!(select["rpcs"][0]["rpc"], "SelectOffer", "{select}");
    assert!(
        select["rpcs"][0]["ok"].as_u64().unwrap_or(0) > 10,
        "{select}"
    );
    assert!(
        select["rpcs"][0]["errors"]
            .as_object()
            .is_some_and(|e| e.is_empty()),
        "{select}"
    );

    // Each target's true value over the same 4,000 visits, by simulating it
    // directly (its expected reward, averaged over 16 seeds of visits).
    let truth = |policy: &str| -> (f64, f64, f64) {
        let out = run(
            &offer_sim(),
            &[
                "compare",
                "--scenario",
                scenario,
                "--rounds",
                "4000",
                "--seeds",
                "16",
                "--policies",
                policy,
                "--json",
                "--quiet",
            ],
        );
        let v: Vec<Value> = serde_json::from_str(&out).expect("json");
        let ci = &v[0]["mean_expected_reward_ci"];
        let get = |k: &str| ci[k].as_f64().unwrap_or_else(|| panic!("{k} in {ci}"));
        (get("mean"), get("low"), get("high"))
    };
    for target in ["uniform", "fixed:double_points"] {
        // The simulated value is itself an estimate (16 seeds), with its
        // own 95% interval.
        let (want, want_lo, want_hi) = truth(target);
        let out = run(
            &offer_sim(),
            &[
                "ope",
                "--logs",
                log.to_str().expect("utf-8"),
                "--policy",
                target,
                // The bootstrap resamples rounds as if independent, but an
                // adaptive logger's are not, so its intervals run narrow:
                // at 99%, 13 of 15 runs of this test covered on 2026-12-01
                // (4 intervals each). 99.9% with 4,000 resamples keeps the
                // test a check of the estimators, not of luck.
                "--level",
                "0.999",
                "--bootstrap",
                "4000",
                "--json",
            ],
        );
        let v: Vec<Value> = serde_json::from_str(&out).expect("json");
        for e in v
            .iter()
            .filter(|e| e["estimator"] == "ips" || e["estimator"] == "dr")
        {
            let (lo, hi) = (
                e["ci_low"].as_f64().expect("lo"),
                e["ci_high"].as_f64().expect("hi"),
            );
            println!(
                "{target}: {} {:.4} in [{lo:.4}, {hi:.4}], simulated {want:.4} in [{want_lo:.4}, {want_hi:.4}]",
                e["estimator"], e["estimate"]
            );
            // The two intervals must meet: the OPE interval misses the
            // simulated value only by the simulation's own uncertainty.
            assert!(
                lo <= want_hi && want_lo <= hi,
                "{target}: {} interval [{lo}, {hi}] misses the simulated [{want_lo}, {want_hi}]",
                e["estimator"]
            );
        }
    }
}

/// `offer-sim load` against a TLS server: `https://` with the CA to trust
/// (here the server's own self-signed certificate), through both its lean
/// client (SelectOffer, Health/Check) and tonic's (redemptions).
#[test]
fn load_speaks_tls_to_a_tls_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).expect("write cert");
    std::fs::write(&key_path, signing_key.serialize_pem()).expect("write key");
    let data = dir.path().join("data");
    let (_server, addr) = serve(&[
        "--no-metrics".as_ref(),
        "--data-dir".as_ref(),
        data.as_os_str(),
        "--tls-cert".as_ref(),
        cert_path.as_os_str(),
        "--tls-key".as_ref(),
        key_path.as_os_str(),
    ]);
    let target = format!("https://{addr}");
    let ca = cert_path.display().to_string();
    for rpc in ["select", "health"] {
        let out = run(
            &offer_sim(),
            &[
                "load",
                "--target",
                &target,
                "--ca-cert",
                &ca,
                "--tls-domain",
                "localhost",
                "--rpc",
                rpc,
                "--concurrency",
                "4",
                "--duration",
                "500ms",
                // Redemptions come due at once: tonic's channel speaks TLS too.
                "--seconds-per-day",
                "0.001",
                "--json",
            ],
        );
        let report: Value = serde_json::from_str(&out).expect("load --json");
        assert!(
            report["rpcs"][0]["ok"].as_u64().unwrap_or(0) > 10,
            "{report}"
        );
        assert!(
            report["rpcs"][0]["errors"]
                .as_object()
                .is_some_and(|e| e.is_empty()),
            "{report}"
        );
        if rpc == "select" {
            let redeemed = report["rpcs"]
                .as_array()
                .and_then(|r| r.iter().find(|r| r["rpc"] != "SelectOffer"));
            assert!(
                redeemed.is_some_and(|r| r["ok"].as_u64().unwrap_or(0) > 0),
                "redemptions over TLS: {report}"
            );
        }
    }
    // `offer-sim load` with `args` is refused: its stderr.
    let refused = |args: &[&str]| {
        let out = Command::new(offer_sim())
            .arg("load")
            .args(args)
            .args(["--duration", "100ms"])
            .output()
            .expect("runs");
        assert!(!out.status.success(), "{args:?} was accepted");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // The certificate is checked: another name, or another CA, fails.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let other_ca = dir.path().join("other.pem");
    std::fs::write(&other_ca, other.cert.pem()).expect("write");
    let other_ca = other_ca.to_str().expect("path");
    for (ca, domain) in [(ca.as_str(), "elsewhere.example"), (other_ca, "localhost")] {
        let stderr = refused(&[
            "--target",
            &target,
            "--rpc",
            "health",
            "--ca-cert",
            ca,
            "--tls-domain",
            domain,
        ]);
        assert!(
            stderr.contains("certificate"),
            "{ca} for {domain}: {stderr}"
        );
    }
    // A CA for a plaintext target is a mistake, said as one.
    let plain = target.replacen("https://", "http://", 1);
    let stderr = refused(&["--target", &plain, "--ca-cert", &ca]);
    assert!(stderr.contains("is for https:// targets"), "{stderr}");
    // Without the CA, an https:// target is refused with the reason.
    let stderr = refused(&["--target", &target]);
    assert!(stderr.contains("--ca-cert"), "{stderr}");
}
