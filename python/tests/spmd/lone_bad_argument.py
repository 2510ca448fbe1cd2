"""An argument only one rank finds invalid, before the call (a wrong
dtype, number of dimensions or `op`), raises on every rank, naming that
rank; and the call after it pairs with the same call on every rank
(issue 14: the bad rank's next call used to pair with the others' current
one, and later calls were combined out of step).
Run by tests/test_spmd.py under `dacrun -n 4`.

Each case prints `ok <case>` on every rank whose exception is right, then
every rank reduces `100 * (n + 1) + rank` and prints `ok aligned-<n>` if
it got exactly the mean of that call's inputs from all four ranks. A
wrong result prints `FAIL ...` and the script goes on, so that the output
shows every misaligned call; it exits with 1 if any check failed.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, List, NamedTuple, Type

import numpy as np

import dac


class Case(NamedTuple):
    name: str
    bad_rank: int
    call: Callable[[dac.Comm, bool], Any]
    """Makes the call; the bool says whether this rank passes the bad argument."""
    remote: Type[dac.DacError]
    """What the other ranks raise."""
    local: Type[Exception]
    """What the bad rank raises..."""
    detail: str
    """...with this in its message."""


def no_likelihood(theta: float) -> float:
    raise ZeroDivisionError(f"no likelihood at {theta}")


CASES = [
    Case("allreduce-dtype", 2,
         lambda c, bad: c.allreduce("x" if bad else float(c.rank)),
         dac.InputTypeError, dac.InputTypeError, "x has dtype <U1"),
    Case("dot-ndim", 1,
         lambda c, bad: dac.linalg.dot(c, np.ones((3, 2)) if bad else np.ones(3), np.ones(3)),
         dac.ShapeError, dac.ShapeError, "x has shape (3, 2); expected a 1-D array"),
    Case("allreduce-op", 3,
         lambda c, bad: c.allreduce(float(c.rank), op="max" if bad else "mean"),
         dac.ArgumentError, dac.ArgumentError, "op='max'"),
    Case("lstsq-ndim", 0,
         lambda c, bad: dac.linalg.lstsq(c, np.ones(4) if bad else np.ones((4, 2)), np.ones(4)),
         dac.ShapeError, dac.ShapeError, "a_rows has shape (4,)"),
    Case("matvec-dtype", 2,
         lambda c, bad: dac.linalg.matvec(c, np.ones((3, 2)) * (1j if bad else 1), np.ones(2)),
         dac.InputTypeError, dac.InputTypeError, "a_cols has dtype complex128"),
    Case("cg-max-iter", 1,
         lambda c, bad: dac.linalg.cg(c, np.eye(2), np.ones(2), max_iter=-1 if bad else 10),
         dac.ArgumentError, dac.ArgumentError, "max_iter = -1 must not be negative"),
    Case("gaussian-noise-var", 3,
         lambda c, bad: dac.bayes.gaussian_linear(
             c, np.ones((3, 1)), np.ones(3), np.zeros(1), np.eye(1), "loud" if bad else 1.0),
         dac.InputTypeError, dac.InputTypeError, "noise_var = 'loud' is not a real number"),
    Case("grid-posterior-length", 0,
         lambda c, bad: dac.bayes.grid_posterior(
             c, np.linspace(0.1, 0.9, 5), np.zeros(4 if bad else 5), lambda t: 0.0),
         dac.ShapeError, dac.ShapeError, "log_prior has 4 values but the grid has 5 points"),
    # A log-likelihood function that raises on one rank: that rank gets
    # its exception, the others an ArgumentError naming it.
    Case("grid-posterior-callback", 2,
         lambda c, bad: dac.bayes.grid_posterior(
             c, np.linspace(0.1, 0.9, 5), lambda t: 0.0,
             no_likelihood if bad else (lambda t: float(np.log(t)))),
         dac.ArgumentError, ZeroDivisionError, "no likelihood at 0.1"),
    # A check the native module makes (the public wrappers always pass
    # C-contiguous arrays): it fails the call on every rank too.
    Case("native-not-contiguous", 1,
         lambda c, bad: dac._native.dot(
             c._native, np.ones(6)[::2] if bad else np.ones(3), np.ones(3)),
         dac.ArgumentError, dac.ArgumentError, "must be C-contiguous"),
]

failures: List[str] = []


def report(name: str, problem: str) -> None:
    if problem:
        failures.append(name)
        print(f"FAIL {name}: {problem}", flush=True)
    else:
        print(f"ok {name}", flush=True)


def verdict(case: Case, rank: int, e: BaseException) -> str:
    """What is wrong with the exception rank `rank` raised ("" if nothing)."""
    bad = rank == case.bad_rank
    want = case.local if bad else case.remote
    if not isinstance(e, want):
        return f"raised {type(e).__name__}: {e}; expected {want.__name__}"
    if isinstance(e, dac.DacError) and getattr(e, "ranks", None) != [case.bad_rank]:
        return f"ranks = {getattr(e, 'ranks', None)}; expected [{case.bad_rank}]: {e}"
    if bad and case.detail not in str(e):
        return f"message {str(e)!r} does not say {case.detail!r}"
    if not bad and f"rank {case.bad_rank} passed an invalid" not in str(e):
        return f"message {str(e)!r} does not name rank {case.bad_rank}"
    if not bad and isinstance(e, dac.DacError) and e.rank != rank:
        return f"rank = {e.rank}; expected {rank}"
    return ""


def aligned(comm: dac.Comm, n: int) -> None:
    """The call after a failed one: exactly the mean of this call's inputs,
    from every rank (a misaligned pairing mixes two calls' inputs, or
    misses a rank)."""
    base = 100.0 * (n + 1)
    want = base + (comm.size - 1) / 2
    try:
        red = comm.allreduce(base + comm.rank)
    except Exception as e:  # noqa: BLE001 - reported, and the script goes on
        report(f"aligned-{n}", f"raised {type(e).__name__}: {e}")
        return
    ok = abs(float(red.value) - want) <= 1e-9 * want and red.contributors == list(range(comm.size))
    print(f"call {n}: value {red.value} (want {want}), contributors {red.contributors}",
          flush=True)
    report(f"aligned-{n}", "" if ok else "a mix of calls, or a rank missing")


def main() -> None:
    with dac.init() as comm:
        assert comm.size == 4, "run with dacrun -n 4"
        for n, case in enumerate(CASES):
            try:
                got = case.call(comm, comm.rank == case.bad_rank)
            except Exception as e:  # noqa: BLE001 - checked below
                print(f"{case.name}: {type(e).__name__}: {e}", flush=True)
                report(case.name, verdict(case, comm.rank, e))
            else:
                report(case.name, f"no exception (returned {got!r})")
            aligned(comm, n)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
