"""Ctrl-C interrupts a blocked reduction. Rank 0 starts a reduction that
rank 1 never joins, and writes its pid to ARGV[1] so that the test can
send it SIGINT; rank 1 waits for rank 0 to report, then exits."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import dac

if __name__ == "__main__":
    ready, done = Path(sys.argv[1]), Path(sys.argv[2])
    comm = dac.init(peer_timeout=120.0)
    if comm.rank == 0:
        ready.write_text(str(os.getpid()))
        started = time.monotonic()
        try:
            comm.allreduce(1.0)
        except KeyboardInterrupt:
            print(f"interrupted after {time.monotonic() - started:.1f} s", flush=True)
            assert comm.closed
            try:
                comm.allreduce(1.0)
            except dac.NetworkError as e:
                print(f"NetworkError: {e}", flush=True)
                print("ok interrupted", flush=True)
        done.write_text("done")
    else:
        while not done.exists():
            time.sleep(0.05)
    os._exit(0)
