"""Task generators (MATH.md §5.2, §5.3, §6.2)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .validation import check_int, check_rng
from .completion import CompletionTask
from .errors import InvalidArgumentError

__all__ = ["diagonal_2x2", "razin_cohen_2x2", "random_low_rank"]


def diagonal_2x2() -> CompletionTask:
    """Observe ``X11 = X22 = 1`` (MATH.md §5.2). Solutions ``[[1, a], [b, 1]]``; rank 1 on ``ab = 1``."""
    return CompletionTask(np.eye(2), np.eye(2, dtype=bool), name="diagonal_2x2")


def razin_cohen_2x2() -> CompletionTask:
    """Observe ``X12 = X21 = 1``, ``X22 = 0`` (MATH.md §5.3). Every solution has ``det = -1``."""
    values = np.array([[0.0, 1.0], [1.0, 0.0]])
    mask = np.array([[False, True], [True, True]])
    return CompletionTask(values, mask, name="razin_cohen_2x2")


def random_low_rank(m: int, n: int, rank: int, n_observed: int, *, rng: Any = None) -> CompletionTask:
    """Random low-rank completion task with the conventions of Arora et al. 2019 (MATH.md §6.2).

    Ground truth ``W* = U Vᵀ/√r`` with ``U`` (m×r), ``V`` (n×r) i.i.d. ``N(0, 1)``, rescaled to
    ``‖W*‖_F = √(mn)`` (RMS entry 1); ``n_observed`` entries drawn uniformly without replacement.
    The ground truth is kept on the task for :meth:`CompletionTask.test_error`.
    """
    m = check_int(m, "m", minimum=1)
    n = check_int(n, "n", minimum=1)
    rank = check_int(rank, "rank", minimum=1, maximum=min(m, n))
    n_observed = check_int(n_observed, "n_observed", minimum=1, maximum=m * n)
    rng = check_rng(rng)
    U = rng.standard_normal((m, rank))
    V = rng.standard_normal((n, rank))
    W = U @ V.T / math.sqrt(rank)
    norm = np.linalg.norm(W)
    if norm == 0:  # pragma: no cover - probability zero
        raise InvalidArgumentError("degenerate ground truth; try another seed")
    W *= math.sqrt(m * n) / norm
    idx = rng.choice(m * n, size=n_observed, replace=False)
    mask = np.zeros(m * n, dtype=bool)
    mask[idx] = True
    mask = mask.reshape(m, n)
    return CompletionTask(np.where(mask, W, 0.0), mask, ground_truth=W, name=f"random_low_rank_{m}x{n}_r{rank}_obs{n_observed}")
