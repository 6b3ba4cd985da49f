//! Issue 18, item 5, on the `traffic-shift` scenario: when an offer's
//! traffic quadruples, counting each decision as a non-redemption at once
//! makes it look worse for a delay period; segment-ts's delay model does
//! not. The policy is the library's, driven by the simulator's loop.

use offer_bandit::policy::{
    forgetting::DAY_MS,
    segment::{DEFAULT_SNAPSHOT_TOLERANCE, SegmentTs},
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::{
    run::{World, run},
    scenario::Scenario,
    world::ScenarioWorld,
};

/// Offer `pastry`'s (true rate 0.10) posterior mean, campaign-wide, half a
/// day (the mean delay) after its traffic quadrupled on day 6.
fn pastry_estimate(delayed: bool, seed: u64) -> anyhow::Result<f64> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/traffic-shift.toml");
    let scenario = Scenario::load(&path)?;
    let mut world = ScenarioWorld::new(&scenario, seed);
    let rounds = (6.5 * world.visits_per_day()) as u64;
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

#[test]
fn an_offer_whose_traffic_quadruples_is_not_underestimated() -> anyhow::Result<()> {
    let seeds = 1..=4u64;
    let mean = |delayed: bool| -> anyhow::Result<f64> {
        let mut sum = 0.0;
        for seed in seeds.clone() {
            sum += pastry_estimate(delayed, seed)?;
        }
        Ok(sum / seeds.clone().count() as f64)
    };
    let (at_once, delayed) = (mean(false)?, mean(true)?);
    println!(
        "pastry (true 0.100) half a day after the shift: at once {at_once:.4}, delayed {delayed:.4}"
    );
    assert!(at_once < 0.088, "counted at once: {at_once}");
    assert!(
        (delayed - 0.10).abs() < 0.006,
        "delayed feedback: {delayed}"
    );
    Ok(())
}
