"""Initial laws of the flows: Gaussian factors (Arora et al. 2019), a Gaussian matrix of given norm,
scaled orthogonal matrices, and balanced factors of a given product (MATH.md §1.2, §6.2).

Every draw of run ``i`` uses ``np.random.default_rng(seeds[i])`` only, so a run does not depend on how
runs are batched.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..validation import short_repr, check_int
from ..completion import CompletionTask
from ..errors import InvalidArgumentError

__all__ = ["INITS", "INIT_LAWS", "gaussian_factors", "balanced_factors", "draw_x0"]

#: ``init`` of :func:`dlnvolume.flows.factor_descent` (how the factors are drawn).
INITS = ("gaussian", "balanced", "orthogonal")
#: ``init_law`` of :func:`dlnvolume.flows.endpoints` (the law of ``X0``; docs/flows.md).
INIT_LAWS = ("gaussian_factors", "gaussian_matrix", "orthogonal")


def _widths(task: CompletionTask, N: int, widths: Any) -> list[int]:
    """Layer sizes ``d_0 = n, d_1..d_{N−1}, d_N = m``."""
    m, n = task.shape
    if widths is None:
        hidden = [max(m, n)] * (N - 1)
    else:
        try:
            hidden = list(widths)
        except TypeError:
            raise InvalidArgumentError(f"widths={short_repr(widths)}; expected a sequence of {N - 1} hidden widths") from None
        if len(hidden) != N - 1:
            raise InvalidArgumentError(
                f"widths={short_repr(widths)} has {len(hidden)} entries; depth {N} needs {N - 1} hidden widths"
            )
        hidden = [check_int(h, "widths[i]", minimum=1) for h in hidden]
    return [n] + hidden + [m]


def gaussian_factors(
    dims: Sequence[int], init_scale: float, rng: np.random.Generator
) -> list[np.ndarray]:
    """Gaussian factors of Arora et al. 2019 (MATH.md §6.2): entries ``N(0, (s^{1/N}/√d_0)²)``.

    ``dims = [d_0 = n, d_1, …, d_N = m]``; returns ``[W_1, …, W_N]``, ``W_p`` of shape
    ``(d_p, d_{p−1})``, drawn in that order from ``rng``. For square tasks with hidden widths ``n``,
    ``‖W_N⋯W_1‖_F ≈ s√n``.
    """
    N = len(dims) - 1
    std = init_scale ** (1.0 / N) / math.sqrt(dims[0])
    return [std * rng.standard_normal((dims[p], dims[p - 1])) for p in range(1, N + 1)]


def _haar(d: int, rng: np.random.Generator) -> np.ndarray:
    Z = rng.standard_normal((d, d))
    Q, R = np.linalg.qr(Z)
    return Q * np.sign(np.where(np.diag(R) == 0, 1.0, np.diag(R)))


def balanced_factors(X0: np.ndarray, dims: Sequence[int], rng: np.random.Generator) -> list[np.ndarray]:
    """Exactly balanced factors with product ``X0`` (MATH.md §1.2 recipe).

    ``X0 = Q Σ Rᵀ``; ``W_1 = Q_1 Σ^{1/N} Rᵀ``, ``W_p = Q_p Σ^{1/N} Q_{p−1}ᵀ``, ``W_N = Q Σ^{1/N} Q_{N−1}ᵀ``
    with Haar-random ``Q_p ∈ O(d_p)`` drawn from ``rng`` and ``Σ^{1/N}`` zero-padded to each
    ``d_p × d_{p−1}``; needs hidden widths ``d_p ≥ min(m, n)``. Then ``G_p = 0`` for all ``p``.
    """
    N = len(dims) - 1
    m, n = X0.shape
    k = min(m, n)
    Q, s, Rt = np.linalg.svd(X0, full_matrices=True)
    root = s ** (1.0 / N)
    frames = [Rt.T] + [_haar(dims[p], rng) for p in range(1, N)] + [Q]
    Ws = []
    for p in range(1, N + 1):
        D = np.zeros((dims[p], dims[p - 1]))
        D[np.arange(k), np.arange(k)] = root
        Ws.append(frames[p] @ D @ frames[p - 1].T)
    return Ws


def _init_factors(
    init: str, dims: list[int], init_scale: float, X0: np.ndarray | None, seeds: np.ndarray
) -> list[np.ndarray]:
    """Per-run initial factors, run ``i`` drawn from ``default_rng(seeds[i])``; stacked ``(B, d_p, d_{p−1})``."""
    N = len(dims) - 1
    m, n = dims[-1], dims[0]
    per_run = []
    for i, seed in enumerate(seeds):
        rng = np.random.default_rng(seed)
        if init == "gaussian":
            Ws = gaussian_factors(dims, init_scale, rng)
        elif init == "orthogonal":
            k = min(m, n)
            A = _haar(m, rng)[:, :k] @ _haar(n, rng)[:k, :]
            Ws = balanced_factors(init_scale * A, dims, rng)
        else:  # balanced
            assert X0 is not None
            Ws = balanced_factors(X0[i], dims, rng)
        per_run.append(Ws)
    return [np.stack([Ws[p] for Ws in per_run]) for p in range(N)]


def _product(Ws: Sequence[np.ndarray]) -> np.ndarray:
    X = Ws[0]
    for W in Ws[1:]:
        X = W @ X
    return X


def _gram_differences(Ws: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``G_p = W_{p+1}ᵀW_{p+1} − W_pW_pᵀ``, ``p = 1..N−1`` (MATH.md §1.2)."""
    T = lambda A: np.swapaxes(A, -1, -2)  # noqa: E731
    return [T(Ws[p]) @ Ws[p] - Ws[p - 1] @ T(Ws[p - 1]) for p in range(1, len(Ws))]




def draw_x0(law: str, dims: list[int], init_scale: float, seeds: np.ndarray) -> np.ndarray:
    """Initial matrices ``(B, m, n)``, run ``i`` from ``default_rng(seeds[i])`` (docs/flows.md, "Initial laws").

    * "gaussian_factors": ``X0 = W_{N'}⋯W_1`` with the factors of :func:`gaussian_factors`
      (``dims = [n, d_1, …, m]``, ``N' = len(dims) − 1``). ``‖X0‖_F`` shrinks with ``N'`` (products of
      Gaussian matrices: median ``‖X0‖_F ≈ 6e-6`` for ``s = 1e-3``, ``N' = 20``, 2×2) and the spectrum
      spreads (``σ_min/σ_max`` ~ ``e^{−c N'}``, Lyapunov exponents).
    * "gaussian_matrix": ``X0 = s·G/‖G‖_F`` with ``G_ij ~ N(0, 1)``: a uniformly random direction with
      ``‖X0‖_F = s`` exactly, whatever the depth.
    * "orthogonal": ``X0 = s·Q_L Q_R`` with Haar-random semi-orthogonal ``Q_L (m×k)``, ``Q_R (k×n)``:
      every singular value equals ``s`` (``‖X0‖_F = s√k``).
    """
    m, n = dims[-1], dims[0]
    out = np.empty((len(seeds), m, n))
    for i, seed in enumerate(seeds):
        out[i] = _draw_one(law, dims, init_scale, np.random.default_rng(seed))
    return out


def _draw_one(law: str, dims: list[int], init_scale: float, rng: np.random.Generator) -> np.ndarray:
    m, n = dims[-1], dims[0]
    if law == "gaussian_factors":
        return _product(gaussian_factors(dims, init_scale, rng))
    if law == "gaussian_matrix":
        G = rng.standard_normal((m, n))
        return init_scale * G / np.linalg.norm(G)
    k = min(m, n)  # orthogonal
    return init_scale * (_haar(m, rng)[:, :k] @ _haar(n, rng)[:k, :])


def balanced_from_law(law: str, dims: list[int], init_scale: float, seeds: np.ndarray) -> list[np.ndarray]:
    """Exactly balanced factors of ``X0`` drawn from ``law``, stacked ``(B, d_p, d_{p−1})``; run ``i``
    draws ``X0`` and then the Haar frames from one ``default_rng(seeds[i])``."""
    per = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        per.append(balanced_factors(_draw_one(law, dims, init_scale, rng), dims, rng))
    return [np.stack([w[p] for w in per]) for p in range(len(dims) - 1)]
