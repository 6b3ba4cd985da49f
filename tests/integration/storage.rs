//! Storage faults stop startup with a message (never a silent reset), and
//! backups taken while serving restore into a consistent store.

use std::{
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use offer_bandit::proto;

use crate::support::{TestServer, campaign_toml, redeem, select};

/// Runs `serve` on `data_dir` expecting it to refuse; returns its stderr.
fn refused_start(data_dir: &std::path::Path) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_offer-bandit"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--no-metrics",
            "--data-dir",
        ])
        .arg(data_dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            assert!(!status.success(), "the server must refuse this store");
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server started on a damaged store");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn a_corrupt_record_stops_startup_and_names_its_key() {
    let mut server = TestServer::start(None, &[]);
    let mut offers = server.offers().await;
    offers
        .select_offer(select("coffee", &[("lifecycle", "active")]))
        .await
        .expect("select");
    server.stop();
    {
        let db = sled::open(server.data_dir()).expect("open sled");
        let tree = db.open_tree("offer-bandit").expect("tree");
        // Decisions are written in blocks (`b/`, one per write group).
        let key = tree
            .scan_prefix(b"b/")
            .keys()
            .next()
            .expect("a block of decisions")
            .expect("key");
        // Right format version, garbage after it.
        tree.insert(&key, vec![1u8, 0xff, 0xff, 0xff])
            .expect("insert");
        db.flush().expect("flush");
    }
    let err = refused_start(server.data_dir());
    assert!(
        err.contains("corrupt or unsupported record at key b/"),
        "{err}"
    );
    assert!(err.contains("nothing was changed"), "{err}");
    // And again: the store was not reset by the failed start.
    let err = refused_start(server.data_dir());
    assert!(err.contains("corrupt or unsupported record"), "{err}");
}

#[tokio::test]
async fn an_unknown_format_version_stops_startup() {
    let mut server = TestServer::start(None, &[]);
    server.stop();
    {
        let db = sled::open(server.data_dir()).expect("open sled");
        let tree = db.open_tree("offer-bandit").expect("tree");
        tree.insert(b"m/coffee\0x\0double_points", vec![9u8, 1, 2])
            .expect("insert");
        db.flush().expect("flush");
    }
    let err = refused_start(server.data_dir());
    assert!(err.contains("format version 9"), "{err}");
}

#[tokio::test]
async fn a_backup_taken_under_load_restores_a_consistent_store() {
    let config = campaign_toml("b", &["tier"], "1h", &["x", "y", "z"]);
    let server = TestServer::start(Some(&config), &[]);
    // Traffic keeps flowing while the backup is taken.
    let stop = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..4 {
        let mut offers = server.offers().await;
        let (stop, made) = (stop.clone(), made.clone());
        workers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let tier = if (w + i).is_multiple_of(2) {
                    "gold"
                } else {
                    "silver"
                };
                if let Ok(d) = offers.select_offer(select("b", &[("tier", tier)])).await {
                    made.fetch_add(1, Ordering::Relaxed);
                    if i.is_multiple_of(3) {
                        let _ = offers
                            .record_redemption(redeem(&d.into_inner().decision_id))
                            .await;
                    }
                }
                i += 1;
            }
        }));
    }
    while made.load(Ordering::Relaxed) < 300 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("store.backup");
    let out = Command::new(env!("CARGO_BIN_EXE_offer-bandit"))
        .args(["backup", "--server", &server.url(), "--out"])
        .arg(&file)
        .output()
        .expect("backup");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let at_backup = made.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("worker");
    }
    let restored_dir = tmp.path().join("restored");
    let out = Command::new(env!("CARGO_BIN_EXE_offer-bandit"))
        .args(["restore", "--from"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&restored_dir)
        .output()
        .expect("restore");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Restoring over an existing store is refused.
    let again = Command::new(env!("CARGO_BIN_EXE_offer-bandit"))
        .args(["restore", "--from"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&restored_dir)
        .output()
        .expect("restore");
    assert!(!again.status.success());

    let restored = TestServer::start_on(Some(&config), &restored_dir, &[]);
    let mut admin = restored.admin().await;
    let stats = admin
        .get_campaign_stats(proto::GetCampaignStatsRequest {
            campaign: "b".into(),
        })
        .await
        .expect("stats")
        .into_inner();
    // Consistent: every counted trial has its decision record, and the
    // redemptions counted are exactly the redeemed records.
    let mut log = admin
        .export_decisions(proto::ExportDecisionsRequest {
            campaign: "b".into(),
            since_unix_ms: 0,
            until_unix_ms: 0,
        })
        .await
        .expect("export")
        .into_inner();
    let (mut records, mut redeemed) = (0u64, 0u64);
    while let Some(e) = log.message().await.expect("entry") {
        records += 1;
        redeemed += u64::from(e.outcome == "redeemed");
    }
    let trials: u64 = stats.offers.iter().map(|o| o.decisions).sum();
    let successes: u64 = stats.offers.iter().map(|o| o.redeemed).sum();
    assert_eq!(trials, records);
    assert_eq!(successes, redeemed);
    assert!(
        records >= 300,
        "the backup holds what was made before it ({records})"
    );
    assert!(
        records <= at_backup + 8,
        "nothing made after the backup ({records} vs {at_backup})"
    );
}
