//! Off-policy estimators: what a target policy would have earned on a log of
//! decisions made by another (behavior) policy, from the logged propensities.
//! IPS, self-normalized IPS, the direct method (a reward model, cross-fitted)
//! and doubly robust, with bootstrap intervals that resample customers;
//! `ips-cs`, an interval that stays valid when the logger was adaptive (a
//! betting confidence sequence); optional weight clipping; the effective
//! sample size, the smallest logged propensity, the share of the target's
//! choices the log cannot support, and warnings when the log cannot support
//! the answer. Estimates are never outside the possible range of a mean
//! reward, and importance-weighted ones are withheld without support.

use std::collections::HashMap;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// What the estimators need from one logged decision, already computed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Round {
    /// Observed reward of the logged action.
    pub(crate) reward: f64,
    /// Behavior policy's probability of the logged action.
    pub(crate) propensity: f64,
    /// Target policy's probability of the logged action.
    pub(crate) target: f64,
    /// Reward model's prediction for the logged action (cross-fitted).
    pub(crate) predicted: f64,
    /// Reward model's value of the target policy here: sum over actions of
    /// target probability x predicted reward (cross-fitted).
    pub(crate) predicted_target: f64,
    /// The customer: rounds of one customer are resampled together; `None`
    /// (anonymous) is a cluster of its own.
    pub(crate) cluster: Option<u64>,
}

/// One estimator's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Estimate {
    /// `ips`, `snips`, `dm`, `dr` or `ips-cs`.
    pub(crate) estimator: String,
    /// Estimated value of the target policy (mean reward per decision);
    /// null (NaN) when withheld.
    pub(crate) estimate: f64,
    /// Lower end of the interval (95% unless --level says otherwise).
    pub(crate) ci_low: f64,
    /// Upper end of the interval.
    pub(crate) ci_high: f64,
    /// (sum w)^2 / sum w^2 of the importance weights used.
    pub(crate) effective_sample_size: f64,
    /// Rounds in the log.
    pub(crate) rounds: usize,
    /// On-policy value of the target from its own log, when known.
    pub(crate) ground_truth: Option<f64>,
    /// |estimate - ground_truth| / ground_truth, when known.
    pub(crate) relative_error: Option<f64>,
    /// Why this estimate should not be trusted, if it should not.
    pub(crate) warnings: Vec<String>,
    /// Smallest logged propensity in the log.
    pub(crate) min_propensity: f64,
    /// Estimated share of the target's choices that went to actions the
    /// logger gave less than `--min-support` (or zero) probability.
    pub(crate) unsupported_share: f64,
    /// True when the log cannot support this estimator for this target: the
    /// estimate and interval are then null.
    pub(crate) withheld: bool,
    /// What the interval assumes.
    pub(crate) interval: String,
}

/// Estimator options.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    /// Importance weights above this are clipped (None: no clipping).
    pub(crate) clip: Option<f64>,
    /// Bootstrap resamples.
    pub(crate) bootstrap: usize,
    /// Seed of the bootstrap.
    pub(crate) seed: u64,
    /// Confidence level of the intervals (e.g. 0.95).
    pub(crate) level: f64,
    /// A logged propensity below this is no support (the weight would be
    /// above its inverse).
    pub(crate) min_support: f64,
    /// Importance-weighted estimates are withheld when the target's share
    /// on unsupported actions is above this (by three standard errors).
    pub(crate) max_unsupported: f64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            clip: None,
            bootstrap: 500,
            seed: 1,
            level: 0.95,
            min_support: DEFAULT_MIN_SUPPORT,
            max_unsupported: DEFAULT_MAX_UNSUPPORTED,
        }
    }
}

/// Default `--min-support`.
pub(crate) const DEFAULT_MIN_SUPPORT: f64 = 1e-3;
/// Default `--max-unsupported`.
pub(crate) const DEFAULT_MAX_UNSUPPORTED: f64 = 0.01;

fn weight(r: &Round, clip: Option<f64>) -> f64 {
    let w = if r.propensity > 0.0 {
        r.target / r.propensity
    } else {
        0.0
    };
    clip.map_or(w, |m| w.min(m))
}

/// Point estimate of one estimator on the rounds `idx` selects.
fn point(
    name: &str,
    rounds: &[Round],
    idx: &mut dyn Iterator<Item = usize>,
    clip: Option<f64>,
) -> f64 {
    let (mut n, mut num, mut den) = (0.0, 0.0, 0.0);
    for i in idx {
        let r = &rounds[i];
        let w = weight(r, clip);
        n += 1.0;
        match name {
            "ips" | "ips-cs" => num += w * r.reward,
            "snips" => {
                num += w * r.reward;
                den += w;
            }
            "dm" => num += r.predicted_target,
            _ => num += r.predicted_target + w * (r.reward - r.predicted),
        }
    }
    match name {
        // All-zero weights: the log says nothing about the target; 0 with a warning.
        "snips" if den > 0.0 => num / den,
        "snips" => 0.0,
        _ if n > 0.0 => num / n,
        _ => 0.0,
    }
}

/// Effective sample size of the importance weights.
pub(crate) fn effective_sample_size(rounds: &[Round], clip: Option<f64>) -> f64 {
    let (s, s2) = rounds
        .iter()
        .map(|r| weight(r, clip))
        .fold((0.0, 0.0), |(s, s2), w| (s + w, s2 + w * w));
    if s2 > 0.0 { s * s / s2 } else { 0.0 }
}

/// How much of the target's behaviour the log can speak for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Support {
    /// Estimated share of the target's probability mass on actions the
    /// logger gave less than the floor: 1 - mean of w 1{p >= floor}, since
    /// E_logger[w 1{p >= floor}] is the target's mass on the supported
    /// actions. Exact for a deterministic logger (every p = 1).
    pub(crate) share: f64,
    /// Its standard error.
    pub(crate) se: f64,
    /// Smallest logged propensity.
    pub(crate) min_propensity: f64,
}

/// The support of the log for this target (`floor`: the smallest
/// propensity that counts as support).
pub(crate) fn support(rounds: &[Round], floor: f64) -> Support {
    let n = rounds.len().max(1) as f64;
    let xs = rounds.iter().map(|r| {
        if r.propensity >= floor && r.propensity > 0.0 {
            r.target / r.propensity
        } else {
            0.0
        }
    });
    let (s, s2) = xs.fold((0.0, 0.0), |(s, s2), x| (s + x, s2 + x * x));
    let mean = s / n;
    let var = (s2 / n - mean * mean).max(0.0) * n / (n - 1.0).max(1.0);
    Support {
        share: (1.0 - mean).clamp(0.0, 1.0),
        se: (var / n).sqrt(),
        min_propensity: rounds
            .iter()
            .map(|r| r.propensity)
            .fold(f64::INFINITY, f64::min),
    }
}

/// The range a mean reward can take: [0, 1] for redemptions (every reward
/// 0 or 1), else from the smallest to the largest reward (0 included).
pub(crate) fn reward_bounds(rounds: &[Round]) -> (f64, f64) {
    if rounds.iter().all(|r| r.reward == 0.0 || r.reward == 1.0) {
        return (0.0, 1.0);
    }
    rounds.iter().fold((0.0f64, 0.0f64), |(lo, hi), r| {
        (lo.min(r.reward), hi.max(r.reward))
    })
}

/// Warnings about the support of the log for this target.
fn warnings(rounds: &[Round], clip: Option<f64>, sup: &Support, opts: &Options) -> Vec<String> {
    let mut out = Vec::new();
    let n = rounds.len() as f64;
    let ess = effective_sample_size(rounds, clip);
    if ess < 0.01 * n || ess < 30.0 {
        out.push(format!(
            "effective sample size {ess:.0} of {n:.0} rounds: the target rarely does what the logged policy did; importance-weighted estimates are unreliable"
        ));
    }
    let max_w = rounds.iter().map(|r| weight(r, None)).fold(0.0, f64::max);
    if max_w > 100.0 {
        out.push(format!(
            "largest importance weight {max_w:.0} (smallest logged propensity {:.2e}): a few rounds dominate{}",
            sup.min_propensity,
            if clip.is_some() {
                " (clipped)"
            } else {
                "; consider --clip"
            }
        ));
    }
    let unsupported = rounds
        .iter()
        .filter(|r| r.propensity <= 0.0 && r.target > 0.0)
        .count();
    if unsupported > 0 {
        out.push(format!(
            "{unsupported} rounds have zero logged propensity: they cannot be reweighted"
        ));
    }
    if sup.share > opts.max_unsupported {
        out.push(format!(
            "{:.1}% (se {:.1}%) of the target's choices go to actions the logger took with probability below {}: the log cannot say what they earn",
            100.0 * sup.share,
            100.0 * sup.se,
            opts.min_support
        ));
    }
    out
}

/// The rounds of each cluster (customer); anonymous rounds alone.
fn clusters(rounds: &[Round]) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut by_id: HashMap<u64, usize> = HashMap::new();
    for (i, r) in rounds.iter().enumerate() {
        match r.cluster {
            Some(c) => {
                let k = *by_id.entry(c).or_insert_with(|| {
                    out.push(Vec::new());
                    out.len() - 1
                });
                out[k].push(i);
            }
            None => out.push(vec![i]),
        }
    }
    out
}

/// The estimators, in output order.
pub(crate) const ESTIMATORS: [&str; 5] = ["ips", "snips", "dm", "dr", "ips-cs"];

/// Runs every estimator. IPS, SNIPS, DM and DR get a percentile bootstrap
/// interval that resamples customers (anonymous rounds are their own
/// customers); the reward model is not refit per resample, so DM's
/// interval reflects sampling of rounds only. `ips-cs` is the IPS point
/// estimate with a betting confidence sequence ([`betting_interval`]),
/// valid when the logger was adaptive. Importance-weighted estimates are
/// withheld when the log does not support the target; every estimate and
/// interval lies in [`reward_bounds`].
pub(crate) fn estimate_all(rounds: &[Round], opts: &Options) -> Vec<Estimate> {
    let n = rounds.len();
    let ess = effective_sample_size(rounds, opts.clip);
    let sup = support(rounds, opts.min_support);
    let warn = warnings(rounds, opts.clip, &sup, opts);
    let withhold = sup.share - 3.0 * sup.se > opts.max_unsupported;
    let (lo_r, hi_r) = reward_bounds(rounds);
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let boot = &ESTIMATORS[..4];
    let groups = clusters(rounds);
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(opts.bootstrap); boot.len()];
    let mut idx: Vec<usize> = Vec::with_capacity(n);
    for _ in 0..opts.bootstrap {
        idx.clear();
        for _ in 0..groups.len() {
            idx.extend(&groups[rng.random_range(0..groups.len().max(1))]);
        }
        for (k, name) in boot.iter().enumerate() {
            samples[k].push(point(name, rounds, &mut idx.iter().copied(), opts.clip));
        }
    }
    let fit = |x: f64| x.clamp(lo_r, hi_r);
    let mut out: Vec<Estimate> = boot
        .iter()
        .zip(samples)
        .map(|(name, mut s)| {
            s.sort_by(f64::total_cmp);
            let q = |p: f64| s.get(((s.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(f64::NAN);
            let mut w = warn.clone();
            if *name == "dm" {
                w.retain(|m| !m.contains("weight") && !m.contains("effective"));
                w.push(
                    "DM's interval resamples rounds only; the reward model's own error (its bias) is not in it"
                        .to_owned(),
                );
            }
            Estimate {
                estimator: (*name).to_owned(),
                estimate: fit(point(name, rounds, &mut (0..n), opts.clip)),
                ci_low: fit(q((1.0 - opts.level) / 2.0)),
                ci_high: fit(q((1.0 + opts.level) / 2.0)),
                effective_sample_size: if *name == "dm" { n as f64 } else { ess },
                rounds: n,
                ground_truth: None,
                relative_error: None,
                warnings: w,
                min_propensity: sup.min_propensity,
                unsupported_share: sup.share,
                withheld: false,
                interval: if *name == "dm" {
                    "percentile bootstrap over customers; the reward model held fixed".to_owned()
                } else {
                    "percentile bootstrap over customers: assumes customers independent and the logging policy fixed (an adaptive logger's intervals run narrow; see ips-cs)".to_owned()
                },
            }
        })
        .collect();
    let (low, high) = betting_interval(rounds, 1.0 - opts.level, (lo_r, hi_r), opts.clip);
    out.push(Estimate {
        estimator: "ips-cs".to_owned(),
        estimate: fit(point("ips", rounds, &mut (0..n), opts.clip)).clamp(low, high),
        ci_low: low,
        ci_high: high,
        effective_sample_size: ess,
        rounds: n,
        ground_truth: None,
        relative_error: None,
        warnings: warn.clone(),
        min_propensity: sup.min_propensity,
        unsupported_share: sup.share,
        withheld: false,
        interval: "betting confidence sequence (Waudby-Smith et al. 2022): valid under an adaptive logger and at any look, given the logged propensities are the probabilities actually used and rewards of different decisions independent given their contexts and actions; the log in time order".to_owned(),
    });
    if withhold {
        for e in out.iter_mut().filter(|e| e.estimator != "dm") {
            e.withheld = true;
            e.estimate = f64::NAN;
            e.ci_low = f64::NAN;
            e.ci_high = f64::NAN;
            e.warnings.push(format!(
                "withheld: {:.1}% of the target's choices have no support in the log",
                100.0 * sup.share
            ));
        }
        if let Some(dm) = out.iter_mut().find(|e| e.estimator == "dm") {
            dm.warnings.push(format!(
                "DM extrapolates its reward model to the {:.1}% of the target's choices the log never tried: a guess, not a measurement",
                100.0 * sup.share
            ));
        }
    }
    out
}

/// A two-sided interval at level 1 - `alpha` for the target's value from
/// importance-weighted rewards, valid when the logging policy was adaptive
/// and at every prefix of the log (a confidence sequence): the betting
/// construction of Waudby-Smith & Ramdas (2023) applied to off-policy
/// evaluation (Karampatziakis, Mineiro & Ramdas 2021; Waudby-Smith et al.
/// 2022). With x_t = w_t (r_t - lo) / (hi - lo) >= 0, whose conditional
/// mean given the past is m = (V - lo) / (hi - lo) whatever the logger did
/// before t, the wealth `Π (1 + λ_t (x_t - m))` with a predictable
/// `λ_t ∈ [0, 1/(2m)]` is a nonnegative martingale at the true m, so by
/// Ville's inequality it ever reaches 2/alpha with probability at most
/// alpha/2: values of m it reaches are excluded (lower bound). The upper
/// bound is the same on y_t = w_t (hi - r_t) / (hi - lo), whose mean is
/// 1 - m when the target is fully supported (E w = 1). Wealth falls as m
/// rises, so each bound is found by bisection.
pub(crate) fn betting_interval(
    rounds: &[Round],
    alpha: f64,
    (lo, hi): (f64, f64),
    clip: Option<f64>,
) -> (f64, f64) {
    let span = hi - lo;
    if rounds.is_empty() || span <= 0.0 {
        return (lo, hi);
    }
    let xs: Vec<f64> = rounds
        .iter()
        .map(|r| weight(r, clip) * (r.reward - lo) / span)
        .collect();
    let ys: Vec<f64> = rounds
        .iter()
        .map(|r| weight(r, clip) * (hi - r.reward) / span)
        .collect();
    let low = lower_bound(&xs, alpha / 2.0);
    let high = 1.0 - lower_bound(&ys, alpha / 2.0);
    (lo + span * low, lo + span * high.max(low))
}

/// The smallest m in [0, 1] that the betting test at level `alpha` does not
/// reject, for nonnegative xs with conditional mean m.
fn lower_bound(xs: &[f64], alpha: f64) -> f64 {
    let threshold = (1.0 / alpha).ln();
    // Predictable bets (Waudby-Smith & Ramdas 2023, eq. 26): from the
    // running mean and variance of the past, shrunk as ln(t) grows.
    let mut lambdas = Vec::with_capacity(xs.len());
    let (mut sum, mut var_sum) = (0.0, 0.25);
    for (i, &x) in xs.iter().enumerate() {
        let t = (i + 1) as f64;
        let var = var_sum / t;
        lambdas.push((2.0 * threshold / (var * t * (1.0 + t).ln())).sqrt());
        let mean = (0.5 + sum) / t;
        var_sum += (x - mean) * (x - mean);
        sum += x;
    }
    let rejects = |m: f64| -> bool {
        if m <= 0.0 {
            return false;
        }
        let cap = 0.5 / m;
        let mut ln_wealth = 0.0;
        for (&x, &l) in xs.iter().zip(&lambdas) {
            ln_wealth += (l.min(cap) * (x - m)).ln_1p();
            if ln_wealth >= threshold {
                return true;
            }
        }
        false
    };
    if !rejects(1.0) {
        // Bisect on [0, 1]: rejected below the bound, not above.
        let (mut a, mut b) = (0.0, 1.0);
        for _ in 0..50 {
            let mid = 0.5 * (a + b);
            if rejects(mid) {
                a = mid;
            } else {
                b = mid;
            }
        }
        a
    } else {
        1.0
    }
}

/// Sets the ground truth and relative errors.
pub(crate) fn with_truth(mut estimates: Vec<Estimate>, truth: f64) -> Vec<Estimate> {
    for e in &mut estimates {
        e.ground_truth = Some(truth);
        e.relative_error =
            (truth != 0.0 && !e.withheld).then(|| (e.estimate - truth).abs() / truth.abs());
    }
    estimates
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic world: two context types, three actions, Bernoulli rewards.
    const P: [[f64; 3]; 2] = [[0.10, 0.30, 0.05], [0.40, 0.10, 0.20]];
    /// Behavior policy (non-uniform, full support) and target policy.
    const MU: [[f64; 3]; 2] = [[0.6, 0.2, 0.2], [0.5, 0.3, 0.2]];
    const PI: [[f64; 3]; 2] = [[0.1, 0.8, 0.1], [0.7, 0.1, 0.2]];

    fn truth() -> f64 {
        // Contexts are equally likely.
        (0..2)
            .map(|x| 0.5 * (0..3).map(|a| PI[x][a] * P[x][a]).sum::<f64>())
            .sum()
    }

    /// A log of `n` rounds in the world `P`; the reward model is `model(x, a)`.
    fn log(n: usize, seed: u64, model: &dyn Fn(usize, usize) -> f64) -> Vec<Round> {
        log_in(&P, n, seed, model)
    }

    fn log_in(
        p: &[[f64; 3]; 2],
        n: usize,
        seed: u64,
        model: &dyn Fn(usize, usize) -> f64,
    ) -> Vec<Round> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let x = rng.random_range(0..2);
                let u: f64 = rng.random();
                let a = if u < MU[x][0] {
                    0
                } else if u < MU[x][0] + MU[x][1] {
                    1
                } else {
                    2
                };
                let reward = f64::from(u8::from(rng.random::<f64>() < p[x][a]));
                Round {
                    reward,
                    propensity: MU[x][a],
                    target: PI[x][a],
                    predicted: model(x, a),
                    predicted_target: (0..3).map(|b| PI[x][b] * model(x, b)).sum(),
                    cluster: None,
                }
            })
            .collect()
    }

    fn opts(seed: u64) -> Options {
        Options {
            bootstrap: 200,
            seed,
            ..Options::default()
        }
    }

    #[test]
    fn intervals_cover_the_truth_in_most_trials() {
        let good = |x: usize, a: usize| P[x][a] + 0.02;
        let truth = truth();
        let trials = 100;
        let mut covered = [0usize; 5];
        for t in 0..trials {
            let est = estimate_all(&log(2_000, t, &good), &opts(1_000 + t));
            for (k, e) in est.iter().enumerate() {
                if e.ci_low <= truth && truth <= e.ci_high {
                    covered[k] += 1;
                }
            }
        }
        println!(
            "coverage of the 95% intervals over {trials} trials (ips, snips, dm, dr, ips-cs): {covered:?}"
        );
        // The confidence sequence's 95% is a guarantee (at most 2.5% per
        // side by Ville's inequality); 88 of 100 allows for the binomial
        // noise of 100 trials.
        assert!(covered[4] >= 88, "ips-cs covered {}/{trials}", covered[4]);
        // IPS, SNIPS and DR are unbiased (DR given either the model or the
        // propensities right); nominal coverage is 95%; we require 85%.
        for (k, name) in ["ips", "snips", "dr"].iter().enumerate() {
            let k = if k == 2 { 3 } else { k };
            assert!(
                covered[k] >= 85,
                "{name} covered the truth in {}/{trials} trials",
                covered[k]
            );
        }
        // DM with a reward model biased by +0.02 is biased by +0.02: it is
        // expected to miss; the test records that it does (no silent luck).
        assert!(covered[2] < 50, "dm covered {}/{trials}", covered[2]);
    }

    #[test]
    fn doubly_robust_has_lower_variance_than_ips_with_a_good_model() {
        // Rewards that the context and action mostly determine: a good reward
        // model explains most of their variance, which is where DR gains.
        const Q: [[f64; 3]; 2] = [[0.5, 0.95, 0.5], [0.97, 0.5, 0.95]];
        let good = |x: usize, a: usize| Q[x][a];
        let (mut ips, mut dr) = (Vec::new(), Vec::new());
        for t in 0..200 {
            let rounds = log_in(&Q, 1_000, 500 + t, &good);
            let all = 0..rounds.len();
            ips.push(point("ips", &rounds, &mut all.clone(), None));
            dr.push(point("dr", &rounds, &mut all.clone(), None));
        }
        let var = |v: &[f64]| {
            let m = v.iter().sum::<f64>() / v.len() as f64;
            v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64
        };
        assert!(
            var(&dr) < 0.5 * var(&ips),
            "DR variance {} vs IPS {}",
            var(&dr),
            var(&ips)
        );
    }

    #[test]
    fn a_log_with_zero_weights_withholds_the_weighted_estimates() {
        // The target never does what the logger did: E_logger[w] = 0, so all
        // its mass is on actions this log never shows.
        let rounds: Vec<Round> = (0..100)
            .map(|i| Round {
                reward: f64::from(i % 2),
                propensity: 0.5,
                target: 0.0,
                predicted: 0.1,
                predicted_target: 0.1,
                cluster: None,
            })
            .collect();
        let est = estimate_all(&rounds, &opts(3));
        for e in &est {
            assert_eq!(e.withheld, e.estimator != "dm", "{e:?}");
            assert_eq!(e.unsupported_share, 1.0);
            if !e.withheld {
                assert!(e.estimate.is_finite() && e.ci_low.is_finite() && e.ci_high.is_finite());
            }
        }
        assert!(
            est[1]
                .warnings
                .iter()
                .any(|w| w.contains("effective sample size"))
        );
        assert_eq!(est[1].effective_sample_size, 0.0);
        // Withheld estimates are null in JSON.
        let json = serde_json::to_value(&est[1]).expect("json");
        assert!(json["estimate"].is_null(), "{json}");
    }

    #[test]
    fn a_deterministic_logger_gives_no_weighted_estimate_and_says_why() {
        // The old rule always showed action 0 (propensity 1). The target
        // puts 0.1 (context 0) and 0.7 (context 1) on it: 60% of its mass is
        // on actions the log never shows. Before, SNIPS answered 0.25 (the
        // rate of action 0) for a true 0.2925, with ESS 0.64 n.
        let truth = truth();
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let rounds: Vec<Round> = (0..4_000)
            .map(|_| {
                let x = rng.random_range(0..2);
                let reward = f64::from(u8::from(rng.random::<f64>() < P[x][0]));
                Round {
                    reward,
                    propensity: 1.0,
                    target: PI[x][0],
                    predicted: P[x][0] + 0.02,
                    predicted_target: (0..3).map(|b| PI[x][b] * (P[x][b] + 0.02)).sum(),
                    cluster: None,
                }
            })
            .collect();
        let est = estimate_all(&rounds, &opts(5));
        let best: f64 = (0..2)
            .map(|x| 0.5 * P[x].iter().copied().fold(0.0, f64::max))
            .sum();
        for e in &est {
            println!(
                "{}: withheld {} estimate {:.4} unsupported {:.3} min propensity {}",
                e.estimator, e.withheld, e.estimate, e.unsupported_share, e.min_propensity
            );
            assert!((e.unsupported_share - 0.6).abs() < 0.02, "{e:?}");
            assert_eq!(e.min_propensity, 1.0);
            if e.estimator == "dm" {
                assert!(!e.withheld);
                assert!(e.warnings.iter().any(|w| w.contains("extrapolates")));
                assert!(e.estimate <= best && (e.estimate - truth - 0.02).abs() < 0.01);
            } else {
                assert!(e.withheld && e.estimate.is_nan(), "{e:?}");
                assert!(e.warnings.iter().any(|w| w.contains("no support")));
            }
        }
        // A target that follows the old rule is fully supported.
        let same: Vec<Round> = rounds
            .iter()
            .map(|r| Round {
                target: 1.0,
                ..r.clone()
            })
            .collect();
        let est = estimate_all(&same, &opts(6));
        assert!(
            est.iter()
                .all(|e| !e.withheld && e.unsupported_share == 0.0)
        );
    }

    #[test]
    fn binary_estimates_and_intervals_stay_in_the_unit_interval() {
        // One round with weight 500 and a redemption: IPS's raw mean is 250.
        let mut rounds = vec![Round {
            reward: 1.0,
            propensity: 0.002,
            target: 1.0,
            predicted: 0.5,
            predicted_target: 0.5,
            cluster: None,
        }];
        for i in 0..199 {
            rounds.push(Round {
                reward: f64::from(i % 2),
                propensity: 0.5,
                target: 0.5,
                predicted: 0.5,
                predicted_target: 0.5,
                cluster: None,
            });
        }
        let opts = Options {
            bootstrap: 50,
            max_unsupported: 1.0,
            ..Options::default()
        };
        for e in estimate_all(&rounds, &opts) {
            assert!(
                0.0 <= e.ci_low
                    && e.ci_low <= e.estimate
                    && e.estimate <= e.ci_high
                    && e.ci_high <= 1.0,
                "{e:?}"
            );
        }
        // Values: within the smallest and largest reward.
        for r in &mut rounds {
            r.reward *= 7.5;
        }
        for e in estimate_all(&rounds, &opts) {
            assert!(0.0 <= e.ci_low && e.ci_high <= 7.5, "{e:?}");
        }
    }

    #[test]
    fn the_bootstrap_resamples_customers() {
        // 100 customers x 10 visits, a uniform logger over two actions, each
        // customer's own redemption rate drawn from Beta(0.7, 1.633) (mean
        // 0.3, intraclass correlation 1 / (0.7 + 1.633 + 1) = 0.3). Target:
        // action 0; its value is 0.3. 100 logs, 100 resamples each (small
        // on purpose: debug builds).
        let beta = rand_distr::Beta::new(0.7, 1.633).expect("beta");
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let (mut by_row, mut by_customer) = (0, 0);
        let trials = 100;
        for t in 0..trials {
            let mut rounds = Vec::with_capacity(1_000);
            for c in 0..100u64 {
                let p: f64 = rand_distr::Distribution::sample(&beta, &mut rng);
                for _ in 0..10 {
                    let a0 = rng.random::<f64>() < 0.5;
                    rounds.push(Round {
                        reward: f64::from(u8::from(rng.random::<f64>() < p)),
                        propensity: 0.5,
                        target: if a0 { 1.0 } else { 0.0 },
                        predicted: 0.3,
                        predicted_target: 0.3,
                        cluster: Some(c),
                    });
                }
            }
            let o = Options {
                bootstrap: 100,
                seed: t,
                ..Options::default()
            };
            let covers = |e: &Estimate| e.ci_low <= 0.3 && 0.3 <= e.ci_high;
            by_customer += usize::from(covers(&estimate_all(&rounds, &o)[0]));
            for r in &mut rounds {
                r.cluster = None;
            }
            by_row += usize::from(covers(&estimate_all(&rounds, &o)[0]));
        }
        println!(
            "IPS 95% bootstrap coverage over {trials} clustered logs: by customer {by_customer}, by round {by_row}"
        );
        assert!(by_customer >= 88, "by customer {by_customer}/{trials}");
        assert!(by_row < by_customer, "by round {by_row}/{trials}");
    }

    /// A log of `n` rounds of a two-armed Bernoulli bandit (rates 0.05 and
    /// 0.10) logged by Beta(1, 1) Thompson sampling; each propensity is the
    /// exact probability of the choice in the posterior of that moment.
    fn thompson_log(n: usize, seed: u64) -> Vec<Round> {
        use offer_bandit::policy::thompson::{Arm, choose};
        const RATES: [f64; 2] = [0.05, 0.10];
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut counts = [[0.0f64; 2]; 2];
        (0..n)
            .map(|_| {
                let arms: Vec<Arm> = counts
                    .iter()
                    .map(|[s, f]| Arm::new(1.0 + s, 1.0 + f, 1.0))
                    .collect();
                let c = choose(&arms, &mut rng).expect("two arms");
                let r = rng.random::<f64>() < RATES[c.index];
                counts[c.index][usize::from(!r)] += 1.0;
                Round {
                    reward: f64::from(u8::from(r)),
                    propensity: c.propensity,
                    target: if c.index == 0 { 1.0 } else { 0.0 },
                    predicted: 0.075,
                    predicted_target: 0.075,
                    cluster: None,
                }
            })
            .collect()
    }

    #[test]
    fn intervals_on_a_thompson_sampling_log() {
        // The target is the worse arm (value 0.05), which the logger shows
        // less and less: small propensities late in the log, large weights.
        // 100 logs of 400 rounds, 100 resamples (debug builds: seconds).
        let trials = 100;
        let (mut boot, mut cs, mut smallest) = (0, 0, 1.0f64);
        for t in 0..trials {
            let rounds = thompson_log(400, 300 + t);
            let o = Options {
                bootstrap: 100,
                seed: t,
                max_unsupported: 1.0,
                ..Options::default()
            };
            let est = estimate_all(&rounds, &o);
            let covers = |e: &Estimate| e.ci_low <= 0.05 && 0.05 <= e.ci_high;
            boot += usize::from(covers(&est[0]));
            cs += usize::from(covers(&est[4]));
            smallest = smallest.min(est[4].min_propensity);
        }
        println!(
            "TS-logged, 95% intervals over {trials} logs: IPS bootstrap covered {boot}, ips-cs {cs}; smallest logged propensity {smallest:.2e}"
        );
        assert!(cs >= 90, "ips-cs covered {cs}/{trials}");
    }

    #[test]
    fn clipping_bounds_the_weights() {
        let rounds = vec![
            Round {
                reward: 1.0,
                propensity: 0.001,
                target: 1.0,
                predicted: 0.0,
                predicted_target: 0.0,
                cluster: None,
            },
            Round {
                reward: 0.0,
                propensity: 0.5,
                target: 0.5,
                predicted: 0.0,
                predicted_target: 0.0,
                cluster: None,
            },
        ];
        assert_eq!(point("ips", &rounds, &mut (0..2), None), 500.0);
        assert_eq!(point("ips", &rounds, &mut (0..2), Some(10.0)), 5.0);
        let e = estimate_all(
            &rounds,
            &Options {
                bootstrap: 10,
                ..Options::default()
            },
        );
        assert!(
            e[0].warnings
                .iter()
                .any(|w| w.contains("largest importance weight"))
        );
    }
}
