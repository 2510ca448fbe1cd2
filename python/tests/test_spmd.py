"""Networked runs under `dacrun`: every rank agrees with numpy, bad input
on one rank fails every rank (and the next call still pairs with the same
call everywhere), a killed peer drops out of the contributors, and Ctrl-C
interrupts a blocked call."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from _support import REPO, SPMD, dacrun_path, ok_ranks, run_spmd

CHECKS = ["allreduce-mean", "allreduce-sum", "dot", "norm", "matvec", "lstsq",
          "lstsq-residual", "ridge-intercept", "cg", "gaussian_linear", "grid_posterior"]


def test_every_collective_agrees_with_numpy_on_every_rank() -> None:
    p = run_spmd("collectives.py", 4)
    assert p.returncode == 0, p.stdout
    for check in CHECKS:
        assert ok_ranks(p.stdout, check) == [0, 1, 2, 3], f"{check}:\n{p.stdout}"


def test_collectives_on_one_and_three_ranks() -> None:
    for n in (1, 3):
        p = run_spmd("collectives.py", n)
        assert p.returncode == 0, p.stdout
        assert ok_ranks(p.stdout, "lstsq") == list(range(n)), p.stdout


def test_a_bad_input_on_one_rank_raises_on_every_rank() -> None:
    p = run_spmd("bad_inputs.py", 4)
    assert p.returncode == 0, p.stdout
    for check in ["length-mismatch", "nan-one-rank", "columns-mismatch", "transposed",
                  "scalar-vs-one", "still-usable"]:
        assert ok_ranks(p.stdout, check) == [0, 1, 2, 3], f"{check}:\n{p.stdout}"
    assert "rank 2" in p.stdout  # the NaN error names the rank that had it


LONE_BAD_ARGUMENTS = ["allreduce-dtype", "dot-ndim", "allreduce-op", "lstsq-ndim",
                      "matvec-dtype", "cg-max-iter", "gaussian-noise-var",
                      "grid-posterior-length", "grid-posterior-callback",
                      "native-not-contiguous"]


def test_an_argument_one_rank_finds_invalid_fails_the_call_on_every_rank() -> None:
    """Issue 14: a wrong dtype, ndim or op on one rank, caught before the
    call, used to raise on that rank alone, and its next call paired with
    the others' current one. Now every rank raises (the others naming the
    bad rank in `ranks`), and the next call sees exactly its own inputs."""
    p = run_spmd("lone_bad_argument.py", 4)
    assert p.returncode == 0, p.stdout
    for case in LONE_BAD_ARGUMENTS:
        assert ok_ranks(p.stdout, case) == [0, 1, 2, 3], f"{case}:\n{p.stdout}"
    for n in range(len(LONE_BAD_ARGUMENTS)):
        assert ok_ranks(p.stdout, f"aligned-{n}") == [0, 1, 2, 3], f"aligned-{n}:\n{p.stdout}"


def test_size_that_contradicts_dacrun_is_refused() -> None:
    p = run_spmd("wrong_size.py", 4)
    assert p.returncode == 0, p.stdout
    assert ok_ranks(p.stdout, "size-mismatch") == [0, 1, 2, 3], p.stdout
    assert "DAC_SIZE=4" in p.stdout


def test_a_member_with_another_key_is_refused_naming_the_key() -> None:
    p = run_spmd("wrong_key.py", 2)
    assert p.returncode == 3, p.stdout
    assert ok_ranks(p.stdout, "key-mismatch") == [1], p.stdout


def test_a_killed_peer_drops_out_of_the_contributors() -> None:
    p = run_spmd("killed_peer.py", 4, dacrun_args=["--keep-going", "--peer-timeout", "2"])
    assert ok_ranks(p.stdout, "survivors") == [0, 1, 2], p.stdout
    assert "contributors [0, 1, 2]" in p.stdout
    assert ok_ranks(p.stdout, "new-view") == [0, 1, 2], p.stdout


def test_a_process_joins_a_running_two_process_job() -> None:
    """Issue 18: `dac.init(join=...)` in this process joins a job of two
    under dacrun, through rank 0's address and with the job's key (both
    found where dacrun says its key is). Every member's sums are then over
    the three, exact, and `size`, `members` and `view_id` say so."""
    import dac

    env = {k: v for k, v in os.environ.items() if not k.startswith("DAC_")}
    cmd = [str(dacrun_path()), "-n", "2", "--timeout", "90", "--",
           sys.executable, str(SPMD / "grow.py")]
    job = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=env)
    try:
        assert job.stderr is not None
        key = ""
        for line in job.stderr:
            if "job key " in line:
                key = line.split("job key ", 1)[1].split(" ")[0]
                break
        assert key, "dacrun did not say where its key is"
        published = Path(key).with_name("rank-0.addr")
        deadline = time.monotonic() + 30
        while not published.exists() or not published.read_text().strip():
            assert time.monotonic() < deadline, "rank 0 published no address"
            time.sleep(0.02)
        address = published.read_text().splitlines()[0]
        with dac.init(join=address, key_file=key) as comm:
            assert (comm.rank, comm.size, comm.members) == (2, 3, [0, 1, 2])
            assert comm.address.endswith(f"/p2p/{comm.peer_id}")
            for i in range(3):  # the members' loop, from its top
                if i > 0:
                    assert comm.admit() == []
                r = comm.allreduce(3.0, op="sum")
                assert r.contributors == [0, 1, 2] and r.value == 6.0, r
        out, err = job.communicate(timeout=60)
    finally:
        job.kill()
    assert job.returncode == 0, out + err
    assert ok_ranks(out, "grown") == [0, 1], out


def test_a_member_that_left_after_its_part_is_not_listed_as_departed() -> None:
    """Issue 16: `departed()` listed ranks that had finished normally."""
    p = run_spmd("leaver.py", 3)
    assert p.returncode == 0, p.stdout
    for check in ["left-after-finishing", "departed-once-missing"]:
        assert ok_ranks(p.stdout, check) == [0, 1], f"{check}:\n{p.stdout}"


def test_a_frozen_rank_raises_when_it_wakes_and_the_others_go_on(tmp_path: Path) -> None:
    """A rank frozen past the peer timeout does not go on alone: it raises
    NetworkError when it wakes (before, it got no exception at all and ran
    the rest of the job by itself)."""
    pid_file = tmp_path / "pid"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAC_")}
    proc = subprocess.Popen(
        [str(dacrun_path()), "-n", "3", "--keep-going", "--peer-timeout", "1", "--",
         sys.executable, str(SPMD / "frozen_rank.py"), str(pid_file)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, "rank 2 never started"
            assert proc.poll() is None, proc.communicate()[0]
            time.sleep(0.05)
        time.sleep(1.5)
        pid = int(pid_file.read_text())
        os.kill(pid, signal.SIGSTOP)
        time.sleep(3.0)
        os.kill(pid, signal.SIGCONT)
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert ok_ranks(out, "survivors-go-on") == [0, 1], out
    assert ok_ranks(out, "frozen-rank-fails") == [2], out


def test_ctrl_c_interrupts_a_blocked_call_that_released_the_gil(tmp_path: Path) -> None:
    ready, done = tmp_path / "ready", tmp_path / "done"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAC_")}
    proc = subprocess.Popen(
        [str(dacrun_path()), "-n", "2", "--", sys.executable, str(SPMD / "interrupted.py"),
         str(ready), str(done)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() or not ready.read_text():
            assert time.monotonic() < deadline, "rank 0 never started its reduction"
            assert proc.poll() is None, proc.communicate()[0]
            time.sleep(0.05)
        time.sleep(0.5)  # rank 0 is now blocked in allreduce
        os.kill(int(ready.read_text()), signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert ok_ranks(out, "interrupted") == [0], out
    assert "this member has left the job" in out
    assert "another thread counted to" in out  # the GIL was released meanwhile



def test_the_readme_example_runs_under_dacrun(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    start = readme.index("# fit.py")
    script = tmp_path / "fit.py"
    script.write_text(readme[start:readme.index("```", start)])
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAC_")}
    p = subprocess.run(
        [str(dacrun_path()), "-n", "4", "--", sys.executable, str(script)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120,
        env=env, check=False,
    )
    assert p.returncode == 0, p.stdout
    assert p.stdout.rstrip().endswith("1000.0 [0, 1, 2, 3]"), p.stdout


def test_dacrun_takes_the_program_without_a_separator() -> None:
    """`dacrun -n 2 python -c '…'`, as mpirun takes it (no `--`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAC_")}
    code = ("import dac\n"
            "with dac.init() as c:\n"
            "    r = c.allreduce(float(c.rank), op='sum')\n"
            "    assert r.value == 1.0, r\n"
            "    print('ok mpirun-form', flush=True)\n")
    p = subprocess.run([str(dacrun_path()), "-n", "2", sys.executable, "-c", code],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=120, env=env, check=False)
    assert p.returncode == 0, p.stdout
    assert ok_ranks(p.stdout, "mpirun-form") == [0, 1], p.stdout
