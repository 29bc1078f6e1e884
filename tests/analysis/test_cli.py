"""CLI end to end: --quick run into tmp_path, outputs, refusal to overwrite, schema errors, resume."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

import dlnvolume as dv
from analysis.cli import main

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

TINY = """
name = "tiny"
seed = 5
[task]
kind = "diagonal_2x2"
[flows]
depths = [3, "inf"]
runs = 12
init_scale = 1e-3
init_scales = [1e-2, 1e-3]  # a two-scale ladder keeps these runs short
keep_status = ["converged"]
[[references]]
name = "solution_set"
measure = "solution_set"
method = "exact"
radius = 3.0
draws = 100
chains = 2
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
figures = false
"""


@pytest.mark.arviz
def test_quick_builtin_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--quick", "--out", str(out), "--no-progress", "--workers", "2"]) == 0
    for name in ("report.md", "report.html", "results.nc", "endpoints.npz", "config.toml", "run.json",
                 "figures/volume_histograms.png", "figures/hyperbola.png", "figures/spectra.png"):
        assert (out / name).is_file(), name
    from analysis import diagnostics

    tree = diagnostics.load(out / "results.nc")
    assert {"constant_data", "endpoints", "references"} <= set(tree.children)
    assert {"posterior", "sample_stats"} <= set(tree["references/solution_set"].children)
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "<table>" in html
    md = (out / "report.md").read_text()
    assert "percentile:small" in md and "mannwhitney" in md and "ks:log_volume_density" in md
    info = json.loads((out / "run.json").read_text())
    assert info["quick"] is True and info["versions"]["numpy"] == np.__version__ and info["timings"]["total"] > 0
    ep = np.load(out / "endpoints.npz")
    assert ep["X_N2"].shape[1:] == (2, 2)
    printed = capsys.readouterr().out
    assert "verdict at α = 0.05 (init scales 0.01, 0.001, 0.0001, same seeds; tests on the smallest)" in printed
    assert "stratum M_1: NOT REACHED" in printed and "QUICK RUN" in printed  # N = 2 (docs/math.md §7.2)
    assert "vs solution_set: follow the reference NO" in printed
    assert (out / "verdict.json").is_file()
    assert md.index("## Verdict") < md.index("## Flow endpoints")


def test_refuses_non_empty_out_and_resumes_with_force(tmp_path, capsys):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    out = tmp_path / "out"
    out.mkdir()
    (out / "something").write_text("x")
    assert main(["run", str(cfg), "--out", str(out), "--no-progress", "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "is not empty; use --force" in err
    assert main(["run", str(cfg), "--out", str(out), "--no-progress", "--workers", "1", "--force"]) == 0
    first = dict(np.load(out / "endpoints.npz"))
    assert len(list((out / "checkpoints").glob("endpoints_N3_*.npz"))) == 2  # one per scale of the ladder
    # a rerun reuses the checkpoints and reproduces the endpoints exactly
    assert main(["run", str(cfg), "--out", str(out), "--no-progress", "--workers", "1", "--force"]) == 0
    second = dict(np.load(out / "endpoints.npz"))
    for k in first:
        np.testing.assert_array_equal(first[k], second[k])
    # the seed is honoured: another seed gives other endpoints
    out2 = tmp_path / "out2"
    assert main(["run", str(cfg), "--out", str(out2), "--no-progress", "--workers", "1", "--seed", "6"]) == 0
    assert not np.allclose(np.load(out2 / "endpoints.npz")["X_N3"], first["X_N3"])


@pytest.mark.parametrize("text,key", [
    ("[task]\nkind = 'diagonal_2x2'\n[flows]\nruns = 'x'\n", "flows.runs"),
    ("[task]\nkind = 'diagonal_2x2'\nbogus = 1\n", "bogus"),
    ("[task\nkind = 1\n", "malformed TOML"),
    ("[task]\nkind = 'diagonal_2x2'\n[[references]]\nname = 'r'\nmeasure = 'gibbs_limit'\nmethod = 'emcee'\n", "references[0].method"),
])
def test_config_errors_exit_2_one_line(tmp_path, capsys, text, key):
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    assert main(["run", str(cfg), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dlnvolume: error:") and key in err and "\n" not in err and "Traceback" not in err


def test_other_commands(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "--quick", "--sections", "volume", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "log_volume_density d=100" in text and (out / "bench.json").exists() and (out / "bench.png").exists()
    assert main(["bench", "--sections", "nope"]) == 2
    assert "--sections" in capsys.readouterr().err
    assert main(["experiments"]) == 0
    listing = capsys.readouterr().out
    assert "cmv-2x2" in listing and "arora-100" in listing and "razin-cohen-2x2" in listing
    p = tmp_path / "x.npy"
    np.save(p, np.diag([2.0, 1.0]))
    assert main(["volume", str(p), "--depth", "2"]) == 0
    # MATH.md §8 item 9: ρ̄_2(diag(2, 1)) = √2/3
    assert math.exp(float(capsys.readouterr().out)) == pytest.approx(math.sqrt(2) / 3, rel=1e-12)
    assert main(["volume", str(p), "--depth", "3", "--unnormalized"]) == 0
    assert math.exp(float(capsys.readouterr().out)) == pytest.approx(0.04111549722806259, rel=1e-12)
    assert main(["volume", str(p), "--depth", "inf"]) == 0
    assert math.exp(float(capsys.readouterr().out)) == pytest.approx(0.23104906018664842, rel=1e-12)
    assert main(["volume", str(p), "--depth", "0"]) == 2
    assert "depth=0" in capsys.readouterr().err
    assert float(dv.log_volume_density(np.diag([2.0, 1.0]), 2)) == pytest.approx(math.log(math.sqrt(2) / 3))


def test_bench_without_sections_runs_every_registered_section(tmp_path, capsys, monkeypatch):
    """The default of ``--sections`` is derived from analysis.bench.SECTIONS: a section added there (as the
    flows engineer will add "flows-stiff") runs without any change to the CLI."""
    from analysis import bench

    ran = []

    def section(name):
        def run(quick, rng):
            ran.append((name, quick))
            return [bench.Row(name, "w", 1e-3, "b", 2e-3, "ok")]
        return run

    monkeypatch.setattr(bench, "SECTIONS", {"volume": section("volume"), "flows-stiff": section("flows-stiff"),
                                            "new-section": section("new-section")})
    assert main(["bench", "--quick", "--out", str(tmp_path / "b"), "--threads", "0"]) == 0
    assert ran == [("volume", True), ("flows-stiff", True), ("new-section", True)]
    ran.clear()
    assert main(["bench", "--quick", "--sections", "new-section", "--out", str(tmp_path / "c"), "--threads", "0"]) == 0
    assert ran == [("new-section", True)]
    assert main(["bench", "--sections", "references"]) == 2  # not in the (patched) SECTIONS: refused
    assert "expected names from ['volume', 'flows-stiff', 'new-section']" in capsys.readouterr().err


def test_dask_missing_gives_one_line(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "dask.distributed", None)  # import fails
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    assert main(["run", str(cfg), "--out", str(tmp_path / "o"), "--no-progress", "--dask", "local"]) == 2
    assert "--dask needs dask.distributed" in capsys.readouterr().err


MCMC_REF = """
[[references]]
name = "ss_mcmc"
measure = "solution_set"
method = "mcmc"
radius = 3.0
draws = 40
chains = 4
warmup = 20
depths = [3]
"""


def _run_outputs(folder):
    """endpoints, reference draws (every variable of every group of results.nc) and tests.json."""
    import json

    from analysis import diagnostics

    ep = np.load(folder / "endpoints.npz")
    out = {f"endpoints/{k}": ep[k] for k in ep.files}
    out.update(diagnostics.arrays(diagnostics.load(folder / "results.nc")))
    out["tests"] = json.loads((folder / "tests.json").read_text())
    return out


@pytest.mark.slow
def test_same_seed_bit_identical_with_1_worker_2_processes_and_dask(tmp_path):
    """Issue "Reliability", Determinism: endpoints, draws and test statistics are bit-identical with
    1 worker, 2 worker processes and a 2-worker Dask LocalCluster."""
    pytest.importorskip("dask.distributed")
    cfg = tmp_path / "tiny.toml"
    text = TINY.replace("[statistics]", MCMC_REF + "\n[statistics]")
    cfg.write_text(text)
    runs = {"one": ["--workers", "1"], "two": ["--workers", "2"], "dask": ["--dask", "local", "--workers", "2"]}
    for name, extra in runs.items():
        assert main(["run", str(cfg), "--out", str(tmp_path / name), "--no-progress", *extra]) == 0
    ref = _run_outputs(tmp_path / "one")
    assert any("/posterior/" in k for k in ref) and len(ref["tests"]["tests"]) > 0
    for name in ("two", "dask"):
        got = _run_outputs(tmp_path / name)
        assert sorted(got) == sorted(ref)
        for k in ref:
            if k == "tests":
                assert got[k] == ref[k], name
            else:
                assert np.array_equal(got[k], ref[k], equal_nan=got[k].dtype.kind == "f"), (name, k)

def test_unknown_flow_option_names_the_config_key(tmp_path, capsys):
    cfg = tmp_path / "x.toml"
    cfg.write_text(TINY.replace("[[references]]", "[flows.options]\nbogus = 1\n\n[[references]]", 1))
    assert main(["run", str(cfg), "--out", str(tmp_path / "o"), "--no-progress", "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "config key 'flows.options'" in err and "'bogus'" in err and "Traceback" not in err


# --------------------------------------------------------------------------- the edges a user hits
def test_volume_rejects_3d_complex_and_non_numeric(tmp_path, capsys):
    cases = [(np.ones((2, 2, 2)), r"shape \(2, 2, 2\); expected one m x n matrix \(2-D\)"),
             (np.eye(2) * (1 + 1j), r"complex dtype complex128; expected a real matrix"),
             (np.array([["a", "b"], ["c", "d"]]), r"non-numeric dtype <U1; expected a real matrix")]
    import re

    for i, (X, match) in enumerate(cases):
        f = tmp_path / f"x{i}.npy"
        np.save(f, X)
        assert main(["volume", str(f), "--depth", "3"]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and re.search(match, err), err


def test_volume_warns_with_the_numerical_rank_off_the_stratum(tmp_path, capsys):
    f = tmp_path / "r1.npy"
    np.save(f, np.outer([1.0, 2.0], [1.0, 0.5]))  # rank 1
    assert main(["volume", str(f), "--depth", "3"]) == 0  # full-rank stratum asked for
    cap = capsys.readouterr()
    assert cap.err.startswith("dlnvolume: warning: the matrix has numerical rank 1 (σ = 2.5, ")
    assert "not the requested stratum M_2" in cap.err and "(pass --rank 1 for its own stratum)" in cap.err
    assert main(["volume", str(f), "--depth", "3", "--rank", "1"]) == 0
    cap = capsys.readouterr()
    assert cap.err == "" and np.isfinite(float(cap.out))


def test_version_quiet_verbose(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"dlnvolume {dv.__version__}"
    cfg = tmp_path / "t.toml"
    cfg.write_text(TINY)
    assert main(["run", str(cfg), "--out", str(tmp_path / "q"), "-q"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("dlnvolume: wrote ")
    assert main(["run", str(cfg), "--out", str(tmp_path / "v"), "-v", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "resumed 0/" not in out and "stage total: " in out  # a fresh run has nothing to resume (issue 22)
    assert "verdict at α" in out
    with pytest.raises(SystemExit):
        main(["run", str(cfg), "--out", str(tmp_path / "w"), "-q", "-v"])


def test_ctrl_c_is_one_line_with_the_resume_hint(tmp_path, capsys, monkeypatch):
    import analysis.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_cmd_run", interrupted)
    out = tmp_path / "o"
    assert main(["run", "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert err == (f"dlnvolume: interrupted; finished batches are kept in {out / 'checkpoints'}: rerun the same "
                   "command with --resume to continue\n")


def test_python_m_dlnvolume_and_import_stays_free_of_analysis():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "dlnvolume", "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == f"dlnvolume {dv.__version__}"
    r = subprocess.run([sys.executable, "-c", "import sys, dlnvolume; print(sorted(m for m in sys.modules "
                        "if m.split('.')[0] in ('analysis', 'samplers', 'arviz', 'matplotlib')))"],
                       capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "[]"


def test_non_utf8_config_exits_2_with_one_line(tmp_path, capsys):
    p = tmp_path / "latin1.toml"
    p.write_bytes('name = "caf\xe9"\n[task]\nkind = "diagonal_2x2"\n'.encode("latin-1"))
    assert main(["run", str(p), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err == (f"dlnvolume: error: config {str(p)!r}: not UTF-8 text (byte 11: invalid continuation byte); "
                   "TOML files must be UTF-8\n")
