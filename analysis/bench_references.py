"""Benchmark section "references": the reference samplers of issue 12 against emcee / the constrained walk.

Rows (``analysis.bench.Row``; ``ours_s`` and ``baseline_s`` are seconds per effective sample, so the ratio
is the ESS/s speed-up):

* Gibbs targets ``π_β`` on ``M_1`` of a partially observed 3×3 and 4×4 task (``random_low_rank``, depth 3,
  Frobenius window 3‖W*‖), ``β = 1, 10, 100, 1000``: tempered SMC (``samplers.sample(..., "smc")``, 4
  replicates of 2000 particles, adaptive tempering at ESS 0.8, 20 MALA steps per stage) vs emcee on ``θ`` (4 ensembles, 2000 steps); goal R-hat ≤ 1.01, bulk and tail ESS ≥ 400 (worst unobserved entry) within
  60 s.
* The solution-set volume of the 3×3 diagonal task (rank 1, four components, depth 3, window 12):
  ``SolutionSetSampler`` (method "smc") vs the constrained random walk from ``find_starts``.

* Scale targets of issue 21 (full run only): the solution-set reference as a run makes it (``solution_smc``,
  4 replicates of 2000 draws, the default window ``analysis.tasks.default_radius``, 2 workers) on
  ``random_low_rank`` tasks 8×8 rank 2 with 24 observations and 10×10 rank 1 with 15 (goal: converged in
  ≤ 60 s), 20×20 rank 2 with 120 (≤ 300 s), at N = 5: time, R-hat, ESS, the worst PSIS k̂, coverage and
  consistency of the importance sampling. No peer samples these sets, so there is no baseline column.

``--quick``: β = 1 and 100 on the 3×3 task only, fewer draws (a smoke test of seconds).
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np

__all__ = ["bench_references"]


def _diag(ch: Any) -> tuple[float, float, float]:
    d = ch.diagnostics
    return float(d["rhat"]), float(d["ess_bulk"]), float(d["ess_tail"])


def bench_references(quick: bool, rng: np.random.Generator) -> list[Any]:
    import dlnvolume as dv
    import samplers
    from samplers.diagnostics import ConvergenceWarning, attach_diagnostics

    from .bench import Row

    rows: list[Row] = []
    tasks = [("3×3 r1 5 obs", dv.tasks.random_low_rank(3, 3, 1, 5, rng=1))]
    if not quick:
        tasks.append(("4×4 r1 8 obs", dv.tasks.random_low_rank(4, 4, 1, 8, rng=2)))
    betas = [1.0, 100.0] if quick else [1.0, 10.0, 100.0, 1000.0]
    n_smc, n_emcee = (150, 300) if quick else (2000, 2000)
    for label, task in tasks:
        window = samplers.FrobeniusBall(3.0 * float(np.linalg.norm(task.ground_truth)))
        for beta in betas:
            target = samplers.GibbsTarget(task, 3, 1, beta, window)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                t0 = time.perf_counter()
                ours = samplers.sample(target, "smc", n_smc, n_chains=4, rng=rng.integers(2**32), workers=1,
                                       progress=False, target_ess=0.8, n_mcmc=20)
                t_ours = time.perf_counter() - t0
                t0 = time.perf_counter()
                base = samplers.sample(target, "emcee", n_emcee, n_chains=4, rng=rng.integers(2**32), workers=1,
                                       progress=False)
                t_base = time.perf_counter() - t0
            r, eb, et = _diag(ours)
            rb, ebb, etb = _diag(base)
            ess_o, ess_b = min(eb, et), min(ebb, etb)
            met = bool(r <= 1.01 and ess_o >= 400 and t_ours <= 60) if not quick else None
            rows.append(Row(
                "references", f"{label} Gibbs β={beta:g} N=3: smc R-hat {r:.3f} ESS {eb:.0f}/{et:.0f} in {t_ours:.1f} s",
                t_ours / max(ess_o, 1e-12), f"emcee θ R-hat {rb:.2f} ESS {ebb:.0f}/{etb:.0f} in {t_base:.1f} s",
                t_base / max(ess_b, 1e-12),
                f"min(bulk, tail) ESS/s smc {ess_o / t_ours:.3g}, emcee {ess_b / t_base:.3g}",
                "R-hat ≤ 1.01, ESS ≥ 400 within 60 s", met,
                {"rhat": r, "ess_bulk": eb, "ess_tail": et, "seconds": t_ours, "rhat_emcee": rb,
                 "ess_bulk_emcee": ebb, "ess_tail_emcee": etb, "seconds_emcee": t_base, "beta": beta},
            ))
    # solution set: the 3×3 diagonal task, four components of equal mass
    task = dv.CompletionTask(np.eye(3), np.eye(3, dtype=bool), name="diagonal_3x3")
    sampler = samplers.SolutionSetSampler(task, 3, 1, window=samplers.FrobeniusBall(12.0))
    n_ss = 150 if quick else 500
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        ours = sampler.sample(n_ss, n_chains=4, rng=rng.integers(2**32), workers=1, progress=False)
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        starts, _ = sampler.find_starts(4, rng=rng.integers(2**32))
        walk = sampler.sample(4 * n_ss, n_chains=4, initial=starts, rng=rng.integers(2**32), workers=1, progress=False)
        walk = attach_diagnostics(walk, free=~task.mask, warn=False)
        t_walk = time.perf_counter() - t0
    r, eb, et = _diag(ours)
    rw, ebw, etw = _diag(walk)
    masses = ours.piece_masses()
    spread = max(abs(m - 0.25) / max(se, 1e-12) for m, se in masses.values())
    rows.append(Row(
        "references", f"3×3 diagonal rank-1 solution set N=3 (4 components): smc R-hat {r:.3f} ESS {eb:.0f}/{et:.0f} "
        f"in {t_ours:.1f} s", t_ours / max(min(eb, et), 1e-12),
        f"constrained walk R-hat {rw:.2f} ESS {ebw:.0f}/{etw:.0f} in {t_walk:.1f} s", t_walk / max(min(ebw, etw), 1e-12),
        f"masses {', '.join(f'{m:.3f}±{se:.3f}' for m, se in masses.values())} (exact 0.25 each; max |z| {spread:.1f})",
        "R-hat ≤ 1.01, ESS ≥ 400, masses within 4 MC s.e." if not quick else "",
        bool(r <= 1.01 and min(eb, et) >= 400 and spread <= 4) if not quick else None,
        {"rhat": r, "ess_bulk": eb, "ess_tail": et, "seconds": t_ours, "rhat_walk": rw, "ess_bulk_walk": ebw,
         "seconds_walk": t_walk, "masses": {k: list(v) for k, v in masses.items()}},
    ))
    if not quick:
        rows.extend(_scale_rows(rng))
    return rows


class _TooLong(Exception):
    """Raised by the progress callback of a scale row that ran past :data:`STOP_AFTER` times its goal."""


#: a scale row stops after this many times its goal (the pool's workers are terminated)
STOP_AFTER = 2.0
#: (label, (m, n, rank, observed, task seed), goal in seconds) of the scale targets
SCALE_TARGETS = [("8×8 rank 2, 24 obs", (8, 8, 2, 24, 1), 60.0), ("10×10 rank 1, 15 obs", (10, 10, 1, 15, 1), 60.0),
                 ("20×20 rank 2, 120 obs", (20, 20, 2, 120, 1), 300.0)]


def _scale_rows(rng: np.random.Generator, depth: float = 5.0, draws: int = 2000) -> list[Any]:
    import dlnvolume as dv
    import samplers
    from samplers.diagnostics import ConvergenceWarning

    from .bench import Row
    from .tasks import default_radius

    rows = []
    for label, (m, n, r, k, seed), goal in SCALE_TARGETS:
        task = dv.tasks.random_low_rank(m, n, r, k, rng=seed)
        sampler = samplers.SolutionSetSampler(task, depth, r, window=samplers.FrobeniusBall(default_radius(task)))
        if sampler.nominal_dim <= 0:  # S ∩ M_r is a finite set: no solution-set volume to sample
            rows.append(Row("references", f"solution set {label}: not sampled, S ∩ M_{r} is finite (nominal dimension "
                            f"{sampler.nominal_dim}); the target needs a Gibbs reference", 0.0, "(no peer)", None,
                            "not measured", f"converged in ≤ {goal:.0f} s", None, {"nominal_dimension": sampler.nominal_dim}))
            continue
        t0 = time.perf_counter()
        stop = STOP_AFTER * goal

        def watch(done: float, total: int) -> None:
            if time.perf_counter() - t0 > stop:
                raise _TooLong

        watch.partial = True  # type: ignore[attr-defined]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            try:
                ch = sampler.sample(draws, n_chains=4, rng=rng.integers(2**32), workers=2, progress=watch)
            except _TooLong:
                ch = None
            t = time.perf_counter() - t0
        if ch is None:  # a row that says so, instead of a bench that runs for hours
            rows.append(Row("references", f"solution set {label} N={depth:g} (dim {sampler.dim}): solution_smc "
                            f"4×{draws}, 2 workers, stopped after {t:.0f} s ({STOP_AFTER:g}× the goal)", t, "(no peer)",
                            None, "not finished", f"converged in ≤ {goal:.0f} s", False, {"seconds": t, "stopped": True}))
            continue
        d = ch.diagnostics
        r_hat, eb, et = _diag(ch)
        rows.append(Row(
            "references", f"solution set {label} N={depth:g} (dim {sampler.dim}): solution_smc 4×{draws}, 2 workers, "
            f"R-hat {r_hat:.3f} ESS {eb:.0f}/{et:.0f} in {t:.1f} s", t / max(min(eb, et), 1e-12), "(no peer)", None,
            f"k̂ {d['pareto_k']:.2f}, uncovered {d['uncovered']:.3f}, consistency |z| {d['consistency_z']:.1f}, "
            f"converged {d['converged']}", f"converged in ≤ {goal:.0f} s", bool(d["converged"] and t <= goal),
            {"rhat": r_hat, "ess_bulk": eb, "ess_tail": et, "seconds": t, "pareto_k": d["pareto_k"],
             "uncovered": d["uncovered"], "consistency_z": d["consistency_z"], "converged": bool(d["converged"]),
             "dimension": sampler.dim},
        ))
    return rows
