"""InferenceData export: groups, dims, attrs, NetCDF round trip, R-hat / ESS warnings."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import dlnvolume as dv
from analysis import diagnostics as diag
from analysis.runner import SampleSet

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az


def _chains(rng, C=4, D=200, stuck=False):
    a = rng.uniform(0.5, 2.0, size=(C, D))
    if stuck:  # chains in different places: R-hat must flag it
        a = a + np.arange(C)[:, None] * 3.0
    X = np.ones((C, D, 2, 2))
    X[..., 0, 1], X[..., 1, 0] = a, 1 / a
    target = {"measure": "solution_set", "depth": 5, "rank": 1, "beta": None, "normalized": True,
              "confinement": "FrobeniusBall(3.0)"}
    return SampleSet(X, rng.normal(size=(C, D)), np.full((C, D), 0.6), np.full(C, 0.1),
                     {"projection": np.arange(C)}, target, "mcmc", np.arange(C, dtype=np.uint64), 100, 1)


class _Ep:
    def __init__(self, X):
        self.X, self.X0 = X, X * 1e-3
        n = len(X)
        self.seeds = np.arange(n, dtype=np.uint64)
        self.status = np.array(["converged"] * (n - 1) + ["max_steps"])
        self.loss, self.t = np.zeros(n), np.ones(n)
        self.depth, self.method, self.init_scale, self.task_name = math.inf, "end_to_end", 1e-3, "diagonal_2x2"


def test_groups_dims_attrs_and_netcdf_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    ch = _chains(rng)
    ep = _Ep(ch.draws[0, :17])
    task = dv.tasks.diagonal_2x2()
    idata = diag.to_inference_data(ch, ep, task=task, attrs={"seed": 7})
    assert {"posterior", "sample_stats", "constant_data", "endpoints"} <= set(idata.groups())
    post = idata.posterior
    assert post["X"].dims == ("chain", "draw", "row", "col") and post["X"].shape == (4, 200, 2, 2)
    assert post["log_volume_density"].dims == ("chain", "draw")
    np.testing.assert_allclose(post["log_volume_density"].values,
                               dv.log_volume_density(ch.draws, 5, rank=1), rtol=1e-12)
    assert idata.sample_stats["lp"].shape == (4, 200)
    assert list(idata.sample_stats["failures_projection"].values) == [0, 1, 2, 3]
    assert idata.endpoints["X"].dims == ("run", "row", "col") and idata.endpoints.sizes["run"] == 17
    assert post.attrs["depth"] == 5 and post.attrs["measure"] == "solution_set" and post.attrs["seed"] == 7
    path = tmp_path / "r.nc"
    diag.save(diag.merge({"a": idata, "b": diag.to_inference_data(None, ep, depth=math.inf, task=task)}), path)
    back = az.from_netcdf(str(path))
    assert {"posterior", "posterior_a", "endpoints_a", "endpoints_b", "constant_data"} <= set(back.groups())
    np.testing.assert_array_equal(back.posterior_a["X"].values, ch.draws)
    assert back.endpoints_b.attrs["flow_depth"] == "inf"
    assert list(back.endpoints_b["status"].values) == list(ep.status)
    np.testing.assert_array_equal(back.constant_data["mask"].values, np.eye(2, dtype=np.int8))


def test_summary_flags_rhat_and_low_ess():
    rng = np.random.default_rng(2)
    good = diag.summary(diag.to_inference_data(_chains(rng, D=500)), warn=False)
    assert "r_hat" in good.table.columns and "ess_bulk" in good.table.columns and "mcse_mean" in good.table.columns
    assert not [p for p in good.problems if "nuclear_norm" in p]  # iid draws: R-hat ≈ 1, ESS ≈ 2000
    bad = diag.to_inference_data(_chains(rng, stuck=True))
    with pytest.warns(diag.DiagnosticWarning, match="r_hat"):
        res = diag.summary(bad)
    assert any("r_hat" in p for p in res.problems)


def test_requires_something():
    with pytest.raises(ValueError, match="give chains=, endpoints= or both"):
        diag.to_inference_data(None, None)
