//! The decision/feedback loop of one (policy, seed) run, the server's loop
//! without the network: decide, keep the decision pending, deliver its
//! redemption after a delay or its expiry at the end of the reward window.

use std::{cmp::Ordering, collections::BinaryHeap, collections::HashMap, time::Instant};

use offer_bandit::{
    Context, FeatureValue,
    policy::{Features, Outcome, Policy},
};
use rand::Rng;

/// One visit as the loop sees it.
pub(crate) struct Visit<'a> {
    /// What the policy sees.
    pub(crate) context: &'a Context,
    /// Offers available at this visit (non-empty, sorted).
    pub(crate) candidates: &'a [usize],
    /// True redemption probability of every offer.
    pub(crate) p: &'a [f64],
    /// Net value of every offer if redeemed.
    pub(crate) value: &'a [f64],
    /// Coins drawn by the world independently of the policy, so that every
    /// policy faces the same ones: offer k is redeemed when `u[k] < p[k]`...
    pub(crate) u: &'a [f64],
    /// ...after this many rounds.
    pub(crate) delay: u64,
}

/// A source of visits: a simulated population or a full-feedback dataset.
pub(crate) trait World {
    /// Number of offers (the length of `p` and `value`).
    fn offers(&self) -> usize;
    /// Rounds after which an unredeemed decision expires; 0 means feedback
    /// is immediate (no delays).
    fn window(&self) -> u64;
    /// The visit at `round` (rounds are asked for in increasing order).
    fn visit(&mut self, round: u64) -> Visit<'_>;
    /// Visits per day of event time, which policies that forget over time
    /// see ([`Policy::advance_clock`]).
    fn visits_per_day(&self) -> f64;
}

/// The event time of a round: day 0 starts at the Unix epoch.
pub(crate) fn round_ms(round: u64, visits_per_day: f64) -> i64 {
    (round as f64 / visits_per_day * offer_bandit::policy::forgetting::DAY_MS) as i64
}

/// Totals of one run.
#[derive(Debug, Clone, Default)]
pub(crate) struct SeedResult {
    pub(crate) rounds: u64,
    /// Redemptions that happened (within the window).
    pub(crate) redemptions: f64,
    /// Net value realized.
    pub(crate) value: f64,
    /// Sum of p of the chosen offers.
    pub(crate) expected: f64,
    /// Sum of p x value of the chosen offers.
    pub(crate) expected_value: f64,
    /// Sum of the best p.
    pub(crate) oracle: f64,
    /// Sum of the best p x value.
    pub(crate) oracle_value: f64,
    /// Sum of the mean p over candidates.
    pub(crate) random: f64,
    /// Seconds spent inside the policy (features, choose, learn).
    pub(crate) policy_seconds: f64,
    /// (round, cumulative regret, window expected reward, window oracle reward).
    pub(crate) curve: Vec<(u64, f64, f64, f64)>,
    /// Segment value -> (choices per offer, oracle-best per offer), second half of the run.
    pub(crate) shares: HashMap<String, (Vec<u64>, Vec<u64>)>,
}

/// A decision whose outcome is due at round `due`, with what its decider
/// keeps to deliver it.
struct Pending<T> {
    due: u64,
    seq: u64,
    ticket: T,
    offer: usize,
    outcome: Outcome,
}

impl<T> PartialEq for Pending<T> {
    fn eq(&self, o: &Self) -> bool {
        (self.due, self.seq) == (o.due, o.seq)
    }
}
impl<T> Eq for Pending<T> {}
impl<T> PartialOrd for Pending<T> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<T> Ord for Pending<T> {
    // Reversed: BinaryHeap is a max-heap and we want the earliest first.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.due, o.seq).cmp(&(self.due, self.seq))
    }
}

/// What makes a run's decisions and learns from their outcomes: a library
/// policy driven directly, or the library's engine (see `engine_run`).
pub(crate) trait Decider {
    /// What a pending decision keeps to deliver its outcome.
    type Ticket;
    /// Time moves to `round`, at event time `at_ms` (ms since day 0; see
    /// [`round_ms`]), before its due outcomes are delivered.
    fn at_round(&mut self, round: u64, at_ms: i64) -> anyhow::Result<()>;
    /// Chooses one of the visit's candidates; the decision is pending.
    fn decide(
        &mut self,
        visit: &Visit<'_>,
        rng: &mut dyn Rng,
    ) -> anyhow::Result<(usize, Self::Ticket)>;
    /// A pending decision ended.
    fn outcome(
        &mut self,
        ticket: Self::Ticket,
        offer: usize,
        outcome: Outcome,
    ) -> anyhow::Result<()>;
}

/// A library policy, driven through its hooks. With `learn_every` > 1 it
/// learns its decisions in batches, as the server's writer does (it
/// collects answered decisions every `--learn-interval`: a batch is the
/// decisions of one interval): up to `learn_every - 1` decisions are made
/// before the ones before them are learned. A redemption is learned after
/// every decision made before it, as the server's writer, woken by it,
/// takes the decisions queued ahead of it first; so is an expiry of a
/// decision not learned yet (the server's sweep takes the queue first too).
struct PolicyDecider<'p> {
    policy: &'p mut dyn Policy,
    learn_every: u64,
    /// Decisions made and not yet learned, in order.
    unlearned: Vec<(Features, usize)>,
    /// Decisions made so far.
    made: u64,
}

impl PolicyDecider<'_> {
    fn learn_decisions(&mut self) {
        for (features, offer) in self.unlearned.drain(..) {
            self.policy.on_decision(&features, offer);
        }
    }

    /// Whether decision `number` is still waiting to be learned.
    fn unlearned(&self, number: u64) -> bool {
        number + self.unlearned.len() as u64 >= self.made
    }
}

impl Decider for PolicyDecider<'_> {
    /// The decision's features and its number.
    type Ticket = (Features, u64);
    fn at_round(&mut self, round: u64, at_ms: i64) -> anyhow::Result<()> {
        if round.is_multiple_of(self.learn_every) {
            self.learn_decisions();
        }
        self.policy.advance_clock(at_ms);
        Ok(())
    }
    fn decide(
        &mut self,
        visit: &Visit<'_>,
        rng: &mut dyn Rng,
    ) -> anyhow::Result<(usize, (Features, u64))> {
        let features = self.policy.features(visit.context)?;
        let offer = self.policy.choose(&features, visit.candidates, rng);
        let number = self.made;
        self.made += 1;
        if self.learn_every <= 1 {
            self.policy.on_decision(&features, offer);
        } else {
            self.unlearned.push((features.clone(), offer));
        }
        Ok((offer, (features, number)))
    }
    fn outcome(
        &mut self,
        (features, number): (Features, u64),
        offer: usize,
        outcome: Outcome,
    ) -> anyhow::Result<()> {
        if matches!(outcome, Outcome::Redeemed { .. }) || self.unlearned(number) {
            self.learn_decisions();
        }
        self.policy.on_outcome(&features, offer, outcome);
        Ok(())
    }
}

/// The label of a context's segment for the share report.
pub(crate) fn segment_label(context: &Context, feature: &str) -> String {
    match context.get(feature) {
        Some(FeatureValue::Category(c)) => c.clone(),
        Some(FeatureValue::Flag(b)) => b.to_string(),
        Some(FeatureValue::Number(x)) => format!("{x}"),
        None => "(missing)".to_owned(),
    }
}

fn argmax(candidates: &[usize], score: impl Fn(usize) -> f64) -> (usize, f64) {
    let mut best = (candidates[0], f64::NEG_INFINITY);
    for &c in candidates {
        let s = score(c);
        if s > best.1 {
            best = (c, s);
        }
    }
    best
}

/// Runs `rounds` decisions of `policy` against `world`. `progress` is called
/// with the number of rounds done since its previous call.
#[cfg(test)]
pub(crate) fn run(
    policy: &mut dyn Policy,
    world: &mut dyn World,
    rounds: u64,
    rng: &mut dyn Rng,
    segment_feature: &str,
    progress: &(dyn Fn(u64) + Sync),
) -> anyhow::Result<SeedResult> {
    run_batched(policy, world, rounds, rng, segment_feature, 1, progress)
}

/// [`run`] learning decisions in batches of `learn_every` (see
/// [`PolicyDecider`]).
pub(crate) fn run_batched(
    policy: &mut dyn Policy,
    world: &mut dyn World,
    rounds: u64,
    rng: &mut dyn Rng,
    segment_feature: &str,
    learn_every: u64,
    progress: &(dyn Fn(u64) + Sync),
) -> anyhow::Result<SeedResult> {
    let mut decider = PolicyDecider {
        policy,
        learn_every: learn_every.max(1),
        unlearned: Vec::new(),
        made: 0,
    };
    run_with(&mut decider, world, rounds, rng, segment_feature, progress)
}

/// [`run`] with any [`Decider`].
pub(crate) fn run_with<D: Decider>(
    decider: &mut D,
    world: &mut dyn World,
    rounds: u64,
    rng: &mut dyn Rng,
    segment_feature: &str,
    progress: &(dyn Fn(u64) + Sync),
) -> anyhow::Result<SeedResult> {
    let offers = world.offers();
    let window = world.window();
    let step = (rounds / 200).max(1);
    let mut r = SeedResult {
        rounds,
        ..SeedResult::default()
    };
    let mut queue: BinaryHeap<Pending<D::Ticket>> = BinaryHeap::new();
    let (mut win_expected, mut win_oracle, mut regret) = (0.0, 0.0, 0.0);
    let mut since_progress = 0;
    let visits_per_day = world.visits_per_day();
    for round in 0..rounds {
        let started = Instant::now();
        decider.at_round(round, round_ms(round, visits_per_day))?;
        while queue.peek().is_some_and(|p| p.due <= round) {
            if let Some(p) = queue.pop() {
                decider.outcome(p.ticket, p.offer, p.outcome)?;
            }
        }
        let mut policy_seconds = started.elapsed().as_secs_f64();
        let visit = world.visit(round);
        let started = Instant::now();
        let (offer, ticket) = decider.decide(&visit, rng)?;
        let redeemed = visit.u[offer] < visit.p[offer] && (window == 0 || visit.delay <= window);
        let outcome = if redeemed {
            Outcome::Redeemed {
                value: visit.value[offer],
            }
        } else {
            Outcome::Expired
        };
        if window == 0 {
            decider.outcome(ticket, offer, outcome)?;
        } else {
            let due = round + if redeemed { visit.delay.max(1) } else { window };
            queue.push(Pending {
                due,
                seq: round,
                ticket,
                offer,
                outcome,
            });
        }
        policy_seconds += started.elapsed().as_secs_f64();
        r.policy_seconds += policy_seconds;

        // Bookkeeping, outside the timed part.
        let (best, best_p) = argmax(visit.candidates, |c| visit.p[c]);
        let (_, best_pv) = argmax(visit.candidates, |c| visit.p[c] * visit.value[c]);
        let p = visit.p[offer];
        r.expected += p;
        r.expected_value += p * visit.value[offer];
        r.oracle += best_p;
        r.oracle_value += best_pv;
        r.random += visit.candidates.iter().map(|&c| visit.p[c]).sum::<f64>()
            / visit.candidates.len() as f64;
        if redeemed {
            r.redemptions += 1.0;
            r.value += visit.value[offer];
        }
        regret += best_p - p;
        win_expected += p;
        win_oracle += best_p;
        if round >= rounds / 2 {
            let label = segment_label(visit.context, segment_feature);
            let entry = r
                .shares
                .entry(label)
                .or_insert_with(|| (vec![0; offers], vec![0; offers]));
            entry.0[offer] += 1;
            entry.1[best] += 1;
        }
        if (round + 1) % step == 0 || round + 1 == rounds {
            let n = ((round % step) + 1) as f64;
            r.curve
                .push((round + 1, regret, win_expected / n, win_oracle / n));
            win_expected = 0.0;
            win_oracle = 0.0;
        }
        since_progress += 1;
        if since_progress == 4096 {
            progress(since_progress);
            since_progress = 0;
        }
    }
    progress(since_progress);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use offer_bandit::policy::PolicyError;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    /// Records, at each choice, how many decisions it has learned.
    #[derive(Default)]
    struct Recorder {
        learned: u64,
        seen_at_choice: std::cell::RefCell<Vec<u64>>,
        outcomes: Vec<(u64, bool)>,
    }

    impl Policy for Recorder {
        fn features(&self, _: &Context) -> Result<Features, PolicyError> {
            Ok(Features::default())
        }
        fn choose(&self, _: &Features, candidates: &[usize], _: &mut dyn Rng) -> usize {
            self.seen_at_choice.borrow_mut().push(self.learned);
            candidates[0]
        }
        fn propensity(&self, _: &Features, _: &[usize], _: usize) -> f64 {
            1.0
        }
        fn on_decision(&mut self, _: &Features, _: usize) {
            self.learned += 1;
        }
        fn on_outcome(&mut self, _: &Features, _: usize, outcome: Outcome) {
            self.outcomes
                .push((self.learned, matches!(outcome, Outcome::Redeemed { .. })));
        }
    }

    /// Every visit redeems offer 0 after `delay` rounds; the window is 50.
    struct Fixed {
        context: Context,
        delay: u64,
        p: f64,
    }

    impl World for Fixed {
        fn offers(&self) -> usize {
            1
        }
        fn window(&self) -> u64 {
            50
        }
        fn visit(&mut self, _: u64) -> Visit<'_> {
            Visit {
                context: &self.context,
                candidates: &[0],
                p: std::slice::from_ref(&self.p),
                value: &[1.0],
                u: &[0.5],
                delay: self.delay,
            }
        }
        fn visits_per_day(&self) -> f64 {
            1000.0
        }
    }

    fn run_recorder(learn_every: u64, delay: u64, p: f64) -> anyhow::Result<Recorder> {
        let mut policy = Recorder::default();
        let mut world = Fixed {
            context: Context::new(),
            delay,
            p,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        run_batched(
            &mut policy,
            &mut world,
            300,
            &mut rng,
            "x",
            learn_every,
            &|_| {},
        )?;
        Ok(policy)
    }

    #[test]
    fn decisions_are_learned_in_batches_and_before_their_outcomes() -> anyhow::Result<()> {
        // Nothing redeems (p 0): decisions are learned every 10 rounds.
        let r = run_recorder(10, 5, 0.0)?;
        let seen = r.seen_at_choice.borrow();
        for (round, &learned) in seen.iter().enumerate() {
            assert_eq!(learned, round as u64 / 10 * 10, "round {round}");
        }
        // Expiries come 50 rounds after their decision, learned by then.
        assert!(r.outcomes.iter().all(|&(_, redeemed)| !redeemed));
        // Batches longer than the window: an expiry takes the queue first
        // when its own decision is still in it.
        let r = run_recorder(100, 5, 0.0)?;
        assert!(r.outcomes.len() > 200);
        for (j, &(learned, _)) in r.outcomes.iter().enumerate() {
            assert!(learned > j as u64, "expiry {j} before its decision");
        }
        // At once: each decision is learned before the next choice.
        let r = run_recorder(1, 5, 0.0)?;
        let seen = r.seen_at_choice.borrow();
        assert!(seen.iter().enumerate().all(|(i, &l)| l == i as u64));
        Ok(())
    }

    #[test]
    fn a_redemption_is_learned_after_every_decision_before_it() -> anyhow::Result<()> {
        // Every decision redeems `delay` rounds later. The i-th redemption
        // (of decision i, made at round i) arrives at round i + delay,
        // after decisions 0..i + delay were made: the redemption takes the
        // queue first, as the server's writer does, whether its own
        // decision was learned already (a delay longer than a batch) or
        // not (shorter).
        for (learn_every, delay) in [(10, 15), (100, 3)] {
            let r = run_recorder(learn_every, delay, 1.0)?;
            assert!(r.outcomes.len() > 200);
            for (i, &(learned, redeemed)) in r.outcomes.iter().enumerate() {
                assert!(redeemed);
                assert_eq!(
                    learned,
                    i as u64 + delay,
                    "batches of {learn_every}, delay {delay}: redemption {i}"
                );
            }
        }
        Ok(())
    }
}
