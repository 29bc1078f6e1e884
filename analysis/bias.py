"""Which implicit bias the endpoints follow, per depth: stratum reached, point approached, best tilted law.

Inputs are what the runner already computed: the endpoints of every scale of the initialization ladder
(:mod:`analysis.ladder`), their statistics, and the reference draws of the solution-set measure. For one
depth this module

1. classifies the stratum the endpoints reach as s → 0 (:func:`analysis.ladder.classify_stratum` on
   ``σ_{r+1}/σ_1``, split by the sign of ``det X0`` on square tasks), with the nuclear-norm gap
   ``‖X‖_* − min_{X ∈ S} ‖X‖_*`` (``nuclear_norm_min_any_rank``) at every scale;
2. computes the predicted points of every registered hypothesis (:mod:`analysis.predictors`) and the
   distance of every endpoint to each, at every scale, and names the predictor whose points the
   endpoints approach (:func:`analysis.ladder.approach`), or none;
3. when the stratum is reached and a solution-set reference exists at this depth, fits every rival law
   ``p_θ ∝ exp(θ T) p_ref`` at every scale (:func:`analysis.laws.compare_laws`) with ``T`` in
   {``log ρ_N``, ``−‖X‖_*``, ``−‖X‖_F``, ``−dist(X, points of each predictor)``, ``−log(f/g)`` (the
   Gibbs limit, θ = 1 is its exact law; docs/samplers.md §2)}, and follows ``θ̂`` along the ladder
   (:func:`analysis.laws.theta_trend`).

Every number here is computed once and stored in :class:`DepthBias`; the verdict, ``verdict.json``, the
report, its figure and ``results.nc`` read the same record.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import dlnvolume as dv

from . import laws as _laws
from . import ladder as _ladder
from .predictors import DEPTH_INDEPENDENT, Prediction, predict

__all__ = ["DepthBias", "Resolution", "depth_bias", "law_statistics", "ANY_RANK", "TIGHTER"]

ANY_RANK = "nuclear_norm_min_any_rank"
#: the resolution check re-runs runs at ``rtol / TIGHTER``
TIGHTER = 10.0


@dataclass(frozen=True)
class Resolution:
    """Do the flows resolve ``σ_{r+1}/σ_1`` of their endpoints? (the stratum question needs it)

    The first ``n`` runs of the smallest scale are re-run with the same seeds at a tolerance
    :data:`TIGHTER` times smaller. ``ratio``/``ratio_tight``: ``σ_{r+1}/σ_1`` of the two endpoints;
    ``change``: ``‖X − X_tight‖_F / ‖X_tight‖_F``. The ratio is *resolved* when every re-run agrees within a
    factor 2; otherwise ``bound`` (the largest ratio seen, either tolerance) is what the flows can say:
    the limit is within ``bound`` of M_r, or further, but not measurably closer.
    """

    rtol: float
    tight_rtol: float
    ratio: np.ndarray
    ratio_tight: np.ndarray
    change: np.ndarray

    @property
    def n(self) -> int:
        return int(self.ratio.size)

    @property
    def factors(self) -> np.ndarray:
        """Per re-run factor between the two ratios (1 = identical)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.exp(np.abs(np.log(np.maximum(self.ratio, 1e-300) / np.maximum(self.ratio_tight, 1e-300))))

    @property
    def factor(self) -> float:
        """Largest factor over the re-runs."""
        return float(np.max(self.factors)) if self.ratio.size else 1.0

    @property
    def resolved(self) -> bool:
        """Every re-run's ratio agrees within a factor 2."""
        return self.factor <= 2.0

    @property
    def bound(self) -> float | None:
        """The largest ratio (either tolerance) among the re-runs that disagree by more than a factor 2, or None."""
        bad = self.factors > 2.0
        if not bad.any():
            return None
        return float(max(np.max(self.ratio[bad]), np.max(self.ratio_tight[bad])))

    @property
    def moved(self) -> float:
        """Fraction of the re-runs whose endpoint moved by more than 1e-3 (relative)."""
        return float(np.mean(self.change > 1e-3)) if self.change.size else 0.0

    def to_dict(self) -> dict:
        return {"rtol": self.rtol, "tight_rtol": self.tight_rtol, "n": self.n, "factor": self.factor,
                "resolved": self.resolved, "bound": self.bound, "moved_fraction": self.moved,
                "max_change": float(np.max(self.change)) if self.change.size else 0.0}


@dataclass(frozen=True, eq=False)
class DepthBias:
    """The implicit-bias analysis of one depth (module docstring).

    Attributes
    ----------
    depth, rank : the depth and the tested stratum M_r
    scales : the ladder, largest first
    n_runs : runs that enter (kept at every scale)
    stratum : :class:`analysis.ladder.StratumAnswer`
    nuclear_gap : median ``‖X‖_* − ν*`` per scale (``ν*`` the minimum nuclear norm over all of S)
    predictions : name -> :class:`analysis.predictors.Prediction`
    distances : name -> (scales, runs) distance of every endpoint to the predictor's nearest point
    approach : name -> :class:`analysis.ladder.Trend` of those distances
    best : the predictor whose points the endpoints approach (smallest distance at the smallest scale
        among those that approach), or None ("none of them")
    laws : scale -> :class:`analysis.laws.LawComparison` (empty when the stratum is not reached or no
        solution-set reference exists at this depth)
    theta_trends : statistic -> :func:`analysis.laws.theta_trend` result along the ladder
    law_reference : name of the reference measure the laws tilt
    notes : why a part was skipped
    """

    depth: float
    rank: int
    scales: tuple[float, ...]
    n_runs: int
    stratum: Any
    nuclear_gap: tuple[float, ...]
    predictions: dict = field(default_factory=dict)
    distances: dict = field(default_factory=dict)
    approach: dict = field(default_factory=dict)
    best: str | None = None
    laws: dict = field(default_factory=dict)
    theta_trends: dict = field(default_factory=dict)
    law_reference: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def best_law(self) -> Any:
        """The :class:`analysis.laws.LawComparison` at the smallest scale (None without laws)."""
        return self.laws.get(self.scales[-1]) if self.laws else None

    def to_dict(self) -> dict:
        """JSON-ready summary (``verdict.json`` holds a subset, ``results.nc`` the arrays)."""
        lc = self.best_law
        return {
            "depth": "inf" if self.depth == math.inf else int(self.depth),
            "rank": self.rank, "scales": list(self.scales), "n_runs": self.n_runs,
            "stratum": self.stratum.to_dict(), "nuclear_gap": list(self.nuclear_gap),
            "predictors": {k: {**p.to_dict(), "approach": self.approach[k].to_dict() if k in self.approach else None}
                           for k, p in self.predictions.items()},
            "best": self.best,
            "laws": None if lc is None else lc.to_dict(),
            "theta_trends": self.theta_trends, "law_reference": self.law_reference, "notes": list(self.notes),
        }


def _predictions(task: dv.CompletionTask, depth: float, rank: int, radius: float, cache: dict, *,
                 names: Any, n_starts: int, rng: Any) -> dict[str, Prediction]:
    """Predictions at ``depth``; depth-independent ones come from (and go to) ``cache``."""
    want = list(names) if names is not None else None
    from .predictors import PREDICTORS

    todo = [k for k in (want or PREDICTORS) if not (k in DEPTH_INDEPENDENT and k in cache)]
    out = predict(task, depth, rank, radius, names=todo, n_starts=n_starts, rng=rng) if todo else {}
    for k, p in out.items():
        if k in DEPTH_INDEPENDENT:
            cache[k] = p
    return {k: (out[k] if k in out else cache[k]) for k in (want or PREDICTORS)}


def law_statistics(X: np.ndarray, stats: Any, predictions: dict, gibbs: Any = None) -> dict[str, np.ndarray]:
    """The tilt statistics ``T`` of :mod:`analysis.laws` for matrices ``X`` (..., m, n) with their
    :class:`analysis.statistics.MatrixStatistics` ``stats`` (the same arrays the tests use).

    ``log_volume_density`` (log ρ_N on the stratum), ``-nuclear_norm``, ``-frobenius_norm``,
    ``-dist:<predictor>`` for every predictor with points, and ``-log_gibbs_ratio`` when ``gibbs`` (a
    :class:`samplers.SolutionSetSampler`) is given: ``−log(f/g)``, under which θ = 1 is the Gibbs-limit law.
    """
    out = {"log_volume_density": np.asarray(stats.log_volume_density, dtype=np.float64),
           "-nuclear_norm": -np.asarray(stats.nuclear_norm, dtype=np.float64),
           "-frobenius_norm": -np.asarray(stats.frobenius_norm, dtype=np.float64)}
    for k, p in predictions.items():
        if len(p.points):
            out[f"-dist:{k}"] = -np.asarray(p.distance(X), dtype=np.float64)
    if gibbs is not None:
        out["-log_gibbs_ratio"] = -np.asarray(gibbs.log_gibbs_ratio(np.asarray(X, dtype=np.float64)), dtype=np.float64)
    return out


def _ratio(sigma: np.ndarray, rank: int) -> np.ndarray:
    s1 = sigma[..., 0]
    nxt = sigma[..., rank] if sigma.shape[-1] > rank else np.zeros_like(s1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(s1 > 0, nxt / np.where(s1 > 0, s1, 1.0), 0.0)


def depth_bias(task: dv.CompletionTask, depth: float, rank: int, ladder: dict, stats: dict, keep: np.ndarray, *,
               radius: float, reference: tuple | None = None, resolution: Resolution | None = None,
               prediction_cache: dict | None = None,
               predictor_names: Any = None, n_starts: int = 16, gibbs: Any = None, rng: Any = None) -> DepthBias:
    """The implicit-bias analysis of one depth (module docstring).

    Parameters
    ----------
    task, depth, rank : the task, the depth, the tested stratum M_r
    ladder : scale -> :class:`dlnvolume.flows.Endpoints` (the same seeds at every scale)
    stats : scale -> :class:`analysis.statistics.MatrixStatistics` of those endpoints
    keep : (n,) which of the first ``n`` runs enter (kept at every scale; every scale has at least ``n`` runs)
    resolution : the :class:`Resolution` check of this depth (None: ratios taken as resolved)
    radius : Frobenius window of the predicted points
    reference : ``(name, draws (chains, draws, m, n), MatrixStatistics of the draws, iid)`` of a
        solution-set reference at this depth (``iid``: exact independent draws), or None (no laws are fitted)
    prediction_cache : dict shared across depths (depth-independent predictions are computed once)
    gibbs : a :class:`samplers.SolutionSetSampler` at this depth for the Gibbs-limit statistic, or None
    rng : seeds the predictors' multi-starts and the bootstrap intervals
    """
    g = np.random.default_rng(rng)
    scales = tuple(sorted(ladder, reverse=True))
    keep = np.asarray(keep, dtype=bool)
    cache = prediction_cache if prediction_cache is not None else {}
    notes: list[str] = []
    m, n = task.shape
    nl = keep.size  # the first nl runs exist at every scale (the ladder may run fewer at the larger scales)
    X = {s: np.asarray(ladder[s].X, dtype=np.float64)[:nl][keep] for s in scales}
    sig = np.stack([np.asarray(stats[s].singular_values)[:nl][keep] for s in scales])   # (k, runs, min(m, n))
    ratios = _ratio(sig, rank)
    det_sign = None
    if m == n:
        X0 = np.asarray(ladder[scales[-1]].X0, dtype=np.float64)[:nl][keep]
        det_sign = np.sign(np.linalg.det(X0))
    num_rank = np.stack([np.asarray(stats[s].numerical_rank)[:nl][keep] for s in scales])
    stratum = _ladder.classify_stratum(scales, ratios, rank, det_sign=det_sign, off_stratum=num_rank > rank,
                                       numerical_rank=num_rank, rng=g,
                                       unresolved_bound=None if resolution is None else resolution.bound)
    preds = _predictions(task, depth, rank, radius, cache, names=predictor_names, n_starts=n_starts, rng=g)
    gap = tuple(float("nan") for _ in scales)
    if ANY_RANK in preds and len(preds[ANY_RANK].values):
        nu = float(preds[ANY_RANK].values[0])  # ν* = min over S; the endpoints are compared at their projection on S
        gap = tuple(float(np.median(np.linalg.svd(task.project_to_solutions(X[s]), compute_uv=False).sum(-1) - nu))
                    for s in scales)
    size = float(np.median(np.linalg.norm(X[scales[-1]], axis=(-2, -1)))) or 1.0
    distances, trends = {}, {}
    for k, p in preds.items():
        if not len(p.points):
            continue
        d = np.stack([np.asarray(p.distance(X[s]), dtype=np.float64) for s in scales])
        distances[k] = d
        trends[k] = _ladder.approach(scales, d, size=size, rng=g)
    best = _ladder.closest_approached(trends)
    lawfits: dict = {}
    theta_trends: dict = {}
    ref_name = None
    if stratum.reached is not True:
        notes.append("laws not fitted: the endpoints do not reach M_%d as s → 0 (%s)" % (rank, stratum.answer))
    elif reference is None:
        notes.append("laws not fitted: no solution-set reference at this depth")
    else:
        ref_name, draws, ref_stats, iid = reference
        T_ref = law_statistics(np.asarray(draws), ref_stats, preds, gibbs)
        for s in scales:
            # a tilt of the reference has no mass outside its window: endpoints there are not scored
            inside = np.linalg.norm(X[s], axis=(-2, -1)) <= radius
            if inside.sum() < 2:
                notes.append(f"laws not fitted at s={s:g}: fewer than 2 endpoints inside the window ‖X‖_F <= {radius:g}")
                lawfits = {}
                break
            if not inside.all():
                notes.append(f"s={s:g}: {int((~inside).sum())} endpoints outside the reference window "
                             f"‖X‖_F <= {radius:g} are left out of the laws")
            T_end = {k: v[inside] for k, v in law_statistics(X[s], _subset(stats[s], keep), preds, gibbs).items()}
            lawfits[s] = _laws.compare_laws(T_end, T_ref, iid=bool(iid))
        for stat in T_ref:
            th = [lawfits[s].fits[stat].theta for s in scales]
            ci = [lawfits[s].fits[stat].theta_ci for s in scales]
            theta_trends[stat] = _laws.theta_trend(scales, th, ci=ci)
    return DepthBias(depth, int(rank), scales, int(keep.sum()), stratum, gap, preds, distances, trends, best,
                     lawfits, theta_trends, ref_name, tuple(notes))


class _subset:
    """The statistics of the kept runs (attribute access, as MatrixStatistics)."""

    def __init__(self, st: Any, keep: np.ndarray):
        self._st, self._keep = st, keep

    def __getattr__(self, name: str) -> Any:
        return np.asarray(getattr(self._st, name))[: self._keep.size][self._keep]


def bias_dataset(bias: dict, resolution: dict | None = None) -> Any:
    """``results.nc`` group ``bias``: the arrays behind the verdict's stratum, point and law lines.

    Dims ``depth``, ``scale`` (largest first), ``predictor``, ``statistic``, ``point``, ``row``, ``col``.
    Variables: ``ratio_median`` (depth, scale: median σ_{r+1}/σ_1 over all runs), ``stratum_slope`` and
    ``stratum_reached`` (depth; 1 / 0 / -1 = undetermined), ``nuclear_gap`` (depth, scale),
    ``distance_median`` (depth, predictor, scale), ``approach_slope`` (depth, predictor), ``points``
    (depth, predictor, point, row, col; NaN-padded), ``theta`` and ``delta_aic`` (depth, statistic, scale);
    attributes ``stratum_answer_<tag>`` and ``best_<tag>`` per depth. The same numbers as ``verdict.json``.
    """
    import xarray as xr

    depths = list(bias)
    if not depths:
        return xr.Dataset()
    b0 = bias[depths[0]]
    scales = list(b0.scales)
    preds = list(dict.fromkeys(k for b in bias.values() for k in b.predictions))
    stats_ = list(dict.fromkeys(k for b in bias.values() for lc in b.laws.values() for k in lc.fits))
    m, n = np.asarray(next(iter(b0.predictions.values())).points).shape[-2:] if b0.predictions else (0, 0)
    kmax = max([len(p.points) for b in bias.values() for p in b.predictions.values()] + [1])
    D, P, S, K = len(depths), len(preds), len(scales), kmax
    nan = np.nan
    ratio = np.full((D, S), nan)
    slope = np.full(D, nan)
    reached = np.full(D, -1, dtype=np.int8)
    gap = np.full((D, S), nan)
    dist = np.full((D, P, S), nan)
    aslope = np.full((D, P), nan)
    pts = np.full((D, P, K, m, n), nan)
    theta = np.full((D, len(stats_), S), nan)
    daic = np.full((D, len(stats_), S), nan)
    attrs: dict[str, Any] = {}
    for i, d in enumerate(depths):
        b = bias[d]
        tag = "Ninf" if d == math.inf else f"N{int(d)}"
        allr = [t for _, t in b.stratum.groups.values()]
        if allr:
            ratio[i] = np.nanmedian(np.array([t.median for t in allr]), axis=0)
        slope[i] = b.stratum.slope
        reached[i] = {True: 1, False: 0}.get(b.stratum.reached, -1)
        gap[i] = b.nuclear_gap
        for j, k in enumerate(preds):
            if k in b.approach:
                dist[i, j] = b.approach[k].median
                aslope[i, j] = b.approach[k].slope
            if k in b.predictions and len(b.predictions[k].points):
                q = np.asarray(b.predictions[k].points, dtype=np.float64)
                pts[i, j, : len(q)] = q
        for c, s_ in enumerate(b.scales):
            lc = b.laws.get(s_)
            if lc is None:
                continue
            for j, k in enumerate(stats_):
                f = lc.fits.get(k)
                if f is not None:
                    theta[i, j, c] = f.theta
                    daic[i, j, c] = nan if f.delta_aic is None else f.delta_aic
        attrs[f"stratum_answer_{tag}"] = b.stratum.answer
        attrs[f"best_{tag}"] = b.best or "none"
        chk = (resolution or {}).get(d)
        if chk is not None:
            attrs[f"resolution_factor_{tag}"] = chk.factor
    depth_coord = np.array([np.inf if d == math.inf else float(d) for d in depths])
    return xr.Dataset(
        {"ratio_median": (("depth", "scale"), ratio), "stratum_slope": (("depth",), slope),
         "stratum_reached": (("depth",), reached), "nuclear_gap": (("depth", "scale"), gap),
         "distance_median": (("depth", "predictor", "scale"), dist),
         "approach_slope": (("depth", "predictor"), aslope),
         "points": (("depth", "predictor", "point", "row", "col"), pts),
         "theta": (("depth", "statistic", "scale"), theta), "delta_aic": (("depth", "statistic", "scale"), daic)},
        coords={"depth": depth_coord, "scale": np.asarray(scales), "predictor": np.asarray(preds, dtype=str),
                "statistic": np.asarray(stats_, dtype=str)},
        attrs=attrs)
