"""Rank 1 holds another job key than the one dacrun gave the job: it raises
NetworkError, naming the key, within seconds (before, a wrong key showed as
a transport timeout after 60 s)."""

from __future__ import annotations

import os
import sys
import time

import dac

if __name__ == "__main__":
    if os.environ["DAC_RANK"] == "1":
        start = time.monotonic()
        try:
            dac.init(key="ab" * 32)
        except dac.NetworkError as e:
            took = time.monotonic() - start
            print(f"NetworkError after {took:.1f} s: {e}", flush=True)
            if took < 5 and "job key mismatch" in str(e) and e.kind == "key_mismatch" and e.peer:
                print("ok key-mismatch", flush=True)
            # A failing rank makes dacrun stop rank 0, which waits for it.
            sys.exit(3)
        raise AssertionError("a member with another key joined the job")
    dac.init()
    raise AssertionError("rank 0 formed a job with a member that has another key")
