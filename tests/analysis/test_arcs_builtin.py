"""The built-in `arcs-3x3`: a task where the implicit-bias hypotheses predict different points.

Its solution set S ∩ M_2 is two hyperbola arcs, X(a) = [[1, 2, a], [3, 1, 1], [b, 1, 2]], b = 3 − 5/(a − 2)
(docs/math.md §7.3). The predicted points of the experiment's depths are checked here against a 1-D
computation along the arcs (dense grid + bounded scalar optimization of the explicit parametrization),
independent of analysis.predictors.
"""

from __future__ import annotations

import math
import tomllib

import numpy as np
import pytest
from scipy import optimize

import dlnvolume as dv
from analysis.experiment import builtin_experiments, load_config
from analysis.predictors import predict


def _X(a):
    a = np.asarray(a, dtype=float)
    X = np.broadcast_to(np.array([[1.0, 2.0, 0.0], [3.0, 1.0, 1.0], [0.0, 1.0, 2.0]]), a.shape + (3, 3)).copy()
    X[..., 0, 2] = a
    X[..., 2, 0] = 3.0 - 5.0 / (a - 2.0)
    return X


def _arcs(radius):
    """The a-intervals of the two arcs inside ‖X‖_F <= radius (left a < 2, right a > 2)."""
    out = []
    for lo, hi in ((-radius, 2.0 - 1e-9), (2.0 + 1e-9, radius)):
        g = np.linspace(lo, hi, 400001)
        inside = np.flatnonzero(np.linalg.norm(_X(g), axis=(-2, -1)) <= radius)
        out.append((g[inside[0]], g[inside[-1]]))
    return out


def _local_optima(f, radius, maximize):
    """Interior local optima of f(a) on each arc: grid, then a bounded Brent refinement."""
    sign = -1.0 if maximize else 1.0
    found = []
    for lo, hi in _arcs(radius):
        g = np.linspace(lo, hi, 20001)
        v = sign * f(g)
        idx = [i for i in range(1, g.size - 1) if v[i] < v[i - 1] and v[i] <= v[i + 1]]
        for i in idx:
            r = optimize.minimize_scalar(lambda a: sign * float(f(np.array([a]))[0]), bounds=(g[i - 1], g[i + 1]),
                                         method="bounded", options={"xatol": 1e-12})
            found.append(r.x)
    return np.array(sorted(found))


@pytest.fixture(scope="module")
def cfg():
    c, _ = load_config("arcs-3x3")
    return c


def test_builtin_is_the_two_arc_task(cfg):
    assert "arcs-3x3" in builtin_experiments()
    doc = tomllib.loads(builtin_experiments()["arcs-3x3"])
    X = _X(np.array([0.5]))[0]
    np.testing.assert_array_equal(np.where(doc_mask(doc), X, 0.0), np.where(doc_mask(doc), doc_values(doc), 0.0))
    assert cfg.depths == (2, 3, 5, math.inf) and min(cfg.scales) == pytest.approx(1e-5)
    assert cfg.volume_rank == 2 and cfg.references[0].radius == 15.0


def doc_mask(doc):
    return np.array(doc["task"]["mask"], dtype=bool)


def doc_values(doc):
    return np.array(doc["task"]["values"], dtype=float)


@pytest.mark.parametrize("depth", [2, 3, 5, math.inf])
def test_predicted_points_against_the_arc_parametrization(cfg, depth):
    task = dv.CompletionTask(doc_values(tomllib.loads(builtin_experiments()["arcs-3x3"])),
                             doc_mask(tomllib.loads(builtin_experiments()["arcs-3x3"])))
    R = cfg.references[0].radius
    p = predict(task, depth, 2, R, names=["volume_max", "nuclear_norm_min", "frobenius_min"], rng=0)
    exact = {
        "volume_max": _local_optima(lambda a: dv.log_volume_density(_X(a), depth, rank=2), R, True),
        "nuclear_norm_min": _local_optima(lambda a: np.linalg.svd(_X(a), compute_uv=False).sum(-1), R, False),
        "frobenius_min": _local_optima(lambda a: np.linalg.norm(_X(a), axis=(-2, -1)), R, False),
    }
    for name, a in exact.items():
        assert a.size == 2, (name, a)  # one interior optimum per arc
        got = np.sort(p[name].points[:, 0, 2])
        np.testing.assert_allclose(got, a, rtol=1e-5, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(np.sort(p[name].points[:, 2, 0]), np.sort(3 - 5 / (a - 2)), rtol=1e-5, atol=1e-6)
    # the hypotheses differ on this task: the three predictors' points are far apart on each arc
    a_v, a_n, a_f = (exact[k] for k in ("volume_max", "nuclear_norm_min", "frobenius_min"))
    assert np.all(np.abs(a_v - a_n) > 0.15) and np.all(np.abs(a_n - a_f) > 0.15)


@pytest.mark.slow
def test_quick_run_of_the_builtin(tmp_path):
    from analysis.cli import main

    assert main(["run", "arcs-3x3", "--quick", "--out", str(tmp_path), "-q"]) == 0
    import json

    v = json.loads((tmp_path / "verdict.json").read_text())
    assert [d["depth"] for d in v["depths"]] == [3, "inf"]
    names = {p["name"] for p in v["depths"][0]["predictors"]}
    assert {"volume_max", "nuclear_norm_min", "greedy_depth", "nuclear_norm_min_any_rank"} <= names
