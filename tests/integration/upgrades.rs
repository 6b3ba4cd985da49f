//! Upgrades and the CLI around them: `--version` names the store schema,
//! restore refuses an existing store in words an operator understands, and
//! the CLI ends quietly when its reader goes away (`report | head -1`).

use std::process::{Command, Stdio};

use crate::support::{TestServer, offer_bandit_cli, select};

#[test]
fn version_names_the_store_schema() {
    let want = format!(
        "offer-bandit {} (store schema {})",
        env!("CARGO_PKG_VERSION"),
        offer_bandit::store::SCHEMA_VERSION
    );
    assert_eq!(offer_bandit_cli(&["--version"]).trim(), want);
    assert!(offer_bandit_cli(&["serve", "--version"]).contains("(store schema "));
}

#[test]
fn restore_into_an_existing_store_says_so() {
    let mut server = TestServer::start(None, &[]);
    let tmp = tempfile::tempdir().expect("tmp");
    let backup = tmp.path().join("backup.bin");
    offer_bandit_cli(&[
        "backup",
        "--server",
        &server.url(),
        "--out",
        backup.to_str().expect("utf-8"),
    ]);
    let fresh = tmp.path().join("restored");
    let out = offer_bandit_cli(&[
        "restore",
        "--from",
        backup.to_str().expect("utf-8"),
        "--data-dir",
        fresh.to_str().expect("utf-8"),
    ]);
    assert!(out.starts_with("restored "), "{out}");
    server.stop();
    for existing in [&fresh, &server.data_dir] {
        let out = Command::new(env!("CARGO_BIN_EXE_offer-bandit"))
            .args(["restore", "--from"])
            .arg(&backup)
            .arg("--data-dir")
            .arg(existing)
            .output()
            .expect("run restore");
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("already holds a store"), "{err}");
        assert!(err.contains("nothing was changed"), "{err}");
        assert!(!err.contains("corrupt"), "misleading: {err}");
    }
}

/// Runs the CLI with its stdout a pipe whose reader has already gone.
fn with_closed_stdout(args: &[&str]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_offer-bandit"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // The reader goes away before the CLI has connected to the server.
    drop(child.stdout.take());
    child.wait_with_output().expect("wait")
}

#[tokio::test]
async fn the_cli_ends_quietly_on_a_closed_pipe() {
    let server = TestServer::start(None, &[]);
    let mut offers = server.offers().await;
    for _ in 0..5 {
        offers
            .select_offer(select("coffee", &[("lifecycle", "active")]))
            .await
            .expect("select");
    }
    let url = server.url();
    for args in [
        vec!["report", "--server", &url, "--campaign", "coffee"],
        vec!["report", "--server", &url, "--campaign", "coffee", "--json"],
        vec!["export", "--server", &url, "--campaign", "coffee"],
    ] {
        let out = with_closed_stdout(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!err.contains("Broken pipe"), "{args:?}: {err}");
        assert!(
            matches!(out.status.code(), Some(0 | 141)),
            "{args:?}: {:?} {err}",
            out.status
        );
    }
}
