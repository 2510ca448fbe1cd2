"""Distributed linear algebra over a :class:`~dac.Comm`.

Every member calls the same function with its own piece of the data and
gets the same global answer. A problem found on one member (a shape that
does not fit, a NaN) is raised on every member, naming it; so is an
invalid argument that member finds before the call (a dtype that is not
real numbers, a wrong number of dimensions): it gets the detailed error,
the others the same exception class naming it in ``ranks``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from . import _native
from ._arrays import Float64Array, as_count, as_float, as_scalar
from ._comm import Comm, local_checks

__all__ = ["dot", "norm", "matvec", "lstsq", "cg", "LstsqResult", "CgResult"]


def dot(comm: Comm, x: Any, y: Any) -> float:
    """``x · y`` for vectors split across members: each passes its own
    entries of ``x`` and ``y`` (any lengths, the same on both).

    >>> import numpy as np, dac
    >>> with dac.init(size=1, rank=0) as comm:
    ...     dac.linalg.dot(comm, np.array([1.0, 2.0]), np.array([3.0, 4.0]))
    11.0
    """
    r = comm.rank
    with local_checks(comm):
        xs, ys = as_float(x, "x", (1,), r), as_float(y, "y", (1,), r)
    return _native.dot(comm._native, xs, ys)


def norm(comm: Comm, x: Any) -> float:
    """``‖x‖₂`` for a vector split across members.

    >>> import numpy as np, dac
    >>> with dac.init(size=1, rank=0) as comm:
    ...     dac.linalg.norm(comm, np.array([3.0, 4.0]))
    5.0
    """
    with local_checks(comm):
        xs = as_float(x, "x", (1,), comm.rank)
    return _native.norm(comm._native, xs)


def matvec(comm: Comm, a_cols: Any, x: Any) -> Float64Array:
    """``A x`` for ``A`` split by columns: each member passes its columns
    ``a_cols`` (``m × k_i``) and the matching entries of ``x`` (``k_i``);
    every member gets the whole ``A x`` (``m``).

    >>> import numpy as np, dac
    >>> with dac.init(size=1, rank=0) as comm:
    ...     dac.linalg.matvec(comm, np.eye(2) * 2, np.array([1.0, -1.0])).tolist()
    [2.0, -2.0]
    """
    r = comm.rank
    with local_checks(comm):
        a, xs = as_float(a_cols, "a_cols", (2,), r), as_float(x, "x", (1,), r)
    return _native.matvec(comm._native, a, xs)


@dataclass(frozen=True)
class LstsqResult:
    """The answer of :func:`lstsq`, the same on every member."""

    x: Float64Array
    """The solution: ``(n,)`` for a vector ``b``, ``(n, k)`` for ``k``
    right-hand sides."""
    residual_norm: float
    """``‖A x − b‖`` over all members' rows."""
    condition: float
    """Condition estimate of the equilibrated ``AᵀA + ridge·I`` (about
    ``cond(A)²``); infinite if singular."""
    rounds: int
    """Consensus rounds, over all the call's reductions."""
    solver: str
    """``"cholesky"``, or ``"rank-revealing"`` for a (numerically) singular
    or very ill-conditioned problem, solved for the minimum-norm x."""
    rank: Optional[int]
    """The numerical rank, from the rank-revealing solver."""
    refinements: int
    """Iterative-refinement steps taken."""


def lstsq(
    comm: Comm, a_rows: Any, b: Any, ridge: float = 0.0, intercept: Optional[int] = None
) -> LstsqResult:
    """``min ‖A x − b‖² + ridge·‖x‖²`` for ``A`` and ``b`` split by rows:
    each member passes its rows of ``A`` (``r_i × n``) and of ``b``
    (``r_i``, or ``r_i × k``).

    ``intercept`` is a column of ``A`` left out of the penalty, usually
    the intercept's column of ones (``None``: every column is penalised).
    With it the fit is scikit-learn's ``Ridge(alpha=ridge,
    fit_intercept=True)`` on the other columns. Every member must pass the
    same ``ridge`` and ``intercept``; an ``intercept`` that is not a column
    of ``A`` raises :class:`~dac.ArgumentError` on every member.

    >>> import numpy as np, dac
    >>> a = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 2.0]])
    >>> with dac.init(size=1, rank=0) as comm:
    ...     fit = dac.linalg.lstsq(comm, a, np.array([1.0, 3.0, 5.0]))
    >>> np.round(fit.x, 12).tolist(), fit.solver
    ([1.0, 2.0], 'cholesky')
    """
    r = comm.rank
    with local_checks(comm):
        a = as_float(a_rows, "a_rows", (2,), r)
        rhs = as_float(b, "b", (1, 2), r)
        ridge = as_scalar(ridge, "ridge", r)
        column = None if intercept is None else as_count(intercept, "intercept", r)
    fit = _native.lstsq(comm._native, a, rhs[:, None] if rhs.ndim == 1 else rhs, ridge, column)
    return LstsqResult(
        x=fit.x[:, 0] if rhs.ndim == 1 else fit.x,
        residual_norm=fit.residual_norm,
        condition=fit.condition,
        rounds=fit.rounds,
        solver=fit.solver,
        rank=fit.rank,
        refinements=fit.refinements,
    )


@dataclass(frozen=True)
class CgResult:
    """The answer of :func:`cg`, the same on every member (up to ``tol``)."""

    x: Float64Array
    """The whole solution (``n``), on every member."""
    iterations: int
    """Iterations taken (one reduction each)."""
    residual_norm: float
    """``‖b − A x‖`` of the recurrence at the end: absolute, not relative
    (the stopping test is ``residual_norm ≤ tol·‖b‖``)."""
    rounds: int
    """Consensus rounds, over all the call's reductions."""


def cg(comm: Comm, a_rows: Any, b: Any, tol: float = 1e-10, max_iter: int = 1000) -> CgResult:
    """Conjugate gradients for ``A x = b`` with ``A`` symmetric positive
    definite (``n × n``) split by rows: member ``i`` passes its rows
    ``a_rows`` (``r_i × n``) and the matching entries of ``b`` (``r_i``),
    the pieces in rank order. Stops when ``‖b − A x‖ ≤ tol·‖b‖``; raises
    :class:`~dac.ConvergenceError` after ``max_iter`` iterations.

    >>> import numpy as np, dac
    >>> a = np.array([[4.0, 1.0], [1.0, 3.0]])
    >>> with dac.init(size=1, rank=0) as comm:
    ...     sol = dac.linalg.cg(comm, a, np.array([1.0, 2.0]))
    >>> bool(np.allclose(a @ sol.x, [1.0, 2.0], rtol=1e-9)), sol.iterations
    (True, 2)
    """
    r = comm.rank
    with local_checks(comm):
        a, rhs = as_float(a_rows, "a_rows", (2,), r), as_float(b, "b", (1,), r)
        tol, max_iter = as_scalar(tol, "tol", r), as_count(max_iter, "max_iter", r)
    sol = _native.cg(comm._native, a, rhs, tol, max_iter)
    return CgResult(
        x=sol.x, iterations=sol.iterations, residual_norm=sol.residual_norm, rounds=sol.rounds
    )
