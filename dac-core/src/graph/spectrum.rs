//! Spectra of the consensus iteration matrices, and the rounds they predict.

use nalgebra::{DMatrix, SymmetricEigen};

use super::Graph;
use crate::error::{Error, Result};

/// Largest graph whose spectrum is computed (dense `O(n³)` eigensolver).
pub const SPECTRUM_MAX_NODES: usize = 4096;

/// The weights of a linear consensus iteration `x ← W x`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Weights {
    /// `W_ij = 1/(1 + max(d_i, d_j))` on edges, `W_ii = 1 − Σ_j W_ij`.
    Metropolis,
    /// `W = I − eps·L` with `L` the graph Laplacian.
    Laplacian {
        /// Step size.
        eps: f64,
    },
}

/// Eigenvalue summary of a consensus matrix `W` (symmetric, rows sum to 1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spectrum {
    /// Second-largest eigenvalue `λ₂` (the largest is 1).
    pub lambda2: f64,
    /// Smallest eigenvalue `λₙ`.
    pub lambda_min: f64,
    /// Second-largest eigenvalue modulus `max(|λ₂|, |λₙ|)`: the factor by
    /// which the disagreement shrinks per round, asymptotically.
    pub slem: f64,
    /// Spectral gap `1 − slem` (0 when the iteration does not converge).
    pub gap: f64,
}

impl Spectrum {
    /// Rounds the spectrum predicts for the disagreement to shrink by the
    /// factor `tol`: `⌈ln tol / ln slem⌉`. `Some(0)` for a single node,
    /// `None` when the iteration does not converge (`slem ≥ 1`) or `tol` is
    /// not in `(0, 1)`.
    pub fn rounds_for(&self, tol: f64) -> Option<u64> {
        let converges = self.slem < 1.0;
        if tol <= 0.0 || tol >= 1.0 || tol.is_nan() || !converges {
            return None;
        }
        if self.slem <= f64::EPSILON {
            return Some(1);
        }
        Some((tol.ln() / self.slem.ln()).ceil() as u64)
    }
}

impl Graph {
    /// The consensus matrix of this graph with the given weights.
    pub fn consensus_matrix(&self, weights: Weights) -> DMatrix<f64> {
        let n = self.len();
        let mut w = DMatrix::<f64>::zeros(n, n);
        for (a, b) in self.edges() {
            let x = match weights {
                Weights::Metropolis => 1.0 / (1 + self.degree(a).max(self.degree(b))) as f64,
                Weights::Laplacian { eps } => eps,
            };
            w[(a, b)] = x;
            w[(b, a)] = x;
        }
        for i in 0..n {
            let off: f64 = self.neighbors(i).map(|j| w[(i, j)]).sum();
            w[(i, i)] = 1.0 - off;
        }
        w
    }

    /// Eigenvalues of the consensus matrix: `λ₂`, `λₙ`, the second-largest
    /// modulus and the spectral gap.
    ///
    /// # Errors
    /// [`Error::SpectrumTooLarge`] above [`SPECTRUM_MAX_NODES`] nodes.
    pub fn spectrum(&self, weights: Weights) -> Result<Spectrum> {
        let n = self.len();
        if n > SPECTRUM_MAX_NODES {
            return Err(Error::SpectrumTooLarge {
                nodes: n,
                limit: SPECTRUM_MAX_NODES,
            });
        }
        if n == 1 {
            return Ok(Spectrum {
                lambda2: 0.0,
                lambda_min: 1.0,
                slem: 0.0,
                gap: 1.0,
            });
        }
        let mut eig: Vec<f64> = SymmetricEigen::new(self.consensus_matrix(weights))
            .eigenvalues
            .iter()
            .copied()
            .collect();
        eig.sort_by(|a, b| b.total_cmp(a));
        // eig[0] is the consensus eigenvalue 1 (for a connected graph).
        let lambda2 = eig[1];
        let lambda_min = eig[n - 1];
        let slem = lambda2.abs().max(lambda_min.abs());
        Ok(Spectrum {
            lambda2,
            lambda_min,
            slem,
            gap: (1.0 - slem).max(0.0),
        })
    }
}
