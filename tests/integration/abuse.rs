//! What a red-team pass did to the server from outside (issue 16), each
//! finding replayed against the real binary: decision ids, replays across
//! customers, header-only streams, connections, a full disk, backups, limits
//! and the smaller ones.

use std::{
    io::Write,
    net::TcpStream,
    time::{Duration, Instant},
};

use offer_bandit::proto::{self, RecordRedemptionRequest};
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::support::{
    TestServer, campaign_toml, closed_within, http_get, redeem, select, serve_refuses,
};

/// A segment-ts campaign of two offers; `a` caps a redemption's value at 10.
fn capped_campaign() -> String {
    "[[campaigns]]\nid = \"c\"\npolicy = \"segment-ts\"\nsegment_by = [\"tier\"]\nreward_window = \"1h\"\n\
     [[campaigns.offers]]\nid = \"a\"\nvalue = 2.0\nmax_value = 10.0\n\
     [[campaigns.offers]]\nid = \"b\"\nvalue = 1.0\nmax_value = 10.0\n"
        .to_owned()
}

fn metric(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn decision_ids_are_unguessable_and_errors_name_no_offer() {
    let server = TestServer::start(Some(&capped_campaign()), &[]);
    let mut offers = server.offers().await;
    // Other customers' decisions, then one of our own.
    let mut others = Vec::new();
    for i in 0..20 {
        let mut r = select("c", &[("tier", "gold")]);
        r.customer_id = format!("victim-{i}");
        others.push(offers.select_offer(r).await.expect("select").into_inner());
    }
    let mine = offers
        .select_offer(select("c", &[("tier", "gold")]))
        .await
        .expect("select")
        .into_inner();
    let id = &mine.decision_id;
    assert_eq!(
        id.len(),
        56,
        "version-1 ids: 16-byte locator + 12-byte MAC: {id}"
    );
    assert!(id.starts_with("01"), "version byte first: {id}");
    // The attack: neighbours of our own id (same stream, nearby sequence
    // numbers, nearby milliseconds) with our MAC or a guessed one. Every
    // guess is NOT_FOUND and none reaches a victim's decision.
    let seq = u32::from_str_radix(&id[24..32], 16).expect("hex");
    let mut guesses = 0;
    for delta in -25i64..=25 {
        for ms_delta in [-1i64, 0, 1] {
            let s = (i64::from(seq) + delta).clamp(0, i64::from(u32::MAX)) as u32;
            let ms = i64::from_str_radix(&id[2..14], 16).expect("hex") + ms_delta;
            let guess = format!("{}{:012x}{}{s:08x}{}", &id[..2], ms, &id[14..24], &id[32..]);
            if guess == *id {
                continue;
            }
            guesses += 1;
            let err = offers
                .record_redemption(RecordRedemptionRequest {
                    value: Some(1e9),
                    ..redeem(&guess)
                })
                .await
                .expect_err("a guessed id is no id");
            assert_eq!(err.code(), Code::NotFound, "{guess}: {err:?}");
            assert!(
                err.message().contains("no such decision"),
                "{}",
                err.message()
            );
        }
    }
    // Ids of the old format are looked up, and unknown too.
    let err = offers
        .record_redemption(redeem(&"0".repeat(32)))
        .await
        .expect_err("unknown v0 id");
    assert_eq!(err.code(), Code::NotFound);
    let stats = server.stats("c").await;
    let redeemed: u64 = stats.offers.iter().map(|o| o.redeemed).sum();
    assert_eq!(redeemed, 0, "no guess redeemed anything");
    // A wrong offer_id on a real id: refused without naming the real offer.
    let wrong = if mine.offer_id == "a" { "b" } else { "a" };
    let err = offers
        .record_redemption(RecordRedemptionRequest {
            offer_id: wrong.into(),
            ..redeem(id)
        })
        .await
        .expect_err("wrong offer");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        !err.message().contains(&format!("'{}'", mine.offer_id)),
        "the message names the decision's offer: {}",
        err.message()
    );
    // A value above the offer's max_value is refused, nothing recorded; a
    // value within it is recorded.
    let err = offers
        .record_redemption(RecordRedemptionRequest {
            value: Some(1e9),
            ..redeem(id)
        })
        .await
        .expect_err("value above max_value");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("max_value"), "{}", err.message());
    let ok = offers
        .record_redemption(RecordRedemptionRequest {
            value: Some(9.5),
            ..redeem(id)
        })
        .await
        .expect("within max_value")
        .into_inner();
    assert!(!ok.already_recorded);
    // Every victim's id still redeems for its holder.
    let victim = others.pop().expect("a victim");
    assert_eq!(victim.decision_id.len(), 56);
    offers
        .record_redemption(redeem(&victim.decision_id))
        .await
        .expect("the holder redeems");
    // The NOT_FOUND answers are counted.
    let (_, body) = http_get(&server.metrics_addr, "/metrics");
    let counted = metric(&body, "offer_bandit_redemptions_not_found_total");
    assert!(
        counted >= f64::from(guesses + 1),
        "{counted} NOT_FOUND counted for {guesses} guesses"
    );
}

/// A decision of campaign `c` (tier `x`).
async fn decide(offers: &mut crate::support::Offers) -> proto::SelectOfferResponse {
    offers
        .select_offer(select("c", &[("tier", "x")]))
        .await
        .expect("select")
        .into_inner()
}

#[tokio::test]
async fn decision_id_keys_rotate_from_a_file_or_the_environment() {
    let tmp = tempfile::tempdir().expect("tmp");
    let keys = tmp.path().join("keys");
    let k1 = format!("1 {}\n", "1a".repeat(32));
    let k2 = format!("2 {}\n", "2b".repeat(32));
    std::fs::write(&keys, &k1).expect("write keys");
    let keys_arg = keys.display().to_string();
    let data = tmp.path().join("data");
    let toml = campaign_toml("c", &["tier"], "1h", &["a", "b"]);
    let mut server =
        TestServer::start_on(Some(&toml), &data, &["--decision-id-keys-file", &keys_arg]);
    let mut offers = server.offers().await;
    let d1 = decide(&mut offers).await;
    let d2 = decide(&mut offers).await;
    assert_eq!(&d1.decision_id[14..16], "01", "signed with key 1");
    drop(offers);
    server.stop();
    // Rotation: key 2 first (signs), key 1 still listed (verifies).
    std::fs::write(&keys, format!("{k2}{k1}")).expect("write keys");
    server.relaunch();
    let mut offers = server.offers().await;
    let d3 = decide(&mut offers).await;
    assert_eq!(&d3.decision_id[14..16], "02", "signed with key 2");
    offers
        .record_redemption(redeem(&d1.decision_id))
        .await
        .expect("an id under key 1 still redeems");
    drop(offers);
    server.stop();
    drop(server);
    // Key 1 dropped: its ids are no longer ids. Key 2 now comes from the
    // environment rather than a file.
    let mut server = TestServer::start_on_env(
        Some(&toml),
        &data,
        &[],
        &[("OFFER_BANDIT_DECISION_ID_KEYS", &k2)],
    );
    let mut offers = server.offers().await;
    let err = offers
        .record_redemption(redeem(&d2.decision_id))
        .await
        .expect_err("key 1 retired");
    assert_eq!(err.code(), Code::NotFound);
    offers
        .record_redemption(redeem(&d3.decision_id))
        .await
        .expect("key 2 verifies");
    let d4 = decide(&mut offers).await;
    assert_eq!(&d4.decision_id[14..16], "02");
    drop(offers);
    server.stop();
}

#[tokio::test]
async fn a_request_id_replays_only_for_its_own_customer() {
    let server = TestServer::start(Some(&campaign_toml("c", &["tier"], "1h", &["a", "b"])), &[]);
    let mut offers = server.offers().await;
    let ask = |customer: &str, tier: &str| {
        let mut r = select("c", &[("tier", tier)]);
        r.customer_id = customer.into();
        r.request_id = "req-0001".into();
        r
    };
    let alice = offers
        .select_offer(ask("alice", "gold"))
        .await
        .expect("alice")
        .into_inner();
    // Mallory sends Alice's request_id: refused, and Alice's id not shown.
    let err = offers
        .select_offer(ask("mallory", "bronze"))
        .await
        .expect_err("another customer's request_id");
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    assert!(!err.message().contains(&alice.decision_id));
    // Anonymous, too.
    let err = offers
        .select_offer(ask("", "bronze"))
        .await
        .expect_err("anonymous with a customer's request_id");
    assert_eq!(err.code(), Code::AlreadyExists);
    // Alice's retry still replays her decision.
    let again = offers
        .select_offer(ask("alice", "gold"))
        .await
        .expect("alice retries")
        .into_inner();
    assert!(again.replayed);
    assert_eq!(again.decision_id, alice.decision_id);
    assert_eq!(
        server
            .stats("c")
            .await
            .offers
            .iter()
            .map(|o| o.decisions)
            .sum::<u64>(),
        1
    );
}

#[tokio::test]
async fn streams_that_send_nothing_do_not_lock_out_decisions() {
    let server = TestServer::start(None, &["--max-in-flight", "8"]);
    // 24 RecordRedemptions streams that send headers and then nothing, on
    // one connection: three times the in-flight limit of 8, within the 32
    // open streams that limit allows (and the 128 a connection may open).
    let streaming = server.offers().await;
    let mut held = Vec::new();
    for _ in 0..24 {
        let mut c = streaming.clone();
        held.push(tokio::spawn(async move {
            c.record_redemptions(tokio_stream::pending::<RecordRedemptionRequest>())
                .await
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut offers = server.offers().await;
    for i in 0..20 {
        offers
            .select_offer(select("coffee", &[("lifecycle", "active")]))
            .await
            .unwrap_or_else(|e| panic!("decision {i} while streams idle: {e:?}"));
    }
    // A stream that does send is served.
    let d = offers
        .select_offer(select("coffee", &[("lifecycle", "active")]))
        .await
        .expect("select")
        .into_inner();
    let out = crate::support::redeem_batch(&mut offers, &[d.decision_id]).await;
    assert_eq!(out.applied, 1);
    // Open streams are bounded too: 8 more fill the pool of 32, and the next
    // is refused at once rather than buffered.
    let mut more = Vec::new();
    for _ in 0..8 {
        let mut c = streaming.clone();
        more.push(tokio::spawn(async move {
            c.record_redemptions(tokio_stream::pending::<RecordRedemptionRequest>())
                .await
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let err = offers
        .record_redemptions(tokio_stream::pending::<RecordRedemptionRequest>())
        .await
        .expect_err("over the open-stream limit");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains("open RecordRedemptions streams"),
        "{}",
        err.message()
    );
    for h in held.into_iter().chain(more) {
        h.abort();
    }
}

#[tokio::test]
async fn connections_are_capped_and_silent_ones_closed() {
    // Silent connections are closed after 3 s (the preface timeout, the idle
    // timeout here): a refusal inside 1.5 s is the cap's.
    let server = TestServer::start(None, &["--max-connections", "3", "--idle-timeout", "3s"]);
    // Three silent connections fill the cap (they never send a preface).
    let mut silent: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(&server.addr).expect("connect"))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A fourth is closed at once.
    let mut fourth = TcpStream::connect(&server.addr).expect("connect");
    assert!(
        closed_within(&mut fourth, Duration::from_millis(1500)),
        "a connection over --max-connections stayed open"
    );
    // The silent ones are closed after the preface/idle timeout (3 s here).
    for (i, s) in silent.iter_mut().enumerate() {
        assert!(
            closed_within(s, Duration::from_secs(6)),
            "silent connection {i} was never closed"
        );
    }
    // Their places are free again: gRPC works.
    let mut offers = server.offers().await;
    offers
        .select_offer(select("coffee", &[("lifecycle", "active")]))
        .await
        .expect("select after the silent connections went");
    // A connection that sends a few bytes and stalls is closed too.
    let mut slow = TcpStream::connect(&server.addr).expect("connect");
    slow.write_all(b"PRI * HTTP/2.0\r\n").expect("write");
    assert!(closed_within(&mut slow, Duration::from_secs(5)));
}

async fn health_of(server: &TestServer, service: &str) -> i32 {
    let mut h = HealthClient::new(server.channel().await);
    h.check(HealthCheckRequest {
        service: service.into(),
    })
    .await
    .map(|r| r.into_inner().status)
    .unwrap_or(-1)
}

#[tokio::test]
async fn writes_stop_under_the_free_space_watermark_and_health_says_so() {
    // A watermark above any disk's free space: every write is refused.
    let server = TestServer::start(None, &["--min-free-mb", "1000000000"]);
    let mut offers = server.offers().await;
    let started = Instant::now();
    let err = loop {
        match offers
            .select_offer(select("coffee", &[("lifecycle", "active")]))
            .await
        {
            Err(e) => break e,
            // The first measurement runs at startup; allow it a moment.
            Ok(_) if started.elapsed() < Duration::from_secs(5) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Ok(_) => panic!("decisions still accepted under the watermark"),
        }
    };
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("nearly full"), "{}", err.message());
    let started = Instant::now();
    while health_of(&server, "offerbandit.v1.OfferService").await
        != ServingStatus::NotServing as i32
    {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "health still SERVING"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        health_of(&server, "").await,
        ServingStatus::NotServing as i32
    );
    // Reads still work, and so do erasure (it frees space and is owed) and
    // pausing (how an operator stops writes).
    server.stats("coffee").await;
    let mut admin = server.admin().await;
    admin
        .forget_customer(proto::ForgetCustomerRequest {
            customer_id: "member-1".into(),
        })
        .await
        .expect("erasure under the watermark");
    admin
        .set_campaign_status(proto::SetCampaignStatusRequest {
            campaign: "coffee".into(),
            status: "paused".into(),
        })
        .await
        .expect("pausing under the watermark");
}

/// Mounts a tmpfs of `mb` MiB on `dir`; false (with the reason printed) where
/// this machine does not allow it.
fn mount_tmpfs(dir: &std::path::Path, mb: u64) -> bool {
    let out = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
        .arg(dir)
        .output();
    match out {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            eprintln!(
                "SKIPPED the small-filesystem part: cannot mount a tmpfs here ({})",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            false
        }
        Err(e) => {
            eprintln!("SKIPPED the small-filesystem part: no mount command ({e})");
            false
        }
    }
}

#[tokio::test]
async fn a_filling_disk_refuses_writes_then_recovers() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mnt = tmp.path().join("small");
    std::fs::create_dir_all(&mnt).expect("mkdir");
    if !mount_tmpfs(&mnt, 64) {
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    let data = mnt.join("data");
    let mut server = TestServer::start_on(None, &data, &["--min-free-mb", "24"]);
    let mut offers = server.offers().await;
    let d = offers
        .select_offer(select("coffee", &[("lifecycle", "active")]))
        .await
        .expect("select with room")
        .into_inner();
    // Something else fills the disk to under the watermark.
    let filler = mnt.join("filler");
    let free = offer_bandit::free_bytes(&mnt).expect("statvfs");
    let fill = free.saturating_sub(16 << 20);
    std::fs::write(&filler, vec![0u8; fill as usize]).expect("fill");
    let started = Instant::now();
    let err = loop {
        match offers
            .select_offer(select("coffee", &[("lifecycle", "active")]))
            .await
        {
            Err(e) => break e,
            Ok(_) => {
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "writes still accepted"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(err.code(), Code::Unavailable);
    let err = offers
        .record_redemption(redeem(&d.decision_id))
        .await
        .expect_err("redemption refused while full");
    assert_eq!(err.code(), Code::Unavailable);
    // Space freed: writes resume without a restart, and nothing was lost.
    std::fs::remove_file(&filler).expect("free");
    let started = Instant::now();
    loop {
        match offers.record_redemption(redeem(&d.decision_id)).await {
            Ok(r) => {
                assert!(!r.into_inner().already_recorded);
                break;
            }
            Err(e) => {
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "still refused: {e:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(offers);
    // SIGTERM ends it.
    server.sigterm();
    assert_eq!(server.wait_exit(Duration::from_secs(40)), Some(0));
}

#[tokio::test]
async fn only_declared_features_are_stored() {
    let server = TestServer::start(None, &[]);
    let mut offers = server.offers().await;
    let mut r = select("coffee", &[("lifecycle", "active"), ("daypart", "morning")]);
    for i in 0..40 {
        r.context.insert(
            format!("junk_{i:02}"),
            crate::support::category(&"x".repeat(250)),
        );
    }
    offers.select_offer(r).await.expect("select");
    let mut admin = server.admin().await;
    let mut stream = admin
        .export_decisions(proto::ExportDecisionsRequest {
            campaign: "coffee".into(),
            ..Default::default()
        })
        .await
        .expect("export")
        .into_inner();
    let mut n = 0;
    while let Some(e) = stream.message().await.expect("entry") {
        n += 1;
        let mut keys: Vec<_> = e.context.keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["daypart", "lifecycle"], "undeclared features stored");
    }
    assert_eq!(n, 1);
}

#[tokio::test]
async fn backups_are_written_under_the_data_directory_and_cleaned_up() {
    let tmp = tempfile::tempdir().expect("tmp");
    let system_tmp = tmp.path().join("system-tmp");
    std::fs::create_dir_all(&system_tmp).expect("mkdir");
    let data = tmp.path().join("data");
    let mut server = TestServer::start_on_env(
        None,
        &data,
        &[],
        &[("TMPDIR", &system_tmp.display().to_string())],
    );
    server.checkpoint().await;
    // The copy was made under the data directory (where the store's own
    // size limits and cleanup apply), never in the system's temp directory.
    let scratch = data.join("backup-scratch");
    assert!(scratch.is_dir(), "no backup-scratch directory");
    assert_eq!(
        std::fs::read_dir(&system_tmp)
            .map(|d| d.count())
            .unwrap_or(0),
        0
    );
    // A copy left by a process killed while streaming is removed at the
    // next start.
    std::fs::write(scratch.join("offer-bandit-backup-left"), b"stale").expect("write");
    server.kill();
    server.relaunch();
    let left = std::fs::read_dir(&scratch).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "stale backup copies are removed at startup");
    server.checkpoint().await;
}

#[tokio::test]
async fn offers_per_campaign_are_capped() {
    let server = TestServer::start(
        Some(&campaign_toml("c", &["tier"], "1h", &["a", "b", "c"])),
        &["--max-offers", "3"],
    );
    // Ten AddOffers at once on a campaign of two under a cap of three: the
    // writer decides, so exactly one gets through.
    let racing = TestServer::start(
        Some(&campaign_toml("r", &["tier"], "1h", &["a", "b"])),
        &["--max-offers", "3"],
    );
    let admin_r = racing.admin().await;
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let mut a = admin_r.clone();
            tokio::spawn(async move {
                a.add_offer(proto::AddOfferRequest {
                    campaign: "r".into(),
                    offer_id: format!("new-{i}"),
                    ..Default::default()
                })
                .await
                .is_ok()
            })
        })
        .collect();
    let mut added = 0;
    for t in tasks {
        added += usize::from(t.await.expect("task"));
    }
    assert_eq!(added, 1, "AddOffers past --max-offers");
    assert_eq!(racing.stats("r").await.offers.len(), 3);
    let mut admin = server.admin().await;
    let err = admin
        .add_offer(proto::AddOfferRequest {
            campaign: "c".into(),
            offer_id: "d".into(),
            ..Default::default()
        })
        .await
        .expect_err("a fourth offer");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("--max-offers"), "{}", err.message());
    let err = admin
        .put_campaign(proto::PutCampaignRequest {
            config_toml: campaign_toml("c2", &["tier"], "1h", &["a", "b", "c", "d"])
                .replace("[[campaigns]]\n", ""),
            ..Default::default()
        })
        .await
        .expect_err("a campaign of four offers");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    // A file over the cap does not start.
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg = tmp.path().join("c.toml");
    std::fs::write(
        &cfg,
        campaign_toml("c", &["tier"], "1h", &["a", "b", "c", "d"]),
    )
    .expect("write");
    let cfg = cfg.display().to_string();
    let stderr = serve_refuses(
        &tmp.path().join("d"),
        &["--max-offers", "3", "--config", &cfg],
        &[],
    );
    assert!(stderr.contains("--max-offers"), "{stderr}");
}

#[tokio::test]
async fn smaller_findings() {
    let server = TestServer::start(None, &[]);
    // An undecodable body is the caller's error: INVALID_ARGUMENT. Field 1
    // of SelectOfferRequest is a string; these bytes are not UTF-8.
    let mut raw = tonic::client::Grpc::new(server.channel().await);
    raw.ready().await.expect("ready");
    let path = http::uri::PathAndQuery::from_static("/offerbandit.v1.OfferService/SelectOffer");
    let codec =
        tonic_prost::ProstCodec::<proto::BackupChunk, proto::SelectOfferResponse>::default();
    let err = raw
        .unary(
            tonic::Request::new(proto::BackupChunk {
                data: vec![0xff, 0xfe, 0xfd],
            }),
            path,
            codec,
        )
        .await
        .expect_err("undecodable");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let mut admin = server.admin().await;
    // A 200 KB line in a bad config: a short message, not a lost stream.
    let long = format!("id = \"{}\n", "x".repeat(200_000));
    let err = admin
        .put_campaign(proto::PutCampaignRequest {
            config_toml: long,
            ..Default::default()
        })
        .await
        .expect_err("bad config");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().len() < 2_000, "{} bytes", err.message().len());
    // Absurd numbers in a campaign are refused.
    for (what, toml) in [
        (
            "prior_variance = 1e300",
            "id = \"p\"\npolicy = \"linear-ts\"\nprior_variance = 1e300\n[[features]]\nkind = \"flag\"\nname = \"f\"\n[[offers]]\nid = \"a\"\n[[offers]]\nid = \"b\"\n",
        ),
        (
            "value = 1e308",
            "id = \"v\"\npolicy = \"segment-ts\"\n[[offers]]\nid = \"a\"\nvalue = 1e308\n[[offers]]\nid = \"b\"\n",
        ),
    ] {
        let err = admin
            .put_campaign(proto::PutCampaignRequest {
                config_toml: toml.into(),
                ..Default::default()
            })
            .await
            .expect_err(what);
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
    }
    // A damaged conf file is named as such.
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("d");
    {
        let s = TestServer::start_on(None, &dir, &[]);
        drop(s);
    }
    std::fs::write(dir.join("conf"), b"\x00garbage\xff").expect("damage conf");
    let stderr = serve_refuses(&dir, &[], &[]);
    assert!(stderr.contains("are damaged"), "{stderr}");
    assert!(!stderr.contains("Caused by:\n\n"), "{stderr}");
}

#[tokio::test]
async fn undeclared_context_keys_are_reported_or_refused() {
    let server = TestServer::start(None, &[]);
    let mut offers = server.offers().await;
    // A typo of a declared name (`lifecycl`) and an undeclared key.
    let r = select(
        "coffee",
        &[
            ("lifecycl", "active"),
            ("daypart", "morning"),
            ("zz_unknown", "x"),
        ],
    );
    let out = offers
        .select_offer(r.clone())
        .await
        .expect("select")
        .into_inner();
    assert_eq!(out.ignored_features, ["lifecycl", "zz_unknown"]);
    let (_, body) = http_get(&server.metrics_addr, "/metrics");
    assert!(
        metric(&body, "offer_bandit_ignored_features_total") >= 2.0,
        "not counted"
    );
    // A clean context reports nothing.
    let clean = offers
        .select_offer(select("coffee", &[("lifecycle", "active")]))
        .await
        .expect("select")
        .into_inner();
    assert!(clean.ignored_features.is_empty());
    // Under --strict-context the same request is refused, naming the keys.
    let strict = TestServer::start(None, &["--strict-context"]);
    let err = strict
        .offers()
        .await
        .select_offer(r)
        .await
        .expect_err("strict");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("lifecycl") && err.message().contains("zz_unknown"),
        "{}",
        err.message()
    );
}
