//! Per-round measurements of a simulated run.

/// What the simulator measured over all members that completed a round.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TraceRow {
    /// The round.
    pub round: u32,
    /// Members that reached it.
    pub nodes: usize,
    /// Largest distance (max norm) of a member's estimate from the exact
    /// mean of those members' inputs.
    pub max_error: f64,
    /// Largest residual bound the members computed themselves.
    pub residual: f64,
    /// Mass conservation: `‖Σ_i M_i − Σ_i (v_i, 1)‖∞ / max(1, ‖Σ_i v_i‖∞)`
    /// over those members, counting flows still held towards crashed
    /// members. Zero up to rounding while no member departs.
    pub mass_defect: f64,
}

/// Running sums for one round.
#[derive(Clone, Debug)]
pub(super) struct RoundSums {
    pub(super) nodes: usize,
    /// Σ of masses plus flows held towards crashed members (`dim + 1`).
    pub(super) mass: Vec<f64>,
    /// Σ of inputs, then the member count (`dim + 1`).
    pub(super) inputs: Vec<f64>,
    pub(super) min: Vec<f64>,
    pub(super) max: Vec<f64>,
    pub(super) residual: f64,
}

impl RoundSums {
    pub(super) fn new(dim: usize) -> RoundSums {
        RoundSums {
            nodes: 0,
            mass: vec![0.0; dim + 1],
            inputs: vec![0.0; dim + 1],
            min: vec![f64::INFINITY; dim],
            max: vec![f64::NEG_INFINITY; dim],
            residual: 0.0,
        }
    }

    /// Adds one member's state: its mass, its input, and the flows it still
    /// holds towards crashed members.
    pub(super) fn add<'a>(
        &mut self,
        mass: &[f64],
        input: &[f64],
        held: impl Iterator<Item = &'a [f64]>,
        residual: f64,
    ) {
        let dim = input.len();
        self.nodes += 1;
        for (s, m) in self.mass.iter_mut().zip(mass) {
            *s += m;
        }
        for flow in held {
            for (s, f) in self.mass.iter_mut().zip(flow) {
                *s += f;
            }
        }
        for (s, x) in self.inputs.iter_mut().zip(input) {
            *s += x;
        }
        self.inputs[dim] += 1.0;
        let weight = mass[dim];
        for ((lo, hi), s) in self.min.iter_mut().zip(&mut self.max).zip(&mass[..dim]) {
            let e = s / weight;
            *lo = lo.min(e);
            *hi = hi.max(e);
        }
        if residual.is_finite() {
            self.residual = self.residual.max(residual);
        }
    }

    pub(super) fn row(&self, round: u32) -> TraceRow {
        let dim = self.min.len();
        let count = self.nodes.max(1) as f64;
        let mut max_error = 0.0f64;
        for c in 0..dim {
            let mean = self.inputs[c] / count;
            max_error = max_error
                .max((self.max[c] - mean).abs())
                .max((mean - self.min[c]).abs());
        }
        let scale = self.inputs[..dim]
            .iter()
            .fold(1.0f64, |a, x| a.max(x.abs()));
        let defect = self
            .mass
            .iter()
            .zip(&self.inputs)
            .map(|(m, v)| (m - v).abs())
            .fold(0.0, f64::max);
        TraceRow {
            round,
            nodes: self.nodes,
            max_error,
            residual: self.residual,
            mass_defect: defect / scale,
        }
    }
}
