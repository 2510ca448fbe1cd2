"""Two ranks run sums in a loop until a third process joins (the test
joins it with `dac.init(join=...)`); from the first sum that includes it,
every sum is over the three, exact, and every rank sees the job's new size
and members. Run under `dacrun -n 2`."""

from __future__ import annotations

import time

import dac

if __name__ == "__main__":
    comm = dac.init()
    deadline = time.monotonic() + 60
    while True:
        r = comm.allreduce(float(comm.rank + 1), op="sum")
        if len(r.contributors) == 3:
            break
        assert r.contributors == [0, 1] and r.value == 3.0, r
        assert time.monotonic() < deadline, "nobody joined"
        time.sleep(0.01)
        comm.admit()  # where a joiner begins the loop
    assert r.contributors == [0, 1, 2] and r.value == 6.0, r
    assert (comm.size, comm.members, comm.view_id) == (3, [0, 1, 2], 1), comm.members
    for _ in range(2):
        assert comm.admit() == []
        r = comm.allreduce(float(comm.rank + 1), op="sum")
        assert r.contributors == [0, 1, 2] and r.value == 6.0, r
    print("ok grown", flush=True)
    comm.close()
