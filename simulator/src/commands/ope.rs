//! `ope`: estimates of what a policy would have earned on logged decisions
//! (the service's export, or the Open Bandit Dataset), printed as a table or
//! JSON.

use anyhow::Context as _;

use crate::{
    cli::{ObjectiveArg, OpeArgs},
    evaluate, logs, ope, policies,
    policies::PolicyEnv,
    stats::z_score,
};

/// `offer-sim ope`: every estimator's value of the target policy on a log,
/// as a table or JSON.
pub(crate) fn ope(a: OpeArgs) -> anyhow::Result<()> {
    if !(a.level > 0.5 && a.level < 1.0) {
        anyhow::bail!("--level must be between 0.5 and 1");
    }
    if !(a.min_support >= 0.0 && a.min_support < 1.0) {
        anyhow::bail!("--min-support must be in [0, 1)");
    }
    if !(a.max_unsupported >= 0.0 && a.max_unsupported < 1.0) {
        anyhow::bail!("--max-unsupported must be in [0, 1)");
    }
    let opts = ope::Options {
        clip: a.clip,
        bootstrap: a.bootstrap.max(1),
        seed: a.seed,
        level: a.level,
        min_support: a.min_support,
        max_unsupported: a.max_unsupported,
    };
    let (estimates, header) = if let Some(dir) = &a.obd {
        let prior_dist = || -> anyhow::Result<Vec<Vec<f64>>> {
            let path = a
                .prior
                .as_ref()
                .context("--target bts needs --prior prior_bts.yaml")?;
            let (alpha, beta) = logs::load_bts_prior(path, &a.campaign)?;
            Ok(logs::bts_action_dist(&alpha, &beta, 3, a.sims, a.seed))
        };
        let log = logs::load_obd(dir, &a.behavior, &a.campaign)?;
        let targets = match a.target.as_str() {
            "bts" => {
                let dist = prior_dist()?;
                if dist.len() != log.actions.len() {
                    anyhow::bail!(
                        "the prior has {} items, the log {}",
                        dist.len(),
                        log.actions.len()
                    );
                }
                evaluate::per_slot(&log, &dist)
            }
            "random" => evaluate::uniform(&log),
            t => anyhow::bail!("--target must be bts or random, not '{t}'"),
        };
        let truth_log = logs::load_obd(dir, &a.target, &a.campaign)?;
        let truth =
            truth_log.rows.iter().map(|r| r.reward).sum::<f64>() / truth_log.rows.len() as f64;
        let rounds = evaluate::rounds(&log, &targets);
        (
            ope::with_truth(ope::estimate_all(&rounds, &opts), truth),
            format!(
                "OBD {}: value of {} estimated from the {} log ({} impressions); ground truth {:.5} = mean click of the {} log",
                a.campaign,
                a.target,
                a.behavior,
                log.rows.len(),
                truth,
                a.target
            ),
        )
    } else {
        let path = a
            .logs
            .as_ref()
            .context("give --logs FILE.jsonl or --obd DIR")?;
        let (log, cut) = logs::load_export(path, matches!(a.reward, ObjectiveArg::Value), a.cut)?;
        let header = format!(
            "{}: {} decisions whose reward window closed before {} ({} left out with the window still open, {} of them already redeemed), target {}",
            path.display(),
            log.rows.len(),
            cut.cut_unix_ms
                .map_or("the export (none open)".to_owned(), |t| format!(
                    "{t} (Unix ms)"
                )),
            cut.open,
            cut.open_redeemed,
            a.policy
        );
        match a.policy.as_str() {
            "uniform" => (
                ope::estimate_all(&evaluate::rounds(&log, &evaluate::uniform(&log)), &opts),
                header,
            ),
            spec if spec.starts_with("fixed:") => {
                let id = &spec["fixed:".len()..];
                let k = log
                    .actions
                    .iter()
                    .position(|x| x == id)
                    .with_context(|| format!("no offer '{id}' in the log"))?;
                (
                    ope::estimate_all(&evaluate::rounds(&log, &evaluate::fixed(&log, k)), &opts),
                    header,
                )
            }
            spec => {
                let env = PolicyEnv::for_log(&log, vec![1.0; log.actions.len()])?;
                let mut policy = policies::build(spec, &env)?;
                if a.replay {
                    if !evaluate::is_uniform(&log) {
                        anyhow::bail!(
                            "--replay needs a log of uniformly random decisions (propensity = 1 / candidates)"
                        );
                    }
                    let (mean, se, kept) =
                        evaluate::replay_learning(policy.as_mut(), &log, a.seed)?;
                    let e = ope::Estimate {
                        estimator: "replay".into(),
                        estimate: mean,
                        ci_low: mean - z_score(a.level) * se,
                        ci_high: mean + z_score(a.level) * se,
                        effective_sample_size: kept as f64,
                        rounds: log.rows.len(),
                        ground_truth: None,
                        relative_error: None,
                        warnings: if kept < 100 {
                            vec![format!("only {kept} decisions matched")]
                        } else {
                            Vec::new()
                        },
                        min_propensity: log
                            .rows
                            .iter()
                            .map(|r| r.propensity)
                            .fold(f64::INFINITY, f64::min),
                        unsupported_share: 0.0,
                        withheld: false,
                        interval: "normal approximation over the matched decisions (a uniformly random log)".to_owned(),
                    };
                    (vec![e], header)
                } else {
                    if !(a.train_fraction > 0.0 && a.train_fraction < 1.0) {
                        anyhow::bail!("--train-fraction must be between 0 and 1");
                    }
                    let train = (log.rows.len() as f64 * a.train_fraction) as usize;
                    let (test, targets) = evaluate::frozen(policy.as_mut(), &log, train)?;
                    (
                        ope::estimate_all(&evaluate::rounds(&test, &targets), &opts),
                        header,
                    )
                }
            }
        }
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&estimates)?);
        return Ok(());
    }
    println!("{header}");
    println!(
        "{:<10} {:>10} {:>22} {:>10} {:>12}",
        "estimator",
        "estimate",
        format!("{:.0}% interval", 100.0 * a.level),
        "ESS",
        "rel. error"
    );
    for e in &estimates {
        if e.withheld {
            println!(
                "{:<10} {:>10} {:>22} {:>10.0} {:>12}",
                e.estimator, "withheld", "(no support)", e.effective_sample_size, "-"
            );
            continue;
        }
        println!(
            "{:<10} {:>10.5} {:>22} {:>10.0} {:>12}",
            e.estimator,
            e.estimate,
            format!("[{:.5}, {:.5}]", e.ci_low, e.ci_high),
            e.effective_sample_size,
            e.relative_error
                .map_or("-".to_owned(), |r| format!("{:.1}%", 100.0 * r))
        );
    }
    if let Some(e) = estimates.first() {
        println!(
            "smallest logged propensity {:.3e}; target's share on unsupported actions {:.1}%",
            e.min_propensity,
            100.0 * e.unsupported_share
        );
    }
    let mut said = std::collections::BTreeSet::new();
    for e in &estimates {
        if said.insert(e.interval.clone()) {
            println!("interval of {}: {}", e.estimator, e.interval);
        }
    }
    let mut warned = std::collections::BTreeSet::new();
    for w in estimates.iter().flat_map(|e| &e.warnings) {
        if warned.insert(w.clone()) {
            println!("warning: {w}");
        }
    }
    Ok(())
}
