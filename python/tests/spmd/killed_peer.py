"""Rank 3 is SIGKILLed between two reductions; the survivors' second
reduction lists only them, and its value is their mean; the third runs in
the view of the survivors. Run under
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
    # The second reduction's contributors are the next view: the third runs
    # the exact schedule over the three survivors (4 rounds for 3), with
    # every rank keeping its own.
    assert (comm.members, comm.view_id, comm.size) == ([0, 1, 2], 1, 4), comm.members
    third = comm.allreduce(float(comm.rank), op="sum")
    assert third.contributors == [0, 1, 2] and third.value == 3.0, third
    assert third.rounds <= 4, third
    print("ok new-view", flush=True)
    comm.close()
