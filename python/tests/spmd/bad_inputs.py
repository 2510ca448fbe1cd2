"""A problem on one rank raises the same exception on every rank.
Run by tests/test_spmd.py under `dacrun -n 4`."""

from __future__ import annotations

import numpy as np

import dac


def expect(name: str, exc: type, fn: object, *args: object) -> None:
    try:
        fn(*args)  # type: ignore[operator]
    except exc as e:
        print(f"{type(e).__name__}: {e}", flush=True)
        print(f"ok {name}", flush=True)
        return
    raise AssertionError(f"{name}: no {exc.__name__}")


def main() -> None:
    with dac.init() as comm:
        rank = comm.rank
        # Rank 1 passes a longer vector.
        expect("length-mismatch", dac.ShapeError, comm.allreduce, np.ones(4 if rank != 1 else 5))
        # Rank 2 passes a NaN.
        x = np.ones(3)
        if rank == 2:
            x[1] = np.nan
        expect("nan-one-rank", dac.NonFiniteError, dac.linalg.dot, comm, x, np.ones(3))
        # Rank 3's rows have a different number of columns.
        a = np.ones((5, 3 if rank != 3 else 4))
        expect("columns-mismatch", dac.ShapeError, dac.linalg.lstsq, comm, a, np.ones(5))
        # Rank 3 passes the transpose: the same six entries, another shape.
        m = np.arange(6.0).reshape((2, 3) if rank != 3 else (3, 2))
        expect("transposed", dac.ShapeError, comm.allreduce, m)
        # Rank 0 passes a float, the others an array of shape (1,).
        one = 1.0 if rank == 0 else np.ones(1)
        expect("scalar-vs-one", dac.ShapeError, comm.allreduce, one)
        # The job is still usable afterwards.
        red = comm.allreduce(float(rank))
        assert red.value == 1.5 and red.contributors == [0, 1, 2, 3], red
        print("ok still-usable", flush=True)


if __name__ == "__main__":
    main()
