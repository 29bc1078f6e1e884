"""``dlnvolume check`` and the memory refusal (issue 22, item 1)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from analysis import plan
from analysis.cli import main
from analysis.experiment import builtin_experiments

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "docs" / "examples").glob("*.toml"))
#: planned in the fast suite; the others calibrate SMC references (tens of seconds) in the slow one
CASES = [p if p.stem == "custom-3x3" else pytest.param(p, marks=pytest.mark.slow) for p in EXAMPLES]

BIG = """
name = "too-big"
[task]
kind = "random_low_rank"
m = 8
n = 8
rank = 2
n_observed = 24
[flows]
depths = [5]
runs = {runs}
[[references]]
name = "smc"
measure = "solution_set"
method = "solution_smc"
draws = {draws}
[statistics]
volume_rank = 2
"""


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in EXAMPLES])
def test_check_plans_every_example_config(path, capsys):
    assert main(["check", str(path), "--quick"]) == 0
    out = capsys.readouterr().out
    assert "configuration valid" in out and "plan (" in out and "total ≈ " in out and "peak memory ≈ " in out
    assert "?" not in out.split("total ≈ ")[1].splitlines()[0]  # check calibrates every stage


@pytest.mark.parametrize("name", ["cmv-2x2", pytest.param("rank2-3x3", marks=pytest.mark.slow),
                                  pytest.param("arcs-3x3", marks=pytest.mark.slow),
                                  pytest.param("cmv-3x3-diagonal", marks=pytest.mark.slow),
                                  pytest.param("razin-cohen-2x2", marks=pytest.mark.slow),
                                  pytest.param("arora-100", marks=pytest.mark.slow)])
def test_check_plans_the_builtins(name, capsys):
    assert name in builtin_experiments()
    assert main(["check", name, "--quick"]) == 0
    out = capsys.readouterr().out
    assert out.count("flows N=") >= 1 and "total ≈ " in out


@pytest.mark.parametrize("key,runs,draws", [("flows.runs", 10**9, 100), ("references[0].draws", 200, 10**9)])
def test_an_oversized_config_is_refused_before_any_compute(tmp_path, capsys, key, runs, draws):
    exp = tmp_path / "big.toml"
    exp.write_text(BIG.format(runs=runs, draws=draws))
    out = tmp_path / "out"
    t0 = time.perf_counter()
    assert main(["run", str(exp), "--out", str(out), "--no-progress"]) == 2
    assert time.perf_counter() - t0 < 30  # validation, not compute (runs=10**9 used to climb to 1.1 GB, silently)
    err = capsys.readouterr().err
    assert err.startswith(f"dlnvolume: error: config key '{key}': 1000000000 needs about ") and err.count("\n") == 1
    assert f"reduce {key}" in err and "available on this machine" in err
    assert not out.exists()
    assert main(["check", str(exp)]) == 2  # check refuses it the same way
    assert f"config key '{key}'" in capsys.readouterr().err


def test_memory_estimate_scales_with_the_keys_it_names():
    from analysis.experiment import parse_config
    import tomllib

    from analysis.runner import prepare

    small = prepare(parse_config(tomllib.loads(BIG.format(runs=100, draws=100))))
    big = prepare(parse_config(tomllib.loads(BIG.format(runs=1000, draws=100))))
    a, b = plan.memory_estimate(*small), plan.memory_estimate(*big)
    assert b["flows.runs"] == pytest.approx(10 * a["flows.runs"])
    assert b["references[0].draws"] == a["references[0].draws"]


def test_a_run_estimated_over_an_hour_says_so_and_what_fits(capsys, monkeypatch):
    """With flows calibrated at 40 s per run (monkeypatched: no real hour-long task in the suite), the
    example's 2 depths × 60 runs on 2 workers come to ~40 min of flows plus the references: the plan warns,
    and the number of runs it proposes does fit in an hour when planned again."""
    import dataclasses

    from analysis.experiment import load_config
    from analysis.runner import prepare

    def slow(cfg, task, j, depth, budget):
        return {s: 40.0 for s in cfg.scales}, 2, {"converged": 2}, 0.0

    monkeypatch.setattr(plan, "_calibrate_flows", slow)
    monkeypatch.setattr(plan, "_calibrate_reference", lambda *a: (600.0, "monkeypatched"))
    cfg, task = prepare(load_config(str(ROOT / "docs" / "examples" / "custom-3x3.toml"))[0])
    p = plan.make_plan(cfg, task, workers=2)
    assert p.seconds > 3600
    (warning,) = [w for w in p.warnings if "over an hour" in w]
    assert "flows.runs = " in warning and f"(now {cfg.runs})" in warning, warning
    fit = int(warning.split("flows.runs = ")[1].split()[0])
    assert 1 <= fit < cfg.runs
    shorter = plan.make_plan(dataclasses.replace(cfg, runs=fit), task, workers=2)
    assert 0.8 * 3600 < shorter.seconds <= 3600 and not any("over an hour" in w for w in shorter.warnings)
    assert main(["check", str(ROOT / "docs" / "examples" / "custom-3x3.toml")]) == 0
    assert "over an hour" in capsys.readouterr().out


def test_plan_says_when_calibration_runs_do_not_converge():
    """Calibration runs that stop at max_steps (here a cap of 5 steps) are counted in a note that says the tests
    will likely leave that share out and what to raise; runs that converge give no note."""
    import dataclasses

    from analysis.experiment import load_config
    from analysis.runner import prepare

    cfg, task = prepare(load_config(str(ROOT / "docs" / "examples" / "custom-3x3.toml"))[0])
    cfg = dataclasses.replace(cfg, depths=(2,), references=())
    capped = dataclasses.replace(cfg, flow_options={**cfg.flow_options, "max_steps": 5})
    p = plan.make_plan(capped, task, workers=1, budget=1.0)
    (note,) = [w for w in p.warnings if "calibration runs stopped before converging" in w]
    n = int(note.split(": ")[1].split(" of ")[0])
    assert n >= 1 and note.startswith(f"flows N=2: {n} of {n} calibration runs stopped before converging "
                                      f"(max_steps: {n})")
    assert "[flows.options] max_steps (now 5)" in note
    # every calibration second went to runs that stopped: a redo gives them 4× the steps
    assert note.endswith("up to 5.0× its estimate") and plan.redo_factor(1.0) == 5.0
    p = plan.make_plan(cfg, task, workers=1, budget=1.0)
    assert not any("stopped before converging" in w for w in p.warnings)


def test_calibration_executor_runs_a_minimum_then_stops_at_its_budget_or_cap():
    """Each submitted batch runs at once; past its budget the executor still runs ``min_runs`` batches (one slow
    run says little when the cost per run is heavy-tailed), and it stops at CAL_CAP times the budget whatever.
    (A clock that advances 1 s per batch: no wall-clock time.)"""
    now = [0.0]

    def run():
        now[0] += 1.0
        return {"status": np.array(["converged"])}

    ex = plan._InlineExecutor(0.5, min_runs=3, clock=lambda: now[0])  # cap 4 s: not reached by three runs
    for _ in range(3):
        assert ex.submit(run).result()["status"][0] == "converged"
    with pytest.raises(plan._Enough):
        ex.submit(run)
    assert len(ex.results) == 3 and ex.seconds == 3.0
    now[0] = 0.0
    ex = plan._InlineExecutor(1.0 / plan.CAL_CAP, min_runs=100, clock=lambda: now[0])  # the cap (1 s): one run
    ex.submit(run)
    with pytest.raises(plan._Enough):
        ex.submit(run)
    assert len(ex.results) == 1
