//! Thompson sampling over independent posteriors (Beta rates, Gaussian
//! latent scores), and the exact probability (propensity) that it picks a
//! given arm.

use rand::Rng;
use rand::RngExt;
use rand_distr::Distribution;

use super::special::{
    InterpolatedNormalCdf, beta_cdf_with_ln_beta, ln_beta, normal_cdf_interpolated,
};

/// One candidate offer as Thompson sampling sees it: a Beta posterior of its
/// redemption rate and the weight its sampled rate is multiplied by (the offer
/// value under the value objective, 1 otherwise).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arm {
    /// Beta alpha (> 0).
    pub alpha: f64,
    /// Beta beta (> 0).
    pub beta: f64,
    /// Score weight (> 0).
    pub weight: f64,
    ln_b: f64,
}

impl Arm {
    /// An arm with posterior Beta(alpha, beta) whose rate is multiplied by `weight`.
    pub fn new(alpha: f64, beta: f64, weight: f64) -> Self {
        Arm {
            alpha,
            beta,
            weight,
            ln_b: f64::NAN, // computed by `prepared`, only when densities are needed
        }
    }

    /// Posterior mean of the redemption rate.
    pub fn mean(&self) -> f64 {
        self.alpha / (self.alpha + self.beta)
    }

    /// Posterior standard deviation of the redemption rate.
    pub fn sd(&self) -> f64 {
        let n = self.alpha + self.beta;
        (self.alpha * self.beta / (n * n * (n + 1.0))).sqrt()
    }

    /// One draw of the weighted score.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        let x = sample_gamma(self.alpha, rng);
        let y = sample_gamma(self.beta, rng);
        if x + y > 0.0 {
            x / (x + y) * self.weight
        } else {
            self.mean() * self.weight
        }
    }
}

/// One Gamma(shape, 1) draw by Marsaglia & Tsang (2000), with the
/// `U^(1/shape)` boost for shapes below 1. Exact; about two normal and
/// uniform draws and rarely a logarithm.
pub fn sample_gamma<R: Rng + ?Sized>(shape: f64, rng: &mut R) -> f64 {
    if !(shape > 0.0 && shape.is_finite()) {
        return f64::NAN;
    }
    if shape < 1.0 {
        let u: f64 = rng.random();
        return sample_gamma(shape + 1.0, rng) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x: f64 = rand_distr::StandardNormal.sample(rng);
        let v = 1.0 + c * x;
        if v <= 0.0 {
            continue;
        }
        let v = v * v * v;
        let u: f64 = rng.random();
        let x2 = x * x;
        if u < 1.0 - 0.0331 * x2 * x2 || u.ln() < 0.5 * x2 + d * (1.0 - v + v.ln()) {
            return d * v;
        }
    }
}

/// What Thompson sampling chose.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Choice {
    /// Index into the arms slice.
    pub index: usize,
    /// Probability of choosing this index in this posterior state.
    pub propensity: f64,
}

/// Draws one score per arm, picks the largest, and computes its propensity.
/// Returns `None` for an empty slice.
pub fn choose<D: ScoreDistribution + Clone>(arms: &[D], rng: &mut dyn Rng) -> Option<Choice> {
    let index = argmax_draw(arms, rng)?;
    Some(Choice {
        index,
        propensity: win_probability(arms, index),
    })
}

/// An arm's score distribution, as Thompson sampling and the propensity
/// quadrature see it. The score is what is compared across arms (a sampled
/// rate, possibly weighted by offer value).
pub trait ScoreDistribution {
    /// One draw of the score.
    fn sample_score(&self, rng: &mut dyn Rng) -> f64;
    /// The score at `c` standard deviations from the mean of the underlying
    /// (latent) distribution; increasing in `c`, clipped to the support.
    fn score_at(&self, c: f64) -> f64;
    /// Density of the score at `s`.
    fn score_pdf(&self, s: f64) -> f64;
    /// P(score <= s).
    fn score_cdf(&self, s: f64) -> f64;
    /// Scores outside which the distribution holds a negligible mass (below
    /// 1e-12 on each side). Mean ± 7 sd of the latent, which is right for a
    /// Gaussian; a skewed distribution must say more.
    fn score_range(&self) -> (f64, f64) {
        (self.score_at(-TAIL_SDS), self.score_at(TAIL_SDS))
    }
    /// A copy with whatever the density and CDF need precomputed.
    fn prepared(&self) -> Self
    where
        Self: Sized + Clone,
    {
        self.clone()
    }
    /// P(`arms[k]` has the largest draw), when a closed form or a cheaper
    /// quadrature than [`win_probability`]'s general one applies.
    fn win_probability_shortcut(_arms: &[Self], _k: usize) -> Option<f64>
    where
        Self: Sized,
    {
        None
    }
}

impl ScoreDistribution for Arm {
    fn prepared(&self) -> Self {
        Arm {
            ln_b: ln_beta(self.alpha, self.beta),
            ..*self
        }
    }
    fn sample_score(&self, rng: &mut dyn Rng) -> f64 {
        self.sample(rng)
    }
    fn score_at(&self, c: f64) -> f64 {
        (self.mean() + c * self.sd()).clamp(0.0, 1.0) * self.weight
    }
    fn score_pdf(&self, s: f64) -> f64 {
        let x = s / self.weight;
        if x <= 0.0 || x >= 1.0 {
            return 0.0;
        }
        ((self.alpha - 1.0) * x.ln() + (self.beta - 1.0) * (1.0 - x).ln() - self.ln_b).exp()
            / self.weight
    }
    fn score_cdf(&self, s: f64) -> f64 {
        beta_cdf_with_ln_beta(s / self.weight, self.alpha, self.beta, self.ln_b)
    }
    /// A skewed Beta (a small alpha or beta) holds far more than a normal's
    /// mass beyond 7 sd: Beta(0.2, 20) 2.2e-3, Beta(1, 100) 2.8e-4. Beta(a, b)
    /// is sub-Gaussian with variance proxy at most 1 / (4 (a + b + 1))
    /// (Marchal & Arbel 2017), so P(|X - mean| >= t) <= 2 exp(-2 (a + b + 1) t²),
    /// below 1e-13 for t = sqrt(ln(2e13) / (2 (a + b + 1))). That t is never
    /// under 7 sd, so the range only widens.
    fn score_range(&self) -> (f64, f64) {
        let t = (BETA_TAIL_LN / (2.0 * (self.alpha + self.beta + 1.0))).sqrt();
        let m = self.mean();
        (
            (m - t).clamp(0.0, 1.0) * self.weight,
            (m + t).clamp(0.0, 1.0) * self.weight,
        )
    }
}

/// ln(2e13): the Beta's range leaves out at most 1e-13 on each side.
const BETA_TAIL_LN: f64 = 30.626_753_389_482_54;

/// How a Gaussian latent score becomes the compared score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// The latent value is the rate itself (linear regression).
    Identity,
    /// The rate is the logistic sigmoid of the latent value (logistic regression).
    Logistic,
}

/// A Gaussian posterior predictive of an offer's latent score, its link to a
/// rate, and the weight the rate is multiplied by.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GaussianArm {
    /// Predictive mean of the latent score.
    pub mean: f64,
    /// Predictive standard deviation (> 0).
    pub sd: f64,
    /// Latent-to-rate link.
    pub link: Link,
    /// Score weight (> 0).
    pub weight: f64,
}

impl GaussianArm {
    fn score_of(self, z: f64) -> f64 {
        match self.link {
            Link::Identity => z * self.weight,
            Link::Logistic => sigmoid(z) * self.weight,
        }
    }

    /// Latent value whose score is `s`, and d(latent)/d(score) there; `None`
    /// outside the score range.
    fn latent_of(self, s: f64) -> Option<(f64, f64)> {
        let r = s / self.weight;
        match self.link {
            Link::Identity => Some((r, 1.0 / self.weight)),
            Link::Logistic => (r > 0.0 && r < 1.0)
                .then(|| ((r / (1.0 - r)).ln(), 1.0 / (self.weight * r * (1.0 - r)))),
        }
    }

    fn below(&self, s: f64) -> f64 {
        match self.link {
            Link::Logistic if s <= 0.0 => 0.0,
            Link::Logistic if s >= self.weight => 1.0,
            _ => 0.5,
        }
    }
}

/// The logistic sigmoid.
pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

impl ScoreDistribution for GaussianArm {
    /// Linear scores (identity link), which is also every equally weighted
    /// campaign: in arm k's standard units t, P(k wins) is
    /// `∫ φ(t) Π_j Φ(a_j t + b_j) dt` with `a_j = σ_k / σ_j` and
    /// `b_j = (μ_k - μ_j) / σ_j`, and each factor costs one normal CDF.
    /// When no rival that can matter is much narrower than arm k (every
    /// `a_j` within the last of [`GAUSS_HERMITE_RULES`]) and there are at
    /// most [`SHORTCUT_MAX_RIVALS`], each factor is smooth on the scale of t
    /// and Gauss-Hermite quadrature integrates the product, with as many
    /// nodes as the steepest rival needs ([`linear_by_gauss_hermite`]).
    /// Otherwise a much narrower rival makes a step inside arm k's bell, and
    /// [`linear_by_pieces`] integrates piece by piece. Either way the work
    /// is done in t, with no change of scale per evaluation.
    fn win_probability_shortcut(arms: &[Self], k: usize) -> Option<f64> {
        let linear = |a: &GaussianArm| {
            let (m, s) = (a.mean * a.weight, a.sd * a.weight);
            (a.link == Link::Identity && m.is_finite() && s.is_finite() && s > 0.0)
                .then_some((m, s))
        };
        let (mk, sk) = linear(arms.get(k)?)?;
        let mut rivals: Vec<(f64, f64)> = Vec::with_capacity(arms.len());
        for (j, arm) in arms.iter().enumerate() {
            if j == k {
                continue;
            }
            let (mj, sj) = linear(arm)?;
            if mj + TAIL_SDS * sj <= mk - TAIL_SDS * sk {
                continue; // always below arm k
            }
            if mj - TAIL_SDS * sj >= mk + TAIL_SDS * sk {
                return Some(0.0); // always above
            }
            // Φ((μk + σk t - μj) / σj) = Φ(a t + b)
            rivals.push((sk / sj, (mk - mj) / sj));
        }
        let p = linear_by_gauss_hermite(&rivals).unwrap_or_else(|| linear_by_pieces(&rivals));
        // An sd so small that a ratio overflows: the general method.
        p.is_finite().then(|| p.clamp(0.0, 1.0))
    }
    fn sample_score(&self, rng: &mut dyn Rng) -> f64 {
        let z: f64 = rand_distr::StandardNormal.sample(rng);
        self.score_of(self.mean + self.sd * z)
    }
    fn score_at(&self, c: f64) -> f64 {
        self.score_of(self.mean + c * self.sd)
    }
    fn score_pdf(&self, s: f64) -> f64 {
        match self.latent_of(s) {
            Some((z, dz)) => {
                let u = (z - self.mean) / self.sd;
                (-0.5 * u * u).exp() / (self.sd * (2.0 * std::f64::consts::PI).sqrt()) * dz
            }
            None => 0.0,
        }
    }
    fn score_cdf(&self, s: f64) -> f64 {
        match self.latent_of(s) {
            Some((z, _)) => normal_cdf_interpolated((z - self.mean) / self.sd),
            None => self.below(s),
        }
    }
}

/// Draws one score per arm and returns the index of the largest (ties go to
/// the first). `None` for an empty slice. Arms whose whole mass (the top of
/// [`ScoreDistribution::score_range`]) lies below another arm's range cannot
/// win (probability < 1e-11)
/// and are not drawn, which saves most draws once posteriors have settled.
pub fn argmax_draw<D: ScoreDistribution>(arms: &[D], rng: &mut dyn Rng) -> Option<usize> {
    let floor = arms
        .iter()
        .map(|a| a.score_range().0)
        .fold(f64::NEG_INFINITY, f64::max);
    let mut best: Option<(usize, f64)> = None;
    for (i, arm) in arms.iter().enumerate() {
        if arms.len() > 1 && arm.score_range().1 < floor {
            continue;
        }
        let s = arm.sample_score(rng);
        if best.is_none_or(|(_, b)| s > b) {
            best = Some((i, s));
        }
    }
    best.map(|(i, _)| i)
}

/// Mass of a tail piece below which it is not integrated.
const NEGLIGIBLE: f64 = 1e-13;

/// Standard deviations beyond which a distribution's mass is ignored
/// (a normal tail beyond 7 sd holds 1.3e-12).
const TAIL_SDS: f64 = 7.0;

/// P(arm `k` has the largest score draw), by quadrature:
/// `∫ f_k(s) Π_{j≠k} F_j(s) ds` with `f`/`F` the score densities and CDFs.
/// The range is split around arm k's own bell and where rivals' CDFs rise,
/// so steps are resolved; accuracy is tested against 200k-draw Monte Carlo.
pub fn win_probability<D: ScoreDistribution + Clone>(arms: &[D], k: usize) -> f64 {
    if let Some(p) = D::win_probability_shortcut(arms, k) {
        return p;
    }
    win_probability_by_pieces(arms, k)
}

/// [`win_probability`] by piecewise Gauss-Legendre quadrature, for any
/// score distributions.
pub fn win_probability_by_pieces<D: ScoreDistribution + Clone>(arms: &[D], k: usize) -> f64 {
    let arms: Vec<D> = arms.iter().map(ScoreDistribution::prepared).collect();
    let arms = arms.as_slice();
    let Some(me) = arms.get(k) else { return 0.0 };
    if arms.len() == 1 {
        return 1.0;
    }
    let (lo, hi) = me.score_range();
    if hi <= lo {
        // A point mass: the product of rivals' CDFs at that point.
        return arms
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != k)
            .map(|(_, a)| a.score_cdf(lo))
            .product::<f64>()
            .clamp(0.0, 1.0);
    }
    let mut breaks = Vec::with_capacity(8 + 3 * arms.len());
    breaks.extend([lo, hi]);
    for c in [-3.5, -2.0, -1.0, 0.0, 1.0, 2.0, 3.5] {
        breaks.push(me.score_at(c));
    }
    // Beyond 7 sd (only a skewed distribution's range reaches there), pieces
    // that double in width; each is skipped once arm k's own mass beyond it
    // is negligible, so a near-normal arm pays one CDF per side.
    let (in_lo, in_hi) = (me.score_at(-TAIL_SDS), me.score_at(TAIL_SDS));
    for c in [TAIL_SDS, 10.0, 14.0, 20.0, 28.0, 40.0, 56.0, 80.0] {
        breaks.extend([me.score_at(-c), me.score_at(c)]);
    }
    // A rival whose CDF rises within much less than one of arm k's pieces
    // gets its own breaks, so that 8 nodes per piece resolve the step.
    let my_piece = me.score_at(0.5) - me.score_at(-0.5);
    let mut rivals: Vec<(&D, f64, f64)> = Vec::with_capacity(arms.len() - 1);
    for (j, arm) in arms.iter().enumerate() {
        if j == k {
            continue;
        }
        let (rl, rh) = arm.score_range();
        if rh <= lo {
            continue; // arm k always beats j
        }
        if rl >= hi {
            return 0.0; // j always beats arm k
        }
        let (r3l, r3h) = (arm.score_at(-3.0), arm.score_at(3.0));
        if r3h - r3l < my_piece {
            breaks.extend([
                r3l,
                arm.score_at(-1.0),
                arm.score_at(0.0),
                arm.score_at(1.0),
                r3h,
            ]);
        }
        rivals.push((arm, rl, rh));
    }
    breaks.retain(|b| *b >= lo && *b <= hi);
    breaks.sort_by(f64::total_cmp);
    breaks.dedup();
    let mut total = 0.0;
    let mut active: Vec<&D> = Vec::with_capacity(rivals.len());
    'pieces: for w in breaks.windows(2) {
        let (a, b) = (w[0], w[1]);
        if b <= a {
            continue;
        }
        // Arm k's own mass on a tail piece bounds what the piece adds.
        if (a >= in_hi && 1.0 - me.score_cdf(a) < NEGLIGIBLE)
            || (b <= in_lo && me.score_cdf(b) < NEGLIGIBLE)
        {
            continue;
        }
        // Rivals whose whole mass lies below this piece never win on it; a
        // rival whose whole mass lies above it always does.
        active.clear();
        for (r, rl, rh) in &rivals {
            if *rl >= b {
                continue 'pieces;
            }
            if *rh > a {
                active.push(r);
            }
        }
        let half = 0.5 * (b - a);
        let mid = 0.5 * (a + b);
        for (node, weight) in GAUSS_LEGENDRE_8 {
            for x in [mid - half * node, mid + half * node] {
                let mut prod = me.score_pdf(x);
                for r in &active {
                    if prod == 0.0 {
                        break;
                    }
                    prod *= r.score_cdf(x);
                }
                total += weight * half * prod;
            }
        }
    }
    total.clamp(0.0, 1.0)
}

/// `∫ φ(t) Π Φ(a t + b) dt` over `rivals` = (a, b), by Gauss-Hermite
/// quadrature: the rule of [`GAUSS_HERMITE_RULES`] for the steepest rival,
/// or None when a rival is steeper than the last rule takes or there are
/// more than [`SHORTCUT_MAX_RIVALS`] (many rivals multiply into a step
/// sharper than any one of them). Each rule is within 1e-6 absolute of a
/// fine reference where the product is sharpest, eleven identical rivals
/// as steep as it takes (tested); within 1e-5 relative for identical arms,
/// each winning 1/K; within 1e-7 of the two-arm closed form.
///
/// Every factor rises with t (a > 0), and so does their product. The
/// nodes are taken from the largest t down:
/// - a rival's factor is within 1e-9 of 1 (its argument past
///   [`CERTAIN_FACTOR`]) down to its own `t = (6 - b) / a`, and is taken
///   as 1 until then: eleven such move the integral by under 1.1e-8 of
///   itself;
/// - once a node's product is below [`NEGLIGIBLE_NODE_PRODUCT`], the nodes
///   from there down add at most that product times their weights (under
///   1) together: under 1e-12, and the sum stops;
/// - the outermost nodes, together under [`NEGLIGIBLE_NODE_WEIGHT`]
///   (1e-10), are left out, since the integrand is at most 1.
///
/// Rivals alike (the same `a` and `b`: offers still at one prior) come
/// one after another and share one evaluation of their factor.
fn linear_by_gauss_hermite(rivals: &[(f64, f64)]) -> Option<f64> {
    if rivals.len() > SHORTCUT_MAX_RIVALS {
        return None;
    }
    let steepest = rivals.iter().fold(0.0_f64, |m, &(a, _)| m.max(a));
    let nodes = gauss_hermite_rule(steepest)?;
    // (t below which the factor counts, a, b), the first to count first;
    // alike rivals side by side.
    let mut order = [(0.0, 0.0, 0.0); SHORTCUT_MAX_RIVALS];
    for (slot, &(a, b)) in order.iter_mut().zip(rivals) {
        // a = 0 and b = 6 (a spread that underflowed): 0 / 0, a factor
        // Φ(6) at every t, never counted.
        let below = (CERTAIN_FACTOR - b) / a;
        *slot = (
            if below.is_nan() {
                f64::NEG_INFINITY
            } else {
                below
            },
            a,
            b,
        );
    }
    let order = &mut order[..rivals.len()];
    order.sort_unstable_by(|x, y| {
        y.0.total_cmp(&x.0)
            .then(x.1.total_cmp(&y.1))
            .then(x.2.total_cmp(&y.2))
    });
    let cdf = InterpolatedNormalCdf::get();
    let mut counting = 0;
    let mut total = 0.0;
    for &(t, w) in nodes {
        while counting < order.len() && order[counting].0 > t {
            counting += 1;
        }
        let mut prod = 1.0;
        let (mut last, mut factor) = ((f64::NAN, f64::NAN), f64::NAN);
        for &(_, a, b) in &order[..counting] {
            if (a, b) != last {
                (last, factor) = ((a, b), cdf.at(a * t + b));
            }
            prod *= factor;
        }
        if prod < NEGLIGIBLE_NODE_PRODUCT {
            break;
        }
        total += w * prod;
    }
    Some(total)
}

/// `∫ φ(t) Π Φ(a t + b) dt` over `rivals` = (a, b), by 8-point
/// Gauss-Legendre quadrature on pieces of t in [-7, 7]: breaks at
/// 0, ±1, ±2 and ±3.5, plus, for a rival whose step is narrower than one unit
/// of t (its ±3 sd span, 6 / a, under 1), breaks at its centre, ±1 and ±3 of
/// its own sds. On each piece a factor already above `Φ(8.5)` at the
/// piece's left end is 1 to 1e-17 and is skipped; a factor still below
/// `Φ(-8.5)` at its right end makes the piece negligible. The same rule as
/// [`win_probability_by_pieces`], which it matches to 1e-9 (tested), in
/// arm k's units so that one factor costs one normal CDF.
fn linear_by_pieces(rivals: &[(f64, f64)]) -> f64 {
    const SURE: f64 = 8.5; // Φ(-8.5) = 9.5e-18
    let mut breaks = Vec::with_capacity(9 + 5 * rivals.len());
    breaks.extend([-TAIL_SDS, -3.5, -2.0, -1.0, 0.0, 1.0, 2.0, 3.5, TAIL_SDS]);
    for &(a, b) in rivals {
        if a > 6.0 {
            let centre = -b / a;
            breaks.extend([-3.0, -1.0, 0.0, 1.0, 3.0].map(|u| centre + u / a));
        }
    }
    breaks.retain(|t| t.abs() <= TAIL_SDS);
    breaks.sort_by(f64::total_cmp);
    breaks.dedup();
    let cdf = InterpolatedNormalCdf::get();
    let mut total = 0.0;
    let mut active: Vec<(f64, f64)> = Vec::with_capacity(rivals.len());
    'pieces: for w in breaks.windows(2) {
        let (lo, hi) = (w[0], w[1]);
        if hi <= lo {
            continue;
        }
        active.clear();
        for &(a, b) in rivals {
            if a * hi + b < -SURE {
                continue 'pieces;
            }
            if a * lo + b <= SURE {
                active.push((a, b));
            }
        }
        let half = 0.5 * (hi - lo);
        let mid = 0.5 * (lo + hi);
        let mut piece = 0.0;
        for (node, weight) in GAUSS_LEGENDRE_8 {
            for t in [mid - half * node, mid + half * node] {
                let mut prod = (-0.5 * t * t).exp();
                for &(a, b) in &active {
                    prod *= cdf.at(a * t + b);
                }
                piece += weight * prod;
            }
        }
        total += half * piece;
    }
    total / (2.0 * std::f64::consts::PI).sqrt()
}

/// Most rivals the Gauss-Hermite shortcut takes: with more, their product
/// is a sharper step and the error grows.
const SHORTCUT_MAX_RIVALS: usize = 11;

/// The Gauss-Hermite rules of the shortcut: (steepest rival factor, order).
/// A rival's steepness is `a = σ_k / σ_j`, how much narrower it is than the
/// chosen arm; a steeper step needs more nodes, and each rule is tested at
/// its very steepness, eleven identical rivals (1e-6; on a grid of steps,
/// the worst is 3.4e-7). Contextual arms differ little in spread: in a
/// log of the K = 12 campaign's rivals under `offer-sim load` (a throwaway
/// build, docs/experiments.md), half the decisions' narrowest rival was
/// within 1.2 (28 nodes kept) and nearly all within 2.0 (46), where the
/// pieces evaluate 128 nodes or more.
const GAUSS_HERMITE_RULES: [(f64, usize); 6] = [
    (1.2, 50),
    (1.3, 60),
    (1.5, 80),
    (1.75, 100),
    (2.0, 120),
    (2.25, 160),
];

/// A normal CDF factor at or past this argument is `Φ(6) = 1 - 9.9e-10` or
/// more: 1 for the Gauss-Hermite product (see [`linear_by_gauss_hermite`]).
const CERTAIN_FACTOR: f64 = 6.0;

/// The outermost Gauss-Hermite nodes, together under this weight, are left
/// out of probability integrals, where a node adds at most its weight
/// (see [`linear_by_gauss_hermite`]).
const NEGLIGIBLE_NODE_WEIGHT: f64 = 1e-10;

/// A Gauss-Hermite node's product below this ends the sum: the product
/// rises with t, so the nodes from there down add at most this together
/// (see [`linear_by_gauss_hermite`]).
const NEGLIGIBLE_NODE_PRODUCT: f64 = 1e-12;

/// The nodes of the first rule of [`GAUSS_HERMITE_RULES`] that takes a
/// rival factor as steep as `steepest` (None: none does), without the
/// outermost, together under [`NEGLIGIBLE_NODE_WEIGHT`]; each rule computed
/// once.
fn gauss_hermite_rule(steepest: f64) -> Option<&'static [(f64, f64)]> {
    type Rule = std::sync::OnceLock<Vec<(f64, f64)>>;
    static RULES: [Rule; GAUSS_HERMITE_RULES.len()] =
        [const { Rule::new() }; GAUSS_HERMITE_RULES.len()];
    let i = GAUSS_HERMITE_RULES
        .iter()
        .position(|&(max, _)| steepest <= max)?;
    let nodes = RULES[i].get_or_init(|| {
        let nodes = gauss_hermite(GAUSS_HERMITE_RULES[i].1);
        let mut kept = nodes[outermost_negligible(&nodes)..].to_vec();
        kept.sort_by(|x, y| y.0.total_cmp(&x.0));
        kept
    });
    Some(nodes)
}

/// How many of `nodes` (pairs ±t, outermost first, as [`gauss_hermite`]
/// gives them) weigh under [`NEGLIGIBLE_NODE_WEIGHT`] together, counted
/// from the outermost pair in.
fn outermost_negligible(nodes: &[(f64, f64)]) -> usize {
    let mut weight = 0.0;
    let mut pairs = 0;
    for pair in nodes.chunks_exact(2) {
        weight += pair[0].1 + pair[1].1;
        if weight >= NEGLIGIBLE_NODE_WEIGHT {
            break;
        }
        pairs += 1;
    }
    2 * pairs
}

/// Nodes and weights of n-point Gauss-Hermite quadrature for the standard
/// normal density (`∫ φ(t) g(t) dt ≈ Σ w g(t)`), by Newton's method on the
/// Hermite recurrence (Numerical Recipes' `gauher`); nodes whose weight is
/// 1e-16 or less are dropped (46 of 80 are kept). The nodes come in pairs
/// (t, w), (-t, w), the outermost first; n is even (an odd rule's middle
/// node, at 0, is not computed).
fn gauss_hermite(n: usize) -> Vec<(f64, f64)> {
    debug_assert!(n.is_multiple_of(2), "an even order: {n}");
    let order = n as f64;
    let pim4 = std::f64::consts::PI.powf(-0.25);
    // Orthonormal Hermite polynomial H_n at z, and its derivative.
    let hermite = |z: f64| {
        let (mut p1, mut p2) = (pim4, 0.0);
        for j in 1..=n {
            let p3 = p2;
            p2 = p1;
            let j = j as f64;
            p1 = z * (2.0 / j).sqrt() * p2 - ((j - 1.0) / j).sqrt() * p3;
        }
        (p1, (2.0 * order).sqrt() * p2)
    };
    let mut roots: Vec<f64> = Vec::with_capacity(n / 2);
    let mut out = Vec::with_capacity(n);
    for i in 0..n / 2 {
        // The largest root first; each guess from the roots before it.
        let mut z = match i {
            0 => (2.0 * order + 1.0).sqrt() - 1.85575 * (2.0 * order + 1.0).powf(-1.0 / 6.0),
            1 => roots[0] - 1.14 * order.powf(0.426) / roots[0],
            2 => 1.86 * roots[1] - 0.86 * roots[0],
            3 => 1.91 * roots[2] - 0.91 * roots[1],
            _ => 2.0 * roots[i - 1] - roots[i - 2],
        };
        for _ in 0..100 {
            let (p, dp) = hermite(z);
            let step = p / dp;
            z -= step;
            if step.abs() < 1e-15 * z.abs().max(1.0) {
                break;
            }
        }
        roots.push(z);
        let (_, dp) = hermite(z);
        // Weight for e^{-x^2}, then for the normal density (t = √2 x).
        let w = 2.0 / (dp * dp) / std::f64::consts::PI.sqrt();
        if w > 1e-16 {
            let t = std::f64::consts::SQRT_2 * z;
            out.push((t, w));
            out.push((-t, w));
        }
    }
    out
}

/// Positive nodes and weights of 8-point Gauss-Legendre quadrature on [-1, 1]
/// (each node is used with both signs).
const GAUSS_LEGENDRE_8: [(f64, f64); 4] = [
    (0.183_434_642_495_649_8, 0.362_683_783_378_362),
    (0.525_532_409_916_329, 0.313_706_645_877_887_3),
    (0.796_666_477_413_626_7, 0.222_381_034_453_374_5),
    (0.960_289_856_497_536_3, 0.101_228_536_290_376_3),
];

#[cfg(test)]
mod tests {
    use super::super::special::normal_cdf;
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Steepest rival factor any Gauss-Hermite rule takes (the last rule's).
    const SHORTCUT_MAX_STEEPNESS: f64 = GAUSS_HERMITE_RULES[GAUSS_HERMITE_RULES.len() - 1].0;

    fn arm(alpha: f64, beta: f64, weight: f64) -> Arm {
        Arm::new(alpha, beta, weight)
    }

    fn monte_carlo(arms: &[Arm], draws: usize, seed: u64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut wins = vec![0usize; arms.len()];
        for _ in 0..draws {
            if let Some(i) = argmax_draw(arms, &mut rng) {
                wins[i] += 1;
            }
        }
        wins.iter().map(|&w| w as f64 / draws as f64).collect()
    }

    fn check_against_reference(arms: &[Arm], seed: u64) {
        let reference = monte_carlo(arms, 200_000, seed);
        let mut sum = 0.0;
        for (k, want) in reference.iter().enumerate() {
            let got = win_probability(arms, k);
            sum += got;
            assert!(
                (got - want).abs() < 0.01,
                "arm {k}: quadrature {got:.4} vs 200k draws {want:.4} ({arms:?})"
            );
        }
        assert!((sum - 1.0).abs() < 0.005, "propensities sum to {sum}");
    }

    #[test]
    fn skewed_beta_tails_beyond_seven_sd_are_integrated() {
        // Beta(0.2, 20) holds 2.2e-3 of its mass beyond mean + 7 sd (0.160),
        // and that tail is where it beats Beta(30, 170). Reference: the
        // integral of f_1 F_2 by mpmath (30 digits), 0.003722003733; a
        // 2M-draw Monte Carlo below agrees within its standard error.
        let arms = [arm(0.2, 20.0, 1.0), arm(30.0, 170.0, 1.0)];
        let want = 0.003_722_003_733;
        let got = win_probability(&arms, 0);
        assert!(
            (got - want).abs() < 2e-5,
            "quadrature {got:.6} vs reference {want:.6}"
        );
        let other = win_probability(&arms, 1);
        assert!((got + other - 1.0).abs() < 2e-5, "{got} + {other}");
        // Same with the arms swapped and a weight (the value objective).
        let weighted = [arm(30.0, 170.0, 2.0), arm(0.2, 20.0, 2.0)];
        assert!((win_probability(&weighted, 1) - want).abs() < 2e-5);
        // Beta(1, 100) (a fresh offer after 99 non-redemptions) against
        // Beta(20, 380): 0.01034537003 by mpmath.
        let fresh = [arm(1.0, 100.0, 1.0), arm(20.0, 380.0, 1.0)];
        let got = win_probability(&fresh, 0);
        assert!((got - 0.010_345_370_03).abs() < 2e-5, "quadrature {got:.6}");
        // Large-sample check of the draws themselves (and of argmax_draw,
        // which must not prune the skewed arm): 2M draws, sd 4.3e-5.
        let mc = monte_carlo(&arms, 2_000_000, 17)[0];
        assert!(
            (mc - want).abs() < 4.0 * 4.3e-5,
            "2M draws {mc:.6} vs {want:.6}"
        );
    }

    #[test]
    fn propensity_matches_200k_draw_reference() {
        // Fresh campaign: all uniform.
        check_against_reference(&[arm(1.0, 1.0, 1.0); 4], 1);
        // Typical loyalty rates with moderate evidence.
        check_against_reference(
            &[
                arm(6.0, 95.0, 1.0),
                arm(4.0, 60.0, 1.0),
                arm(2.0, 40.0, 1.0),
            ],
            2,
        );
        // One narrow well-known arm against a broad fresh one (a step inside the range).
        check_against_reference(
            &[
                arm(500.0, 9500.0, 1.0),
                arm(1.0, 1.0, 1.0),
                arm(2.0, 30.0, 1.0),
            ],
            3,
        );
        // Large counts (normal branch) close together.
        check_against_reference(&[arm(3000.0, 47000.0, 1.0), arm(3050.0, 47000.0, 1.0)], 4);
        // Value objective: weights rescale the competition.
        check_against_reference(
            &[
                arm(10.0, 90.0, 3.5),
                arm(30.0, 70.0, 1.0),
                arm(5.0, 95.0, 8.0),
            ],
            5,
        );
        // Many arms, skewed posteriors.
        let many: Vec<Arm> = (0..12)
            .map(|i| arm(1.0 + f64::from(i), 30.0 + 7.0 * f64::from(i), 1.0))
            .collect();
        check_against_reference(&many, 6);
    }

    fn gaussian(mean: f64, sd: f64, link: Link, weight: f64) -> GaussianArm {
        GaussianArm {
            mean,
            sd,
            link,
            weight,
        }
    }

    fn check_gaussian(arms: &[GaussianArm], seed: u64) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let draws = 200_000;
        let mut wins = vec![0usize; arms.len()];
        for _ in 0..draws {
            if let Some(i) = argmax_draw(arms, &mut rng) {
                wins[i] += 1;
            }
        }
        let mut sum = 0.0;
        for (k, w) in wins.iter().enumerate() {
            let want = *w as f64 / draws as f64;
            let got = win_probability(arms, k);
            sum += got;
            assert!(
                (got - want).abs() < 0.01,
                "arm {k}: quadrature {got:.4} vs 200k draws {want:.4} ({arms:?})"
            );
        }
        assert!((sum - 1.0).abs() < 0.005, "propensities sum to {sum}");
    }

    #[test]
    fn gaussian_propensity_matches_200k_draw_reference() {
        use Link::{Identity, Logistic};
        // Linear scores: overlapping, one narrow step inside a broad bell.
        check_gaussian(
            &[
                gaussian(0.10, 0.05, Identity, 1.0),
                gaussian(0.12, 0.002, Identity, 1.0),
                gaussian(0.05, 0.10, Identity, 1.0),
            ],
            11,
        );
        // Linear-ts under the value objective: p x value is a Gaussian with
        // weighted mean and spread, mass below 0 included.
        check_gaussian(
            &[
                gaussian(0.10, 0.05, Identity, 1.0),
                gaussian(0.04, 0.03, Identity, 2.5),
                gaussian(0.02, 0.04, Identity, 4.0),
                gaussian(0.30, 0.30, Identity, 0.5),
            ],
            13,
        );
        // Logistic scores, value-weighted: links and weights change who wins.
        check_gaussian(
            &[
                gaussian(-2.0, 0.6, Logistic, 3.5),
                gaussian(-1.0, 0.3, Logistic, 1.0),
                gaussian(-3.0, 1.5, Logistic, 8.0),
                gaussian(-2.5, 0.05, Logistic, 2.0),
            ],
            12,
        );
        // Twelve offers from a fresh model (broad, equal) and a converged one.
        check_gaussian(&[gaussian(0.0, 2.0, Logistic, 1.0); 12], 13);
        let converged: Vec<GaussianArm> = (0..12)
            .map(|i| gaussian(-3.0 + 0.15 * f64::from(i), 0.2, Logistic, 1.0))
            .collect();
        check_gaussian(&converged, 14);
    }

    #[test]
    fn gaussian_propensity_matches_draws_on_random_posteriors() {
        // Random mixes of broad and narrow, close and distant arms.
        let mut rng = ChaCha8Rng::seed_from_u64(16);
        for case in 0..6 {
            let k = rng.random_range(2..=12);
            let arms: Vec<GaussianArm> = (0..k)
                .map(|_| {
                    let sd = 10f64.powf(rng.random_range(-2.0..0.5));
                    gaussian(rng.random_range(-3.5..-1.0), sd, Link::Logistic, 1.0)
                })
                .collect();
            check_gaussian(&arms, 100 + case);
        }
    }

    #[test]
    fn the_nodes_left_out_of_probability_integrals_weigh_under_1e_10() {
        let mut kept = Vec::new();
        for (steepest, n) in GAUSS_HERMITE_RULES {
            let nodes = gauss_hermite(n);
            let rule = gauss_hermite_rule(steepest).expect("a rule");
            let (dropped, inner) = nodes.split_at(nodes.len() - rule.len());
            // The inner nodes kept, from the largest t down.
            let mut sorted = inner.to_vec();
            sorted.sort_by(|x, y| y.0.total_cmp(&x.0));
            assert_eq!(sorted, rule, "{n}: the inner nodes kept");
            // The outermost nodes only, together under 1e-10; one pair more
            // would pass it.
            let widest = inner.iter().fold(0.0_f64, |m, (t, _)| m.max(t.abs()));
            assert!(dropped.iter().all(|(t, _)| t.abs() > widest), "{n}");
            let weight = dropped.iter().map(|(_, w)| w).sum::<f64>();
            assert!(weight < 1e-10 && weight + 2.0 * inner[0].1 >= 1e-10, "{n}");
            if n == 80 {
                assert_eq!((nodes.len(), dropped.len()), (46, 10));
            }
            kept.push(rule.len());
        }
        assert_eq!(kept, [28, 32, 36, 42, 46, 52]);
        // Each rule takes rivals up to its own steepness, the next rule
        // those just past it.
        for (i, &(steepest, _)) in GAUSS_HERMITE_RULES.iter().enumerate() {
            let len = |a: f64| gauss_hermite_rule(a).map(<[_]>::len);
            assert_eq!(len(steepest), Some(kept[i]), "{steepest}");
            assert_eq!(len(steepest * (1.0 + 1e-12)), kept.get(i + 1).copied());
        }
        // Gentle rivals take the first rule; none takes a NaN.
        assert_eq!(gauss_hermite_rule(0.3).map(<[_]>::len), Some(28));
        assert_eq!(gauss_hermite_rule(f64::NAN), None);
    }

    #[test]
    fn stopping_at_a_vanishing_product_and_taking_certain_factors_as_1_stay_within_their_bounds() {
        // The same quadrature with every factor evaluated at every node,
        // against the one that takes factors within 1e-9 of 1 as 1, stops
        // once a node's product vanishes and shares alike rivals' factors,
        // on random rivals (a up to what the shortcut takes): under 1e-12
        // for the nodes left below the stop, plus 1.1e-8 of the integral
        // for eleven factors taken as 1.
        let cdf = InterpolatedNormalCdf::get();
        let rule = |rivals: &[(f64, f64)]| {
            let steepest = rivals.iter().fold(0.0_f64, |m, &(a, _)| m.max(a));
            gauss_hermite_rule(steepest).expect("a rule")
        };
        let product = |rivals: &[(f64, f64)], t: f64| {
            rivals.iter().fold(1.0, |p, &(a, b)| p * cdf.at(a * t + b))
        };
        let mut rng = ChaCha8Rng::seed_from_u64(33);
        let (mut stopped, mut certain) = (0, 0);
        for _ in 0..2_000 {
            let n = rng.random_range(1..=SHORTCUT_MAX_RIVALS);
            let mut rivals: Vec<(f64, f64)> = Vec::with_capacity(n);
            while rivals.len() < n {
                // Some alike (offers at one prior), next to each other or not.
                match rivals.last() {
                    Some(&r) if rng.random_bool(0.3) => rivals.push(r),
                    _ => rivals.push((
                        rng.random_range(0.05..=SHORTCUT_MAX_STEEPNESS),
                        rng.random_range(-4.0..8.0),
                    )),
                }
            }
            if rng.random_bool(0.3) {
                rivals.reverse();
                rivals.rotate_left(n / 2);
            }
            let fast = linear_by_gauss_hermite(&rivals).expect("the shortcut takes these");
            let nodes = rule(&rivals);
            let exact = nodes
                .iter()
                .map(|&(t, w)| w * product(&rivals, t))
                .sum::<f64>();
            assert!(
                (exact - fast).abs() < 1e-12 + 1.1e-8 * exact,
                "{rivals:?}: {exact} vs {fast}"
            );
            // Both shortcuts were there to take: a product that vanishes
            // at the lowest node (the sum stopped at or above it), a
            // factor within 1e-9 of 1 where the product still counts.
            let lowest = nodes.last().map_or(0.0, |&(t, _)| t);
            stopped += usize::from(product(&rivals, lowest) < 1e-13);
            certain += usize::from(nodes.iter().any(|&(t, _)| {
                product(&rivals, t) > 1e-6
                    && rivals.iter().any(|&(a, b)| a * t + b >= CERTAIN_FACTOR)
            }));
        }
        assert!(stopped > 100 && certain > 100, "{stopped}, {certain}");
    }

    #[test]
    fn a_rival_of_zero_steepness_is_a_constant_factor() {
        // a = 0 (a spread that underflowed): the factor is Φ(b) at every t;
        // at b = 6 it is within 1e-9 of 1, taken as 1, where (6 - b) / a
        // is 0 / 0.
        let weights = gauss_hermite_rule(0.0)
            .expect("a rule")
            .iter()
            .map(|n| n.1)
            .sum::<f64>();
        for (b, want) in [
            (6.0, 1.0),
            (9.0, 1.0),
            (1.0, normal_cdf(1.0)),
            (-2.0, normal_cdf(-2.0)),
        ] {
            let p = linear_by_gauss_hermite(&[(0.0, b)]).expect("a rule");
            assert!((p - want * weights).abs() < 1e-9, "b = {b}: {p}");
        }
    }

    #[test]
    fn gauss_hermite_integrates_normal_moments() {
        for (_, n) in GAUSS_HERMITE_RULES {
            let nodes = gauss_hermite(n);
            assert!(nodes.len().is_multiple_of(2), "{n}: nodes in pairs ±t");
            let moment = |k: i32| nodes.iter().map(|(t, w)| w * t.powi(k)).sum::<f64>();
            assert!((moment(0) - 1.0).abs() < 1e-12, "{n}: {}", moment(0));
            assert!(moment(1).abs() < 1e-12, "{n}");
            assert!((moment(2) - 1.0).abs() < 1e-12, "{n}");
            assert!((moment(4) - 3.0).abs() < 1e-10, "{n}");
            assert!((moment(10) - 945.0).abs() < 1e-6, "{n}");
            // E[cos t] = e^{-1/2}: not a polynomial.
            let cos = nodes.iter().map(|(t, w)| w * t.cos()).sum::<f64>();
            assert!((cos - (-0.5_f64).exp()).abs() < 1e-12, "{n}: {cos}");
        }
    }

    #[test]
    fn linear_propensities_match_the_closed_form_and_the_general_quadrature() {
        // Two arms: P(1 beats 2) = Φ((μ1 - μ2) / sqrt(σ1² + σ2²)).
        for (m1, s1, m2, s2) in [
            (0.1, 0.02, 0.08, 0.03),
            (0.0, 1.0, 0.5, 1.0),
            (0.3, 0.1, 0.1, 0.9),
        ] {
            let arms = [
                gaussian(m1, s1, Link::Identity, 1.0),
                gaussian(m2, s2, Link::Identity, 1.0),
            ];
            let want = normal_cdf((m1 - m2) / (s1 * s1 + s2 * s2).sqrt());
            let fast = GaussianArm::win_probability_shortcut(&arms, 0).expect("applies");
            assert!((fast - want).abs() < 1e-7, "{fast} vs {want}");
            assert!((win_probability_by_pieces(&arms, 0) - want).abs() < 1e-6);
        }
        // Twelve arms, value weights on linear scores: both routes of the
        // shortcut against the general quadrature in score space.
        let mut rng = ChaCha8Rng::seed_from_u64(21);
        let (mut smooth, mut stepped) = (0, 0);
        for _ in 0..50 {
            let arms: Vec<GaussianArm> = (0..12)
                .map(|_| {
                    gaussian(
                        rng.random_range(0.02..0.2),
                        rng.random_range(0.01..0.1),
                        Link::Identity,
                        rng.random_range(0.5..4.0),
                    )
                })
                .collect();
            for k in 0..arms.len() {
                let general = win_probability_by_pieces(&arms, k);
                let fast = GaussianArm::win_probability_shortcut(&arms, k).expect("linear");
                match assert_route(&arms, k, fast) {
                    Some(true) => {
                        // Gauss-Hermite: within its stated accuracy.
                        assert!((fast - general).abs() < 1e-6, "{fast} vs {general}");
                        smooth += 1;
                    }
                    Some(false) => {
                        // The same pieces in arm k's units: rounding apart, equal.
                        assert!((fast - general).abs() < 1e-9, "{fast} vs {general}");
                        stepped += 1;
                    }
                    None => assert!(general < 1e-9, "{general}"),
                }
            }
        }
        assert!(
            smooth >= 50 && stepped >= 50,
            "Gauss-Hermite checked {smooth} times, pieces {stepped}"
        );
        // The hardest case: identical arms, each winning 1/K; Gauss-Hermite
        // up to 12, pieces beyond.
        for k in 2..=40 {
            let arms = vec![gaussian(0.1, 0.03, Link::Identity, 1.0); k];
            let p = GaussianArm::win_probability_shortcut(&arms, 0).expect("applies");
            let want = 1.0 / k as f64;
            assert!(
                (p - want).abs() < 1e-6 && (p - want).abs() / want < 1e-5,
                "K={k}: {p}"
            );
        }
        // A narrow rival's step inside the chosen arm's bell, against the
        // two-arm closed form, for both arms.
        for (m1, s1, m2, s2) in [(0.1, 0.05, 0.12, 0.002), (0.0, 1.0, 0.3, 0.05)] {
            let arms = [
                gaussian(m1, s1, Link::Identity, 1.0),
                gaussian(m2, s2, Link::Identity, 1.0),
            ];
            let want = normal_cdf((m1 - m2) / (s1 * s1 + s2 * s2).sqrt());
            for (k, want) in [(0, want), (1, 1.0 - want)] {
                let p = GaussianArm::win_probability_shortcut(&arms, k).expect("applies");
                assert!((p - want).abs() < 1e-7, "arm {k}: {p} vs {want}");
            }
        }
        let nan = [
            gaussian(f64::NAN, 0.1, Link::Identity, 1.0),
            gaussian(0.1, 0.1, Link::Identity, 1.0),
        ];
        assert_eq!(GaussianArm::win_probability_shortcut(&nan, 0), None);
        // Logistic scores are not linear: no shortcut.
        let logistic = [gaussian(-2.0, 0.1, Link::Logistic, 1.0); 2];
        assert_eq!(GaussianArm::win_probability_shortcut(&logistic, 0), None);
    }

    /// The linear shortcut's rivals of arm k as its rule keeps them, by a
    /// copy of that rule (in the arms' order), so that a test can check the
    /// route the shortcut took: None when a rival is always above arm k (0
    /// at once); else the (a, b) pairs and whether Gauss-Hermite takes them.
    fn rivals_by_the_rule(arms: &[GaussianArm], k: usize) -> Option<(Vec<(f64, f64)>, bool)> {
        let (mk, sk) = (arms[k].mean * arms[k].weight, arms[k].sd * arms[k].weight);
        let (mut rivals, mut steep) = (Vec::new(), false);
        for (j, a) in arms.iter().enumerate() {
            let (mj, sj) = (a.mean * a.weight, a.sd * a.weight);
            if j == k || mj + TAIL_SDS * sj <= mk - TAIL_SDS * sk {
                continue; // arm k itself, or always below it
            }
            if mj - TAIL_SDS * sj >= mk + TAIL_SDS * sk {
                return None;
            }
            steep |= sk / sj > SHORTCUT_MAX_STEEPNESS;
            rivals.push((sk / sj, (mk - mj) / sj));
        }
        let gauss_hermite = !steep && rivals.len() <= SHORTCUT_MAX_RIVALS;
        Some((rivals, gauss_hermite))
    }

    /// What the shortcut must return for arm k: 0 at once, else the route
    /// [`rivals_by_the_rule`] names on its rivals. Returns whether it was
    /// Gauss-Hermite (None: decided at once).
    fn assert_route(arms: &[GaussianArm], k: usize, fast: f64) -> Option<bool> {
        let Some((rivals, gauss_hermite)) = rivals_by_the_rule(arms, k) else {
            assert_eq!(fast, 0.0, "a rival always above arm {k}");
            return None;
        };
        let want = if gauss_hermite {
            linear_by_gauss_hermite(&rivals).expect("the rule takes these")
        } else {
            assert_eq!(linear_by_gauss_hermite(&rivals), None);
            linear_by_pieces(&rivals)
        };
        assert_eq!(fast, want.clamp(0.0, 1.0), "arm {k}: {rivals:?}");
        Some(gauss_hermite)
    }

    /// `∫ f_k(s) Π_j F_j(s) ds` for linear arms (weight 1), by composite
    /// Simpson on 40,000 steps over arm k's ±9 sd with libm's normal CDF:
    /// a reference for the whole integral that shares nothing with the
    /// quadratures under test.
    fn simpson_reference(arms: &[GaussianArm], k: usize) -> f64 {
        let (mk, sk) = (arms[k].mean, arms[k].sd);
        let steps = 40_000;
        let h = 18.0 * sk / steps as f64;
        let integrand = |i: usize| {
            let x = mk - 9.0 * sk + i as f64 * h;
            let u = (x - mk) / sk;
            let density = (-0.5 * u * u).exp() / (sk * (2.0 * std::f64::consts::PI).sqrt());
            arms.iter()
                .enumerate()
                .filter(|(j, _)| *j != k)
                .fold(density, |p, (_, a)| p * normal_cdf((x - a.mean) / a.sd))
        };
        (0..=steps)
            .map(|i| {
                let w = if i == 0 || i == steps {
                    1.0
                } else if i % 2 == 1 {
                    4.0
                } else {
                    2.0
                };
                w * integrand(i)
            })
            .sum::<f64>()
            * h
            / 3.0
    }

    /// Each Gauss-Hermite rule where its product is sharpest: one, three or
    /// eleven identical rivals, each as much narrower than arm k as the rule
    /// takes (a = its steepness), their common step swept across arm k's
    /// bell. Within 1e-6 of the reference: the worst on this grid (b every
    /// 0.6) is 3.4e-7, at steepness 2.0, eleven rivals and b = 0.3.
    #[test]
    fn gauss_hermite_is_within_1e_6_at_its_steepest_rivals() {
        let mut worst = (0.0_f64, 0.0, 0, 0.0);
        for (a, _) in GAUSS_HERMITE_RULES {
            for n in [1, 3, SHORTCUT_MAX_RIVALS] {
                for step in 0..=30 {
                    let b = -7.5 + 0.6 * step as f64;
                    // Arm k N(0, a²), rivals N(-b, 1): a as the rule takes, b as swept.
                    let mut arms = vec![gaussian(0.0, a, Link::Identity, 1.0)];
                    arms.extend((0..n).map(|_| gaussian(-b, 1.0, Link::Identity, 1.0)));
                    let rivals = vec![(a, b); n];
                    let fast = linear_by_gauss_hermite(&rivals).expect("the rule takes these");
                    let shortcut = GaussianArm::win_probability_shortcut(&arms, 0).expect("linear");
                    // For every b swept, no rival is always below arm k (left
                    // out) or always above it (0 at once): the shortcut takes
                    // this route.
                    assert_eq!(shortcut, fast.clamp(0.0, 1.0), "n = {n}, b = {b}");
                    let error = (fast - simpson_reference(&arms, 0)).abs();
                    if error > worst.0 {
                        worst = (error, a, n, b);
                    }
                }
            }
        }
        assert!(
            worst.0 < 1e-6,
            "worst {worst:?} (error, steepness, rivals, b)"
        );
    }

    /// Gauss-Hermite on random rivals up to as steep as it takes (a from
    /// 1/3 to 2.25) and up to eleven of them, against the reference: within
    /// 1e-6. The worst of these 60 is 5.4e-10; rivals alike in a and b,
    /// whose steps add up, are the hard case (the test above).
    #[test]
    fn gauss_hermite_is_within_1e_6_on_random_rivals_it_takes() {
        let mut rng = ChaCha8Rng::seed_from_u64(29);
        let (mut worst, mut taken) = (0.0_f64, 0);
        while taken < 60 {
            let n = rng.random_range(2..=12);
            let sk = rng.random_range(0.5..2.0);
            let mut arms = vec![gaussian(0.0, sk, Link::Identity, 1.0)];
            arms.extend((1..n).map(|_| {
                let sd = sk / rng.random_range(1.0 / 3.0..=SHORTCUT_MAX_STEEPNESS);
                gaussian(rng.random_range(-2.5..2.5) * sk, sd, Link::Identity, 1.0)
            }));
            let fast = GaussianArm::win_probability_shortcut(&arms, 0).expect("linear");
            // Means within 2.5 sd of arm k: every rival can matter, and the
            // shortcut took Gauss-Hermite on all of them.
            assert_eq!(assert_route(&arms, 0, fast), Some(true));
            assert_eq!(rivals_by_the_rule(&arms, 0).map(|r| r.0.len()), Some(n - 1));
            worst = worst.max((fast - simpson_reference(&arms, 0)).abs());
            taken += 1;
        }
        assert!(worst < 1e-6, "worst {worst:e}");
    }

    /// The linear shortcut's both routes against [`simpson_reference`], not
    /// only against the general quadrature (whose pieces the piecewise route
    /// shares). Up to twenty arms (past twelve, Gauss-Hermite hands over to
    /// the pieces) with spreads up to 8 times apart, so that narrow rivals make steps inside
    /// arm k's bell. Within 1e-6 absolute: the Gauss-Hermite route's stated
    /// accuracy. The worst case here is 1.5e-7 (56 of the 80 cases take
    /// the pieces, 22 Gauss-Hermite, 2 are decided at once). The pieces agree
    /// with the general quadrature to 1e-9 because both integrate on the
    /// same pieces, not because either is that close to the integral.
    #[test]
    fn linear_win_probability_is_within_1e_6_of_a_fine_reference() {
        let mut rng = ChaCha8Rng::seed_from_u64(23);
        let (mut smooth, mut stepped, mut decided) = (0, 0, 0);
        for _ in 0..80 {
            let n = rng.random_range(2..=20);
            let arms: Vec<GaussianArm> = (0..n)
                .map(|_| {
                    gaussian(
                        rng.random_range(0.02..0.2),
                        rng.random_range(0.005..0.04),
                        Link::Identity,
                        1.0,
                    )
                })
                .collect();
            let k = rng.random_range(0..n);
            let Some(fast) = GaussianArm::win_probability_shortcut(&arms, k) else {
                panic!("linear arms take the shortcut");
            };
            let simpson = simpson_reference(&arms, k);
            let error = (fast - simpson).abs();
            assert!(error < 1e-6, "{n} arms, k = {k}: {fast} vs {simpson}");
            // The route the shortcut took, checked against its rule.
            match assert_route(&arms, k, fast) {
                Some(true) => smooth += 1,
                Some(false) => stepped += 1,
                None => decided += 1,
            }
        }
        assert!(
            smooth >= 5 && stepped >= 20,
            "Gauss-Hermite {smooth}, pieces {stepped}, decided at once {decided}"
        );
    }

    #[test]
    fn gaussian_sampler_matches_moments() {
        let a = gaussian(0.3, 0.2, Link::Identity, 2.0);
        let mut rng = ChaCha8Rng::seed_from_u64(15);
        let n = 200_000;
        let draws: Vec<f64> = (0..n).map(|_| a.sample_score(&mut rng)).collect();
        let mean = draws.iter().sum::<f64>() / n as f64;
        let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n as f64 - 1.0);
        // Score = 2 z with z ~ N(0.3, 0.2^2): mean 0.6, variance 0.16.
        assert!(
            (mean - 0.6).abs() < 5.0 * (0.16 / n as f64).sqrt(),
            "mean {mean}"
        );
        assert!((var - 0.16).abs() < 0.02 * 0.16, "variance {var}");
    }

    #[test]
    fn dominated_and_single_arms() {
        assert_eq!(win_probability(&[arm(2.0, 3.0, 1.0)], 0), 1.0);
        let arms = [arm(900.0, 100.0, 1.0), arm(100.0, 900.0, 1.0)];
        assert!(win_probability(&arms, 0) > 0.999_999);
        assert!(win_probability(&arms, 1) < 1e-6);
        assert_eq!(win_probability(&arms, 7), 0.0);
    }

    #[test]
    fn gamma_sampler_matches_closed_form_moments() {
        let mut rng = ChaCha8Rng::seed_from_u64(10);
        for shape in [0.4, 1.0, 5.0, 250.0] {
            let n = 200_000;
            let draws: Vec<f64> = (0..n).map(|_| sample_gamma(shape, &mut rng)).collect();
            let mean = draws.iter().sum::<f64>() / n as f64;
            let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n as f64 - 1.0);
            // Gamma(k, 1): mean k, variance k; standard error of the mean sqrt(k / n).
            assert!(
                (mean - shape).abs() < 5.0 * (shape / n as f64).sqrt(),
                "shape {shape}: mean {mean}"
            );
            assert!(
                (var - shape).abs() < 0.05 * shape,
                "shape {shape}: variance {var}"
            );
        }
        // Small shapes still give Beta's closed-form mean: Beta(0.7, 2.5) has mean 0.21875.
        let a = arm(0.7, 2.5, 1.0);
        let n = 200_000;
        let mean = (0..n).map(|_| a.sample(&mut rng)).sum::<f64>() / n as f64;
        assert!(
            (mean - 0.21875).abs() < 5.0 * a.sd() / (n as f64).sqrt(),
            "mean {mean}"
        );
    }

    #[test]
    fn sampler_matches_beta_moments() {
        let a = arm(3.0, 17.0, 1.0);
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let n = 200_000;
        let draws: Vec<f64> = (0..n).map(|_| a.sample(&mut rng)).collect();
        let mean = draws.iter().sum::<f64>() / n as f64;
        let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n as f64 - 1.0);
        // Closed forms: mean 0.15, variance a*b/((a+b)^2 (a+b+1)) = 51/8400.
        let se_mean = (a.sd().powi(2) / n as f64).sqrt();
        assert!((mean - 0.15).abs() < 5.0 * se_mean, "mean {mean}");
        assert!(
            (var - 51.0 / 8400.0).abs() < 0.02 * 51.0 / 8400.0,
            "variance {var}"
        );
    }
}
