//! Issue 18, item 5, on the `traffic-shift` scenario: when an offer's
//! traffic quadruples, counting each decision as a non-redemption at once
//! makes it look worse for a delay period; segment-ts's delay model does
//! not, nor do the contextual policies' revealed non-redemptions. The
//! policies are the library's, driven by the simulator's loop.

use offer_bandit::{
    Context, FeatureValue,
    policy::{
        Policy,
        contextual::{ContextualConfig, GaussianPosterior, Likelihood},
        contextual_ts::ContextualTs,
        forgetting::DAY_MS,
        segment::{DEFAULT_SNAPSHOT_TOLERANCE, SegmentTs},
    },
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::{
    run::{World, run},
    scenario::Scenario,
    world::ScenarioWorld,
};

/// Offer `pastry`'s (true rate 0.10) posterior mean, campaign-wide, after
/// `days` (its traffic quadruples on day 6).
fn pastry_estimate(delayed: bool, seed: u64, days: f64) -> anyhow::Result<f64> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/traffic-shift.toml");
    let scenario = Scenario::load(&path)?;
    let mut world = ScenarioWorld::new(&scenario, seed);
    let rounds = (days * world.visits_per_day()) as u64;
    let mut policy = SegmentTs::new(
        Vec::new(),
        vec![1.0; world.offers()],
        10.0,
        DEFAULT_SNAPSHOT_TOLERANCE,
    );
    if delayed {
        policy = policy.with_delayed_feedback((scenario.reward_window_days() * DAY_MS) as i64);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    run(&mut policy, &mut world, rounds, &mut rng, "store", &|_| {})?;
    let (a, b) = policy.model().posterior("", 0, 0.0);
    Ok(a / (a + b))
}

/// Each policy's estimate half a day (the mean delay) after the shift
/// against its own just before it: counted at once, the offer whose traffic
/// quadrupled drops by about a tenth; weighed by the delay model, it does
/// not move. (Both sit a few percent under 0.10 before the shift: the
/// downward bias of adaptively sampled means, Nie et al. 2018; counted at
/// once, also the steady share of decisions still pending.)
#[test]
fn an_offer_whose_traffic_quadruples_is_not_underestimated() -> anyhow::Result<()> {
    let seeds = 1..=4u64;
    let mean = |delayed: bool, days: f64| -> anyhow::Result<f64> {
        let mut sum = 0.0;
        for seed in seeds.clone() {
            sum += pastry_estimate(delayed, seed, days)?;
        }
        Ok(sum / seeds.clone().count() as f64)
    };
    let (at_once_before, at_once_after) = (mean(false, 5.9)?, mean(false, 6.5)?);
    let (delayed_before, delayed_after) = (mean(true, 5.9)?, mean(true, 6.5)?);
    println!(
        "pastry (true 0.100) before and half a day after the shift: \
         at once {at_once_before:.4} -> {at_once_after:.4}, \
         delayed {delayed_before:.4} -> {delayed_after:.4}"
    );
    // Measured: at once 0.0844 -> 0.0751, delayed 0.0933 -> 0.0938.
    assert!(
        at_once_after < 0.92 * at_once_before,
        "counted at once: {at_once_before} -> {at_once_after}"
    );
    assert!(
        (delayed_after / delayed_before - 1.0).abs() < 0.02,
        "delayed feedback: {delayed_before} -> {delayed_after}"
    );
    assert!(delayed_after > at_once_after + 0.01);
    Ok(())
}

/// A contextual policy's estimate of `pastry`'s rate (true 0.10) after
/// `days`: its predicted rate averaged over the two stores.
fn contextual_pastry_estimate(likelihood: Likelihood, seed: u64, days: f64) -> anyhow::Result<f64> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/traffic-shift.toml");
    let scenario = Scenario::load(&path)?;
    let mut world = ScenarioWorld::new(&scenario, seed);
    let rounds = (days * world.visits_per_day()) as u64;
    let encoder = ScenarioWorld::encoder(&scenario, seed, (6, offer_bandit::Buckets::Steps))?;
    let mut policy = ContextualTs::new(
        encoder,
        ContextualConfig::new(likelihood),
        vec![1.0; world.offers()],
    )
    .with_delayed_feedback((scenario.reward_window_days() * DAY_MS) as i64);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    run(&mut policy, &mut world, rounds, &mut rng, "store", &|_| {})?;
    let mut sum = 0.0;
    for store in ["downtown", "suburb"] {
        let mut context = Context::new();
        context.insert("store".into(), FeatureValue::Category(store.into()));
        let x = policy.features(&context)?.x;
        let (mu, _) = policy.models()[0].predictive(&x);
        sum += GaussianPosterior::rate(mu, likelihood);
    }
    Ok(sum / 2.0)
}

/// The contextual policies learn each decision once, its non-redemption
/// revealed at an age drawn from the delay model (or at its window's
/// close): half a day after the shift the offer whose traffic quadrupled is
/// not estimated lower than just before (measured: logistic-ts 0.0973 ->
/// 0.0972, linear-ts 0.0905 -> 0.0979). Under decision-time negatives (the
/// scheme before, run on commit 1b11579) it failed: logistic-ts 0.0887 ->
/// 0.0733 (-17%), linear-ts 0.0893 -> 0.0755 (-15%).
#[test]
fn a_contextual_offer_whose_traffic_quadruples_is_not_underestimated() -> anyhow::Result<()> {
    for likelihood in [Likelihood::Logistic, Likelihood::Linear] {
        let seeds = 1..=4u64;
        let mean = |days: f64| -> anyhow::Result<f64> {
            let mut sum = 0.0;
            for seed in seeds.clone() {
                sum += contextual_pastry_estimate(likelihood, seed, days)?;
            }
            Ok(sum / seeds.clone().count() as f64)
        };
        let (before, after) = (mean(5.9)?, mean(6.5)?);
        println!("{likelihood:?}: pastry (true 0.100) {before:.4} -> {after:.4}");
        // Not lower after the shift (linear-ts, shrunk towards its prior
        // on a quarter of the traffic before, gains on its fourfold data).
        assert!(after > 0.98 * before, "{likelihood:?}: {before} -> {after}");
        assert!((after - 0.1).abs() < 0.01, "{likelihood:?}: {after}");
    }
    Ok(())
}
