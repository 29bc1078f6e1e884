"""The s → 0 ladder rules on synthetic ladders with known slopes: both answers occur, with negative controls."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis import ladder as L
from dlnvolume.errors import InvalidArgumentError, ShapeError

S = [1e-2, 1e-3, 1e-4]


def _ladder(slope, runs=40, c=0.1, noise=0.05, rng=0, scales=S):
    """ratios c_i · s^slope_i with log-normal noise; ``slope`` a number or (runs,) array."""
    g = np.random.default_rng(rng)
    sl = np.broadcast_to(np.asarray(slope, dtype=float), (runs,))
    ci = c * np.exp(g.normal(0, 1, runs))
    return np.array([ci * s ** sl * np.exp(g.normal(0, noise, runs)) for s in scales])


def test_per_run_slopes_are_exact_on_power_laws():
    sl = np.linspace(-1, 2, 7)
    r = np.array([3.0 * s ** sl for s in S])
    np.testing.assert_allclose(L.per_run_slopes(S, r), sl, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("slope, answer, reached", [(1.0, "tends to M_1", True), (0.5, "tends to M_1", True),
                                                     (0.0, "ends off M_1", False), (-0.3, "ends off M_1", False)])
def test_stratum_follows_the_slope(slope, answer, reached):
    a = L.classify_stratum(S, _ladder(slope), 1, rng=1)
    assert a.answer == answer and a.reached is reached
    assert abs(a.slope - slope) < 0.05
    lo, hi = a.groups["all"][1].slope_ci
    assert lo <= slope + 0.05 and hi >= slope - 0.05


def test_slope_near_the_threshold_is_undetermined_not_forced():
    # per-run slopes spread over [0, 0.5]: the median's interval straddles SLOPE_MIN = 0.25
    sl = np.random.default_rng(3).uniform(0.0, 0.5, 40)
    a = L.classify_stratum(S, _ladder(sl, noise=0.0), 1, rng=1)
    assert a.answer == "undetermined" and a.reached is None


def test_groups_by_sign_of_det_x0():
    # the 2x2 diagonal task at N = 2: det X0 > 0 runs end at σ2/σ1 ≈ 0.3 at every s, det X0 < 0 runs tend to M_1
    runs = 40
    det = np.where(np.arange(runs) < 25, 1.0, -1.0)
    r = np.where(det > 0, _ladder(0.0, runs, c=0.3), _ladder(1.0, runs, rng=4))
    a = L.classify_stratum(S, r, 1, det_sign=det, rng=0)
    assert a.reached is False
    assert a.groups["det X0 > 0"][1].answer == "does not shrink" and a.groups["det X0 > 0"][0] == 25
    assert a.groups["det X0 < 0"][1].answer == "shrinks"
    # negative control: both groups tending -> reached
    b = L.classify_stratum(S, _ladder(1.0, runs), 1, det_sign=det, rng=0)
    assert b.reached is True and b.answer == "tends to M_1"


def test_at_floor_and_unresolved_bound():
    tiny = np.full((3, 30), 1e-13)
    assert L.classify_stratum(S, tiny, 2, rng=0).answer == "on M_2 at every scale"
    flat = np.full((3, 30), 1.2e-7) * np.exp(np.random.default_rng(0).normal(0, 0.01, (3, 30)))
    # resolved flat ratios: ends off (the flows say the limit is 1.2e-7 away at every s)
    assert L.classify_stratum(S, flat, 1, rng=0).reached is False
    # unresolved (the integrator's error): on M_1 to the flows' resolution
    a = L.classify_stratum(S, flat, 1, unresolved_bound=2e-7, rng=0)
    assert a.reached is True and a.answer == "on M_1 to the flows' resolution"
    # an unresolved bound above UNRESOLVED_ON does not claim the stratum
    big = np.full((3, 30), 1e-3)
    assert L.classify_stratum(S, big, 1, unresolved_bound=2e-3, rng=0).reached is None
    # a clear slope is kept whatever the bound (a floor flattens a ladder, never steepens it)
    assert L.classify_stratum(S, _ladder(1.0), 1, unresolved_bound=1.0, rng=0).answer == "tends to M_1"
    # nor does a floor make the ratio grow as s shrinks: that trend ends off the stratum whatever the bound
    up = _ladder(-1.5, c=1e-9)
    assert L.classify_stratum(S, up, 2, unresolved_bound=1.0, rng=0).answer == "ends off M_2"


def test_approach_and_closest():
    size = 5.0
    d_near = _ladder(1.0, c=0.5)           # shrinking distances
    d_far = _ladder(0.0, c=0.5)            # a limit point 0.5 away
    t1 = L.approach(S, d_near, size=size, rng=0)
    t2 = L.approach(S, d_far, size=size, rng=0)
    assert t1.answer == "shrinks" and t2.answer == "does not shrink"
    assert L.closest_approached({"near": t1, "far": t2}) == "near"
    assert L.closest_approached({"far": t2}) is None
    at = L.approach(S, np.full((3, 20), 1e-9), size=size, rng=0)
    assert at.answer == "at floor" and at.shrinks


def test_ties_are_reported_together():
    t = lambda m: L.Trend(1.0, (0.9, 1.1), (1.0, m), 10, "shrinks")  # noqa: E731
    tr = {"a": t(0.0041), "b": t(0.0042), "c": t(0.02), "d": L.Trend(0, (0, 0), (1.0, 0.0041), 10, "does not shrink")}
    assert L.tied(tr, "a") == ["a", "b"]
    assert L.tied(tr, None) == []


def test_reproducible():
    r = _ladder(0.7)
    a, b = L.classify_stratum(S, r, 1, rng=5), L.classify_stratum(S, r, 1, rng=5)
    assert a.to_dict() == b.to_dict()


def test_errors():
    with pytest.raises(InvalidArgumentError, match="at least two distinct finite scales"):
        L.per_run_slopes([1e-3], [[1.0, 2.0]])
    with pytest.raises(InvalidArgumentError, match="at least two distinct"):
        L.per_run_slopes([1e-3, 1e-3], [[1.0, 2.0], [1.0, 2.0]])
    with pytest.raises(ShapeError, match=r"expected \(len\(scales\), runs\)"):
        L.per_run_slopes(S, np.ones((2, 5)))
    with pytest.raises(InvalidArgumentError, match="NaN or negative"):
        L.per_run_slopes(S, np.full((3, 5), np.nan))
    with pytest.raises(ShapeError, match="det_sign has 3 entries"):
        L.classify_stratum(S, np.ones((3, 5)), 1, det_sign=[1, 1, 1])
    with pytest.raises(InvalidArgumentError, match="size=0"):
        L.approach(S, np.ones((3, 5)), size=0)
    assert math.isclose(L.default_scales(1e-3)[0], 1e-2)
