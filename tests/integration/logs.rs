//! Logs a machine reads: no colour codes when stderr is not a terminal, and
//! JSON lines whose fields are JSON values, not Rust debug strings.

use std::{
    io::{BufRead, BufReader, Read},
    process::{Command, Stdio},
    time::Duration,
};

/// Runs `serve` with stderr to a pipe until it is listening, stops it with
/// SIGTERM, and returns everything it logged.
fn serve_and_collect_logs(extra: &[&str]) -> String {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut child = Command::new(env!("CARGO_BIN_EXE_offer-bandit"))
        .args(["serve", "--listen", "127.0.0.1:0", "--no-metrics"])
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .args(extra)
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("offer-bandit listening on ") {
                let _ = tx.send(());
            }
        }
    });
    let mut stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut logs = String::new();
        stderr.read_to_string(&mut logs).expect("read stderr");
        logs
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the server did not start");
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success());
    assert!(child.wait().expect("wait").success());
    reader.join().expect("reader")
}

#[test]
fn text_logs_to_a_pipe_have_no_escape_codes() {
    let logs = serve_and_collect_logs(&[]);
    assert!(logs.contains("serving"), "{logs}");
    assert!(
        !logs.contains('\x1b'),
        "escape codes in logs written to a pipe:\n{logs:?}"
    );
}

#[test]
fn json_log_fields_are_json_values() {
    let logs = serve_and_collect_logs(&["--log-format", "json", "--retention", "30d"]);
    let mut serving = None;
    for line in logs.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        let fields = v["fields"].as_object().expect("fields");
        for (name, value) in fields {
            if let Some(s) = value.as_str() {
                for debug in ["Some(", "None", " { ", "[\""] {
                    assert!(
                        !s.starts_with(debug) && !s.contains(debug),
                        "{name} is a Rust debug string: {s}\n{line}"
                    );
                }
            }
        }
        if fields.get("message").and_then(|m| m.as_str()) == Some("serving") {
            serving = Some(fields.clone());
        }
    }
    let serving = serving.expect("a \"serving\" line");
    assert_eq!(serving["retention"], "30days", "{serving:?}");
    assert_eq!(serving["limits.max_features"], 64, "{serving:?}");
    assert!(serving["cache_bytes"].is_u64(), "{serving:?}");
    assert_eq!(serving["durable_decisions"], false);
    assert!(
        serving["campaigns"]
            .as_str()
            .is_some_and(|c| c.starts_with("coffee"))
    );
    assert_eq!(serving["auth_scope"], "admin");
}
