"""Ctrl-C interrupts a blocked reduction, and the GIL is released while
it waits. Rank 0 starts a reduction that rank 1 never joins, with a
Python thread counting meanwhile, and writes its pid to ARGV[1] so that
the test can send it SIGINT; rank 1 waits for rank 0 to report, then
exits."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import dac

if __name__ == "__main__":
    ready, done = Path(sys.argv[1]), Path(sys.argv[2])
    comm = dac.init(peer_timeout=120.0)
    if comm.rank == 0:
        count = [0]
        stop = threading.Event()

        def counter() -> None:
            while not stop.is_set():
                count[0] += 1

        threading.Thread(target=counter, daemon=True).start()
        ready.write_text(str(os.getpid()))
        started = time.monotonic()
        try:
            comm.allreduce(1.0)
        except KeyboardInterrupt:
            stop.set()
            print(f"interrupted after {time.monotonic() - started:.1f} s", flush=True)
            # A thread that held the GIL while blocked would leave this at 0.
            print(f"another thread counted to {count[0]} meanwhile", flush=True)
            assert count[0] > 1000, count[0]
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
