//! Policy specs on the command line (`segment-ts:lifecycle+spend_tier`,
//! `epsilon-greedy:0.05`, ...) and the library policies they build.

use anyhow::{Context as _, bail};
use offer_bandit::{
    Context,
    policy::{
        Features, Outcome, Policy, PolicyError,
        baseline::{EpsilonGreedy, Fixed, Ucb1, Uniform},
        contextual::{ContextualConfig, Likelihood},
        contextual_ts::ContextualTs,
        floor::{Floored, PropensityFloor},
        rules::Rules,
        segment::{DEFAULT_SNAPSHOT_TOLERANCE, SegmentTs},
    },
};
use rand::Rng;

/// The policies `--policies` accepts, for `--help` and error messages.
pub(crate) const POLICY_HELP: &str = "\
uniform                     uniform random over the candidates
fixed-best                  the offer with the best mean rate (known only in hindsight)
fixed:OFFER                 always OFFER
epsilon-greedy[:EPS]        best rate so far, a random offer with probability EPS (0.1)
ucb1                        UCB1 on each offer's rate
segment-ts[:F1+F2..]        Beta Thompson sampling per segment of categorical features
                            (default: the scenario's report segment); a pending decision
                            weighs by the chance its redemption would have come by now
segment-ts-at-once[:F1..]   the same, counting each decision as a non-redemption at once
                            (before delayed feedback; biased when an offer's traffic shifts)
marketer                    the scenario's static rule (e.g. BOGO to everyone after 2pm)
rules:FILE                  your own rule, written in a rules file (`if hour >= 14 then bogo`,
                            first line that holds wins, `otherwise OFFER`; docs/simulator.md)
linear-ts[:OPTS]            contextual Thompson sampling, Bayesian linear regression per offer
logistic-ts[:OPTS]          contextual Thompson sampling, Bayesian logistic regression per offer
                            OPTS: KEY=VALUE joined by '+': exploration, prior-variance,
                            prior-rate, noise-variance, half-life (observations per offer),
                            time-half-life-days (event time; default 30; off: none),
                            adaptive-prior (on: prior variances learned across offers, the
                            default up to 256 encoded columns; off), change-threshold (per-offer
                            change detection's CUSUM threshold, nats; default 12; off: none)
engine:linear-ts[:OPTS]     the same, run on the server's engine in-process (select path,
engine:logistic-ts[:OPTS]   writer, expiry; in-memory store, virtual clock): the loop that ships";

/// A marketer's static rule: context and candidates in, an offer out.
pub(crate) type Rule<'a> = dyn Fn(&Context, &[usize]) -> usize + Sync + 'a;

/// What building a policy needs to know about the world.
pub(crate) struct PolicyEnv<'a> {
    /// Offer ids.
    pub(crate) offers: Vec<String>,
    /// Objective weight of each offer (1, or its value under `--objective value`).
    pub(crate) weights: Vec<f64>,
    /// Offer with the best mean weighted rate over the world.
    pub(crate) best_fixed: usize,
    /// Segment features for `segment-ts` without arguments.
    pub(crate) default_segment_by: Vec<String>,
    /// The scenario's marketer rule, if it has one.
    pub(crate) marketer: Option<&'a Rule<'a>>,
    /// Pseudo-observations a segment borrows from the campaign (as the server).
    pub(crate) prior_strength: f64,
    /// The campaign's minimum propensity for the server's policies (as the
    /// server; 0: off).
    pub(crate) min_propensity: f64,
    /// Feature encoding for contextual policies.
    pub(crate) encoder: offer_bandit::Encoder,
    /// Contextual policies: the offers' encoded features (`--offer-features`).
    pub(crate) offer_features: Option<crate::offer_features::OfferFeatures>,
    /// The reward window in event time (ms); 0 when feedback is immediate.
    /// `segment-ts` weighs pending decisions by its delay model over it.
    pub(crate) window_ms: i64,
}

impl PolicyEnv<'static> {
    /// The world of a decision log: its actions, with `weights`, and a
    /// context encoding inferred from the log's contexts (as `ope` and
    /// `history` evaluate on it).
    pub(crate) fn for_log(log: &crate::logs::Log, weights: Vec<f64>) -> anyhow::Result<Self> {
        use offer_bandit::{Buckets, Encoder, infer_specs};
        Ok(PolicyEnv {
            offers: log.actions.clone(),
            weights,
            best_fixed: 0,
            default_segment_by: Vec::new(),
            marketer: None,
            prior_strength: 10.0,
            min_propensity: 0.0,
            encoder: Encoder::new(
                infer_specs(log.rows.iter().map(|r| &r.context), 8, Buckets::Steps, 32),
                8,
            )?,
            offer_features: None,
            window_ms: 0,
        })
    }
}

pub(crate) fn contextual_config(
    spec: &str,
    likelihood: Likelihood,
    opts: Option<&str>,
    dim: usize,
) -> anyhow::Result<ContextualConfig> {
    let mut c = ContextualConfig::new(likelihood);
    // As the server decides for a campaign that does not say.
    c.adaptive_prior = offer_bandit::policy::shared_prior::on_by_default(dim);
    for kv in opts
        .into_iter()
        .flat_map(|o| o.split('+'))
        .filter(|s| !s.is_empty())
    {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("policy '{spec}': option '{kv}' is not KEY=VALUE"))?;
        if k == "adaptive-prior" {
            c.adaptive_prior = match v {
                "1" | "true" | "on" => true,
                "0" | "false" | "off" => false,
                _ => bail!("policy '{spec}': adaptive-prior must be on or off"),
            };
            continue;
        }
        if k == "change-threshold" && v == "off" {
            c.change_threshold = None;
            continue;
        }
        if k == "time-half-life-days" && v == "off" {
            c.time_half_life_ms = None;
            continue;
        }
        let v: f64 = v
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v > 0.0)
            .with_context(|| format!("policy '{spec}': {k} must be a positive number"))?;
        match k {
            "exploration" => c.exploration = v,
            "prior-variance" => c.prior_variance = v,
            "prior-rate" if v < 1.0 => c.prior_rate = v,
            "noise-variance" => {
                c.noise_variance = v;
                c.noise_from_rate = false;
            }
            "half-life" => c.half_life = Some(v),
            "change-threshold" => c.change_threshold = Some(v),
            "time-half-life-days" => {
                c.time_half_life_ms = Some(v * offer_bandit::policy::forgetting::DAY_MS)
            }
            _ => bail!("policy '{spec}': unknown or out-of-range option '{kv}'"),
        }
    }
    Ok(c)
}

/// Builds the policy `spec` names.
pub(crate) fn build<'a>(spec: &str, env: &PolicyEnv<'a>) -> anyhow::Result<Box<dyn Policy + 'a>> {
    let (name, arg) = match spec.split_once(':') {
        Some((n, a)) => (n.trim(), Some(a.trim())),
        None => (spec.trim(), None),
    };
    let policy: Box<dyn Policy + 'a> = match (name, arg) {
        ("uniform", None) => Box::new(Uniform),
        ("fixed-best", None) => Box::new(Fixed {
            offer: env.best_fixed,
        }),
        ("fixed", Some(id)) => {
            let offer = env.offers.iter().position(|o| o == id).with_context(|| {
                format!(
                    "policy '{spec}': no offer '{id}' (offers: {})",
                    env.offers.join(", ")
                )
            })?;
            Box::new(Fixed { offer })
        }
        ("epsilon-greedy", eps) => {
            let eps = match eps {
                Some(e) => e
                    .parse::<f64>()
                    .ok()
                    .filter(|e| (0.0..=1.0).contains(e))
                    .with_context(|| format!("policy '{spec}': epsilon must be in [0, 1]"))?,
                None => 0.1,
            };
            Box::new(EpsilonGreedy::new(eps, env.weights.clone()))
        }
        ("ucb1", None) => Box::new(Ucb1::new(env.weights.clone())),
        ("segment-ts" | "segment-ts-at-once", by) => {
            let segment_by = match by {
                Some(list) => list.split('+').map(|f| f.trim().to_owned()).collect(),
                None => env.default_segment_by.clone(),
            };
            let policy = SegmentTs::new(
                segment_by,
                env.weights.clone(),
                env.prior_strength,
                DEFAULT_SNAPSHOT_TOLERANCE,
            );
            // As the server: pending decisions weigh by the delay model.
            Box::new(if name == "segment-ts" && env.window_ms > 0 {
                policy.with_delayed_feedback(env.window_ms)
            } else {
                policy
            })
        }
        ("linear-ts", opts) => contextual(
            env,
            contextual_config(spec, Likelihood::Linear, opts, env.encoder.dim())?,
            spec,
        )?,
        ("logistic-ts", opts) => contextual(
            env,
            contextual_config(spec, Likelihood::Logistic, opts, env.encoder.dim())?,
            spec,
        )?,
        ("marketer", None) => match env.marketer {
            Some(rule) => Box::new(Marketer {
                rule,
                offers: env.offers.len(),
            }),
            None => bail!("policy 'marketer' needs a scenario with a [[marketer_rule]] list"),
        },
        ("rules", Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("policy '{spec}': cannot read the rules file {path}"))?;
            let ids: Vec<&str> = env.offers.iter().map(String::as_str).collect();
            let rules = Rules::parse(&text)
                .and_then(|r| r.bind(&ids))
                .with_context(|| format!("policy '{spec}': {path}"))?;
            Box::new(rules)
        }
        _ => bail!("unknown policy '{spec}'; known policies:\n{POLICY_HELP}"),
    };
    if env.min_propensity > 0.0 && SERVER_POLICIES.contains(&name) {
        check_min_propensity(env)?;
        return Ok(Box::new(Floored::new(
            policy,
            PropensityFloor::new(env.min_propensity),
        )));
    }
    Ok(policy)
}

/// The policies a campaign runs on the server, which `--min-propensity`
/// floors as the server does (the baselines and rules are left alone, as a
/// control group is).
const SERVER_POLICIES: [&str; 3] = ["segment-ts", "linear-ts", "logistic-ts"];

/// Refuses a floor no set of the offers can give, as the server's campaign
/// validation does.
pub(crate) fn check_min_propensity(env: &PolicyEnv<'_>) -> anyhow::Result<()> {
    let k = env.offers.len() as f64;
    if env.min_propensity * k > 1.0 + 1e-12 {
        bail!(
            "--min-propensity {} x {} offers is over 1: at most {}",
            env.min_propensity,
            env.offers.len(),
            1.0 / k
        );
    }
    Ok(())
}

/// Contextual Thompson sampling with `config`, and the offers' features if
/// `--offer-features` gave them (which act through the learned prior).
fn contextual<'a>(
    env: &PolicyEnv<'a>,
    config: ContextualConfig,
    spec: &str,
) -> anyhow::Result<Box<dyn Policy + 'a>> {
    let mut policy = ContextualTs::new(env.encoder.clone(), config, env.weights.clone());
    // As the server: non-redemptions revealed by the delay model.
    if env.window_ms > 0 {
        policy = policy.with_delayed_feedback(env.window_ms);
    }
    Ok(Box::new(match &env.offer_features {
        Some(_) if !config.adaptive_prior => {
            bail!(
                "policy '{spec}': --offer-features act through the learned prior; drop adaptive-prior=off"
            )
        }
        Some(f) => policy.with_offer_features(f.encoded.clone(), f.columns),
        None => policy,
    }))
}

/// A static rule written by a marketer: no learning.
struct Marketer<'a> {
    rule: &'a Rule<'a>,
    offers: usize,
}

impl Marketer<'_> {
    /// The first offer of the preference order that is a candidate.
    fn pick(f: &Features, candidates: &[usize]) -> usize {
        f.x.iter()
            .map(|&(o, _)| o as usize)
            .find(|o| candidates.contains(o))
            .unwrap_or(candidates[0])
    }
}

impl Policy for Marketer<'_> {
    /// The rule's order of preference over all offers for this context, as
    /// (offer, rank) pairs: what the rule picks, then what it picks without
    /// that offer, and so on.
    fn features(&self, context: &Context) -> Result<Features, PolicyError> {
        let mut left: Vec<usize> = (0..self.offers).collect();
        let mut x = Vec::with_capacity(self.offers);
        while !left.is_empty() {
            let mut o = (self.rule)(context, &left);
            if !left.contains(&o) {
                o = left[0];
            }
            left.retain(|&c| c != o);
            x.push((o as u32, x.len() as f64));
        }
        Ok(Features {
            segment: String::new(),
            x,
            ..Features::default()
        })
    }
    fn choose(&self, f: &Features, candidates: &[usize], _: &mut dyn Rng) -> usize {
        Self::pick(f, candidates)
    }
    fn propensity(&self, f: &Features, candidates: &[usize], offer: usize) -> f64 {
        f64::from(u8::from(Self::pick(f, candidates) == offer))
    }
    fn on_decision(&mut self, _: &Features, _: usize) {}
    fn on_outcome(&mut self, _: &Features, _: usize, _: Outcome) {}
}
