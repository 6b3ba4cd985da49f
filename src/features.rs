//! Feature encoding: a customer context becomes a sparse vector of fixed
//! dimension, the same way in the server and the simulator. Numbers are
//! scaled by declared ranges and cut at bucket edges (effects are often
//! steps — "after 2pm" — not slopes): by default one column per edge, a step
//! there (see [`Buckets::Steps`]); declared categories are one-hot with an
//! "other" column; open vocabularies are hashed; flags are 0/1; an intercept
//! is always column 0.

use serde::{Deserialize, Serialize};

use crate::context::{Context, FeatureValue};

/// How one context feature is encoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum FeatureSpec {
    /// A number: one column scaled from `[min, max]` to `[0, 1]` (clamped),
    /// plus the bucket columns of `bins` (increasing edges), encoded as
    /// `buckets` says.
    Numeric {
        /// Context feature name.
        name: String,
        /// Value mapped to 0.
        min: f64,
        /// Value mapped to 1.
        max: f64,
        /// Bucket edges: `[a, b]` gives buckets `< a`, `[a, b)`, `>= b`.
        #[serde(default)]
        bins: Vec<f64>,
        /// How the buckets become columns (unset: [`Buckets::Steps`] for a
        /// new campaign, [`Buckets::OneHot`] for one stored before the
        /// choice existed; see [`settle_buckets`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        buckets: Option<Buckets>,
    },
    /// A category with a declared vocabulary: one column per value plus one
    /// for any other value.
    Categorical {
        /// Context feature name.
        name: String,
        /// Known values.
        values: Vec<String>,
    },
    /// A category with an open vocabulary, hashed into the shared hashed block.
    Hashed {
        /// Context feature name.
        name: String,
    },
    /// A yes/no value: one column, 1 when true.
    Flag {
        /// Context feature name.
        name: String,
    },
}

/// How a number's buckets become columns. Both span the same functions of
/// the bucket (with the intercept); they differ in what the prior favours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Buckets {
    /// One column per edge, each a step at its edge: below the middle edge
    /// the column is 1 when the value is under the edge, from the middle
    /// edge up when it is at or above it, so the intercept stands for the
    /// middle bucket. A step at one edge ("after 2pm") is one weight,
    /// learned from every visit on either side of it, and a prior on small
    /// weights favours effects with few jumps. The default.
    #[value(help = "One column per bucket edge, a step there (the default)")]
    Steps,
    /// One column per bucket, one of them 1 (the encoding of campaigns
    /// stored before `steps` existed; their posteriors keep it).
    #[value(help = "One column per bucket")]
    OneHot,
}

impl FeatureSpec {
    /// The context feature this spec reads.
    pub fn name(&self) -> &str {
        match self {
            FeatureSpec::Numeric { name, .. }
            | FeatureSpec::Categorical { name, .. }
            | FeatureSpec::Hashed { name }
            | FeatureSpec::Flag { name } => name,
        }
    }

    fn width(&self) -> usize {
        match self {
            FeatureSpec::Numeric { bins, buckets, .. } => match buckets.unwrap_or(Buckets::Steps) {
                Buckets::Steps => 1 + bins.len(),
                Buckets::OneHot => 1 + bins.len() + usize::from(!bins.is_empty()),
            },
            FeatureSpec::Categorical { values, .. } => values.len() + 1,
            FeatureSpec::Hashed { .. } => 0,
            FeatureSpec::Flag { .. } => 1,
        }
    }
}

/// Columns of the encoding that come from one feature (see
/// [`Encoder::groups`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureGroup {
    /// The context feature (`hashed` for the shared hashed block).
    pub feature: String,
    /// Which part of it: `values` (a category's or a flag's columns),
    /// `scaled` or `buckets` (a number's).
    pub part: &'static str,
    /// The columns.
    pub columns: std::ops::Range<usize>,
}

/// Why an encoder cannot be built or a context cannot be encoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    /// The feature specs are inconsistent.
    #[error("feature '{name}': {message}")]
    Spec {
        /// The feature.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A context value has the wrong kind for its spec.
    #[error("feature '{name}' must be {expected}, not {got}")]
    Kind {
        /// The feature.
        name: String,
        /// What the spec expects.
        expected: &'static str,
        /// What the context holds.
        got: &'static str,
    },
}

/// Encodes contexts into sparse vectors of dimension [`Encoder::dim`].
#[derive(Debug, Clone, PartialEq)]
pub struct Encoder {
    specs: Vec<FeatureSpec>,
    offsets: Vec<usize>,
    /// The specs' indices in name order: one walk alongside a context's
    /// entries (sorted by name too) finds every feature's value.
    by_name: Vec<usize>,
    hash_offset: usize,
    hash_bits: u32,
    dim: usize,
}

fn kind_name(v: &FeatureValue) -> &'static str {
    match v {
        FeatureValue::Number(_) => "a number",
        FeatureValue::Category(_) => "a category",
        FeatureValue::Flag(_) => "a flag",
    }
}

/// FNV-1a, stable across platforms and releases (stored vectors depend on it).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl Encoder {
    /// An encoder for `specs`; hashed features share `2^hash_bits` columns
    /// (0 bits when no feature is hashed).
    pub fn new(specs: Vec<FeatureSpec>, hash_bits: u32) -> Result<Encoder, EncodeError> {
        let mut seen = std::collections::HashSet::new();
        for s in &specs {
            let bad = |message: String| EncodeError::Spec {
                name: s.name().to_owned(),
                message,
            };
            if !seen.insert(s.name().to_owned()) {
                return Err(bad("declared twice".into()));
            }
            match s {
                FeatureSpec::Numeric { min, max, bins, .. } => {
                    if !(min.is_finite() && max.is_finite() && min < max) {
                        return Err(bad(format!("min ({min}) must be below max ({max})")));
                    }
                    if bins.iter().any(|b| !b.is_finite()) || bins.windows(2).any(|w| w[0] >= w[1])
                    {
                        return Err(bad("bins must be finite and strictly increasing".into()));
                    }
                }
                FeatureSpec::Categorical { values, .. } => {
                    if values.is_empty() {
                        return Err(bad("a categorical feature needs at least one value".into()));
                    }
                }
                FeatureSpec::Hashed { .. } => {
                    if !(1..=16).contains(&hash_bits) {
                        return Err(bad(format!("hash_bits must be 1..=16, not {hash_bits}")));
                    }
                }
                FeatureSpec::Flag { .. } => {}
            }
        }
        let mut offsets = Vec::with_capacity(specs.len());
        let mut next = 1; // column 0 is the intercept
        for s in &specs {
            offsets.push(next);
            next += s.width();
        }
        let hashed = specs
            .iter()
            .any(|s| matches!(s, FeatureSpec::Hashed { .. }));
        let hash_bits = if hashed { hash_bits } else { 0 };
        let hash_offset = next;
        let dim = next + if hashed { 1usize << hash_bits } else { 0 };
        let mut by_name: Vec<usize> = (0..specs.len()).collect();
        by_name.sort_by(|&a, &b| specs[a].name().cmp(specs[b].name()));
        Ok(Encoder {
            specs,
            offsets,
            by_name,
            hash_offset,
            hash_bits,
            dim,
        })
    }

    /// Dimension of encoded vectors.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The feature specs.
    pub fn specs(&self) -> &[FeatureSpec] {
        &self.specs
    }

    /// Hashed features share `2^hash_bits` columns (0: none hashed).
    pub fn hash_bits(&self) -> u32 {
        self.hash_bits
    }

    /// The columns that say one thing each, for priors that share a
    /// variance: a number's scaled column, its buckets, a category's
    /// columns, a flag, the hashed block. The intercept (column 0) is in
    /// none of them.
    pub fn groups(&self) -> Vec<FeatureGroup> {
        let mut groups = Vec::new();
        let mut push = |feature: &str, part: &'static str, columns: std::ops::Range<usize>| {
            groups.push(FeatureGroup {
                feature: feature.to_owned(),
                part,
                columns,
            })
        };
        for (spec, &off) in self.specs.iter().zip(&self.offsets) {
            let width = spec.width();
            match spec {
                FeatureSpec::Numeric { .. } if width > 1 => {
                    push(spec.name(), "scaled", off..off + 1);
                    push(spec.name(), "buckets", off + 1..off + width);
                }
                FeatureSpec::Numeric { .. } => push(spec.name(), "scaled", off..off + width),
                FeatureSpec::Hashed { .. } => {}
                _ => push(spec.name(), "values", off..off + width),
            }
        }
        if self.hash_offset < self.dim {
            push("hashed", "values", self.hash_offset..self.dim);
        }
        groups
    }

    /// What each column says, for people: `(intercept)`, `hour` (the
    /// scaled number), `hour < 11` or `hour >= 14` (a step), `hour in [11,
    /// 14)` (a one-hot bucket), `lifecycle = new`, `lifecycle = (other)`,
    /// `app_user` (a flag), `hashed #5`. One label per column.
    pub fn column_labels(&self) -> Vec<String> {
        let mut labels = vec!["(intercept)".to_owned(); self.dim];
        for (spec, &off) in self.specs.iter().zip(&self.offsets) {
            let name = spec.name();
            let mut put = |i: usize, label: String| {
                if let Some(l) = labels.get_mut(off + i) {
                    *l = label;
                }
            };
            match spec {
                FeatureSpec::Numeric { bins, buckets, .. } => {
                    put(0, name.to_owned());
                    match buckets.unwrap_or(Buckets::Steps) {
                        Buckets::Steps => {
                            let middle = bins.len() / 2;
                            for (e, b) in bins.iter().enumerate() {
                                let op = if e < middle { "<" } else { ">=" };
                                put(1 + e, format!("{name} {op} {b}"));
                            }
                        }
                        Buckets::OneHot if !bins.is_empty() => {
                            put(1, format!("{name} < {}", bins[0]));
                            for (e, w) in bins.windows(2).enumerate() {
                                put(2 + e, format!("{name} in [{}, {})", w[0], w[1]));
                            }
                            put(
                                bins.len() + 1,
                                format!("{name} >= {}", bins[bins.len() - 1]),
                            );
                        }
                        Buckets::OneHot => {}
                    }
                }
                FeatureSpec::Categorical { values, .. } => {
                    for (i, v) in values.iter().enumerate() {
                        put(i, format!("{name} = {v}"));
                    }
                    put(values.len(), format!("{name} = (other)"));
                }
                FeatureSpec::Flag { .. } => put(0, name.to_owned()),
                FeatureSpec::Hashed { .. } => {}
            }
        }
        for (k, l) in labels.iter_mut().enumerate().skip(self.hash_offset) {
            *l = format!("hashed #{}", k - self.hash_offset);
        }
        labels
    }

    /// Encodes a context as (column, value) pairs with increasing columns.
    /// Missing features contribute nothing; unknown categories go to the
    /// feature's "other" column; context features without a spec are ignored.
    pub fn encode(&self, context: &Context) -> Result<Vec<(u32, f64)>, EncodeError> {
        let mut x: Vec<(u32, f64)> = Vec::with_capacity(2 + 2 * self.specs.len());
        x.push((0, 1.0));
        let mut hashed: Vec<(u32, f64)> = Vec::new();
        // The specs in name order: one walk over the context.
        let mut values = context.by_name();
        for &s in &self.by_name {
            let (spec, off) = (&self.specs[s], self.offsets[s]);
            let Some(v) = values.get(spec.name()) else {
                continue;
            };
            let wrong = |expected| EncodeError::Kind {
                name: spec.name().to_owned(),
                expected,
                got: kind_name(v),
            };
            match spec {
                FeatureSpec::Numeric {
                    min,
                    max,
                    bins,
                    buckets,
                    ..
                } => {
                    let FeatureValue::Number(n) = v else {
                        return Err(wrong("a number"));
                    };
                    x.push((off as u32, ((n - min) / (max - min)).clamp(0.0, 1.0)));
                    // Edges at or below the value.
                    let passed = bins.iter().take_while(|b| *n >= **b).count();
                    match buckets.unwrap_or(Buckets::Steps) {
                        Buckets::Steps => {
                            let middle = bins.len() / 2;
                            // Below the middle: the edges above the value;
                            // from it up: the edges at or below the value.
                            let on = (passed.min(middle)..middle).chain(middle..passed.max(middle));
                            x.extend(on.map(|edge| ((off + 1 + edge) as u32, 1.0)));
                        }
                        Buckets::OneHot if !bins.is_empty() => {
                            x.push(((off + 1 + passed) as u32, 1.0));
                        }
                        Buckets::OneHot => {}
                    }
                }
                FeatureSpec::Categorical { values, .. } => {
                    let FeatureValue::Category(c) = v else {
                        return Err(wrong("a category"));
                    };
                    let i = values.iter().position(|s| s == c).unwrap_or(values.len());
                    x.push(((off + i) as u32, 1.0));
                }
                FeatureSpec::Flag { .. } => {
                    let FeatureValue::Flag(b) = v else {
                        return Err(wrong("a flag"));
                    };
                    if *b {
                        x.push((off as u32, 1.0));
                    }
                }
                FeatureSpec::Hashed { name } => {
                    let label: std::borrow::Cow<'_, str> = match v {
                        FeatureValue::Category(c) => c.into(),
                        FeatureValue::Flag(b) => b.to_string().into(),
                        FeatureValue::Number(n) => format!("{n}").into(),
                    };
                    let h = fnv1a(&[name.as_bytes(), label.as_bytes()]);
                    let col = self.hash_offset + (h & ((1u64 << self.hash_bits) - 1)) as usize;
                    hashed.push((col as u32, 1.0));
                }
            }
        }
        // Each spec has columns of its own, from its offset: in column order
        // they are the order of the specs, not of their names.
        x.sort_unstable_by_key(|p| p.0);
        if !hashed.is_empty() {
            hashed.sort_by_key(|p| p.0);
            // Collisions add up.
            for (c, v) in hashed {
                match x.last_mut() {
                    Some(last) if last.0 == c => last.1 += v,
                    _ => x.push((c, v)),
                }
            }
        }
        Ok(x)
    }
}

/// Builds specs from example contexts (the simulator's datasets and
/// scenarios): numbers get their observed range and `bins` quantile buckets
/// encoded as `buckets` says;
/// categories with at most `max_vocabulary` values are one-hot, others hashed;
/// flags stay flags. Features are taken in name order.
pub fn infer_specs<'a>(
    examples: impl IntoIterator<Item = &'a Context>,
    bins: usize,
    buckets: Buckets,
    max_vocabulary: usize,
) -> Vec<FeatureSpec> {
    use std::collections::{BTreeMap, BTreeSet};
    let mut numbers: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut cats: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut flags: BTreeSet<String> = BTreeSet::new();
    for ctx in examples {
        for (k, v) in ctx {
            match v {
                FeatureValue::Number(n) => numbers.entry(k.clone()).or_default().push(*n),
                FeatureValue::Category(c) => {
                    cats.entry(k.clone()).or_default().insert(c.clone());
                }
                FeatureValue::Flag(_) => {
                    flags.insert(k.clone());
                }
            }
        }
    }
    let mut specs = Vec::new();
    for (name, mut xs) in numbers {
        xs.sort_by(f64::total_cmp);
        let (min, max) = (xs[0], xs[xs.len() - 1]);
        if min >= max {
            continue;
        }
        let mut edges: Vec<f64> = (1..bins)
            .map(|q| xs[(q * xs.len() / bins).min(xs.len() - 1)])
            .filter(|e| *e > min)
            .collect();
        edges.dedup();
        specs.push(FeatureSpec::Numeric {
            name,
            min,
            max,
            bins: edges,
            buckets: Some(buckets),
        });
    }
    for (name, values) in cats {
        if values.len() <= max_vocabulary {
            specs.push(FeatureSpec::Categorical {
                name,
                values: values.into_iter().collect(),
            });
        } else {
            specs.push(FeatureSpec::Hashed { name });
        }
    }
    for name in flags {
        specs.push(FeatureSpec::Flag { name });
    }
    specs.sort_by(|a, b| a.name().cmp(b.name()));
    specs
}

/// Gives every number without an explicit bucket encoding one, so that a
/// stored config says which it learned under: the encoding of the same
/// feature in `stored` (the campaign's config as stored, already settled),
/// or [`Buckets::Steps`] for a feature new to the campaign. An unchanged
/// campaign file therefore keeps meaning what its posteriors were learned
/// under, whichever default it was first stored with.
pub(crate) fn settle_buckets(specs: &mut [FeatureSpec], stored: Option<&[FeatureSpec]>) {
    for spec in specs {
        if let FeatureSpec::Numeric {
            name,
            buckets: buckets @ None,
            ..
        } = spec
        {
            let before = stored.into_iter().flatten().find_map(|s| match s {
                FeatureSpec::Numeric {
                    name: n,
                    buckets: b,
                    ..
                } if n == name => Some(b.unwrap_or(Buckets::OneHot)),
                _ => None,
            });
            *buckets = Some(before.unwrap_or(Buckets::Steps));
        }
    }
}

/// Settles a config read back from a store, or declared for a campaign
/// whose models were stored before its config was: a number without a
/// bucket encoding there was learned one-hot (the only encoding then).
pub(crate) fn settle_stored_buckets(specs: &mut [FeatureSpec]) {
    for spec in specs {
        if let FeatureSpec::Numeric { buckets, .. } = spec {
            buckets.get_or_insert(Buckets::OneHot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_has_a_label() {
        let specs = vec![
            FeatureSpec::Numeric {
                name: "hour".into(),
                min: 0.0,
                max: 24.0,
                bins: vec![11.0, 14.0],
                buckets: None,
            },
            FeatureSpec::Numeric {
                name: "basket".into(),
                min: 0.0,
                max: 50.0,
                bins: vec![10.0, 20.0],
                buckets: Some(Buckets::OneHot),
            },
            FeatureSpec::Categorical {
                name: "tier".into(),
                values: vec!["gold".into()],
            },
            FeatureSpec::Flag { name: "app".into() },
            FeatureSpec::Hashed {
                name: "store".into(),
            },
        ];
        let e = Encoder::new(specs, 1).expect("valid");
        assert_eq!(
            e.column_labels(),
            [
                "(intercept)",
                "hour",
                "hour < 11",
                "hour >= 14",
                "basket",
                "basket < 10",
                "basket in [10, 20)",
                "basket >= 20",
                "tier = gold",
                "tier = (other)",
                "app",
                "hashed #0",
                "hashed #1",
            ]
        );
        // A step's label says when it is on.
        let mut c = Context::new();
        c.insert("hour".into(), FeatureValue::Number(15.0));
        let x = e.encode(&c).expect("encodes");
        let labels = e.column_labels();
        let on: Vec<&str> = x
            .iter()
            .map(|(i, _)| labels[*i as usize].as_str())
            .collect();
        assert_eq!(on, ["(intercept)", "hour", "hour >= 14"]);
    }

    fn ctx(pairs: &[(&str, FeatureValue)]) -> Context {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn encodes_numbers_categories_flags_and_hashes() {
        let specs = vec![
            FeatureSpec::Numeric {
                name: "hour".into(),
                min: 0.0,
                max: 24.0,
                bins: vec![10.0, 14.0],
                buckets: Some(Buckets::OneHot),
            },
            FeatureSpec::Categorical {
                name: "tier".into(),
                values: vec!["low".into(), "high".into()],
            },
            FeatureSpec::Flag {
                name: "member".into(),
            },
            FeatureSpec::Hashed {
                name: "store".into(),
            },
        ];
        let e = Encoder::new(specs, 4).expect("valid");
        // 1 intercept + (1 + 3 buckets) + (2 + other) + 1 flag + 16 hashed.
        assert_eq!(e.dim(), 1 + 4 + 3 + 1 + 16);
        let x = e
            .encode(&ctx(&[
                ("hour", FeatureValue::Number(15.0)),
                ("tier", FeatureValue::Category("gold".into())),
                ("member", FeatureValue::Flag(true)),
                ("store", FeatureValue::Category("s-17".into())),
                ("unused", FeatureValue::Number(1.0)),
            ]))
            .expect("encodes");
        assert_eq!(
            &x[..5],
            &[(0, 1.0), (1, 15.0 / 24.0), (4, 1.0), (7, 1.0), (8, 1.0)]
        );
        assert_eq!(x.len(), 6);
        assert!(x[5].0 >= 9 && (x[5].0 as usize) < e.dim());
        assert!(x.windows(2).all(|w| w[0].0 < w[1].0));
        // Missing features contribute nothing; the intercept is always there.
        assert_eq!(e.encode(&Context::new()).expect("empty"), vec![(0, 1.0)]);
        // Wrong kinds are errors.
        let err = e.encode(&ctx(&[("hour", FeatureValue::Category("x".into()))]));
        assert!(matches!(err, Err(EncodeError::Kind { .. })));
    }

    #[test]
    fn rejects_bad_specs_and_infers_from_examples() {
        let bad = vec![FeatureSpec::Numeric {
            name: "a".into(),
            min: 1.0,
            max: 1.0,
            bins: vec![],
            buckets: None,
        }];
        assert!(Encoder::new(bad, 0).is_err());
        let dup = vec![
            FeatureSpec::Flag { name: "a".into() },
            FeatureSpec::Flag { name: "a".into() },
        ];
        assert!(Encoder::new(dup, 0).is_err());
        let examples: Vec<Context> = (0..100)
            .map(|i| {
                ctx(&[
                    ("n", FeatureValue::Number(f64::from(i))),
                    ("c", FeatureValue::Category(format!("v{}", i % 3))),
                ])
            })
            .collect();
        let specs = infer_specs(&examples, 4, Buckets::Steps, 10);
        assert_eq!(specs.len(), 2);
        assert_eq!(
            specs[0],
            FeatureSpec::Categorical {
                name: "c".into(),
                values: vec!["v0".into(), "v1".into(), "v2".into()]
            }
        );
        assert_eq!(
            specs[1],
            FeatureSpec::Numeric {
                name: "n".into(),
                min: 0.0,
                max: 99.0,
                bins: vec![25.0, 50.0, 75.0],
                buckets: Some(Buckets::Steps),
            }
        );
    }

    #[test]
    fn steps_are_one_column_per_edge_around_the_middle_bucket() {
        let hour = |buckets| FeatureSpec::Numeric {
            name: "hour".into(),
            min: 0.0,
            max: 24.0,
            bins: vec![6.0, 11.0, 14.0, 18.0, 22.0],
            buckets,
        };
        let e = Encoder::new(vec![hour(None)], 0).expect("valid");
        assert_eq!(e.dim(), 1 + 1 + 5, "unset means steps: one column per edge");
        let steps = |h: f64| -> Vec<u32> {
            let x = e
                .encode(&ctx(&[("hour", FeatureValue::Number(h))]))
                .expect("encodes");
            x.iter().skip(2).map(|(c, _)| c - 2).collect()
        };
        // Edges 0 and 1 (6, 11) are "below the edge", 2..5 (14, 18, 22)
        // "at or above it"; the middle bucket [11, 14) has no step on.
        assert_eq!(steps(5.0), [0, 1]);
        assert_eq!(steps(6.0), [1]);
        assert_eq!(steps(12.0), Vec::<u32>::new());
        assert_eq!(steps(14.0), [2]);
        assert_eq!(steps(15.0), [2]);
        assert_eq!(steps(23.0), [2, 3, 4]);
        // The same functions of the bucket as one-hot: every bucket's
        // pattern is distinct, and neighbours differ in exactly one step.
        let patterns: Vec<Vec<u32>> = [5.0, 8.0, 12.0, 15.0, 20.0, 23.0]
            .iter()
            .map(|&h| steps(h))
            .collect();
        for w in patterns.windows(2) {
            let differ = w[0].iter().filter(|c| !w[1].contains(c)).count()
                + w[1].iter().filter(|c| !w[0].contains(c)).count();
            assert_eq!(differ, 1, "{w:?}");
        }
        let one_hot = Encoder::new(vec![hour(Some(Buckets::OneHot))], 0).expect("valid");
        assert_eq!(one_hot.dim(), 1 + 1 + 6);
    }

    #[test]
    fn settling_keeps_the_stored_bucket_encoding() {
        let number = |name: &str, buckets| FeatureSpec::Numeric {
            name: name.into(),
            min: 0.0,
            max: 1.0,
            bins: vec![0.5],
            buckets,
        };
        let buckets = |specs: &[FeatureSpec]| -> Vec<Option<Buckets>> {
            specs
                .iter()
                .map(|s| match s {
                    FeatureSpec::Numeric { buckets, .. } => *buckets,
                    _ => None,
                })
                .collect()
        };
        // Stored before the choice existed: one-hot.
        let mut stored = vec![number("a", None), number("b", Some(Buckets::Steps))];
        settle_stored_buckets(&mut stored);
        assert_eq!(
            buckets(&stored),
            [Some(Buckets::OneHot), Some(Buckets::Steps)]
        );
        // The file leaves them unset: each keeps what it was stored with; a
        // new feature, or a new campaign, gets steps; explicit values stay.
        let file = || {
            vec![
                number("a", None),
                number("b", None),
                number("c", None),
                number("d", Some(Buckets::OneHot)),
            ]
        };
        let mut next = file();
        settle_buckets(&mut next, Some(&stored));
        assert_eq!(
            buckets(&next),
            [
                Some(Buckets::OneHot),
                Some(Buckets::Steps),
                Some(Buckets::Steps),
                Some(Buckets::OneHot)
            ]
        );
        let mut fresh = file();
        settle_buckets(&mut fresh, None);
        assert_eq!(buckets(&fresh)[0], Some(Buckets::Steps));
    }
}
