//! A loyalty team's history of sends, as every team has it: one CSV row per
//! send, with the offer sent, whether it was redeemed, optionally its value,
//! the probability it was sent with and the customer, and the customer's
//! attributes. Column names are detected or given by flags.

use std::collections::{BTreeSet, HashMap};

use anyhow::{Context as _, bail};
use offer_bandit::{Context, FeatureValue};

use crate::logs::{Log, Logged};

/// Column names given on the command line (None: detect).
#[derive(Debug, Clone, Default)]
pub(crate) struct ColumnFlags {
    pub(crate) offer: Option<String>,
    pub(crate) redeemed: Option<String>,
    pub(crate) value: Option<String>,
    pub(crate) propensity: Option<String>,
    pub(crate) customer: Option<String>,
    /// Columns that are neither roles nor attributes.
    pub(crate) ignore: Vec<String>,
}

/// Names a role's column is detected by (case-insensitive).
const OFFER: &[&str] = &["offer", "offer_id", "offer_sent", "treatment", "action"];
const REDEEMED: &[&str] = &[
    "redeemed",
    "redemption",
    "converted",
    "conversion",
    "responded",
    "outcome",
];
const VALUE: &[&str] = &["value", "redemption_value", "revenue", "amount"];
const PROPENSITY: &[&str] = &["propensity", "probability", "send_probability"];
const CUSTOMER: &[&str] = &[
    "customer",
    "customer_id",
    "member",
    "member_id",
    "loyalty_id",
    "user_id",
];
/// Columns left out by default: when a send happened is not who it went to.
const TIME: &[&str] = &[
    "timestamp",
    "sent_at",
    "send_time",
    "send_date",
    "date",
    "created_at",
];

/// Which column plays which role.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Columns {
    pub(crate) offer: String,
    pub(crate) redeemed: String,
    pub(crate) value: Option<String>,
    pub(crate) propensity: Option<String>,
    pub(crate) customer: Option<String>,
    /// The customer attributes (everything else).
    pub(crate) attributes: Vec<String>,
    /// Columns left out.
    pub(crate) ignored: Vec<String>,
}

/// The sends, read.
#[derive(Debug, Clone)]
pub(crate) struct Sends {
    /// One logged decision per send: every offer of the file a candidate,
    /// reward 1 for a redemption; propensity as logged, or NaN until
    /// estimated.
    pub(crate) log: Log,
    /// Per send, the value of its redemption (0 when not redeemed); `None`
    /// without a value column.
    pub(crate) values: Option<Vec<f64>>,
    pub(crate) columns: Columns,
    /// Distinct customers (sends without a customer are each their own).
    pub(crate) customers: usize,
}

fn find(
    header: &[String],
    given: &Option<String>,
    names: &[&str],
    role: &str,
) -> anyhow::Result<Option<usize>> {
    if let Some(g) = given {
        return match header.iter().position(|h| h == g) {
            Some(i) => Ok(Some(i)),
            None => bail!(
                "no column '{g}' for the {role} (columns: {})",
                header.join(", ")
            ),
        };
    }
    Ok(header
        .iter()
        .position(|h| names.iter().any(|n| h.eq_ignore_ascii_case(n))))
}

fn redeemed(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "y" | "t" => Some(true),
        "0" | "false" | "no" | "n" | "f" => Some(false),
        _ => None,
    }
}

/// Parses a history CSV; `origin` names it in errors.
pub(crate) fn parse(text: &str, origin: &str, flags: &ColumnFlags) -> anyhow::Result<Sends> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines
        .next()
        .with_context(|| format!("{origin}: the file is empty; expected a header row"))?;
    let header: Vec<String> = crate::dataset::split_csv(header)
        .into_iter()
        .map(|h| h.trim().to_owned())
        .collect();
    let offer =
        find(&header, &flags.offer, OFFER, "offer sent (--offer-column)")?.with_context(|| {
            format!(
                "{origin}: no offer column (looked for {}); name it with --offer-column",
                OFFER.join(", ")
            )
        })?;
    let redeemed_col = find(
        &header,
        &flags.redeemed,
        REDEEMED,
        "outcome (--redeemed-column)",
    )?
    .with_context(|| {
        format!(
            "{origin}: no redeemed column (looked for {}); name it with --redeemed-column",
            REDEEMED.join(", ")
        )
    })?;
    let value = find(&header, &flags.value, VALUE, "value (--value-column)")?;
    let propensity = find(
        &header,
        &flags.propensity,
        PROPENSITY,
        "propensity (--propensity-column)",
    )?;
    let customer = find(
        &header,
        &flags.customer,
        CUSTOMER,
        "customer (--customer-column)",
    )?;
    let roles: BTreeSet<usize> = [Some(offer), Some(redeemed_col), value, propensity, customer]
        .into_iter()
        .flatten()
        .collect();
    let mut ignored = Vec::new();
    let mut attributes = Vec::new();
    for (i, h) in header.iter().enumerate() {
        if roles.contains(&i) {
            continue;
        }
        if flags.ignore.iter().any(|x| x == h)
            || (flags.ignore.is_empty() && TIME.iter().any(|t| h.eq_ignore_ascii_case(t)))
        {
            ignored.push(i);
        } else {
            attributes.push(i);
        }
    }
    for g in &flags.ignore {
        if !header.contains(g) {
            bail!("--ignore-columns: no column '{g}'");
        }
    }
    let mut rows: Vec<(usize, Vec<String>)> = Vec::new();
    for (idx, line) in lines {
        let fields = crate::dataset::split_csv(line);
        if fields.len() != header.len() {
            bail!(
                "{origin}:{}: {} fields, but the header has {}",
                idx + 1,
                fields.len(),
                header.len()
            );
        }
        rows.push((idx + 1, fields));
    }
    if rows.is_empty() {
        bail!("{origin}: no sends (only a header)");
    }
    let numeric: Vec<bool> = attributes
        .iter()
        .map(|&c| {
            rows.iter().all(|(_, f)| {
                let v = f[c].trim();
                v.is_empty() || v.parse::<f64>().is_ok_and(f64::is_finite)
            })
        })
        .collect();
    let actions: Vec<String> = rows
        .iter()
        .map(|(_, f)| f[offer].trim().to_owned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if actions.iter().any(String::is_empty) {
        let line = rows
            .iter()
            .find(|(_, f)| f[offer].trim().is_empty())
            .map_or(0, |r| r.0);
        bail!(
            "{origin}:{line}: no offer in the offer column '{}'",
            header[offer]
        );
    }
    if actions.len() < 2 {
        bail!(
            "{origin}: every send is of one offer ({}); there is nothing to choose between",
            actions[0]
        );
    }
    let index: HashMap<&str, usize> = actions
        .iter()
        .enumerate()
        .map(|(i, a)| (a.as_str(), i))
        .collect();
    let mut customers: HashMap<String, u64> = HashMap::new();
    let mut anonymous = 0usize;
    let mut logged = Vec::with_capacity(rows.len());
    let mut values = value.map(|_| Vec::with_capacity(rows.len()));
    for (line, f) in &rows {
        let at = |what: &str| format!("{origin}:{line}: {what}");
        let hit = redeemed(&f[redeemed_col]).with_context(|| {
            at(&format!(
                "'{}' in '{}' is not 0/1, yes/no or true/false",
                f[redeemed_col], header[redeemed_col]
            ))
        })?;
        if let (Some(c), Some(vs)) = (value, values.as_mut()) {
            let text = f[c].trim();
            let v = if text.is_empty() {
                0.0
            } else {
                text.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .with_context(|| at(&format!("value '{text}' is not a number >= 0")))?
            };
            vs.push(if hit { v } else { 0.0 });
        }
        let p = match propensity {
            Some(c) => {
                let text = f[c].trim();
                text.parse::<f64>()
                    .ok()
                    .filter(|p| *p > 0.0 && *p <= 1.0)
                    .with_context(|| at(&format!("propensity '{text}' is not in (0, 1]")))?
            }
            None => f64::NAN,
        };
        let who = customer.map(|c| f[c].trim()).filter(|c| !c.is_empty());
        let cluster = match who {
            Some(c) => {
                let next = customers.len() as u64;
                Some(*customers.entry(c.to_owned()).or_insert(next))
            }
            None => {
                anonymous += 1;
                None
            }
        };
        let mut context = Context::new();
        for (&c, &num) in attributes.iter().zip(&numeric) {
            let v = f[c].trim();
            if v.is_empty() {
                continue;
            }
            let value = if num {
                FeatureValue::Number(v.parse().unwrap_or_default())
            } else {
                FeatureValue::Category(v.to_owned())
            };
            context.insert(header[c].clone(), value);
        }
        logged.push(Logged {
            context,
            candidates: (0..actions.len()).collect(),
            action: index[f[offer].trim()],
            propensity: p,
            reward: f64::from(u8::from(hit)),
            position: 0,
            customer: cluster,
        });
    }
    let name = |i: &usize| header[*i].clone();
    Ok(Sends {
        customers: customers.len() + anonymous,
        log: Log {
            actions,
            rows: logged,
        },
        values,
        columns: Columns {
            offer: header[offer].clone(),
            redeemed: header[redeemed_col].clone(),
            value: value.as_ref().map(name),
            propensity: propensity.as_ref().map(name),
            customer: customer.as_ref().map(name),
            attributes: attributes.iter().map(name).collect(),
            ignored: ignored.iter().map(name).collect(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "member_id,sent_at,tier,hour,Offer,Redeemed,revenue\n\
        m1,2026-01-01,gold,15,bogo,1,3.5\n\
        m1,2026-01-02,gold,9,points,no,\n\
        ,2026-01-02,silver,10,points,yes,1.5\n";

    #[test]
    fn roles_are_detected_and_the_rest_are_attributes() {
        let s = parse(CSV, "h.csv", &ColumnFlags::default()).expect("parses");
        assert_eq!(s.columns.offer, "Offer");
        assert_eq!(s.columns.redeemed, "Redeemed");
        assert_eq!(s.columns.value.as_deref(), Some("revenue"));
        assert_eq!(s.columns.customer.as_deref(), Some("member_id"));
        assert_eq!(s.columns.propensity, None);
        assert_eq!(s.columns.attributes, ["tier", "hour"]);
        assert_eq!(s.columns.ignored, ["sent_at"]);
        assert_eq!(s.log.actions, ["bogo", "points"]);
        assert_eq!(s.customers, 2, "m1, and one anonymous send");
        let rewards: Vec<f64> = s.log.rows.iter().map(|r| r.reward).collect();
        assert_eq!(rewards, [1.0, 0.0, 1.0]);
        assert_eq!(s.values, Some(vec![3.5, 0.0, 1.5]));
        assert_eq!(s.log.rows[0].context["hour"], FeatureValue::Number(15.0));
        assert_eq!(s.log.rows[2].customer, None);
        assert!(s.log.rows[0].propensity.is_nan());
    }

    #[test]
    fn flags_name_columns_and_errors_name_the_line() {
        let flags = ColumnFlags {
            offer: Some("Offer".into()),
            redeemed: Some("Redeemed".into()),
            ignore: vec!["member_id".into(), "sent_at".into()],
            customer: Some("member_id".into()),
            ..ColumnFlags::default()
        };
        let s = parse(CSV, "h.csv", &flags).expect("parses");
        assert_eq!(s.columns.attributes, ["tier", "hour"]);
        let bad = CSV.replace(
            "m1,2026-01-02,gold,9,points,no",
            "m1,2026-01-02,gold,9,points,maybe",
        );
        let e = parse(&bad, "h.csv", &ColumnFlags::default())
            .expect_err("maybe")
            .to_string();
        assert!(e.starts_with("h.csv:3:") && e.contains("'maybe'"), "{e}");
        let e = parse("a,b\n1,2\n", "h.csv", &ColumnFlags::default())
            .expect_err("no offer")
            .to_string();
        assert!(e.contains("--offer-column"), "{e}");
        let flags = ColumnFlags {
            offer: Some("nope".into()),
            ..ColumnFlags::default()
        };
        let e = parse(CSV, "h.csv", &flags).expect_err("nope").to_string();
        assert!(e.contains("no column 'nope'"), "{e}");
    }
}
