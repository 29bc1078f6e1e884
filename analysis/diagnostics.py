"""ArviZ export and MCMC diagnostics. The ONLY module of the package that imports arviz.

Supports ArviZ 0.23 (``arviz.InferenceData``) and ArviZ 1.x (``xarray.DataTree``). The data are built
as an ``xarray.DataTree`` in both cases (xarray >= 2024.10 has it); :func:`to_arviz` hands ArviZ the
object its version expects. ESS and R-hat of single arrays come from the package's one wrapper,
:mod:`samplers.diagnostics`.

Nothing here computes a statistic: the arrays come from :func:`analysis.statistics.compute_statistics`
run once by the runner with the experiment's stratum (``volume_rank``) and tolerance (``rtol``), so
``results.nc``, the figures, the tests and ``tests.json`` hold the same numbers. Both are recorded as
attributes (``volume_rank`` = r or ``"numerical"``, ``rtol``) of every group.

Layout of ``results.nc`` (:func:`results_tree`)::

    /                      attrs: experiment, seed, volume_rank, rtol, versions
    /constant_data         the task: values, mask (row, col), ground_truth when known
    /endpoints             flow endpoints, dims (depth, run[, row, col | k]): X, X0, the statistics,
                           kept, status, loss, t, seeds and every other per-run field of Endpoints
    /references/<name>/posterior      the statistics of the draws, dims (depth, chain, draw[, k | entry]);
                                      X holds the entries that vary (coordinate "entry" = "X[i,j]")
    /references/<name>/sample_stats   lp; MCMC also acceptance_rate, step_size (depth, chain, draw)
                                      and failures (depth, chain, failure)

One reference is one InferenceData (0.23) / DataTree (1.x) with ``depth`` as a dimension:
``load(path, reference="solution_set")``; ``arviz.summary``, ``plot_trace``, ``plot_ess`` and ``rhat``
work on it without warnings. Variables that are constant in some depth slice (e.g. the numerical rank
on the rank-1 stratum, observed entries) are left out of ``posterior`` (their names and values are
the attribute ``constant_variables``), since R-hat and ESS are undefined for them.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, fields
from typing import Any, Mapping

import numpy as np
import xarray as xr

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

import dlnvolume as dv
from samplers.diagnostics import arviz_major

from .statistics import MatrixStatistics

__all__ = [
    "reference_tree",
    "endpoints_dataset",
    "results_tree",
    "to_arviz",
    "select_reference",
    "arrays",
    "stratum_attrs",
    "save",
    "load",
    "summary",
    "Summary",
    "DiagnosticWarning",
    "plot_trace",
    "plot_rank",
    "plot_ess",
    "RHAT_MAX",
    "ESS_MIN",
    "ARVIZ_MAJOR",
]

RHAT_MAX = 1.01
ESS_MIN = 400.0
ARVIZ_MAJOR = arviz_major()
ENGINE = "h5netcdf"


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


def stratum_attrs(volume_rank: int | None, rtol: float) -> dict[str, Any]:
    """The attributes naming the stratum and tolerance every statistic was computed with."""
    return {"volume_rank": "numerical" if volume_rank is None else int(volume_rank), "rtol": float(rtol)}


def _depth_coord(depths: list[float]) -> np.ndarray:
    return np.asarray([float(d) for d in depths], dtype=np.float64)


def _scalar_stats(stats: list[MatrixStatistics]) -> dict[str, np.ndarray]:
    """name -> stacked array (depth, ...) of every scalar statistic present at every depth."""
    names = [k for k in stats[0].scalars() if all(k in s.scalars() for s in stats)]
    return {k: np.stack([np.asarray(s.scalars()[k], dtype=np.float64) for s in stats]) for k in names}


def _varies(a: np.ndarray, sample_axes: tuple[int, ...]) -> np.ndarray:
    """Boolean over the axes after the sample axes: True where ``a`` varies in EVERY depth slice.

    Variation at round-off level (range <= 1e-10 · max(1, max|a|), e.g. ``det X`` or ``σ_2`` on the
    rank-1 hyperbola) counts as constant: R-hat, ESS and density plots of round-off noise mean nothing.
    """
    ptp = np.ptp(a, axis=sample_axes)  # (depth, *rest)
    scale = np.maximum(1.0, np.max(np.abs(a), axis=sample_axes))
    return np.all(ptp > 1e-10 * scale, axis=0)


# extras of a SampleSet that are not per chain or per draw (their values are in the summary)
SUMMARY_ONLY = ("piece_labels", "piece_mass", "piece_mass_se")


def reference_tree(
    samples: Mapping[float, Any],
    stats: Mapping[float, MatrixStatistics],
    *,
    exact: bool,
    volume_rank: int | None,
    rtol: float,
    attrs: Mapping[str, Any] | None = None,
    summaries: Mapping[float, Mapping[str, Any]] | None = None,
) -> xr.DataTree:
    """``posterior`` and ``sample_stats`` of one reference at several depths (dimension ``depth``).

    ``summaries``: depth -> the reference diagnostics computed once by the runner
    (:meth:`analysis.runner.SampleSet.summary`); stored as JSON, keyed by depth tag (``"N2"``, ``"Ninf"``),
    in ``sample_stats.attrs["reference_diagnostics"]``.

    Parameters
    ----------
    samples : depth -> object with ``draws (chain, draw, m, n)``, ``log_density``, ``accept_prob``,
        ``step_size`` (chain,), ``failures`` (kind -> (chain,)), ``target``, ``method``; all depths
        with the same number of chains and draws
    stats : depth -> :class:`MatrixStatistics` of those draws (computed once by the caller)
    exact : independent exact draws (``sample_stats`` holds ``lp`` only: acceptance is 1 by construction)
    volume_rank, rtol : the stratum and tolerance the statistics were computed with (attributes)
    """
    depths = list(samples)
    draws = np.stack([np.asarray(samples[d].draws, dtype=np.float64) for d in depths])
    if draws.ndim != 5:
        raise dv.errors.ShapeError(f"draws have shape {draws.shape[1:]}; expected (chain, draw, m, n) at every depth")
    _, C, D, m, n = draws.shape
    coords: dict[str, Any] = {"depth": _depth_coord(depths), "chain": np.arange(C), "draw": np.arange(D)}
    dims = ("depth", "chain", "draw")
    post: dict[str, Any] = {}
    constant: dict[str, Any] = {}
    for name, arr in _scalar_stats([stats[d] for d in depths]).items():
        if bool(_varies(arr, (1, 2))):
            post[name] = (dims, arr)
        else:
            constant[name] = float(np.median(arr)) if np.ptp(arr) <= 1e-10 * max(1.0, float(np.max(np.abs(arr)))) \
                else "constant in some depth"
    sigma = np.stack([np.asarray(stats[d].singular_values, dtype=np.float64) for d in depths])
    keep_k = _varies(sigma, (1, 2))
    if keep_k.any():
        post["sigma"] = (dims + ("k",), sigma[..., keep_k])
        coords["k"] = np.flatnonzero(keep_k) + 1
    flat = draws.reshape(len(depths), C, D, m * n)
    keep_e = _varies(flat, (1, 2))
    entries = [f"X[{i},{j}]" for i in range(m) for j in range(n)]
    if keep_e.any():
        post["X"] = (dims + ("entry",), flat[..., keep_e])
        coords["entry"] = np.asarray([e for e, k in zip(entries, keep_e) if k])
    if not keep_e.all():
        constant["X"] = ", ".join(e for e, k in zip(entries, keep_e) if not k)
    common = {**stratum_attrs(volume_rank, rtol), **{k: _attr(v) for k, v in (attrs or {}).items()}}
    first = samples[depths[0]]
    target = dict(getattr(first, "target", {}) or {})
    common.update({
        "method": _attr(getattr(first, "method", None)),
        "measure": _attr(target.get("measure")),
        "target_rank": _attr(target.get("rank")),
        "beta": _attr(target.get("beta")),
        "confinement": _attr(str(target.get("confinement"))),
        "exact": int(bool(exact)),
        "dlnvolume_version": dv.__version__,
    })
    posterior = xr.Dataset(post, coords={k: v for k, v in coords.items()},
                           attrs={**common, "constant_variables": json.dumps(constant)})
    lp = np.stack([np.asarray(samples[d].log_density, dtype=np.float64) for d in depths])
    ss: dict[str, Any] = {"lp": (dims, lp)}
    ss_coords = {"depth": coords["depth"], "chain": coords["chain"], "draw": coords["draw"]}
    if not exact:
        ss["acceptance_rate"] = (dims, np.stack([np.asarray(samples[d].accept_prob, dtype=np.float64)
                                                 for d in depths]))
        step = np.stack([np.asarray(samples[d].step_size, dtype=np.float64).reshape(C) for d in depths])
        ss["step_size"] = (dims, np.broadcast_to(step[:, :, None], (len(depths), C, D)).copy())
        kinds = sorted({k for d in depths for k in (getattr(samples[d], "failures", {}) or {})})
        if kinds:
            fail = np.zeros((len(depths), C, len(kinds)), dtype=np.int64)
            for i, d in enumerate(depths):
                for j, k in enumerate(kinds):
                    v = (samples[d].failures or {}).get(k)
                    if v is not None:
                        fail[i, :, j] = np.asarray(v, dtype=np.int64).reshape(C)
            ss["failures"] = (("depth", "chain", "failure"), fail)
            ss_coords["failure"] = np.asarray(kinds)
        # numeric fields a sampler adds later (weights per draw, per-chain R-hat, ...): per draw or per chain
        for k in sorted(set.intersection(*(set(getattr(samples[d], "extras", {}) or {}) for d in depths))):
            if k in SUMMARY_ONLY or any(np.asarray(samples[d].extras[k]).dtype.kind not in "biuf" for d in depths):
                continue  # per-piece values live in the summary (attrs), not on the chain/draw grid
            vals = [np.asarray(samples[d].extras[k], dtype=np.float64) for d in depths]
            if all(v.shape == (C, D) for v in vals):
                ss[k] = (dims, np.stack(vals))
            elif all(v.shape == (C,) for v in vals):
                ss[k] = (("depth", "chain"), np.stack(vals))
    ss_attrs = dict(common)
    if summaries:
        ss_attrs["reference_diagnostics"] = json.dumps(
            {("Ninf" if d == math.inf else f"N{int(d)}"): dict(summaries[d]) for d in depths if d in summaries})
    sample_stats = xr.Dataset(ss, coords=ss_coords, attrs=ss_attrs)
    return xr.DataTree.from_dict({"posterior": posterior, "sample_stats": sample_stats})


def endpoints_dataset(
    endpoints: Mapping[float, Any],
    stats: Mapping[float, MatrixStatistics],
    keep: Mapping[float, np.ndarray],
    *,
    volume_rank: int | None,
    rtol: float,
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Flow endpoints at several depths (dims ``depth, run``) with the statistics the tests used.

    Every per-run array field of the Endpoints objects (shape ``(runs,)``) is stored too, so fields
    added to ``Endpoints`` later appear without a change here.
    """
    depths = list(endpoints)
    eps = [endpoints[d] for d in depths]
    X = np.stack([np.asarray(e.X, dtype=np.float64) for e in eps])
    _, R, m, n = X.shape
    coords = {"depth": _depth_coord(depths), "run": np.arange(R), "row": np.arange(m), "col": np.arange(n),
              "k": np.arange(1, min(m, n) + 1)}
    dims = ("depth", "run")
    v: dict[str, Any] = {"X": (dims + ("row", "col"), X),
                         "X0": (dims + ("row", "col"), np.stack([np.asarray(e.X0, dtype=np.float64) for e in eps])),
                         "sigma": (dims + ("k",), np.stack([stats[d].singular_values for d in depths])),
                         "kept": (dims, np.stack([np.asarray(keep[d]).astype(np.int8) for d in depths])),
                         "status": (dims, np.stack([np.asarray(e.status).astype(str) for e in eps])),
                         "seeds": (dims, np.stack([np.asarray(e.seeds).astype(np.uint64).astype(str) for e in eps]))}
    for name, arr in _scalar_stats([stats[d] for d in depths]).items():
        v[name] = (dims, arr)
    skip = set(v) | {"X", "X0", "seeds", "status"}
    names = [f.name for f in fields(eps[0])] if hasattr(eps[0], "__dataclass_fields__") else list(vars(eps[0]))
    for name in names:
        if name in skip:
            continue
        arrs = [np.asarray(getattr(e, name, None)) for e in eps]
        if all(a.ndim == 1 and a.shape == (R,) and a.dtype.kind in "biuf" for a in arrs):
            v[name] = (dims, np.stack(arrs))
    first = eps[0]
    return xr.Dataset(v, coords=coords, attrs={
        **stratum_attrs(volume_rank, rtol),
        "flow_method": _attr(getattr(first, "method", None)),
        "init_scale": _attr(getattr(first, "init_scale", None)),
        "task_name": _attr(getattr(first, "task_name", None)),
        **{k: _attr(x) for k, x in (attrs or {}).items()},
    })


def task_dataset(task: Any) -> xr.Dataset:
    """The task as ``constant_data``: values, mask (0/1), ground_truth when known."""
    m, n = np.asarray(task.values).shape
    cd = {"values": (("row", "col"), np.asarray(task.values, dtype=np.float64)),
          "mask": (("row", "col"), np.asarray(task.mask).astype(np.int8))}
    if getattr(task, "ground_truth", None) is not None:
        cd["ground_truth"] = (("row", "col"), np.asarray(task.ground_truth, dtype=np.float64))
    return xr.Dataset(cd, coords={"row": np.arange(m), "col": np.arange(n)},
                      attrs={"task_name": str(getattr(task, "name", "custom"))})


def results_tree(references: Mapping[str, xr.DataTree], endpoints: xr.Dataset | None, task: Any | None,
                 attrs: Mapping[str, Any] | None = None, bias: xr.Dataset | None = None) -> xr.DataTree:
    """The whole of ``results.nc`` (layout in the module docstring; ``bias``: :func:`analysis.bias.bias_dataset`)."""
    d: dict[str, Any] = {"/": xr.Dataset(attrs={k: _attr(v) for k, v in (attrs or {}).items()})}
    if bias is not None and len(bias.data_vars):
        d["bias"] = bias
    if task is not None:
        d["constant_data"] = task_dataset(task)
    if endpoints is not None:
        d["endpoints"] = endpoints
    for name, tree in references.items():
        for g in tree.children:
            d[f"references/{name}/{g}"] = tree[g].to_dataset()
    return xr.DataTree.from_dict(d)


def to_arviz(tree: xr.DataTree) -> Any:
    """The object ArviZ's functions take: ``InferenceData`` (0.x) or the ``DataTree`` itself (1.x).

    ``tree`` has the groups as children (``posterior``, ``sample_stats``, ...).
    """
    if ARVIZ_MAJOR >= 1:
        return tree
    groups = {g: tree[g].to_dataset() for g in tree.children}
    return az.InferenceData(**groups)


def select_reference(tree: xr.DataTree, name: str) -> Any:
    """One reference of a results tree as an ArviZ object, with ``endpoints`` and ``constant_data`` groups."""
    if "references" not in tree.children or name not in tree["references"].children:
        have = list(tree["references"].children) if "references" in tree.children else []
        raise dv.errors.InvalidArgumentError(f"reference={name!r}: not in the results; available: {have}")
    d = {g: tree[f"references/{name}/{g}"].to_dataset() for g in tree[f"references/{name}"].children}
    for g in ("endpoints", "constant_data"):
        if g in tree.children:
            d[g] = tree[g].to_dataset()
    return to_arviz(xr.DataTree.from_dict(d))


def save(tree: xr.DataTree, path: Any) -> None:
    """Write NetCDF-4 (h5netcdf) atomically: temporary file in the same folder, then ``os.replace``.

    On failure a previous file at ``path`` is intact and :class:`dlnvolume.parallel.AtomicWriteError`
    (an ``OSError`` naming ``path``) is raised.
    """
    from dlnvolume.parallel import atomic_write

    atomic_write(path, lambda tmp: tree.to_netcdf(str(tmp), engine=ENGINE), suffix=".nc")


def load(path: Any, reference: str | None = None) -> Any:
    """Read ``results.nc``: the whole ``xarray.DataTree``, or one reference as an ArviZ object
    (InferenceData with ArviZ 0.x, DataTree with 1.x) when ``reference`` is given."""
    with xr.open_datatree(str(path), engine=ENGINE) as t:
        tree = t.load()
    return tree if reference is None else select_reference(tree, reference)


def arrays(tree: xr.DataTree) -> dict[str, np.ndarray]:
    """Every variable of every group, keyed ``"<group path>/<variable>"`` (for comparisons of runs)."""
    out = {}
    for node in tree.subtree:
        for v in node.ds.data_vars:
            out[f"{node.path}/{v}"] = node.ds[v].values
    return out


class DiagnosticWarning(UserWarning):
    """R-hat above :data:`RHAT_MAX` or ESS below :data:`ESS_MIN`."""


@dataclass(frozen=True)
class Summary:
    """``table``: the ``arviz.summary`` DataFrame (R-hat, bulk/tail ESS, MCSE); ``problems``: one line each."""

    table: Any
    problems: tuple[str, ...]


def summary(obj: Any, *, group: str = "posterior", var_names: list[str] | None = None,
            coords: Mapping[str, Any] | None = None, warn: bool = True) -> Summary:
    """``arviz.summary`` of the scalar variables (not ``X``, ``sigma``) with R-hat, bulk/tail ESS, MCSE.

    Emits :class:`DiagnosticWarning` (and lists it in ``problems``) for every row with
    R-hat > 1.01 or bulk/tail ESS < 400 (Vehtari et al. 2021 recommendations).
    """
    ds = obj[group] if ARVIZ_MAJOR >= 1 else getattr(obj, group)
    if var_names is None:
        var_names = [v for v in ds.data_vars if set(ds[v].dims) <= {"depth", "chain", "draw"}]
    kw: dict[str, Any] = {"group": group, "var_names": var_names, "kind": "all"}
    if coords:
        kw["coords"] = dict(coords)
    table = az.summary(obj, **kw)
    problems = []
    for name, row in table.iterrows():
        rhat, eb, et = row.get("r_hat"), row.get("ess_bulk"), row.get("ess_tail")
        rhat, eb, et = (None if x is None else float(x) for x in (rhat, eb, et))
        if rhat is not None and np.isfinite(rhat) and rhat > RHAT_MAX:
            problems.append(f"{group}:{name}: r_hat {rhat:.3f} > {RHAT_MAX}")
        for lab, val in (("ess_bulk", eb), ("ess_tail", et)):
            if val is not None and np.isfinite(val) and val < ESS_MIN:
                problems.append(f"{group}:{name}: {lab} {val:.0f} < {ESS_MIN:.0f}")
    if warn:
        for p in problems:
            warnings.warn(p, DiagnosticWarning, stacklevel=2)
    return Summary(table, tuple(problems))


def _figure(result: Any) -> Any:
    if ARVIZ_MAJOR >= 1:  # arviz_plots PlotCollection
        return result.viz["figure"].item()
    fig = np.asarray(result).reshape(-1)[0].figure
    fig.tight_layout()
    return fig


def _plot(fn_name: str, obj: Any, var_names: list[str], coords: Mapping[str, Any] | None, **kw: Any) -> Any:
    kw = {"var_names": var_names, **kw}
    if coords:
        kw["coords"] = {k: list(np.atleast_1d(v)) for k, v in coords.items()}
    if ARVIZ_MAJOR >= 1:
        kw["backend"] = "matplotlib"
    with warnings.catch_warnings():
        # arviz 0.23 calls a matplotlib >= 3.11 deprecated helper internally; not ours to fix
        warnings.filterwarnings("ignore", message=".*alias_mapping to normalize_kwargs.*")
        return _figure(getattr(az, fn_name)(obj, **kw))


def plot_trace(obj: Any, var_names: list[str], *, coords: Mapping[str, Any] | None = None) -> Any:
    """``arviz.plot_trace`` (matplotlib); returns the Figure. ``coords`` selects e.g. one depth."""
    return _plot("plot_trace", obj, var_names, coords, **({} if ARVIZ_MAJOR >= 1 else {"compact": False}))


def plot_rank(obj: Any, var_names: list[str], *, coords: Mapping[str, Any] | None = None) -> Any:
    """``arviz.plot_rank`` (rank histograms or rank ECDFs per chain); returns the Figure."""
    return _plot("plot_rank", obj, var_names, coords)


def plot_ess(obj: Any, var_names: list[str], *, coords: Mapping[str, Any] | None = None) -> Any:
    """``arviz.plot_ess`` (local ESS); returns the Figure."""
    return _plot("plot_ess", obj, var_names, coords)
