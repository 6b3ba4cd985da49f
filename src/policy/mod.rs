//! Decision policies, shared by the server and the simulator. Pure: no gRPC or
//! storage types; randomness is injected.

pub mod baseline;
pub mod change;
pub mod contextual;
pub mod contextual_ts;
pub mod delay;
pub mod floor;
pub mod forgetting;
pub mod learning;
pub mod rules;
pub mod segment;
pub mod shared_prior;
pub mod special;
pub mod thompson;

use serde::{Deserialize, Serialize};

/// What a campaign maximizes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// Probability of redemption.
    #[default]
    Redemptions,
    /// Probability of redemption times the offer's value.
    Value,
}

impl Objective {
    /// The name used in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            Objective::Redemptions => "redemptions",
            Objective::Value => "value",
        }
    }

    /// Weight of an offer's sampled rate under this objective.
    pub fn weight(self, offer_value: f64) -> f64 {
        match self {
            Objective::Redemptions => 1.0,
            Objective::Value => offer_value,
        }
    }
}

/// What a policy derives from a visit's context, once per decision, and keeps
/// with the decision so that a late outcome updates the right statistics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Features {
    /// Segment key (segment Thompson sampling); empty otherwise.
    pub segment: String,
    /// Encoded context as (index, value) pairs, indices increasing
    /// (contextual policies); empty otherwise.
    pub x: Vec<(u32, f64)>,
    /// Event time of the decision (Unix ms), as the policy's clock
    /// ([`Policy::advance_clock`]) had it; 0 when it keeps none. Delayed
    /// feedback ([`delay`]) weighs a pending decision by its age.
    #[serde(default)]
    pub decided_ms: i64,
    /// The decision's number, unique within the policy that made the
    /// features (0 when it numbers none): what its delayed outcome is
    /// matched on.
    #[serde(default)]
    pub id: u64,
}

/// How a decision ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// Redeemed within the reward window, worth `value`.
    Redeemed {
        /// Value of the redemption.
        value: f64,
    },
    /// The reward window passed without a redemption.
    Expired,
}

/// Why a context cannot be used by a policy.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    /// The context does not fit the policy's segments.
    #[error(transparent)]
    Segment(#[from] segment::SegmentError),
    /// The context does not fit the policy's feature encoding.
    #[error("{0}")]
    Encoding(String),
}

/// A decision policy: the same code chooses offers in the server and in the
/// simulator. Offers are indices into the campaign's offer list; candidates
/// are never empty and hold no duplicates.
///
/// The learning protocol mirrors the server: [`Policy::on_decision`] when a
/// decision is made (its outcome pending), then exactly one
/// [`Policy::on_outcome`] when it is redeemed or expires.
pub trait Policy: Send {
    /// Derives the features this policy uses from a context.
    fn features(&self, context: &crate::context::Context) -> Result<Features, PolicyError>;
    /// Chooses one of `candidates`.
    fn choose(&self, features: &Features, candidates: &[usize], rng: &mut dyn rand::Rng) -> usize;
    /// Probability that [`Policy::choose`] returns `offer` in the current state.
    fn propensity(&self, features: &Features, candidates: &[usize], offer: usize) -> f64;
    /// [`Policy::choose`] and the chosen offer's [`Policy::propensity`]:
    /// what the server does for every decision. Policies that can share
    /// work between the two override it.
    fn choose_with_propensity(
        &self,
        features: &Features,
        candidates: &[usize],
        rng: &mut dyn rand::Rng,
    ) -> (usize, f64) {
        let offer = self.choose(features, candidates, rng);
        (offer, self.propensity(features, candidates, offer))
    }
    /// Event time is now `now_ms` (Unix ms; never earlier than before): the
    /// decisions that follow are made at this time. Policies that forget
    /// over time ([`forgetting`]) use it; the others ignore it.
    fn advance_clock(&mut self, _now_ms: i64) {}
    /// A decision was made; its outcome is pending.
    fn on_decision(&mut self, features: &Features, offer: usize);
    /// A pending decision ended.
    fn on_outcome(&mut self, features: &Features, offer: usize, outcome: Outcome);
}

/// A boxed policy is a policy (the simulator builds them by name).
impl<P: Policy + ?Sized> Policy for Box<P> {
    fn features(&self, context: &crate::context::Context) -> Result<Features, PolicyError> {
        (**self).features(context)
    }
    fn choose(&self, features: &Features, candidates: &[usize], rng: &mut dyn rand::Rng) -> usize {
        (**self).choose(features, candidates, rng)
    }
    fn propensity(&self, features: &Features, candidates: &[usize], offer: usize) -> f64 {
        (**self).propensity(features, candidates, offer)
    }
    fn choose_with_propensity(
        &self,
        features: &Features,
        candidates: &[usize],
        rng: &mut dyn rand::Rng,
    ) -> (usize, f64) {
        (**self).choose_with_propensity(features, candidates, rng)
    }
    fn advance_clock(&mut self, now_ms: i64) {
        (**self).advance_clock(now_ms);
    }
    fn on_decision(&mut self, features: &Features, offer: usize) {
        (**self).on_decision(features, offer);
    }
    fn on_outcome(&mut self, features: &Features, offer: usize, outcome: Outcome) {
        (**self).on_outcome(features, offer, outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{Context, FeatureValue};
    use crate::features::{Encoder, FeatureSpec};
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// `choose_with_propensity` is `choose` then `propensity`, draw for draw.
    fn check_one_pass(policy: &mut dyn Policy) {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let candidates: Vec<usize> = (0..4).collect();
        let mut contexts = Vec::new();
        for i in 0..300 {
            let mut c = Context::new();
            c.insert(
                "tier".into(),
                FeatureValue::Category(["a", "b", "c"][i % 3].into()),
            );
            let f = policy.features(&c).expect("features");
            let o = policy.choose(&f, &candidates, &mut rng);
            policy.on_decision(&f, o);
            let outcome = if rng.random::<f64>() < 0.1 + 0.05 * o as f64 {
                Outcome::Redeemed { value: 1.0 }
            } else {
                Outcome::Expired
            };
            policy.on_outcome(&f, o, outcome);
            contexts.push(f);
        }
        for (i, f) in contexts.iter().enumerate().step_by(7) {
            let mut a = ChaCha8Rng::seed_from_u64(100 + i as u64);
            let mut b = a.clone();
            let o = policy.choose(f, &candidates, &mut a);
            let p = policy.propensity(f, &candidates, o);
            let (o2, p2) = policy.choose_with_propensity(f, &candidates, &mut b);
            assert_eq!(o, o2);
            assert!((p - p2).abs() < 1e-12, "{p} vs {p2}");
        }
    }

    #[test]
    fn one_pass_choice_equals_choose_then_propensity() {
        let encoder = Encoder::new(
            vec![FeatureSpec::Categorical {
                name: "tier".into(),
                values: vec!["a".into(), "b".into()],
            }],
            0,
        )
        .expect("encoder");
        for likelihood in [
            contextual::Likelihood::Logistic,
            contextual::Likelihood::Linear,
        ] {
            let mut p = contextual_ts::ContextualTs::new(
                encoder.clone(),
                contextual::ContextualConfig::new(likelihood),
                vec![1.0, 2.0, 1.0, 1.5],
            );
            check_one_pass(&mut p);
        }
        let mut s = segment::SegmentTs::new(
            vec!["tier".into()],
            vec![1.0; 4],
            10.0,
            segment::DEFAULT_SNAPSHOT_TOLERANCE,
        );
        check_one_pass(&mut s);
    }
}
