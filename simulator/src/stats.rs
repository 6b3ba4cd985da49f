//! Summaries over seeds: means with Student-t 95% intervals; the normal
//! quantile of a confidence level.

use crate::results::Estimate;

/// Two-sided 95% Student-t quantile for `dof` degrees of freedom.
fn t95(dof: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match dof {
        0 => f64::NAN,
        d if d <= 30 => TABLE[d - 1],
        d if d <= 60 => 2.000 + (2.042 - 2.000) * (60 - d) as f64 / 30.0,
        d if d <= 120 => 1.980 + (2.000 - 1.980) * (120 - d) as f64 / 60.0,
        _ => 1.960,
    }
}

/// Mean of `xs` with a 95% interval for it (the mean itself for fewer than two values).
pub(crate) fn estimate(xs: &[f64]) -> Estimate {
    let n = xs.len();
    if n == 0 {
        return Estimate {
            mean: f64::NAN,
            low: f64::NAN,
            high: f64::NAN,
        };
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return Estimate {
            mean,
            low: mean,
            high: mean,
        };
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let half = t95(n - 1) * (var / n as f64).sqrt();
    Estimate {
        mean,
        low: mean - half,
        high: mean + half,
    }
}

/// Median of `xs` (NaN when empty).
pub(crate) fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

/// Two-sided normal quantile for a confidence level (0.9, 0.95, 0.99 exact to
/// three digits; others by bisection on the normal CDF).
pub(crate) fn z_score(level: f64) -> f64 {
    let target = 0.5 + level / 2.0;
    let (mut lo, mut hi) = (0.0, 10.0);
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        if offer_bandit::policy::special::normal_cdf(mid) < target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_matches_hand_computation() {
        // mean 2, sd 1, n 3: half-width 4.303 / sqrt(3).
        let e = estimate(&[1.0, 2.0, 3.0]);
        assert!((e.mean - 2.0).abs() < 1e-12);
        assert!((e.high - 2.0 - 4.303 / 3f64.sqrt()).abs() < 1e-9);
        assert_eq!(
            estimate(&[5.0]),
            Estimate {
                mean: 5.0,
                low: 5.0,
                high: 5.0
            }
        );
        assert_eq!(median(&[3.0, 1.0, 2.0, 10.0]), 2.5);
    }
}
