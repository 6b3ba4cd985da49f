//! End-to-end tests of the `offer-sim` binary on the shipped sample data and
//! scenarios.

use std::process::Command;

use serde_json::Value;

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/loyalty_sample.csv");

fn scenario(name: &str) -> String {
    format!("{}/scenarios/{name}.toml", env!("CARGO_MANIFEST_DIR"))
}

fn offer_sim(args: &[&str]) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_offer-sim"))
        .args(args)
        .output()
        .expect("offer-sim runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "offer-sim {args:?} failed:\n{stderr}");
    (stdout, stderr)
}

/// Runs offer-sim expecting it to fail; its stderr.
fn offer_sim_fails(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_offer-sim"))
        .args(args)
        .output()
        .expect("offer-sim runs");
    assert!(!out.status.success(), "offer-sim {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(args: &[&str]) -> Vec<Value> {
    let mut all = args.to_vec();
    all.extend(["--json", "--quiet"]);
    let (stdout, _) = offer_sim(&all);
    serde_json::from_str::<Vec<Value>>(&stdout).expect("--json prints an array")
}

/// The JSON without wall-clock figures, which vary run to run.
fn without_timing(mut v: Vec<Value>) -> Vec<Value> {
    for p in &mut v {
        if let Some(o) = p.as_object_mut() {
            o.remove("decisions_per_second");
        }
    }
    v
}

fn num(p: &Value, key: &str) -> f64 {
    p[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing in {p}"))
}

/// Closed forms from the file itself: mean of max p and mean of mean p.
fn closed_forms(path: &str) -> (f64, f64) {
    let text = std::fs::read_to_string(path).expect("sample");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let p_cols: Vec<usize> = (0..header.len())
        .filter(|&i| header[i].starts_with("p_"))
        .collect();
    let (mut oracle, mut random, mut n) = (0.0, 0.0, 0.0);
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        let p: Vec<f64> = p_cols.iter().map(|&i| f[i].parse().expect("p")).collect();
        oracle += p.iter().copied().fold(0.0, f64::max);
        random += p.iter().sum::<f64>() / p.len() as f64;
        n += 1.0;
    }
    (oracle / n, random / n)
}

#[test]
fn replay_json_has_the_contract_keys_and_the_closed_forms() {
    let v = json(&[
        "replay",
        "--dataset",
        SAMPLE,
        "--seeds",
        "3",
        "--policies",
        "uniform,fixed-best,segment-ts,logistic-ts",
    ]);
    assert_eq!(v.len(), 4);
    for key in [
        "policy",
        "rounds",
        "mean_reward",
        "mean_expected_reward",
        "fraction_of_oracle",
        "value_per_1000",
        "fraction_of_value_oracle",
        "decisions_per_second",
        "fraction_of_oracle_ci",
    ] {
        assert!(v.iter().all(|p| p.get(key).is_some()), "key {key} missing");
    }
    let (oracle, random) = closed_forms(SAMPLE);
    let uniform = &v[0];
    // Uniform random's expected reward is a random variable; its mean over
    // 3 x 2,000 draws is within a few standard errors of the closed form...
    assert!(
        (num(uniform, "mean_expected_reward") - random).abs() < 0.004,
        "{uniform}"
    );
    // ...and the oracle implied by the report is exactly the file's.
    let implied_oracle = num(uniform, "mean_expected_reward") / num(uniform, "fraction_of_oracle");
    assert!(
        (implied_oracle - oracle).abs() < 1e-9,
        "{implied_oracle} vs {oracle}"
    );
    assert_eq!(num(uniform, "rounds"), 2000.0);
}

#[test]
fn replay_report_states_oracle_and_random_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().to_str().expect("utf-8 path");
    offer_sim(&[
        "replay",
        "--dataset",
        SAMPLE,
        "--seeds",
        "2",
        "--policies",
        "uniform",
        "--quiet",
        "--out",
        out,
    ]);
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("results.json")).expect("results.json"),
    )
    .expect("json");
    let (oracle, random) = closed_forms(SAMPLE);
    assert!((report["oracle_mean_reward"].as_f64().expect("oracle") - oracle).abs() < 1e-12);
    assert!((report["random_mean_reward"].as_f64().expect("random") - random).abs() < 1e-12);
    for f in ["report.html", "curves.csv", "regret.svg"] {
        let text = std::fs::read_to_string(dir.path().join(f)).expect(f);
        assert!(text.len() > 100, "{f} is too short");
    }
}

#[test]
fn same_seed_same_json_different_seed_different_json() {
    let args = [
        "replay",
        "--dataset",
        SAMPLE,
        "--seeds",
        "2",
        "--policies",
        "epsilon-greedy,segment-ts,logistic-ts",
        "--shuffle",
    ];
    let a = without_timing(json(&args));
    let b = without_timing(json(&args));
    assert_eq!(a, b, "same seed must give identical results");
    let mut other = args.to_vec();
    other.extend(["--first-seed", "7"]);
    let c = without_timing(json(&other));
    assert_ne!(a, c, "different seeds must differ");
}

#[test]
fn thompson_sampling_beats_random_far_outside_the_interval() {
    let v = json(&[
        "compare",
        "--scenario",
        &scenario("coffee-loyalty"),
        "--seeds",
        "4",
        "--rounds",
        "6000",
        "--policies",
        "uniform,segment-ts,logistic-ts",
    ]);
    let uniform_high = v[0]["fraction_of_oracle_ci"]["high"].as_f64().expect("ci");
    for ts in &v[1..] {
        let low = ts["fraction_of_oracle_ci"]["low"].as_f64().expect("ci");
        let uniform_width = uniform_high - num(&v[0], "fraction_of_oracle");
        assert!(
            low > uniform_high + 5.0 * uniform_width.max(0.01),
            "{} ({low:.3}) does not clear uniform ({uniform_high:.3}) by far",
            ts["policy"]
        );
    }
}

#[test]
fn offer_features_come_from_the_offers_attributes() {
    // The sample's offers are described in loyalty_sample.meta.json.
    let base = [
        "replay",
        "--dataset",
        SAMPLE,
        "--seeds",
        "2",
        "--policies",
        "logistic-ts",
    ];
    let plain = without_timing(json(&base));
    let mut args = base.to_vec();
    args.extend(["--offer-features", "category+kind+depth"]);
    let with = without_timing(json(&args));
    assert_eq!(with.len(), 1);
    assert!(num(&with[0], "fraction_of_oracle") > 0.3, "{}", with[0]);
    assert_ne!(plain, with, "the offer features change what is learned");
    // A scenario's offer table: category, kind and depth.
    let sc = scenario("new-offers");
    let rounds = json(&[
        "compare",
        "--scenario",
        &sc,
        "--seeds",
        "2",
        "--rounds",
        "2000",
        "--policies",
        "logistic-ts,linear-ts",
        "--offer-features",
        "category+kind",
    ]);
    assert_eq!(rounds.len(), 2);
    // What cannot work is refused with the reason.
    for (extra, says) in [
        (
            vec!["--offer-features", "colour"],
            "no offer has an attribute 'colour'",
        ),
        (
            vec![
                "--offer-features",
                "kind",
                "--policies",
                "logistic-ts:adaptive-prior=off",
            ],
            "act through the learned prior",
        ),
    ] {
        let mut args = vec!["replay", "--dataset", SAMPLE, "--quiet"];
        args.extend(extra);
        let err = offer_sim_fails(&args);
        assert!(err.contains(says), "{err}");
    }
}

/// `--min-propensity` floors the server's policies as the server does: at
/// 0.08 among the sample's 12 offers, 96% of choices are uniform, so
/// segment-ts earns about what uniform does; the baselines are left alone;
/// a floor no set of the offers can give (0.1 x 12) is refused.
#[test]
fn min_propensity_floors_the_servers_policies() {
    let args = |floor: &'static str| {
        [
            "replay",
            "--dataset",
            SAMPLE,
            "--seeds",
            "2",
            "--policies",
            "uniform,fixed-best,segment-ts",
            "--min-propensity",
            floor,
        ]
    };
    let (plain, floored) = (json(&args("0")), json(&args("0.08")));
    let fraction = |v: &[Value], i: usize| num(&v[i], "fraction_of_oracle");
    assert_eq!(fraction(&plain, 1), fraction(&floored, 1), "fixed-best");
    let uniform = fraction(&plain, 0);
    assert!(fraction(&plain, 2) > uniform + 0.1, "segment-ts learns");
    assert!(
        (fraction(&floored, 2) - uniform).abs() < 0.04,
        "segment-ts under a 0.08 floor: {} vs uniform {uniform}",
        fraction(&floored, 2)
    );
    let err = offer_sim_fails(&args("0.1"));
    assert!(
        err.contains("--min-propensity 0.1 x 12 offers is over 1"),
        "{err}"
    );
}

#[test]
fn bad_inputs_are_explained() {
    let err = offer_sim_fails(&[
        "replay",
        "--dataset",
        SAMPLE,
        "--policies",
        "nonsense",
        "--quiet",
    ]);
    assert!(
        err.contains("unknown policy 'nonsense'") && err.contains("segment-ts"),
        "{err}"
    );
}

#[test]
fn ope_on_the_open_bandit_sample_reports_every_estimator_against_ground_truth() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/data/obd");
    let prior = concat!(env!("CARGO_MANIFEST_DIR"), "/data/obd/prior_bts.yaml");
    for (behavior, target) in [("random", "bts"), ("bts", "random")] {
        let (stdout, _) = offer_sim(&[
            "ope",
            "--obd",
            dir,
            "--campaign",
            "men",
            "--behavior",
            behavior,
            "--target",
            target,
            "--prior",
            prior,
            "--sims",
            "20000",
            "--bootstrap",
            "100",
            "--json",
        ]);
        let v: Vec<Value> = serde_json::from_str(&stdout).expect("--json prints an array");
        let names: Vec<&str> = v.iter().filter_map(|e| e["estimator"].as_str()).collect();
        assert_eq!(names, ["ips", "snips", "dm", "dr", "ips-cs"]);
        for e in &v {
            for key in [
                "estimate",
                "ci_low",
                "ci_high",
                "ground_truth",
                "relative_error",
                "effective_sample_size",
            ] {
                assert!(e[key].as_f64().is_some_and(f64::is_finite), "{key} in {e}");
            }
            assert!(
                num(e, "ci_low") <= num(e, "estimate") + 1e-12
                    && num(e, "estimate") <= num(e, "ci_high") + 1e-12,
                "{e}"
            );
        }
        // Ground truth is the target's own mean click over its 1,000 logged impressions.
        let truth = num(&v[0], "ground_truth");
        assert!(truth > 0.0 && truth < 0.05, "{truth}");
    }
}

/// A rules file is a policy in `compare` and `replay`: written as the
/// scenario's marketer rule it earns exactly what `marketer` earns, seed for
/// seed; on a full-feedback file its expected reward is the closed form.
#[test]
fn a_rules_file_is_a_policy_in_compare_and_replay() {
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/rules/coffee-today.rules");
    let spec = format!("rules:{rules}");
    let v = without_timing(json(&[
        "compare",
        "--scenario",
        &scenario("coffee-loyalty"),
        "--seeds",
        "2",
        "--policies",
        &format!("{spec},marketer"),
    ]));
    for key in ["mean_reward", "value_per_1000", "fraction_of_oracle"] {
        assert_eq!(v[0][key], v[1][key], "{key}: {} vs {}", v[0], v[1]);
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("today.rules");
    std::fs::write(
        &file,
        "if hour >= 14 then bogo_coffee_after_2pm\n\
         if lifecycle in (lapsing, inactive) then winback_20pct\n\
         otherwise double_points\n",
    )
    .expect("write");
    let v = json(&[
        "replay",
        "--dataset",
        SAMPLE,
        "--seeds",
        "1",
        "--policies",
        &format!("rules:{}", file.display()),
    ]);
    let text = std::fs::read_to_string(SAMPLE).expect("sample");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).expect(name);
    let (mut sum, mut n) = (0.0, 0.0);
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        let hour: f64 = f[col("hour")].parse().expect("hour");
        let offer = if hour >= 14.0 {
            "bogo_coffee_after_2pm"
        } else if ["lapsing", "inactive"].contains(&f[col("lifecycle")]) {
            "winback_20pct"
        } else {
            "double_points"
        };
        sum += f[col(&format!("p_{offer}"))].parse::<f64>().expect("p");
        n += 1.0;
    }
    let got = num(&v[0], "mean_expected_reward");
    assert!((got - sum / n).abs() < 1e-9, "{got} vs {}", sum / n);

    std::fs::write(&file, "if hour >= 14 then no_such_offer\n").expect("write");
    let err = offer_sim_fails(&[
        "replay",
        "--dataset",
        SAMPLE,
        "--policies",
        &format!("rules:{}", file.display()),
        "--quiet",
    ]);
    assert!(
        err.contains("rules line 1: no offer 'no_such_offer'"),
        "{err}"
    );
}

/// `offer-sim history` on the shipped sample of sends: the verdict, and
/// the JSON form for scripts; a closed stdout ends it quietly.
#[test]
fn history_gives_a_verdict_on_the_sample_sends() {
    let sends = concat!(env!("CARGO_MANIFEST_DIR"), "/data/sends_sample.csv");
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/rules/sends-today.rules");
    let (out, _) = offer_sim(&["history", "--file", sends, "--rules", rules, "--json"]);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["sends"], 12000);
    assert_eq!(v["customers"], 4000);
    assert_eq!(v["columns"]["ignored"][0], "sent_at");
    assert!(
        v["verdict"]
            .as_str()
            .expect("verdict")
            .contains("per 1,000 sends")
    );
    let yours = &v["your_sends"]["redemptions_per_1000"];
    assert!(num(yours, "low") < num(yours, "value") && num(yours, "value") < num(yours, "high"));
    // The sample's sends redeem at a known expected rate: 80% rule, 20%
    // random, over the generator's rates (simulator/data/make_sends_sample.py).
    let expected = 1000.0 * expected_sample_rate();
    assert!(
        num(yours, "low") <= expected && expected <= num(yours, "high"),
        "{yours} vs {expected}"
    );
    assert!(v["your_rule"]["redemptions_per_1000"].is_object());

    let mut child = Command::new(env!("CARGO_BIN_EXE_offer-sim"))
        .args(["history", "--file", sends])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(141), "{stderr}");
}

/// The expected redemption rate of the sample's sends, from its generator's
/// model: hours uniform on 6..22, tiers uniform, lift 0.5 or 1.5 (mean 1).
fn expected_sample_rate() -> f64 {
    let mut total = 0.0;
    for hour in 6..22 {
        for tier in ["a", "b", "c"] {
            let rate = |o: usize| match o {
                0 if hour >= 14 => 0.20,
                0 => 0.04,
                2 if tier == "c" => 0.25,
                2 => 0.03,
                _ => 0.08,
            };
            let rule = if hour >= 14 { 0 } else { 1 };
            let p = 0.8 * rate(rule) + 0.2 * (rate(0) + rate(1) + rate(2)) / 3.0;
            total += p / 48.0;
        }
    }
    total
}

/// `campaign-config` serves the policy that won a compare run (the best the
/// server runs, by expected redemptions per visit), keeps the offers' names,
/// writes clean numbers, and the real server's `check-config` accepts it.
#[test]
fn campaign_config_serves_the_winner_with_names_and_clean_numbers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("run");
    let coffee = scenario("coffee-loyalty");
    let (table, _) = offer_sim(&[
        "compare",
        "--scenario",
        &coffee,
        "--policies",
        "uniform,segment-ts,logistic-ts:half-life=2000",
        "--seeds",
        "2",
        "--rounds",
        "3000",
        "--quiet",
        "--out",
        out.to_str().expect("utf-8 path"),
    ]);
    // The table speaks plainly: the verdict against the baseline first (no
    // rule in this run: a random offer, named), where the numbers come
    // from, and the statistician's columns under "Advanced".
    let first = table.lines().next().unwrap_or_default();
    assert!(first.contains("a random offer (uniform)"), "{table}");
    assert!(
        first.contains("per 1,000 visits") && first.contains("(interval "),
        "{table}"
    );
    assert!(first.ends_with("on this simulated population."), "{table}");
    let at = |s: &str| table.find(s).unwrap_or(usize::MAX);
    assert!(
        at("Simulated population:") < at("vs uniform (95% CI)"),
        "{table}"
    );
    assert!(at("vs uniform (95% CI)") < at("Advanced:"), "{table}");
    assert!(at("Advanced:") < at("% of oracle"), "{table}");
    let results: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("results.json")).expect("results.json"),
    )
    .expect("json");
    assert_eq!(results["baseline"]["policy"], "uniform");
    assert_eq!(
        results["offer_names"][0],
        "Buy one coffee, get one free after 2pm"
    );
    let winner = results["policies"]
        .as_array()
        .expect("policies")
        .iter()
        .filter(|p| p["policy"] != "uniform")
        .max_by(|a, b| num(a, "mean_expected_reward").total_cmp(&num(b, "mean_expected_reward")))
        .and_then(|p| p["policy"].as_str())
        .expect("a winner")
        .to_owned();
    let (toml, why) = offer_sim(&[
        "campaign-config",
        "--scenario",
        &coffee,
        "--id",
        "coffee",
        "--results",
        out.to_str().expect("utf-8 path"),
    ]);
    let base = winner.split(':').next().expect("name");
    assert!(
        toml.contains(&format!("policy = \"{base}\"")),
        "{winner}: {toml}"
    );
    assert!(why.contains(&format!("policy {winner}")), "{why}");
    if winner.contains("half-life") {
        assert!(toml.contains("half_life = 2000.0"), "{toml}");
    }
    assert!(toml.contains("name = \"Buy one coffee, get one free after 2pm\""));
    assert!(!toml.contains("-0.0"), "{toml}");
    let long_decimal = toml
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .any(|n| n.split_once('.').is_some_and(|(_, frac)| frac.len() > 10));
    assert!(!long_decimal, "{toml}");
    // The server itself must accept the file.
    let server = std::path::PathBuf::from(env!("CARGO_BIN_EXE_offer-sim"))
        .with_file_name(format!("offer-bandit{}", std::env::consts::EXE_SUFFIX));
    if !server.exists() {
        eprintln!(
            "skipping check-config: {} is missing (cargo build -p offer-bandit)",
            server.display()
        );
        return;
    }
    for policy in [
        None,
        Some("logistic-ts:half-life=2000+exploration=0.5+adaptive-prior=off"),
        Some("segment-ts:lifecycle+channel"),
    ] {
        let text = match policy {
            None => toml.clone(),
            Some(p) => {
                offer_sim(&[
                    "campaign-config",
                    "--scenario",
                    &coffee,
                    "--id",
                    "coffee",
                    "--policy",
                    p,
                ])
                .0
            }
        };
        let file = dir.path().join("campaign.toml");
        std::fs::write(&file, &text).expect("write");
        let checked = Command::new(&server)
            .arg("check-config")
            .arg(&file)
            .output()
            .expect("runs check-config");
        let said = String::from_utf8_lossy(&checked.stdout);
        assert!(
            checked.status.success(),
            "{policy:?}: {}\n{text}",
            String::from_utf8_lossy(&checked.stderr)
        );
        assert!(
            said.contains("Buy one coffee, get one free after 2pm"),
            "{said}"
        );
    }
}
