"""Run an :class:`~analysis.experiment.ExperimentConfig`: flows, references, statistics, tests, outputs.

Stages (each checkpointed under ``OUT/checkpoints`` so a killed run resumes):

1. flow endpoints per depth (``dlnvolume.flows.endpoints(..., checkpoint=...)``);
2. reference draws per reference and depth (exact inverse-CDF draws of the hyperbola laws of
   :mod:`samplers.reference`, through the vectorized :mod:`analysis.references`, or MCMC: :class:`samplers.SolutionSetSampler`, :func:`samplers.sample`);
3. statistics (:mod:`analysis.statistics`) and the three test families (:mod:`analysis.hypothesis`);
4. InferenceData (:mod:`analysis.diagnostics`), figures (:mod:`analysis.plots`), report.

Seeds: stage ``s``, item ``j`` uses ``SeedSequence(seed, spawn_key=(s, j))``; flows and chains get
their own children from ``dlnvolume.parallel.spawn_seeds`` inside the callee, so results do not
depend on workers or batching.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

import dlnvolume as dv
from dlnvolume.errors import ConfigError, DLNVolumeError, InvalidArgumentError
from dlnvolume.parallel import atomic_save_npz, atomic_write_text, load_npz
from samplers.driver import tqdm_progress
from samplers.solution_set import MEASURES as ON_SOLUTION_SET  # the measures that live on S ∩ M_r

from . import hypothesis as hyp
from .experiment import ExperimentConfig
from .statistics import MatrixStatistics, compute_statistics

__all__ = ["SampleSet", "ExperimentResult", "Comparison", "run_experiment", "prepare", "build_task", "depth_tag",
           "registry_method", "accepted_methods", "TimeLedger"]

STAGE_FLOWS, STAGE_REFS, STAGE_NULL, STAGE_TESTS, STAGE_BIAS = 1, 2, 3, 4, 5
#: runs of the smallest scale re-run at a 10× tighter tolerance by the resolution check (analysis.bias.Resolution)
RESOLUTION_RUNS = 6


def depth_tag(depth: float) -> str:
    return "Ninf" if depth == math.inf else f"N{int(depth)}"


def _key(*parts: Any) -> str:
    """Short fingerprint of what a checkpoint file depends on (a changed config never reuses it)."""
    import hashlib

    return hashlib.sha256(repr(parts).encode()).hexdigest()[:10]


def _batch_files(folder: Path) -> dict[str, tuple[int, int]]:
    """``{name: (size, mtime_ns)}`` of the ``batch-*.npz`` files in a checkpoint folder."""
    if not folder.is_dir():
        return {}
    out = {}
    for f in folder.glob("batch-*.npz"):
        st = f.stat()
        out[f.name] = (st.st_size, st.st_mtime_ns)
    return out


def _resumed(before: dict, folder: Path) -> tuple[int, int]:
    """(batches reused, batches in total): files that existed before the call and were not rewritten."""
    after = _batch_files(folder)
    reused = sum(1 for k, v in before.items() if after.get(k) == v)
    return reused, max(len(after), reused)


def _log_resumed(log: Callable[[str], None] | None, label: str, reused: int, total: int) -> None:
    """One line per stage item; "resumed 0/n" only when resuming (``log.resuming``, default True)."""
    if log is not None and (reused or getattr(log, "resuming", True)):
        log(f"{label}: resumed {reused}/{total} batches from checkpoints")


def _cpu_seconds() -> float:
    """CPU seconds of this process and of its finished children (the local worker pools are joined when
    their batches end, so their work is counted; a Dask cluster's is not)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class TimeLedger:
    """Time spent per stage across every session of a results folder (``OUT/checkpoints/time_spent.json``):
    ``{stage: {"wall_s", "cpu_s", "sessions"}}``. A session's time is added when its stage ends, also when
    it ends by Ctrl-C or an error, so a resumed run reports what the result cost, not what the last
    session did."""

    FILE = "time_spent.json"

    def __init__(self, folder: Path | None, record: bool = True):
        self.path = None if folder is None else Path(folder) / self.FILE
        self.record = record
        self.entries: dict[str, dict[str, float]] = {}
        if self.path is not None and self.path.is_file():
            try:
                self.entries = {k: {"wall_s": float(v["wall_s"]), "cpu_s": float(v["cpu_s"]),
                                    "sessions": int(v["sessions"])}
                                for k, v in json.loads(self.path.read_text(encoding="utf-8")).items()}
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                self.entries = {}  # unreadable (a foreign file): start over rather than fail the run

    @contextmanager
    def stage(self, key: str):
        w0, c0 = time.perf_counter(), _cpu_seconds()
        try:
            yield
        finally:
            if self.record:
                self._add(key, time.perf_counter() - w0, max(0.0, _cpu_seconds() - c0))

    def _add(self, key: str, wall: float, cpu: float) -> None:
        e = self.entries.setdefault(key, {"wall_s": 0.0, "cpu_s": 0.0, "sessions": 0})
        e["wall_s"] += wall
        e["cpu_s"] += cpu
        e["sessions"] += 1
        if self.path is not None:
            try:
                atomic_write_text(self.path, json.dumps(self.entries, indent=1))
            except OSError:  # bookkeeping: never the error a failed session reports
                pass


def _seed(seed: int, *key: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(seed, spawn_key=tuple(key))


def build_task(cfg: ExperimentConfig) -> dv.CompletionTask:
    """The task of the ``[task]`` table (:data:`analysis.tasks.TASK_KINDS`)."""
    from .tasks import build_task as _build

    return _build(cfg.task, cfg.seed)


#: the importance-sampling checks of solution-set SMC replicates (samplers.diagnostics.attach_diagnostics)
IMPORTANCE_CHECKS = ("pareto_k", "uncovered", "consistency_z", "missed")


@dataclass(frozen=True, eq=False)
class SampleSet:
    """Draws in the Chains layout (contracts.md); used for exact i.i.d. reference draws too.

    ``extras``: numeric fields of the sampler's result beyond the ones above (e.g. per-chain R-hat, ESS,
    ``converged``, weights, component masses once the samplers provide them), kept and checkpointed
    so the report and the verdict can surface them without a change here.
    """

    draws: np.ndarray
    log_density: np.ndarray
    accept_prob: np.ndarray
    step_size: np.ndarray
    failures: dict
    target: dict
    method: str
    seeds: np.ndarray
    warmup: int
    thin: int
    extras: dict = field(default_factory=dict)

    def save(self, path: Path) -> None:
        arrays = {k: np.asarray(getattr(self, k)) for k in ("draws", "log_density", "accept_prob", "step_size", "seeds")}
        for k, v in self.failures.items():
            arrays[f"failures__{k}"] = np.asarray(v)
        for k, v in self.extras.items():
            arrays[f"extras__{k}"] = np.asarray(v)
        arrays["meta"] = np.array(repr({"target": {k: str(v) for k, v in self.target.items()}, "method": self.method,
                                         "warmup": self.warmup, "thin": self.thin}))
        atomic_save_npz(path, **arrays)

    @classmethod
    def load(cls, path: Path, target: dict, method: str, warmup: int, thin: int) -> "SampleSet":
        d = load_npz(path)
        failures = {k.split("__", 1)[1]: v for k, v in d.items() if k.startswith("failures__")}
        extras = {k.split("__", 1)[1]: v for k, v in d.items() if k.startswith("extras__")}
        return cls(d["draws"], d["log_density"], d["accept_prob"], d["step_size"], failures, target, method,
                   d["seeds"], warmup, thin, extras)

    def summary(self) -> dict:
        """The reference diagnostics of this sample (``tests.json``, ``results.nc`` and the report show this one dict).

        ``converged``, ``rhat``, ``ess_bulk``, ``ess_tail`` (the sampler's :func:`samplers.diagnostics.summarize`,
        worst over its statistics), ``weight_ess`` (importance-weight Kish ESS per chain), ``pieces``
        (``{sign group: [mass, Monte Carlo s.e.]}`` across replicates), ``importance`` (the replicates' worst PSIS k̂,
        uncovered share and piece-share |z|, docs/samplers.md §4.2), ``dimension`` / ``nominal_dimension``
        of the sampled set, ``failures`` (totals over chains). ``None`` where the sampler does not provide it;
        exact draws are ``converged`` by construction.
        """
        e = self.extras

        def num(k: str, cast: Any = float) -> Any:
            return cast(np.asarray(e[k]).item()) if k in e and np.asarray(e[k]).size == 1 else None

        exact = self.method == "exact"
        pieces = None
        if "piece_labels" in e:
            pieces = {str(k): [float(m), float(s)] for k, m, s in
                      zip(np.asarray(e["piece_labels"]).ravel(), np.asarray(e["piece_mass"]).ravel(),
                          np.asarray(e["piece_mass_se"]).ravel())}
        w = np.asarray(e["weight_ess"], dtype=np.float64).ravel() if "weight_ess" in e else np.zeros(0)
        w = w[np.isfinite(w)]
        return {
            "method": self.method, "chains": int(self.draws.shape[0]), "draws": int(self.draws.shape[1]),
            "converged": True if exact else num("converged", bool),
            "rhat": num("rhat"), "ess_bulk": num("ess_bulk"), "ess_tail": num("ess_tail"),
            "weight_ess": [float(x) for x in w] if w.size else None,
            "pieces": pieces,
            "importance": ({k: num(f"worst_{k}") for k in IMPORTANCE_CHECKS} if f"worst_{IMPORTANCE_CHECKS[0]}" in e
                           else None),
            "dimension": num("dimension", int), "nominal_dimension": num("nominal_dimension", int),
            "failures": {str(k): int(np.sum(v)) for k, v in sorted(self.failures.items())},
        }

    @classmethod
    def from_chains(cls, ch: Any, nominal_dimension: int | None = None) -> "SampleSet":
        known = {"draws", "log_density", "accept_prob", "step_size", "failures", "target", "method", "seeds",
                 "warmup", "thin"}
        names = list(getattr(ch, "__dataclass_fields__", {}) or vars(ch))
        extras = {}
        for name in names:
            if name in known or name.startswith("_") or any(w in name for w in ("elapsed", "time", "seconds")):
                continue  # wall-clock fields would make two identical runs differ
            v = getattr(ch, name, None)
            if isinstance(v, (bool, int, float, np.ndarray, np.number, np.bool_)) and np.asarray(v).dtype.kind in "biuf":
                extras[name] = np.asarray(v)
        # samplers.Chains: the convergence summary (a property and a dict, not fields) and the piece masses
        diag = getattr(ch, "diagnostics", None)
        if isinstance(diag, dict) and diag:
            for k in ("rhat", "ess_bulk", "ess_tail"):
                if k in diag:
                    extras[k] = np.asarray(float(diag[k]))
            for k in IMPORTANCE_CHECKS:  # the sampler's worst replicate, as its convergence check saw it
                if k in diag:
                    extras[f"worst_{k}"] = np.asarray(float(diag[k]))
            extras["converged"] = np.asarray(bool(diag.get("converged", False)))
        masses = ch.piece_masses() if callable(getattr(ch, "piece_masses", None)) else {}
        if masses:
            labels = sorted(masses)
            extras["piece_labels"] = np.asarray(labels, dtype=str)
            extras["piece_mass"] = np.asarray([masses[k][0] for k in labels])
            extras["piece_mass_se"] = np.asarray([masses[k][1] for k in labels])
        if nominal_dimension is not None:
            extras["nominal_dimension"] = np.asarray(int(nominal_dimension))
        return cls(np.asarray(ch.draws), np.asarray(ch.log_density), np.asarray(ch.accept_prob),
                   np.asarray(ch.step_size), dict(ch.failures), dict(ch.target), str(ch.method),
                   np.asarray(ch.seeds), int(ch.warmup), int(ch.thin), extras)


@dataclass
class ExperimentResult:
    """Everything a report needs."""

    config: ExperimentConfig
    task: dv.CompletionTask
    endpoints: dict = field(default_factory=dict)          # depth -> Endpoints (the smallest scale of the ladder)
    ladder: dict = field(default_factory=dict)             # depth -> {scale: Endpoints}
    ladder_stats: dict = field(default_factory=dict)       # depth -> {scale: MatrixStatistics}
    resolution: dict = field(default_factory=dict)         # depth -> analysis.bias.Resolution
    bias: dict = field(default_factory=dict)               # depth -> analysis.bias.DepthBias
    endpoint_stats: dict = field(default_factory=dict)     # depth -> MatrixStatistics
    keep: dict = field(default_factory=dict)               # depth -> bool mask of kept runs
    samples: dict = field(default_factory=dict)            # (ref name, depth) -> SampleSet
    sample_stats: dict = field(default_factory=dict)       # (ref name, depth) -> MatrixStatistics
    exact: dict = field(default_factory=dict)              # (ref name, depth) -> HyperbolaReference
    null_log_volume: dict = field(default_factory=dict)    # depth -> (n,) array
    tests: dict = field(default_factory=dict)              # (family, ref name, depth) -> list[TestResult]
    percentiles: dict = field(default_factory=dict)        # (ref name, depth) -> VolumePercentileResult
    reference_diagnostics: dict = field(default_factory=dict)  # (ref name, depth) -> SampleSet.summary()
    timings: dict = field(default_factory=dict)            # stage -> wall seconds of this session
    time_spent: dict = field(default_factory=dict)         # stage -> TimeLedger entry, summed over sessions
    notes: list = field(default_factory=list)

    def comparisons(self) -> list["Comparison"]:
        """The tested pairs as typed records, in the order depth, reference (the null measure last)."""
        out = []
        for depth in self.config.depths:
            names = [r.name for r in self.config.references if (r.name, depth) in self.samples]
            if any(k == ("null", "euclidean", depth) for k in self.tests):
                names.append("euclidean")
            for name in names:
                tests = {fam: list(t) for (fam, n, d), t in self.tests.items() if n == name and d == depth}
                if not tests or depth not in self.endpoints:
                    continue
                out.append(Comparison(depth, name, self.endpoints[depth], self.endpoint_stats[depth],
                                      self.keep[depth], self.samples.get((name, depth)),
                                      self.sample_stats.get((name, depth)), tests,
                                      self.percentiles.get((name, depth))))
        return out


@dataclass(frozen=True, eq=False)
class Comparison:
    """Flow endpoints at one depth against one reference measure, with everything the tests used.

    ``samples``/``reference_stats`` are None for the Euclidean null measure (its log volume densities
    are ``ExperimentResult.null_log_volume[depth]``); ``tests`` maps a family ("distribution",
    "percentile", "null") to its results.
    """

    depth: float
    reference: str
    endpoints: Any
    endpoint_stats: MatrixStatistics
    keep: np.ndarray
    samples: SampleSet | None
    reference_stats: MatrixStatistics | None
    tests: dict
    percentiles: Any = None


def _volume_rank(cfg: ExperimentConfig) -> int | None:
    return None if cfg.volume_rank == "numerical" else int(cfg.volume_rank)


def _stats(X: np.ndarray, depth: float, cfg: ExperimentConfig, task: dv.CompletionTask) -> MatrixStatistics:
    return compute_statistics(X, depth, rtol=cfg.rtol, ground_truth=task.ground_truth, rank=_volume_rank(cfg))


def _window(radius: float, floor: float | None) -> Any:
    """The reference window: a Frobenius ball, times a singular-value floor when the config sets ``floor``."""
    import samplers

    ball = samplers.FrobeniusBall(radius)
    return ball if not floor else [ball, samplers.SingularValueFloor(floor)]


def _ground_truth_rank(task: dv.CompletionTask, rtol: float) -> int | None:
    """Numerical rank of the task's ground truth, ``None`` without one."""
    from dlnvolume import strata

    gt = getattr(task, "ground_truth", None)
    if gt is None:
        return None
    return int(strata.numerical_rank(np.asarray(gt, dtype=float), rtol))


def _ref_error(i: int, ref: Any, depth: float | None, exc: Exception) -> ConfigError:
    where = f" at depth {depth_tag(depth)}" if depth is not None else ""
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return ConfigError(f"config key 'references[{i}]' ({ref.name}){where}: {msg}")


def registry_method(measure: str, method: str) -> str:
    """The :data:`samplers.registry.REGISTRY` name that a reference's ``(measure, method)`` runs.

    The config alias ``"mcmc"`` for ``measure = "solution_set"`` or ``"gibbs_limit"`` is the registry's first
    (default) method for that measure; every other name is a registry name already (``"exact"`` is not a sampler).
    """
    from samplers import registry

    if method == "mcmc" and measure in ON_SOLUTION_SET:
        return registry.methods(measure)[0]
    return method


def accepted_methods(measure: str, full_rank: bool, exact: bool = False) -> tuple[str, ...]:
    """Config method names accepted for ``measure`` on the full-rank set or a lower stratum, from the registry
    (``"exact"`` first when the task kind has an exact reference, ``"mcmc"`` for solution sets)."""
    from samplers import registry

    names = tuple(k for k, v in registry.REGISTRY.items() if v.supports(measure, full_rank))
    alias = ("mcmc",) if measure in ON_SOLUTION_SET and names else ()
    return (("exact",) if exact else ()) + alias + names


def prepare(cfg: ExperimentConfig, task: dv.CompletionTask | None = None, *, check_flows: bool = True
            ) -> tuple[ExperimentConfig, dv.CompletionTask]:
    """Validate the whole configuration against its task before anything runs; fill in derived defaults.

    Checks the task, the stratum, ``[flows.options]`` (through the flows' own validation: one step of one run,
    unless ``check_flows=False``), every reference (method against measure and task, rank against the
    stratum, depths among the flow depths, the sampler or target at every depth, a window that contains
    solutions) and returns ``(config with windows and ranks filled in, task)``. Takes seconds; raises
    :class:`~dlnvolume.errors.ConfigError` (one line naming the key) on the first problem.
    """
    from dataclasses import replace

    import samplers
    from samplers import registry

    from .tasks import TASK_KINDS, default_radius

    if task is None:
        task = build_task(cfg)
    elif not isinstance(task, dv.CompletionTask):
        raise ConfigError(f"task= has type {type(task).__name__}; expected a dlnvolume.CompletionTask")
    m, n = task.shape
    kind = TASK_KINDS[cfg.task["kind"]]
    if cfg.volume_rank != "numerical" and not 1 <= int(cfg.volume_rank) <= min(m, n):
        raise ConfigError(f"config key 'statistics.volume_rank': {cfg.volume_rank} for a {m}x{n} task; expected "
                          f"'numerical' or 1..{min(m, n)}")
    obs_norm = float(np.linalg.norm(np.asarray(task.values)[np.asarray(task.mask)]))
    refs = []
    for i, r in enumerate(cfg.references):
        radius = r.radius if r.radius is not None else round(default_radius(task), 6)
        rank = r.rank if r.rank is not None else (1 if cfg.volume_rank == "numerical" else int(cfg.volume_rank))
        r = replace(r, radius=radius, rank=rank)
        refs.append(r)
        if r.method == "exact" and r.measure not in kind.exact_measures:
            have = (f"kind '{kind.name}' has exact references for {', '.join(kind.exact_measures)}"
                    if kind.exact_measures else f"kind '{kind.name}' has no exact reference")
            full = 1 <= rank <= min(m, n) and rank == min(m, n)
            other = accepted_methods(r.measure, full)
            raise ConfigError(f"config key 'references[{i}].method': 'exact' {r.measure!r} is not available: {have}; "
                              + (f"accepted: {', '.join(map(repr, other))}" if other else
                                 f"measure {r.measure!r} has no sampler in samplers.registry"))
        if not 1 <= rank <= min(m, n):
            raise ConfigError(f"config key 'references[{i}].rank': {rank} for a {m}x{n} task; expected 1..{min(m, n)}")
        if r.method != "exact":
            full = rank == min(m, n)
            name = registry_method(r.measure, r.method)
            spec = registry.REGISTRY.get(name)
            if spec is None or not spec.supports(r.measure, full):
                accepted = accepted_methods(r.measure, full, r.measure in kind.exact_measures)
                why = ("" if spec is None else f"; samplers.registry: {name!r} samples {'/'.join(spec.measures)} on "
                       f"{'the full-rank set only' if spec.strata == 'full_rank' else 'any stratum'}")
                raise ConfigError(
                    f"config key 'references[{i}].method': {r.method!r} cannot sample measure {r.measure!r} on rank "
                    f"{rank} of a {m}x{n} task ({'full rank' if full else 'a lower stratum'}){why}; accepted: "
                    f"{', '.join(map(repr, accepted))}")
        if r.method == "exact" and rank != 1:
            raise ConfigError(f"config key 'references[{i}].rank': exact references live on the rank-1 hyperbola; "
                              f"got rank {rank}")
        if cfg.volume_rank != "numerical" and rank != int(cfg.volume_rank):
            raise ConfigError(f"config key 'references[{i}].rank': {rank}, but statistics.volume_rank = "
                              f"{cfg.volume_rank}: the draws lie on M_{rank} and log ρ would be evaluated on "
                              f"M_{cfg.volume_rank}; use the same stratum")
        extra = [d for d in (r.depths or ()) if d not in cfg.depths]
        if extra:
            raise ConfigError(f"config key 'references[{i}].depths': {[depth_tag(d) for d in extra]} are not flow "
                              f"depths {[depth_tag(d) for d in cfg.depths]}")
        if r.measure in ("solution_set", "gibbs_limit") and radius <= obs_norm:
            raise ConfigError(f"config key 'references[{i}].radius': {radius:g} cannot reach a solution: every "
                              f"matrix matching the observations has ‖X‖_F >= ‖observed values‖_F = {obs_norm:.4g}; "
                              f"the task's scale suggests radius = {default_radius(task):.4g}")
        if r.method == "exact":
            if radius <= 2.0:
                raise ConfigError(f"config key 'references[{i}].radius': {radius:g}; the rank-1 solutions of the "
                                  "2x2 diagonal task have ‖X‖_F >= 2, expected radius > 2")
            continue
        window = _window(radius, r.floor)
        for depth in (r.depths or cfg.depths):
            try:
                if r.measure in ON_SOLUTION_SET:
                    sampler = samplers.SolutionSetSampler(task, depth, rank, window=window, measure=r.measure)
                else:
                    tgt = samplers.GibbsTarget(task, depth, rank, r.beta, window, normalized=True)
                    spec = registry.get(registry_method(r.measure, r.method))
                    if spec.kernel is not None:  # a kernel checks its target when it is built
                        spec.kernel(tgt)
            except DLNVolumeError as exc:
                raise _ref_error(i, r, depth, exc) from None
        if r.measure in ON_SOLUTION_SET:
            try:  # a window that contains no point of S ∩ M_r fails here, not after the flows
                sampler.find_starts(1, rng=0, n_candidates=1)
                if registry.get(registry_method(r.measure, r.method)).population:
                    for depth in (r.depths or cfg.depths):  # population methods temper a Gibbs path to the set
                        samplers.SolutionSetSampler(task, depth, rank, window=window,
                                                    measure=r.measure)._path_confinement()
            except DLNVolumeError as exc:
                err = _ref_error(i, r, None, exc)
                gt_rank = _ground_truth_rank(task, cfg.rtol)
                if cfg.references[i].rank is None and gt_rank is not None and gt_rank != rank:
                    err = ConfigError(f"{err}; the reference's rank defaults to {rank}, and the task's ground truth has "
                                      f"rank {gt_rank}: set references[{i}].rank = {gt_rank} (or statistics.volume_rank)")
                raise err from None
    if "null" in cfg.families and cfg.references and not kind.null_family:
        pass  # reported as a note by run_experiment: the null family needs the 2x2 hyperbola
    if check_flows:  # not for dlnvolume report, which runs no flow
        _check_flow_options(cfg, task)
    return replace(cfg, references=tuple(refs)), task


def _check_flow_options(cfg: ExperimentConfig, task: dv.CompletionTask) -> None:
    """``[flows.options]`` through the flows' own validation (keys and values), with one step of one run at
    the first depth (milliseconds), so that a bad option fails here, not after the calibration or other depths."""
    from dlnvolume import flows

    opts = {**_flow_options(cfg, task), "max_steps": 1}  # both flow methods take max_steps
    try:
        flows.endpoints(task, cfg.depths[0], 1, cfg.scales[-1], method=cfg.flow_method, rng=0, workers=1,
                        progress=False, check_accuracy=False, **opts)
    except InvalidArgumentError as exc:
        raise ConfigError(f"config key 'flows.options': {exc}") from None


def _needed(path: Path, reuse_only: bool) -> None:
    """``reuse_only`` (``dlnvolume report``): a stage item missing from the checkpoints is an error, not a run."""
    if reuse_only:
        raise ConfigError(f"checkpoint {str(path)!r} is missing: the run did not finish (complete it with "
                          "dlnvolume run ... --resume) or its checkpoints were removed")


def _flows_stage(cfg, task, out_ckpt, res, executor, workers, progress, log=None, reuse_only=False):
    """Flows of every depth at every scale of the ladder (the same seeds at every scale: run ``i`` starts from
    ``s·D_i``); the endpoints of the smallest scale are the ones the tests use (``res.endpoints``)."""
    from dlnvolume import flows

    scales = cfg.scales
    for j, depth in enumerate(cfg.depths):
        t0 = time.perf_counter()
        tag = depth_tag(depth)
        ladder, stats = {}, {}
        for s in scales:
            runs = cfg.runs if s == scales[-1] else cfg.ladder_size
            fp = _key(cfg.seed, j, depth, cfg.task, task.digest(), runs, s, cfg.flow_method,
                      sorted(_flow_options(cfg, task).items()))
            done = out_ckpt / f"endpoints_{tag}_{fp}.npz"
            folder = out_ckpt / f"flows_{tag}_{fp}"
            label = f"flows {tag} s={s:g}"
            if done.exists():
                ep = flows.Endpoints.load(done)
                n = max(len(_batch_files(folder)), 1)
                _log_resumed(log, label, n, n)
            else:
                _needed(done, reuse_only)
                before = _batch_files(folder)
                try:
                    ep = flows.endpoints(task, depth, runs, s, method=cfg.flow_method,
                                         rng=_seed(cfg.seed, STAGE_FLOWS, j), executor=executor, workers=workers,
                                         batch_size=cfg.batch_size,
                                         progress=tqdm_progress(f"flows N={depth} s={s:g}") if progress else False,
                                         checkpoint=str(folder), **_flow_options(cfg, task))
                except InvalidArgumentError as exc:  # an option the flow does not accept: name the config key
                    if str(exc).startswith("flow_kwargs key"):
                        raise ConfigError(f"config key 'flows.options': {exc}") from None
                    raise
                _log_resumed(log, label, *_resumed(before, folder))
                ep.save(done)
            ladder[s] = ep
            stats[s] = _stats(np.asarray(ep.X), depth, cfg, task)
        res.ladder[depth] = ladder
        res.ladder_stats[depth] = stats
        ep = ladder[scales[-1]]
        res.endpoints[depth] = ep
        keep = _kept(cfg, ep)
        res.keep[depth] = keep
        rounds = ep.accuracy.get("rounds", []) if isinstance(ep.accuracy, dict) else []
        if len(rounds) > 1 or (rounds and rounds[-1]["n_moved"]):
            steps = "; ".join(f"rtol {r['rtol']:g}: {r['n_moved']} of {r['n_checked']} checked runs moved by "
                              f"> {ep.accuracy['tol']:g} (largest {r['max_err']:.1e})" for r in rounds)
            res.notes.append(f"{tag}: flow accuracy check — {steps}; {int(np.sum(ep.flagged))} runs flagged and "
                             "dropped" + (f"; the endpoints are those at rtol {rounds[-1]['rtol']:g}"
                                          if len(rounds) > 1 else ""))
        n_unres = int(np.sum(getattr(ep, "unresolved", np.zeros(0, dtype=bool))))
        if n_unres:
            res.notes.append(f"{tag}: {n_unres} of {len(keep)} flows dropped as unresolved in float64 (a singular value "
                             "went below 1e-10·σ_1, where float64 holds it only to eps·σ_1, and then grew more than "
                             "100-fold or entered the metric's multipliers at more than 1e-3, so the endpoint is not "
                             "determined; docs/flows.md §3.4)")
        if keep.sum() < 2:
            res.notes.append(f"{tag}: only {int(keep.sum())} of {len(keep)} flows kept ({kept_summary(ep, keep)}); "
                             "tests skipped at this depth")
        res.endpoint_stats[depth] = stats[scales[-1]]
        res.timings[f"flows_{tag}"] = time.perf_counter() - t0


#: the experiment's flows stop at ``mse ≤ LOSS_MSE`` (residual ~1e-6 per observed entry) unless
#: ``[flows.options] loss_tol`` says otherwise: distances to predicted points and σ_{r+1}/σ_1 are read at the
#: endpoints, so they must not be set by the stopping rule (the flows' own default, mse 1e-6, leaves 1e-3)
LOSS_MSE = 1e-12


def _flow_options(cfg: ExperimentConfig, task: dv.CompletionTask) -> dict:
    opts = dict(cfg.flow_options)
    if cfg.volume_rank != "numerical":  # the implicit-bias analysis reads distances at the endpoints
        opts.setdefault("loss_tol", LOSS_MSE * task.n_observed / 2)
    return opts


def max_steps_hint(cfg: ExperimentConfig) -> str:
    """``"[flows.options] max_steps (now 50000)"``: the key that gives unfinished runs more steps, with the value
    the flows use (the config's, else the flow's default)."""
    from dlnvolume.flows.endpoints import _E2E_DEFAULTS

    n = dict(cfg.flow_options).get("max_steps", _E2E_DEFAULTS["max_steps"])
    return f"[flows.options] max_steps (now {n})"


def kept_summary(ep: Any, keep: np.ndarray) -> str:
    """Why runs were left out: statuses with counts, and the runs flagged (unresolved in float64, or moved at a
    tighter rtol) among the converged ones, e.g. ``"converged: 98, max_steps: 102; 98 converged runs flagged (...)"``."""
    status = np.asarray(ep.status).astype(str)
    text = ", ".join(f"{k}: {int(v)}" for k, v in zip(*np.unique(status, return_counts=True)))
    flagged = getattr(ep, "flagged", None)
    n_flag = 0 if flagged is None else int(np.sum(np.asarray(flagged) & (status == "converged")))
    if n_flag:
        text += (f"; {n_flag} converged runs flagged (unresolved in float64, or moved at a tighter rtol: "
                 "the report's notes say which)")
    unres = getattr(ep, "unresolved", None)
    n_unres = 0 if unres is None else int(np.sum(np.asarray(unres) & (status == "converged")))
    if n_unres and 2 * n_unres >= int(np.sum(status == "converged")):
        # the Gaussian-factor init at large depth starts with σ_min/σ_1 ~ 1e-15 (docs/flows.md §4.2); measured on a
        # 5×5 rank-2 task at N = 20: 32 of 32 runs unresolved and 17 at max_steps, against 0 and 0 with this law
        text += ("; most converged runs are unresolved: [flows.options] init_law = \"gaussian_matrix\" starts "
                 "every depth at σ_min/σ_1 far above 1e-10")
    return text


def _kept(cfg: ExperimentConfig, ep: Any) -> np.ndarray:
    status = np.asarray(ep.status).astype(str)
    ok = np.isin(status, list(cfg.keep_status)) & np.all(np.isfinite(np.asarray(ep.X)), axis=(-2, -1))
    flagged = getattr(ep, "flagged", None)  # the flows' accuracy check: endpoints that moved at a tighter rtol
    return ok if flagged is None else ok & ~np.asarray(flagged)


def _reference_stage(cfg, task, out_ckpt, res, executor, progress, log=None, workers=None, reuse_only=False):
    import samplers
    from samplers import registry

    from .references import GridHyperbolaReference

    for i, ref in enumerate(cfg.references):
        depths = [d for d in (ref.depths or cfg.depths) if d in cfg.depths]
        for j, depth in enumerate(depths):
            t0 = time.perf_counter()
            tag = depth_tag(depth)
            ck = out_ckpt / f"ref_{ref.name}_{tag}_{_key(cfg.seed, i, j, depth, ref, cfg.task, task.digest())}.npz"
            folder = ck.with_suffix("")  # per-batch chain checkpoints of MCMC references
            label = f"reference {ref.name} {tag}"
            rank = ref.rank  # filled in by prepare()
            target = {"measure": ref.measure, "depth": depth, "rank": rank, "beta": ref.beta, "normalized": True,
                      "confinement": f"FrobeniusBall({ref.radius})"
                                     + (f" × SingularValueFloor({ref.floor})" if ref.floor else "")}
            ss = _seed(cfg.seed, STAGE_REFS, i, j)
            if ref.method == "exact":
                H = GridHyperbolaReference(depth, measure=ref.measure, radius=ref.radius)
                res.exact[(ref.name, depth)] = H
            if ck.exists():
                sset = SampleSet.load(ck, target, ref.method, ref.warmup, ref.thin)
                n = max(len(_batch_files(folder)), 1)
                _log_resumed(log, label, n, n)
            elif reuse_only and ref.method != "exact":
                _needed(ck, reuse_only)
            elif ref.method == "exact":
                _log_resumed(log, label, 0, 1)
                n = ref.chains * ref.draws
                a = np.asarray(H.sample(n, rng=np.random.default_rng(ss)), dtype=np.float64)
                X = np.asarray(H.matrices(a), dtype=np.float64).reshape(ref.chains, ref.draws, 2, 2)
                logpdf = np.log(np.maximum(np.asarray(H.pdf(a), dtype=np.float64), 1e-300)).reshape(ref.chains, ref.draws)
                sset = SampleSet(X, logpdf, np.ones((ref.chains, ref.draws)), np.zeros(ref.chains), {}, target,
                                 "exact", dv.parallel.spawn_seeds(ss, ref.chains), 0, 1)
                sset.save(ck)
            else:
                window = _window(ref.radius, ref.floor)
                before = _batch_files(folder)
                spec = registry.get(registry_method(ref.measure, ref.method))
                common = dict(n_chains=ref.chains, warmup=ref.warmup, thin=ref.thin, rng=ss, executor=executor,
                              workers=workers, progress=tqdm_progress(label) if progress else False,
                              checkpoint=folder)
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", samplers.ConvergenceWarning)
                    if ref.measure in ON_SOLUTION_SET:  # every solution-set method is a registry ``run``
                        sampler = samplers.SolutionSetSampler(task, depth, rank, window=window, measure=ref.measure)
                        ch = spec.run(sampler, ref.draws, **common)
                    else:  # samplers.sample runs a registry kernel in the driver loop, or the method's ``run``
                        tgt = samplers.GibbsTarget(task, depth, rank, ref.beta, window, normalized=True)
                        ch = samplers.sample(tgt, method=spec.name, n_draws=ref.draws, **common)
                for w in caught:  # said again with the reference's name (the report has the diagnostics)
                    text = str(w.message).replace("see Chains.diagnostics", "see the report")
                    warnings.warn_explicit(f"{label}: {text}" if issubclass(w.category, samplers.ConvergenceWarning)
                                           else w.message, w.category, w.filename, w.lineno)
                _log_resumed(log, label, *_resumed(before, folder))
                m, n = task.shape
                nominal = rank * (m + n - rank) - (int(np.sum(task.mask)) if ref.measure in ON_SOLUTION_SET else 0)
                sset = SampleSet.from_chains(ch, nominal_dimension=nominal)
                sset.save(ck)
            res.samples[(ref.name, depth)] = sset
            res.reference_diagnostics[(ref.name, depth)] = sset.summary()
            res.sample_stats[(ref.name, depth)] = _stats(sset.draws, depth, cfg, task)
            res.timings[f"ref_{ref.name}_{tag}"] = time.perf_counter() - t0


def _null_stage(cfg, task, out_ckpt, res, reuse_only=False):
    """Null measure of family (c): the Euclidean (depth-1) solution-set volume on the hyperbola window."""
    from .references import GridHyperbolaReference

    radius = next((r.radius for r in cfg.references if r.measure == "solution_set"), cfg.references[0].radius) or 3.0
    ck = out_ckpt / f"null_euclidean_{_key(cfg.seed, radius, cfg.null_draws)}.npz"
    if ck.exists():
        X = load_npz(ck)["X"]
    else:
        _needed(ck, reuse_only)
        H = GridHyperbolaReference(1, measure="solution_set", radius=radius)
        a = np.asarray(H.sample(cfg.null_draws, rng=np.random.default_rng(_seed(cfg.seed, STAGE_NULL))))
        X = np.asarray(H.matrices(a), dtype=np.float64)
        atomic_save_npz(ck, X=X)
    for depth in cfg.depths:
        res.null_log_volume[depth] = _stats(X, depth, cfg, task).log_volume_density


def _tests_stage(cfg, res):
    fam = set(cfg.families)
    for (name, depth), sst in res.sample_stats.items():
        keep = res.keep[depth]
        if keep.sum() < 2:
            continue
        est = res.endpoint_stats[depth]
        iid = res.samples[(name, depth)].method == "exact"
        rng = np.random.default_rng(_seed(cfg.seed, STAGE_TESTS, cfg.depths.index(depth),
                                          [r.name for r in cfg.references].index(name)))
        if "distribution" in fam:
            e_sc, d_sc = est.scalars(), sst.scalars()
            xs = {k: e_sc[k][keep] for k in cfg.test_statistics if k in e_sc and k in d_sc}
            ys = {k: d_sc[k] for k in xs}
            vec = {"singular_values": (est.singular_values[keep], sst.singular_values)}
            res.tests[("distribution", name, depth)] = hyp.distribution_match(
                xs, ys, vector=vec, n_perm=cfg.n_perm, max_n=cfg.max_n, iid=iid,
                measure_x=f"endpoints {depth_tag(depth)}", measure_y=f"{name} {depth_tag(depth)}", rng=rng)
        if "percentile" in fam:
            v = est.log_volume_density[keep]
            H = res.exact.get((name, depth))
            if H is not None and cfg.volume_rank == 1:  # the statistic is log ρ^(1)_N, as in log_volume_cdf
                pr = hyp.volume_percentile_test(v, reference_cdf=H.log_volume_cdf, bins=cfg.bins,
                                                measure_y=f"{name} {depth_tag(depth)} (exact CDF)")
            else:
                pr = hyp.volume_percentile_test(v, reference_draws=sst.log_volume_density, bins=cfg.bins, iid=iid,
                                                measure_y=f"{name} {depth_tag(depth)}")
            res.percentiles[(name, depth)] = pr
            res.tests[("percentile", name, depth)] = [pr.uniform, pr.small] + ([pr.large] if pr.large is not None else [])
    if "null" in fam:
        for depth, null in res.null_log_volume.items():
            keep = res.keep[depth]
            if keep.sum() < 2:
                continue
            v = res.endpoint_stats[depth].log_volume_density[keep]
            res.tests[("null", "euclidean", depth)] = [hyp.null_measure_test(
                v, null, measure_x=f"endpoints {depth_tag(depth)}", measure_y="euclidean volume (N=1) on S∩M_1")]


def _resolution(cfg, task, out_ckpt, res, j, depth, rank, executor, workers, log=None, reuse_only=False):
    """The resolution check of one depth (:class:`analysis.bias.Resolution`): the first runs of the smallest
    scale again, same seeds, ``rtol`` and ``atol`` divided by :data:`analysis.bias.TIGHTER`."""
    from dlnvolume import flows

    from .bias import TIGHTER, Resolution, _ratio

    if cfg.flow_method != "end_to_end":
        return None
    s = cfg.scales[-1]
    n = min(RESOLUTION_RUNS, cfg.runs)
    opts = _flow_options(cfg, task)
    rtol = float(opts.get("rtol", 1e-6))
    opts["rtol"] = rtol / TIGHTER
    opts["atol"] = float(opts.get("atol", 0.0)) / TIGHTER
    tag = depth_tag(depth)
    fp = _key(cfg.seed, j, depth, cfg.task, task.digest(), n, s, cfg.flow_method, sorted(opts.items()))
    done = out_ckpt / f"resolution_{tag}_{fp}.npz"
    if done.exists():
        tight = flows.Endpoints.load(done)
    else:
        _needed(done, reuse_only)
        tight = flows.endpoints(task, depth, n, s, method=cfg.flow_method, rng=_seed(cfg.seed, STAGE_FLOWS, j),
                                executor=executor, workers=workers, batch_size=cfg.batch_size, progress=False,
                                **opts)
        tight.save(done)
    base = res.endpoints[depth]
    ok = _kept(cfg, base)[:n] & _kept(cfg, tight)
    if log is not None:
        log(f"resolution check {tag}: {int(ok.sum())} runs re-run at rtol {opts['rtol']:g}")
    Xa, Xb = np.asarray(base.X)[:n][ok], np.asarray(tight.X)[ok]
    sa, sb = np.linalg.svd(Xa, compute_uv=False), np.linalg.svd(Xb, compute_uv=False)
    change = np.linalg.norm(Xa - Xb, axis=(-2, -1)) / np.maximum(np.linalg.norm(Xb, axis=(-2, -1)), 1e-300)
    return Resolution(rtol, opts["rtol"], _ratio(sa, rank), _ratio(sb, rank), change)


def _bias_stage(cfg, task, out_ckpt, res, executor, workers, log=None, reuse_only=False):
    """Stratum reached, predicted points, distances and rival laws per depth (:mod:`analysis.bias`)."""
    import samplers

    from .bias import depth_bias
    from .tasks import default_radius

    if cfg.volume_rank == "numerical":
        res.notes.append("implicit-bias analysis skipped: statistics.volume_rank = 'numerical' names no stratum M_r "
                         "(set it to r to ask which point of S ∩ M_r the endpoints approach)")
        return
    rank = int(cfg.volume_rank)
    sol = [r for r in cfg.references if r.measure == "solution_set"]
    radius = sol[0].radius if sol and sol[0].radius is not None else default_radius(task)
    cache: dict = {}
    for j, depth in enumerate(cfg.depths):
        t0 = time.perf_counter()
        ladder = res.ladder[depth]
        nl = min(len(ep.X) for ep in ladder.values())
        keep = np.all([_kept(cfg, ep)[:nl] for ep in ladder.values()], axis=0)
        if keep.sum() < 2:
            res.notes.append(f"{depth_tag(depth)}: fewer than 2 runs kept at every scale; no implicit-bias analysis")
            continue
        res.resolution[depth] = _resolution(cfg, task, out_ckpt, res, j, depth, rank, executor, workers, log,
                                            reuse_only)
        reference = None
        gibbs = None
        for r in sol:
            if (r.name, depth) in res.samples:
                ss = res.samples[(r.name, depth)]
                reference = (r.name, ss.draws, res.sample_stats[(r.name, depth)], ss.method == "exact")
                try:  # the Gibbs-limit statistic needs the solution-set geometry (window excluded)
                    gibbs = samplers.SolutionSetSampler(task, depth, rank, window=samplers.FrobeniusBall(1e150))
                except DLNVolumeError:
                    gibbs = None
                break
        res.bias[depth] = depth_bias(
            task, depth, rank, ladder, res.ladder_stats[depth], keep, radius=radius, reference=reference,
            resolution=res.resolution[depth], prediction_cache=cache, predictor_names=cfg.predictors,
            n_starts=cfg.n_starts, gibbs=gibbs, rng=_seed(cfg.seed, STAGE_BIAS, j))
        res.timings[f"bias_{depth_tag(depth)}"] = time.perf_counter() - t0


def run_experiment(
    cfg: ExperimentConfig, out: Path, *, task: dv.CompletionTask | None = None, executor: Any = None,
    workers: int | None = None, progress: bool = True, log: Callable[[str], None] | None = None,
    reuse_only: bool = False,
) -> ExperimentResult:
    """Run all computing stages; outputs are written by :mod:`analysis.report`.

    ``task``: run on this :class:`dlnvolume.CompletionTask` instead of the one the ``[task]`` table
    builds (any task; use ``kind = "custom"`` there). The whole configuration is validated against the
    task first (:func:`prepare`), so a bad reference, rank or window fails in seconds, before any flow.

    Every stage item is checkpointed under ``out/checkpoints`` (flows and MCMC chains per batch), so
    a rerun into the same ``out`` with the same configuration resumes. ``log``, if given, receives
    one line per flow depth and per reference, e.g. ``"flows N5: resumed 3/8 batches from checkpoints"``.
    ``reuse_only`` (``dlnvolume report``): every flow and reference must come from the checkpoints (a missing
    one raises :class:`~dlnvolume.errors.ConfigError`); the statistics, tests and implicit-bias analysis are
    recomputed from them, and the time ledger is read but not added to.
    """
    from .tasks import TASK_KINDS

    cfg, task = prepare(cfg, task, check_flows=not reuse_only)
    ckpt = Path(out) / "checkpoints"
    ckpt.mkdir(parents=True, exist_ok=True)
    for tmp in ckpt.rglob(".*.tmp"):  # temporary files of a run killed while writing a checkpoint
        tmp.unlink(missing_ok=True)
    res = ExperimentResult(cfg, task)
    ledger = TimeLedger(ckpt, record=not reuse_only)
    res.time_spent = ledger.entries
    t0 = time.perf_counter()
    with ledger.stage("flows"):
        _flows_stage(cfg, task, ckpt, res, executor, workers, progress, log, reuse_only)
    res.timings["flows"] = time.perf_counter() - t0
    if cfg.references:
        t1 = time.perf_counter()
        with ledger.stage("references"):
            _reference_stage(cfg, task, ckpt, res, executor, progress, log, workers, reuse_only)
        res.timings["references"] = time.perf_counter() - t1
        if "null" in cfg.families and TASK_KINDS[cfg.task["kind"]].null_family:
            _null_stage(cfg, task, ckpt, res, reuse_only)
        elif "null" in cfg.families:
            res.notes.append(f"test family 'null' skipped: the Euclidean null measure is sampled on the hyperbola "
                             f"of the 2x2 diagonal task only (task kind '{cfg.task['kind']}')")
        t2 = time.perf_counter()
        with ledger.stage("tests"):
            _tests_stage(cfg, res)
        res.timings["tests"] = time.perf_counter() - t2
    t3 = time.perf_counter()
    with ledger.stage("bias"):
        _bias_stage(cfg, task, ckpt, res, executor, workers, log, reuse_only)
    res.timings["bias"] = time.perf_counter() - t3
    return res
