"""Dual-averaging step-size adaptation (Hoffman & Gelman 2014, JMLR 15, Algorithm 5)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

__all__ = ["DualAveraging"]


@dataclass(frozen=True)
class DualAveraging:
    """State of dual averaging on ``log h`` towards a target acceptance ``delta``.

    ``update(alpha)`` returns the next state; ``step_size`` is the current iterate (used during warm-up),
    ``final_step_size`` the averaged iterate (fixed after warm-up).
    """

    mu: float
    delta: float = 0.57
    gamma: float = 0.05
    t0: float = 10.0
    kappa: float = 0.75
    t: int = 0
    h_bar: float = 0.0
    log_h: float = 0.0
    log_h_avg: float = 0.0

    @classmethod
    def start(cls, step_size: float, delta: float = 0.57) -> "DualAveraging":
        return cls(mu=math.log(10.0 * step_size), delta=delta, log_h=math.log(step_size), log_h_avg=math.log(step_size))

    def update(self, accept_prob: float) -> "DualAveraging":
        a = accept_prob if math.isfinite(accept_prob) else 0.0
        t = self.t + 1
        eta = 1.0 / (t + self.t0)
        h_bar = (1.0 - eta) * self.h_bar + eta * (self.delta - a)
        log_h = self.mu - math.sqrt(t) / self.gamma * h_bar
        log_h = min(max(log_h, -50.0), 20.0)
        w = t ** (-self.kappa)
        log_h_avg = w * log_h + (1.0 - w) * self.log_h_avg
        return replace(self, t=t, h_bar=h_bar, log_h=log_h, log_h_avg=log_h_avg)

    @property
    def step_size(self) -> float:
        return math.exp(self.log_h)

    @property
    def final_step_size(self) -> float:
        return math.exp(self.log_h_avg)
