//! `--offer-features`: what each offer is (its category, kind, depth...),
//! encoded for contextual policies as the server encodes a campaign's
//! `offer_features`. The attributes come from a scenario's offer table or
//! from a dataset's `<name>.meta.json` (`{"offers": [{"name": ..., ...}]}`).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context as _, bail};
use offer_bandit::{Buckets, Context, Encoder, FeatureValue, infer_specs};

use crate::scenario::SimOffer;

/// Every offer's encoded features, and the encoding's dimension.
#[derive(Debug, Clone)]
pub(crate) struct OfferFeatures {
    /// Per offer, in the world's order.
    pub(crate) encoded: Vec<Vec<(u32, f64)>>,
    /// The offer encoder's dimension (intercept included).
    pub(crate) columns: usize,
}

/// Encodes `names` of each offer's `attributes`, inferred as a dataset's
/// context features are ([`infer_specs`]): labels become categories (the
/// values seen), numbers are scaled over the range seen, true/false are
/// flags.
pub(crate) fn encode(names: &[String], attributes: &[Context]) -> anyhow::Result<OfferFeatures> {
    let inferred = infer_specs(attributes, 1, Buckets::Steps, usize::MAX);
    let specs = names
        .iter()
        .map(|name| {
            inferred
                .iter()
                .find(|s| s.name() == name)
                .cloned()
                .with_context(|| {
                    format!("--offer-features: no offer has an attribute '{name}' (or all have the same number)")
                })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let encoder = Encoder::new(specs, 0).context("--offer-features")?;
    let encoded = attributes
        .iter()
        .map(|a| encoder.encode(a))
        .collect::<Result<Vec<_>, _>>()
        .context("--offer-features")?;
    Ok(OfferFeatures {
        encoded,
        columns: encoder.dim(),
    })
}

/// A scenario's offers' attributes: category, kind and depth.
pub(crate) fn of_scenario(offers: &[SimOffer]) -> Vec<Context> {
    offers
        .iter()
        .map(|o| {
            let mut c = Context::new();
            if !o.category.is_empty() {
                c.insert(
                    "category".into(),
                    FeatureValue::Category(o.category.clone()),
                );
            }
            if !o.kind.is_empty() {
                c.insert("kind".into(), FeatureValue::Category(o.kind.clone()));
            }
            c.insert("depth".into(), FeatureValue::Number(o.depth));
            c
        })
        .collect()
}

/// A dataset's offers' attributes, from `<dataset stem>.meta.json` next to
/// it, matched to `offers` by name.
pub(crate) fn of_dataset(dataset: &Path, offers: &[String]) -> anyhow::Result<Vec<Context>> {
    let meta = dataset.with_extension("meta.json");
    let text = std::fs::read_to_string(&meta).with_context(|| {
        format!(
            "--offer-features reads the offers' attributes from {}",
            meta.display()
        )
    })?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", meta.display()))?;
    let Some(list) = json.get("offers").and_then(|o| o.as_array()) else {
        bail!("{}: expected an \"offers\" list", meta.display());
    };
    let mut by_name: HashMap<String, Context> = HashMap::new();
    for o in list {
        let Some(fields) = o.as_object() else {
            continue;
        };
        let Some(name) = fields
            .get("name")
            .or_else(|| fields.get("id"))
            .and_then(|n| n.as_str())
        else {
            continue;
        };
        let mut c = Context::new();
        for (k, v) in fields.iter().filter(|(k, _)| *k != "name" && *k != "id") {
            let value = match v {
                serde_json::Value::String(s) => FeatureValue::Category(s.clone()),
                serde_json::Value::Bool(b) => FeatureValue::Flag(*b),
                serde_json::Value::Number(n) => match n.as_f64() {
                    Some(x) => FeatureValue::Number(x),
                    None => continue,
                },
                _ => continue,
            };
            c.insert(k.clone(), value);
        }
        by_name.insert(name.to_owned(), c);
    }
    offers
        .iter()
        .map(|o| {
            by_name
                .remove(o)
                .with_context(|| format!("{}: no offer '{o}'", meta.display()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_encode_by_their_type() -> anyhow::Result<()> {
        let offer = |kind: &str, depth: f64, seasonal: bool| {
            Context::from([
                ("kind".to_owned(), FeatureValue::Category(kind.into())),
                ("depth".to_owned(), FeatureValue::Number(depth)),
                ("seasonal".to_owned(), FeatureValue::Flag(seasonal)),
            ])
        };
        let attributes = [offer("bogo", 0.5, true), offer("pct", 0.1, false)];
        let names = ["kind".to_owned(), "depth".to_owned(), "seasonal".to_owned()];
        let f = encode(&names, &attributes)?;
        // Intercept, bogo, pct, other, depth scaled, flag.
        assert_eq!(f.columns, 6);
        assert_eq!(f.encoded[0], [(0, 1.0), (1, 1.0), (4, 1.0), (5, 1.0)]);
        assert_eq!(f.encoded[1], [(0, 1.0), (2, 1.0), (4, 0.0)]);
        let missing = encode(&["colour".to_owned()], &attributes).expect_err("unknown");
        assert!(missing.to_string().contains("colour"), "{missing}");
        Ok(())
    }
}
