//! The two kinds of world a policy meets in the simulator: a full-feedback
//! dataset replayed row by row, and a simulated loyalty program.

use offer_bandit::{Buckets, Encoder, infer_specs};
use rand::{Rng, RngExt, SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;

use crate::dataset::Dataset;
use crate::run::{Visit, World};
use crate::scenario::{Scenario, SimVisit};

/// Replays a full-feedback dataset: visit i is row `order[i]`; each
/// (row, offer) coin is drawn once per seed; feedback is immediate.
pub(crate) struct ReplayWorld<'a> {
    data: &'a Dataset,
    order: Vec<usize>,
    candidates: Vec<usize>,
    coins: Vec<f64>,
}

impl<'a> ReplayWorld<'a> {
    /// The dataset in file order (or shuffled by `seed`), with coins from `seed`.
    pub(crate) fn new(data: &'a Dataset, seed: u64, shuffle: bool) -> Self {
        let k = data.offers.len();
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_C014);
        let coins = (0..data.rows.len() * k)
            .map(|_| rng.random::<f64>())
            .collect();
        let mut order: Vec<usize> = (0..data.rows.len()).collect();
        if shuffle {
            order.shuffle(&mut rng);
        }
        ReplayWorld {
            data,
            order,
            candidates: (0..k).collect(),
            coins,
        }
    }
}

/// A dataset's rows carry no time: replay assumes this many a day (20,000
/// rows make 20 days), which only forgetting over time sees.
pub(crate) const REPLAY_VISITS_PER_DAY: f64 = 1_000.0;

impl World for ReplayWorld<'_> {
    fn offers(&self) -> usize {
        self.data.offers.len()
    }
    fn window(&self) -> u64 {
        0
    }
    fn visits_per_day(&self) -> f64 {
        REPLAY_VISITS_PER_DAY
    }
    fn visit(&mut self, round: u64) -> Visit<'_> {
        let i = self.order[(round as usize) % self.order.len()];
        let row = &self.data.rows[i];
        let k = self.candidates.len();
        Visit {
            context: &row.context,
            candidates: &self.candidates,
            p: &row.p,
            value: &row.value,
            u: &self.coins[i * k..(i + 1) * k],
            delay: 0,
        }
    }
}

/// Draws `n` uniforms into `buf`.
pub(crate) fn fill_uniform(buf: &mut Vec<f64>, n: usize, rng: &mut dyn Rng) {
    buf.clear();
    buf.extend((0..n).map(|_| rng.random::<f64>()));
}

/// A simulated loyalty program: visits drawn from the scenario's population,
/// redemptions delayed by its delay distribution, expiry at its reward window.
/// Visits and coins come from streams seeded by the seed alone, so every
/// policy meets the same customers and the same luck.
pub(crate) struct ScenarioWorld<'a> {
    scenario: &'a Scenario,
    visits: ChaCha8Rng,
    coins: ChaCha8Rng,
    buf: SimVisit,
    values: Vec<f64>,
    u: Vec<f64>,
    delay: u64,
    rounds_per_day: f64,
}

impl<'a> ScenarioWorld<'a> {
    /// The world of one seed.
    pub(crate) fn new(scenario: &'a Scenario, seed: u64) -> Self {
        ScenarioWorld {
            scenario,
            visits: ChaCha8Rng::seed_from_u64(seed ^ 0x0B5E_55ED),
            coins: ChaCha8Rng::seed_from_u64(seed ^ 0xC0_1115),
            buf: SimVisit::new(),
            values: scenario.offers().iter().map(|o| o.net_value()).collect(),
            u: Vec::new(),
            delay: 0,
            rounds_per_day: scenario.visits_per_day(),
        }
    }

    /// A feature encoding inferred from 5,000 visits of the population, with
    /// `bins` quantile buckets per number.
    pub(crate) fn encoder(
        scenario: &Scenario,
        seed: u64,
        (bins, buckets): (usize, Buckets),
    ) -> anyhow::Result<Encoder> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xFEA7);
        let mut buf = SimVisit::new();
        let contexts: Vec<_> = (0..5_000u64)
            .map(|i| {
                scenario.draw_visit(i % scenario.rounds().max(1), &mut rng, &mut buf);
                buf.context.clone()
            })
            .collect();
        Ok(Encoder::new(infer_specs(&contexts, bins, buckets, 32), 8)?)
    }

    /// Mean p of each offer over `n` visits spread over the horizon (offers
    /// count only while available), for the hindsight "fixed best offer".
    pub(crate) fn offer_means(scenario: &Scenario, n: u64, seed: u64) -> Vec<f64> {
        let k = scenario.offers().len();
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x3EA5);
        let mut sums = vec![0.0; k];
        let mut buf = SimVisit::new();
        let step = (scenario.rounds() / n.max(1)).max(1);
        let mut count = 0.0;
        for i in 0..n {
            scenario.draw_visit((i * step) % scenario.rounds().max(1), &mut rng, &mut buf);
            for (s, p) in sums.iter_mut().zip(&buf.p) {
                *s += p;
            }
            count += 1.0;
        }
        sums.iter().map(|s| s / count).collect()
    }
}

impl World for ScenarioWorld<'_> {
    fn offers(&self) -> usize {
        self.values.len()
    }
    fn visits_per_day(&self) -> f64 {
        self.rounds_per_day
    }
    fn window(&self) -> u64 {
        (self.scenario.reward_window_days() * self.rounds_per_day)
            .round()
            .max(1.0) as u64
    }
    fn visit(&mut self, round: u64) -> Visit<'_> {
        self.scenario
            .draw_visit(round, &mut self.visits, &mut self.buf);
        fill_uniform(&mut self.u, self.values.len(), &mut self.coins);
        let days = self.scenario.draw_delay_days(&mut self.coins);
        self.delay = (days * self.rounds_per_day).round().max(1.0) as u64;
        Visit {
            context: &self.buf.context,
            candidates: &self.buf.candidates,
            p: &self.buf.p,
            value: &self.values,
            u: &self.u,
            delay: self.delay,
        }
    }
}
