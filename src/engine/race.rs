//! The propensity after a budget race: when the writer refuses the drawn
//! offer (its budget spent by a racing decision) and the select path draws
//! again without it, the offer logged was reached by any of the paths
//! through refused offers, and its propensity is the sum over them.

use super::*;

/// Most refused offers whose paths are summed exactly (2^n subsets, each a
/// few win probabilities); beyond them, the later refusals are treated as
/// never having been candidates. Races refusing more than a couple of offers
/// in one request are not expected.
const MAX_EXACT_REFUSALS: usize = 8;

/// P(the select loop ends at `chosen`), starting from the candidate set
/// `all`, when every offer of `refused` is refused whenever drawn and the
/// draw repeats without it: P(c | S) = win(S, c) + sum over refused r in S
/// of win(S, r) x P(c | S \ {r}). `win(set, offer)` is one draw's
/// probability of `offer` among `set`. Offers are campaign indices.
pub(super) fn propensity_after_refusals(
    all: &[usize],
    refused: &[usize],
    chosen: usize,
    mut win: impl FnMut(&[usize], usize) -> f64,
) -> f64 {
    let mut refused: Vec<usize> = refused
        .iter()
        .copied()
        .filter(|r| all.contains(r) && *r != chosen)
        .collect();
    refused.dedup();
    let (exact, dropped) = refused.split_at(refused.len().min(MAX_EXACT_REFUSALS));
    let base: Vec<usize> = all
        .iter()
        .copied()
        .filter(|o| !dropped.contains(o))
        .collect();
    // memo[mask]: P(chosen | base minus the refused offers in `mask`).
    let mut memo: Vec<Option<f64>> = vec![None; 1 << exact.len()];
    fn solve(
        mask: usize,
        base: &[usize],
        exact: &[usize],
        chosen: usize,
        memo: &mut [Option<f64>],
        win: &mut dyn FnMut(&[usize], usize) -> f64,
    ) -> f64 {
        if let Some(p) = memo.get(mask).copied().flatten() {
            return p;
        }
        let set: Vec<usize> = base
            .iter()
            .copied()
            .filter(|o| {
                exact
                    .iter()
                    .position(|r| r == o)
                    .is_none_or(|k| mask & (1 << k) == 0)
            })
            .collect();
        let mut p = win(&set, chosen);
        for (k, &r) in exact.iter().enumerate() {
            if mask & (1 << k) != 0 {
                continue;
            }
            let pr = win(&set, r);
            if pr > 0.0 {
                p += pr * solve(mask | (1 << k), base, exact, chosen, memo, win);
            }
        }
        let p = p.clamp(0.0, 1.0);
        if let Some(slot) = memo.get_mut(mask) {
            *slot = Some(p);
        }
        p
    }
    solve(0, &base, exact, chosen, &mut memo, &mut win)
}

/// One draw of a request's arm, as the select path makes it: what the
/// probability of an offer among a candidate set depends on.
pub(super) struct Draw<'a> {
    pub campaign: &'a Campaign,
    /// What the request's draw sampled.
    pub sample: Sample<'a>,
    pub arm: Arm,
    pub segment: &'a str,
    pub features: &'a [(u32, f64)],
    pub context: &'a Context,
}

impl Draw<'_> {
    /// P(this draw picks `offer` among `set`) (campaign indices), under the
    /// posterior the request sampled (segment-ts: for a set other than the
    /// draw's, the segment's snapshot now), with the campaign's minimum
    /// propensity.
    pub(super) fn probability(&self, set: &[usize], offer: usize) -> f64 {
        match self.arm {
            Arm::Bandit => self
                .campaign
                .floor()
                .propensity(set.len(), self.policy_probability(set, offer)),
            Arm::Control => control_propensity(self.campaign, set, self.context, offer),
            Arm::NonPersonalized | Arm::Fallback => {
                control_propensity(self.campaign, set, &Context::new(), offer)
            }
        }
    }

    /// [`Draw::probability`] of the bandit's policy alone (Thompson
    /// sampling, before the minimum propensity).
    pub(super) fn policy_probability(&self, set: &[usize], offer: usize) -> f64 {
        let Some(k) = set.iter().position(|&o| o == offer) else {
            return 0.0;
        };
        let campaign = self.campaign;
        let objective = campaign.config.objective;
        match self.sample {
            Sample::Contextual(sampled) => {
                let weights: Vec<f64> = campaign
                    .offers
                    .iter()
                    .map(|o| objective.weight(o.value))
                    .collect();
                let (ctx, models) = (sampled.ctx, &sampled.snapshot);
                let arms = gaussian_arms(
                    &models.posteriors,
                    &ctx.config,
                    &weights,
                    self.features,
                    set,
                );
                thompson::win_probability(&arms, k)
            }
            // The set the draw was among: its snapshot's propensity.
            Sample::Segment {
                drawn: Some(drawn), ..
            } if drawn.candidates() == set => drawn.propensity(k),
            // Another set (a budget race's): the snapshot a draw among it
            // would sample now from the counts the request loaded.
            Sample::Segment { model, .. } => {
                let weights: Vec<f64> = set
                    .iter()
                    .map(|&i| objective.weight(campaign.offers[i].value))
                    .collect();
                campaign
                    .snapshots
                    .sample_published(
                        model,
                        self.segment,
                        set,
                        &weights,
                        campaign.config.prior_strength,
                    )
                    .propensity(k)
            }
        }
    }
}

/// An explanation after refusals: each offer's probability of being where
/// the select loop ends (as logged for the chosen one), 0 for the refused.
pub(super) fn explain_after_refusals(
    explanation: &mut [Explanation],
    campaign: &Campaign,
    all: &[usize],
    refused: &[usize],
    draw: &Draw<'_>,
) {
    for e in explanation.iter_mut().filter(|e| e.excluded.is_none()) {
        if let Some(o) = campaign.offer_index(&e.offer_id) {
            e.probability =
                propensity_after_refusals(all, refused, o, |set, c| draw.probability(set, c));
        }
    }
}

/// The first draw's set with any offer added since, and the offers of the
/// request's first draw that the select loop no longer offers (refused by
/// the writer, or found spent since); campaign indices.
pub(super) fn refused_since_first(first: &[usize], now: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let refused: Vec<usize> = first.iter().copied().filter(|o| !now.contains(o)).collect();
    let mut all = now.to_vec();
    all.extend(refused.iter().copied());
    (all, refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One draw's probabilities for each subset of three offers, chosen
    /// without independence of irrelevant alternatives (as Thompson
    /// sampling has none), so the reduced set's probability is not the
    /// answer.
    fn table(set: &[usize], o: usize) -> f64 {
        let row: [f64; 3] = match set {
            [0, 1, 2] => [0.5, 0.3, 0.2],
            [1, 2] => [0.0, 0.7, 0.3],
            [0, 2] => [0.6, 0.0, 0.4],
            [0, 1] => [0.55, 0.45, 0.0],
            _ => [1.0, 1.0, 1.0],
        };
        row[o]
    }

    #[test]
    fn one_refusal_adds_the_path_through_it() {
        let p = propensity_after_refusals(&[0, 1, 2], &[0], 1, |s: &[usize], o| table(s, o));
        // P(1) + P(0) x P(1 | {1, 2}), not the reduced set's 0.7.
        let closed = 0.3 + 0.5 * 0.7;
        assert!((p - closed).abs() < 1e-12, "{p} vs {closed}");
    }

    #[test]
    fn two_refusals_sum_both_orders() {
        let p = propensity_after_refusals(&[0, 1, 2], &[0, 1], 2, |s: &[usize], o| table(s, o));
        // Ending at 2 when 0 and 1 are refused: every path ends there.
        assert!((p - 1.0).abs() < 1e-12, "{p}");
    }

    #[test]
    fn no_refusal_is_the_one_draw() {
        let p = propensity_after_refusals(&[0, 1, 2], &[], 2, |s: &[usize], o| table(s, o));
        assert!((p - 0.2).abs() < 1e-12);
    }

    /// A deterministic race on the real select path: the writer refused
    /// offer x (as when a racing decision spent its budget) and the engine
    /// chose again among y and z. The propensity logged is
    /// P(B | x, y, z) + P(x | x, y, z) x P(B | y, z), not P(B | y, z).
    #[tokio::test]
    async fn the_logged_propensity_counts_the_path_through_a_refused_offer() -> Result<(), Error> {
        use crate::clock::ManualClock;
        use crate::engine::tests::{T0, open, redemption, visit};
        use crate::store::MemoryStore;
        use std::sync::{Arc, OnceLock};

        let store = MemoryStore::new();
        let clock = Arc::new(ManualClock::new(T0));
        let engine = open(&store, &clock);
        // Posteriors that differ: x and y redeem, z never does.
        for i in 0..12 {
            let s = engine.select(visit("a", None)).await?;
            if s.offer_id != "z" && i % 3 == 0 {
                engine.redeem(redemption(s.decision_id)).await?;
            }
        }
        // The windows close: every decision is learned.
        let now = clock.advance(2 * 3_600_000);
        engine.sweep(now, usize::MAX).await?;
        engine.flush().await?;
        let campaign = engine.campaign("p")?;
        let ctx = campaign
            .contextual
            .as_ref()
            .ok_or(Error::FailedPrecondition("campaign p is contextual".into()))?;
        let x = ctx
            .encoder
            .encode(&visit("a", None).context)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let weights = vec![1.0; campaign.offers.len()];
        let sampled = campaign.sample();
        let models = sampled
            .contextual
            .as_ref()
            .map(|s| s.snapshot.clone())
            .ok_or(Error::FailedPrecondition("campaign p is contextual".into()))?;
        let win = |set: &[usize], k: usize| {
            let models = &models.posteriors;
            thompson::win_probability(&gaussian_arms(models, &ctx.config, &weights, &x, set), k)
        };
        let all = [0, 1, 2];
        let rest = [1, 2];
        let p_all: Vec<f64> = (0..3).map(|k| win(&all, k)).collect();
        let p_rest: Vec<f64> = (0..2).map(|k| win(&rest, k)).collect();

        let first = OnceLock::new();
        let _ = first.set(vec![0, 1, 2]);
        let spent = [(
            "x".to_owned(),
            "budget spent by a racing decision".to_owned(),
        )];
        let mut req = SelectRequest {
            explain: true,
            ..visit("a", None)
        };
        let decided = engine
            .select_among(
                &campaign,
                &sampled,
                &mut req,
                &spent,
                &OnceLock::new(),
                &first,
            )
            .await?;
        let Decided::Made(sel) = decided else {
            panic!("the writer refused y or z too");
        };
        let b = match sel.offer_id.as_str() {
            "y" => 0,
            "z" => 1,
            other => panic!("chose {other}, which was refused"),
        };
        let closed = p_all[b + 1] + p_all[0] * p_rest[b];
        assert!(
            (sel.propensity - closed).abs() < 1e-9,
            "logged {} vs closed form {closed} (all {p_all:?}, rest {p_rest:?})",
            sel.propensity
        );
        // The explanation agrees: each offer's chance of being where the
        // loop ends, the refused x at 0.
        let shown = |id: &str| {
            sel.explanation
                .iter()
                .find(|e| e.offer_id == id)
                .map_or(f64::NAN, |e| e.probability)
        };
        assert!((shown(&sel.offer_id) - sel.propensity).abs() < 1e-9);
        assert_eq!(shown("x"), 0.0);
        assert!((shown("y") + shown("z") - 1.0).abs() < 1e-9);
        // The case is one where the reduced set's probability is wrong.
        assert!(
            (closed - p_rest[b]).abs() > 1e-3,
            "closed {closed} vs reduced set {}",
            p_rest[b]
        );
        Ok(())
    }
}
