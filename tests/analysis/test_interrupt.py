"""A run that respects the researcher's time (issue 22, item 3): Ctrl-C exits within seconds and keeps every
finished batch, ``--resume`` then equals an uninterrupted run; the workers of a main process killed with
SIGKILL exit; a worker killed by the system gives one line.

Ctrl-C is sent as a terminal sends it, to the whole process group (``start_new_session`` + ``killpg``), on
runs with two local worker processes.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from test_resume import SMALL, _assert_same_npz, _assert_same_results, _batches

ROOT = Path(__file__).resolve().parents[2]

# flows of an 8×8 rank-2 task at N = 5: 16 batches of 4 runs, ~0.3 s each on one core
FLOWS_8X8 = """
name = "interrupt-8x8"
seed = 5
[task]
kind = "random_low_rank"
m = 8
n = 8
rank = 2
n_observed = 24
seed = 3
[flows]
depths = [5]
runs = 64
batch_size = 4
init_scale = 1e-3
[tests]
families = []
[output]
figures = false
trace_plots = false
"""

# one 20×20 endpoint at N = ∞ takes about a second: each of the two batches of 16 runs ~16 s
LONG_BATCHES = """
name = "interrupt-20x20"
seed = 2
[task]
kind = "random_low_rank"
m = 20
n = 20
rank = 3
n_observed = 200
seed = 2
[flows]
depths = [inf]
runs = 32
batch_size = 16
init_scale = 1e-3
[tests]
families = []
[output]
figures = false
trace_plots = false
"""


def _start(exp: Path, out: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "analysis.cli", "run", str(exp), "--out", str(out), "--no-progress",
           "--workers", "2", *extra]
    # PYTHONFAULTHANDLER: a run that does not exit is dumped (every thread's stack) by SIGABRT, see _sigint_when
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _wait_for(proc: subprocess.Popen, ready, timeout: float = 120.0) -> None:
    t0 = time.monotonic()
    while not ready():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"run ended (code {proc.returncode}) before the interruption point:\n{out}\n{err}")
        if time.monotonic() - t0 > timeout:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("interruption point not reached in time")
        time.sleep(0.005)


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            kids += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            pass
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _run(exp: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "analysis.cli", "run", str(exp), "--out", str(out), "--no-progress",
           "--workers", "2", *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)


def _uninterrupted(tmp_path: Path, config: str) -> tuple[Path, Path, Path]:
    """(config file, results of an uninterrupted run, folder for the interrupted one)."""
    exp = tmp_path / "exp.toml"
    exp.write_text(config)
    ref, out = tmp_path / "ref", tmp_path / "out"
    r = _run(exp, ref)
    assert r.returncode == 0, r.stderr
    return exp, ref, out


def _sigint_when(proc: subprocess.Popen, ready) -> tuple[float, str, str]:
    """Ctrl-C (SIGINT to the process group) once ``ready()``; (seconds to exit, stdout, stderr)."""
    _wait_for(proc, ready)
    t0 = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        alive = [p for p in [proc.pid, *_children(proc.pid)] if _alive(p)]
        for p in alive:  # faulthandler prints where each process is stuck
            os.kill(p, signal.SIGABRT)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        pytest.fail(f"no exit within 60 s of Ctrl-C; processes alive {alive}; their stacks:\n{err[-6000:]}")
    return time.monotonic() - t0, out, err


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc")
def test_ctrl_c_in_flows_exits_within_seconds_and_resume_equals_uninterrupted(tmp_path):
    exp, ref, out = _uninterrupted(tmp_path, FLOWS_8X8)

    proc = _start(exp, out)
    kids: list[int] = []

    def two_batches() -> bool:
        kids[:] = sorted(set(kids) | set(_children(proc.pid)))
        return len(_batches("flows_N5_*", out)) >= 2

    seconds, stdout, err = _sigint_when(proc, two_batches)
    assert proc.returncode == 130 and seconds < 10.0, (proc.returncode, seconds, err)
    assert "Traceback" not in err and err.strip().count("\n") == 0, err
    assert "rerun the same command with --resume" in err
    kept = _batches("flows_N5_*", out)
    assert 2 <= len(kept) < 16 and not (out / "endpoints.npz").exists()
    time.sleep(0.5)
    assert kids and not any(_alive(k) for k in kids), "worker processes left running after Ctrl-C"

    r = _run(exp, out, "--resume", "-v")
    assert r.returncode == 0, r.stderr
    assert f"flows N5 s=0.001: resumed {len(kept)}/16 batches from checkpoints" in r.stdout
    _assert_same_npz(ref / "endpoints.npz", out / "endpoints.npz")
    # item 4: the time spent is kept across the two sessions (the interrupted one included) and reported
    spent = json.loads((out / "run.json").read_text())["time_spent"]
    first = json.loads((ref / "run.json").read_text())["time_spent"]
    assert spent["flows"]["sessions"] == 2 and first["flows"]["sessions"] == 1
    assert spent["flows"]["wall_s"] > 0 and spent["flows"]["cpu_s"] > 0
    report = (out / "report.md").read_text()
    assert "over 2 sessions" in report and "| flows |" in report


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc")
def test_ctrl_c_does_not_wait_for_long_running_batches(tmp_path):
    """Batches of ~16 s each on two workers, Ctrl-C 2 s into them: the run exits within 10 s (the running
    batches are given up, their workers terminated), not when the batches end."""
    exp = tmp_path / "long.toml"
    exp.write_text(LONG_BATCHES)
    out = tmp_path / "out"
    proc = _start(exp, out)
    kids: list[int] = []
    since = [math.inf]

    def two_seconds_into_the_batches() -> bool:
        kids[:] = sorted(set(kids) | set(_children(proc.pid)))
        if len(kids) >= 2 and since[0] == math.inf:
            since[0] = time.monotonic()
        return time.monotonic() - since[0] >= 2.0

    seconds, _, err = _sigint_when(proc, two_seconds_into_the_batches)
    assert proc.returncode == 130 and seconds < 10.0, (proc.returncode, seconds, err)
    assert not _batches("flows_Ninf_*", out), "no batch can have finished in 2 s"
    time.sleep(0.5)
    assert not any(_alive(k) for k in kids), "worker processes left running after Ctrl-C"


@pytest.mark.slow  # ~45 s; the fast suite resumes sampling after SIGKILL and after Ctrl-C (test_resume.py)
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc")
def test_ctrl_c_in_references_then_resume_equals_uninterrupted(tmp_path):
    exp, ref, out = _uninterrupted(tmp_path, SMALL)
    proc = _start(exp, out)
    seconds, _, err = _sigint_when(proc, lambda: len(_batches("ref_solution_set_mcmc_N3_*", out)) >= 1)
    assert proc.returncode == 130 and seconds < 10.0, (proc.returncode, seconds, err)
    assert "Traceback" not in err and "--resume" in err
    n_done = len(_batches("ref_solution_set_mcmc_N3_*", out))
    assert 1 <= n_done
    r = _run(exp, out, "--resume", "-v")
    assert r.returncode == 0, r.stderr
    _assert_same_results(ref, out)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc")
def test_sigkill_of_the_main_process_takes_its_workers_along(tmp_path):
    exp = tmp_path / "f8.toml"
    exp.write_text(FLOWS_8X8)
    out = tmp_path / "out"
    proc = _start(exp, out)
    kids: list[int] = []

    def running() -> bool:
        kids[:] = sorted(set(kids) | set(_children(proc.pid)))
        return len(kids) >= 2 and len(_batches("flows_N5_*", out)) >= 1

    _wait_for(proc, running)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)  # not communicate(): orphaned workers would hold its pipes open
    proc.stdout.close()
    proc.stderr.close()
    deadline = time.monotonic() + 10.0
    while any(_alive(k) for k in kids) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [k for k in kids if _alive(k)]
    for k in left:
        os.kill(k, signal.SIGKILL)
    assert not left, f"worker processes {left} still running 10 s after the main process was killed"


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc")
def test_a_worker_killed_by_the_system_gives_one_line(tmp_path):
    exp = tmp_path / "f8.toml"
    exp.write_text(FLOWS_8X8)
    out = tmp_path / "out"
    proc = _start(exp, out)
    kids: list[int] = []

    def running() -> bool:
        kids[:] = _children(proc.pid)
        return len(kids) >= 1 and len(_batches("flows_N5_*", out)) >= 1

    _wait_for(proc, running)
    os.kill(kids[0], signal.SIGKILL)  # what the kernel's out-of-memory killer does
    try:
        stdout, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the run did not end after one of its workers was killed")
    assert proc.returncode == 1, (proc.returncode, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("dlnvolume: error: a worker process died while running flows N=5")
    assert "most likely out of memory" in lines[0] and "--workers" in lines[0] and "--resume" in lines[0]
    assert not (out / "endpoints.npz").exists() and not (out / "report.md").exists()
    kept = _batches("flows_N5_*", out)
    for f in kept:  # every kept batch is a whole one
        with np.load(f) as z:
            assert z["X"].shape[0] == 4


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="needs /proc")
def test_ctrl_c_while_the_package_is_imported_gives_one_line(tmp_path):
    """Ctrl-C as soon as numpy is being loaded (the first second of a run): one line and code 130, not a
    traceback from the middle of an import (the handler is installed before the heavy imports)."""
    exp = tmp_path / "exp.toml"
    exp.write_text(FLOWS_8X8)
    proc = _start(exp, tmp_path / "out")

    def numpy_loading() -> bool:
        try:
            return "_multiarray_umath" in Path(f"/proc/{proc.pid}/maps").read_text()
        except OSError:
            return False

    seconds, _, err = _sigint_when(proc, numpy_loading)
    assert proc.returncode == 130 and seconds < 10.0, (proc.returncode, seconds, err)
    assert "Traceback" not in err and err.strip().count("\n") == 0, err
