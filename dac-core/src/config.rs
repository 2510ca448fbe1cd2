//! Reduction configuration and its validation.

use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::schedule::{ExactPlan, Schedule};

/// Parameters of a reduction, shared by every member.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Which exchanges happen in a round.
    pub schedule: Schedule,
    /// Target accuracy: every member stops within
    /// `tol·max(1, ‖x̄‖∞)` of the exact mean `x̄`, in the max norm.
    pub tol: f64,
    /// Rounds after which the reduction fails with
    /// [`Error::NotConverged`].
    pub max_rounds: u32,
}

impl Default for Config {
    /// The exact schedule, `tol = 1e-12`, `max_rounds = 100 000`.
    fn default() -> Config {
        Config {
            schedule: Schedule::Exact,
            tol: 1e-12,
            max_rounds: 100_000,
        }
    }
}

impl Config {
    /// Checks the parameters that do not depend on the graph.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the field: `tol` must lie in
    /// `(0, 1)`, `max_rounds` must be positive, a Laplacian `eps` must be a
    /// positive finite number.
    pub fn validate(&self) -> Result<()> {
        if !(self.tol > 0.0 && self.tol < 1.0) {
            return Err(Error::config(
                "tol",
                format!("must lie in (0, 1), got {}", self.tol),
            ));
        }
        if self.max_rounds == 0 {
            return Err(Error::config("max_rounds", "must be at least 1, got 0"));
        }
        self.schedule.validate()
    }

    /// Checks the parameters against the graph the members will use.
    ///
    /// # Errors
    /// Everything [`Config::validate`] reports, plus
    /// [`Error::Disconnected`] for a disconnected graph,
    /// [`Error::LaplacianStepTooLarge`] when `eps ≥ 1/max_degree`, and
    /// [`Error::ExactNeedsEdge`] when the exact schedule pairs two nodes the
    /// graph does not connect.
    pub fn validate_for(&self, graph: &Graph) -> Result<()> {
        self.validate()?;
        graph.check_connected()?;
        match self.schedule {
            Schedule::Laplacian { eps } => {
                let max_degree = graph.max_degree();
                if max_degree > 0 && eps * max_degree as f64 >= 1.0 {
                    return Err(Error::LaplacianStepTooLarge {
                        eps,
                        max_degree,
                        limit: 1.0 / max_degree as f64,
                    });
                }
            }
            Schedule::Metropolis => {}
            Schedule::Exact => {
                let plan = ExactPlan::new(graph.len() as u32);
                if let Some((round, a, b)) = plan
                    .pairs()
                    .find(|&(_, a, b)| !graph.has_edge(a as usize, b as usize))
                {
                    return Err(Error::ExactNeedsEdge {
                        a: a as usize,
                        b: b as usize,
                        round,
                    });
                }
            }
        }
        Ok(())
    }
}
