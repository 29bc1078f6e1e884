"""Many seeded small-initialization runs in batches, on any executor, with checkpoints (:func:`endpoints`)."""

from __future__ import annotations

import functools
import hashlib
import inspect
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import parallel
from ..validation import short_repr, check_depth, check_int, check_positive
from ..completion import CompletionTask
from ..errors import InvalidArgumentError, InvalidDepthError
from ._checks import _check_bool, _check_task
from . import compiled
from .end_to_end import end_to_end
from .factor import factor_descent
from .initialization import INIT_LAWS, INITS, _init_factors, _widths, balanced_from_law, draw_x0
from .results import Endpoints, x0_summary

__all__ = ["endpoints", "METHODS"]

#: the modules whose code decides an end-to-end endpoint (their digest is part of a checkpoint's fingerprint)
_INTEGRATOR_SOURCES = ("compiled.py", "svd2.py", "_kernels.py", "_svd.py", "end_to_end.py")


@functools.lru_cache(maxsize=1)
def integrator_digest() -> str:
    """SHA-256 (16 hex digits) of the integrator's source files: a checkpoint written by other integrator code
    is refused on resume instead of being mixed with this code's endpoints."""
    h = hashlib.sha256()
    for name in _INTEGRATOR_SOURCES:
        h.update((Path(__file__).parent / name).read_bytes())
    return h.hexdigest()[:16]

METHODS = ("end_to_end", "factor")


def _run_endpoint_batch(job: dict[str, Any]) -> dict[str, np.ndarray]:
    """Worker: one batch of seeded runs (module level, picklable)."""
    task: CompletionTask = job["task"]
    depth = job["depth"]
    seeds = job["seeds"]
    kw = dict(job["flow_kwargs"])
    kw.setdefault("n_log", 3)  # trajectories are not returned by endpoints
    kw.setdefault("log_every", 1 << 40)
    init_depth = job["init_depth"]
    law = job.get("init_law", "gaussian_factors")
    dims = _widths(task, init_depth, job["widths"])
    check_err = np.full(len(seeds), np.nan)
    if job["method"] == "end_to_end":
        X0 = draw_x0(law, dims, job["init_scale"], seeds)
        res = end_to_end(task, depth, X0, **kw)
        if job.get("check_stride", 0):
            check_err = _accuracy_check(task, depth, kw, res, np.asarray(seeds, dtype=np.uint64) % job["check_stride"] == 0)
    else:
        init = kw.pop("init", "gaussian")
        if law != "gaussian_factors" or init == "balanced":
            # X0 from the law (for "gaussian_factors": the product of Gaussian factors), then exactly
            # balanced factors of it
            factors = balanced_from_law(law, dims, job["init_scale"], seeds)
        else:
            factors = _init_factors(init, dims, job["init_scale"], None, seeds)
        res = factor_descent(task, depth, initial_factors=factors, widths=job["widths"], **kw)
    return {
        "index": np.asarray(job["index"], dtype=np.int64),
        "seeds": np.asarray(seeds, dtype=np.uint64),
        "X": res.X,
        "X0": res.X0,
        "status": res.status.astype(str),
        "loss": res.loss,
        "t": res.t,
        "n_steps": res.n_steps,
        "crossing_times": res.trajectory.crossing_times,
        "min_sigma_ratio": res.min_sigma_ratio if res.min_sigma_ratio is not None else np.full(len(seeds), np.nan),
        "integrator": np.array([res.integrator] * len(seeds), dtype=str),
        "check_err": check_err,
        "unresolved": (np.asarray(res.unresolved, dtype=bool) if getattr(res, "unresolved", None) is not None
                       else np.zeros(len(seeds), dtype=bool)),
    }


#: the accuracy self-check (issue 23): the runs whose seed is divisible by CHECK_STRIDE are integrated again
#: at ``rtol / TIGHTEN`` with the same stopping rule; a run "moved" when its endpoint differs from the tighter
#: one by more than ACC_TOL (max-entry, relative to the largest entry). When more than ACC_FRACTION of the
#: checked runs moved, the whole call is redone at ``rtol / TIGHTEN`` (at most MAX_ROUNDS times); the runs
#: that still moved are flagged (:attr:`Endpoints.flagged`).
CHECK_STRIDE = 8
TIGHTEN = 100.0
ACC_TOL = 1e-3
ACC_FRACTION = 0.02
MAX_ROUNDS = 1
#: step budget of a run at ``rtol / TIGHTEN`` relative to ``max_steps`` (the check's runs and a redone call)
STEP_BUDGET = 4


def _accuracy_check(task: CompletionTask, depth: float, kw: dict[str, Any], res: Any, chk: np.ndarray) -> np.ndarray:
    """Relative endpoint change of the converged runs among ``chk`` when integrated again at ``rtol / TIGHTEN``
    with the same stopping rule (``inf`` when the tighter run ends with another status, e.g. it does not
    converge within 4× the step budget; NaN for runs not checked). Endpoints, not states at equal times, are
    compared: a plateau's length may move with the tolerance while the point the flow ends at does not. A run
    that did not converge has no endpoint to check (two states on the way, e.g. on a plateau at N = 20, differ
    by construction): it is not checked, and cannot send the whole call back to ``rtol / TIGHTEN``. Nor is a run
    flagged ``unresolved`` (docs/flows.md §3.4): it is dropped whatever the check says, and two integrations of
    a state float64 cannot hold differ at every tolerance (a 5×5 rank-2 task at N = 20, 200 runs whose converged
    ones were all unresolved: the check sent the call back to rtol 1e-8 with 4× the steps, 623 s of flows instead
    of 123 s, and 19 of its 19 checked runs still moved)."""
    out = np.full(chk.size, np.nan)
    rtol = float(kw.get("rtol", _E2E_DEFAULTS["rtol"]))
    max_steps = int(kw.get("max_steps", _E2E_DEFAULTS["max_steps"]))
    tight = {key: v for key, v in kw.items() if key not in ("rtol", "max_steps")}
    ok = chk & (np.asarray(res.status).astype(str) == "converged")
    if getattr(res, "unresolved", None) is not None:
        ok &= ~np.asarray(res.unresolved, dtype=bool)
    idx = np.flatnonzero(ok)
    if idx.size == 0:
        return out
    ref = end_to_end(task, depth, res.X0[idx], rtol=rtol / TIGHTEN, max_steps=STEP_BUDGET * max_steps, **tight)
    for j, i in enumerate(idx):
        if ref.status[j] != res.status[i] or not np.all(np.isfinite(res.X[i])):
            out[i] = np.inf
            continue
        scale = max(float(np.max(np.abs(ref.X[j]))), 1e-300)
        out[i] = float(np.max(np.abs(res.X[i] - ref.X[j]))) / scale
    return out


def endpoints(
    task: CompletionTask,
    depth: float,
    n_runs: int,
    init_scale: float,
    *,
    method: str = "end_to_end",
    rng: Any = None,
    executor: Any = None,
    workers: int | None = None,
    batch_size: int | None = None,
    progress: Any = True,
    checkpoint: str | os.PathLike | None = None,
    init_depth: int | None = None,
    widths: Sequence[int] | None = None,
    init_law: str = "gaussian_factors",
    check_accuracy: bool = True,
    **flow_kwargs: Any,
) -> Endpoints:
    """Endpoints of ``n_runs`` small-initialization runs, each with its own seed, run in batches.

    Run ``i`` gets ``seeds[i] = spawn_seeds(rng, n_runs)[i]`` and draws its initialization from
    ``np.random.default_rng(seeds[i])`` only, so the endpoints do not depend on ``batch_size``,
    ``workers`` or the executor, and the first ``k`` runs of a larger call equal a call with
    ``n_runs = k``.

    **Initialization law** (``init_law``, docs/flows.md "Initial laws"; the realized ``‖X0‖_F`` and
    ``σ_min/σ_max`` of every run are recorded in :attr:`Endpoints.x0_norm` and
    :attr:`Endpoints.x0_sigma_ratio`):

    * "gaussian_factors" (default, Arora et al. 2019): Gaussian factors as in :func:`factor_descent`'s
      ``init="gaussian"`` (entries ``N(0, (s^{1/N'}/√n)²)``, hidden widths ``widths``, default
      ``max(m, n)``), ``N' = init_depth`` (default: ``depth``; ``1`` when ``depth`` is inf, i.e. ``X0``
      with i.i.d. ``N(0, s²/n)`` entries). For ``method="end_to_end"`` ``X0`` is their product; for
      ``method="factor"`` the factors themselves are trained (or, with ``init="balanced"`` in
      ``flow_kwargs``, balanced factors of that same product). **The realized scale depends on the
      depth**: with ``s = 1e-3`` and ``N' = 20`` on 2×2 the median ``‖X0‖_F`` is ~6e-6 and
      ``σ_2/σ_1`` ~4e-7 (Lyapunov shrinkage of products of random matrices), not ``s√n = 1.4e-3``.
    * "gaussian_matrix": ``X0 = s·G/‖G‖_F``, ``G`` standard Gaussian: ``‖X0‖_F = s`` at every depth, so
      depths are compared at the same scale.
    * "orthogonal": ``X0 = s·Q_L Q_R`` (Haar semi-orthogonal): every singular value equals ``s``.

    With ``method="factor"`` the last two laws train exactly balanced factors of ``X0``
    (MATH.md §1.2).

    Parameters
    ----------
    task, depth : as in :func:`end_to_end` (``method="factor"`` needs a finite depth)
    n_runs : int >= 1
    init_scale : float > 0
        ``s`` of the initial law.
    method : {"end_to_end", "factor"}
    rng : None, int, SeedSequence or Generator
    executor : concurrent.futures.Executor, optional
        Any executor (e.g. a Dask ``client.get_executor()``); default a local process pool with
        ``workers`` processes (in-process for ``workers=1``).
    batch_size : int, optional
        Runs per batch; default ``ceil(n_runs / workers)`` capped at 2048 and at ``2.5e6 / (m·n)``
        (memory of the Runge–Kutta stages). Smaller batches checkpoint more often but cost more: a
        batch runs as long as its slowest run.
    progress : bool or callable ``progress(done, total)``
        Progress over batches: ``True`` a one-line counter on stderr (:func:`dlnvolume.batching.text_progress`),
        a callable to draw your own bar (e.g. ``samplers.driver.tqdm_progress``), ``False`` nothing.
    checkpoint : path, optional
        Folder of per-batch ``.npz`` files written atomically; a rerun with the same arguments (any
        ``n_runs``) reuses batches whose seeds match and recomputes the rest. A folder written by other
        arguments, or (``end_to_end``) by another version of the integrator's code
        (:func:`integrator_digest`), is refused with :class:`~dlnvolume.errors.InvalidArgumentError`.
    init_law : {"gaussian_factors", "gaussian_matrix", "orthogonal"}, default "gaussian_factors"
    check_accuracy : bool, default True
        ``method="end_to_end"``: the endpoints check their own accuracy. Every run whose seed is divisible
        by :data:`CHECK_STRIDE` (8; about one run in eight, chosen by seed so that the choice does not
        depend on batches or workers) is integrated again at ``rtol / 100`` with the same stopping rule;
        when more than 2 % of them moved by more than 1e-3 (max entry, relative to the largest entry),
        every run is redone at ``rtol / 100`` (once). :attr:`Endpoints.accuracy` records each
        round, :attr:`Endpoints.check_err` each checked run's change, and :attr:`Endpoints.flagged` the
        checked runs that still moved (the analysis drops them like runs that did not converge).
    **flow_kwargs
        Passed to :func:`end_to_end` (e.g. ``normalized``, ``t_max``, ``loss_tol``, ``rtol``,
        ``max_steps``) or :func:`factor_descent` (``init``, ``lr``, ``max_steps``, ``loss_tol``, ...).

    Returns
    -------
    Endpoints
        All runs, in seed order; runs that did not converge are kept with their status.

    Notes
    -----
    Performance: each worker process runs a vectorized batch; with several workers on few cores,
    limit BLAS threads (e.g. ``OPENBLAS_NUM_THREADS=1``), otherwise thread oversubscription can make
    the batched SVDs of large matrices many times slower.
    """
    task = _check_task(task)
    if not isinstance(method, str) or method not in METHODS:
        raise InvalidArgumentError(f"method={short_repr(method)}; expected one of {', '.join(map(repr, METHODS))}")
    normalized = flow_kwargs.get("normalized", True) if method == "end_to_end" else False
    if method == "end_to_end":
        N = check_depth(depth, normalized=_check_bool(normalized, "normalized"))
    else:
        N = check_depth(depth)
        if math.isinf(N):
            raise InvalidDepthError("depth=inf is not possible with method='factor'; expected a finite integer depth >= 1")
    n_runs = check_int(n_runs, "n_runs", minimum=1)
    init_scale = check_positive(init_scale, "init_scale")
    if init_depth is None:
        init_depth = 1 if math.isinf(N) else N
    init_depth = check_int(init_depth, "init_depth", minimum=1)
    if method == "factor" and init_depth != N:
        raise InvalidArgumentError(f"init_depth={init_depth} must equal depth={N} for method='factor'")
    _widths(task, init_depth, widths)  # validate
    if not isinstance(init_law, str) or init_law not in INIT_LAWS:
        raise InvalidArgumentError(f"init_law={short_repr(init_law)}; expected one of {', '.join(map(repr, INIT_LAWS))}")
    for bad in ("X0", "n_runs", "rng", "initial_factors", "widths"):
        if bad in flow_kwargs:
            raise InvalidArgumentError(f"{bad!r} cannot be passed through flow_kwargs of endpoints")
    flow_fn = end_to_end if method == "end_to_end" else factor_descent
    accepted = [p.name for p in inspect.signature(flow_fn).parameters.values()
                if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in ("n_runs", "rng", "X0", "initial_factors",
                                                                              "widths", "init_scale")]
    for key in flow_kwargs:
        if key not in accepted:
            raise InvalidArgumentError(
                f"flow_kwargs key {key!r} is not an option of {flow_fn.__name__} (method={method!r}); "
                f"expected some of {', '.join(accepted)}"
            )
    parallel.check_progress(progress)
    parallel.check_executor(executor)
    if method == "factor":
        init = flow_kwargs.get("init", "gaussian")
        if not isinstance(init, str) or init not in INITS:
            raise InvalidArgumentError(f"init={short_repr(init)}; expected one of {', '.join(map(repr, INITS))}")
    if workers is not None:
        workers = check_int(workers, "workers", minimum=1)
    n_workers = parallel.executor_workers(executor, workers)
    if batch_size is None:
        # One batch per worker: a batch costs about as much as its slowest run (the integrator's
        # per-step overhead does not shrink with the active set), so fewer, larger batches are faster
        # (1000 2×2 runs at depth 5: 7.3 s as one batch, 8.3 s as two, 14 s as four). Capped so a
        # batch's Runge–Kutta stages stay below ~200 MB and a checkpoint is written at least every
        # 2048 runs.
        m_, n_ = task.shape
        batch_size = max(1, min(math.ceil(n_runs / n_workers), 2048, 2_500_000 // (m_ * n_)))
    batch_size = check_int(batch_size, "batch_size", minimum=1)

    check_accuracy = _check_bool(check_accuracy, "check_accuracy") and method == "end_to_end"
    if method == "end_to_end":
        compiled.warm_up()  # compile once here (or load numba's cache), not once per worker process
    seeds = parallel.spawn_seeds(rng, n_runs)
    batches = parallel.make_batches(n_runs, batch_size)
    rtol0 = float(flow_kwargs.get("rtol", _E2E_DEFAULTS["rtol"])) if method == "end_to_end" else math.nan
    steps0 = int(flow_kwargs.get("max_steps", _E2E_DEFAULTS["max_steps"])) if method == "end_to_end" else 0
    history: list[dict[str, Any]] = []
    kw_round = dict(flow_kwargs)
    for rounds in range(MAX_ROUNDS + 1):
        if rounds:
            # the tighter tolerance with the step budget the check gave it: the same budget would turn
            # runs that need more steps at rtol/100 into "max_steps" (8×8 at N = 5: 16 of 200)
            kw_round["rtol"] = rtol0 / TIGHTEN ** rounds
            kw_round["max_steps"] = STEP_BUDGET ** rounds * steps0
        ckpt = None if checkpoint is None else (checkpoint if rounds == 0 else Path(checkpoint) / f"tightened-{rounds}")
        results = _run_all(task, N, seeds, batches, init_scale, method, init_depth, widths, init_law, kw_round,
                           CHECK_STRIDE if check_accuracy else 0, ckpt, executor, workers, progress,
                           f"flows N={N}" + (f" (rtol {kw_round['rtol']:g}, after the accuracy check)" if rounds else ""))
        err = np.concatenate([r["check_err"] for r in results])
        checked = ~np.isnan(err)
        n_moved = int(np.sum(err[checked] > ACC_TOL))
        history.append({"rtol": float(kw_round.get("rtol", rtol0)), "max_steps": int(kw_round.get("max_steps", steps0)),
                        "n_checked": int(checked.sum()), "n_moved": n_moved,
                        "max_err": float(np.max(err[checked])) if checked.any() else math.nan})
        if not check_accuracy or n_moved <= ACC_FRACTION * checked.sum():
            break
    accuracy = {"tol": ACC_TOL, "tighten": TIGHTEN, "check_stride": CHECK_STRIDE, "rounds": history} if check_accuracy else {}
    return _assemble(results, seeds, N, method, init_scale, task, normalized, flow_kwargs, init_law, accuracy)


_E2E_DEFAULTS = {p.name: p.default for p in inspect.signature(end_to_end).parameters.values()
                 if p.default is not inspect.Parameter.empty}


def _run_all(task, N, seeds, batches, init_scale, method, init_depth, widths, init_law, flow_kwargs, check_stride,
             checkpoint, executor, workers, progress, desc):
    """Every batch of one round (checkpointed), in batch order."""
    jobs = [
        {
            "task": task,
            "depth": N,
            "seeds": seeds[idx],
            "index": idx,
            "init_scale": init_scale,
            "method": method,
            "init_depth": init_depth,
            "widths": None if widths is None else list(widths),
            "init_law": init_law,
            "flow_kwargs": flow_kwargs,
            "check_stride": check_stride,
        }
        for idx in batches
    ]
    meta = {
        "kind": "flows.endpoints",
        "task": task.digest(),
        "depth": str(N),
        "method": method,
        "init_scale": init_scale,
        "init_depth": init_depth,
        "widths": widths,
        **({} if init_law == "gaussian_factors" else {"init_law": init_law}),  # old checkpoints stay valid
        "first_seed": int(seeds[0]),
        "flow_kwargs": sorted((k, repr(v)) for k, v in flow_kwargs.items()),
        **({"check_stride": check_stride} if check_stride else {}),
        **({"integrator": integrator_digest()} if method == "end_to_end" else {}),
    }
    kwargs = dict(executor=executor, workers=workers, progress=progress, desc=desc, meta=meta)
    results = parallel.run_batches(_run_endpoint_batch, jobs, checkpoint=checkpoint, **kwargs)
    if checkpoint is not None:
        stale = [
            i
            for i, (r, job) in enumerate(zip(results, jobs))
            if r["seeds"].shape != job["seeds"].shape or not np.array_equal(r["seeds"], job["seeds"])
        ]
        if stale:  # batches written by a run with another batch_size / n_runs: recompute them
            folder = Path(checkpoint)
            for i in stale:
                (folder / f"batch-{i:05d}.npz").unlink(missing_ok=True)
            results = parallel.run_batches(_run_endpoint_batch, jobs, checkpoint=checkpoint, **kwargs)
    return results


def _assemble(results, seeds, N, method, init_scale, task, normalized, flow_kwargs, init_law, accuracy) -> Endpoints:
    cat = lambda key: np.concatenate([r[key] for r in results])  # noqa: E731
    X0_all = cat("X0")
    x0_norm, x0_ratio = x0_summary(X0_all)
    ran = sorted({str(v) for r in results for v in r.get("integrator", np.array(["dopri5"]))})
    return Endpoints(
        X=cat("X"),
        X0=X0_all,
        seeds=seeds,
        status=cat("status").astype(str),
        loss=cat("loss"),
        t=cat("t"),
        depth=N,
        method=method,
        init_scale=init_scale,
        task_name=task.name,
        n_steps=cat("n_steps").astype(np.int64),
        normalized=bool(normalized),
        min_sigma_ratio=cat("min_sigma_ratio"),
        crossing_times=cat("crossing_times"),
        threshold=float(flow_kwargs.get("threshold", 0.5)),
        init_law=init_law,
        x0_norm=x0_norm,
        x0_sigma_ratio=x0_ratio,
        integrator="+".join(ran),
        check_err=cat("check_err"),
        unresolved=np.concatenate([np.asarray(r.get("unresolved", np.zeros(len(r["seeds"]), dtype=bool)), dtype=bool)
                                   for r in results]),  # checkpoints written before it existed: False
        accuracy=accuracy,
    )
