"""A small typed program against the `dac` stubs; tests/test_typing.py
checks it (and the package) with `mypy --strict`. It is also runnable:
`dacrun -n 2 python tests/typed_usage.py`."""

from __future__ import annotations

from typing import List

import numpy as np
import numpy.typing as npt

import dac


def mean_of_ranks(comm: dac.Comm) -> float:
    red: dac.Reduction = comm.allreduce(float(comm.rank))
    contributors: List[int] = red.contributors
    value = red.value
    assert isinstance(value, float) and len(contributors) >= 1
    return value


def fit(comm: dac.Comm, a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    result: dac.linalg.LstsqResult = dac.linalg.lstsq(comm, a, b, ridge=0.0)
    solution: npt.NDArray[np.float64] = result.x
    return float(np.linalg.norm(solution)) + result.residual_norm


def simulated() -> int:
    r: dac.SimulationResult = dac.simulate(np.arange(8.0), topology="ring", crash={3: 2})
    gap: float = dac.topology.spectral_gap("ring", 8)
    return r.rounds + int(gap > 0)


def main() -> None:
    try:
        with dac.init() as comm:
            print(mean_of_ranks(comm), fit(comm, np.eye(3), np.ones(3)))
            x: float = dac.linalg.dot(comm, np.ones(2), np.ones(2))
            sol: dac.linalg.CgResult = dac.linalg.cg(comm, np.eye(2), np.ones(2))
            mean, cov = dac.bayes.gaussian_linear(comm, np.eye(2), np.ones(2), np.zeros(2), np.eye(2), 1.0)
            print(x, sol.iterations, mean.shape, cov.shape)
    except dac.DacError as e:
        print(f"rank {e.rank}: {e}")
    print(simulated())


if __name__ == "__main__":
    main()
