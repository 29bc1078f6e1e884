"""The plan of a run (issue 22): its stages, their sizes, and estimates of time and peak memory from a short
calibration of this very task on this machine, before anything long runs (``dlnvolume check CONFIG``; the
first lines of ``dlnvolume run``).

**Time.** Flows: the first runs of each depth (at the smallest and the largest scale of the ladder) are
integrated as the run will integrate them — same seeds, options and integrator, one process — for a few
seconds per depth (``check``: at least ``CAL_MIN_RUNS`` per scale, within ``CAL_CAP`` times the budget, since
the cost per run is heavy-tailed where runs stop at ``max_steps``; their statuses give the plan's note on runs
that will not converge); their mean time per run, times the runs, times the accuracy check's share (1 run in
``CHECK_STRIDE`` again at ``rtol/100``, measured ~2.5× the cost), divided by the processes the batches can
use. A depth the check sends back to ``rtol/100`` takes up to ``REDO_FACTOR`` times that; whether it will is not
predicted (tried: 4 calibration runs at ``rtol/100`` on the 8×8 task predicted a redo that the run did not
do, and a cost ratio of 25–40 set by one slow run). MCMC and
SMC references: a per-chain cost ``a + b·iterations`` fitted to two reduced runs (2 chains, 1/50 and 1/10 of
the iterations), scaled to the reference's chains, plus the sampler's first-call (compilation) cost. Tests,
implicit-bias analysis and
outputs: a fixed model (seconds per depth and per reference) measured on the built-ins.

**Memory.** What the run holds at once: the endpoints of every depth and scale (matrices and trajectory
records), the reference draws (twice: arrays and ``results.nc``), and a fixed ~``BASE_MB`` per process
(the interpreter with numpy, scipy, numba and arviz loaded). A configuration whose estimate exceeds the
memory available now is refused by :func:`check_memory` (one line naming the key to reduce) before any
compute.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import dlnvolume as dv
from dlnvolume.errors import ConfigError

from .experiment import ExperimentConfig

__all__ = ["StagePlan", "Plan", "make_plan", "format_plan", "check_memory", "memory_estimate", "available_mb"]

#: resident memory of one process with numpy, scipy, numba (the compiled flows loaded) and arviz (measured
#: 180–260 MB on Linux, Python 3.11)
BASE_MB = 260.0
#: seconds of calibration per flow depth and per reference (``dlnvolume check``; ``run`` uses a third)
BUDGET_S = 4.0
#: ``dlnvolume check`` calibrates at least this many flows per scale (within CAL_CAP times its budget)
CAL_MIN_RUNS = 4
CAL_CAP = 8.0
#: seconds of the first chain of each reference at each depth that ``check`` runs (``run`` does not calibrate them)
REF_BUDGET_S = 6.0
#: the accuracy check re-integrates 1 run in 8 at rtol/100, at ~2.5× the cost: ×(1 + 2.5/8)
CHECK_FACTOR = 1.0 + 2.5 / 8
#: a call the check sends back to rtol/100 costs this much more (the redone runs plus a second check), when its
#: runs converge (:func:`redo_factor` for runs that stop at max_steps)
REDO_FACTOR = 3.5
#: tests + implicit-bias analysis + outputs: seconds per flow depth and per (reference, depth), plus a constant
#: (measured on the built-ins: 4–9 s for cmv-2x2, 2–4 s per reference-depth pair for the MCMC ones)
POST_S = (3.0, 1.0, 1.5)


@dataclass
class StagePlan:
    stage: str
    size: str
    seconds: float          # wall seconds, estimated
    memory_mb: float        # memory its results hold
    basis: str              # how the estimate was made


@dataclass
class Plan:
    stages: list[StagePlan]
    workers: int
    available_mb: float
    base_mb: float
    warnings: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return float(sum(s.seconds for s in self.stages))

    @property
    def peak_mb(self) -> float:
        return self.base_mb + float(sum(s.memory_mb for s in self.stages))


def available_mb() -> float:
    """Memory available now (``MemAvailable`` of /proc/meminfo; else the physical memory)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (ValueError, OSError, AttributeError):
        return math.inf


def _flow_runs(cfg: ExperimentConfig) -> list[tuple[float, int]]:
    """(scale, runs) of one depth, largest scale first."""
    sc = cfg.scales
    return [(s, cfg.runs if s == sc[-1] else cfg.ladder_size) for s in sc]


def memory_estimate(cfg: ExperimentConfig, task: dv.CompletionTask) -> dict[str, float]:
    """MB held at once, by the configuration key that sets it (flows.runs, references[i].draws)."""
    m, n = task.shape
    k = min(m, n)
    n_log = int(cfg.flow_options.get("n_log", 201))
    per_run = 8.0 * (4 * m * n + n_log * (k + 2) + 4 * k + 16)  # X, X0, stats; trajectory records
    runs = sum(r for _, r in _flow_runs(cfg)) * len(cfg.depths)
    out = {"flows.runs": runs * per_run / 2**20}
    for i, r in enumerate(cfg.references):
        depths = len([d for d in (r.depths or cfg.depths) if d in cfg.depths])
        out[f"references[{i}].draws"] = 2 * depths * r.chains * r.draws * 8.0 * (m * n + 8) / 2**20
    return out


def check_memory(cfg: ExperimentConfig, task: dv.CompletionTask, workers: int | None = None) -> None:
    """Refuse (ConfigError, one line) a configuration whose memory estimate exceeds what is available."""
    est = memory_estimate(cfg, task)
    procs = 1 + max(0, (workers or os.cpu_count() or 1))
    need = BASE_MB * procs + sum(est.values())
    have = available_mb()
    if need > have:
        key, mb = max(est.items(), key=lambda kv: kv[1])
        value = cfg.runs if key == "flows.runs" else cfg.references[int(key.split("[")[1].split("]")[0])].draws
        raise ConfigError(f"config key '{key}': {value} needs about {mb / 1024:.1f} GiB of memory (the whole run "
                          f"~{need / 1024:.1f} GiB), more than the {have / 1024:.1f} GiB available on this machine; "
                          f"reduce {key}")


class _Enough(Exception):
    """Raised by the calibration's progress callback: the budget is spent."""


class _InlineExecutor:
    """An executor that runs each submitted batch at once, in this process, and keeps its result; it raises
    :class:`_Enough`, which stops the call, once ``budget`` seconds are spent and ``min_runs`` batches have run,
    or once ``CAL_CAP × budget`` seconds are spent (after at least one batch)."""

    def __init__(self, budget: float, min_runs: int = 1, clock: Any = time.perf_counter) -> None:
        import concurrent.futures as cf

        self._cf = cf
        self.budget = budget
        self.min_runs = min_runs
        self.clock = clock
        self.t0 = clock()
        self.results: list[dict[str, Any]] = []
        self.durations: list[float] = []
        self.seconds = 0.0

    def submit(self, fn: Any, *args: Any) -> Any:
        n = len(self.results)
        if n and ((n >= self.min_runs and self.seconds >= self.budget) or self.seconds >= CAL_CAP * self.budget):
            raise _Enough
        fut = self._cf.Future()
        start = self.clock()
        res = fn(*args)
        self.results.append(res)
        self.durations.append(self.clock() - start)
        self.seconds = self.clock() - self.t0
        fut.set_result(res)
        return fut


def _calibrate_flows(cfg: ExperimentConfig, task: dv.CompletionTask, j: int, depth: float, budget: float
                     ) -> tuple[dict[float, float], int, dict[str, int], float]:
    """Mean seconds per run at the smallest and the largest scale (the runs the real run starts with), the
    number of calibration runs, their statuses (counts) and the share of their time spent in runs that did not
    converge."""
    from dlnvolume import flows

    from .runner import STAGE_FLOWS, _flow_options, _seed

    opts = _flow_options(cfg, task)
    if cfg.flow_method == "end_to_end":
        flows.compiled.warm_up()  # numba's cache is loaded once per run (workers inherit it): not a per-run cost
    scales = sorted({cfg.scales[0], cfg.scales[-1]})
    per: dict[float, float] = {}
    total = 0
    statuses: dict[str, int] = {}
    t_all = t_stuck = 0.0
    for s in scales:
        # the first runs of the real call, one batch each, run inline and stopped once the budget is spent (a call
        # with more runs starts with the same runs, so nothing is integrated twice)
        # dlnvolume check (the full budget) integrates at least CAL_MIN_RUNS runs per scale: the cost per run is
        # heavy-tailed where some runs stop at max_steps (5×5 rank 2 at N = 20: 1.2 s or 5 s), and one run is
        # then off by 3× either way
        ex = _InlineExecutor(budget / len(scales) / 2, CAL_MIN_RUNS if budget >= BUDGET_S else 1)
        try:
            flows.endpoints(task, depth, min(16, cfg.runs), s, method=cfg.flow_method,
                            rng=_seed(cfg.seed, STAGE_FLOWS, j), executor=ex, batch_size=1, progress=False,
                            check_accuracy=False, **opts)
        except _Enough:
            pass
        for res, dt in zip(ex.results, ex.durations):
            sts = np.asarray(res.get("status", [])).astype(str)
            for st in sts:
                statuses[st] = statuses.get(st, 0) + 1
            t_all += dt
            t_stuck += dt if np.any(sts != "converged") else 0.0
        per[s] = ex.seconds / max(len(ex.results), 1)
        total += len(ex.results)
    return per, total, statuses, (t_stuck / t_all if t_all > 0 else 0.0)


def redo_factor(stuck_share: float) -> float:
    """How much longer a depth takes when the accuracy check sends it back to ``rtol/100``: the base run, plus
    its converged runs again at ~2.5× their cost and its runs that stop at ``max_steps`` again with
    ``STEP_BUDGET`` times the steps; ``stuck_share`` is the share of the calibration time in the latter.
    (5×5 rank 2 at N = 20, share ≈ 0.9: 4.9×; measured 4.7×: 150 s, then 560 s for the redo.)

    >>> redo_factor(0.0) == REDO_FACTOR
    True
    """
    from dlnvolume.flows.endpoints import STEP_BUDGET

    return 1.0 + (REDO_FACTOR - 1.0) * (1.0 - stuck_share) + STEP_BUDGET * stuck_share


def _unfinished_note(cfg: ExperimentConfig, depth: float, statuses: dict[str, int], stuck_share: float = 0.0
                     ) -> str | None:
    """The plan's note on a depth whose calibration runs did not all converge: the share of runs the tests will
    likely leave out (``flows.keep_status``), what to raise, and what a redo at ``rtol/100`` would cost."""
    from dlnvolume.flows.endpoints import STEP_BUDGET

    n = sum(statuses.values())
    bad = {k: v for k, v in statuses.items() if k not in cfg.keep_status}
    if not n or not bad:
        return None
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(bad.items()))
    from .runner import max_steps_hint

    limit = max_steps_hint(cfg)
    return (f"flows N={depth}: {sum(bad.values())} of {n} calibration runs stopped before converging ({counts}); "
            f"expect about that share of this depth's runs left out of the tests (keep_status) and its estimate to "
            f"be uncertain; {limit} gives them more steps, at the cost of time; if the accuracy check redoes this "
            f"depth at rtol/100 (its runs at max_steps then get {STEP_BUDGET}× the steps), up to "
            f"{redo_factor(stuck_share):.1f}× its estimate")


def _calibrate_reference(cfg: ExperimentConfig, task: dv.CompletionTask, i: int, ref: Any, depth: float,
                         budget: float = REF_BUDGET_S) -> tuple[float, str]:
    """CPU seconds of the whole reference at one depth: the first of its chains (an MCMC chain or an SMC
    replicate, at the real sizes) is run until ``budget`` seconds are spent, and its cost extrapolated from the
    fraction done it reported (:func:`dlnvolume.batching.tick`: iterations of a chain, phases of a replicate),
    times the number of chains."""
    import warnings

    import samplers
    from samplers import registry

    from .runner import _window, registry_method

    if ref.method == "exact":
        return 0.05, "exact draws"
    spec = registry.get(registry_method(ref.measure, ref.method))
    window = _window(ref.radius, ref.floor)
    t0 = time.perf_counter()
    seen = [0.0, 0.0]

    def watch(done: float, total: int) -> None:
        seen[0], seen[1] = float(done), time.perf_counter() - t0
        if 0 < done < total and seen[1] >= budget:
            raise _Enough

    watch.partial = True  # type: ignore[attr-defined]
    common = dict(n_chains=1, warmup=ref.warmup, thin=ref.thin, rng=0, workers=1, progress=watch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one chain does not converge, by design
        try:
            if ref.measure in ("solution_set", "gibbs_limit"):
                spec.run(samplers.SolutionSetSampler(task, depth, ref.rank, window=window, measure=ref.measure),
                         ref.draws, **common)
            else:
                tgt = samplers.GibbsTarget(task, depth, ref.rank, ref.beta, window, normalized=True)
                samplers.sample(tgt, method=spec.name, n_draws=ref.draws, **common)
            seen[:] = [1.0, time.perf_counter() - t0]
        except _Enough:
            pass
    per_chain = seen[1] / max(seen[0], 1e-3)
    return ref.chains * per_chain, (f"first chain run {seen[1]:.1f} s to {100 * seen[0]:.0f} %: "
                                    f"{per_chain:.3g} s per chain")


def make_plan(cfg: ExperimentConfig, task: dv.CompletionTask, workers: int | None = None,
              budget: float = BUDGET_S, calibrate: bool = True, references: bool = True) -> Plan:
    """The stages of ``run_experiment(cfg)`` with their sizes and estimates (``cfg`` as :func:`prepare` returns
    it). ``budget``: calibration seconds per flow depth; ``references=False`` leaves the MCMC/SMC references
    uncalibrated: ``dlnvolume run`` prints that plan, since their reduced runs take seconds each."""
    nproc = max(1, int(workers or os.cpu_count() or 1))
    mem = memory_estimate(cfg, task)
    stages: list[StagePlan] = []
    pers: list[dict[float, float]] = []  # calibrated seconds per run by scale, per depth
    unfinished: list[str] = []  # depths whose calibration runs did not all converge
    n_flow_runs = sum(r for _, r in _flow_runs(cfg))
    for j, depth in enumerate(cfg.depths):
        size = " + ".join(f"{r} runs at s={s:g}" for s, r in _flow_runs(cfg))
        mb = mem["flows.runs"] / len(cfg.depths)
        if not calibrate:
            stages.append(StagePlan(f"flows N={depth}", size, math.nan, mb, "not calibrated"))
            continue
        per, k, statuses, stuck = _calibrate_flows(cfg, task, j, depth, budget)
        note = _unfinished_note(cfg, depth, statuses, stuck)
        if note:
            unfinished.append(note)
        pers.append(per)
        lo, hi = per[min(per)], per[max(per)]
        stages.append(StagePlan(f"flows N={depth}", size, _flows_wall(cfg, per, nproc), mb,
                                f"{k} calibration runs, {lo:.2g}–{hi:.2g} s per run, accuracy check "
                                f"×{_check_factor(cfg):.2f}"))
    for i, ref in enumerate(cfg.references):
        for depth in [d for d in (ref.depths or cfg.depths) if d in cfg.depths]:
            size = "exact" if ref.method == "exact" else f"{ref.chains} chains × ({ref.warmup} + {ref.draws}·{ref.thin})"
            mb = mem[f"references[{i}].draws"] / max(1, len([d for d in (ref.depths or cfg.depths) if d in cfg.depths]))
            if not calibrate or (not references and ref.method != "exact"):
                stages.append(StagePlan(f"reference {ref.name} N={depth}", size, math.nan, mb,
                                        "not calibrated here: dlnvolume check CONFIG estimates it"))
                continue
            cpu, basis = _calibrate_reference(cfg, task, i, ref, depth)
            stages.append(StagePlan(f"reference {ref.name} N={depth}", size, cpu / min(nproc, ref.chains), mb, basis))
    n_pairs = sum(len([d for d in (r.depths or cfg.depths) if d in cfg.depths]) for r in cfg.references)
    post = POST_S[0] + POST_S[1] * len(cfg.depths) + POST_S[2] * n_pairs
    stages.append(StagePlan("tests, implicit bias, outputs", f"{len(cfg.depths)} depth{'s' * (len(cfg.depths) > 1)}, {n_pairs} reference row{'s' * (n_pairs != 1)}",
                            post, 0.0, "fixed model (seconds per depth and per reference row)"))
    plan = Plan(stages, nproc, available_mb(), BASE_MB * (1 + nproc))
    total = sum(s.seconds for s in stages if math.isfinite(s.seconds))
    if cfg.flow_method == "end_to_end" and n_flow_runs:
        plan.warnings.append(f"where the flows' accuracy check redoes a depth at rtol/100, that depth takes up to "
                             f"{REDO_FACTOR:g}× its estimate (not predicted: whether it redoes depends on a few "
                             "sensitive runs)")
    plan.warnings += unfinished
    if total > 3600:
        plan.warnings.append(_shorten(cfg, stages, total, pers, nproc))
    return plan


def _check_factor(cfg: ExperimentConfig) -> float:
    return CHECK_FACTOR if cfg.flow_method == "end_to_end" else 1.0


def _flows_wall(cfg: ExperimentConfig, per: dict[float, float], nproc: int) -> float:
    """Wall seconds of one depth's flows from the calibrated seconds per run at two scales (interpolated in
    log s), the accuracy check's share and the workers the batches can occupy."""
    lo, hi = per[min(per)], per[max(per)]
    cpu = 0.0
    for s, r in _flow_runs(cfg):
        f = 0.0 if max(per) == min(per) else (math.log(s) - math.log(min(per))) / (math.log(max(per)) - math.log(min(per)))
        cpu += r * (lo + f * (hi - lo))
    batches = sum(math.ceil(r / cfg.batch_size) for _, r in _flow_runs(cfg))
    return cpu * _check_factor(cfg) / min(nproc, max(1, batches // len(cfg.scales)))


def _shorten(cfg: ExperimentConfig, stages: list[StagePlan], total: float, pers: list[dict[float, float]],
             nproc: int) -> str:
    """The warning of a run estimated over an hour: which part dominates and the size of it that fits in one
    (for the flows, the largest ``flows.runs`` whose estimate, made as above, leaves the total within an hour)."""
    import dataclasses

    def spent(prefix: str) -> float:
        return sum(s.seconds for s in stages if s.stage.startswith(prefix) and math.isfinite(s.seconds))

    flows, refs = spent("flows"), spent("reference")
    rest = total - flows - refs
    text = f"estimated {_hms(total)}, over an hour"
    if flows >= refs and flows > 0:
        text += f" (flows {_hms(flows)})"
        lo, hi = 0, cfg.runs  # bisection: the estimate grows with runs
        while hi - lo > 1:
            mid = (lo + hi) // 2
            c = dataclasses.replace(cfg, runs=mid)
            if rest + refs + sum(_flows_wall(c, per, nproc) for per in pers) <= 3600:
                lo = mid
            else:
                hi = mid
        if lo >= 1:
            text += f": flows.runs = {lo} (now {cfg.runs}) would fit in about an hour"
    elif refs > 0:
        fit = int(max(r.draws for r in cfg.references) * (3600 - rest - flows) / refs)
        text += f" (references {_hms(refs)})"
        if fit >= 1:
            text += f": references' draws = {fit} would fit in about an hour"
    return text + "; or use --quick, fewer flows.depths or more --workers"


def _hms(sec: float) -> str:
    if not math.isfinite(sec):
        return "?"
    if sec < 60:
        return f"{sec:.0f} s"
    if sec < 3600:
        return f"{sec / 60:.1f} min"
    return f"{sec / 3600:.1f} h"


def format_plan(plan: Plan) -> str:
    """The plan as text: one line per stage, then the total and the warnings."""
    w = max(len(s.stage) for s in plan.stages)
    lines = [f"plan ({plan.workers} worker process{'es' if plan.workers > 1 else ''}; estimates from a calibration "
             "on this machine):"]
    for s in plan.stages:
        lines.append(f"  {s.stage:<{w}}  {_hms(s.seconds):>8}  {s.memory_mb:8.1f} MB  {s.size}  [{s.basis}]")
    unknown = any(not math.isfinite(s.seconds) for s in plan.stages)
    lines.append(f"  total ≈ {_hms(sum(s.seconds for s in plan.stages if math.isfinite(s.seconds)))}"
                 + (" + the stages marked ?" if unknown else "") + f", peak memory ≈ {plan.peak_mb / 1024:.2f} GiB "
                 f"(available {plan.available_mb / 1024:.1f} GiB)")
    lines += [f"  note: {x}" for x in plan.warnings]
    return "\n".join(lines)
