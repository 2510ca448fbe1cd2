"""`dac.simulate` and `dac.topology` against numpy references."""

from __future__ import annotations

import subprocess
import sys
from collections import deque
from typing import Dict, List

import numpy as np
import pytest

import dac

# Topology name -> node count it is tested on.
TOPOLOGIES = {
    "complete": 10,
    "ring": 10,
    "torus": 16,
    "random-regular:4": 20,
    "exponential": 10,
    "hypercube": 16,
}
# The exact schedule pairs i with i xor 2^k (and folds extra nodes onto
# i - 2^m): only these topologies have all those edges.
EXACT_OK = {"complete", "exponential", "hypercube"}


def degree(name: str, n: int) -> int:
    return max(len(dac.topology.neighbors(name, n, i)) for i in range(n))


def schedules(name: str, n: int) -> List[str]:
    return ["metropolis", "exact", f"laplacian:{0.5 / degree(name, n)}"]


def inputs(n: int, d: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(5.0, 10.0, size=(n, d))


def assert_mean(estimates: np.ndarray, x: np.ndarray, tol: float) -> None:
    mean = np.mean(x, axis=0)
    bound = tol * max(1.0, float(np.max(np.abs(mean))))
    err = float(np.max(np.abs(estimates - mean)))
    assert err <= bound, f"max error {err:.3e} above {bound:.3e}"


@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
@pytest.mark.parametrize("which", [0, 1, 2])
def test_every_topology_and_schedule_matches_numpy_mean(name: str, which: int) -> None:
    n = TOPOLOGIES[name]
    schedule = schedules(name, n)[which]
    x = inputs(n, 3, seed=n + which)
    if schedule == "exact" and name not in EXACT_OK:
        with pytest.raises(dac.ArgumentError, match="exact"):
            dac.simulate(x, topology=name, schedule=schedule)
        return
    r = dac.simulate(x, topology=name, schedule=schedule, tol=1e-12)
    assert r.converged
    assert r.contributors == list(range(n))
    assert r.estimates.shape == (n, 3)
    assert_mean(r.estimates, x, 1e-12)
    assert r.residuals.shape == (r.rounds,)
    assert r.residuals[-1] <= 1e-12


def test_exact_schedule_takes_log2_rounds() -> None:
    x = inputs(64, 1, seed=3)[:, 0]
    r = dac.simulate(x, topology="exponential", schedule="exact")
    assert r.rounds <= 6
    assert r.estimates.shape == (64,)
    assert_mean(r.estimates, x, 1e-12)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_lossy_delayed_links_still_give_the_exact_mean(seed: int) -> None:
    x = inputs(32, 2, seed=seed)
    r = dac.simulate(x, topology="random-regular:4", drop_rate=0.3, delay=2, seed=seed)
    assert r.converged
    assert r.contributors == list(range(32))
    assert_mean(r.estimates, x, 1e-12)
    again = dac.simulate(x, topology="random-regular:4", drop_rate=0.3, delay=2, seed=seed)
    assert np.array_equal(r.estimates, again.estimates), "same seed, same run"


def test_crashed_nodes_drop_out_of_the_mean() -> None:
    x = inputs(32, 2, seed=9)
    crash = {3: 5, 17: 9}
    r = dac.simulate(x, topology="exponential", crash=crash, seed=4)
    survivors = [i for i in range(32) if i not in crash]
    assert r.converged
    assert r.contributors == survivors
    assert np.isnan(r.estimates[list(crash)]).all()
    assert_mean(r.estimates[survivors], x[survivors], 1e-12)


def metropolis_gap(name: str, n: int) -> float:
    nbrs = [dac.topology.neighbors(name, n, i) for i in range(n)]
    w = np.zeros((n, n))
    for i in range(n):
        for j in nbrs[i]:
            w[i, j] = 1.0 / (1 + max(len(nbrs[i]), len(nbrs[j])))
        w[i, i] = 1.0 - w[i].sum()
    ev = np.sort(np.linalg.eigvalsh(w))
    return 1.0 - max(abs(ev[-2]), abs(ev[0]))


def bfs_diameter(name: str, n: int) -> int:
    nbrs: Dict[int, List[int]] = {i: dac.topology.neighbors(name, n, i) for i in range(n)}
    worst = 0
    for s in range(n):
        dist = {s: 0}
        queue = deque([s])
        while queue:
            u = queue.popleft()
            for v in nbrs[u]:
                if v not in dist:
                    dist[v] = dist[u] + 1
                    queue.append(v)
        assert len(dist) == n
        worst = max(worst, max(dist.values()))
    return worst


@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
def test_topology_properties_match_numpy(name: str) -> None:
    n = TOPOLOGIES[name]
    for i in range(n):
        for j in dac.topology.neighbors(name, n, i):
            assert i in dac.topology.neighbors(name, n, j), "symmetric"
    assert abs(dac.topology.spectral_gap(name, n) - metropolis_gap(name, n)) <= 1e-12
    assert dac.topology.diameter(name, n) == bfs_diameter(name, n)


def test_ring_neighbours_and_diameter() -> None:
    assert dac.topology.neighbors("ring", 8, 0) == [1, 7]
    assert dac.topology.diameter("ring", 9) == 4


def test_a_run_cut_short_by_max_rounds_raises_with_the_result_so_far() -> None:
    x = inputs(64, 1, seed=5)[:, 0]
    with pytest.raises(dac.ConvergenceError, match="max_rounds = 5") as e:
        dac.simulate(x, topology="ring", max_rounds=5)
    r = e.value.result  # type: ignore[attr-defined]
    assert not r.converged
    assert r.rounds == 5 == e.value.rounds  # type: ignore[attr-defined]
    assert e.value.residual > 1e-12  # type: ignore[attr-defined]
    # The last estimates, not NaN: after 5 rounds on a ring each node has
    # mixed only with nodes within 5 hops, so it is still off the mean,
    # but it moved from its input toward it.
    assert np.isfinite(r.estimates).all()
    assert not np.allclose(r.estimates, x.mean(), atol=1e-3)
    assert np.abs(r.estimates - x.mean()).max() < np.abs(x - x.mean()).max()
    assert len(r.residuals) == 5 and r.residuals[-1] > 1e-12


def test_a_simulation_that_cannot_fit_in_memory_raises_before_allocating() -> None:
    """Under a 4 GiB address-space limit, 1000 nodes of 30 000 values need
    far more: ArgumentError with both figures (an allocation failure would
    abort the whole interpreter). Run in a child, whose limit is its own."""
    code = (
        "import resource, numpy as np, dac\n"
        "resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))\n"
        "try:\n"
        "    dac.simulate(np.zeros((1000, 30000)))\n"
        "except dac.ArgumentError as e:\n"
        "    print('refused:', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "refused: 1000 nodes with 30000 values each need at least" in out.stdout, out.stdout
    assert "4.0 GiB are available" in out.stdout, out.stdout
