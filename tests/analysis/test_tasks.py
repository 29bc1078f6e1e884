"""Any task: the task-kind registry, custom tasks (inline, .npy, .npz, Python), default windows, and the
whole configuration validated against its task before any flow runs (one ConfigError line each)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import dlnvolume as dv
from analysis.cli import main
from analysis.experiment import load_config, parse_config
from analysis.runner import prepare, run_experiment
from analysis.tasks import TASK_KINDS, build_task, default_radius
from dlnvolume.errors import ConfigError

V3 = [[1.0, -1.0, 0.0], [0.0, 0.0, 4.0], [0.0, 0.0, 1.0]]
M3 = [[True, True, False], [False, False, True], [False, False, True]]
R2V = [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]  # the rank-2 task of analysis/experiments/rank2-3x3.toml
R2M = [[1, 1, 1], [1, 1, 0], [1, 0, 0]]


def _doc(**refs):
    ref = {"name": "s", "measure": "solution_set", "method": "mcmc", "draws": 20, "chains": 2, "warmup": 10}
    ref.update(refs)
    return {"task": {"kind": "custom", "values": V3, "mask": M3}, "flows": {"depths": [2, 3], "runs": 4},
            "references": [ref], "statistics": {"volume_rank": 1}, "tests": {"n_perm": 19}}


def test_registry_knows_exact_capability():
    assert TASK_KINDS["diagonal_2x2"].exact_measures == ("solution_set", "gibbs_limit")
    assert TASK_KINDS["custom"].exact_measures == () and TASK_KINDS["random_low_rank"].exact_measures == ()
    assert TASK_KINDS["diagonal_2x2"].null_family and not TASK_KINDS["custom"].null_family


def test_custom_task_inline_npy_npz(tmp_path):
    inline = build_task(parse_config(_doc()).task, 0)
    np.testing.assert_array_equal(inline.mask, np.array(M3))
    np.save(tmp_path / "v.npy", np.where(M3, V3, np.nan))
    np.save(tmp_path / "m.npy", np.array(M3, dtype=np.int8))
    (tmp_path / "a.toml").write_text('[task]\nkind = "custom"\nvalues = "v.npy"\nmask = "m.npy"\n')
    cfg, _ = load_config(str(tmp_path / "a.toml"))  # paths relative to the configuration file
    t = build_task(cfg.task, 0)
    np.testing.assert_array_equal(t.values, inline.values)
    np.testing.assert_array_equal(t.mask, inline.mask)
    np.savez(tmp_path / "t.npz", values=np.array(V3), mask=np.array(M3), ground_truth=np.ones((3, 3)))
    (tmp_path / "b.toml").write_text('[task]\nkind = "custom"\nvalues = "t.npz"\n')
    t2 = build_task(load_config(str(tmp_path / "b.toml"))[0].task, 0)
    np.testing.assert_array_equal(t2.mask, inline.mask)
    np.testing.assert_array_equal(t2.ground_truth, np.ones((3, 3)))


@pytest.mark.parametrize("task,match", [
    ({"kind": "custom"}, r"'task\.values': required for kind 'custom'"),
    ({"kind": "custom", "values": V3}, r"'task\.mask': required for kind 'custom'"),
    ({"kind": "custom", "values": V3, "mask": [[2, 0, 0], [0, 0, 1], [0, 0, 1]]},
     r"'task\.mask': expected booleans or 0/1 entries"),
    ({"kind": "custom", "values": V3, "mask": [[True, False]]}, r"'task': values has shape \(3, 3\) but mask has shape"),
    ({"kind": "custom", "values": "missing.npy", "mask": M3}, r"'task\.values': cannot read"),
])
def test_custom_task_errors(task, match):
    with pytest.raises(ConfigError, match=match):
        build_task(parse_config({"task": task}).task, 0)


def test_default_window_from_the_task_scale():
    assert default_radius(dv.tasks.diagonal_2x2()) == pytest.approx(3.0)
    cfg, task = prepare(parse_config(_doc()))
    assert cfg.references[0].radius == pytest.approx(1.5 * math.sqrt(19) * 1.5, rel=1e-6)
    assert cfg.references[0].rank == 1


@pytest.mark.parametrize("doc,match", [
    ({"task": {"kind": "custom", "values": V3, "mask": M3},
      "references": [{"name": "e", "measure": "solution_set", "method": "exact"}]},
     r"'references\[0\]\.method': 'exact' 'solution_set' is not available: kind 'custom' has no exact reference; "
     r"accepted: 'mcmc', 'solution_smc', 'walk'$"),
    (_doc(radius=2.0), r"'references\[0\]\.radius': 2 cannot reach a solution: .* ‖observed values‖_F = 4\.359"),
    (_doc(rank=2), r"'references\[0\]\.rank': 2, but statistics\.volume_rank = 1"),
    ({**_doc(), "task": {"kind": "custom", "values": V3, "mask": [[1, 1, 0], [0, 1, 1], [0, 0, 1]]}},
     # X01 = -1, X11 = 0 force u1 = 0 in X = u vᵀ, so X12 = 4 has no rank-1 completion: the sampler finds no point
     r"'references\[0\]' \(s\): no point of S ∩ M_r \(rank 1\) found inside window"),
    ({**_doc(rank=2), "task": {"kind": "custom", "values": R2V, "mask": R2M}, "statistics": {"volume_rank": 2},
      "flows": {"depths": [2, "inf"]}},
     r"^config key 'references\[0\]' \(s\): depth inf with rank=2 and window=.*: the tempering path of method='smc' "
     r"passes near lower strata"),
    (_doc(depths=[7]), r"'references\[0\]\.depths': \['N7'\] are not flow depths"),
    (_doc(measure="gibbs", method="rmala", beta=1.0),
     r"'references\[0\]\.method': 'rmala' cannot sample measure 'gibbs' on rank 1 of a 3x3 task \(a lower stratum\); "
     r"samplers\.registry: 'rmala' samples gibbs on the full-rank set only; accepted: 'emcee', 'smc', 'smc_factor'$"),
    (_doc(measure="gibbs", method="mcmc", beta=1.0), r"'references\[0\]\.method': 'mcmc' cannot sample measure 'gibbs'.*"
                                                      r"accepted: 'emcee', 'smc', 'smc_factor'$"),
    (_doc(measure="solution_set", method="emcee"),
     r"'references\[0\]\.method': 'emcee' cannot sample measure 'solution_set'.*accepted: 'mcmc', 'solution_smc', 'walk'$"),
    (_doc(measure="solution_set", method="smc"), r"'references\[0\]\.method': 'smc' cannot sample measure 'solution_set'"),
    (_doc(method="hmc"), r"'references\[0\]\.method': expected one of 'exact', 'mcmc', 'rmala', 'emcee', 'smc', "
                         r"'smc_factor', 'solution_smc', 'walk', got 'hmc'"),
    (_doc(measure="gibbs_limit", method="emcee"),
     r"'references\[0\]\.method': 'emcee' cannot sample measure 'gibbs_limit'.*accepted: 'mcmc', 'solution_smc', 'walk'$"),
    ({**_doc(), "statistics": {"volume_rank": 4}}, r"'statistics\.volume_rank': 4 for a 3x3 task; expected"),
    ({"task": {"kind": "diagonal_2x2"}, "references": [{"name": "e", "measure": "solution_set", "radius": 1.2}]},
     r"'references\[0\]\.radius': 1\.2 cannot reach a solution"),
    ({"task": {"kind": "diagonal_2x2"}, "references": [{"name": "e", "measure": "solution_set", "radius": 2.0}]},
     r"'references\[0\]\.radius': 2; the rank-1 solutions of the 2x2 diagonal task have ‖X‖_F >= 2"),
])
def test_whole_config_checked_before_flows(doc, match):
    with pytest.raises(ConfigError, match=match) as info:
        prepare(parse_config(doc))
    assert "\n" not in str(info.value)


def test_gibbs_limit_on_any_task_is_a_sampled_reference():
    """measure = "gibbs_limit" with method "mcmc" runs the solution-set sampler with the Gibbs limit's density
    (issue 21 item 3): accepted on a 3x3 task, where no exact reference exists."""
    cfg, _ = prepare(parse_config(_doc(measure="gibbs_limit", method="mcmc")))
    assert cfg.references[0].measure == "gibbs_limit"
    from analysis.runner import registry_method

    assert registry_method("gibbs_limit", "mcmc") == "solution_smc"


def test_unreachable_window_found_by_the_sampler():
    # radius <= ‖P_Ω M‖_F = 4.359: refused by the bound; just above it, the sampler finds no rank-1 solution
    doc = _doc(radius=4.3)
    with pytest.raises(ConfigError, match=r"cannot reach a solution"):
        prepare(parse_config(doc))
    doc = _doc(radius=4.4)
    with pytest.raises(ConfigError, match=r"'references\[0\]' \(s\): no point of S ∩ M_r \(rank 1\) found inside"):
        prepare(parse_config(doc))


def test_cli_config_error_exits_2_before_any_flow(tmp_path, capsys):
    p = tmp_path / "c.toml"
    p.write_text(f'[task]\nkind = "custom"\nvalues = {R2V}\nmask = {R2M}\n'
                 '[flows]\ndepths = [2, "inf"]\nruns = 500\n'
                 '[[references]]\nname = "s"\nmeasure = "solution_set"\nmethod = "mcmc"\nrank = 2\nradius = 4.0\n'
                 '[statistics]\nvolume_rank = 2\n')
    out = tmp_path / "out"
    assert main(["run", str(p), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["dlnvolume: error: config key 'references[0]' (s): depth inf with rank=2 and "
                   "window=FrobeniusBall(radius=4.0): the tempering path of method='smc' passes near lower strata, "
                   "where the infinite-depth density is not integrable (MATH.md §3.5); add "
                   "SingularValueFloor(minimum) to the window (below the smallest σ_r on the solution set)"]
    assert not out.exists()  # nothing was started


def test_run_experiment_with_a_python_task(tmp_path):
    task = dv.CompletionTask(np.array(V3), np.array(M3), name="mine")
    cfg = parse_config({"task": {"kind": "custom"}, "flows": {"depths": [2], "runs": 4}, "tests": {"families": []}})
    res = run_experiment(cfg, tmp_path, task=task, progress=False)
    assert res.task is task and res.endpoints[2].X.shape == (4, 3, 3)
    from analysis.report import write_outputs

    write_outputs(res, tmp_path, {})
    md = (tmp_path / "report.md").read_text()
    assert "**No hypothesis test was run**: this experiment has no references." in md  # says so, first
    with pytest.raises(ConfigError, match=r"task= has type ndarray; expected a dlnvolume\.CompletionTask"):
        run_experiment(cfg, tmp_path, task=np.eye(3), progress=False)


EXAMPLE = __import__("pathlib").Path(__file__).resolve().parents[2] / "docs" / "examples" / "custom-3x3.toml"


def test_docs_example_config_is_valid():
    cfg, task = prepare(load_config(str(EXAMPLE))[0])
    assert task.shape == (3, 3) and task.n_observed == 4 and task.ground_truth is not None
    assert cfg.references[0].radius == pytest.approx(default_radius(task), rel=1e-6)


@pytest.mark.slow
def test_docs_example_runs_end_to_end_with_a_verdict(tmp_path, capsys):
    assert main(["run", str(EXAMPLE), "--quick", "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "verdict at α = 0.05" in out and "solution_set: follow the reference?" in out
    assert "solution_set: higher volume than the reference?" in out


# ---------------------------------------------------------------- the method registry drives config and runner
def test_new_and_old_method_names_are_accepted():
    for measure, method, extra in (("solution_set", "mcmc", {}), ("solution_set", "solution_smc", {}),
                                   ("solution_set", "walk", {}), ("gibbs", "emcee", {"beta": 1.0}),
                                   ("gibbs", "smc", {"beta": 1.0})):
        cfg, _ = prepare(parse_config(_doc(measure=measure, method=method, **extra)))
        assert cfg.references[0].method == method


def test_rmala_accepted_on_the_full_rank_set_only():
    # 2x2 task, rank 2 = full rank: rmala is accepted; rank 1 of the same task: refused, naming the registry's others
    task = {"kind": "custom", "values": [[1.0, 0.5], [0.0, 1.0]], "mask": [[1, 1], [0, 1]]}
    doc = {"task": task, "flows": {"depths": [2], "runs": 4}, "statistics": {"volume_rank": 2},
           "references": [{"name": "g", "measure": "gibbs", "method": "rmala", "beta": 1.0, "rank": 2}]}
    prepare(parse_config(doc))
    doc["statistics"]["volume_rank"] = 1
    doc["references"][0]["rank"] = 1
    with pytest.raises(ConfigError, match=r"^config key 'references\[0\]\.method': 'rmala' cannot sample measure 'gibbs' on "
                                          r"rank 1 of a 2x2 task \(a lower stratum\).*accepted: 'emcee', 'smc', 'smc_factor'$"):
        prepare(parse_config(doc))


def test_accepted_methods_come_from_the_registry(monkeypatch):
    from samplers import registry

    from analysis.runner import accepted_methods, registry_method

    spec = registry.MethodSpec("fullrank_only", ("solution_set",), "full_rank", "test", run=lambda *a, **k: None)
    monkeypatch.setitem(registry.REGISTRY, "fullrank_only", spec)
    assert accepted_methods("solution_set", True) == ("mcmc", "solution_smc", "walk", "fullrank_only")
    assert accepted_methods("solution_set", False) == ("mcmc", "solution_smc", "walk")
    assert accepted_methods("gibbs", False) == ("emcee", "smc", "smc_factor")
    assert registry_method("solution_set", "mcmc") == registry.methods("solution_set")[0] == "solution_smc"
    with pytest.raises(ConfigError, match=r"'references\[0\]\.method': 'fullrank_only' cannot sample measure "
                                          r"'solution_set' on rank 1 .* the full-rank set only; accepted: 'mcmc', "
                                          r"'solution_smc', 'walk'$"):
        prepare(parse_config(_doc(method="fullrank_only")))


def test_runner_dispatches_through_the_registry(monkeypatch, tmp_path):
    """A method registered at run time is run by the runner (no method names hard-coded in it)."""
    from samplers import registry

    calls = []

    def run(sampler, n_draws, **kw):
        calls.append((type(sampler).__name__, n_draws, kw["n_chains"]))
        return registry.REGISTRY["walk"].run(sampler, n_draws, **kw)

    monkeypatch.setitem(registry.REGISTRY, "my_walk", registry.MethodSpec("my_walk", ("solution_set",), "any", "t",
                                                                          run=run))
    doc = _doc(method="my_walk", draws=8, chains=2, warmup=4)
    doc["flows"] = {"depths": [2], "runs": 4}
    doc["tests"] = {"families": []}
    res = run_experiment(parse_config(doc), tmp_path, progress=False)
    assert calls == [("SolutionSetSampler", 8, 2)]
    assert res.samples[("s", 2)].draws.shape == (2, 8, 3, 3) and res.samples[("s", 2)].method == "solution_set"


def test_cli_refuses_a_full_rank_kernel_on_a_lower_stratum(tmp_path, capsys):
    p = tmp_path / "c.toml"
    p.write_text('[task]\nkind = "custom"\nvalues = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]\n'
                 'mask = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]\n[flows]\ndepths = [2]\nruns = 500\n'
                 '[[references]]\nname = "g"\nmeasure = "gibbs"\nmethod = "rmala"\nbeta = 1.0\n'
                 '[statistics]\nvolume_rank = 1\n')
    out = tmp_path / "out"
    assert main(["run", str(p), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["dlnvolume: error: config key 'references[0].method': 'rmala' cannot sample measure 'gibbs' on "
                   "rank 1 of a 3x3 task (a lower stratum); samplers.registry: 'rmala' samples gibbs on the full-rank "
                   "set only; accepted: 'emcee', 'smc', 'smc_factor'"]
    assert not out.exists()
