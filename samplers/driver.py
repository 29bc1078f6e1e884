"""The one driver loop: storage, warm-up with step-size adaptation, thinning, batching (STYLE.md §2).

Kernels are objects with ``init(X0, rng) -> state``, ``step(state, rng) -> (state, StepInfo)``,
``matrix(state) -> X``, ``with_step_size(state, h) -> state`` and the attributes ``name`` and
``adaptive``. Chains are independent work items: chain ``i`` uses only
``np.random.default_rng(seeds[i])`` with ``seeds = dlnvolume.parallel.spawn_seeds(rng, n_chains)``, so
the draws do not depend on the batch size, the executor or the number of workers.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import os
import time
from typing import Any, Callable

import numpy as np

from dlnvolume.validation import check_int
from dlnvolume.errors import InvalidArgumentError, ShapeError
from dlnvolume.batching import part, tick
from dlnvolume.parallel import check_executor, make_batches, run_batches, spawn_seeds

from .adaptation import DualAveraging
from .chains import Chains
from .targets import GibbsTarget

__all__ = ["sample", "run_chains", "run_chain", "METHODS"]

METHODS = ("rmala", "emcee", "smc", "smc_factor")  # the Gibbs-target methods of samplers.registry.REGISTRY
FAILURE_KINDS = ("projection", "reverse_check", "divergent", "outside")


def run_chain(
    kernel: Any,
    X0: np.ndarray | None,
    n_draws: int,
    warmup: int,
    thin: int,
    seed: int,
) -> dict[str, np.ndarray]:
    """Run one chain; returns arrays for one row of :class:`Chains`."""
    t_start = time.perf_counter()
    rng = np.random.default_rng(int(seed))
    if X0 is None:
        X0 = kernel.default_initial(rng=rng)
    state = kernel.init(np.asarray(X0, dtype=np.float64), rng)
    n_eval = 1
    adapt = getattr(kernel, "adaptive", False) and warmup > 0
    da = DualAveraging.start(state.step_size, getattr(kernel, "target_accept", 0.57)) if adapt else None
    total = max(warmup + n_draws, 1)
    for it in range(warmup):
        if it % 16 == 0:
            tick(it / total)
        state, info = kernel.step(state, rng)
        n_eval += info.n_evaluations
        if da is not None:
            da = da.update(info.accept_prob)
            state = kernel.with_step_size(state, da.step_size)
    if da is not None:
        state = kernel.with_step_size(state, da.final_step_size)
    X = kernel.matrix(state)
    record = getattr(kernel, "record_log_density", None)
    draws = np.empty((n_draws,) + X.shape)
    logd = np.empty(n_draws)
    acc = np.empty(n_draws)
    failures = {k: 0 for k in FAILURE_KINDS}
    for i in range(n_draws):
        if i % 16 == 0:
            tick((warmup + i) / total)
        a = 0.0
        for _ in range(thin):
            state, info = kernel.step(state, rng)
            n_eval += info.n_evaluations
            a += info.accept_prob
            for k, v in info.failures.items():
                failures[k] = failures.get(k, 0) + int(v)
        draws[i] = kernel.matrix(state)
        logd[i] = info.log_density if record is None else record(state)
        acc[i] = min(max(a / thin, 0.0), 1.0)
    out = {
        "draws": draws,
        "log_density": logd,
        "accept_prob": acc,
        "step_size": np.array(state.step_size, dtype=np.float64),
        "n_evaluations": np.array(n_eval, dtype=np.int64),
        "elapsed": np.array(time.perf_counter() - t_start),
    }
    for k, v in failures.items():
        out["failures_" + k] = np.array(v, dtype=np.int64)
    return out


def _run_batch(payload: dict[str, Any]) -> dict[str, np.ndarray]:
    """Picklable batch function for :func:`dlnvolume.parallel.run_batches`: stacks its chains."""
    kernel = payload["kernel"]
    rows = []
    k = len(payload["seeds"])
    for j, (seed, X0) in enumerate(zip(payload["seeds"], payload["initial"])):
        with part(j / k, (j + 1) / k):
            rows.append(run_chain(kernel, X0, payload["n_draws"], payload["warmup"], payload["thin"], seed))
    out = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    out["chain_seeds"] = np.array(payload["seeds"], dtype=np.uint64)
    return out


def _digest(arr: Any) -> str | None:
    """sha256 (16 hex digits) of an array's dtype, shape and bytes; ``None`` for ``None``."""
    if arr is None:
        return None
    a = np.ascontiguousarray(arr)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()[:16]


def checkpoint_meta(
    kernel: Any, target: dict[str, Any], n_draws: int, warmup: int, thin: int, seeds: np.ndarray,
    initial: Any, kernel_meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The description fingerprinted in a chain checkpoint folder (see :func:`run_chains`)."""
    return {
        "kind": "samplers.run_chains",
        "target": {k: str(v) for k, v in sorted(dict(target).items())},
        "method": kernel.name,
        "n_draws": n_draws,
        "warmup": warmup,
        "thin": thin,
        "seeds": [int(s) for s in np.asarray(seeds, dtype=np.uint64)],
        "initial": _digest(initial),
        "kernel": {k: repr(v) for k, v in sorted((kernel_meta or {}).items())},
    }


def tqdm_progress(desc: str) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback for :func:`dlnvolume.parallel.run_batches` drawing a tqdm
    bar (created on the first call, closed when ``done == total``) with elapsed time and time left.

    It takes partial progress (``done`` a float: the fractions running batches report through
    :func:`dlnvolume.batching.tick`), so the bar and the time left move inside long batches.
    """
    bar: list[Any] = []

    def report(done: float, total: int) -> None:
        if not bar:
            from tqdm.auto import tqdm

            bar.append(tqdm(total=total, initial=done, desc=desc, leave=False,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.4g}/{total_fmt} [{elapsed}<{remaining}]"))
        else:
            bar[0].update(done - bar[0].n)
        if done >= total:
            bar.pop().close()  # a later call (another pass over the batches) opens a new bar

    report.partial = True  # type: ignore[attr-defined]
    return report


def run_chains(
    kernel: Any,
    n_draws: int,
    *,
    n_chains: int,
    warmup: int,
    thin: int,
    rng: Any,
    executor: Any,
    progress: bool,
    target: dict[str, Any],
    initial: Any = None,
    workers: int | None = None,
    batch_size: int | None = None,
    seeds: np.ndarray | None = None,
    shape: tuple[int, int] | None = None,
    checkpoint: str | os.PathLike | None = None,
    kernel_meta: dict[str, Any] | None = None,
) -> Chains:
    """Run ``n_chains`` independent chains of ``kernel`` in batches and assemble :class:`Chains`.

    With ``checkpoint`` (a folder), each finished batch of chains is written atomically by
    :func:`dlnvolume.parallel.run_batches` together with its chain seeds; the folder is stamped
    with a fingerprint of :func:`checkpoint_meta` (target, method, ``n_draws``, ``warmup``,
    ``thin``, all seeds, the initial matrices and ``kernel_meta``), so a rerun with the same
    arguments loads finished batches, and a folder of another run is refused. A batch file whose
    seeds differ from the batch's (another ``batch_size``) is recomputed. Draws are bit-identical
    with or without checkpoint.
    """
    n_draws = check_int(n_draws, "n_draws", minimum=1)
    n_chains = check_int(n_chains, "n_chains", minimum=1)
    warmup = check_int(warmup, "warmup", minimum=0)
    thin = check_int(thin, "thin", minimum=1)
    if workers is not None:
        workers = check_int(workers, "workers", minimum=1)
    if not isinstance(progress, (bool, np.bool_)):
        raise InvalidArgumentError(f"progress={progress!r}; expected True or False")
    check_executor(executor)
    if seeds is None:
        seeds = spawn_seeds(rng, n_chains)
    if initial is None:
        inits: list[Any] = [None] * n_chains
    else:
        try:
            arr = np.asarray(initial, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ShapeError(f"initial could not be converted to a float array: {exc}") from None
        if arr.ndim == 2:
            arr = np.broadcast_to(arr, (n_chains,) + arr.shape)
        if arr.ndim != 3 or arr.shape[0] != n_chains or (shape is not None and arr.shape[1:] != tuple(shape)):
            mn = "m, n" if shape is None else f"{shape[0]}, {shape[1]}"
            raise ShapeError(
                f"initial has shape {np.shape(initial)}; expected ({mn}) or (n_chains={n_chains}, {mn})"
            )
        if not np.all(np.isfinite(arr)):
            raise InvalidArgumentError("initial has NaN or infinite entries; expected finite matrices")
        inits = list(arr)
    bs = batch_size if batch_size is not None else 1
    bs = check_int(bs, "batch_size", minimum=1)
    batches = [
        {"kernel": kernel, "n_draws": n_draws, "warmup": warmup, "thin": thin,
         "seeds": [int(seeds[i]) for i in idx], "initial": [inits[i] for i in idx]}
        for idx in make_batches(n_chains, bs)
    ]
    meta = None
    if checkpoint is not None:
        meta = checkpoint_meta(kernel, target, n_draws, warmup, thin, seeds,
                               None if initial is None else np.asarray(inits, dtype=np.float64), kernel_meta)

    def same_chains(i: int, arrays: dict[str, np.ndarray]) -> bool:
        got = arrays.get("chain_seeds")
        return got is not None and np.array_equal(got, np.array(batches[i]["seeds"], dtype=np.uint64))

    results = run_batches(_run_batch, batches, executor=executor, workers=workers,
                          progress=tqdm_progress(f"{kernel.name} chains") if progress else None,
                          desc=f"{kernel.name} chains", checkpoint=checkpoint, meta=meta, validate=same_chains)
    cat = {k: np.concatenate([r[k] for r in results]) for k in results[0]}
    failures = {k[len("failures_"):]: cat[k] for k in cat if k.startswith("failures_")}
    return Chains(
        draws=cat["draws"],
        log_density=cat["log_density"],
        accept_prob=cat["accept_prob"],
        step_size=cat["step_size"],
        failures=failures,
        target=dict(target),
        method=kernel.name,
        seeds=np.asarray(seeds, dtype=np.uint64),
        warmup=warmup,
        thin=thin,
        n_evaluations=cat["n_evaluations"],
        elapsed=cat["elapsed"],
    )


def sample(
    target: GibbsTarget,
    method: str = "rmala",
    n_draws: int = 1000,
    *,
    n_chains: int = 4,
    warmup: int | None = None,
    thin: int = 1,
    rng: Any = None,
    executor: Any = None,
    progress: bool = True,
    initial: Any = None,
    step_size: float | None = None,
    n_walkers: int | None = None,
    workers: int | None = None,
    batch_size: int | None = None,
    local_step: bool = True,
    coordinates: str = "theta",
    checkpoint: str | os.PathLike | None = None,
    **options: Any,
) -> Chains:
    """Sample a :class:`GibbsTarget` with ``method="rmala"``, ``"emcee"``, ``"smc"`` or ``"smc_factor"``.

    Parameters
    ----------
    target : GibbsTarget
    method : {"rmala", "emcee", "smc", "smc_factor"}
        ``"rmala"``: Riemannian MALA in ``X`` (full-rank targets only, :mod:`samplers.rmala`);
        ``"emcee"``: one emcee ensemble per chain on ``θ`` (:mod:`samplers.ensemble`);
        ``"smc"``: one tempered-SMC replicate of ``n_draws`` particles per chain, batched MALA on ``θ``,
        any stratum (:func:`samplers.smc.sample_gibbs`; ``options`` ``n_mcmc``, ``final_mcmc``,
        ``target_ess``, ``kernel``); ``"smc_factor"``: ``"smc"`` with ``kernel="factor"`` at every rank (the
        rank-r factor chart with an exact Gibbs step for ``Z`` given ``A``). See :mod:`samplers.registry` for
        what each method supports.
    n_draws : int >= 1
        Draws kept per chain (after thinning).
    n_chains : int >= 1
    warmup : int >= 0, default ``n_draws * thin // 2``
        Steps discarded first (rmala adapts its step size by dual averaging to acceptance 0.57 here).
    thin : int >= 1
    rng : None, int, SeedSequence or Generator
        Root of the per-chain seeds (``spawn_seeds``).
    executor : concurrent.futures.Executor, optional
        Runs batches of chains; default: local processes (``workers``), in-process for one batch.
    progress : bool
    initial : (m, n) or (n_chains, m, n) array, optional
        Starting matrices; default :meth:`GibbsTarget.default_initial` with each chain's rng.
    step_size : float, optional
        rmala initial step size (default 0.05; adapted during warm-up).
    n_walkers : int, optional
        emcee walkers per ensemble (default ``max(2 ndim + 2, 16)``).
    workers, batch_size : int, optional
        Processes for the default executor and chains per batch (default 1).
    coordinates : {"theta", "matrix"}, default "theta"
        emcee: sample ``θ = (u, A, B)`` (any rank) or the matrix entries (full rank only); see
        :mod:`samplers.ensemble`.
    local_step : bool, default True
        rmala: scale the step by ``c(X) = (σ_min/σ_max)^{2/N}`` (a position-dependent preconditioner
        ``h c(X) Ā_X``, exact under Metropolis–Hastings) so the Euler step stays stable near the
        rank-deficient set (see :mod:`samplers.rmala`).
    checkpoint : str or PathLike, optional
        Folder for one ``batch-XXXXX.npz`` per finished batch of chains, written atomically
        (temporary file + ``os.replace``) with the batch's chain seeds. A rerun with the same
        arguments after an interruption loads the finished batches and runs only the others; the
        draws are bit-identical to an uninterrupted run, for any ``batch_size``, ``workers`` or
        executor. The folder is stamped with a fingerprint of the target (including the task's
        values and mask), ``method``, ``n_draws``, ``warmup``, ``thin``, the seeds, ``initial`` and the
        kernel options; a folder written for different values raises ``InvalidArgumentError``.

    Returns
    -------
    Chains
        With :func:`samplers.diagnostics.summarize` in ``diagnostics`` (R-hat, bulk/tail ESS of every
        entry, ``converged``); one :class:`~samplers.diagnostics.ConvergenceWarning` line if not converged.
    """
    from .diagnostics import attach_diagnostics

    if not isinstance(target, GibbsTarget):
        raise InvalidArgumentError(
            f"target has type {type(target).__name__}; expected a samplers.GibbsTarget "
            "(use SolutionSetSampler.sample for solution sets)"
        )
    if method not in METHODS:
        raise InvalidArgumentError(f"method={method!r}; expected one of {', '.join(map(repr, METHODS))}")
    n_draws = check_int(n_draws, "n_draws", minimum=1)
    thin = check_int(thin, "thin", minimum=1)
    if warmup is None:
        warmup = n_draws * thin // 2
    if method in ("smc", "smc_factor"):
        from .registry import REGISTRY

        spec = REGISTRY[method]
        bad = sorted(set(options) - set(spec.options))
        if bad:
            raise InvalidArgumentError(f"options {bad} are not accepted by method={method!r}; accepted: {spec.options}")
        return spec.run(target, n_draws, n_chains=n_chains, rng=rng, executor=executor, workers=workers,
                        batch_size=batch_size, progress=progress, **options)
    if options:
        raise InvalidArgumentError(f"options {sorted(options)} are not accepted by method={method!r}")
    if method == "rmala":
        from .rmala import RMALAKernel

        ok = step_size is None or (isinstance(step_size, numbers.Real) and not isinstance(step_size, (bool, np.bool_))
                                   and math.isfinite(float(step_size)) and float(step_size) > 0)
        if not ok:  # float('a') raised a bare ValueError before
            raise InvalidArgumentError(f"step_size={step_size!r}; expected a finite number > 0")
        h0 = 0.05 if step_size is None else float(step_size)
        if not isinstance(local_step, (bool, np.bool_)):
            raise InvalidArgumentError(f"local_step={local_step!r}; expected True or False")
        kernel: Any = _GibbsKernel(RMALAKernel(target, h0, bool(local_step)), target)
    else:
        from .ensemble import EmceeKernel

        kernel = _GibbsKernel(EmceeKernel(target, n_walkers, coordinates), target)
    kernel_meta = {"task": target.task.digest(), "step_size": step_size, "local_step": local_step,
                   "n_walkers": n_walkers, "coordinates": coordinates}
    chains = run_chains(kernel, n_draws, n_chains=n_chains, warmup=warmup, thin=thin, rng=rng, executor=executor,
                        progress=progress, target=target.describe(), initial=initial, workers=workers,
                        batch_size=batch_size, shape=target.shape, checkpoint=checkpoint,
                        kernel_meta=kernel_meta if checkpoint is not None else None)
    free = ~target.task.mask if not np.all(target.task.mask) else None
    return attach_diagnostics(chains, free=free)


class _GibbsKernel:
    """Adds ``default_initial`` (from the target) to a kernel; forwards everything else."""

    def __init__(self, kernel: Any, target: GibbsTarget):
        self.kernel = kernel
        self.target = target
        self.name = kernel.name
        self.adaptive = kernel.adaptive
        self.target_accept = getattr(kernel, "target_accept", 0.57)

    def default_initial(self, *, rng: Any) -> np.ndarray:
        return self.target.default_initial(rng=rng)

    def init(self, X0: np.ndarray, rng: Any) -> Any:
        return self.kernel.init(X0, rng)

    def step(self, state: Any, rng: Any) -> Any:
        return self.kernel.step(state, rng)

    def matrix(self, state: Any) -> np.ndarray:
        return self.kernel.matrix(state)

    def with_step_size(self, state: Any, h: float) -> Any:
        return self.kernel.with_step_size(state, h)

    def __getattr__(self, name: str) -> Any:
        if name == "record_log_density" and hasattr(self.__dict__.get("kernel"), name):
            return getattr(self.kernel, name)
        raise AttributeError(name)
