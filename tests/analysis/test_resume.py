"""Nothing lost on interruption (issue 7): SIGKILL + ``--resume``, disk-full and permission errors.

* ``dlnvolume run`` is killed with SIGKILL in the flows stage and in the sampling (MCMC reference)
  stage; ``--resume`` skips the finished batches (their files keep their bytes and mtimes, the
  "resumed k/n" lines name the right k) and the outputs equal an uninterrupted run bit for bit.
* A write failure (ENOSPC, EACCES, simulated by monkeypatching because the tests run as root) exits
  with code 1 and one line, and leaves a previous complete results folder byte-identical.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from analysis.cli import main

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

ROOT = Path(__file__).resolve().parents[2]

# 4 flow batches per depth, 4 (small) or 6 (slow test) chain batches of the MCMC reference.
SMALL = """
name = "resume-small"
seed = 11
[task]
kind = "diagonal_2x2"
[flows]
depths = [3]
runs = 8
init_scale = 1e-3
init_scales = [1e-2, 1e-3]  # a two-scale ladder keeps these runs short
batch_size = 2
keep_status = ["converged"]
[[references]]
name = "solution_set_mcmc"
measure = "solution_set"
method = "mcmc"
radius = 3.0
draws = 100
chains = 4
warmup = 30
[statistics]
rtol = 1e-4
volume_rank = 1
[predictors]
n_starts = 4
[tests]
families = ["distribution"]
n_perm = 19
statistics = ["log_volume_density"]
[output]
figures = false
trace_plots = false
"""

FULL = """
name = "resume-full"
seed = 7
[task]
kind = "diagonal_2x2"
[flows]
depths = [3, 5]
runs = 16
init_scale = 1e-3
init_scales = [1e-2, 1e-3]  # a two-scale ladder keeps these runs short
batch_size = 4
keep_status = ["converged"]
[[references]]
name = "solution_set"
measure = "solution_set"
method = "exact"
radius = 3.0
draws = 100
chains = 2
[[references]]
name = "solution_set_mcmc"
measure = "solution_set"
method = "mcmc"
radius = 3.0
draws = 150
chains = 6
warmup = 50
depths = [5]
[statistics]
rtol = 1e-4
volume_rank = 1
[predictors]
n_starts = 4
[tests]
families = ["distribution", "percentile", "null"]
n_perm = 49
null_draws = 200
statistics = ["log_volume_density"]
[output]
figures = true
trace_plots = true
"""

# fast, no MCMC: for the write-failure tests
TINY = """
name = "tiny"
seed = 5
[task]
kind = "diagonal_2x2"
[flows]
depths = [3]
runs = 6
init_scale = 1e-3
init_scales = [1e-2, 1e-3]  # a two-scale ladder keeps these runs short
keep_status = ["converged"]
[[references]]
name = "solution_set"
measure = "solution_set"
method = "exact"
radius = 3.0
draws = 60
chains = 2
[statistics]
rtol = 1e-4
volume_rank = 1
[predictors]
n_starts = 4
[tests]
families = ["distribution", "null"]
n_perm = 19
null_draws = 100
statistics = ["log_volume_density"]
[output]
figures = true
trace_plots = false
"""


# --------------------------------------------------------------------------- helpers
def _start(exp: Path, out: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "analysis.cli", "run", str(exp), "--out", str(out), "--no-progress",
           "--workers", "1", *extra]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _batches(pattern: str, out: Path) -> list[Path]:
    return sorted((out / "checkpoints").glob(f"{pattern}/batch-*.npz"))


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 90.0) -> str:
    """Poll every 5 ms until ``ready()``; SIGKILL the process; return its stdout."""
    t0 = time.monotonic()
    while not ready():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"run ended (code {proc.returncode}) before the kill point:\n{out}\n{err}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            pytest.fail("kill point not reached in time")
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    return out


def _files(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder`` except temporary ones and the time ledger (``time_spent.json``, which every
    session updates by design, issue 22): relative path -> (bytes, mtime_ns)."""
    return {str(f.relative_to(folder)): (f.read_bytes(), f.stat().st_mtime_ns)
            for f in sorted(folder.rglob("*"))
            if f.is_file() and not f.name.endswith(".tmp") and f.name != "time_spent.json"}


def _assert_untouched(before: dict, folder: Path) -> None:
    after = _files(folder)
    missing = [k for k in before if k not in after]
    changed = [k for k in before if k in after and after[k] != before[k]]
    assert not missing and not changed, f"rewritten or removed: {missing + changed}"


def _assert_same_npz(a: Path, b: Path) -> None:
    with np.load(a) as x, np.load(b) as y:
        assert sorted(x.files) == sorted(y.files)
        for k in x.files:
            assert x[k].dtype == y[k].dtype and np.array_equal(x[k], y[k]), (a.name, k)


def _assert_same_results(a: Path, b: Path) -> None:
    """endpoints.npz, the reference draws (checkpoints/ref_*.npz) and every array of results.nc."""
    _assert_same_npz(a / "endpoints.npz", b / "endpoints.npz")
    refs = sorted(p.name for p in (a / "checkpoints").glob("ref_*.npz"))
    assert refs and refs == sorted(p.name for p in (b / "checkpoints").glob("ref_*.npz"))
    for name in refs:
        _assert_same_npz(a / "checkpoints" / name, b / "checkpoints" / name)
    from analysis import diagnostics

    ia = diagnostics.arrays(diagnostics.load(a / "results.nc"))
    ib = diagnostics.arrays(diagnostics.load(b / "results.nc"))
    assert sorted(ia) == sorted(ib) and ia
    for k in ia:
        floats = np.asarray(ia[k]).dtype.kind == "f"  # NaN pads the predicted points of results.nc /bias
        assert np.array_equal(ia[k], ib[k], equal_nan=floats), k
    assert (a / "config.toml").read_bytes() == (b / "config.toml").read_bytes()


def _resumed(stdout: str, label: str) -> tuple[int, int]:
    m = re.search(rf"^{re.escape(label)}: resumed (\d+)/(\d+) batches from checkpoints$", stdout, re.M)
    assert m, f"no resume line for {label!r} in:\n{stdout}"
    return int(m.group(1)), int(m.group(2))


# --------------------------------------------------------------------------- SIGKILL and --resume
def test_sigkill_in_sampling_then_resume_is_bit_identical(tmp_path, capsys):
    exp = tmp_path / "small.toml"
    exp.write_text(SMALL)
    ref, out = tmp_path / "ref", tmp_path / "out"
    assert main(["run", str(exp), "--out", str(ref), "--no-progress", "--workers", "1"]) == 0
    capsys.readouterr()

    proc = _start(exp, out)
    _kill_when(proc, lambda: len(_batches("ref_solution_set_mcmc_N3_*", out)) >= 1)
    done = _batches("ref_solution_set_mcmc_N3_*", out)
    assert 1 <= len(done) < 4 and not (out / "report.md").exists()
    before = _files(out / "checkpoints")
    # as if the kill had hit while a batch was being written: a temporary file is left behind
    (done[0].parent / ".batch-00003.npz.x1y2.tmp").write_bytes(b"partial")

    # without --resume or --force the folder is refused; --resume continues
    assert main(["run", str(exp), "--out", str(out), "--no-progress", "--workers", "1"]) == 2
    assert "--resume to continue" in capsys.readouterr().err
    assert main(["run", str(exp), "--out", str(out), "--no-progress", "--workers", "1", "--resume"]) == 0
    stdout = capsys.readouterr().out
    for sc in ("0.01", "0.001"):  # the init-scale ladder (docs/math.md §7.2)
        assert _resumed(stdout, f"flows N3 s={sc}") == (4, 4)
    assert _resumed(stdout, "reference solution_set_mcmc N3") == (len(done), 4)
    _assert_untouched(before, out / "checkpoints")
    assert len(_batches("ref_solution_set_mcmc_N3_*", out)) == 4
    _assert_same_results(ref, out)
    assert not list(out.rglob("*.tmp")) and not list(out.glob(".staging-*"))


@pytest.mark.slow
def test_sigkill_in_flows_and_in_sampling_then_resume_is_bit_identical(tmp_path):
    exp = tmp_path / "full.toml"
    exp.write_text(FULL)
    ref, out = tmp_path / "ref", tmp_path / "out"
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "analysis.cli", "run", str(exp), "--out", str(ref), "--no-progress",
                        "--workers", "1"], cwd=ROOT, capture_output=True, text=True)
    t_plain = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr

    # 1. kill in the middle of the flows of the first depth
    t0 = time.perf_counter()
    proc = _start(exp, out)
    _kill_when(proc, lambda: len(_batches("flows_N3_*", out)) >= 1)
    n3 = len(_batches("flows_N3_*", out))
    assert 1 <= n3 < 4 and not list((out / "checkpoints").glob("endpoints_*.npz"))
    before1 = _files(out / "checkpoints")

    # 2. resume, kill in the middle of the MCMC reference
    proc = _start(exp, out, "--resume")
    stdout2 = _kill_when(proc, lambda: len(_batches("ref_solution_set_mcmc_N5_*", out)) >= 1)
    assert _resumed(stdout2, "flows N3 s=0.01") == (n3, 4)  # the largest scale runs first
    assert _resumed(stdout2, "flows N5 s=0.01") == (0, 4)
    n_mcmc = len(_batches("ref_solution_set_mcmc_N5_*", out))
    assert 1 <= n_mcmc < 6
    _assert_untouched(before1, out / "checkpoints")
    before2 = _files(out / "checkpoints")

    # 3. resume to the end
    r = subprocess.run([sys.executable, "-m", "analysis.cli", "run", str(exp), "--out", str(out), "--no-progress",
                        "--workers", "1", "--resume"], cwd=ROOT, capture_output=True, text=True)
    t_killed = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr
    assert _resumed(r.stdout, "flows N3 s=0.001") == (4, 4) and _resumed(r.stdout, "flows N5 s=0.001") == (4, 4)
    assert _resumed(r.stdout, "reference solution_set N5") == (1, 1)
    assert _resumed(r.stdout, "reference solution_set_mcmc N5") == (n_mcmc, 6)
    _assert_untouched(before2, out / "checkpoints")
    _assert_same_results(ref, out)
    for png in ("volume_histograms.png", "trace_solution_set_mcmc_N5.png"):
        assert (out / "figures" / png).is_file()
    print(f"uninterrupted {t_plain:.1f} s; killed twice and resumed {t_killed:.1f} s "
          f"(flows N3 {n3}/4, mcmc {n_mcmc}/6 batches reused)")


def test_resume_refuses_another_configuration(tmp_path, capsys):
    exp = tmp_path / "tiny.toml"
    exp.write_text(TINY)
    out = tmp_path / "out"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "batch-00000.npz").write_bytes(b"x")
    # a non-empty folder without a recorded configuration
    assert main(["run", str(exp), "--out", str(out), "--no-progress", "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no config.toml" in err and "nothing to resume" in err
    (out / "checkpoints" / "batch-00000.npz").unlink()
    (out / "config.toml").write_text(TINY.replace("seed = 5", "seed = 6").replace("runs = 6", "runs = 7"))
    assert main(["run", str(exp), "--out", str(out), "--no-progress", "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dlnvolume: error: --resume: the configuration differs") and err.count("\n") == 1
    assert "flows.runs" in err and "seed" in err and "Traceback" not in err
    assert not (out / "report.md").exists()
    with pytest.raises(SystemExit) as exc:
        main(["run", str(exp), "--out", str(out), "--resume", "--force"])
    assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_resume_into_a_missing_folder_starts_a_run(tmp_path, capsys):
    exp = tmp_path / "tiny.toml"
    exp.write_text(TINY.replace("figures = true", "figures = false"))
    out = tmp_path / "new"
    assert main(["run", str(exp), "--out", str(out), "--no-progress", "--workers", "1", "--resume"]) == 0
    stdout = capsys.readouterr().out
    assert _resumed(stdout, "flows N3 s=0.001") == (0, 1) and _resumed(stdout, "reference solution_set N3") == (0, 1)
    assert (out / "report.md").is_file() and (out / "checkpoints" / "config.toml").read_text() == \
        (out / "config.toml").read_text()


# --------------------------------------------------------------------------- write failures
@pytest.fixture(scope="module")
def complete(tmp_path_factory):
    """A complete results folder of TINY (with figures), made once; tests copy it."""
    import shutil

    base = tmp_path_factory.mktemp("complete")
    exp = base / "tiny.toml"
    exp.write_text(TINY)
    out = base / "out"
    assert main(["run", str(exp), "--out", str(out), "--no-progress", "--workers", "1"]) == 0

    def copy(dst: Path) -> tuple[Path, Path]:
        shutil.copytree(out, dst / "out")
        return exp, dst / "out"

    return copy


def _bytes(folder: Path) -> dict[str, bytes]:
    return {k: v[0] for k, v in _files(folder).items()}


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_leaves_previous_results_intact(complete, tmp_path, capsys, monkeypatch):
    exp, out = complete(tmp_path)
    assert (out / "figures" / "volume_histograms.png").is_file()
    before = _bytes(out)
    monkeypatch.setattr(np, "savez", _enospc)
    assert main(["run", str(exp), "--out", str(out), "--no-progress", "--workers", "1", "--force"]) == 1
    err = capsys.readouterr().err
    assert err == (f"dlnvolume: error: cannot write {out / 'endpoints.npz'}: No space left on device; previous "
                   f"results in {out} are intact (finished checkpoints are kept; rerun with --resume)\n")
    assert _bytes(out) == before  # same files, same bytes: no temporary or staging file left


def test_disk_full_while_writing_figures(complete, tmp_path, capsys, monkeypatch):
    import matplotlib.figure

    exp, out = complete(tmp_path)
    before = _bytes(out)
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", _enospc)
    assert main(["run", str(exp), "--out", str(out), "--no-progress", "--workers", "1", "--resume"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"dlnvolume: error: cannot write {out / 'figures'}") and "No space left on device" in err
    assert f"previous results in {out} are intact" in err and err.count("\n") == 1
    assert _bytes(out) == before


def test_permission_denied_leaves_previous_results_intact(complete, tmp_path, capsys, monkeypatch):
    exp, out = complete(tmp_path)
    before = _bytes(out)
    real = os.replace

    def denied(src, dst, *a, **k):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dst))

    monkeypatch.setattr(os, "replace", denied)
    assert main(["run", str(exp), "--out", str(out), "--no-progress", "--workers", "1", "--force"]) == 1
    err = capsys.readouterr().err
    assert err == (f"dlnvolume: error: cannot write {out / 'endpoints.npz'}: Permission denied; previous results in "
                   f"{out} are intact (finished checkpoints are kept; rerun with --resume)\n")
    monkeypatch.setattr(os, "replace", real)
    assert _bytes(out) == before


def test_failure_part_way_through_the_final_moves_says_what_was_replaced(complete, tmp_path, capsys, monkeypatch):
    exp, out = complete(tmp_path)
    before = _bytes(out)
    real = os.replace

    def denied_for_results(src, dst, *a, **k):
        if Path(dst) == out / "results.nc":
            raise PermissionError(errno.EROFS, os.strerror(errno.EROFS), str(dst))
        return real(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", denied_for_results)
    assert main(["run", str(exp), "--out", str(out), "--no-progress", "--workers", "1", "--force"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"dlnvolume: error: cannot write {out / 'results.nc'}: Read-only file system; ")
    assert "new output file(s) were already moved into" in err and "endpoints.npz" in err
    assert "report.md" not in err and err.count("\n") == 1
    after = _bytes(out)
    # the report (moved last) and results.nc are the previous ones; nothing is missing
    for name in ("report.md", "report.html", "run.json", "results.nc"):
        assert after[name] == before[name], name
    assert set(after) == set(before)


def test_failure_in_a_fresh_run_says_no_results_were_written(tmp_path, capsys, monkeypatch):
    exp = tmp_path / "tiny.toml"
    exp.write_text(TINY)
    out = tmp_path / "fresh"
    monkeypatch.setattr(np, "savez", _enospc)
    assert main(["run", str(exp), "--out", str(out), "--no-progress", "--workers", "1"]) == 1
    err = capsys.readouterr().err
    # the first file written with np.savez is a flow batch checkpoint
    assert re.fullmatch(rf"dlnvolume: error: cannot write {re.escape(str(out))}/checkpoints/flows_N3_\w+/"
                        rf"batch-00000\.npz: No space left on device; no results were written to "
                        rf"{re.escape(str(out))} \(finished checkpoints are kept; rerun with --resume\)\n", err), err
    assert not list(out.rglob("*.npz")) and not list(out.rglob("*.tmp"))


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root ignores file permissions; EACCES is simulated above")
def test_real_read_only_folder(complete, tmp_path, capsys):
    exp, out = complete(tmp_path)
    before = _bytes(out)
    mode = out.stat().st_mode
    out.chmod(0o555)
    try:
        assert main(["run", str(exp), "--out", str(out), "--no-progress", "--workers", "1", "--force"]) == 1
    finally:
        out.chmod(mode)
    err = capsys.readouterr().err
    assert "Permission denied" in err and f"previous results in {out} are intact" in err
    assert _bytes(out) == before


@pytest.mark.slow
def test_ctrl_c_with_worker_processes_then_resume(tmp_path, capsys):
    """SIGINT to the whole process group (what a terminal's Ctrl-C does) while 2 worker processes run flows:
    one line with the --resume hint, exit 130, no process left behind; --resume then completes the run."""
    exp = tmp_path / "small.toml"
    exp.write_text(SMALL)
    ref, out = tmp_path / "ref", tmp_path / "out"
    assert main(["run", str(exp), "--out", str(ref), "--no-progress", "--workers", "1"]) == 0
    capsys.readouterr()
    cmd = [sys.executable, "-m", "analysis.cli", "run", str(exp), "--out", str(out), "--no-progress", "--workers", "2"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    t0 = time.monotonic()
    while not _batches("flows_N3_*", out):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < 90, "no flow batch written in time"
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err == (f"dlnvolume: interrupted; finished batches are kept in {out / 'checkpoints'}: rerun the same "
                   "command with --resume to continue\n")
    for _ in range(200):  # the workers leave with the parent
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("worker processes left behind")
    assert main(["run", str(exp), "--out", str(out), "--no-progress", "--workers", "1", "--resume"]) == 0
    _assert_same_results(ref, out)
