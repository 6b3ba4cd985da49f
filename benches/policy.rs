//! Policy hot paths: one decision (choose + propensity) and one posterior
//! update, for segment-ts and contextual TS (K = 12 offers, d = 64); and
//! the pace of a campaign's day that every budgeted SelectOffer computes.
//! Run: `cargo bench --bench policy`.

use criterion::{Criterion, criterion_group, criterion_main};
use offer_bandit::{
    Context, Encoder, FeatureSpec, FeatureValue,
    policy::{
        Features, Outcome, Policy,
        contextual::{ContextualConfig, GaussianPosterior, Likelihood},
        contextual_ts::ContextualTs,
        segment::{DEFAULT_SNAPSHOT_TOLERANCE, SegmentTs},
        shared_prior::SharedPrior,
    },
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;

const OFFERS: usize = 12;

/// 64 encoded dimensions: intercept + 6 categoricals of 7 values (+ other)
/// + 2 numerics with 6 bucket edges (scaled + 6 steps each) + 1 flag = 64.
fn encoder() -> Encoder {
    let mut specs: Vec<FeatureSpec> = (0..6)
        .map(|i| FeatureSpec::Categorical {
            name: format!("c{i}"),
            values: (0..7).map(|v| format!("v{v}")).collect(),
        })
        .collect();
    specs.push(FeatureSpec::Numeric {
        name: "hour".into(),
        min: 0.0,
        max: 24.0,
        bins: vec![6.0, 9.0, 11.0, 14.0, 18.0, 22.0],
        buckets: None,
    });
    specs.push(FeatureSpec::Numeric {
        name: "basket".into(),
        min: 0.0,
        max: 100.0,
        bins: vec![10.0, 20.0, 30.0, 40.0, 60.0, 80.0],
        buckets: None,
    });
    specs.push(FeatureSpec::Flag {
        name: "member".into(),
    });
    let e = Encoder::new(specs, 0).expect("valid specs");
    assert_eq!(e.dim(), 64);
    e
}

fn context(rng: &mut ChaCha8Rng) -> Context {
    let mut c = Context::new();
    for i in 0..6 {
        c.insert(
            format!("c{i}"),
            FeatureValue::Category(format!("v{}", rng.random_range(0..8))),
        );
    }
    c.insert(
        "hour".into(),
        FeatureValue::Number(rng.random_range(0.0..24.0)),
    );
    c.insert(
        "basket".into(),
        FeatureValue::Number(rng.random_range(0.0..100.0)),
    );
    c.insert("member".into(), FeatureValue::Flag(rng.random()));
    c
}

/// A policy after `n` decisions with ~5-15% redemption rates, and sample features.
fn trained(policy: &mut dyn Policy, n: usize) -> Vec<Features> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let candidates: Vec<usize> = (0..OFFERS).collect();
    let mut samples = Vec::new();
    for i in 0..n {
        let f = policy.features(&context(&mut rng)).expect("encodes");
        let o = policy.choose(&f, &candidates, &mut rng);
        policy.on_decision(&f, o);
        let p = 0.05 + 0.01 * o as f64;
        let outcome = if rng.random::<f64>() < p {
            Outcome::Redeemed { value: 1.0 }
        } else {
            Outcome::Expired
        };
        policy.on_outcome(&f, o, outcome);
        if i % 97 == 0 {
            samples.push(f);
        }
    }
    samples
}

fn decide(c: &mut Criterion, name: &str, policy: &mut dyn Policy) {
    let samples = trained(policy, 20_000);
    let candidates: Vec<usize> = (0..OFFERS).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut i = 0;
    c.bench_function(&format!("{name}/select+propensity"), |b| {
        b.iter(|| {
            i = (i + 1) % samples.len();
            black_box(policy.choose_with_propensity(&samples[i], &candidates, &mut rng))
        })
    });
    c.bench_function(&format!("{name}/select"), |b| {
        b.iter(|| {
            i = (i + 1) % samples.len();
            black_box(policy.choose(&samples[i], &candidates, &mut rng))
        })
    });
    let mut rng2 = ChaCha8Rng::seed_from_u64(11);
    let ctxs: Vec<Context> = (0..512).map(|_| context(&mut rng2)).collect();
    c.bench_function(&format!("{name}/features"), |b| {
        b.iter(|| {
            i = (i + 1) % ctxs.len();
            black_box(policy.features(&ctxs[i]).expect("encodes"))
        })
    });
    // One decision's learning: its decision, then its outcome (redeemed one
    // time in ten, at random). The contextual policies learn at the
    // outcome; timing the decision alone would time nothing.
    let mut rng3 = ChaCha8Rng::seed_from_u64(13);
    c.bench_function(&format!("{name}/update"), |b| {
        b.iter(|| {
            i = (i + 1) % samples.len();
            let offer = i % OFFERS;
            policy.on_decision(&samples[i], offer);
            let outcome = if rng3.random::<f64>() < 0.1 {
                Outcome::Redeemed { value: 1.0 }
            } else {
                Outcome::Expired
            };
            policy.on_outcome(&samples[i], offer, outcome)
        })
    });
}

fn benches(c: &mut Criterion) {
    let weights = vec![1.0; OFFERS];
    let mut logistic = ContextualTs::new(
        encoder(),
        ContextualConfig::new(Likelihood::Logistic),
        weights.clone(),
    );
    decide(c, "logistic-ts(K=12,d=64)", &mut logistic);
    let mut linear = ContextualTs::new(
        encoder(),
        ContextualConfig::new(Likelihood::Linear),
        weights.clone(),
    );
    decide(c, "linear-ts(K=12,d=64)", &mut linear);
    // The same two without the learned prior, for the ratio in one run.
    for likelihood in [Likelihood::Logistic, Likelihood::Linear] {
        let mut config = ContextualConfig::new(likelihood);
        config.adaptive_prior = false;
        let mut fixed = ContextualTs::new(encoder(), config, weights.clone());
        let name = match likelihood {
            Likelihood::Logistic => "logistic-ts-fixed-prior(K=12,d=64)",
            Likelihood::Linear => "linear-ts-fixed-prior(K=12,d=64)",
        };
        decide(c, name, &mut fixed);
    }
    let mut segment = SegmentTs::new(
        vec!["c0".into(), "c1".into()],
        weights,
        10.0,
        DEFAULT_SNAPSHOT_TOLERANCE,
    );
    decide(c, "segment-ts(K=12,64 segments)", &mut segment);
}

/// One re-estimation of a campaign's learned prior: K = 12 posteriors of
/// d = 64 re-based (O(K d^3)), as the writer does after 256 learning events
/// and then every max(256, events / 8).
fn reestimate(c: &mut Criterion) {
    let config = ContextualConfig::new(Likelihood::Logistic);
    let enc = encoder();
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let mut models: Vec<GaussianPosterior> = (0..OFFERS)
        .map(|_| GaussianPosterior::prior(enc.dim(), &config))
        .collect();
    for i in 0..4_000 {
        let f = enc.encode(&context(&mut rng)).expect("encodes");
        // Decision-time learning, as the server does.
        let m = &mut models[i % OFFERS];
        m.learn(&f, false, &config, None);
        if rng.random::<f64>() < 0.1 {
            m.learn(&f, true, &config, None);
        }
    }
    let mut prior = SharedPrior::new(enc.dim(), 0, &config);
    // Due: the variances are re-estimated, not only the intercept's mean.
    prior.events = prior.next_estimate;
    c.bench_function("logistic-ts(K=12,d=64)/reestimate-prior", |b| {
        b.iter(|| {
            let mut p = prior.clone();
            let mut m = models.clone();
            p.reestimate(&enc, &mut m, &[], &config);
            black_box(m)
        })
    });
}

/// Where a New York campaign's day stands, flat and with a learned
/// traffic profile: what SelectOffer and the writer compute for an offer
/// with a daily budget.
fn pace(c: &mut Criterion) {
    use offer_bandit::budget::{DAY_MS, HOUR_MS, LocalTime, Pace, TrafficProfile};
    let Ok(ny) = LocalTime::parse("America/New_York") else {
        return;
    };
    let t0 = 1_768_453_200_000; // 2026-01-15 05:00 UTC, midnight in New York
    let mut learned = TrafficProfile::new(ny.name());
    for d in 0..5 {
        for h in 0..24 {
            learned.count(t0 + d * DAY_MS + h * HOUR_MS, &ny);
        }
    }
    let now = t0 + 5 * DAY_MS + 14 * HOUR_MS;
    for (name, profile) in [
        ("pace/new-york-flat", TrafficProfile::new(ny.name())),
        ("pace/new-york-learned", learned),
    ] {
        c.bench_function(name, |b| {
            b.iter(|| black_box(Pace::at(black_box(now), &ny, &profile)))
        });
    }
}

criterion_group!(policy, benches, reestimate, pace);
criterion_main!(policy);
