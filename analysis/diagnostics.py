"""ArviZ export and MCMC diagnostics. The ONLY module of the package that imports arviz.

Targets arviz 0.x ``InferenceData`` (0.23 here). A move to arviz 1.x (``xarray.DataTree``) should
only touch this file.

Layout of the InferenceData built by :func:`to_inference_data` (one depth, one sample set):

* ``posterior``: scalar statistics with dims ``(chain, draw)`` and the draws ``X`` with dims
  ``(chain, draw, row, col)``, singular values ``sigma`` with dims ``(chain, draw, k)``;
* ``sample_stats``: ``lp`` (log density), ``acceptance_rate``, ``step_size`` (per chain, broadcast
  over draws), ``failures_<kind>`` (per chain);
* ``constant_data``: the task (``values``, ``mask``, ``ground_truth`` when known);
* ``endpoints``: flow endpoints ``X``/``X0`` with dims ``(run, row, col)``, their statistics with
  dim ``run``, ``status``, ``loss``, ``t``, ``seeds``;
* attrs: depth, beta, rank, confinement, measure, method, seeds, package version.

:func:`merge` combines several of them (one per depth / reference) into one object whose groups are
suffixed ``_<label>``; the first one also fills the unsuffixed groups.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az
import xarray as xr

import dlnvolume as dv
from dlnvolume._validation import check_matrix

from .statistics import compute_statistics

__all__ = [
    "to_inference_data",
    "merge",
    "summary",
    "DiagnosticWarning",
    "save",
    "load",
    "plot_trace",
    "plot_rank",
    "RHAT_MAX",
    "ESS_MIN",
]

RHAT_MAX = 1.01
ESS_MIN = 400.0


def _attr(value: Any) -> Any:
    """netCDF attributes must be str/number/array; depth inf is stored as the string 'inf'."""
    if value is None:
        return "none"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, float, str, np.integer, np.floating)):
        return value
    if isinstance(value, np.ndarray):
        return ",".join(str(v) for v in value.reshape(-1)) if value.dtype.kind in "OUu" else value
    return json.dumps(value, default=str)


def _stat_vars(X: np.ndarray, depth: float, dims: tuple[str, ...], ground_truth: Any, rtol: float | None) -> dict:
    st = compute_statistics(X, depth, rtol=rtol, ground_truth=ground_truth)
    out = {name: (dims, np.asarray(v, dtype=np.float64)) for name, v in st.scalars().items()}
    out["sigma"] = (dims + ("k",), st.singular_values)
    return out


def to_inference_data(
    chains: Any | None = None,
    endpoints: Any | None = None,
    *,
    depth: float | None = None,
    task: Any | None = None,
    rtol: float | None = None,
    attrs: Mapping[str, Any] | None = None,
    sample_stats: bool = True,
) -> az.InferenceData:
    """Chains (samplers.Chains or any object with the same fields) + Endpoints → InferenceData.

    Parameters
    ----------
    chains : object with ``draws (chain, draw, m, n)``, ``log_density``, ``accept_prob``,
        ``step_size``, ``failures``, ``target`` (dict), ``method``, ``seeds``, ``warmup``, ``thin``
    endpoints : object with ``X (run, m, n)``, ``X0``, ``seeds``, ``status``, ``loss``, ``t``,
        ``depth``, ``method``, ``init_scale``, ``task_name``
    depth : depth at which the log-volume density statistic is evaluated (default: the chains'
        target depth, else the endpoints' depth)
    task : dlnvolume.CompletionTask, stored in ``constant_data``
    attrs : extra attributes (e.g. the experiment seed)
    sample_stats : bool
        Write the ``sample_stats`` group (False for exact i.i.d. draws, whose acceptance is 1).
    """
    if chains is None and endpoints is None:
        raise dv.errors.InvalidArgumentError("give chains=, endpoints= or both")
    target = dict(getattr(chains, "target", {}) or {}) if chains is not None else {}
    if depth is None:
        depth = target.get("depth", getattr(endpoints, "depth", None))
    if depth is None:
        raise dv.errors.InvalidArgumentError("depth= is needed (not found on chains.target or endpoints)")
    gt = getattr(task, "ground_truth", None) if task is not None else None
    groups: dict[str, xr.Dataset] = {}
    all_attrs: dict[str, Any] = {"depth": depth, "dlnvolume_version": dv.__version__, "arviz_version": az.__version__}
    if chains is not None:
        draws = check_matrix(chains.draws, name="chains.draws")
        if draws.ndim != 4:
            raise dv.errors.ShapeError(f"chains.draws has shape {draws.shape}; expected (chain, draw, m, n)")
        C, D = draws.shape[:2]
        coords = {"chain": np.arange(C), "draw": np.arange(D)}
        pv = _stat_vars(draws, depth, ("chain", "draw"), gt, rtol)
        pv["X"] = (("chain", "draw", "row", "col"), draws)
        groups["posterior"] = xr.Dataset(pv, coords=coords)
        ss = {
            "lp": (("chain", "draw"), np.asarray(chains.log_density, dtype=np.float64)),
            "acceptance_rate": (("chain", "draw"), np.asarray(chains.accept_prob, dtype=np.float64)),
            "step_size": (("chain", "draw"),
                          np.broadcast_to(np.asarray(chains.step_size, dtype=np.float64).reshape(C, 1), (C, D)).copy()),
        }
        for kind, counts in (getattr(chains, "failures", {}) or {}).items():
            ss[f"failures_{kind}"] = (("chain",), np.asarray(counts, dtype=np.int64).reshape(C))
        if sample_stats:
            groups["sample_stats"] = xr.Dataset(ss, coords=coords)
        all_attrs.update({
            "measure": target.get("measure"),
            "target_depth": target.get("depth"),
            "rank": target.get("rank"),
            "beta": target.get("beta"),
            "normalized": target.get("normalized"),
            "confinement": str(target.get("confinement")),
            "method": getattr(chains, "method", None),
            "chain_seeds": np.asarray(getattr(chains, "seeds", np.zeros(C)), dtype=np.uint64).astype(str),
            "warmup": getattr(chains, "warmup", None),
            "thin": getattr(chains, "thin", None),
        })
    if endpoints is not None:
        X = check_matrix(endpoints.X, name="endpoints.X")
        if X.ndim != 3:
            raise dv.errors.ShapeError(f"endpoints.X has shape {X.shape}; expected (run, m, n)")
        ev = _stat_vars(X, depth, ("run",), gt, rtol)
        ev["X"] = (("run", "row", "col"), X)
        ev["X0"] = (("run", "row", "col"), np.asarray(endpoints.X0, dtype=np.float64))
        ev["status"] = (("run",), np.asarray(endpoints.status).astype(str))
        ev["loss"] = (("run",), np.asarray(endpoints.loss, dtype=np.float64))
        ev["t"] = (("run",), np.asarray(endpoints.t, dtype=np.float64))
        ev["seeds"] = (("run",), np.asarray(endpoints.seeds).astype(np.uint64).astype(str))
        groups["endpoints"] = xr.Dataset(ev, coords={"run": np.arange(len(X))}, attrs={
            "flow_depth": _attr(getattr(endpoints, "depth", None)),
            "flow_method": _attr(getattr(endpoints, "method", None)),
            "init_scale": _attr(getattr(endpoints, "init_scale", None)),
            "task_name": _attr(getattr(endpoints, "task_name", None)),
        })
    if task is not None:
        cd = {"values": (("row", "col"), np.asarray(task.values)), "mask": (("row", "col"), np.asarray(task.mask).astype(np.int8))}
        if gt is not None:
            cd["ground_truth"] = (("row", "col"), np.asarray(gt))
        groups["constant_data"] = xr.Dataset(cd, attrs={"task_name": getattr(task, "name", "custom")})
    all_attrs.update(attrs or {})
    idata = az.InferenceData(**groups)
    clean = {k: _attr(v) for k, v in all_attrs.items()}
    for name in idata.groups():
        idata[name].attrs.update(clean)
    return idata


def merge(idatas: Mapping[str, az.InferenceData]) -> az.InferenceData:
    """One InferenceData holding several: groups ``<group>_<label>``.

    ``constant_data`` is stored once (unsuffixed, from the first object that has it); the first
    label's ``posterior`` and ``sample_stats`` are also stored unsuffixed so that arviz functions
    work on the merged object without a ``group=`` argument.
    """
    groups: dict[str, xr.Dataset] = {}
    first = True
    for label, idata in idatas.items():
        for g in idata.groups():
            ds = idata[g]
            if g == "constant_data":
                groups.setdefault(g, ds)
                continue
            groups[f"{g}_{label}"] = ds
            if first and g in ("posterior", "sample_stats"):
                groups[g] = ds
        if "posterior" in idata.groups():
            first = False
    return az.InferenceData(**groups)


def save(idata: az.InferenceData, path: Any) -> None:
    """Write NetCDF (``arviz.InferenceData.to_netcdf``; the netCDF4 engine when installed, which is
    ~4x faster than h5netcdf for many groups).

    Atomic: written to a temporary file in the same folder, then ``os.replace``; on failure a
    previous file at ``path`` is intact and :class:`dlnvolume.parallel.AtomicWriteError` (an
    ``OSError`` naming ``path``) is raised.
    """
    from dlnvolume.parallel import atomic_write

    try:
        import netCDF4  # noqa: F401

        engine = "netcdf4"
    except ImportError:  # pragma: no cover - depends on the environment
        engine = "h5netcdf"
    atomic_write(path, lambda tmp: idata.to_netcdf(str(tmp), engine=engine), suffix=".nc")


def load(path: Any) -> az.InferenceData:
    """Read NetCDF (``arviz.from_netcdf``)."""
    return az.from_netcdf(str(path))


class DiagnosticWarning(UserWarning):
    """R-hat above :data:`RHAT_MAX` or ESS below :data:`ESS_MIN`."""


@dataclass(frozen=True)
class Summary:
    """``table``: the ``arviz.summary`` DataFrame (R-hat, bulk/tail ESS, MCSE); ``problems``: one line each."""

    table: Any
    problems: tuple[str, ...]


def summary(idata: az.InferenceData, *, group: str = "posterior", var_names: list[str] | None = None,
            warn: bool = True) -> Summary:
    """``arviz.summary`` of scalar variables (no ``X``, ``sigma``) with R-hat, bulk/tail ESS, MCSE.

    Emits :class:`DiagnosticWarning` (and lists it in ``problems``) for every variable with
    R-hat > 1.01 or bulk/tail ESS < 400 (Vehtari et al. 2021 recommendations).
    """
    ds = idata[group]
    if var_names is None:
        var_names = [v for v in ds.data_vars if ds[v].dims == ("chain", "draw")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        table = az.summary(idata, group=group, var_names=var_names, kind="all")
    problems = []
    for name, row in table.iterrows():
        rhat, eb, et = row.get("r_hat"), row.get("ess_bulk"), row.get("ess_tail")
        if rhat is not None and np.isfinite(rhat) and rhat > RHAT_MAX:
            problems.append(f"{group}:{name}: r_hat {rhat:.3f} > {RHAT_MAX}")
        for lab, val in (("ess_bulk", eb), ("ess_tail", et)):
            if val is not None and np.isfinite(val) and val < ESS_MIN:
                problems.append(f"{group}:{name}: {lab} {val:.0f} < {ESS_MIN:.0f}")
    if warn:
        for p in problems:
            warnings.warn(p, DiagnosticWarning, stacklevel=2)
    return Summary(table, tuple(problems))


def plot_trace(idata: az.InferenceData, var_names: list[str], *, group: str = "posterior") -> Any:
    """``arviz.plot_trace`` (matplotlib backend); returns the Figure."""
    axes = az.plot_trace(idata[group], var_names=var_names, compact=False)
    return np.asarray(axes).reshape(-1)[0].figure


def plot_rank(idata: az.InferenceData, var_names: list[str], *, group: str = "posterior") -> Any:
    """``arviz.plot_rank`` (rank histograms per chain); returns the Figure."""
    axes = az.plot_rank(idata[group], var_names=var_names)
    return np.asarray(axes).reshape(-1)[0].figure
