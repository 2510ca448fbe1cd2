"""Ctrl-C interrupts a long simulation, and the abandoned worker stops
too (the networked case is in test_spmd.py)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

SCRIPT = """
import signal
import time
import numpy as np
import dac

# Python turns SIGINT into KeyboardInterrupt only if SIGINT was not ignored
# when it started; a test runner started in the background ignores it.
signal.signal(signal.SIGINT, signal.default_int_handler)

print("ready", flush=True)
try:
    # A ring of 200 000 nodes needs billions of rounds: this never finishes.
    dac.simulate(np.arange(200_000.0), topology="ring", max_rounds=4_000_000_000)
except KeyboardInterrupt:
    busy = time.process_time()
    time.sleep(1.0)
    busy = time.process_time() - busy
    print(f"interrupted; cpu {busy:.2f} s in the next second", flush=True)
    assert busy < 0.2, "the abandoned simulation kept running"
    print("ok", flush=True)
"""


def test_ctrl_c_stops_a_long_simulation() -> None:
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(1.0)  # well inside the simulation
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert out.rstrip().endswith("ok"), out
