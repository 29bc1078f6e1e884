"""Trajectory records shared by the flows: :class:`Recorder` (fixed capacity, stride doubling),
:func:`update_crossings` and :class:`LoopOutput`. The end-to-end step loop itself is compiled
(:mod:`.compiled`, which implements the same recorder and crossing rules for one run); factor descent
(:mod:`.factor`) uses these directly."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Recorder", "update_crossings", "LoopOutput"]


class Recorder:
    """Per-run trajectory buffer of fixed capacity ``K`` with stride doubling.

    A run is recorded at step 0 and at every step that is a multiple of its stride (initially
    ``log_every``). When its ``K − 1`` periodic slots are full, every other record is dropped and the
    stride doubles, so the records always span the whole run evenly in step index; the last slot holds
    the final state. Shapes depend only on ``K``.
    """

    def __init__(self, B: int, K: int, k: int, log_every: int) -> None:
        self.K = K
        self.C = K - 1
        self.t = np.zeros((B, K))
        self.loss = np.zeros((B, K))
        self.sigma = np.zeros((B, K, k))
        self.n = np.zeros(B, dtype=np.int64)
        self.stride = np.full(B, log_every, dtype=np.int64)

    def add(self, g: np.ndarray, steps: np.ndarray, t: np.ndarray, loss: np.ndarray, sigma: np.ndarray) -> None:
        """Record runs ``g`` (global indices) at step counts ``steps`` if they are due."""
        due = steps % self.stride[g] == 0
        full = due & (self.n[g] >= self.C)
        if full.any():
            gf = g[full]
            keep = np.arange(0, self.C, 2)
            self.t[gf, : keep.size] = self.t[gf][:, keep]
            self.loss[gf, : keep.size] = self.loss[gf][:, keep]
            self.sigma[gf, : keep.size] = self.sigma[gf][:, keep]
            self.n[gf] = keep.size
            self.stride[gf] *= 2
            due &= steps % self.stride[g] == 0
        if due.any():
            gd = g[due]
            slot = self.n[gd]
            self.t[gd, slot] = t[due]
            self.loss[gd, slot] = loss[due]
            self.sigma[gd, slot] = sigma[due]
            self.n[gd] = slot + 1

    def final(self, g: np.ndarray, t: np.ndarray, loss: np.ndarray, sigma: np.ndarray) -> None:
        """Record the final state of runs ``g`` unless their last record is already at time ``t``."""
        last = self.t[g, np.maximum(self.n[g] - 1, 0)]
        fresh = (self.n[g] == 0) | (last != t)
        if fresh.any():
            gf = g[fresh]
            slot = np.minimum(self.n[gf], self.K - 1)
            self.t[gf, slot] = t[fresh]
            self.loss[gf, slot] = loss[fresh]
            self.sigma[gf, slot] = sigma[fresh]
            self.n[gf] = slot + 1

    def tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``times, loss, sigma, n_logged``, rows after a run's last record repeating it."""
        idx = np.minimum(np.arange(self.K)[None, :], np.maximum(self.n - 1, 0)[:, None])
        rows = np.arange(self.t.shape[0])[:, None]
        return self.t[rows, idx], self.loss[rows, idx], self.sigma[rows, idx], self.n.copy()


def update_crossings(
    crossing: np.ndarray, g: np.ndarray, threshold: float,
    t_prev: np.ndarray, s_prev: np.ndarray, t_new: np.ndarray, s_new: np.ndarray,
) -> None:
    """First time each singular value exceeds ``threshold``, linear interpolation in time between two
    checks ``(t_prev, s_prev) → (t_new, s_new)`` of runs ``g``; fills ``crossing[g]`` in place where it is
    still ``inf``. The single definition used by every flow (end_to_end: every accepted step; factor
    descent: every logged step)."""
    newly = (s_new > threshold) & ~np.isfinite(crossing[g])
    if not newly.any():
        return
    tp = t_prev[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.clip((threshold - s_prev) / (s_new - s_prev), 0.0, 1.0)
    tc = np.where(s_prev > threshold, tp, tp + frac * (t_new[:, None] - tp))
    cr = crossing[g]
    cr[newly] = tc[newly]
    crossing[g] = cr


@dataclass
class LoopOutput:
    Y: np.ndarray  # (B, m, n) final (last finite) states
    t: np.ndarray  # (B,)
    loss: np.ndarray  # (B,)
    n_steps: np.ndarray  # (B,) accepted steps
    n_rejected: np.ndarray  # (B,)
    status: np.ndarray  # (B,) str
    log_t: np.ndarray  # (B, K)
    log_loss: np.ndarray  # (B, K)
    log_sigma: np.ndarray  # (B, K, k)
    n_logged: np.ndarray  # (B,)
    crossing: np.ndarray  # (B, k)
    min_sigma_ratio: np.ndarray  # (B,) min over accepted states of σ_min/σ_1
    unresolved: np.ndarray | None = None  # (B,) bool, compiled.unresolved
