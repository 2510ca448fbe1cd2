"""`dac.init(size=3)` under `dacrun -n 4` is refused on every rank."""

from __future__ import annotations

import dac

if __name__ == "__main__":
    try:
        dac.init(size=3)
    except dac.ArgumentError as e:
        print(f"ArgumentError: {e}", flush=True)
        print("ok size-mismatch", flush=True)
    else:
        raise AssertionError("dac.init(size=3) under dacrun -n 4 was accepted")
