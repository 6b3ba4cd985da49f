//! A minimum propensity: every one of K candidates is chosen with
//! probability at least `min`, so that the decision log supports the
//! off-policy evaluation of other policies. With probability K x min the
//! choice is uniform among the candidates, otherwise it is the policy's; an
//! offer's probability is then exactly min + (1 - K x min) x p_policy.

use rand::{Rng, RngExt};

use super::{Features, Outcome, Policy, PolicyError, thompson::Choice};

/// A campaign's minimum propensity (`min_propensity`; 0: off).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PropensityFloor {
    min: f64,
}

impl PropensityFloor {
    /// A floor of `min` per candidate (non-finite or negative: off).
    pub fn new(min: f64) -> Self {
        PropensityFloor {
            min: if min.is_finite() { min.max(0.0) } else { 0.0 },
        }
    }

    /// The floor among `k` candidates: `min`, or 1/k when K x min would
    /// pass 1 (a config validated against its offers never gets there).
    pub fn min_among(self, k: usize) -> f64 {
        if k == 0 {
            return 0.0;
        }
        self.min.min(1.0 / k as f64)
    }

    /// Whether the floor changes anything.
    pub fn is_off(self) -> bool {
        self.min == 0.0
    }

    /// P(choosing an offer) among `k` candidates when the policy alone
    /// chooses it with probability `p_policy`.
    pub fn propensity(self, k: usize, p_policy: f64) -> f64 {
        let m = self.min_among(k);
        (m + (1.0 - k as f64 * m) * p_policy).clamp(0.0, 1.0)
    }

    /// The exploring draw among `k` candidates: with probability K x min
    /// a uniform candidate index, else None (the policy's choice stands).
    pub fn explore(self, k: usize, rng: &mut dyn Rng) -> Option<usize> {
        if self.is_off() || k == 0 {
            return None;
        }
        (rng.random::<f64>() < k as f64 * self.min_among(k)).then(|| rng.random_range(0..k))
    }

    /// The choice among `k` candidates: `policy` (the policy's own draw),
    /// or `explore`'s candidate ([`PropensityFloor::explore`]); its
    /// propensity from `p_policy` (the policy's probability of a candidate
    /// index).
    pub fn choose(
        self,
        k: usize,
        policy: Choice,
        explore: Option<usize>,
        p_policy: impl FnOnce(usize) -> f64,
    ) -> Choice {
        if self.is_off() || k == 0 {
            return policy;
        }
        if let Some(index) = explore {
            let p = if index == policy.index {
                policy.propensity
            } else {
                p_policy(index)
            };
            Choice {
                index,
                propensity: self.propensity(k, p),
            }
        } else {
            Choice {
                index: policy.index,
                propensity: self.propensity(k, policy.propensity),
            }
        }
    }
}

/// Any policy under a minimum propensity, as the server's select path puts
/// a campaign's policy under its `min_propensity`: the policy draws its
/// choice, then [`PropensityFloor::explore`] may replace it, and the
/// propensity is [`PropensityFloor::propensity`] of the policy's. What
/// `offer-sim` runs for a campaign with a floor.
pub struct Floored<P> {
    policy: P,
    floor: PropensityFloor,
}

impl<P: Policy> Floored<P> {
    /// `policy` under `floor`.
    pub fn new(policy: P, floor: PropensityFloor) -> Self {
        Floored { policy, floor }
    }
}

impl<P: Policy> Policy for Floored<P> {
    fn features(&self, context: &crate::context::Context) -> Result<Features, PolicyError> {
        self.policy.features(context)
    }

    fn choose(&self, features: &Features, candidates: &[usize], rng: &mut dyn Rng) -> usize {
        self.choose_with_propensity(features, candidates, rng).0
    }

    fn propensity(&self, features: &Features, candidates: &[usize], offer: usize) -> f64 {
        let p = self.policy.propensity(features, candidates, offer);
        self.floor.propensity(candidates.len(), p)
    }

    fn choose_with_propensity(
        &self,
        features: &Features,
        candidates: &[usize],
        rng: &mut dyn Rng,
    ) -> (usize, f64) {
        let (offer, propensity) = self
            .policy
            .choose_with_propensity(features, candidates, rng);
        if self.floor.is_off() {
            return (offer, propensity);
        }
        let k = candidates.len();
        let index = candidates.iter().position(|&c| c == offer).unwrap_or(0);
        let explore = self.floor.explore(k, rng);
        let c = self
            .floor
            .choose(k, Choice { index, propensity }, explore, |i| {
                self.policy.propensity(features, candidates, candidates[i])
            });
        (
            candidates.get(c.index).copied().unwrap_or(offer),
            c.propensity,
        )
    }

    fn advance_clock(&mut self, now_ms: i64) {
        self.policy.advance_clock(now_ms);
    }

    fn on_decision(&mut self, features: &Features, offer: usize) {
        self.policy.on_decision(features, offer);
    }

    fn on_outcome(&mut self, features: &Features, offer: usize, outcome: Outcome) {
        self.policy.on_outcome(features, offer, outcome);
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::policy::thompson::{self, GaussianArm, Link};

    fn arm(mean: f64, sd: f64) -> GaussianArm {
        GaussianArm {
            mean,
            sd,
            link: Link::Identity,
            weight: 1.0,
        }
    }

    /// Over many seeded draws each offer's frequency matches
    /// min + (1 - K min) p_policy, every logged propensity is that closed
    /// form, and none is below min, though the policy alone nearly never
    /// picks two of the three offers.
    #[test]
    fn frequencies_match_the_closed_form_and_none_is_below_min() {
        let arms = [arm(2.0, 0.3), arm(0.0, 0.3), arm(-0.5, 0.5)];
        let floor = PropensityFloor::new(0.05);
        let k = arms.len();
        let p_policy: Vec<f64> = (0..k)
            .map(|i| thompson::win_probability(&arms, i))
            .collect();
        assert!(p_policy[1] < 1e-3 && p_policy[2] < 1e-3, "{p_policy:?}");
        let closed: Vec<f64> = p_policy.iter().map(|&p| floor.propensity(k, p)).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(18);
        let n = 200_000;
        let mut counts = [0usize; 3];
        for _ in 0..n {
            let Some(policy) = thompson::choose(&arms, &mut rng) else {
                panic!("three arms")
            };
            let explore = floor.explore(k, &mut rng);
            let c = floor.choose(k, policy, explore, |i| p_policy[i]);
            assert!((c.propensity - closed[c.index]).abs() < 1e-9);
            assert!(c.propensity >= 0.05);
            counts[c.index] += 1;
        }
        for i in 0..k {
            let f = counts[i] as f64 / n as f64;
            let sd = (closed[i] * (1.0 - closed[i]) / n as f64).sqrt();
            assert!(
                (f - closed[i]).abs() < 5.0 * sd,
                "offer {i}: frequency {f} vs closed form {}",
                closed[i]
            );
        }
        assert!((closed.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }

    /// A fixed policy under a floor of 0.1 among four candidates: each
    /// other offer is chosen a tenth of the time, the fixed one 0.7, and the
    /// propensity logged with each choice is that closed form, as
    /// `propensity` says.
    #[test]
    fn a_floored_policy_chooses_and_logs_as_the_server_does() {
        use crate::policy::{Features, Policy, baseline::Fixed};
        let floored = Floored::new(Fixed { offer: 2 }, PropensityFloor::new(0.1));
        let candidates = [0, 2, 5, 7];
        let features = Features::default();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let n = 100_000;
        let mut counts = [0usize; 8];
        for _ in 0..n {
            let (offer, p) = floored.choose_with_propensity(&features, &candidates, &mut rng);
            let want = if offer == 2 { 0.7 } else { 0.1 };
            assert!((p - want).abs() < 1e-12, "offer {offer}: {p}");
            assert_eq!(floored.propensity(&features, &candidates, offer), p);
            counts[offer] += 1;
        }
        for &o in &candidates {
            let want = if o == 2 { 0.7 } else { 0.1 };
            let f = counts[o] as f64 / n as f64;
            let sd = (want * (1.0 - want) / n as f64).sqrt();
            assert!((f - want).abs() < 5.0 * sd, "offer {o}: {f} vs {want}");
        }
        let off = Floored::new(Fixed { offer: 2 }, PropensityFloor::new(0.0));
        assert_eq!(
            off.choose_with_propensity(&features, &candidates, &mut rng),
            (2, 1.0)
        );
    }

    #[test]
    fn off_leaves_the_policy_alone_and_k_min_above_one_is_uniform() {
        let off = PropensityFloor::new(0.0);
        assert!(off.is_off());
        assert_eq!(off.propensity(3, 0.7), 0.7);
        let big = PropensityFloor::new(0.5);
        assert!((big.propensity(4, 0.9) - 0.25).abs() < 1e-12);
        assert!((big.propensity(2, 0.9) - 0.5).abs() < 1e-12);
    }
}
