//! The admin subcommands that talk to a running server: `export` writes the
//! decision log as JSON Lines, one decision per line (the format is in the
//! README; `offer-sim ope --logs` reads it); `forget` erases a customer;
//! `backup` writes a consistent snapshot of the store to a file.

use std::io::Write;

use anyhow::Context as _;
use serde_json::{Map, Value, json};

use crate::{
    cli::{BackupArgs, ExportArgs, ForgetArgs},
    decision::now_ms,
    proto::{self, feature_value::Kind},
};

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
pub fn to_json(e: proto::DecisionLogEntry) -> Value {
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
    });
    if let Some(m) = o.as_object_mut() {
        if let Some(v) = e.value {
            m.insert("value".into(), json!(v));
        }
        if let Some(t) = e.redeemed_unix_ms {
            m.insert("redeemed_unix_ms".into(), json!(t));
        }
    }
    o
}

/// Runs the export; returns how many decisions were written.
pub async fn run(args: ExportArgs) -> anyhow::Result<u64> {
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

fn status(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}: {}", s.code(), s.message())
}

/// `offer-bandit forget`: erases a customer and prints what was erased.
pub async fn forget(args: ForgetArgs) -> anyhow::Result<()> {
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
pub async fn backup(args: BackupArgs) -> anyhow::Result<()> {
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
