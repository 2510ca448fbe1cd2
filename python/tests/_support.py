"""Helpers of the tests: where the repository and ``dacrun`` are, and how
to run a script under ``dacrun``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
SPMD = Path(__file__).resolve().parent / "spmd"


def dacrun_path() -> Path:
    """``$DACRUN``, else the debug build in the repository's target
    directory (``scripts/test`` builds it first)."""
    path = Path(os.environ.get("DACRUN", REPO / "target" / "debug" / "dacrun"))
    if not path.exists():
        pytest.fail(f"dacrun not found at {path}: run `cargo build -p dac-net --bin dacrun`")
    return path


def run_spmd(
    script: str,
    n: int,
    *args: str,
    dacrun_args: Optional[List[str]] = None,
    timeout: float = 120,
    env: Optional[Dict[str, str]] = None,
) -> subprocess.CompletedProcess[str]:
    """Runs ``tests/spmd/<script>`` on ``n`` ranks under dacrun and returns
    the finished process (output decoded, stderr merged into stdout)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DAC_")}
    full_env.update(env or {})
    cmd = [str(dacrun_path()), "-n", str(n), *(dacrun_args or []), "--",
           sys.executable, str(SPMD / script), *args]
    return subprocess.run(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=timeout, env=full_env, check=False,
    )


def ok_ranks(output: str, check: str) -> List[int]:
    """The ranks that printed ``ok <check>`` (dacrun prefixes ``[rank] ``)."""
    ranks = []
    for line in output.splitlines():
        if line.rstrip().endswith(f"ok {check}") and line.startswith("["):
            ranks.append(int(line[1:line.index("]")]))
    return sorted(ranks)
