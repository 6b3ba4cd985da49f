//! Segment Thompson sampling: a Beta-Bernoulli posterior per (segment, offer),
//! shrunk toward the offer's rate in the rest of the campaign so that sparse or
//! new segments start from what the campaign already knows.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use rand::Rng;

use super::thompson::{self, Arm};
use super::{Features, Outcome, Policy, PolicyError};
use crate::context::{Context, FeatureValue};

/// Segment key used when a campaign has more segments than it may track.
pub const OVERFLOW_SEGMENT: &str = "(other)";
/// Segment value for a segment feature absent from the context.
pub const MISSING_VALUE: &str = "(missing)";
/// Separator between the values of a segment key.
pub const SEGMENT_SEPARATOR: char = '|';

/// Counts of one (segment, offer) cell. Every decision is one trial when it is
/// made; a redemption turns it into a success; an expiry finalizes it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CellCounts {
    /// Decisions counted in this cell.
    pub trials: u64,
    /// Decisions redeemed.
    pub successes: u64,
    /// Decisions whose reward window passed without redemption.
    pub expired: u64,
    /// Sum of redemption values.
    pub value_sum: f64,
}

impl CellCounts {
    /// Decisions neither redeemed nor expired.
    pub fn pending(&self) -> u64 {
        self.trials.saturating_sub(self.successes + self.expired)
    }

    /// Learning events this cell has seen.
    fn events(&self) -> u64 {
        self.trials + self.successes + self.expired
    }

    fn plus(self, o: CellCounts) -> CellCounts {
        CellCounts {
            trials: self.trials + o.trials,
            successes: self.successes + o.successes,
            expired: self.expired + o.expired,
            value_sum: self.value_sum + o.value_sum,
        }
    }

    fn minus(self, o: CellCounts) -> CellCounts {
        CellCounts {
            trials: self.trials.saturating_sub(o.trials),
            successes: self.successes.saturating_sub(o.successes),
            expired: self.expired.saturating_sub(o.expired),
            value_sum: self.value_sum - o.value_sum,
        }
    }
}

/// Why a context cannot be segmented.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SegmentError {
    /// A segment feature holds a number.
    #[error("feature '{0}' is a segment feature and must be a category or a flag, not a number")]
    NumericSegmentFeature(String),
    /// A segment value contains the separator.
    #[error("feature '{0}' is a segment feature; its value must not contain '|'")]
    SeparatorInValue(String),
}

/// The segment key of a context: the values of `segment_by`, joined by `|`.
/// No segment features gives the single segment `""`.
pub fn segment_key(segment_by: &[String], context: &Context) -> Result<String, SegmentError> {
    let mut key = String::new();
    for (i, name) in segment_by.iter().enumerate() {
        if i > 0 {
            key.push(SEGMENT_SEPARATOR);
        }
        match context.get(name) {
            None => key.push_str(MISSING_VALUE),
            Some(FeatureValue::Category(c)) => {
                if c.contains(SEGMENT_SEPARATOR) {
                    return Err(SegmentError::SeparatorInValue(name.clone()));
                }
                key.push_str(c);
            }
            Some(FeatureValue::Flag(b)) => key.push_str(if *b { "true" } else { "false" }),
            Some(FeatureValue::Number(_)) => {
                return Err(SegmentError::NumericSegmentFeature(name.clone()));
            }
        }
    }
    Ok(key)
}

/// The posterior state of one campaign under segment Thompson sampling.
#[derive(Debug, Clone, Default)]
pub struct SegmentModel {
    offers: usize,
    cells: HashMap<String, Vec<CellCounts>>,
    totals: Vec<CellCounts>,
    events: u64,
}

impl SegmentModel {
    /// An empty model over `offers` offers (indexed 0..offers).
    pub fn new(offers: usize) -> Self {
        SegmentModel {
            offers,
            cells: HashMap::new(),
            totals: vec![CellCounts::default(); offers],
            events: 0,
        }
    }

    /// Number of offers.
    pub fn offers(&self) -> usize {
        self.offers
    }

    /// Adds one offer (index = previous count) with no evidence.
    pub fn push_offer(&mut self) -> usize {
        self.offers += 1;
        self.totals.push(CellCounts::default());
        for row in self.cells.values_mut() {
            row.push(CellCounts::default());
        }
        self.offers - 1
    }

    /// Number of segments with evidence.
    pub fn segments(&self) -> usize {
        self.cells.len()
    }

    /// Whether this segment has evidence.
    pub fn has_segment(&self, segment: &str) -> bool {
        self.cells.contains_key(segment)
    }

    /// Learning events applied (trials + successes + expiries): the model version.
    pub fn version(&self) -> u64 {
        self.events
    }

    /// Counts of one cell (zero if never seen). Out-of-range offers read as zero.
    pub fn cell(&self, segment: &str, offer: usize) -> CellCounts {
        self.cells
            .get(segment)
            .and_then(|r| r.get(offer))
            .copied()
            .unwrap_or_default()
    }

    /// Campaign-wide counts of one offer.
    pub fn totals(&self, offer: usize) -> CellCounts {
        self.totals.get(offer).copied().unwrap_or_default()
    }

    /// Every (segment, offer, counts) with evidence, unordered.
    pub fn iter_cells(&self) -> impl Iterator<Item = (&str, usize, CellCounts)> + '_ {
        self.cells.iter().flat_map(|(s, row)| {
            row.iter()
                .enumerate()
                .filter(|(_, c)| c.trials > 0)
                .map(move |(o, c)| (s.as_str(), o, *c))
        })
    }

    /// Replaces a cell's counts, keeping totals and version consistent.
    /// Offers beyond the model's range are ignored.
    pub fn set_cell(&mut self, segment: &str, offer: usize, counts: CellCounts) {
        if offer >= self.offers {
            return;
        }
        let offers = self.offers;
        let row = self
            .cells
            .entry(segment.to_owned())
            .or_insert_with(|| vec![CellCounts::default(); offers]);
        let old = row[offer];
        row[offer] = counts;
        self.totals[offer] = self.totals[offer].minus(old).plus(counts);
        self.events = self.events - old.events() + counts.events();
    }

    /// Counts one decision as a trial.
    pub fn record_trial(&mut self, segment: &str, offer: usize) {
        let mut c = self.cell(segment, offer);
        c.trials += 1;
        self.set_cell(segment, offer, c);
    }

    /// Turns one trial into a success worth `value`.
    pub fn record_success(&mut self, segment: &str, offer: usize, value: f64) {
        let mut c = self.cell(segment, offer);
        c.successes += 1;
        c.value_sum += value;
        self.set_cell(segment, offer, c);
    }

    /// Finalizes one trial as not redeemed.
    pub fn record_expiry(&mut self, segment: &str, offer: usize) {
        let mut c = self.cell(segment, offer);
        c.expired += 1;
        self.set_cell(segment, offer, c);
    }

    /// Beta posterior (alpha, beta) of a cell.
    ///
    /// Prior: Beta(1, 1) plus `m` pseudo-observations at the offer's redemption
    /// rate in the *other* segments, where `m = min(prior_strength, trials in
    /// other segments)`: a new segment starts from the campaign's experience,
    /// and its own evidence outweighs the prior after a few dozen decisions.
    pub fn posterior(&self, segment: &str, offer: usize, prior_strength: f64) -> (f64, f64) {
        Self::shrunk(
            self.cell(segment, offer),
            self.totals(offer),
            prior_strength,
        )
    }

    fn shrunk(own: CellCounts, totals: CellCounts, prior_strength: f64) -> (f64, f64) {
        let rest = totals.minus(own);
        let rest_n = rest.trials as f64;
        let rest_rate = (1.0 + rest.successes as f64) / (2.0 + rest_n);
        let m = prior_strength.min(rest_n).max(0.0);
        let s = own.successes as f64;
        let f = own.trials.saturating_sub(own.successes) as f64;
        (1.0 + m * rest_rate + s, 1.0 + m * (1.0 - rest_rate) + f)
    }

    /// Thompson arms for the given offers in a segment; `weights[i]` multiplies
    /// the sampled rate of `offers[i]`.
    pub fn arms(
        &self,
        segment: &str,
        offers: &[usize],
        weights: &[f64],
        prior_strength: f64,
    ) -> Vec<Arm> {
        let row = self.cells.get(segment);
        offers
            .iter()
            .zip(weights)
            .map(|(&o, &w)| {
                let own = row.and_then(|r| r.get(o)).copied().unwrap_or_default();
                let (alpha, beta) = Self::shrunk(own, self.totals(o), prior_strength);
                Arm::new(alpha, beta, w)
            })
            .collect()
    }
}

/// Segment Thompson sampling as a [`Policy`]: the posterior and choice rule
/// the server uses, over an in-memory [`SegmentModel`].
#[derive(Debug, Clone)]
pub struct SegmentTs {
    segment_by: Vec<String>,
    weights: Vec<f64>,
    prior_strength: f64,
    model: SegmentModel,
}

impl SegmentTs {
    /// Segments by `segment_by`; `weights[i]` multiplies offer i's sampled rate.
    pub fn new(segment_by: Vec<String>, weights: Vec<f64>, prior_strength: f64) -> Self {
        let model = SegmentModel::new(weights.len());
        SegmentTs {
            segment_by,
            weights,
            prior_strength,
            model,
        }
    }

    /// The posterior counts.
    pub fn model(&self) -> &SegmentModel {
        &self.model
    }

    fn arms_for(&self, segment: &str, candidates: &[usize]) -> Vec<Arm> {
        let weights: Vec<f64> = candidates
            .iter()
            .map(|&c| self.weights.get(c).copied().unwrap_or(1.0))
            .collect();
        self.model
            .arms(segment, candidates, &weights, self.prior_strength)
    }
}

impl Policy for SegmentTs {
    fn features(&self, context: &Context) -> Result<Features, PolicyError> {
        Ok(Features {
            segment: segment_key(&self.segment_by, context)?,
            x: Vec::new(),
        })
    }
    fn choose(&self, f: &Features, candidates: &[usize], rng: &mut dyn Rng) -> usize {
        let arms = self.arms_for(&f.segment, candidates);
        thompson::argmax_draw(&arms, rng).map_or(candidates[0], |i| candidates[i])
    }
    fn propensity(&self, f: &Features, candidates: &[usize], offer: usize) -> f64 {
        match candidates.iter().position(|&c| c == offer) {
            Some(i) => thompson::win_probability(&self.arms_for(&f.segment, candidates), i),
            None => 0.0,
        }
    }
    fn on_decision(&mut self, f: &Features, offer: usize) {
        self.model.record_trial(&f.segment, offer);
    }
    fn on_outcome(&mut self, f: &Features, offer: usize, outcome: Outcome) {
        match outcome {
            Outcome::Redeemed { value } => self.model.record_success(&f.segment, offer, value),
            Outcome::Expired => self.model.record_expiry(&f.segment, offer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_keys() {
        let mut ctx = Context::new();
        ctx.insert("lifecycle".into(), FeatureValue::Category("lapsing".into()));
        ctx.insert("member".into(), FeatureValue::Flag(true));
        ctx.insert("hour".into(), FeatureValue::Number(14.0));
        let by = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            segment_key(&by(&["lifecycle", "member"]), &ctx).as_deref(),
            Ok("lapsing|true")
        );
        assert_eq!(
            segment_key(&by(&["tier"]), &ctx).as_deref(),
            Ok("(missing)")
        );
        assert_eq!(segment_key(&[], &ctx).as_deref(), Ok(""));
        assert!(matches!(
            segment_key(&by(&["hour"]), &ctx),
            Err(SegmentError::NumericSegmentFeature(_))
        ));
    }

    #[test]
    fn totals_track_cells_and_prior_shrinks_to_campaign_rate() {
        let mut m = SegmentModel::new(2);
        for i in 0..1000 {
            m.record_trial("a", 0);
            if i % 10 == 0 {
                m.record_success("a", 0, 2.0);
            }
        }
        assert_eq!(m.totals(0).trials, 1000);
        assert_eq!(m.totals(0).successes, 100);
        assert_eq!(m.version(), 1100);
        // A brand-new segment borrows the 10% rate with strength 20.
        let (a, b) = m.posterior("new", 0, 20.0);
        let rate = (1.0 + 100.0) / 1002.0;
        assert!((a - (1.0 + 20.0 * rate)).abs() < 1e-9);
        assert!((b - (1.0 + 20.0 * (1.0 - rate))).abs() < 1e-9);
        // The segment's own posterior is its counts plus a prior from the (empty) rest.
        assert_eq!(m.posterior("a", 0, 20.0), (101.0, 901.0));
        // An offer nobody has tried is Beta(1, 1).
        assert_eq!(m.posterior("new", 1, 20.0), (1.0, 1.0));
        m.record_expiry("a", 0);
        assert_eq!(m.cell("a", 0).pending(), 899);
        let idx = m.push_offer();
        assert_eq!((idx, m.cell("a", idx)), (2, CellCounts::default()));
    }
}
