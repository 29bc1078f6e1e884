"""ESS per second and per target evaluation of the samplers on one target (numbers for reports)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .diagnostics import ess
from .driver import sample
from .targets import GibbsTarget

__all__ = ["BenchmarkResult", "ess_benchmark"]


@dataclass(frozen=True)
class BenchmarkResult:
    """One method's efficiency on the log-volume density statistic ``log ρ_N^{(r)}(X)`` (``ess``) and
    on the largest singular value σ₁ (``ess_sigma1``)."""

    method: str
    seconds: float
    n_evaluations: int
    ess: float
    ess_per_second: float
    ess_per_evaluation: float
    accept_prob: float
    ess_sigma1: float = float("nan")  # ESS of the largest singular value σ₁
    ess_sigma1_per_second: float = float("nan")


def ess_benchmark(
    target: GibbsTarget,
    methods: Sequence[str | tuple[str, dict[str, Any]]] = ("rmala", "emcee"),
    n_draws: int = 2000,
    *,
    n_chains: int = 2,
    rng: Any = None,
    workers: int | None = 1,
) -> list[BenchmarkResult]:
    """Run each method once (same seed) and report ESS of ``log ρ`` per second and per evaluation.

    ``methods`` items are names or ``(name, sample_kwargs)`` pairs, e.g.
    ``("emcee", {"coordinates": "matrix", "thin": 4})``. Wall-clock time includes warm-up.
    """
    out = []
    for item in methods:
        name, kwargs = (item, {}) if isinstance(item, str) else item
        t0 = time.perf_counter()
        ch = sample(target, name, n_draws, n_chains=n_chains, rng=rng, workers=workers, progress=False, **kwargs)
        sec = time.perf_counter() - t0
        e = ess(target.log_volume_density(ch.draws))
        e1 = ess(np.linalg.svd(ch.draws, compute_uv=False)[..., 0])
        ev = int(np.sum(ch.n_evaluations))
        label = name if not kwargs else f"{name}({', '.join(f'{k}={v}' for k, v in kwargs.items())})"
        out.append(BenchmarkResult(label, sec, ev, e, e / sec, e / ev, float(np.mean(ch.accept_prob)), e1, e1 / sec))
    return out
