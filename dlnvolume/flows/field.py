"""The end-to-end vector field ``Y ↦ −Ā_{N,Y}(E'(Y))`` on a stack of matrices (MATH.md §1.3, §2.1, §2.3).

With the full SVD ``Y = U Σ Vᵀ`` the operator is diagonal in the basis ``{U E_ij Vᵀ}``:
``Ā_Y(G) = U (λ ⊙ UᵀGV) Vᵀ`` with the multipliers ``λ_ij`` of
:func:`dlnvolume.spectral.log_multipliers` (``A`` instead of ``Ā`` when ``normalized=False``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..completion import CompletionTask
from ..spectral import log_multipliers

__all__ = ["EndToEndField", "FieldEval"]


@dataclass(frozen=True)
class FieldEval:
    """``F (b, m, n)`` the field, ``sigma (b, k)``, ``bad (b,)``; with ``full``: ``U (b, m, m)``,
    ``Vh (b, n, n)`` and ``lam (b, m, n)`` (the operator at ``Y``, for a linearly implicit stepper)."""

    F: np.ndarray
    sigma: np.ndarray
    bad: np.ndarray
    U: np.ndarray | None = None
    Vh: np.ndarray | None = None
    lam: np.ndarray | None = None


class EndToEndField:
    """``Y ↦ −Ā_{N,Y}(E'(Y))`` (or ``−A``) on a stack ``(b, m, n)``, with singular values and a bad-row flag."""

    def __init__(self, task: CompletionTask, depth: float, normalized: bool) -> None:
        self.mask = task._observed
        self.values = task.values
        self.shape = task.shape
        self.k = min(task.shape)
        self.depth = depth
        self.normalized = normalized

    def __call__(self, Y: np.ndarray, full: bool = False) -> FieldEval:
        bad = ~np.all(np.isfinite(Y), axis=(-2, -1))
        if bad.any():
            Y = np.where(bad[:, None, None], 0.0, Y)
        G = self.mask * (Y - self.values)
        if self.depth == 1 and not full:
            s = np.linalg.svd(Y, compute_uv=False)
            return FieldEval(-G, s, bad)
        U, s, Vh = np.linalg.svd(Y, full_matrices=True)
        with np.errstate(divide="ignore"):
            ls = np.log(s)
        with np.errstate(over="ignore", invalid="ignore"):
            lam = np.exp(log_multipliers(ls, self.shape, self.k, self.depth, self.normalized))
            H = np.swapaxes(U, -1, -2) @ G @ np.swapaxes(Vh, -1, -2)
            F = -(U @ (lam * H) @ Vh)
        badF = ~np.all(np.isfinite(F), axis=(-2, -1))
        if badF.any():
            F = np.where(badF[:, None, None], 0.0, F)
        bad = bad | badF
        if full:
            if bad.any():  # keep the cached operator finite (the row is refused anyway)
                lam = np.where(bad[:, None, None], 0.0, lam)
            return FieldEval(F, s, bad, U, Vh, lam)
        return FieldEval(F, s, bad)
