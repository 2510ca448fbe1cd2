"""Rank 3 is SIGKILLed between two reductions; the survivors' second
reduction lists only them, and its value is their mean. Run under
`dacrun -n 4 --keep-going`."""

from __future__ import annotations

import os
import signal

import dac

if __name__ == "__main__":
    comm = dac.init()
    first = comm.allreduce(float(comm.rank))
    # Rank 3 may die before the others finish this reduction: its input is
    # then removed again, and the value is the mean over who is left.
    mean = sum(first.contributors) / len(first.contributors)
    assert abs(first.value - mean) <= 1e-10, first
    if comm.rank == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    second = comm.allreduce(float(comm.rank))
    assert second.contributors == [0, 1, 2], second
    assert abs(second.value - 1.0) <= 1e-10, second  # mean of ranks 0, 1, 2
    # Rank 3's input is missing from a reduction: it departed mid-job.
    assert comm.departed() == [3] and 3 not in comm.left(), (comm.departed(), comm.left())
    print(f"contributors {second.contributors}", flush=True)
    print("ok survivors", flush=True)
    comm.close()
