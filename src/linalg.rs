//! The little linear algebra the regression posteriors need: a dense
//! symmetric matrix and sparse vectors, with O(d^2) rank-1 updates.

use serde::{Deserialize, Serialize};

/// A sparse vector: (index, value) pairs with increasing indices.
pub(crate) type Sparse = [(u32, f64)];

/// A dense symmetric `d x d` matrix, row-major.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SymMatrix {
    d: usize,
    a: Vec<f64>,
}

impl SymMatrix {
    /// The diagonal matrix with this diagonal.
    pub fn diagonal(diag: &[f64]) -> Self {
        let d = diag.len();
        let mut a = vec![0.0; d * d];
        for (i, v) in diag.iter().enumerate() {
            a[i * d + i] = *v;
        }
        SymMatrix { d, a }
    }

    /// `scale` times the identity.
    pub fn scaled_identity(d: usize, scale: f64) -> Self {
        let mut a = vec![0.0; d * d];
        for i in 0..d {
            a[i * d + i] = scale;
        }
        SymMatrix { d, a }
    }

    /// Whether the storage holds exactly `d * d` finite numbers (a decoded
    /// record could claim otherwise).
    pub fn is_well_formed(&self) -> bool {
        self.d.checked_mul(self.d) == Some(self.a.len()) && self.a.iter().all(|v| v.is_finite())
    }

    /// The `d x d` matrix with these row-major entries; `None` when there
    /// are not `d * d` of them.
    pub fn from_row_major(d: usize, a: Vec<f64>) -> Option<Self> {
        (d.checked_mul(d) == Some(a.len())).then_some(SymMatrix { d, a })
    }

    /// The row-major entries.
    pub fn as_row_major(&self) -> &[f64] {
        &self.a
    }

    /// Dimension.
    pub fn dim(&self) -> usize {
        self.d
    }

    /// Entry (i, j).
    pub fn get(&self, i: usize, j: usize) -> f64 {
        self.a[i * self.d + j]
    }

    /// `x^T A x` for a sparse `x`: O(nnz^2). Entries of `x` beyond the
    /// dimension (a vector encoded under another feature spec) are ignored.
    pub fn quad(&self, x: &Sparse) -> f64 {
        let d = self.d;
        // By symmetry: the diagonal plus twice the lower triangle.
        let mut s = 0.0;
        for (k, &(i, xi)) in x.iter().enumerate() {
            let i = i as usize;
            let Some(row) = self.a.get(i * d..(i + 1) * d).filter(|_| i < d) else {
                continue;
            };
            let mut r = 0.0;
            for &(j, xj) in &x[..k] {
                r += row.get(j as usize).copied().unwrap_or(0.0) * xj;
            }
            s += xi * (2.0 * r + row[i] * xi);
        }
        s
    }

    /// `A x` for a sparse `x` (dense result): O(d nnz). Entries beyond the
    /// dimension are ignored.
    pub fn mul_sparse(&self, x: &Sparse) -> Vec<f64> {
        let d = self.d;
        let mut out = vec![0.0; d];
        for &(j, xj) in x.iter().filter(|(j, _)| (*j as usize) < d) {
            // A is symmetric: column j is row j.
            let row = &self.a[j as usize * d..(j as usize + 1) * d];
            for (o, a) in out.iter_mut().zip(row) {
                *o += a * xj;
            }
        }
        out
    }

    /// Column `j` (equal to row `j`).
    pub fn column(&self, j: usize) -> Vec<f64> {
        self.a[j * self.d..(j + 1) * self.d].to_vec()
    }

    /// `A -= c u u^T`: O(d^2).
    pub fn rank1_sub(&mut self, u: &[f64], c: f64) {
        for (i, ui) in u.iter().enumerate() {
            let cu = c * ui;
            if cu == 0.0 {
                continue;
            }
            let row = &mut self.a[i * self.d..(i + 1) * self.d];
            for (r, uj) in row.iter_mut().zip(u) {
                *r -= cu * uj;
            }
        }
    }
}

/// `w . x` for dense `w` and sparse `x`.
pub fn dot_sparse(w: &[f64], x: &Sparse) -> f64 {
    x.iter()
        .map(|&(i, v)| w.get(i as usize).copied().unwrap_or(0.0) * v)
        .sum()
}

/// Solves `A X = B` for a symmetric positive definite `A` (`n x n`,
/// row-major) and `B` of `n x m` (row-major), by Cholesky; `None` when `A`
/// is not positive definite or the sizes disagree. O(n^3 + n^2 m).
pub(crate) fn solve_positive_definite(
    a: &[f64],
    n: usize,
    b: &[f64],
    m: usize,
) -> Option<Vec<f64>> {
    if a.len() != n * n || b.len() != n * m {
        return None;
    }
    // A = L L', L lower triangular.
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let s = a[i * n + j] - (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum::<f64>();
            if i == j {
                if s.is_nan() || s <= 0.0 {
                    return None;
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    // L Y = B, then L' X = Y, a whole row of the m right-hand sides at a
    // time (the inner loops run along rows).
    let mut x = b.to_vec();
    for i in 0..n {
        let (done, rest) = x.split_at_mut(i * m);
        let row = &mut rest[..m];
        for k in 0..i {
            let c = l[i * n + k];
            if c != 0.0 {
                for (r, y) in row.iter_mut().zip(&done[k * m..(k + 1) * m]) {
                    *r -= c * y;
                }
            }
        }
        let d = l[i * n + i];
        row.iter_mut().for_each(|r| *r /= d);
    }
    for i in (0..n).rev() {
        let (head, later) = x.split_at_mut((i + 1) * m);
        let row = &mut head[i * m..];
        for k in i + 1..n {
            let c = l[k * n + i];
            if c != 0.0 {
                let at = (k - i - 1) * m;
                for (r, y) in row.iter_mut().zip(&later[at..at + m]) {
                    *r -= c * y;
                }
            }
        }
        let d = l[i * n + i];
        row.iter_mut().for_each(|r| *r /= d);
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positive_definite_solve_inverts_the_product() {
        let a = [4.0, 2.0, 0.6, 2.0, 5.0, 1.0, 0.6, 1.0, 3.0];
        let x = [1.0, -2.0, 0.5, 3.0, 0.25, -1.0];
        // B = A X for X of 3 x 2.
        let mut b = [0.0; 6];
        for i in 0..3 {
            for c in 0..2 {
                b[i * 2 + c] = (0..3).map(|k| a[i * 3 + k] * x[k * 2 + c]).sum();
            }
        }
        let got = solve_positive_definite(&a, 3, &b, 2).expect("positive definite");
        for (g, w) in got.iter().zip(x) {
            assert!((g - w).abs() < 1e-12, "{got:?}");
        }
        assert_eq!(
            solve_positive_definite(&[1.0, 2.0, 2.0, 1.0], 2, &[1.0, 1.0], 1),
            None
        );
        assert_eq!(solve_positive_definite(&a, 3, &b, 3), None);
    }

    #[test]
    fn quad_mul_and_rank1_agree_with_dense_arithmetic() {
        let mut a = SymMatrix::scaled_identity(3, 2.0);
        let u = [1.0, 2.0, 0.0];
        a.rank1_sub(&u, -0.5); // A = 2I + 0.5 u u^T
        assert_eq!(a.get(0, 1), 1.0);
        assert_eq!(a.get(1, 1), 4.0);
        let x: Vec<(u32, f64)> = vec![(0, 1.0), (1, -1.0)];
        // x^T A x = 2*2 + 0.5*(1-2)^2 = 4.5
        assert!((a.quad(&x) - 4.5).abs() < 1e-12);
        assert_eq!(a.mul_sparse(&x), vec![2.5 - 1.0, 1.0 - 4.0, 0.0]);
        assert_eq!(dot_sparse(&[1.0, 2.0, 3.0], &x), -1.0);
        // A vector from a wider encoding cannot index out of bounds.
        let wide: Vec<(u32, f64)> = vec![(0, 1.0), (1, -1.0), (7, 5.0)];
        assert!((a.quad(&wide) - 4.5).abs() < 1e-12);
        assert_eq!(a.mul_sparse(&wide), a.mul_sparse(&x));
    }

    #[test]
    fn quad_agrees_with_the_dense_product_at_every_sparsity() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let d = 23;
        let mut a = SymMatrix::scaled_identity(d, 1.5);
        for _ in 0..5 {
            let u: Vec<f64> = (0..d).map(|_| rng.random_range(-1.0..1.0)).collect();
            a.rank1_sub(&u, -0.3);
        }
        for nnz in 0..=d + 3 {
            // Increasing indices; the last three may lie beyond the
            // dimension (ignored).
            let mut idx: Vec<u32> = (0..d as u32 + 3).collect();
            for i in (1..idx.len()).rev() {
                idx.swap(i, rng.random_range(0..=i));
            }
            idx.truncate(nnz);
            idx.sort_unstable();
            let x: Vec<(u32, f64)> = idx
                .iter()
                .map(|&i| (i, rng.random_range(-2.0..2.0)))
                .collect();
            let mut dense = vec![0.0; d];
            for &(i, v) in x.iter().filter(|(i, _)| (*i as usize) < d) {
                dense[i as usize] = v;
            }
            let want: f64 = (0..d)
                .map(|i| {
                    (0..d)
                        .map(|j| dense[i] * a.get(i, j) * dense[j])
                        .sum::<f64>()
                })
                .sum();
            let got = a.quad(&x);
            assert!(
                (got - want).abs() <= 1e-12 * want.abs().max(1.0),
                "nnz {nnz}: {got} against {want}"
            );
        }
    }
}
