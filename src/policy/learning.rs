//! The one learning step of a contextual campaign, the same wherever a
//! campaign learns: the live writer, recovery at startup (replaying the
//! events since the last checkpoint) and the simulator's `ContextualTs`.
//!
//! A decision is learned once, as the one observation it ends as
//! ([`GaussianPosterior::learn`]): a redemption when it comes; a
//! non-redemption when its window closes or, earlier, at its reveal age
//! ([`super::delay::Reveals`]), and taken back
//! ([`Step::retract_non_redemption`]) should its redemption come after
//! that. An event carries its decision's timestamp: with forgetting over
//! time, the campaign's clock first advances to it and every offer's
//! evidence is discounted by the time passed ([`super::forgetting`]). The
//! event is then checked against what its offer's posterior predicts
//! ([`super::change`]: an offer whose outcomes stopped matching it keeps
//! a tenth of its evidence) and goes into the posterior; with forgetting, the learned
//! prior's variances bound how far forgetting widens it. The event is then
//! counted for the learned prior, and when a re-estimation is due every
//! offer's posterior is re-based on the new prior. Where the posteriors live
//! is the caller's business ([`Posteriors`]): a vector, or the writer's
//! copy-on-write staging over the published ones.

use crate::{features::Encoder, linalg::Sparse};

use super::{
    change,
    contextual::{ContextualConfig, GaussianPosterior, Removal},
    forgetting,
    shared_prior::{self, SharedPrior},
};

/// A campaign's offer posteriors as a learning step reads and changes them.
pub trait Posteriors {
    /// Offer `offer`'s posterior, to change (None: no such offer).
    fn posterior_mut(&mut self, offer: usize) -> Option<&mut GaussianPosterior>;
    /// Runs `f` over every offer's posterior at once (a re-estimation of the
    /// learned prior moves them all); keeps what `f` did when it returns
    /// true.
    fn with_all(&mut self, f: &mut dyn FnMut(&mut [GaussianPosterior]) -> bool) -> bool;
}

impl Posteriors for Vec<GaussianPosterior> {
    fn posterior_mut(&mut self, offer: usize) -> Option<&mut GaussianPosterior> {
        self.get_mut(offer)
    }
    fn with_all(&mut self, f: &mut dyn FnMut(&mut [GaussianPosterior]) -> bool) -> bool {
        f(self)
    }
}

/// What a campaign learns with: fixed while it learns.
#[derive(Clone, Copy)]
pub struct Step<'a> {
    /// The context encoder the events were encoded with.
    pub encoder: &'a Encoder,
    /// The campaign's hyperparameters.
    pub config: &'a ContextualConfig,
    /// Per offer, its encoded offer features (empty: none); asked for only
    /// when the learned prior is re-estimated.
    pub offer_features: &'a dyn Fn() -> Vec<Vec<(u32, f64)>>,
}

impl Step<'_> {
    /// Learns a decision of `offer` at `x` as its one observation
    /// (`redeemed`: a redemption; otherwise a non-redemption) made at
    /// `at_ms` (Unix ms of event time) into `posteriors`, and counts it for
    /// `prior` (the learned prior, when the campaign has one).
    /// False when nothing was learned: no such offer, or `x` was encoded
    /// under other features (the config changed since, so its columns mean
    /// something else now).
    pub fn learn(
        &self,
        posteriors: &mut impl Posteriors,
        prior: Option<&mut SharedPrior>,
        offer: usize,
        x: &Sparse,
        redeemed: bool,
        at_ms: i64,
    ) -> bool {
        if x.iter().any(|(i, _)| *i as usize >= self.encoder.dim()) {
            return false;
        }
        let behind = posteriors
            .posterior_mut(offer)
            .is_some_and(|p| p.forgotten_to_ms < forgetting::tick_of(at_ms));
        if let Some(half_life_ms) = self.config.time_half_life_ms
            && behind
        {
            let features = (self.offer_features)();
            let learned = prior.as_deref();
            let prior_of = |k: usize, m: &GaussianPosterior| {
                let offer = features.get(k).map_or(&[][..], Vec::as_slice);
                forgetting::posterior_prior(learned, m, offer, self.config)
            };
            posteriors.with_all(&mut |models| {
                forgetting::advance(models, at_ms, half_life_ms, &prior_of)
            });
        }
        let Some(posterior) = posteriors.posterior_mut(offer) else {
            return false;
        };
        if self.config.time_half_life_ms.is_none() {
            // Not forgetting over time: should it be turned on later, its
            // discounting begins then, for all it holds.
            posterior.forgotten_to_ms = forgetting::NEVER;
        }
        if let Some(threshold) = self.config.change_threshold {
            self.watch(
                posterior,
                prior.as_deref(),
                offer,
                x,
                redeemed,
                at_ms,
                threshold,
            );
        }
        // The learned prior bounds forgetting (only then is it needed).
        let bound = prior
            .as_deref()
            .filter(|_| self.config.half_life.is_some())
            .map(|p| p.variance.as_slice());
        // linear-ts learns with the noise variance of the campaign's rate.
        let config = shared_prior::learning_config(self.config, prior.as_deref());
        posterior.learn(x, redeemed, &config, bound);
        if let Some(prior) = prior
            && prior.count()
        {
            let features = (self.offer_features)();
            posteriors.with_all(&mut |models| {
                prior.reestimate(self.encoder, models, &features, self.config)
            });
        }
        true
    }

    /// Change detection ([`change`]): adds the outcome about to be learned
    /// into `posterior` to its offer's test, against what the posterior
    /// predicts; on an alarm, the offer keeps [`change::KEPT_ON_ALARM`] of
    /// its evidence, towards its prior (`prior`: the learned one).
    #[allow(clippy::too_many_arguments)]
    fn watch(
        &self,
        posterior: &mut GaussianPosterior,
        prior: Option<&SharedPrior>,
        offer: usize,
        x: &Sparse,
        redeemed: bool,
        at_ms: i64,
        threshold: f64,
    ) {
        let predicted = change::predict(posterior.predictive(x), self.config.likelihood);
        let alarm = posterior
            .change
            .observe(predicted, redeemed, at_ms, 1.0)
            .is_some_and(|z| z.abs() > threshold);
        if !alarm {
            return;
        }
        posterior.change.alarm(at_ms);
        let features = (self.offer_features)();
        let offer_x = features.get(offer).map_or(&[][..], Vec::as_slice);
        let (mean, variance) = forgetting::posterior_prior(prior, posterior, offer_x, self.config);
        posterior.discount(change::KEPT_ON_ALARM, &mean, &variance);
    }

    /// Takes back the non-redemption learned for the decision made at
    /// `at_ms` of `offer` at `x`, whose redemption has come since (the
    /// caller then learns the redemption): with the weight forgetting over
    /// time left it ([`forgetting::kept_over_time`]; a non-redemption
    /// learned after the clock moved past its decision's tick holds a little
    /// more, and under count-based `half_life` less), never widening the
    /// posterior past `prior`'s variances. False when nothing was taken
    /// back (no such offer, features of another encoding).
    pub fn retract_non_redemption(
        &self,
        posteriors: &mut impl Posteriors,
        prior: Option<&SharedPrior>,
        offer: usize,
        x: &Sparse,
        at_ms: i64,
    ) -> bool {
        let dim = self.encoder.dim();
        if x.iter().any(|(i, _)| *i as usize >= dim) {
            return false;
        }
        let Some(posterior) = posteriors.posterior_mut(offer) else {
            return false;
        };
        let variances = forgetting::offer_prior(prior, dim, &[], self.config).1;
        let removal = Removal {
            decision_weight: forgetting::kept_over_time(self.config, posterior, at_ms),
            redemption_weight: 1.0,
            weights_are_exact: false,
            prior_variance: &variances,
        };
        if self.config.change_threshold.is_some() {
            // The detector takes the non-redemption back too, at today's
            // prediction (an alarm waits for the redemption itself).
            let predicted = change::predict(posterior.predictive(x), self.config.likelihood);
            posterior.change.observe(predicted, false, at_ms, -1.0);
        }
        let config = shared_prior::learning_config(self.config, prior);
        posterior.retract_non_redemption(x, &removal, &config);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::contextual::Likelihood;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Learns 3,000 outcomes of one offer (30%, then 2% from the 2,000th),
    /// 500 a day, through the learning step; at `checkpoint` the
    /// posteriors are written and read back as a checkpoint does.
    fn learn_with_a_checkpoint_at(checkpoint: usize) -> Vec<GaussianPosterior> {
        let encoder = Encoder::new(Vec::new(), 0).expect("intercept only");
        let config = ContextualConfig::new(Likelihood::Logistic);
        let none = || Vec::new();
        let step = Step {
            encoder: &encoder,
            config: &config,
            offer_features: &none,
        };
        let mut models = vec![GaussianPosterior::prior(1, &config)];
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for i in 0..3_000 {
            if i == checkpoint {
                let bytes = postcard::to_stdvec(&models).expect("encodes");
                models = postcard::from_bytes(&bytes).expect("decodes");
            }
            let p = if i < 2_000 { 0.3 } else { 0.02 };
            let at = i64::try_from(i).expect("small") * forgetting::TICK_MS / 500;
            step.learn(
                &mut models,
                None,
                0,
                &[(0, 1.0)],
                rng.random::<f64>() < p,
                at,
            );
        }
        models
    }

    /// Change detection's state is part of what a checkpoint keeps: a
    /// restart from one taken just before the fall learns the same
    /// posterior, alarms included, as the process that never stopped.
    #[test]
    fn a_checkpoint_keeps_the_change_detector() {
        let straight = learn_with_a_checkpoint_at(usize::MAX);
        let restarted = learn_with_a_checkpoint_at(1_990);
        assert!(straight[0].change.alarms >= 1, "{:?}", straight[0].change);
        assert_eq!(straight, restarted);
    }
}
