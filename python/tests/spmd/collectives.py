"""Every collective of `dac`, checked on every rank against numpy on the
whole data. Run by tests/test_spmd.py as `dacrun -n N python collectives.py`.

Every rank draws the whole data from the same seed and keeps its own
block (uneven blocks; with 4 ranks one holds no rows). It prints
`ok <check>` for each check that passes and raises otherwise.
"""

from __future__ import annotations

import numpy as np

import dac


def block(total: int, size: int, rank: int) -> slice:
    """Uneven contiguous blocks; the last-but-one rank gets none when size >= 3."""
    weights = [1 + (r % 3) for r in range(size)]
    if size >= 3:
        weights[size - 2] = 0
    edges = np.concatenate([[0], np.cumsum(weights)]) * total // sum(weights)
    return slice(int(edges[rank]), int(edges[rank + 1]))


def close(got: object, want: object, rel: float) -> bool:
    g, w = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    return g.shape == w.shape and bool(
        np.max(np.abs(g - w), initial=0.0) <= rel * max(1.0, float(np.max(np.abs(w), initial=0.0)))
    )


def check(name: str, ok: bool, detail: str = "") -> None:
    if not ok:
        raise AssertionError(f"{name} disagrees with numpy {detail}")
    print(f"ok {name}", flush=True)


def main() -> None:
    with dac.init() as comm:
        rank, size = comm.rank, comm.size
        rng = np.random.default_rng(2026)

        # allreduce: mean and sum of a vector, and of a scalar.
        vectors = rng.normal(size=(size, 5))
        red = comm.allreduce(vectors[rank])
        check("allreduce-mean", close(red.value, vectors.mean(axis=0), 1e-10)
              and red.contributors == list(range(size)))
        red = comm.allreduce(float(rank + 1), op="sum")
        check("allreduce-sum", isinstance(red.value, float)
              and close(red.value, size * (size + 1) / 2, 1e-10))

        # dot and norm of vectors split by blocks.
        x, y = rng.normal(size=1001), rng.normal(size=1001)
        mine = block(1001, size, rank)
        check("dot", close(dac.linalg.dot(comm, x[mine], y[mine]), x @ y, 1e-12))
        check("norm", close(dac.linalg.norm(comm, x[mine]), np.linalg.norm(x), 1e-12))

        # matvec with A split by columns.
        a = rng.normal(size=(30, 40))
        v = rng.normal(size=40)
        cols = block(40, size, rank)
        check("matvec", close(dac.linalg.matvec(comm, a[:, cols], v[cols]), a @ v, 1e-12))

        # least squares with A, b split by rows, against numpy.linalg.lstsq.
        a = rng.normal(size=(200, 6)) * np.array([1.0, 10.0, 100.0, 0.1, 1.0, 3.0])
        b = a @ np.arange(1.0, 7.0) + rng.normal(size=200)
        rows = block(200, size, rank)
        fit = dac.linalg.lstsq(comm, a[rows], b[rows])
        want, *_ = np.linalg.lstsq(a, b, rcond=None)
        check("lstsq", close(fit.x, want, 1e-9)
              and np.linalg.norm(fit.x - want) <= 1e-9 * np.linalg.norm(want),
              f"{fit.x} vs {want}")
        check("lstsq-residual", abs(fit.residual_norm - np.linalg.norm(a @ want - b))
              <= 1e-9 * np.linalg.norm(b))

        # ridge with the intercept exempted, against scikit-learn's Ridge
        # (fit_intercept=True) closed form: centre, solve, intercept last.
        feats = 5.0 + rng.normal(size=(150, 3)) * np.array([1.0, 20.0, 0.5])
        ys = 30.0 + feats @ np.array([1.5, -0.2, 4.0]) + rng.normal(size=150)
        xm, ym = feats.mean(axis=0), ys.mean()
        beta = np.linalg.solve((feats - xm).T @ (feats - xm) + 7.0 * np.eye(3),
                               (feats - xm).T @ (ys - ym))
        want = np.concatenate([[ym - xm @ beta], beta])
        design = np.hstack([np.ones((150, 1)), feats])
        rows = block(150, size, rank)
        fit = dac.linalg.lstsq(comm, design[rows], ys[rows], ridge=7.0, intercept=0)
        check("ridge-intercept", np.linalg.norm(fit.x - want) <= 1e-10 * np.linalg.norm(want),
              f"{fit.x} vs {want}")

        # conjugate gradients on an SPD system split by rows.
        m = rng.normal(size=(24, 24))
        spd = m @ m.T + 24 * np.eye(24)
        rhs = rng.normal(size=24)
        rows = block(24, size, rank)
        sol = dac.linalg.cg(comm, spd[rows], rhs[rows], tol=1e-12)
        want = np.linalg.solve(spd, rhs)
        check("cg", np.linalg.norm(sol.x - want) <= 1e-9 * np.linalg.norm(want))

        # Gaussian linear posterior against the closed form.
        xs = rng.normal(size=(120, 3))
        ys = xs @ np.array([0.5, -1.0, 2.0]) + 0.3 * rng.normal(size=120)
        mu0, s0, noise = np.array([0.0, 1.0, 0.0]), np.diag([4.0, 1.0, 9.0]), 0.09
        rows = block(120, size, rank)
        mean, cov = dac.bayes.gaussian_linear(comm, xs[rows], ys[rows], mu0, s0, noise)
        prec = np.linalg.inv(s0) + xs.T @ xs / noise
        want_cov = np.linalg.inv(prec)
        want_mean = want_cov @ (np.linalg.solve(s0, mu0) + xs.T @ ys / noise)
        check("gaussian_linear", close(mean, want_mean, 1e-9) and close(cov, want_cov, 1e-9))

        # Beta-Bernoulli on a grid: each rank holds some coin flips.
        flips = rng.random(400) < 0.3
        mine = flips[block(400, size, rank)]
        heads, tails = int(mine.sum()), int((~mine).sum())
        grid = np.linspace(0.01, 0.99, 99)
        post = dac.bayes.grid_posterior(
            comm, grid, lambda t: np.log(t) + np.log(1 - t),  # Beta(2, 2) prior
            lambda t: heads * np.log(t) + tails * np.log(1 - t))
        h, t = int(flips.sum()), int((~flips).sum())
        logp = (h + 1) * np.log(grid) + (t + 1) * np.log(1 - grid)
        want = np.exp(logp - logp.max())
        check("grid_posterior", close(post, want / want.sum(), 1e-9))


if __name__ == "__main__":
    main()
