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

/// The raw schema mark of the store in `dir` (big-endian u32).
fn schema_of(dir: &std::path::Path) -> u32 {
    let db = sled::open(dir).expect("open");
    let tree = db.open_tree("offer-bandit").expect("tree");
    let v = tree.get("meta/schema").expect("get").expect("a mark");
    u32::from_be_bytes(<[u8; 4]>::try_from(v.as_ref()).expect("4 bytes"))
}

fn set_schema(dir: &std::path::Path, schema: u32) {
    let db = sled::open(dir).expect("open");
    let tree = db.open_tree("offer-bandit").expect("tree");
    tree.insert("meta/schema", &schema.to_be_bytes())
        .expect("insert");
    db.flush().expect("flush");
}

#[test]
fn migrate_dry_run_says_what_it_would_do_and_changes_nothing() {
    let mut server = TestServer::start(None, &[]);
    server.stop();
    let dir = server.data_dir.clone();
    let d = dir.to_str().expect("utf-8");
    let current = offer_bandit::store::SCHEMA_VERSION;
    assert_eq!(schema_of(&dir), current);
    set_schema(&dir, 6);

    let out = offer_bandit_cli(&["migrate", "--dry-run", "--data-dir", d]);
    assert!(out.contains("dry run, nothing was changed"), "{out}");
    assert!(out.contains("is at schema 6"), "{out}");
    assert!(out.contains(&format!("marks it schema {current}")), "{out}");
    assert_eq!(schema_of(&dir), 6, "a dry run writes nothing");
    let parent = dir.parent().expect("parent");
    let leftovers: Vec<_> = std::fs::read_dir(parent)
        .expect("read")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains("migrate-plan"))
        .collect();
    assert!(leftovers.is_empty(), "the copy is removed");

    let out = offer_bandit_cli(&["migrate", "--data-dir", d]);
    assert!(out.starts_with("migrated"), "{out}");
    assert_eq!(schema_of(&dir), current);
    let out = offer_bandit_cli(&["migrate", "--dry-run", "--data-dir", d]);
    assert!(out.contains("nothing to migrate"), "{out}");

    // A newer build's store: refused, nothing changed.
    set_schema(&dir, current + 1);
    let out = Command::new(env!("CARGO_BIN_EXE_offer-bandit"))
        .args(["migrate", "--dry-run", "--data-dir", d])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("written by another version"), "{err}");
    assert_eq!(schema_of(&dir), current + 1);

    let empty = tempfile::tempdir().expect("tmp");
    let out = offer_bandit_cli(&[
        "migrate",
        "--dry-run",
        "--data-dir",
        empty.path().join("none").to_str().expect("utf-8"),
    ]);
    assert!(out.contains("holds no store"), "{out}");
}
