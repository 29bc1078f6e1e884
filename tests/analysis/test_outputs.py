"""One statistics path: the numbers in results.nc are the ones the tests, tests.json and the report used."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from analysis import diagnostics
from analysis.experiment import parse_config
from analysis.report import write_outputs
from analysis.runner import run_experiment

TINY = {
    "name": "tiny", "seed": 5, "task": {"kind": "diagonal_2x2"},
    "flows": {"depths": [2, "inf"], "runs": 16, "init_scale": 1e-3, "keep_status": ["converged"]},
    "predictors": {"n_starts": 4},
    "references": [{"name": "solution_set", "measure": "solution_set", "method": "exact", "radius": 3.0,
                    "draws": 100, "chains": 2}],
    "statistics": {"rtol": 1e-4, "volume_rank": 1},
    "tests": {"families": ["distribution", "percentile"], "n_perm": 49, "statistics": ["log_volume_density"]},
    "output": {"figures": False},
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    cfg = parse_config(TINY)
    res = run_experiment(cfg, out, progress=False)
    write_outputs(res, out, {"quick": False})
    return cfg, res, out


@pytest.mark.arviz
def test_results_nc_holds_the_tested_numbers(tiny_run):
    cfg, res, out = tiny_run
    tree = diagnostics.load(out / "results.nc")
    ep = tree["endpoints"].to_dataset()
    post = tree["references/solution_set/posterior"].to_dataset()
    rows = json.loads((out / "tests.json").read_text())["tests"]
    for i, depth in enumerate(cfg.depths):
        assert float(ep["depth"].values[i]) == float(depth)
        lv = ep["log_volume_density"].values[i]
        np.testing.assert_array_equal(lv, res.endpoint_stats[depth].log_volume_density)
        kept = ep["kept"].values[i].astype(bool)
        np.testing.assert_array_equal(kept, res.keep[depth])
        ref = post["log_volume_density"].sel(depth=float(depth)).values.reshape(-1)
        # the KS statistic of tests.json, recomputed from the arrays stored in results.nc
        row = next(r for r in rows if r["test"] == "ks:log_volume_density" and r["depth"] == res_tag(depth))
        assert row["statistic"] == pytest.approx(stats.ks_2samp(lv[kept], ref).statistic, abs=1e-12)
        assert row["n_x"] == kept.sum() and row["n_y"] == ref.size
    for group in (ep, post):
        assert group.attrs["volume_rank"] == 1 and group.attrs["rtol"] == 1e-4
    assert tree.attrs["volume_rank"] == 1


def test_report_and_tests_json_quote_the_same_numbers(tiny_run):
    cfg, res, out = tiny_run
    tree = diagnostics.load(out / "results.nc")
    ep = tree["endpoints"].to_dataset()
    md = (out / "report.md").read_text()
    from analysis.report import _fmt

    for i, depth in enumerate(cfg.depths):
        kept = ep["kept"].values[i].astype(bool)
        med = float(np.median(ep["log_volume_density"].values[i][kept]))
        label = "N=∞" if depth == math.inf else f"N={depth}"
        line = next(x for x in md.splitlines() if x.startswith(f"| {label} |") and "converged" in x)
        assert f"| {_fmt(med)} |" in line, (line, med)


def res_tag(depth):
    return "Ninf" if depth == math.inf else f"N{int(depth)}"


# --------------------------------------------------------------------------- the verdict
def test_tests_json_carries_the_decision_settings(tiny_run):
    cfg, res, out = tiny_run
    doc = json.loads((out / "tests.json").read_text())
    assert doc["alpha"] == cfg.alpha and doc["n_perm"] == 49 and doc["permutation_floor"] == 1 / 50
    assert doc["volume_rank"] == 1 and doc["rtol"] == 1e-4
    for r in doc["tests"]:
        p = r["p_adjusted"] if r["p_adjusted"] is not None else r["p_value"]
        assert r["reject"] == (p <= cfg.alpha)
        assert r["effect_name"] in ("KS D", "W1/sd", "energy distance", "mean percentile", "AUC")
        assert r["effect_ci"] is None or 0 <= r["effect_ci"][0] <= r["effect_ci"][1] <= 1
        assert r["at_permutation_floor"] == (r["test"].split(":")[0] in ("ks", "ad", "energy")
                                             and r["p_value"] <= 1 / 50 + 1e-15)
    v = doc["verdict"]
    assert {(x["depth"], x["reference"]) for x in v} == {(2, "solution_set"), ("inf", "solution_set")}
    for x in v:
        assert x["answer"] in ("yes", "no", "no (lower)", "mixed", "not shown", "not rejected", "inconclusive",
                               "not asked")
        assert x["alpha"] == cfg.alpha and x["effect_ci"] is None or len(x["effect_ci"]) == 2
        assert x["p_floor"] == (1 / 50 if x["test"].startswith("permutation") else None)


def test_verdict_is_first_in_the_report(tiny_run):
    _, _, out = tiny_run
    md = (out / "report.md").read_text()
    assert md.index("## Verdict") < md.index("## Flow endpoints") < md.index("## Tests")
    assert "mean percentile [95% CI]" in md and "KS D [95% CI]" in md  # one named column per effect type
    html = (out / "report.html").read_text()
    assert html.index("<section class='verdict'>") < html.index("<h2>Flow endpoints</h2>")
    assert "<style>" in html and "th{background" in html


@pytest.mark.arviz
def test_figure_data_are_the_results_nc_arrays(tiny_run):
    from analysis.report import histogram_panels

    cfg, res, out = tiny_run
    tree = diagnostics.load(out / "results.nc")
    ep = tree["endpoints"].to_dataset()
    post = tree["references/solution_set/posterior"].to_dataset()
    for i, panel in enumerate(histogram_panels(res)):
        kept = ep["kept"].values[i].astype(bool)
        np.testing.assert_array_equal(panel["endpoints"], ep["log_volume_density"].values[i][kept])
        np.testing.assert_array_equal(np.ravel(panel["references"]["solution_set"]),
                                      post["log_volume_density"].values[i].reshape(-1))


def test_comparisons_are_typed_records_of_what_was_tested(tiny_run):
    cfg, res, out = tiny_run
    comps = res.comparisons()
    assert [(c.depth, c.reference) for c in comps] == [(2, "solution_set"), (math.inf, "solution_set")]
    c = comps[0]
    assert set(c.tests) == {"distribution", "percentile"} and c.samples is res.samples[("solution_set", 2)]
    assert c.reference_stats is res.sample_stats[("solution_set", 2)] and c.percentiles is not None


def test_bias_numbers_agree_across_outputs(tiny_run):
    """One computation: verdict.json, results.nc (group bias), report.md and the terminal verdict quote the
    same stratum slopes, median distances and θ̂ (analysis.bias.DepthBias)."""
    from analysis.report import _fmt
    from analysis.verdict import format_lines, verdicts

    cfg, res, out = tiny_run
    v = json.loads((out / "verdict.json").read_text())
    b = diagnostics.load(out / "results.nc")["bias"].to_dataset()
    md = (out / "report.md").read_text()
    lines = "\n".join(format_lines(verdicts(res), cfg, res=res))
    assert [d["depth"] for d in v["depths"]] == [2, "inf"]
    preds = list(b["predictor"].values)
    for i, (d, depth) in enumerate(zip(v["depths"], cfg.depths)):
        bias = res.bias[depth]
        assert d["stratum"]["slope"] == bias.stratum.slope == float(b["stratum_slope"].values[i])
        assert d["stratum"]["reached"] == {1: True, 0: False, -1: None}[int(b["stratum_reached"].values[i])]
        assert d["best"] == bias.best
        for p in d["predictors"]:
            t = bias.approach.get(p["name"])
            if t is None:
                assert p["median_distance"] is None
                continue
            j = preds.index(p["name"])
            assert p["median_distance"] == t.median[-1] == float(b["distance_median"].values[i, j, -1])
            assert " / ".join(_fmt(x) for x in t.median) in md
        lc = bias.best_law
        if lc is not None:
            stats_ = list(b["statistic"].values)
            for k, f in lc.fits.items():
                assert float(b["theta"].values[i, stats_.index(k), -1]) == pytest.approx(f.theta, rel=0, abs=0) \
                    or (math.isinf(f.theta) and math.isinf(float(b["theta"].values[i, stats_.index(k), -1])))
        # the terminal block of this depth is the "answer" of verdict.json
        for line in d["answer"].splitlines():
            assert line in lines
