//! Full-feedback datasets (CSV): one row per visit, `p_<offer>` columns with
//! the true redemption probability of each offer, optional `value_<offer>`
//! columns with its net value, every other column a context feature.

use std::path::Path;

use offer_bandit::{Context, FeatureValue};

/// Why a dataset cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DatasetError {
    /// The file could not be read.
    #[error("cannot read dataset {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The content is not a usable full-feedback table.
    #[error("{origin}:{line}: {message}")]
    Invalid {
        origin: String,
        line: usize,
        message: String,
    },
}

/// One visit of a full-feedback dataset.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    /// Context features (missing cells are absent).
    pub(crate) context: Context,
    /// True redemption probability of each offer.
    pub(crate) p: Vec<f64>,
    /// Net value of each offer if redeemed.
    pub(crate) value: Vec<f64>,
}

/// A loaded full-feedback dataset.
#[derive(Debug, Clone)]
pub(crate) struct Dataset {
    /// Offer ids (the `<offer>` of `p_<offer>`), in column order.
    pub(crate) offers: Vec<String>,
    /// Context feature names, in column order.
    pub(crate) features: Vec<String>,
    /// Which features are numeric (every value parses as a number).
    pub(crate) numeric: Vec<bool>,
    /// The visits, in file order.
    pub(crate) rows: Vec<Row>,
}

impl Dataset {
    /// Reads a CSV file.
    pub(crate) fn load(path: &Path) -> Result<Dataset, DatasetError> {
        let text = std::fs::read_to_string(path).map_err(|source| DatasetError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Dataset::parse(&text, &path.display().to_string())
    }

    /// Parses CSV text; `origin` names it in errors.
    pub(crate) fn parse(text: &str, origin: &str) -> Result<Dataset, DatasetError> {
        let err = |line: usize, message: String| DatasetError::Invalid {
            origin: origin.to_owned(),
            line,
            message,
        };
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let Some((_, header)) = lines.next() else {
            return Err(err(1, "the file is empty; expected a header row".into()));
        };
        let header: Vec<String> = split_csv(header)
            .into_iter()
            .map(|h| h.trim().to_owned())
            .collect();
        let mut offers = Vec::new();
        let mut p_col = Vec::new();
        for (i, h) in header.iter().enumerate() {
            if let Some(o) = h.strip_prefix("p_") {
                offers.push(o.to_owned());
                p_col.push(i);
            }
        }
        if offers.is_empty() {
            return Err(err(
                1,
                "no `p_<offer>` column: a full-feedback dataset needs one per offer".into(),
            ));
        }
        let mut value_col = vec![None; offers.len()];
        let mut feature_col = Vec::new();
        for (i, h) in header.iter().enumerate() {
            if h.starts_with("p_") {
                continue;
            }
            if let Some(o) = h.strip_prefix("value_") {
                match offers.iter().position(|x| x == o) {
                    Some(k) => value_col[k] = Some(i),
                    None => {
                        return Err(err(
                            1,
                            format!("column `{h}` has no matching `p_{o}` column"),
                        ));
                    }
                }
            } else {
                feature_col.push(i);
            }
        }
        // First pass: cells, and which feature columns are numeric.
        let mut cells: Vec<(usize, Vec<String>)> = Vec::new();
        for (idx, line) in lines {
            let fields = split_csv(line);
            if fields.len() != header.len() {
                return Err(err(
                    idx + 1,
                    format!(
                        "{} fields, but the header has {}",
                        fields.len(),
                        header.len()
                    ),
                ));
            }
            cells.push((idx + 1, fields));
        }
        if cells.is_empty() {
            return Err(err(2, "no data rows".into()));
        }
        let numeric: Vec<bool> = feature_col
            .iter()
            .map(|&c| {
                cells.iter().all(|(_, f)| {
                    let v = f[c].trim();
                    v.is_empty() || v.parse::<f64>().is_ok_and(f64::is_finite)
                })
            })
            .collect();
        let mut rows = Vec::with_capacity(cells.len());
        for (line, f) in &cells {
            let mut context = Context::with_capacity(feature_col.len());
            for (j, &c) in feature_col.iter().enumerate() {
                let v = f[c].trim();
                if v.is_empty() {
                    continue;
                }
                let value = if numeric[j] {
                    FeatureValue::Number(v.parse().unwrap_or(0.0))
                } else {
                    FeatureValue::Category(v.to_owned())
                };
                context.insert(header[c].clone(), value);
            }
            let mut p = Vec::with_capacity(offers.len());
            let mut value = Vec::with_capacity(offers.len());
            for k in 0..offers.len() {
                let cell = f[p_col[k]].trim();
                let pk: f64 = cell
                    .parse()
                    .ok()
                    .filter(|x: &f64| (0.0..=1.0).contains(x))
                    .ok_or_else(|| {
                        err(
                            *line,
                            format!(
                                "`p_{}` is '{cell}'; expected a probability in [0, 1]",
                                offers[k]
                            ),
                        )
                    })?;
                p.push(pk);
                let vk = match value_col[k] {
                    Some(c) => {
                        let cell = f[c].trim();
                        cell.parse()
                            .ok()
                            .filter(|x: &f64| x.is_finite())
                            .ok_or_else(|| {
                                err(
                                    *line,
                                    format!("`value_{}` is '{cell}'; expected a number", offers[k]),
                                )
                            })?
                    }
                    None => 1.0,
                };
                value.push(vk);
            }
            rows.push(Row { context, p, value });
        }
        Ok(Dataset {
            offers,
            features: feature_col.iter().map(|&c| header[c].clone()).collect(),
            numeric,
            rows,
        })
    }

    /// Mean over rows of the best offer's p.
    #[cfg(test)]
    pub(crate) fn oracle_mean(&self) -> f64 {
        mean(
            self.rows
                .iter()
                .map(|r| r.p.iter().copied().fold(0.0, f64::max)),
        )
    }

    /// Mean over rows of the mean p over offers (uniform random's expected reward).
    #[cfg(test)]
    pub(crate) fn random_mean(&self) -> f64 {
        mean(
            self.rows
                .iter()
                .map(|r| r.p.iter().sum::<f64>() / r.p.len() as f64),
        )
    }

    /// Mean p of each offer over rows.
    pub(crate) fn offer_means(&self) -> Vec<f64> {
        (0..self.offers.len())
            .map(|k| mean(self.rows.iter().map(|r| r.p[k])))
            .collect()
    }
}

fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = xs.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 { 0.0 } else { s / n as f64 }
}

/// Splits one CSV line; double quotes group a field, `""` inside quotes is a quote.
pub(crate) fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    out.push(field);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "tier,hour,p_a,p_b,value_a,value_b\n\
                          low,9,0.1,0.3,2,1\n\
                          high,14,0.5,0.2,2,1\n\
                          \"mid, plus\",,0.0,1.0,2,1\n";

    #[test]
    fn parses_offers_features_and_types() {
        let d = Dataset::parse(SAMPLE, "s.csv").expect("parses");
        assert_eq!(d.offers, vec!["a", "b"]);
        assert_eq!(d.features, vec!["tier", "hour"]);
        assert_eq!(d.numeric, vec![false, true]);
        assert_eq!(
            d.rows[2].context.get("tier"),
            Some(&FeatureValue::Category("mid, plus".into()))
        );
        assert!(!d.rows[2].context.contains_key("hour"));
        assert_eq!(
            d.rows[1].context.get("hour"),
            Some(&FeatureValue::Number(14.0))
        );
        // Closed forms: oracle = mean of max p, random = mean of mean p.
        assert!((d.oracle_mean() - (0.3 + 0.5 + 1.0) / 3.0).abs() < 1e-12);
        assert!((d.random_mean() - (0.2 + 0.35 + 0.5) / 3.0).abs() < 1e-12);
    }

    #[test]
    fn errors_name_the_line_and_column() {
        let bad_p = "x,p_a\n1,0.5\n2,1.5\n";
        let e = Dataset::parse(bad_p, "d.csv")
            .expect_err("p out of range")
            .to_string();
        assert!(e.starts_with("d.csv:3:") && e.contains("p_a"), "{e}");
        let ragged = "x,p_a\n1,0.5,7\n";
        let e = Dataset::parse(ragged, "d.csv")
            .expect_err("ragged")
            .to_string();
        assert!(e.starts_with("d.csv:2:") && e.contains("3 fields"), "{e}");
        let e = Dataset::parse("x,y\n1,2\n", "d.csv")
            .expect_err("no offers")
            .to_string();
        assert!(e.contains("p_<offer>"), "{e}");
        let e = Dataset::parse("x,p_a,value_b\n1,0.5,2\n", "d.csv")
            .expect_err("orphan")
            .to_string();
        assert!(e.contains("value_b"), "{e}");
    }
}
