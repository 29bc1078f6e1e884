"""The initialization-scale ladder: which stratum the endpoints reach, and which point they approach, as s → 0.

The flows of one depth are run at several initialization scales ``s_1 > s_2 > ... > s_k`` with the same
seeds, so run ``i`` starts from ``X0 = s_j · D_i`` with one direction ``D_i`` at every scale (the
``gaussian_factors`` law scales its product exactly like that; docs/flows.md "Initial laws"). What a
small-initialization hypothesis predicts is a limit ``s → 0``; a single scale cannot tell "on the
stratum M_r" from "close to it at this scale" (docs/math.md §7.3).

Two questions are answered from the paired per-run trends (log–log least-squares slopes over the
ladder, one per run; their median with a percentile-bootstrap interval over runs):

* **Stratum** (:func:`classify_stratum`): does ``σ_{r+1}/σ_1`` of the endpoint go to 0 with ``s``?
  ``"tends to M_r"`` when the slope's interval lies above :data:`SLOPE_MIN`, ``"ends off M_r"`` when it
  lies below, ``"on M_r at every scale"`` when the ratio is at round-off (below :data:`ON_STRATUM_FLOOR`)
  at every scale, else ``"undetermined"``. For square tasks the runs are split by the sign of
  ``det X0`` (invariant along the flow for N ≥ 2, docs/math.md §5.1): the two groups can reach
  different strata (on the 2×2 diagonal task at N = 2 only the ``det X0 < 0`` runs reach M_1), and the
  stratum counts as reached only when every group reaches it.
* **Approach** (:func:`approach`): does the distance of the endpoint to a predicted point shrink with
  ``s``? Same slope rule, or a distance already below :data:`DISTANCE_FLOOR` (relative to the size of
  the solutions) at every scale. :func:`closest_approached` names the predictor whose points the
  endpoints approach, or None ("none of them").

Both rules can come out either way on every task (tests/analysis/test_ladder.py runs them on synthetic
ladders with known slopes, both signs).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from dlnvolume.errors import InvalidArgumentError, ShapeError

__all__ = ["SLOPE_MIN", "ON_STRATUM_FLOOR", "DISTANCE_FLOOR", "TIE", "Trend", "StratumAnswer", "per_run_slopes",
           "trend", "classify_stratum", "approach", "closest_approached", "tied", "default_scales"]

#: a per-run log–log slope whose bootstrap interval lies above this counts as "shrinks with s";
#: the small-initialization theory predicts slopes of order 1 (σ_{r+1}/σ_1 ∝ s at N ≥ 3) and 0 for a
#: limit off the stratum, so 0.25 separates the two with room on both sides
SLOPE_MIN = 0.25
#: σ_{r+1}/σ_1 below this at every scale: the endpoints are on M_r to round-off (no trend to measure)
ON_STRATUM_FLOOR = 1e-10
#: a median distance below this fraction of the solutions' median Frobenius norm at every scale counts as
#: "at the point" (no trend to measure)
DISTANCE_FLOOR = 1e-5
_BOOT = 999
#: approached predictors whose median distance at the smallest scale is within this factor of the closest one
#: are reported with it: the endpoints do not tell them apart on this task
TIE = 1.1


def default_scales(init_scale: float) -> tuple[float, float, float]:
    """Three scales a decade apart around ``init_scale``, largest first.

    >>> default_scales(1e-3)
    (0.01, 0.001, 0.0001)
    """
    return (init_scale * 10.0, float(init_scale), init_scale / 10.0)


def _check_ladder(scales: Sequence[float], values: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scales, dtype=np.float64)
    if s.ndim != 1 or s.size < 2 or not np.all(np.isfinite(s)) or np.any(s <= 0) or np.unique(s).size != s.size:
        raise InvalidArgumentError(f"scales={list(np.atleast_1d(s))!r}; expected at least two distinct finite scales > 0")
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] != s.size or v.shape[1] < 2:
        raise ShapeError(f"{name} has shape {v.shape}; expected (len(scales), runs) = ({s.size}, runs >= 2)")
    if np.any(np.isnan(v)) or np.any(v < 0):
        raise InvalidArgumentError(f"{name} has NaN or negative entries; expected ratios/distances >= 0")
    return s, v


def per_run_slopes(scales: Sequence[float], values: Any, *, floor: float = 1e-300) -> np.ndarray:
    """Least-squares slope of ``log values[:, i]`` against ``log scales`` for every run ``i``.

    ``values`` has shape ``(len(scales), runs)``; entries are clipped at ``floor`` before the log.

    >>> per_run_slopes([1e-2, 1e-3, 1e-4], [[1e-3, 1.0], [1e-4, 1.0], [1e-5, 1.0]]).round(6)
    array([1., 0.])
    """
    s, v = _check_ladder(scales, values, "values")
    x = np.log(s) - np.log(s).mean()
    y = np.log(np.maximum(v, floor))
    y = y - y.mean(axis=0)
    return (x @ y) / (x @ x)


@dataclass(frozen=True)
class Trend:
    """The s → 0 trend of one per-run quantity over a ladder.

    ``slope``: median of the per-run log–log slopes; ``slope_ci``: 95 % percentile-bootstrap interval of
    that median (runs resampled); ``median``: median over runs at each scale (ladder order); ``answer``:
    ``"shrinks"``, ``"at floor"``, ``"does not shrink"`` or ``"undetermined"``.
    """

    slope: float
    slope_ci: tuple[float, float]
    median: tuple[float, ...]
    n_runs: int
    answer: str

    @property
    def shrinks(self) -> bool | None:
        return {"shrinks": True, "at floor": True, "within resolution": True,
                "does not shrink": False}.get(self.answer)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["slope_ci"] = list(self.slope_ci)
        d["median"] = list(self.median)
        return d


def trend(scales: Sequence[float], values: Any, *, floor: float, rng: Any = None,
          slope_min: float = SLOPE_MIN) -> Trend:
    """Median per-run slope with its bootstrap interval, and the answer of the slope rule (module docstring).

    ``floor``: values below it at every scale (the median over runs) mean "at floor"; they are also
    clipped at ``floor`` before the log, so round-off below it does not make a slope.
    """
    s, v = _check_ladder(scales, values, "values")
    g = np.random.default_rng(rng)
    slopes = per_run_slopes(s, v, floor=floor)
    med = np.median(v, axis=1)
    boot = np.median(slopes[g.integers(0, slopes.size, size=(_BOOT, slopes.size))], axis=1)
    lo, hi = (float(x) for x in np.percentile(boot, [2.5, 97.5]))
    slope = float(np.median(slopes))
    if np.all(med < floor):
        answer = "at floor"
    elif lo > slope_min:
        answer = "shrinks"
    elif hi < slope_min:
        answer = "does not shrink"
    else:
        answer = "undetermined"
    return Trend(slope, (lo, hi), tuple(float(x) for x in med), int(slopes.size), answer)


_STRATUM_ANSWER = {"shrinks": "tends to M_{r}", "at floor": "on M_{r} at every scale",
                   "does not shrink": "ends off M_{r}", "undetermined": "undetermined",
                   "within resolution": "on M_{r} to the flows' resolution",
                   "unresolved": "undetermined (σ_{{r+1}}/σ_1 below the flows' resolution)"}
#: an unresolved σ_{r+1}/σ_1 (the flows' error dominates it; :class:`analysis.bias.Resolution`) whose bound is
#: below this is "on M_r to the flows' resolution": the slope cannot be measured there, but the limit is
#: within this relative distance of M_r, below every rank tolerance the package uses (1e-4 … 1e-6)
UNRESOLVED_ON = 1e-6


@dataclass(frozen=True)
class StratumAnswer:
    """Whether the endpoints of one depth reach the stratum M_r as s → 0 (:func:`classify_stratum`).

    ``reached``: True (every group tends to M_r or is on it), False (some group ends off M_r), None
    (undetermined). ``groups``: one entry per sign of ``det X0`` (square tasks; one group ``"all"``
    otherwise) with its size and :class:`Trend` of ``σ_{r+1}/σ_1``. ``off_fraction``: per scale, the
    fraction of runs whose numerical rank exceeds ``r``; ``rank_reached``: median numerical rank at the
    smallest scale.
    """

    rank: int
    reached: bool | None
    answer: str
    groups: dict = field(default_factory=dict)
    off_fraction: tuple[float, ...] = ()
    rank_reached: int = 0
    bound: float | None = None

    def to_dict(self) -> dict:
        return {"rank": self.rank, "reached": self.reached, "answer": self.answer,
                "slope": self.slope, "groups": {k: {"n": n, **t.to_dict()} for k, (n, t) in self.groups.items()},
                "off_fraction": list(self.off_fraction), "rank_reached": self.rank_reached,
                "resolution_bound": self.bound}

    @property
    def slope(self) -> float:
        """The slope of the group that decides the answer (the smallest slope over groups)."""
        return float(min(t.slope for _, t in self.groups.values())) if self.groups else float("nan")


def classify_stratum(scales: Sequence[float], ratios: Any, rank: int, *, det_sign: Any = None,
                     off_stratum: Any = None, numerical_rank: Any = None, unresolved_bound: float | None = None,
                     rng: Any = None, slope_min: float = SLOPE_MIN) -> StratumAnswer:
    """Which stratum the endpoints reach as s → 0 (module docstring).

    Parameters
    ----------
    scales : (k,) initialization scales of the ladder (k >= 2)
    ratios : (k, runs) ``σ_{r+1}/σ_1`` of every endpoint (the same run at every scale)
    rank : r
    det_sign : (runs,) sign of ``det X0`` (square tasks) or None
    off_stratum : (k, runs) bool, numerical rank > r at the experiment's tolerance (reported, not decisive)
    numerical_rank : (k, runs) numerical ranks (reported: the rank reached at the smallest scale)
    unresolved_bound : None when the flows resolve ``σ_{r+1}/σ_1`` at the smallest scale; else the bound
        below which they do not (:class:`analysis.bias.Resolution`): a group whose trend is flat or unclear and
        whose median ratio at the smallest scale is below it has no measurable slope (an integrator floor
        flattens a ladder) and is "on M_r to the flows' resolution" when the bound is below
        :data:`UNRESOLVED_ON`, else "undetermined"

    Examples
    --------
    >>> s = [1e-2, 1e-3, 1e-4]
    >>> a = classify_stratum(s, np.outer(s, np.ones(20)) * 0.1, 1, rng=0)
    >>> a.answer, a.reached, round(a.slope, 6)
    ('tends to M_1', True, 1.0)
    >>> classify_stratum(s, np.full((3, 20), 0.4), 1, rng=0).answer
    'ends off M_1'
    """
    s, v = _check_ladder(scales, ratios, "ratios")
    g = np.random.default_rng(rng)
    runs = v.shape[1]
    if det_sign is None:
        labels = {"all": np.ones(runs, dtype=bool)}
    else:
        d = np.sign(np.asarray(det_sign, dtype=np.float64)).reshape(-1)
        if d.size != runs:
            raise ShapeError(f"det_sign has {d.size} entries; expected one per run ({runs})")
        labels = {"det X0 > 0": d > 0, "det X0 < 0": d < 0}
    order = np.argsort(-s)  # ladder order: largest scale first
    s, v = s[order], v[order]
    groups = {}
    for name, sel in labels.items():
        if sel.sum() >= 2:
            t = trend(s, v[:, sel], floor=ON_STRATUM_FLOOR, rng=g, slope_min=slope_min)
            # an integrator floor flattens the ladder (it never steepens it, nor turns it upward as s shrinks):
            # only a flat or unclear trend of ratios below the unresolved bound is replaced
            if unresolved_bound is not None and t.answer in ("does not shrink", "undetermined") \
                    and t.slope_ci[0] > -slope_min and t.median[-1] <= unresolved_bound:
                t = Trend(t.slope, t.slope_ci, t.median, t.n_runs,
                          "within resolution" if unresolved_bound <= UNRESOLVED_ON else "unresolved")
            groups[name] = (int(sel.sum()), t)
        elif sel.sum() == 1:
            groups[name] = (1, Trend(float("nan"), (float("nan"), float("nan")),
                                     tuple(float(x) for x in v[:, sel][:, 0]), 1, "undetermined"))
    answers = {name: t.answer for name, (_, t) in groups.items() if t.n_runs >= 2}
    if any(a == "does not shrink" for a in answers.values()):
        reached: bool | None = False
    elif answers and all(a in ("shrinks", "at floor", "within resolution") for a in answers.values()):
        reached = True
    else:
        reached = None
    parts = [f"{_STRATUM_ANSWER[t.answer].format(r=rank)}" + ("" if len(groups) == 1 else f" ({name}, {n} runs)")
             for name, (n, t) in groups.items()]
    if len(set(a for a in answers.values())) == 1 and len(groups) > 1:
        parts = [_STRATUM_ANSWER[next(iter(answers.values()))].format(r=rank)]
    off = () if off_stratum is None else tuple(float(x) for x in np.asarray(off_stratum, dtype=bool)[order].mean(axis=1))
    rr = 0 if numerical_rank is None else int(np.median(np.asarray(numerical_rank)[order][-1]))
    return StratumAnswer(int(rank), reached, "; ".join(parts), groups, off, rr, unresolved_bound)


def approach(scales: Sequence[float], distances: Any, *, size: float, rng: Any = None) -> Trend:
    """Does the distance of the endpoints to a predictor's points shrink as s → 0?

    ``distances``: (k, runs) distance of every endpoint to the nearest predicted point; ``size``: the
    typical Frobenius norm of the solutions (the floor is :data:`DISTANCE_FLOOR` × size).

    >>> s = [1e-2, 1e-3, 1e-4]
    >>> approach(s, np.outer(np.sqrt(s), np.ones(30)), size=1.0, rng=0).answer
    'shrinks'
    >>> approach(s, np.full((3, 30), 0.3), size=1.0, rng=0).answer
    'does not shrink'
    """
    if not (isinstance(size, (int, float)) and math.isfinite(size) and size > 0):
        raise InvalidArgumentError(f"size={size!r}; expected a finite number > 0")
    s, d = _check_ladder(scales, distances, "distances")
    order = np.argsort(-s)
    return trend(s[order], d[order], floor=DISTANCE_FLOOR * size, rng=rng)


def closest_approached(trends: Mapping[str, Trend]) -> str | None:
    """The predictor whose points the endpoints approach, or None.

    Among the predictors whose :class:`Trend` answer is "shrinks" or "at floor", the one with the smallest
    median distance at the smallest scale.

    >>> t = lambda a, m: Trend(1.0, (0.9, 1.1), (1.0, m), 10, a)
    >>> closest_approached({"p": t("shrinks", 0.1), "q": t("at floor", 1e-9), "z": t("does not shrink", 0.0)})
    'q'
    >>> closest_approached({"p": t("undetermined", 0.1)}) is None
    True
    """
    ok = {k: t for k, t in trends.items() if t.shrinks}
    if not ok:
        return None
    return min(ok, key=lambda k: ok[k].median[-1])


def tied(trends: Mapping[str, Trend], best: str | None) -> list[str]:
    """``best`` and every other approached predictor within a factor :data:`TIE` of its median distance at
    the smallest scale (closest first); empty when ``best`` is None.

    >>> t = lambda m: Trend(1.0, (0.9, 1.1), (1.0, m), 10, "shrinks")
    >>> tied({"a": t(0.0041), "b": t(0.00415), "c": t(0.01)}, "a")
    ['a', 'b']
    """
    if best is None:
        return []
    ref = trends[best].median[-1]
    out = [k for k, t in trends.items() if t.shrinks and t.median[-1] <= TIE * ref + 1e-300]
    return sorted(out, key=lambda k: trends[k].median[-1])
