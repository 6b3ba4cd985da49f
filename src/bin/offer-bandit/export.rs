//! The admin subcommands that talk to a running server: `export` writes the
//! decision log as JSON Lines, one decision per line (the format is in
//! docs/api.md, "The decision log"; `offer-sim ope --logs` reads it); `forget` erases a customer;
//! `backup` writes a consistent snapshot of the store to a file; `report`
//! prints the bandit-versus-control report. The live campaign changes are
//! in [`crate::admin_cli`].

use std::io::Write;

use anyhow::Context as _;
use serde_json::{Map, Value, json};

use offer_bandit::{
    now_ms,
    policy::shared_prior::{FIRST_ESTIMATE, MIN_VARIANCE, variances_estimated},
    proto::{self, feature_value::Kind},
};

use crate::cli::{BackupArgs, ExportArgs, ForgetArgs, ReportArgs};

/// A time bound: a duration ago ("24h") or Unix milliseconds.
fn parse_time(s: &str) -> anyhow::Result<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let ago = humantime::parse_duration(s)
        .with_context(|| format!("'{s}' is neither Unix milliseconds nor a duration like 24h"))?;
    Ok(now_ms() - i64::try_from(ago.as_millis()).unwrap_or(i64::MAX))
}

/// One decision as a JSON object.
pub(crate) fn to_json(e: proto::DecisionLogEntry) -> Value {
    let mut context = Map::new();
    let mut keys: Vec<_> = e.context.into_iter().collect();
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    for (k, v) in keys {
        let v = match v.kind {
            Some(Kind::Number(n)) => json!(n),
            Some(Kind::Category(c)) => json!(c),
            Some(Kind::Flag(b)) => json!(b),
            None => Value::Null,
        };
        context.insert(k, v);
    }
    let mut o = json!({
        "decision_id": e.decision_id,
        "campaign": e.campaign,
        "created_unix_ms": e.created_unix_ms,
        "expires_unix_ms": e.expires_unix_ms,
        "context": context,
        "candidates": e.candidate_offer_ids,
        "offer_id": e.offer_id,
        "propensity": e.propensity,
        "model_version": e.model_version,
        "segment": e.segment,
        "outcome": e.outcome,
        "arm": e.arm,
    });
    if let Some(m) = o.as_object_mut() {
        if let Some(v) = e.value {
            m.insert("value".into(), json!(v));
        }
        if let Some(t) = e.redeemed_unix_ms {
            m.insert("redeemed_unix_ms".into(), json!(t));
        }
        if !e.request_id.is_empty() {
            m.insert("request_id".into(), json!(e.request_id));
        }
    }
    o
}

/// Runs the export; returns how many decisions were written.
pub(crate) async fn run(args: ExportArgs) -> anyhow::Result<u64> {
    let since = args
        .since
        .as_deref()
        .map(parse_time)
        .transpose()?
        .unwrap_or(0);
    let until = args
        .until
        .as_deref()
        .map(parse_time)
        .transpose()?
        .unwrap_or(0);
    let mut client = crate::client::admin(&args.client).await?;
    let mut stream = client
        .export_decisions(proto::ExportDecisionsRequest {
            campaign: args.campaign.clone(),
            since_unix_ms: since.max(0),
            until_unix_ms: until.max(0),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}: {}", s.code(), s.message()))?
        .into_inner();
    let mut out: Box<dyn Write> = match &args.out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut n = 0;
    while let Some(entry) = stream
        .message()
        .await
        .map_err(|s| anyhow::anyhow!("{}: {}", s.code(), s.message()))?
    {
        serde_json::to_writer(&mut out, &to_json(entry))?;
        out.write_all(b"\n")?;
        n += 1;
    }
    out.flush()?;
    Ok(n)
}

/// A gRPC error as the CLI prints it.
pub(crate) fn status(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}: {}", s.code(), s.message())
}

/// `offer-bandit access`: prints everything stored about a customer as
/// one JSON document.
pub(crate) async fn access(args: ForgetArgs) -> anyhow::Result<()> {
    let mut client = crate::client::admin(&args.client).await?;
    let r = client
        .access_customer(proto::AccessCustomerRequest {
            customer_id: args.customer_id.clone(),
        })
        .await
        .map_err(status)?
        .into_inner();
    let decisions: Vec<Value> = r.decisions.into_iter().map(to_json).collect();
    let doc = json!({
        "customer_id": args.customer_id,
        "stored_as": {
            "customer_hash": r.customer_hash,
            "note": "the id itself is never stored; decisions are indexed by this keyed BLAKE3 hash",
        },
        "decisions": decisions,
        "also_stored": "nothing else is keyed by the customer: posteriors, arm and budget counts are aggregates over all customers (a customer's decisions count in them until `forget` subtracts them)",
    });
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &doc)?;
    writeln!(out)?;
    Ok(())
}

/// `offer-bandit forget`: erases a customer and prints what was erased.
pub(crate) async fn forget(args: ForgetArgs) -> anyhow::Result<()> {
    let mut client = crate::client::admin(&args.client).await?;
    let r = client
        .forget_customer(proto::ForgetCustomerRequest {
            customer_id: args.customer_id,
        })
        .await
        .map_err(status)?
        .into_inner();
    println!(
        "erased {} decisions ({} subtracted from regression posteriors, {})",
        r.decisions_erased,
        r.model_updates,
        if r.posteriors_exact {
            "exactly"
        } else {
            "approximately"
        }
    );
    Ok(())
}

/// `offer-bandit backup`: streams a snapshot into `--out` (written to a
/// temporary name first, so a failed backup never leaves a partial file).
pub(crate) async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let mut client = crate::client::admin(&args.client).await?;
    let mut stream = client
        .backup(proto::BackupRequest {})
        .await
        .map_err(status)?
        .into_inner();
    let partial = args.out.with_extension("partial");
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&partial)
            .with_context(|| format!("cannot create {}", partial.display()))?,
    );
    let mut bytes = 0u64;
    while let Some(chunk) = stream.message().await.map_err(status)? {
        out.write_all(&chunk.data)?;
        bytes += chunk.data.len() as u64;
    }
    out.into_inner()
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", partial.display()))?
        .sync_all()?;
    std::fs::rename(&partial, &args.out)
        .with_context(|| format!("cannot move the backup to {}", args.out.display()))?;
    println!("backup of {bytes} bytes written to {}", args.out.display());
    Ok(())
}

fn estimate_json(e: Option<&proto::Estimate>) -> Value {
    match e {
        Some(e) => json!({"value": e.value, "low": e.low, "high": e.high}),
        None => Value::Null,
    }
}

fn arm_json(a: Option<&proto::ArmReport>) -> Value {
    match a {
        Some(a) => json!({
            "arm": a.arm,
            "decisions": a.decisions,
            "redemptions": a.redemptions,
            "pending": a.pending,
            "closed_decisions": a.closed_decisions,
            "closed_redemptions": a.closed_redemptions,
            "customers": a.customers,
            "redemption_rate": estimate_json(a.redemption_rate.as_ref()),
            "value_per_1000": estimate_json(a.value_per_1000.as_ref()),
        }),
        None => Value::Null,
    }
}

/// The report as JSON (the `--json` output of `offer-bandit report`).
pub(crate) fn report_json(r: &proto::CampaignReport) -> Value {
    json!({
        "campaign": r.campaign,
        "control_share": r.control_share,
        "bandit": arm_json(r.bandit.as_ref()),
        "control": arm_json(r.control.as_ref()),
        "fallback": arm_json(r.fallback.as_ref()),
        "non_personalized": arm_json(r.non_personalized.as_ref()),
        "uplift": r.uplift.as_ref().map_or(Value::Null, |u| json!({
            "rate_difference": estimate_json(u.rate_difference.as_ref()),
            "rate_relative": estimate_json(u.rate_relative.as_ref()),
            "value_per_1000_difference": estimate_json(u.value_per_1000_difference.as_ref()),
        })),
        "offers": r.offers.iter().map(|o| json!({
            "offer_id": o.offer_id,
            "decisions": o.decisions,
            "redemptions": o.redemptions,
            "traffic_share": o.traffic_share,
            "decisions_left": o.decisions_left,
            "redemptions_left": o.redemptions_left,
            "decisions_left_today": o.decisions_left_today,
            "redemptions_left_today": o.redemptions_left_today,
            "budget_status": o.budget_status,
            "budget_reason": o.budget_reason,
            "decisions_allowed_by_now": o.decisions_allowed_by_now,
            "redemptions_allowed_by_now": o.redemptions_allowed_by_now,
            "posterior": estimate_json(o.posterior.as_ref()),
        })).collect::<Vec<_>>(),
        "pacing": r.pacing.as_ref().map_or(Value::Null, |p| json!({
            "time_zone": p.time_zone,
            "local_time": p.local_time,
            "day_gone": p.day_gone,
            "learned": p.learned,
            "profile": p.profile,
        })),
    })
}

fn pct(e: Option<&proto::Estimate>) -> String {
    e.map_or("-".into(), |e| {
        format!(
            "{:.2}% [{:.2}, {:.2}]",
            100.0 * e.value,
            100.0 * e.low,
            100.0 * e.high
        )
    })
}

fn num(e: Option<&proto::Estimate>) -> String {
    e.map_or("-".into(), |e| {
        format!("{:.1} [{:.1}, {:.1}]", e.value, e.low, e.high)
    })
}

/// `offer-bandit report`: the campaign report as a table or JSON.
pub(crate) async fn report(args: ReportArgs) -> anyhow::Result<()> {
    let mut client = crate::client::admin(&args.client).await?;
    let r = client
        .get_campaign_report(proto::GetCampaignReportRequest {
            campaign: args.campaign,
        })
        .await
        .map_err(status)?
        .into_inner();
    let stats = client
        .get_campaign_stats(proto::GetCampaignStatsRequest {
            campaign: r.campaign.clone(),
        })
        .await
        .map_err(status)?
        .into_inner();
    let mut priors: Vec<&proto::FeaturePrior> = stats.feature_priors.iter().collect();
    priors.sort_by(|a, b| b.prior_variance.total_cmp(&a.prior_variance));
    let estimated = variances_estimated(stats.prior_events);
    if args.json {
        let mut v = report_json(&r);
        // Null for campaigns without a learned prior.
        v["learned_prior"] = if priors.is_empty() && stats.offer_effects.is_empty() {
            Value::Null
        } else {
            json!({
                "events": stats.prior_events,
                "estimated": estimated,
                "prior_rate": stats.prior_rate,
                "groups": priors.iter().map(|p| json!({
                    "feature": p.feature,
                    "part": p.part,
                    "prior_variance": p.prior_variance,
                })).collect::<Vec<_>>(),
                "offer_effects": stats.offer_effects.iter().map(|e| json!({
                    "offer_feature": e.offer_feature,
                    "context": e.context,
                    "effect": e.effect,
                })).collect::<Vec<_>>(),
            })
        };
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "campaign {} (control share {:.0}%)",
        r.campaign,
        100.0 * r.control_share
    );
    println!(
        "rates, values and the uplift count decisions whose reward window has closed; \
         95% intervals clustered by customer, valid at any look"
    );
    println!(
        "{:<8} {:>10} {:>10} {:>8} {:>8} {:>9}  {:<28} value per 1000 (95% CI)",
        "arm",
        "decisions",
        "redeemed",
        "pending",
        "closed",
        "customers",
        "redemption rate (95% CI)"
    );
    for a in [&r.bandit, &r.control].into_iter().flatten() {
        println!(
            "{:<8} {:>10} {:>10} {:>8} {:>8} {:>9}  {:<28} {}",
            a.arm,
            a.decisions,
            a.redemptions,
            a.pending,
            a.closed_decisions,
            a.customers,
            pct(a.redemption_rate.as_ref()),
            num(a.value_per_1000.as_ref())
        );
    }
    // Outside the comparison: shown only when callers logged any.
    for a in [&r.fallback, &r.non_personalized]
        .into_iter()
        .flatten()
        .filter(|a| a.decisions > 0)
    {
        println!(
            "{:<8} {:>10} {:>10} {:>8} {:>8} {:>9}  {:<28} {} (not in the uplift)",
            a.arm,
            a.decisions,
            a.redemptions,
            a.pending,
            a.closed_decisions,
            a.customers,
            pct(a.redemption_rate.as_ref()),
            num(a.value_per_1000.as_ref())
        );
    }
    match &r.uplift {
        Some(u) => {
            println!(
                "uplift: {} points of redemption rate; {} relative; {} value per 1000",
                pct(u.rate_difference.as_ref()),
                pct(u.rate_relative.as_ref()),
                num(u.value_per_1000_difference.as_ref())
            );
        }
        None => println!("uplift: not yet (an arm has no decisions)"),
    }
    println!(
        "{:<24} {:>10} {:>8} {:>10}  {:<28} budget left",
        "offer", "decisions", "share", "redeemed", "posterior rate (95% CI)"
    );
    for o in &r.offers {
        let left: Vec<String> = [
            ("decisions", o.decisions_left),
            ("redemptions", o.redemptions_left),
            ("decisions today", o.decisions_left_today),
            ("redemptions today", o.redemptions_left_today),
        ]
        .into_iter()
        .filter_map(|(name, v)| v.map(|v| format!("{v} {name}")))
        .collect();
        let mut left = left;
        for (name, v) in [
            ("decisions", o.decisions_allowed_by_now),
            ("redemptions", o.redemptions_allowed_by_now),
        ] {
            if let Some(v) = v {
                left.push(format!("{v} {name} allowed by now"));
            }
        }
        if !left.is_empty() {
            left.push(o.budget_status.clone());
        }
        println!(
            "{:<24} {:>10} {:>7.1}% {:>10}  {:<28} {}",
            o.offer_id,
            o.decisions,
            100.0 * o.traffic_share,
            o.redemptions,
            pct(o.posterior.as_ref()),
            if left.is_empty() {
                "-".to_owned()
            } else {
                left.join(", ")
            }
        );
    }
    let paced = r
        .offers
        .iter()
        .any(|o| o.decisions_allowed_by_now.is_some() || o.redemptions_allowed_by_now.is_some());
    if let (true, Some(p)) = (paced, &r.pacing) {
        println!(
            "pacing: {} in {}; {:.0}% of the day's expected visits gone; by hour: {}",
            p.local_time,
            p.time_zone,
            100.0 * p.day_gone,
            p.profile
        );
    }
    if !priors.is_empty() && !estimated {
        println!(
            "what the model found matters: not estimated yet (the learned prior's first estimate comes after {FIRST_ESTIMATE} learning events; {} so far)",
            stats.prior_events
        );
    } else if !priors.is_empty() {
        println!(
            "what the model found matters (learned prior after {} learning events; near {MIN_VARIANCE} a feature says nothing):",
            stats.prior_events
        );
        println!("{:<24} {:<8} {:>14}", "feature", "part", "prior variance");
        for p in priors {
            println!("{:<24} {:<8} {:>14.4}", p.feature, p.part, p.prior_variance);
        }
    }
    if let Some(rate) = stats.prior_rate {
        println!(
            "new and untried offers start at a rate of {:.2}%, the campaign's so far",
            100.0 * rate
        );
    }
    if !stats.offer_effects.is_empty() {
        println!(
            "what offers' features do (learned across offers; on the model's scale: log-odds for logistic-ts, the modelled rate for linear-ts):"
        );
        println!("{:<28} {:<32} {:>8}", "offer feature", "context", "effect");
        for e in &stats.offer_effects {
            println!(
                "{:<28} {:<32} {:>+8.3}",
                e.offer_feature, e.context, e.effect
            );
        }
    }
    Ok(())
}
