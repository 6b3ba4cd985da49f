//! `offer-sim history`: a loyalty team's own history of sends in (a plain
//! CSV), a verdict out: what the sends earned, what personalization would
//! have earned on the same customers, and the difference, per 1,000 sends,
//! in redemptions and money, with intervals; numbers the history cannot
//! support are refused, and the report says why.

mod propensity;
mod sends;
mod verdict;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::ope;
pub(crate) use sends::ColumnFlags;
pub(crate) use verdict::{Counterfactual, Figure};

#[derive(Args)]
#[command(
    after_help = "Example (a CSV with columns customer_id, offer, redeemed, value, and attributes):\n  \
    offer-sim history --file sends.csv --rules today.rules\n\n\
    Without a propensity column the probabilities each offer was sent with are estimated from\n\
    the file (how often each offer went to similar customers), and the report says so."
)]
pub(crate) struct HistoryArgs {
    /// CSV of past sends, one row per send: the offer sent, redeemed (0/1,
    /// yes/no, true/false), and optionally value, propensity and customer;
    /// every other column is a customer attribute.
    #[arg(long)]
    file: PathBuf,
    /// The personalization to evaluate (a policy spec as in `compare`).
    #[arg(long, default_value = "logistic-ts")]
    policy: String,
    /// Your rule as a rules file (see `compare --help`, `rules:FILE`): also
    /// evaluated on the history.
    #[arg(long)]
    rules: Option<PathBuf>,
    /// Column of the offer sent (default: detected: offer, offer_id, treatment, action).
    #[arg(long)]
    offer_column: Option<String>,
    /// Column of the outcome (default: detected: redeemed, converted, outcome, ...).
    #[arg(long)]
    redeemed_column: Option<String>,
    /// Column of a redemption's value (default: detected: value, revenue, amount).
    #[arg(long)]
    value_column: Option<String>,
    /// Column of the probability the offer was sent with (default: detected:
    /// propensity, probability); without one it is estimated.
    #[arg(long)]
    propensity_column: Option<String>,
    /// Column of the customer (default: detected: customer_id, member_id, ...).
    #[arg(long)]
    customer_column: Option<String>,
    /// Columns to leave out, comma-separated (default: time columns such as
    /// timestamp, sent_at, date).
    #[arg(long, value_delimiter = ',')]
    ignore_columns: Vec<String>,
    /// Attributes the old rule decided on, for estimating propensities
    /// (default: every attribute).
    #[arg(long, value_delimiter = ',')]
    propensity_by: Vec<String>,
    /// Sends a cell of customers needs for its own estimated propensities.
    #[arg(long, default_value_t = 30)]
    min_cell: usize,
    /// What the personalization maximizes.
    #[arg(long, value_enum, default_value_t = Goal::Redemptions)]
    objective: Goal,
    /// Bootstrap resamples of the advanced estimators' intervals.
    #[arg(long, default_value_t = 200)]
    bootstrap: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Also write report.html (the verdict, charts, assumptions) and
    /// history.json (the --json form) into this directory.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// What the evaluated personalization maximizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Goal {
    Redemptions,
    Value,
}

/// The sends as they were made.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Observed {
    pub(crate) redemptions_per_1000: Figure,
    pub(crate) value_per_1000: Option<Figure>,
}

/// The whole answer.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HistoryReport {
    pub(crate) file: String,
    pub(crate) sends: usize,
    pub(crate) customers: usize,
    pub(crate) offers: Vec<String>,
    /// Share of the sends each offer got (in the order of `offers`).
    pub(crate) sent_share: Vec<f64>,
    pub(crate) columns: sends::Columns,
    /// "logged", or how they were estimated.
    pub(crate) propensities: serde_json::Value,
    pub(crate) your_sends: Observed,
    pub(crate) personalization: Counterfactual,
    pub(crate) your_rule: Option<Counterfactual>,
    pub(crate) verdict: String,
    pub(crate) interval: &'static str,
    pub(crate) assumptions: Vec<String>,
}

/// Evaluates a history already read.
pub(crate) fn evaluate(
    mut s: sends::Sends,
    file: &str,
    a: &Evaluation,
) -> anyhow::Result<HistoryReport> {
    let propensities = if s.columns.propensity.is_some() {
        serde_json::json!("logged")
    } else {
        let by = if a.propensity_by.is_empty() {
            s.columns.attributes.clone()
        } else {
            for f in &a.propensity_by {
                anyhow::ensure!(
                    s.columns.attributes.contains(f),
                    "--propensity-by: '{f}' is not an attribute column (attributes: {})",
                    s.columns.attributes.join(", ")
                );
            }
            a.propensity_by.clone()
        };
        let (_, how) = propensity::estimate(&mut s.log, &by, a.min_cell);
        serde_json::to_value(how)?
    };
    let clusters: Vec<Option<u64>> = s.log.rows.iter().map(|r| r.customer).collect();
    let observed: Vec<f64> = s.log.rows.iter().map(|r| r.reward).collect();
    let top = s
        .values
        .as_ref()
        .map_or(0.0, |v| v.iter().copied().fold(0.0, f64::max));
    let your_sends = Observed {
        redemptions_per_1000: verdict::per_1000(&observed, &clusters, 0.0, 1.0),
        value_per_1000: s
            .values
            .as_ref()
            .map(|v| verdict::per_1000(v, &clusters, 0.0, top)),
    };
    // Under the value objective each offer weighs its mean redemption value.
    let weights: Vec<f64> = (0..s.log.actions.len())
        .map(|k| match (a.objective, &s.values) {
            (Goal::Value, Some(values)) => {
                let (sum, n) = s
                    .log
                    .rows
                    .iter()
                    .zip(values)
                    .filter(|(r, _)| r.action == k && r.reward > 0.0)
                    .fold((0.0, 0.0), |(s, n), (_, v)| (s + v, n + 1.0));
                if n > 0.0 { sum / n } else { 1.0 }
            }
            _ => 1.0,
        })
        .collect();
    anyhow::ensure!(
        a.objective == Goal::Redemptions || s.values.is_some(),
        "--objective value needs a value column (--value-column)"
    );
    let opts = ope::Options {
        bootstrap: a.bootstrap.max(1),
        seed: a.seed,
        ..ope::Options::default()
    };
    let score = |spec: &str| -> anyhow::Result<Counterfactual> {
        let targets = verdict::cross_fitted_targets(spec, &s.log, &weights)?;
        Ok(verdict::counterfactual(
            spec,
            &s.log,
            s.values.as_deref(),
            &targets,
            &opts,
        ))
    };
    let personalization = score(&a.policy)?;
    let your_rule = match &a.rules {
        Some(path) => Some(score(&format!("rules:{}", path.display()))?),
        None => None,
    };
    let verdict = verdict::sentence(&personalization, &your_sends.redemptions_per_1000);
    let mut assumptions = vec![
        "Every offer in the file could have been sent to every customer.".to_owned(),
        format!(
            "{} is scored on the same customers as your sends: fitted on one half of the customers and scored (doubly robust) on the other half, and the other way round.",
            a.policy
        ),
        "A send is redeemed as the file says: a redemption that came after the file was written is missing, so leave out the most recent sends whose window is still open.".to_owned(),
    ];
    if s.columns.propensity.is_none() {
        assumptions.push("The file has no propensities: how likely each offer was to be sent is estimated from how often it went to similar customers (same attribute values; numbers in bins). If your rule used something the file lacks, these estimates, and the figures, are off.".to_owned());
    }
    if s.columns.customer.is_none() {
        assumptions.push("The file names no customers: each send counts as its own customer, which makes the intervals too narrow if customers got several sends.".to_owned());
    }
    Ok(HistoryReport {
        file: file.to_owned(),
        sends: s.log.rows.len(),
        customers: s.customers,
        offers: s.log.actions.clone(),
        sent_share: (0..s.log.actions.len())
            .map(|k| {
                let sent = s.log.rows.iter().filter(|r| r.action == k).count();
                sent as f64 / s.log.rows.len().max(1) as f64
            })
            .collect(),
        columns: s.columns,
        propensities,
        your_sends,
        personalization,
        your_rule,
        verdict,
        interval: verdict::INTERVAL,
        assumptions,
    })
}

/// The evaluation options of [`HistoryArgs`].
pub(crate) struct Evaluation {
    pub(crate) policy: String,
    pub(crate) rules: Option<PathBuf>,
    pub(crate) propensity_by: Vec<String>,
    pub(crate) min_cell: usize,
    pub(crate) objective: Goal,
    pub(crate) bootstrap: usize,
    pub(crate) seed: u64,
}

fn figure(f: &Option<Figure>) -> String {
    f.map_or("(withheld)".into(), |f| {
        format!("{:.1} (interval {:.1} to {:.1})", f.value, f.low, f.high)
    })
}

fn print_text(r: &HistoryReport) {
    println!("{}\n", r.verdict);
    println!(
        "{}: {} sends to {} customers, offers {}",
        r.file,
        r.sends,
        r.customers,
        r.offers.join(", ")
    );
    println!(
        "  your sends:      {} redemptions per 1,000{}",
        figure(&Some(r.your_sends.redemptions_per_1000)),
        r.your_sends
            .value_per_1000
            .map_or(String::new(), |v| format!(", value {}", figure(&Some(v))))
    );
    for c in std::iter::once(&r.personalization).chain(&r.your_rule) {
        let shares: Vec<String> = r
            .offers
            .iter()
            .zip(&c.offer_share)
            .map(|(o, s)| format!("{o} {:.0}%", 100.0 * s))
            .collect();
        println!(
            "  {}: {} redemptions per 1,000, gain {}{}; {:.1}% of its choices unsupported; would send {}",
            c.policy,
            figure(&c.redemptions_per_1000),
            figure(&c.gain_redemptions_per_1000),
            c.gain_value_per_1000.map_or(String::new(), |v| format!(
                ", value gain {}",
                figure(&Some(v))
            )),
            100.0 * c.unsupported_share,
            shares.join(", ")
        );
    }
    println!("\nIntervals: {}.", r.interval);
    println!("Assumptions:");
    for a in &r.assumptions {
        println!("  - {a}");
    }
    println!(
        "\nAdvanced: every estimator on redemptions per send ({}):",
        r.personalization.policy
    );
    for e in &r.personalization.estimators {
        if e.withheld {
            println!("  {:<7} withheld", e.estimator);
        } else {
            println!(
                "  {:<7} {:.4} [{:.4}, {:.4}]  ess {:.0}",
                e.estimator, e.estimate, e.ci_low, e.ci_high, e.effective_sample_size
            );
        }
    }
}

/// Writes report.html and history.json into `dir`.
fn write_dir(dir: &std::path::Path, report: &HistoryReport) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let write = |name: &str, text: String| -> anyhow::Result<()> {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    write("history.json", serde_json::to_string_pretty(report)?)?;
    write("report.html", crate::report::render_history_html(report))
}

/// Runs `offer-sim history`.
pub(crate) fn run(a: HistoryArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&a.file)
        .with_context(|| format!("cannot read {}", a.file.display()))?;
    let origin = a.file.display().to_string();
    let flags = ColumnFlags {
        offer: a.offer_column,
        redeemed: a.redeemed_column,
        value: a.value_column,
        propensity: a.propensity_column,
        customer: a.customer_column,
        ignore: a.ignore_columns,
    };
    let sends = sends::parse(&text, &origin, &flags)?;
    let report = evaluate(
        sends,
        &origin,
        &Evaluation {
            policy: a.policy,
            rules: a.rules,
            propensity_by: a.propensity_by,
            min_cell: a.min_cell,
            objective: a.objective,
            bootstrap: a.bootstrap,
            seed: a.seed,
        },
    )?;
    if let Some(dir) = &a.out {
        write_dir(dir, &report)?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report);
        if let Some(dir) = &a.out {
            println!("\nwrote {}/report.html and history.json", dir.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    const OFFERS: [&str; 3] = ["bogo", "points", "winback"];

    /// True redemption probability of `offer` for a send.
    fn truth(tier: &str, hour: u32, offer: usize, lift: f64) -> f64 {
        let p = match OFFERS[offer] {
            "bogo" if hour >= 14 => 0.20,
            "bogo" => 0.04,
            "winback" if tier == "c" => 0.25,
            "winback" => 0.03,
            _ => 0.08,
        };
        (p * lift).min(1.0)
    }

    /// The marketer's rule: BOGO after 2pm, points otherwise.
    fn rule(hour: u32) -> usize {
        if hour >= 14 { 0 } else { 1 }
    }

    /// A history of 3 sends per customer (customers differ in how much they
    /// redeem: repeat sends are correlated), made by the rule except for a
    /// `random` share of uniformly random sends. Returns the CSV and, per
    /// send, the true probability of each offer.
    fn history(seed: u64, customers: usize, random: f64, logged: bool) -> (String, Vec<[f64; 3]>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut csv = String::from("customer_id,tier,hour,offer,redeemed,value");
        if logged {
            csv.push_str(",propensity");
        }
        csv.push('\n');
        let mut truths = Vec::new();
        for c in 0..customers {
            let tier = ["a", "b", "c"][rng.random_range(0..3)];
            let lift = if rng.random::<f64>() < 0.5 { 0.5 } else { 1.5 };
            for _ in 0..3 {
                let hour = rng.random_range(6..22u32);
                let offer = if rng.random::<f64>() < random {
                    rng.random_range(0..3)
                } else {
                    rule(hour)
                };
                let p: [f64; 3] = std::array::from_fn(|k| truth(tier, hour, k, lift));
                let hit = rng.random::<f64>() < p[offer];
                let value = if hit { [3.5, 1.5, 4.0][offer] } else { 0.0 };
                csv.push_str(&format!(
                    "m{c},{tier},{hour},{},{},{value}",
                    OFFERS[offer],
                    u8::from(hit)
                ));
                if logged {
                    let pr = random / 3.0
                        + if offer == rule(hour) {
                            1.0 - random
                        } else {
                            0.0
                        };
                    csv.push_str(&format!(",{pr}"));
                }
                csv.push('\n');
                truths.push(p);
            }
        }
        (csv, truths)
    }

    fn options(rules: Option<PathBuf>) -> Evaluation {
        Evaluation {
            policy: "logistic-ts".into(),
            rules,
            propensity_by: Vec::new(),
            min_cell: 30,
            objective: Goal::Redemptions,
            bootstrap: 10,
            seed: 1,
        }
    }

    /// Mean over sends of the policy's true expected redemptions per 1,000
    /// (its probabilities recomputed: fitting is deterministic).
    fn true_value(c: &Counterfactual, truths: &[[f64; 3]], log: &crate::logs::Log) -> f64 {
        let order: Vec<usize> = log
            .actions
            .iter()
            .map(|a| OFFERS.iter().position(|o| o == a).expect("offer"))
            .collect();
        let targets = verdict::cross_fitted_targets(&c.policy, log, &[1.0; 3]).expect("targets");
        let total: f64 = targets
            .iter()
            .zip(truths)
            .map(|(pi, p)| pi.iter().zip(&order).map(|(w, &k)| w * p[k]).sum::<f64>())
            .sum();
        1000.0 * total / truths.len() as f64
    }

    fn covers(f: &Figure, truth: f64) -> bool {
        f.low <= truth && truth <= f.high
    }

    /// The verdict's intervals cover the known truth, with logged and with
    /// estimated propensities, for the personalization and for the rule.
    #[test]
    fn intervals_cover_the_known_truth() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rules = dir.path().join("today.rules");
        std::fs::write(&rules, "if hour >= 14 then bogo\notherwise points\n").expect("write");
        let (mut hits, mut runs) = (0, 0);
        for seed in 0..8u64 {
            let logged = seed % 2 == 0;
            let (csv, truths) = history(seed, 600, 0.3, logged);
            let s = sends::parse(&csv, "t.csv", &ColumnFlags::default()).expect("parse");
            let log = s.log.clone();
            let r = evaluate(s, "t.csv", &options(Some(rules.clone()))).expect("evaluate");
            let mut check = |c: &Counterfactual| {
                let f = c.redemptions_per_1000.expect("supported");
                let truth = true_value(c, &truths, &log);
                runs += 1;
                if covers(&f, truth) {
                    hits += 1;
                } else {
                    eprintln!("seed {seed} ({}): {f:?} misses {truth:.1}", c.policy);
                }
            };
            check(&r.personalization);
            check(r.your_rule.as_ref().expect("rule"));
            // The rule sends only the BOGO and points.
            let rule = r.your_rule.as_ref().expect("rule");
            let winback = log
                .actions
                .iter()
                .position(|a| a == "winback")
                .expect("winback");
            assert_eq!(rule.offer_share[winback], 0.0);
            assert!((rule.offer_share.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        }
        // 16 intervals meant to hold 95% of the time at every look: at most
        // two misses (a binomial tail of 4% at 95% coverage).
        assert!(
            hits >= runs - 2,
            "{hits} of {runs} intervals cover the truth"
        );
    }

    /// The HTML report of a small history: the verdict first, every
    /// interval of the table, the charts, the assumptions and the
    /// estimators under "Advanced"; no NaN and no "-0" anywhere.
    #[test]
    fn the_report_page_shows_the_verdict_and_its_intervals() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rules = dir.path().join("today.rules");
        std::fs::write(&rules, "if hour >= 14 then bogo\notherwise points\n").expect("write");
        let (csv, _) = history(5, 300, 0.3, false);
        let s = sends::parse(&csv, "t.csv", &ColumnFlags::default()).expect("parse");
        let r = evaluate(s, "t.csv", &options(Some(rules))).expect("evaluate");
        let out = dir.path().join("out");
        write_dir(&out, &r).expect("write");
        let html = std::fs::read_to_string(out.join("report.html")).expect("report.html");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("history.json")).expect("json"))
                .expect("valid json");
        assert_eq!(json["verdict"], r.verdict.as_str());
        let at = |needle: &str| html.find(needle).unwrap_or(usize::MAX);
        let verdict = r.verdict.replace('\'', "&#39;");
        assert!(at(&verdict) < at("Per 1,000 sends"), "{}", r.verdict);
        let y = r.your_sends.redemptions_per_1000;
        let g = r
            .personalization
            .gain_redemptions_per_1000
            .expect("supported");
        for interval in [
            format!(
                "{} to {}",
                crate::report::signed(g.low, 1),
                crate::report::signed(g.high, 1)
            ),
            format!("{:.1} to {:.1}", y.low, y.high),
        ] {
            assert!(html.contains(&interval), "missing {interval}");
        }
        assert_eq!(
            html.matches("<svg ").count(),
            2,
            "redemptions and value charts"
        );
        assert!(html.contains("Your rule (today.rules)"));
        assert!(at("What this assumes") < at("<h2>Advanced</h2>"));
        assert!(at("<h2>Advanced</h2>") < at(">dr<"));
        for bad in ["NaN", ">-0<", "-0.0", "inf"] {
            assert!(!html.contains(bad), "{bad}");
        }
        assert_eq!(r.sent_share.len(), 3);
        assert!((r.sent_share.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }

    /// A history made by a deterministic rule alone cannot say what another
    /// policy would have earned: the figures are withheld and the verdict
    /// says why.
    #[test]
    fn a_deterministic_history_refuses_numbers_without_support() {
        let (csv, _) = history(3, 400, 0.0, false);
        let s = sends::parse(&csv, "t.csv", &ColumnFlags::default()).expect("parse");
        // Cells by what the rule decided on. By tier x hour, most of the 48
        // cells hold fewer than `min_cell` sends and take the file's overall
        // frequencies, under which no offer looks unsent anywhere: the
        // support check then rests on the noise of the importance weights.
        let by_hour = Evaluation {
            propensity_by: vec!["hour".into()],
            ..options(None)
        };
        let r = evaluate(s, "t.csv", &by_hour).expect("evaluate");
        assert!(
            r.personalization.withheld,
            "{:?}",
            r.personalization.unsupported_share
        );
        assert!(r.personalization.redemptions_per_1000.is_none());
        assert!(r.personalization.unsupported_share > ope::DEFAULT_MAX_UNSUPPORTED);
        assert!(
            r.verdict.starts_with("Your history cannot say"),
            "{}",
            r.verdict
        );
        assert!(r.verdict.contains("random offer"), "{}", r.verdict);
        // What the sends earned is still said, within [0, 1000].
        let y = r.your_sends.redemptions_per_1000;
        assert!(0.0 <= y.low && y.low < y.value && y.value < y.high && y.high <= 1000.0);
    }
}
