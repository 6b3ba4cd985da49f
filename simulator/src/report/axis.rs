//! Chart geometry: linear axes with nice ticks, and a chart's frame (its
//! canvas and the margins around the plot area).

use super::format::grouped;

/// A linear axis over a rounded domain with nice tick values.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Axis {
    lo: f64,
    hi: f64,
    step: f64,
    pub(super) ticks: Vec<f64>,
}

impl Axis {
    /// An axis covering the finite `values` (and zero when `include_zero`),
    /// with about `target` ticks; `[0, 1]` when there is nothing to cover.
    pub(super) fn new(
        values: impl IntoIterator<Item = f64>,
        include_zero: bool,
        target: usize,
    ) -> Self {
        let (lo, hi) = data_range(values, include_zero);
        let step = nice_step(hi - lo, target.max(1));
        let (nlo, nhi) = ((lo / step).floor() * step, (hi / step).ceil() * step);
        let n = ((nhi - nlo) / step).round();
        if !(step.is_finite() && step > 0.0 && nhi > nlo && (1.0..=100.0).contains(&n)) {
            return Self {
                lo,
                hi,
                step: hi - lo,
                ticks: vec![lo, hi],
            };
        }
        let ticks = (0..=n as usize).map(|i| nlo + i as f64 * step).collect();
        Self {
            lo: nlo,
            hi: nhi,
            step,
            ticks,
        }
    }

    /// Where `v` falls along the axis, 0 at `lo` and 1 at `hi`, clamped.
    pub(super) fn frac(&self, v: f64) -> f64 {
        let f = (v - self.lo) / (self.hi - self.lo);
        if f.is_finite() {
            f.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    /// Tick label for `v`: as many decimals as the step needs, `k`/`M` for
    /// large values.
    pub(super) fn label(&self, v: f64) -> String {
        if v.abs() < self.step.abs() * 1e-9 {
            return "0".to_owned();
        }
        let max_abs = self.lo.abs().max(self.hi.abs());
        let (scale, suffix) = if max_abs >= 1e7 {
            (1e6, "M")
        } else if max_abs >= 1e4 {
            (1e3, "k")
        } else {
            (1.0, "")
        };
        format!(
            "{}{suffix}",
            grouped(v / scale, decimals_for(self.step / scale))
        )
    }
}

/// Min and max of the finite `values` (with zero if asked), widened when
/// they are equal; `(0, 1)` when there are none.
fn data_range(values: impl IntoIterator<Item = f64>, include_zero: bool) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.into_iter().filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if include_zero && lo <= hi {
        lo = lo.min(0.0);
        hi = hi.max(0.0);
    }
    if !(lo.is_finite() && hi.is_finite() && (hi - lo).is_finite()) {
        return (0.0, 1.0);
    }
    if hi > lo {
        (lo, hi)
    } else if lo == 0.0 {
        (0.0, 1.0)
    } else {
        let pad = lo.abs() * 0.1;
        (lo - pad, hi + pad)
    }
}

/// A round step (1, 2 or 5 times a power of ten) giving about `target`
/// intervals over `span`.
fn nice_step(span: f64, target: usize) -> f64 {
    let raw = span / target as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// The fewest decimals that show multiples of `step` exactly.
fn decimals_for(step: f64) -> usize {
    (0..=8)
        .find(|&d| {
            let m = step * 10f64.powi(d);
            (m - m.round()).abs() < 1e-6 * m.abs().max(1.0)
        })
        .map_or(8, |d| d as usize)
}

/// A chart's canvas and the margins around its plot area.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Frame {
    pub(super) width: f64,
    pub(super) height: f64,
    pub(super) left: f64,
    pub(super) right: f64,
    pub(super) top: f64,
    pub(super) bottom: f64,
}

impl Frame {
    pub(super) fn x0(&self) -> f64 {
        self.left
    }

    pub(super) fn x1(&self) -> f64 {
        self.width - self.right
    }

    pub(super) fn y_top(&self) -> f64 {
        self.top
    }

    pub(super) fn y_bottom(&self) -> f64 {
        self.height - self.bottom
    }

    /// Horizontal position of `v` on `axis`.
    pub(super) fn x(&self, axis: &Axis, v: f64) -> f64 {
        self.x0() + axis.frac(v) * (self.x1() - self.x0())
    }

    /// Vertical position of `v` on `axis` (larger values higher up).
    pub(super) fn y(&self, axis: &Axis, v: f64) -> f64 {
        self.y_bottom() - axis.frac(v) * (self.y_bottom() - self.y_top())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_have_nice_ticks_and_survive_degenerate_data() {
        let a = Axis::new([0.013, 0.37], true, 5);
        assert_eq!(a.lo, 0.0);
        assert!((a.hi - 0.4).abs() < 1e-12);
        assert_eq!(
            a.ticks.iter().map(|&t| a.label(t)).collect::<Vec<_>>(),
            ["0", "0.1", "0.2", "0.3", "0.4"]
        );
        let big = Axis::new([0.0, 200_000.0], true, 5);
        assert_eq!(big.label(big.ticks[1]), "50k");
        let flat = Axis::new([5.0, 5.0], false, 5);
        assert!(flat.lo < 5.0 && flat.hi > 5.0);
        let nothing = Axis::new([f64::NAN, f64::INFINITY], true, 5);
        assert_eq!((nothing.lo, nothing.hi), (0.0, 1.0));
        assert_eq!(Axis::new([0.0, 0.0], true, 5).hi, 1.0);
    }
}
