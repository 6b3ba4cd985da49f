//! Off-policy evaluation of a target policy on a log: the target's action
//! probabilities per logged decision, a cross-fitted reward model for the
//! direct method, and the replay method for learning policies.

use offer_bandit::{
    Buckets, Encoder, dot_sparse, infer_specs,
    policy::{
        Features, Outcome, Policy,
        contextual::{ContextualConfig, GaussianPosterior, Likelihood},
        thompson::sigmoid,
    },
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::{
    logs::{Log, Logged},
    ope::Round,
};

/// The target policy's probability of every action at one logged decision,
/// as a dense vector over `Log::actions`.
pub(crate) type TargetProbs = Vec<f64>;

/// The reward model of the direct method: one Bayesian logistic regression
/// per action over the encoded context (the library's own posterior, one
/// online Laplace pass over the training rows, prior centred on the log's
/// mean reward). Rewards above 1 (values) are modelled by a linear one.
struct RewardModel {
    encoder: Encoder,
    config: ContextualConfig,
    models: Vec<GaussianPosterior>,
}

impl RewardModel {
    fn fit(log: &Log, rows: impl Iterator<Item = usize> + Clone, encoder: &Encoder) -> RewardModel {
        let n = rows.clone().count().max(1) as f64;
        let mean = rows.clone().map(|i| log.rows[i].reward).sum::<f64>() / n;
        let binary = log.rows.iter().all(|r| r.reward == 0.0 || r.reward == 1.0);
        let mut config = ContextualConfig::new(if binary {
            Likelihood::Logistic
        } else {
            Likelihood::Linear
        });
        config.prior_rate = mean.clamp(1e-4, 0.5);
        config.prior_variance = 1.0;
        config.noise_variance = 1.0;
        let mut models: Vec<GaussianPosterior> = log
            .actions
            .iter()
            .map(|_| GaussianPosterior::prior(encoder.dim(), &config))
            .collect();
        if !binary {
            for m in &mut models {
                m.mean[0] = mean;
            }
        }
        for i in rows {
            let r = &log.rows[i];
            if let Ok(x) = encoder.encode(&r.context) {
                models[r.action].update(&x, r.reward, &config);
            }
        }
        RewardModel {
            encoder: encoder.clone(),
            config,
            models,
        }
    }

    fn predict(&self, row: &Logged) -> Vec<f64> {
        let x = self.encoder.encode(&row.context).unwrap_or_default();
        self.models
            .iter()
            .map(|m| {
                let z = dot_sparse(&m.mean, &x);
                match self.config.likelihood {
                    Likelihood::Logistic => sigmoid(z),
                    Likelihood::Linear => z,
                }
            })
            .collect()
    }
}

/// The cross-fitting fold (0 or 1) of logged decision `i`: by customer, so
/// that no customer's decisions are predicted by a model fitted on their
/// own others; a decision without a customer by its position.
pub(crate) fn fold(log: &Log, i: usize) -> usize {
    log.rows[i].customer.map_or(i % 2, |c| (c % 2) as usize)
}

/// Estimator inputs for every logged decision: importance terms and a
/// reward model cross-fitted on two folds ([`fold`]: each half is predicted
/// by a model trained on the other half).
pub(crate) fn rounds(log: &Log, targets: &[TargetProbs]) -> Vec<Round> {
    let encoder = Encoder::new(
        infer_specs(log.rows.iter().map(|r| &r.context), 8, Buckets::Steps, 256),
        10,
    )
    .or_else(|_| Encoder::new(Vec::new(), 0));
    let Ok(encoder) = encoder else {
        return Vec::new();
    };
    let n = log.rows.len();
    let folds = [
        RewardModel::fit(log, (0..n).filter(|&i| fold(log, i) == 1), &encoder),
        RewardModel::fit(log, (0..n).filter(|&i| fold(log, i) == 0), &encoder),
    ];
    log.rows
        .iter()
        .zip(targets)
        .enumerate()
        .map(|(i, (row, pi))| {
            let predicted = folds[fold(log, i)].predict(row);
            Round {
                reward: row.reward,
                propensity: row.propensity,
                target: pi.get(row.action).copied().unwrap_or(0.0),
                predicted: predicted.get(row.action).copied().unwrap_or(0.0),
                predicted_target: pi.iter().zip(&predicted).map(|(p, r)| p * r).sum(),
                cluster: row.customer,
            }
        })
        .collect()
}

/// Uniform over each decision's candidates.
pub(crate) fn uniform(log: &Log) -> Vec<TargetProbs> {
    log.rows
        .iter()
        .map(|r| {
            let mut p = vec![0.0; log.actions.len()];
            for &c in &r.candidates {
                p[c] = 1.0 / r.candidates.len() as f64;
            }
            p
        })
        .collect()
}

/// Always `action` (the first candidate where it is not one).
pub(crate) fn fixed(log: &Log, action: usize) -> Vec<TargetProbs> {
    log.rows
        .iter()
        .map(|r| {
            let mut p = vec![0.0; log.actions.len()];
            let a = if r.candidates.contains(&action) {
                action
            } else {
                r.candidates[0]
            };
            p[a] = 1.0;
            p
        })
        .collect()
}

/// A context-free slate policy: `dist[action][slot]` at each decision's slot.
pub(crate) fn per_slot(log: &Log, dist: &[Vec<f64>]) -> Vec<TargetProbs> {
    log.rows
        .iter()
        .map(|r| {
            dist.iter()
                .map(|d| d.get(r.position).copied().unwrap_or(0.0))
                .collect()
        })
        .collect()
}

/// A library policy's exact action probabilities, frozen: it learns from
/// the log's first `train` decisions (their logged actions and outcomes), and
/// is evaluated on the rest, which are returned as a new log.
pub(crate) fn frozen(
    policy: &mut dyn Policy,
    log: &Log,
    train: usize,
) -> anyhow::Result<(Log, Vec<TargetProbs>)> {
    for r in &log.rows[..train] {
        let f = policy.features(&r.context)?;
        learn_logged(policy, &f, r);
    }
    let test = Log {
        actions: log.actions.clone(),
        rows: log.rows[train..].to_vec(),
    };
    let mut targets = Vec::with_capacity(test.rows.len());
    for r in &test.rows {
        let f: Features = policy.features(&r.context)?;
        let mut p = vec![0.0; log.actions.len()];
        for &c in &r.candidates {
            p[c] = policy.propensity(&f, &r.candidates, c);
        }
        targets.push(p);
    }
    Ok((test, targets))
}

/// The replay method (Li et al. 2011) for a policy that keeps learning: walk
/// a log of *uniformly random* decisions, keep those where the policy picks
/// the logged action, and let it learn from them. Returns (mean reward over
/// kept decisions, its standard error, kept).
pub(crate) fn replay_learning(
    policy: &mut dyn Policy,
    log: &Log,
    seed: u64,
) -> anyhow::Result<(f64, f64, usize)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut sum, mut sum2, mut kept) = (0.0, 0.0, 0usize);
    for r in &log.rows {
        let f = policy.features(&r.context)?;
        if policy.choose(&f, &r.candidates, &mut rng) != r.action {
            continue;
        }
        learn_logged(policy, &f, r);
        sum += r.reward;
        sum2 += r.reward * r.reward;
        kept += 1;
    }
    let n = kept.max(1) as f64;
    let mean = sum / n;
    let se = ((sum2 / n - mean * mean).max(0.0) / n).sqrt();
    Ok((mean, se, kept))
}

/// Whether every decision of the log was uniformly random over its candidates.
pub(crate) fn is_uniform(log: &Log) -> bool {
    log.rows
        .iter()
        .all(|r| (r.propensity * r.candidates.len() as f64 - 1.0).abs() < 1e-6)
}

/// `policy` learns one logged decision: its offer, then its outcome (a
/// positive reward is a redemption of that value).
pub(crate) fn learn_logged(policy: &mut dyn Policy, features: &Features, r: &Logged) {
    policy.on_decision(features, r.action);
    let outcome = if r.reward > 0.0 {
        Outcome::Redeemed { value: r.reward }
    } else {
        Outcome::Expired
    };
    policy.on_outcome(features, r.action, outcome);
}
