"""Rank 2 closes its comm after the first reduction, its part done. The
others list it as left, not departed, until a reduction lacks it. Run
under `dacrun -n 3`."""

from __future__ import annotations

import time

import dac

if __name__ == "__main__":
    comm = dac.init()
    first = comm.allreduce(float(comm.rank))
    assert first.contributors == [0, 1, 2], first
    if comm.rank == 2:
        comm.close()
        raise SystemExit(0)
    deadline = time.monotonic() + 20
    while comm.left() != [2]:
        assert time.monotonic() < deadline, f"left {comm.left()}"
        time.sleep(0.01)
    assert comm.departed() == [], comm.departed()
    print("ok left-after-finishing", flush=True)
    second = comm.allreduce(float(comm.rank))
    assert second.contributors == [0, 1], second
    assert comm.departed() == [2] and 2 not in comm.left(), (comm.departed(), comm.left())
    print("ok departed-once-missing", flush=True)
    comm.close()
