"""ArviZ export (analysis.diagnostics): layout, coords, no constant variables, NetCDF round trip, and
``arviz.summary`` / ``plot_trace`` / ``plot_ess`` / ``plot_rank`` / ``rhat`` without warnings.

Marked ``arviz``: ``.ci/run`` runs these under ArviZ 0.23 (Python 3.11) and ArviZ 1.x (Python 3.12).
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import dlnvolume as dv  # noqa: E402
from analysis import diagnostics as diag  # noqa: E402
from analysis.runner import SampleSet  # noqa: E402
from analysis.statistics import compute_statistics  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

pytestmark = pytest.mark.arviz

DEPTHS = (5, math.inf)


def _chains(rng, C=4, D=200, stuck=False, depth=5):
    a = rng.uniform(0.5, 2.0, size=(C, D))
    if stuck:  # chains in different places: R-hat must flag it
        a = a + np.arange(C)[:, None] * 3.0
    X = np.ones((C, D, 2, 2))
    X[..., 0, 1], X[..., 1, 0] = a, 1 / a
    target = {"measure": "solution_set", "depth": depth, "rank": 1, "beta": None, "normalized": True,
              "confinement": "FrobeniusBall(3.0)"}
    return SampleSet(X, rng.normal(size=(C, D)), rng.uniform(0.3, 0.9, size=(C, D)), np.array([0.1, 0.2, 0.3, 0.4][:C]),
                     {"projection": np.arange(C)}, target, "mcmc", np.arange(C, dtype=np.uint64), 100, 1)


@dataclass
class _Ep:
    X: np.ndarray
    X0: np.ndarray
    seeds: np.ndarray
    status: np.ndarray
    loss: np.ndarray
    t: np.ndarray
    depth: float = math.inf
    method: str = "end_to_end"
    init_scale: float = 1e-3
    task_name: str = "diagonal_2x2"
    initial_norm: np.ndarray = field(default_factory=lambda: np.zeros(0))  # a field added later by flows


def _ep(X):
    n = len(X)
    return _Ep(X, X * 1e-3, np.arange(n, dtype=np.uint64), np.array(["converged"] * (n - 1) + ["max_steps"]),
               np.zeros(n), np.ones(n), initial_norm=np.linspace(1e-3, 2e-3, n))


def _tree(rng, stuck=False, D=200):
    samples = {d: _chains(rng, D=D, stuck=stuck, depth=d) for d in DEPTHS}
    stats = {d: compute_statistics(samples[d].draws, d, rtol=1e-4, rank=1) for d in DEPTHS}
    return diag.reference_tree(samples, stats, exact=False, volume_rank=1, rtol=1e-4, attrs={"reference": "r"}), stats


def test_reference_tree_layout_coords_and_no_constant_variables():
    tree, stats = _tree(np.random.default_rng(1))
    post, ss = tree["posterior"].to_dataset(), tree["sample_stats"].to_dataset()
    assert post["log_volume_density"].dims == ("depth", "chain", "draw")
    assert list(post["depth"].values) == [5.0, math.inf]
    for ds in (post, ss):
        assert set(ds.dims) <= set(ds.coords), "every dimension has coordinates"
    # the arrays are the ones given (computed once, on M_1), not recomputed
    np.testing.assert_array_equal(post["log_volume_density"].values[1], stats[math.inf].log_volume_density)
    # numerical rank (1 everywhere) and the observed entries X11 = X22 = 1 are constant: left out, listed
    assert "numerical_rank" not in post and "hyperbola_defect" not in post
    const = json.loads(post.attrs["constant_variables"])
    assert const["numerical_rank"] == 1.0 and const["X"] == "X[0,0], X[1,1]"
    assert list(post["entry"].values) == ["X[0,1]", "X[1,0]"]
    for v in post.data_vars:
        assert np.all(np.ptp(post[v].values, axis=(1, 2)) > 0), v
    assert post.attrs["volume_rank"] == 1 and post.attrs["rtol"] == 1e-4
    assert {"lp", "acceptance_rate", "step_size", "failures"} <= set(ss.data_vars)
    assert ss["failures"].dims == ("depth", "chain", "failure") and list(ss["failure"].values) == ["projection"]
    np.testing.assert_array_equal(ss["step_size"].values[0, :, 7], [0.1, 0.2, 0.3, 0.4])


def test_arviz_functions_run_without_warnings():
    tree, _ = _tree(np.random.default_rng(2))
    obj = diag.to_arviz(tree)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = az.summary(obj)
        assert {"r_hat", "ess_bulk", "ess_tail"} <= set(table.columns)
        assert np.all(np.isfinite(table["r_hat"].astype(float)))
        az.rhat(obj)
        for fn in (diag.plot_trace, diag.plot_ess, diag.plot_rank):
            fig = fn(obj, ["log_volume_density"], coords={"depth": [5.0]})
            assert fig.axes
            plt.close(fig)
        diag.summary(obj, warn=True)  # iid uniform draws: no DiagnosticWarning either


def test_summary_flags_rhat_of_stuck_chains():
    tree, _ = _tree(np.random.default_rng(3), stuck=True)
    with pytest.warns(diag.DiagnosticWarning, match="r_hat"):
        res = diag.summary(diag.to_arviz(tree))
    assert any("nuclear_norm" in p and "r_hat" in p for p in res.problems)


def test_results_netcdf_round_trip_and_one_reference(tmp_path):
    rng = np.random.default_rng(4)
    tree, _ = _tree(rng)
    eps = {d: _ep(_chains(rng, depth=d).draws[0, :17]) for d in DEPTHS}
    est = {d: compute_statistics(eps[d].X, d, rtol=1e-4, rank=1) for d in DEPTHS}
    keep = {d: np.arange(17) < 16 for d in DEPTHS}
    ep = diag.endpoints_dataset(eps, est, keep, volume_rank=1, rtol=1e-4)
    assert "initial_norm" in ep.data_vars  # per-run fields added to Endpoints later appear by themselves
    whole = diag.results_tree({"r": tree}, ep, dv.tasks.diagonal_2x2(), {"seed": 7})
    path = tmp_path / "results.nc"
    diag.save(whole, path)
    back = diag.load(path)
    a, b = diag.arrays(whole), diag.arrays(back)
    assert sorted(a) == sorted(b) and "/endpoints/log_volume_density" in a
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert back["endpoints"].attrs["volume_rank"] == 1 and back.attrs["seed"] == 7
    obj = diag.load(path, reference="r")
    post = obj["posterior"] if diag.ARVIZ_MAJOR >= 1 else obj.posterior
    (post.to_dataset() if diag.ARVIZ_MAJOR >= 1 else post).to_dataframe()  # coords for every dim
    groups = set(obj.children) if diag.ARVIZ_MAJOR >= 1 else set(obj.groups())
    assert {"posterior", "sample_stats", "endpoints", "constant_data"} <= groups
    with pytest.raises(ValueError, match=r"reference='nope': not in the results; available: \['r'\]"):
        diag.load(path, reference="nope")


def test_exact_reference_has_lp_only():
    rng = np.random.default_rng(5)
    s = _chains(rng)
    s = SampleSet(s.draws, s.log_density, np.ones_like(s.log_density), np.zeros(4), {}, s.target, "exact",
                  s.seeds, 0, 1)
    tree = diag.reference_tree({5: s}, {5: compute_statistics(s.draws, 5, rank=1)}, exact=True, volume_rank=1,
                               rtol=1e-6)
    assert list(tree["sample_stats"].to_dataset().data_vars) == ["lp"]
    assert tree["posterior"].attrs["exact"] == 1


def test_reference_tree_rejects_non_matrix_draws():
    rng = np.random.default_rng(6)
    s = _chains(rng)
    bad = SampleSet(s.draws[0], s.log_density, s.accept_prob, s.step_size, {}, s.target, "mcmc", s.seeds, 0, 1)
    with pytest.raises(ValueError, match=r"expected \(chain, draw, m, n\) at every depth"):
        diag.reference_tree({5: bad}, {5: compute_statistics(bad.draws, 5)}, exact=False, volume_rank=None,
                            rtol=1e-6)
