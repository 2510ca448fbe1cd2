"""Bayesian updates from data split across members: every member's data
counts once, and every member gets the same posterior.

A problem found on one member (a shape that does not fit, a NaN) is raised
on every member, naming it; so is an invalid argument that member finds
before the call (a dtype that is not real numbers, a wrong number of
dimensions, a log-density that raises): it gets the detailed error, the
others the same exception class naming it in ``ranks``.
"""

from __future__ import annotations

from typing import Any, Callable, Tuple, Union

import numpy as np

from . import _native
from ._arrays import Float64Array, as_float, as_scalar
from ._comm import Comm, local_checks
from .errors import ShapeError

__all__ = ["gaussian_linear", "grid_posterior"]

LogDensity = Union[Callable[[Any], float], Any]


def gaussian_linear(
    comm: Comm,
    x_rows: Any,
    y: Any,
    prior_mean: Any,
    prior_cov: Any,
    noise_var: float,
) -> Tuple[Float64Array, Float64Array]:
    """The posterior ``(mean, cov)`` of ``β`` in ``y = X β + ε``,
    ``ε ~ N(0, noise_var·I)``, prior ``β ~ N(prior_mean, prior_cov)``, from
    rows of ``X`` (``r_i × p``) and ``y`` (``r_i``) split across members.

    Exact, in information form: ``cov = (Σ₀⁻¹ + XᵀX/σ²)⁻¹``, ``mean = cov
    (Σ₀⁻¹ μ₀ + Xᵀy/σ²)``. Every member passes the same prior and
    ``noise_var``; feeding the result back as the prior for new data gives
    the same answer as one update on all of it.

    >>> import numpy as np, dac
    >>> with dac.init(size=1, rank=0) as comm:
    ...     mean, cov = dac.bayes.gaussian_linear(
    ...         comm, np.ones((4, 1)), np.array([1.0, 2.0, 3.0, 4.0]),
    ...         prior_mean=np.zeros(1), prior_cov=np.eye(1), noise_var=1.0)
    >>> round(float(mean[0]), 12), round(float(cov[0, 0]), 12)
    (2.0, 0.2)
    """
    r = comm.rank
    with local_checks(comm):
        x, ys = as_float(x_rows, "x_rows", (2,), r), as_float(y, "y", (1,), r)
        mean0 = as_float(prior_mean, "prior_mean", (1,), r)
        cov0 = as_float(prior_cov, "prior_cov", (2,), r)
        noise_var = as_scalar(noise_var, "noise_var", r)
    posterior = _native.gaussian_linear(comm._native, x, ys, mean0, cov0, noise_var)
    return posterior.mean, posterior.cov


def _at_points(f: LogDensity, grid: Float64Array, name: str, rank: int) -> Float64Array:
    """``f`` at every grid point (a row of ``grid``, or a float for a 1-D
    grid), or ``f`` itself if it is already an array of those values."""
    if callable(f):
        points = grid if grid.ndim == 1 else list(grid)
        return np.asarray(
            [as_scalar(f(theta), f"{name}(grid point {i})", rank) for i, theta in enumerate(points)],
            dtype=np.float64,
        )
    given = as_float(f, name, (1,), rank)
    if given.shape[0] != grid.shape[0]:
        raise ShapeError(
            f"rank {rank}: {name} has {given.shape[0]} values but the grid has "
            f"{grid.shape[0]} points",
            rank=rank,
        )
    return given


def grid_posterior(
    comm: Comm, grid: Any, log_prior: LogDensity, local_loglik: LogDensity
) -> Float64Array:
    """Posterior probabilities on a grid: ``π(θ) ∝ π₀(θ)·exp(Σ_i ln μ_i(θ))``,
    where member ``i`` contributes the log-likelihood of its own data.

    ``grid`` holds the points (``(points,)`` or ``(points, p)``);
    ``log_prior`` and ``local_loglik`` are functions of one point, or arrays
    of their values at the points. A value of ``-inf`` makes a point
    impossible. Returns probabilities summing to 1, the same on every
    member.

    >>> import numpy as np, dac
    >>> theta = np.linspace(0.05, 0.95, 19)            # a coin's bias
    >>> heads, tails = 7, 3
    >>> with dac.init(size=1, rank=0) as comm:
    ...     post = dac.bayes.grid_posterior(comm, theta, lambda t: 0.0,
    ...         lambda t: heads * np.log(t) + tails * np.log(1 - t))
    >>> round(float(post.sum()), 12), float(theta[post.argmax()])
    (1.0, 0.7)
    """
    r = comm.rank
    with local_checks(comm):
        points = as_float(grid, "grid", (1, 2), r)
        prior = _at_points(log_prior, points, "log_prior", r)
        loglik = _at_points(local_loglik, points, "local_loglik", r)
    return _native.grid_posterior(comm._native, prior, loglik)
