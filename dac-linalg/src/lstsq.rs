//! Least squares on rows split across ranks, by consensus on the normal
//! equations, equilibrated and refined so that badly scaled data keeps its
//! accuracy.

use dac_core::Communicator;
use nalgebra::{DMatrix, SymmetricEigen};
use ndarray::{Array2, ArrayBase, Data, Ix2};

use crate::check::{Ballot, Verdict, at_limit, dissenters, reduce_checked};
use crate::error::{LinalgError, Result};
use crate::ops::upper_triangle;

/// Options of [`lstsq`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LstsqOptions {
    /// `λ ≥ 0` in `min ‖A x − b‖² + λ‖x‖²` (default 0).
    pub ridge: f64,
    /// A column of `A` left out of the ridge penalty, usually the
    /// intercept's column of ones (default `None`: every column is
    /// penalised). With it the fit is scikit-learn's `Ridge` with
    /// `fit_intercept=True`: `min ‖A x − b‖² + λ Σ_{j ≠ c} x_j²`.
    pub intercept: Option<usize>,
    /// Most refinement steps, each one more reduction of `Aᵀ(b − A x)`
    /// (default 6; refinement stops earlier once it no longer helps).
    pub max_refinements: usize,
    /// Above this condition estimate of the equilibrated normal matrix the
    /// solve switches to the rank-revealing one (default `1e14`, about
    /// `cond(A) = 1e7`).
    pub max_condition: f64,
    /// Relative cutoff of the rank-revealing solve: eigenvalues of `AᵀA`
    /// below `rcond · λ_max` count as zero (default `1e-12`, singular values
    /// of `A` below `1e-6 · σ_max`).
    pub rcond: f64,
}

impl Default for LstsqOptions {
    fn default() -> LstsqOptions {
        LstsqOptions {
            ridge: 0.0,
            intercept: None,
            max_refinements: 6,
            max_condition: 1e14,
            rcond: 1e-12,
        }
    }
}

/// How the system was solved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Solver {
    /// Cholesky of the equilibrated normal equations, refined.
    Cholesky,
    /// The normal matrix was (numerically) singular or too ill-conditioned:
    /// the minimum-norm solution from its eigen-decomposition.
    RankRevealing {
        /// Eigenvalues kept (the numerical rank of `A`).
        rank: usize,
    },
}

/// The answer of [`lstsq`], the same on every rank.
#[derive(Clone, Debug, PartialEq)]
pub struct Lstsq {
    /// The solution, `n × k` (one column per right-hand side).
    pub x: Array2<f64>,
    /// `‖A x − b‖` (Frobenius over the right-hand sides), computed by
    /// consensus on the ranks' residuals.
    pub residual_norm: f64,
    /// Condition estimate of the equilibrated `AᵀA + λI` (its eigenvalue
    /// ratio; `cond(A)` is about its square root). Infinite if singular.
    pub condition: f64,
    /// How it was solved.
    pub solver: Solver,
    /// Refinement steps taken.
    pub refinements: usize,
    /// Consensus rounds used, over all the reductions of the call.
    pub rounds: u64,
}

/// `min ‖A x − b‖² + ridge‖x‖²` for `A` and `b` split by rows: rank `i`
/// holds `a_rows` (`r_i × n`) and the matching rows of `b` (`r_i × k`, one
/// column per right-hand side); every rank gets the solution.
///
/// One reduction sums the local `A_iᵀA_i` and `A_iᵀb_i`. The columns are
/// then equilibrated from the diagonal of `AᵀA` (data in very different
/// units) and the system is solved locally by Cholesky; each refinement
/// step is one more reduction of `Aᵀ(b − A x)` (which also yields
/// `‖A x − b‖`). When the equilibrated matrix is singular or its condition
/// estimate exceeds `max_condition`, the minimum-norm solution comes from a
/// rank-revealing eigen-decomposition instead, and the result says so.
///
/// # Errors
/// [`LinalgError::Shape`] (rows of `b` not matching `a_rows`, ranks
/// disagreeing on `n` or `k`), [`LinalgError::NonFinite`],
/// [`LinalgError::Empty`] (no rows or no columns anywhere),
/// [`LinalgError::InvalidArgument`] (a negative or non-finite `ridge`,
/// ranks passing different ridges, or different `max_refinements` when
/// refinement reaches one), [`LinalgError::Incomplete`], or the
/// reduction's error — on every rank alike, naming the same ranks.
pub fn lstsq<C, S, T>(
    comm: &mut C,
    a_rows: &ArrayBase<S, Ix2>,
    b: &ArrayBase<T, Ix2>,
    options: &LstsqOptions,
) -> Result<Lstsq>
where
    C: Communicator,
    S: Data<Elem = f64>,
    T: Data<Elem = f64>,
{
    let (r, n) = a_rows.dim();
    let k = b.ncols();
    let mut verdict = Verdict::operands(("A", a_rows), "rows", r, ("b", b));
    options.check(n, &mut verdict);
    // One reduction: upper(AᵀA) | Aᵀb (row-major, n × k).
    let mut data = Vec::with_capacity(n * (n + 1) / 2 + n * k);
    if verdict.is_ok() {
        data.extend(upper_triangle(&a_rows.t().dot(a_rows)));
        data.extend(a_rows.t().dot(b).iter());
    } else {
        data.resize(n * (n + 1) / 2 + n * k, 0.0);
    }
    let [ridge_vote, intercept_vote] = options.votes();
    let meta = [r as f64, n as f64, k as f64, ridge_vote, intercept_vote];
    let ballot = Ballot::new(verdict).with_values(&meta);
    let sums = reduce_checked(comm, ballot, &data, "the normal equations")?;
    let rounds = u64::from(sums.rounds);
    let (rank, size) = (comm.rank(), comm.size());
    let ranks = sums.ranks.clone();
    let shape = |o: usize| (sums.tally.count(o, 1), sums.tally.count(o, 2));
    let odd = dissenters(&ranks, |a, b| shape(a) == shape(b));
    if !odd.is_empty() {
        let shapes: Vec<_> = ranks.iter().map(|&o| shape(o)).collect();
        return Err(LinalgError::Shape {
            reason: format!(
                "rank(s) {odd:?} pass another number of columns or right-hand sides than the \
                 others: (columns, right-hand sides) by rank {shapes:?}"
            ),
        });
    }
    options.agreed(&ranks, |r| &sums.tally.values(r)[3..])?;
    if n == 0 || (0..size).all(|o| sums.tally.count(o, 0) == 0) {
        return Err(LinalgError::Empty {
            what: "least squares without rows or columns",
        });
    }
    let (g, c) = unpack_normal(&sums.data, n, k);
    let rows_here = a_rows;
    solve_and_refine(&g, &c, options, rounds, |x, vote| {
        let xa = to_ndarray(x);
        let resid = b.to_owned() - rows_here.dot(&xa);
        // Row-major n × k, as in the first reduction.
        let mut data: Vec<f64> = rows_here.t().dot(&resid).iter().copied().collect();
        data.push(resid.iter().map(|v| v * v).sum());
        let ballot = Ballot::ok().with_votes(&vote);
        let step = reduce_checked(comm, ballot, &data, "the refinement")?;
        let (grad, votes) = (&step.data, &step.tally.votes);
        // The voters are the members the reduction ran over.
        let voters = step.ranks.len();
        let limit = at_limit(
            (rank, size),
            vote[2] > 0.5,
            (count(votes[2]), voters),
            "max_refinements",
            |flags| {
                reduce_checked(comm, Ballot::ok(), flags, "the refinement limits")
                    .map(|limits| (limits.data, limits.ranks))
            },
        )?;
        Ok(Refinement {
            grad: grad[..n * k].to_vec(),
            residual2: grad[n * k],
            stop_votes: votes[0],
            cholesky_votes: votes[1],
            voters,
            limit,
            abandon: false,
            rounds: u64::from(step.rounds),
        })
    })
}

impl LstsqOptions {
    /// The penalty of column `j`: `ridge`, or 0 for the intercept.
    fn penalty(&self, j: usize) -> f64 {
        if self.intercept == Some(j) {
            0.0
        } else {
            self.ridge
        }
    }

    /// This rank's ridge options as two numbers for the reductions' option
    /// votes: the ridge, and the intercept column plus one (0 for none).
    pub(crate) fn votes(&self) -> [f64; 2] {
        [
            if self.ridge.is_finite() {
                self.ridge
            } else {
                0.0
            },
            self.intercept.map_or(0.0, |c| c as f64 + 1.0),
        ]
    }

    /// Checks the ridge options against `n` columns, into `verdict`.
    pub(crate) fn check(&self, n: usize, verdict: &mut Verdict) {
        let ridge = self.ridge;
        if !(ridge >= 0.0 && ridge.is_finite()) {
            verdict.argument(|| format!("ridge = {ridge} must be a finite number ≥ 0"));
        }
        if let Some(c) = self.intercept.filter(|&c| c >= n) {
            verdict.argument(|| format!("intercept = {c} is not a column of A (it has {n})"));
        }
    }

    /// Says this rank's ridge options, for an error about different ones.
    /// Fails on every rank, naming the ranks outside the largest group
    /// that agrees, when the `ranks` passed different ridge options
    /// (`votes(r)`: rank `r`'s [`LstsqOptions::votes`], as summed).
    pub(crate) fn agreed<'a>(
        &self,
        ranks: &[usize],
        votes: impl Fn(usize) -> &'a [f64],
    ) -> Result<()> {
        let odd = dissenters(ranks, |a, b| same_ridge_votes(votes(a), votes(b)));
        if odd.is_empty() {
            return Ok(());
        }
        Err(LinalgError::InvalidArgument {
            ranks: odd,
            detail: format!(
                "{}: every rank must pass the same options",
                self.describe_ridge()
            ),
        })
    }

    fn describe_ridge(&self) -> String {
        match self.intercept {
            None => format!("ridge = {} here", self.ridge),
            Some(c) => format!("ridge = {} and intercept = {c} here", self.ridge),
        }
    }
}

/// Whether two ranks' ridge votes (as a reduction returned them) are the
/// same.
fn same_ridge_votes(a: &[f64], b: &[f64]) -> bool {
    same_ridge(a[0], b[0]) && a[1] == b[1]
}

/// Whether two ranks' ridges (as a reduction returned them) are the same.
fn same_ridge(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// A summed count of votes.
pub(crate) fn count(votes: f64) -> usize {
    votes.round().max(0.0) as usize
}

/// `G` (from its upper triangle) and `C = Aᵀb` (`n × k`) from a summed
/// `upper(AᵀA) | Aᵀb` vector.
pub(crate) fn unpack_normal(data: &[f64], n: usize, k: usize) -> (DMatrix<f64>, DMatrix<f64>) {
    let mut g = DMatrix::zeros(n, n);
    let mut it = data.iter().copied();
    for i in 0..n {
        for j in i..n {
            let v = it.next().unwrap_or(0.0);
            g[(i, j)] = v;
            g[(j, i)] = v;
        }
    }
    let c = DMatrix::from_iterator(k, n, it.take(n * k)).transpose();
    (g, c)
}

/// What one refinement reduction returns: `Aᵀ(b − A x)` (row-major
/// `n × k`), `‖b − A x‖²`, the ranks' votes and how many voted.
pub(crate) struct Refinement {
    pub(crate) grad: Vec<f64>,
    pub(crate) residual2: f64,
    pub(crate) stop_votes: f64,
    pub(crate) cholesky_votes: f64,
    pub(crate) voters: usize,
    /// Every rank has taken its `max_refinements` steps (from the vote;
    /// ranks that disagree on it fail the reduction instead).
    pub(crate) limit: bool,
    /// The step summed fewer partitions than the normal matrix (a
    /// replicated job lost one): the solve must start again.
    pub(crate) abandon: bool,
    pub(crate) rounds: u64,
}

/// Solves the summed normal equations and refines the solution; `refine`
/// does one reduction of `Aᵀ(b − A x)` for the current `x`, carrying this
/// rank's votes `[stop, Cholesky, at max_refinements]`.
pub(crate) fn solve_and_refine(
    g: &DMatrix<f64>,
    c: &DMatrix<f64>,
    options: &LstsqOptions,
    mut rounds: u64,
    mut refine: impl FnMut(&DMatrix<f64>, [f64; 3]) -> Result<Refinement>,
) -> Result<Lstsq> {
    let (n, k) = (c.nrows(), c.ncols());
    let mut system = System::new(g, options, None);
    let mut x = system.solve(c);
    let mut refinements = 0;
    // (Only an abandoned attempt, which is never returned, leaves it NaN.)
    let mut residual_norm2 = f64::NAN;
    let mut last_step = f64::INFINITY;
    let mut stop_vote = 0.0;
    let mut first = true;
    // Refine: x += solve(Aᵀ(b − A x) − λD x). Each pass also measures
    // ‖b − A x‖ for the current x. Ranks' copies of the sums may differ in
    // their last bits, so every decision that changes the number of
    // reductions (stop, the refinement limit) or the answer (which solver)
    // is a vote carried in the reduction, the same on every rank.
    loop {
        let step = refine(
            &x,
            [
                stop_vote,
                f64::from(u8::from(system.solver == Solver::Cholesky)),
                f64::from(u8::from(refinements >= options.max_refinements)),
            ],
        )?;
        rounds += step.rounds;
        if step.abandon {
            break;
        }
        residual_norm2 = step.residual2.max(0.0);
        let majority = |votes: f64| 2.0 * votes.round() > step.voters as f64;
        // This rank's estimate fell on the other side of the threshold:
        // it solves as the majority does, and this pass counts as a step
        // on it as on the others, so that every rank stops after the same
        // reductions.
        let resolved =
            first && majority(step.cholesky_votes) != (system.solver == Solver::Cholesky);
        if resolved {
            system = System::new(g, options, Some(majority(step.cholesky_votes)));
            x = system.solve(c);
        }
        first = false;
        if step.limit || majority(step.stop_votes) {
            break;
        }
        refinements += 1;
        if resolved {
            continue;
        }
        let grad = DMatrix::from_iterator(k, n, step.grad.iter().copied()).transpose()
            - DMatrix::from_fn(n, k, |i, j| x[(i, j)] * options.penalty(i));
        let dx = system.solve(&grad);
        let norm = dx.norm();
        // Further steps are useless once a step no longer shrinks or is at
        // rounding level (this one is still applied: it is that small).
        if !(norm < last_step && norm > 1e-15 * x.norm()) {
            stop_vote = 1.0;
        }
        x += dx;
        last_step = norm;
    }
    Ok(Lstsq {
        x: to_ndarray(&x),
        residual_norm: residual_norm2.sqrt(),
        condition: system.condition,
        solver: system.solver,
        refinements,
        rounds,
    })
}

pub(crate) fn to_ndarray(m: &DMatrix<f64>) -> Array2<f64> {
    Array2::from_shape_fn(m.shape(), |(i, j)| m[(i, j)])
}

/// A factorised normal matrix.
struct System {
    /// Column scaling `D` (the equilibrated matrix is `D G D`).
    scale: Vec<f64>,
    factor: Factor,
    condition: f64,
    solver: Solver,
}

enum Factor {
    Cholesky(nalgebra::Cholesky<f64, nalgebra::Dyn>),
    /// Minimum-norm pseudo-inverse of the unscaled `G + λI`.
    Pseudo(DMatrix<f64>),
}

impl System {
    /// Factorises `g + λD` (`D` the identity, without the intercept): by Cholesky when `cholesky` says so, or (when
    /// `None`) when the equilibrated matrix is positive definite with a
    /// condition estimate within `max_condition`.
    fn new(g: &DMatrix<f64>, options: &LstsqOptions, cholesky: Option<bool>) -> System {
        let n = g.nrows();
        let scale: Vec<f64> = (0..n)
            .map(|j| {
                let d = g[(j, j)] + options.penalty(j);
                if d > 0.0 { 1.0 / d.sqrt() } else { 1.0 }
            })
            .collect();
        let mut gs = g.clone();
        for i in 0..n {
            gs[(i, i)] += options.penalty(i);
        }
        let equilibrated = DMatrix::from_fn(n, n, |i, j| gs[(i, j)] * scale[i] * scale[j]);
        let eigen = SymmetricEigen::new(equilibrated.clone()).eigenvalues;
        let (lo, hi) = eigen.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &e| {
            (lo.min(e), hi.max(e))
        });
        let condition = if lo > 0.0 { hi / lo } else { f64::INFINITY };
        if cholesky.unwrap_or(condition <= options.max_condition)
            && let Some(chol) = equilibrated.cholesky()
        {
            return System {
                scale,
                factor: Factor::Cholesky(chol),
                condition,
                solver: Solver::Cholesky,
            };
        }
        // Rank-revealing: the pseudo-inverse of the unscaled matrix gives
        // the minimum-norm solution in the user's own units.
        let eig = SymmetricEigen::new(gs);
        let top = eig.eigenvalues.iter().fold(0.0f64, |m, &e| m.max(e));
        let cutoff = options.rcond * top;
        let mut rank = 0;
        let inv = DMatrix::from_diagonal(&eig.eigenvalues.map(|e| {
            if e > cutoff {
                rank += 1;
                1.0 / e
            } else {
                0.0
            }
        }));
        let pseudo = &eig.eigenvectors * inv * eig.eigenvectors.transpose();
        System {
            scale: vec![1.0; n],
            factor: Factor::Pseudo(pseudo),
            condition,
            solver: Solver::RankRevealing { rank },
        }
    }

    /// `(G + λI)⁻¹ rhs` (or its minimum-norm version).
    fn solve(&self, rhs: &DMatrix<f64>) -> DMatrix<f64> {
        match &self.factor {
            Factor::Cholesky(chol) => {
                let scaled =
                    DMatrix::from_fn(rhs.nrows(), rhs.ncols(), |i, j| rhs[(i, j)] * self.scale[i]);
                let y = chol.solve(&scaled);
                DMatrix::from_fn(y.nrows(), y.ncols(), |i, j| y[(i, j)] * self.scale[i])
            }
            Factor::Pseudo(p) => p * rhs,
        }
    }
}
