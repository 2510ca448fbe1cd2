"""Rank 2 is frozen (SIGSTOP, by the test) for longer than the peer
timeout while every rank reduces in a loop: ranks 0 and 1 go on without it,
and rank 2, once it wakes, raises NetworkError instead of going on alone.
Rank 2 writes its pid to ARGV[1]. Run under `dacrun -n 3 --keep-going
--peer-timeout 1`."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import dac

if __name__ == "__main__":
    comm = dac.init()
    if comm.rank == 2:
        Path(sys.argv[1]).write_text(str(os.getpid()))
    last = None
    try:
        # The same calls on every rank (about 6 s, with the freeze inside).
        for _ in range(600):
            time.sleep(0.01)
            r = comm.allreduce(float(comm.rank))
            mean = sum(r.contributors) / len(r.contributors)
            assert abs(r.value - mean) <= 1e-10, r
            assert comm.rank in r.contributors, r
            last = r
    except dac.NetworkError as e:
        assert comm.rank == 2, f"rank {comm.rank}: {e}"
        assert last is None or last.contributors != [2], last
        print(f"raised {type(e).__name__}: {e}", flush=True)
        print("ok frozen-rank-fails", flush=True)
        sys.exit(0)
    assert last is not None and last.contributors == [0, 1], last
    print("ok survivors-go-on", flush=True)
    comm.close()
