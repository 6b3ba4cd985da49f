//! Stored values: a format byte and postcard, and the readers of older
//! layouts still on disk.

use super::*;

pub(super) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Room for a typical decision record: one allocation, no copy.
    encode_onto(Vec::with_capacity(256), value)
}

/// `out` followed by `value` encoded as [`encode`] does.
pub(super) fn encode_onto<T: Serialize>(mut out: Vec<u8>, value: &T) -> Vec<u8> {
    out.push(FORMAT_VERSION);
    let before = out.len();
    // postcard fails only on its output's errors (appending to a Vec has
    // none) or on a value of unknown length (the stored types have none);
    // should it, the value is its format byte alone, as it always was.
    if postcard::serialize_with_flavor(value, Appending(&mut out)).is_err() {
        out.truncate(before);
    }
    out
}

/// postcard's output: appends to a `Vec` (what `postcard::to_io` does through
/// `io::Write`, whose calls are not inlined: a `memcpy` call for every
/// number written, measured at a fifth of a large record's encoding).
struct Appending<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Appending<'_> {
    type Output = ();

    #[inline(always)]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    #[inline(always)]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

pub(super) fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: escape(key),
        reason,
    };
    match bytes.split_first() {
        Some((&FORMAT_VERSION, rest)) => {
            postcard::from_bytes(rest).map_err(|e| corrupt(e.to_string()))
        }
        Some((v, _)) => Err(corrupt(format!(
            "format version {v}, this build reads {FORMAT_VERSION}"
        ))),
        None => Err(corrupt("empty value".into())),
    }
}

/// A learned prior, as schema 7 stores it, as schema 6 did (without offer
/// effects, read as none) or as schema 5 did (without the intercept's mean
/// either, read as the configured one). Each layout must use the whole
/// value: each schema's record is the one before plus at least one byte.
pub(super) fn decode_prior(key: &[u8], bytes: &[u8]) -> Result<SharedPrior, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: escape(key),
        reason,
    };
    let rest = match bytes.split_first() {
        Some((&FORMAT_VERSION, rest)) => rest,
        Some((v, _)) => {
            return Err(corrupt(format!(
                "format version {v}, this build reads {FORMAT_VERSION}"
            )));
        }
        None => return Err(corrupt("empty value".into())),
    };
    if let Ok((prior, [])) = postcard::take_from_bytes::<SharedPrior>(rest) {
        return Ok(prior);
    }
    if let Ok((old, [])) = postcard::take_from_bytes::<SharedPriorV6>(rest) {
        return Ok(SharedPrior {
            variance: old.variance,
            events: old.events,
            next_estimate: old.next_estimate,
            intercept: old.intercept,
            offer_effects: Vec::new(),
        });
    }
    match postcard::take_from_bytes::<SharedPriorV5>(rest) {
        Ok((old, [])) => Ok(SharedPrior {
            variance: old.variance,
            events: old.events,
            next_estimate: old.next_estimate,
            intercept: None,
            offer_effects: Vec::new(),
        }),
        Ok(_) => Err(corrupt("trailing bytes after a learned prior".into())),
        Err(e) => Err(corrupt(e.to_string())),
    }
}

/// A learned prior as schema 6 stored it (before offer effects).
#[derive(serde::Deserialize)]
pub(super) struct SharedPriorV6 {
    pub(super) variance: Vec<f64>,
    pub(super) events: u64,
    pub(super) next_estimate: u64,
    pub(super) intercept: Option<f64>,
}

/// A learned prior as schema 5 stored it (before the intercept's mean).
#[derive(serde::Deserialize)]
pub(super) struct SharedPriorV5 {
    pub(super) variance: Vec<f64>,
    pub(super) events: u64,
    pub(super) next_estimate: u64,
}

/// A contextual posterior as schema 9 stores it, as schema 8 did (without
/// its prior mean, read as not known: the learned prior's mean for its
/// features, as it was), or as schemas up to 7 did (without the forgetting
/// clock either, read as not yet started: the next event sets it without a
/// discount).
pub(super) fn decode_model(key: &[u8], bytes: &[u8]) -> Result<GaussianPosterior, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: escape(key),
        reason,
    };
    let rest = match bytes.split_first() {
        Some((&FORMAT_VERSION, rest)) => rest,
        Some((v, _)) => {
            return Err(corrupt(format!(
                "format version {v}, this build reads {FORMAT_VERSION}"
            )));
        }
        None => return Err(corrupt("empty value".into())),
    };
    if let Ok((posterior, [])) = postcard::take_from_bytes::<GaussianPosterior>(rest) {
        return Ok(posterior);
    }
    // Schema 9 before the change detector (read as quiet): postcard writes
    // a struct as the tuple of its fields.
    type V9 = (
        Vec<f64>,
        crate::linalg::SymMatrix,
        u64,
        u64,
        f64,
        i64,
        i64,
        Vec<f64>,
    );
    if let Ok(((mean, cov, observations, decisions, predicted_sum, to, since, prior), [])) =
        postcard::take_from_bytes::<V9>(rest)
    {
        return Ok(GaussianPosterior {
            mean,
            cov,
            observations,
            decisions,
            predicted_sum,
            forgotten_to_ms: to,
            forgetting_since_ms: since,
            prior_mean: prior,
            change: Default::default(),
        });
    }
    if let Ok((old, [])) = postcard::take_from_bytes::<GaussianPosteriorV8>(rest) {
        return Ok(GaussianPosterior {
            mean: old.mean,
            cov: old.cov,
            observations: old.observations,
            decisions: old.decisions,
            predicted_sum: old.predicted_sum,
            forgotten_to_ms: old.forgotten_to_ms,
            forgetting_since_ms: old.forgetting_since_ms,
            prior_mean: Vec::new(),
            change: Default::default(),
        });
    }
    match postcard::take_from_bytes::<GaussianPosteriorV7>(rest) {
        Ok((old, [])) => Ok(GaussianPosterior {
            mean: old.mean,
            cov: old.cov,
            observations: old.observations,
            decisions: old.decisions,
            predicted_sum: old.predicted_sum,
            forgotten_to_ms: crate::policy::forgetting::NEVER,
            forgetting_since_ms: crate::policy::forgetting::NEVER,
            prior_mean: Vec::new(),
            change: Default::default(),
        }),
        Ok(_) => Err(corrupt("trailing bytes after a posterior".into())),
        Err(e) => Err(corrupt(e.to_string())),
    }
}

/// A contextual posterior as schema 8 stored it (before its prior mean).
#[derive(serde::Deserialize)]
pub(super) struct GaussianPosteriorV8 {
    pub(super) mean: Vec<f64>,
    pub(super) cov: crate::linalg::SymMatrix,
    pub(super) observations: u64,
    pub(super) decisions: u64,
    pub(super) predicted_sum: f64,
    pub(super) forgotten_to_ms: i64,
    pub(super) forgetting_since_ms: i64,
}

/// A contextual posterior as schemas up to 7 stored it (before forgetting
/// over time).
#[derive(serde::Deserialize)]
pub(super) struct GaussianPosteriorV7 {
    pub(super) mean: Vec<f64>,
    pub(super) cov: crate::linalg::SymMatrix,
    pub(super) observations: u64,
    pub(super) decisions: u64,
    pub(super) predicted_sum: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::contextual::{ContextualConfig, Likelihood};

    /// A posterior as schema 8 wrote it (without its prior mean) reads
    /// with none, every other field kept; one with trailing bytes is
    /// refused.
    #[test]
    fn schema_8_posteriors_are_read_without_a_prior_mean() {
        #[derive(serde::Serialize)]
        struct V8<'a> {
            mean: &'a Vec<f64>,
            cov: &'a crate::linalg::SymMatrix,
            observations: u64,
            decisions: u64,
            predicted_sum: f64,
            forgotten_to_ms: i64,
            forgetting_since_ms: i64,
        }
        let config = ContextualConfig::new(Likelihood::Logistic);
        let mut m = GaussianPosterior::prior(3, &config);
        m.learn(&[(0, 1.0), (2, 1.0)], true, &config, None);
        m.forgotten_to_ms = 5;
        m.forgetting_since_ms = 4;
        let v8 = encode(&V8 {
            mean: &m.mean,
            cov: &m.cov,
            observations: m.observations,
            decisions: m.decisions,
            predicted_sum: m.predicted_sum,
            forgotten_to_ms: m.forgotten_to_ms,
            forgetting_since_ms: m.forgetting_since_ms,
        });
        let read = decode_model(b"m/x", &v8).expect("a schema-8 posterior reads");
        assert_eq!(
            read,
            GaussianPosterior {
                prior_mean: Vec::new(),
                ..m.clone()
            }
        );
        assert_eq!(decode_model(b"m/x", &encode(&m)).expect("current"), m);
        let v9 = (&m.mean, &m.cov, 1u64, 1u64, 0.5, 5i64, 4i64, vec![0.25; 3]);
        let read = decode_model(b"m/x", &encode(&v9)).expect("a schema-9 posterior reads");
        assert_eq!(read.prior_mean, vec![0.25; 3]);
        assert_eq!(read.change, Default::default());
        let mut long = v8;
        long.extend([7, 7]);
        assert!(decode_model(b"m/x", &long).is_err(), "trailing bytes");
    }
}
