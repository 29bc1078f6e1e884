"""The reference diagnostics of a run (converged, R-hat, ESS, importance-weight ESS, piece masses, dimension,
failures): computed once per reference and depth, shown identically in results.nc, tests.json and the report,
and a reference whose sampler reports non-convergence is never used for an answer."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pytest

from analysis.experiment import parse_config
from analysis.report import write_outputs
from analysis.runner import SampleSet, run_experiment
from analysis.verdict import verdicts

DIAG3 = {"kind": "custom", "values": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
         "mask": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]}


def _doc(method="mcmc", draws=60, chains=4):
    return {"name": "diag3", "seed": 3, "task": DIAG3, "flows": {"depths": [3], "runs": 12, "keep_status": ["converged"]},
            "predictors": {"n_starts": 4},
            "references": [{"name": "s", "measure": "solution_set", "method": method, "draws": draws,
                            "chains": chains, "warmup": 10}],
            "statistics": {"rtol": 1e-4, "volume_rank": 1},
            "tests": {"families": ["distribution"], "n_perm": 19, "statistics": ["log_volume_density"]},
            "output": {"figures": False, "trace_plots": False}}


@pytest.fixture(scope="module")
def run3(tmp_path_factory):
    out = tmp_path_factory.mktemp("diag3")
    with pytest.warns(Warning):  # 60 draws per chain: the sampler says it has not converged
        res = run_experiment(parse_config(_doc()), out / "o", progress=False)
    write_outputs(res, out / "o", {"quick": False})
    return res, out / "o"


def test_summary_of_the_3x3_diagonal_set(run3):
    res, _ = run3
    d = res.reference_diagnostics[("s", 3)]
    # S ∩ M_1 for the observed 3x3 diagonal: X_ij = s_i s_j e^{t_i - t_j}, dimension 5 - 3 = 2, and four sign
    # groups of the off-diagonal entries (s_i s_j for the pairs), equal by the symmetry X -> D X D
    assert d["dimension"] == 2 and d["nominal_dimension"] == 2
    assert len(d["pieces"]) == 4
    masses = np.array([m for m, _ in d["pieces"].values()])
    ses = np.array([se for _, se in d["pieces"].values()])
    assert masses.sum() == pytest.approx(1.0, abs=1e-9)
    assert np.all(np.abs(masses - 0.25) < 5 * ses + 0.03)
    assert d["method"] == "smc" and d["chains"] == 4 and d["draws"] == 60
    # split R-hat can fall a little below 1 (here 0.997 once, 60 draws per chain)
    assert isinstance(d["converged"], bool) and 0.9 <= d["rhat"] < 1.5 and d["ess_bulk"] > 0 and d["ess_tail"] > 0
    assert len(d["weight_ess"]) == 4 and all(1 <= w <= 4 * 60 for w in d["weight_ess"])
    assert set(d["failures"]) >= {"projection", "outside"}


def test_report_results_nc_and_tests_json_show_the_same_numbers(run3):
    from analysis import diagnostics

    res, out = run3
    d = res.reference_diagnostics[("s", 3)]
    doc = json.loads((out / "tests.json").read_text())
    (row,) = doc["reference_diagnostics"]
    assert row["reference"] == "s" and row["depth"] == "N3"
    assert {k: v for k, v in row.items() if k not in ("reference", "depth")} == json.loads(json.dumps(d))
    tree = diagnostics.load(out / "results.nc")
    ss = tree["references/s/sample_stats"]
    assert json.loads(ss.attrs["reference_diagnostics"])["N3"] == json.loads(json.dumps(d))
    # the per-chain importance-weight ESS is also on the chain grid of sample_stats, equal to the summary's
    np.testing.assert_allclose(np.asarray(ss["weight_ess"]).ravel(), d["weight_ess"])
    md = (out / "report.md").read_text()
    table = md.split("### Reference diagnostics")[1]
    line = next(x for x in table.splitlines() if x.startswith("| s | N=3 |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[3] == ("yes" if d["converged"] else "**NO**")
    assert cells[4] == f"{d['rhat']:.4f}" and cells[5] == f"{d['ess_bulk']:.0f}" and cells[6] == f"{d['ess_tail']:.0f}"
    assert cells[7] == f"{min(d['weight_ess']):.0f}–{max(d['weight_ess']):.0f}"
    for k, (m, se) in d["pieces"].items():
        assert f"{k} {m:.3f} ± {se:.2g}" in cells[8]
    assert cells[9] == "2 (nominal 2)"
    assert re.search(rf"projection {d['failures']['projection']}\b", cells[10])


def _chains_like(ch, converged: bool):
    diag = dict(ch.diagnostics, converged=converged)
    return replace(ch, diagnostics=diag)


def test_a_non_converged_reference_is_marked_in_the_verdict(monkeypatch, tmp_path):
    """A sampler that reports ``converged == False`` (the draws themselves look fine to the verdict's own
    R-hat/ESS of log ρ) makes every verdict row of that reference inconclusive, and the report says NO."""
    from samplers import registry

    def run(sampler, n_draws, **kw):
        ch = registry.REGISTRY["solution_smc"].run(sampler, n_draws, **kw)
        assert ch.converged  # the fabricated flag is the only difference
        return _chains_like(ch, False)

    def run_true(sampler, n_draws, **kw):
        return registry.REGISTRY["solution_smc"].run(sampler, n_draws, **kw)

    results = {}
    for name, fn in (("fake_bad", run), ("fake_good", run_true)):
        monkeypatch.setitem(registry.REGISTRY, name, registry.MethodSpec(name, ("solution_set",), "any", "t", run=fn,
                                                                         population=True))
        res = run_experiment(parse_config(_doc(method=name, draws=500, chains=4)), tmp_path / name, progress=False)
        results[name] = res
    good = verdicts(results["fake_good"])
    bad = verdicts(results["fake_bad"])
    assert good and all(v.trusted and v.answer != "inconclusive" for v in good)
    assert bad and all(not v.trusted and v.answer == "inconclusive" for v in bad)
    assert all(any("the sampler reports it did not converge" in c for c in v.caveats) for v in bad)
    assert results["fake_bad"].reference_diagnostics[("s", 3)]["converged"] is False
    write_outputs(results["fake_bad"], tmp_path / "fake_bad", {"quick": False})
    md = (tmp_path / "fake_bad" / "report.md").read_text()
    assert "| s | N=3 | smc | **NO** |" in md


def test_summary_survives_a_checkpoint(run3, tmp_path):
    res, _ = run3
    s = res.samples[("s", 3)]
    s.save(tmp_path / "s.npz")
    back = SampleSet.load(tmp_path / "s.npz", s.target, s.method, s.warmup, s.thin)
    assert back.summary() == s.summary()
