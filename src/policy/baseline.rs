//! Baseline policies to compare learners against: uniform random, a fixed
//! offer, epsilon-greedy and UCB1 (both context-free).

use rand::{Rng, RngExt};

use super::{Features, Outcome, Policy, PolicyError};
use crate::context::Context;

/// Picks uniformly at random among the candidates.
#[derive(Debug, Clone, Default)]
pub struct Uniform;

impl Policy for Uniform {
    fn features(&self, _: &Context) -> Result<Features, PolicyError> {
        Ok(Features::default())
    }
    fn choose(&self, _: &Features, candidates: &[usize], rng: &mut dyn Rng) -> usize {
        candidates[rng.random_range(0..candidates.len())]
    }
    fn propensity(&self, _: &Features, candidates: &[usize], offer: usize) -> f64 {
        if candidates.contains(&offer) {
            1.0 / candidates.len() as f64
        } else {
            0.0
        }
    }
    fn on_decision(&mut self, _: &Features, _: usize) {}
    fn on_outcome(&mut self, _: &Features, _: usize, _: Outcome) {}
}

/// Always the same offer; the first candidate when it is not a candidate.
#[derive(Debug, Clone)]
pub struct Fixed {
    /// The offer.
    pub offer: usize,
}

impl Fixed {
    fn pick(&self, candidates: &[usize]) -> usize {
        if candidates.contains(&self.offer) {
            self.offer
        } else {
            candidates[0]
        }
    }
}

impl Policy for Fixed {
    fn features(&self, _: &Context) -> Result<Features, PolicyError> {
        Ok(Features::default())
    }
    fn choose(&self, _: &Features, candidates: &[usize], _: &mut dyn Rng) -> usize {
        self.pick(candidates)
    }
    fn propensity(&self, _: &Features, candidates: &[usize], offer: usize) -> f64 {
        f64::from(u8::from(self.pick(candidates) == offer))
    }
    fn on_decision(&mut self, _: &Features, _: usize) {}
    fn on_outcome(&mut self, _: &Features, _: usize, _: Outcome) {}
}

/// Resolved decisions and redemptions of one offer.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    resolved: u64,
    redeemed: u64,
}

impl Tally {
    /// Redemption rate with one pseudo-success and one pseudo-failure.
    fn rate(&self) -> f64 {
        (self.redeemed as f64 + 1.0) / (self.resolved as f64 + 2.0)
    }
}

fn record(tallies: &mut [Tally], offer: usize, outcome: Outcome) {
    if let Some(t) = tallies.get_mut(offer) {
        t.resolved += 1;
        if matches!(outcome, Outcome::Redeemed { .. }) {
            t.redeemed += 1;
        }
    }
}

/// The candidate with the largest `score`; ties go to the first.
fn argmax(candidates: &[usize], score: impl Fn(usize) -> f64) -> usize {
    let mut best = (candidates[0], f64::NEG_INFINITY);
    for &c in candidates {
        let s = score(c);
        if s > best.1 {
            best = (c, s);
        }
    }
    best.0
}

/// With probability `epsilon` a uniform candidate, otherwise the one with the
/// best weighted redemption rate so far.
#[derive(Debug, Clone)]
pub struct EpsilonGreedy {
    epsilon: f64,
    weights: Vec<f64>,
    tallies: Vec<Tally>,
}

impl EpsilonGreedy {
    /// `weights[i]` multiplies offer i's rate (its value under the value objective).
    pub fn new(epsilon: f64, weights: Vec<f64>) -> Self {
        let tallies = vec![Tally::default(); weights.len()];
        EpsilonGreedy {
            epsilon: epsilon.clamp(0.0, 1.0),
            weights,
            tallies,
        }
    }

    fn greedy(&self, candidates: &[usize]) -> usize {
        argmax(candidates, |c| {
            self.weights.get(c).copied().unwrap_or(1.0)
                * self.tallies.get(c).map_or(0.5, Tally::rate)
        })
    }
}

impl Policy for EpsilonGreedy {
    fn features(&self, _: &Context) -> Result<Features, PolicyError> {
        Ok(Features::default())
    }
    fn choose(&self, _: &Features, candidates: &[usize], rng: &mut dyn Rng) -> usize {
        if rng.random::<f64>() < self.epsilon {
            candidates[rng.random_range(0..candidates.len())]
        } else {
            self.greedy(candidates)
        }
    }
    fn propensity(&self, _: &Features, candidates: &[usize], offer: usize) -> f64 {
        if !candidates.contains(&offer) {
            return 0.0;
        }
        let explore = self.epsilon / candidates.len() as f64;
        if self.greedy(candidates) == offer {
            explore + 1.0 - self.epsilon
        } else {
            explore
        }
    }
    fn on_decision(&mut self, _: &Features, _: usize) {}
    fn on_outcome(&mut self, _: &Features, offer: usize, outcome: Outcome) {
        record(&mut self.tallies, offer, outcome);
    }
}

/// UCB1 (Auer et al. 2002): untried offers first, then the largest
/// weighted `rate + sqrt(2 ln n / n_offer)`. Deterministic.
#[derive(Debug, Clone)]
pub struct Ucb1 {
    weights: Vec<f64>,
    tallies: Vec<Tally>,
    resolved: u64,
}

impl Ucb1 {
    /// `weights[i]` multiplies offer i's upper bound.
    pub fn new(weights: Vec<f64>) -> Self {
        let tallies = vec![Tally::default(); weights.len()];
        Ucb1 {
            weights,
            tallies,
            resolved: 0,
        }
    }

    fn pick(&self, candidates: &[usize]) -> usize {
        let ln_n = (self.resolved.max(1) as f64).ln();
        argmax(candidates, |c| {
            let t = self.tallies.get(c).copied().unwrap_or_default();
            if t.resolved == 0 {
                return f64::INFINITY;
            }
            let mean = t.redeemed as f64 / t.resolved as f64;
            self.weights.get(c).copied().unwrap_or(1.0)
                * (mean + (2.0 * ln_n / t.resolved as f64).sqrt())
        })
    }
}

impl Policy for Ucb1 {
    fn features(&self, _: &Context) -> Result<Features, PolicyError> {
        Ok(Features::default())
    }
    fn choose(&self, _: &Features, candidates: &[usize], _: &mut dyn Rng) -> usize {
        self.pick(candidates)
    }
    fn propensity(&self, _: &Features, candidates: &[usize], offer: usize) -> f64 {
        f64::from(u8::from(self.pick(candidates) == offer))
    }
    fn on_decision(&mut self, _: &Features, _: usize) {}
    fn on_outcome(&mut self, _: &Features, offer: usize, outcome: Outcome) {
        self.resolved += 1;
        record(&mut self.tallies, offer, outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn frequencies(p: &dyn Policy, candidates: &[usize], n: usize) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let f = Features::default();
        let mut counts = [0usize; 8];
        for _ in 0..n {
            counts[p.choose(&f, candidates, &mut rng)] += 1;
        }
        counts.iter().map(|&c| c as f64 / n as f64).collect()
    }

    #[test]
    fn propensities_match_choice_frequencies() {
        let candidates = [1, 3, 4, 6];
        let mut eg = EpsilonGreedy::new(0.2, vec![1.0; 8]);
        for _ in 0..50 {
            eg.on_outcome(&Features::default(), 4, Outcome::Redeemed { value: 1.0 });
        }
        let policies: [&dyn Policy; 3] = [&Uniform, &Fixed { offer: 3 }, &eg];
        for p in policies {
            let freq = frequencies(p, &candidates, 100_000);
            let mut total = 0.0;
            for (o, got) in freq.iter().enumerate() {
                let want = p.propensity(&Features::default(), &candidates, o);
                total += want;
                assert!((got - want).abs() < 0.01, "offer {o}: {got} vs {want}");
            }
            assert!((total - 1.0).abs() < 1e-12);
        }
        // Greedy offer 4 gets 0.8 + 0.2/4.
        assert!((eg.propensity(&Features::default(), &candidates, 4) - 0.85).abs() < 1e-12);
    }

    #[test]
    fn ucb1_tries_everything_then_exploits() {
        let mut u = Ucb1::new(vec![1.0; 3]);
        let f = Features::default();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut picks = [0usize; 3];
        for i in 0..3000 {
            let o = u.choose(&f, &[0, 1, 2], &mut rng);
            picks[o] += 1;
            let win = if o == 2 { i % 2 == 0 } else { i % 10 == 0 };
            let outcome = if win {
                Outcome::Redeemed { value: 1.0 }
            } else {
                Outcome::Expired
            };
            u.on_outcome(&f, o, outcome);
        }
        assert!(picks.iter().all(|&p| p > 0));
        assert!(picks[2] > 2500, "{picks:?}");
        let fixed = Fixed { offer: 9 };
        assert_eq!(fixed.choose(&f, &[2, 5], &mut rng), 2);
    }
}
