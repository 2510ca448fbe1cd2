"""In-process simulation of one reduction: no network, deterministic."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Mapping, Optional

from . import _native
from ._arrays import Float64Array, as_count, as_float
from .errors import ConvergenceError


@dataclass(frozen=True)
class SimulationResult:
    """The outcome of :func:`simulate`."""

    estimates: Float64Array
    """Each node's final value, shaped like ``inputs`` (a node that did not
    finish: its last estimate); rows of nodes that crashed are NaN."""
    rounds: int
    """The round at which the nodes finished (if some did not: the last
    round any node reached)."""
    converged: bool
    """Every node that did not crash finished, all agreeing on the
    contributors."""
    contributors: List[int]
    """The nodes whose inputs are in the estimates."""
    residuals: Float64Array
    """After each round (index ``k`` is round ``k + 1``), the largest
    residual bound the nodes computed."""
    errors: Float64Array
    """After each round, the largest distance (max norm) of a node's
    estimate from the exact mean of the inputs of the nodes that reached
    the round, computed centrally."""


def simulate(
    inputs: Any,
    topology: str = "exponential",
    schedule: str = "metropolis",
    tol: float = 1e-12,
    max_rounds: int = 100_000,
    drop_rate: float = 0.0,
    delay: int = 0,
    crash: Optional[Mapping[int, int]] = None,
    seed: int = 0,
) -> SimulationResult:
    """Simulates one averaging reduction among ``len(inputs)`` nodes.

    Each node starts with its row of ``inputs`` (shape ``(n_nodes, d)``, or
    ``(n_nodes,)`` for scalars) and talks only to its neighbours in
    ``topology`` (``complete``, ``ring``, ``torus``, ``torus:RxC``,
    ``random-regular:K``, ``exponential``, ``hypercube``, or
    ``edges:0-1,1-2,...``), exchanging in rounds by ``schedule``
    (``metropolis``, ``exact``, ``laplacian:EPS``) until every node is
    within ``tol * max(1, |mean|)`` of the exact mean (max norm). Messages
    are lost with probability ``drop_rate`` and delayed by up to ``delay``
    ticks (the simulator's time step: one tick is one round when nothing
    is lost or delayed); ``crash`` maps a node to the round at which it
    crashes. The run is deterministic for a given ``seed`` (which also
    draws random topologies).

    The defaults are those of the ``simulate`` program but one: the
    schedule is ``metropolis``, which runs on every topology, where the
    program's ``--schedule`` defaults to ``exact``, which needs the
    ``exponential``, ``hypercube`` or ``complete`` topology (any other
    raises :class:`~dac.ArgumentError` naming the missing edge).

    Raises :class:`~dac.ArgumentError` for unknown names and invalid
    settings, :class:`~dac.NonFiniteError` for NaN or infinite inputs,
    :class:`~dac.ShapeError` for inputs that are not 1-D or 2-D, and
    :class:`~dac.ConvergenceError` when the nodes reach ``max_rounds``
    before ``tol``: its ``rounds`` and ``residual`` say how far they got,
    and its ``result`` is the :class:`SimulationResult` so far
    (``converged`` false, the last estimates, the residual trace).

    >>> import numpy as np, dac
    >>> x = np.arange(8.0)
    >>> r = dac.simulate(x, topology="ring", drop_rate=0.2, seed=1)
    >>> r.converged, bool(np.allclose(r.estimates, x.mean(), atol=1e-12))
    (True, True)
    >>> r = dac.simulate(x, topology="exponential", schedule="exact")
    >>> r.rounds, float(r.estimates[0])
    (3, 3.5)
    """
    arr = as_float(inputs, "inputs", (1, 2))
    matrix = arr[:, None] if arr.ndim == 1 else arr
    crashes = []
    for node, round_ in (crash or {}).items():
        crashes.append((as_count(node, "crash node"), as_count(round_, "crash round")))
    run = _native.simulate(
        matrix,
        str(topology),
        str(schedule),
        float(tol),
        as_count(max_rounds, "max_rounds"),
        float(drop_rate),
        as_count(delay, "delay"),
        crashes,
        as_count(seed, "seed"),
    )
    result = SimulationResult(
        estimates=run.estimates.reshape(arr.shape),
        rounds=run.rounds,
        converged=run.converged,
        contributors=run.contributors,
        residuals=run.residuals,
        errors=run.errors,
    )
    cut_short, rounds = run.cut_short, run.rounds
    if cut_short is not None:
        raise ConvergenceError(
            f"the simulation reached max_rounds = {max_rounds} before tol = {tol}: "
            f"a node's residual bound is still {cut_short:.3g} after round {rounds} "
            "(the result so far is in .result)",
            rounds=rounds,
            residual=cut_short,
            result=result,
        )
    return result
