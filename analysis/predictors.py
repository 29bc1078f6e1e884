"""What each implicit-bias hypothesis predicts on a matrix-completion task (docs/math.md §5, §7).

Gradient flow from a small initialization ends at *some* solution ``X`` of the observed entries; the
hypotheses compared here say *which*. Each predictor returns points of the solution set ``S`` (docs/math.md
§5.1), in one registry :data:`PREDICTORS` (a new hypothesis = one function + one registry line):

``volume_max`` (depth-dependent)
    Local maxima of ``log ρ_N^{(r)}(X)`` (docs/math.md §3.3–§3.4, :func:`dlnvolume.log_volume_density`) over
    ``S ∩ M_r ∩ {‖X‖_F ≤ radius}`` (CMV's high-volume bias, docs/math.md §7).
``nuclear_norm_min``, ``frobenius_min``
    Local minima of ``‖X‖_*`` and ``‖X‖_F`` over ``S ∩ M_r ∩ {‖X‖_F ≤ radius}``.
``nuclear_norm_min_any_rank``
    The convex problem ``min ‖X‖_* s.t. X ∈ S`` (no rank constraint, no window; docs/math.md §8 item 26).
    Its minimizers form a face ``{U₁ K V₁ᵀ : K ⪰ 0, P_Ω(U₁ K V₁ᵀ) = M_Ω}`` (``U₁, V₁`` the singular
    subspaces of a dual certificate ``Λ`` with singular value 1); :meth:`Prediction.distance` measures the
    distance to that whole set.
``greedy_low_rank``
    Greedy Low-Rank Learning, Li, Luo & Lyu, ICLR 2021 (Algorithm 1, asymmetric form): the limit of
    depth-2 gradient flow from an infinitesimal initialization, rank one step at a time.

Local optima on ``S ∩ M_r`` are found by a multi-start Riemannian trust-region Newton method: starts from
alternating projections (truncated SVD, then onto ``S``) finished by a Newton projection onto
``S ∩ M_r``; steps in the chart ``w ↦ Π(X + T w)`` (``T`` an orthonormal tangent basis, ``Π`` the Newton
projection along the normal space of ``S ∩ M_r``, the constraints being the observed entries and the Schur
complement of ``X`` in its own singular frames); exact Riemannian gradient (projected Euclidean gradient of a
spectral function) and a finite-difference chart Hessian; on the window boundary the same method on
``S ∩ M_r ∩ {‖X‖_F = radius}`` with an active-set test of the multiplier sign. Searches that reach
``σ_r/σ_1 < 1e-8`` left the stratum and are reported in the note, not as points. Points closer than
``1e-6 (1 + ‖X‖_F)`` are one; sorted best first. Starting points are cached per task, rank, radius,
``n_starts`` and seed, so :func:`predict` with the same ``rng`` at a second depth reuses them.

All five predictors run with one BLAS thread (tiny matrices; see ``_one_blas_thread``).
"""

from __future__ import annotations

import functools
import math
import numbers
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import numpy as np
from scipy import integrate, optimize

import dlnvolume as dv
from dlnvolume import CompletionTask
from dlnvolume.errors import InvalidArgumentError, InvalidRankError, ShapeError
from dlnvolume.validation import check_depth, check_int, check_matrix, check_positive, check_rng, short_repr

__all__ = ["Prediction", "predict", "PREDICTORS", "DEPTH_INDEPENDENT", "RANK_RTOL", "GREEDY_EPSILON"]

RANK_RTOL = 1e-6
"""Numerical rank: singular values above ``RANK_RTOL · σ_1``."""
GREEDY_EPSILON = 1e-10
"""Greedy low-rank: each new rank-one term starts as ``ε u vᵀ`` with ``ε = GREEDY_EPSILON · ‖M_Ω‖_F``."""

_F = TypeVar("_F", bound=Callable[..., Any])


def _one_blas_thread(fn: _F) -> _F:
    """Run ``fn`` with one BLAS thread: its linear algebra is on tiny matrices, where OpenBLAS threads on a
    shared machine cost up to 10× (measured: volume_max on the 8×8 task 18 s with 2 threads, 1.5 s with 1)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            return fn(*args, **kwargs)
    return wrapper  # type: ignore[return-value]


_STRATUM_EXIT = 1e-8  # σ_r/σ_1 below this: the point left M_r
_DEDUP = 1e-6
_J_RTOL = 1e-9  # numerical rank of the constraint Jacobian (as samplers.solution_set)


# ----------------------------------------------------------------------------------------------- result
@dataclass(frozen=True, eq=False)
class Prediction:
    """What one hypothesis predicts on a task (compared by identity: its fields are arrays).

    Attributes
    ----------
    name : str
        Registry name.
    points : (k, m, n) array
        Predicted points (``k >= 0``), best objective first.
    values : (k,) array
        Objective at each point: ``log ρ_N^{(r)}`` (volume_max), ``‖X‖_*`` (nuclear norms; for
        ``nuclear_norm_min_any_rank`` every entry is the optimal value ``ν*``), ``‖X‖_F`` (frobenius_min),
        the loss ``E`` (greedy_low_rank).
    objective : str
    rank : int
        Largest numerical rank of the points (``σ_i > 1e-6 σ_1``); ``-1`` without points.
    depth : float or None
        Depth the prediction was computed for; None when it does not depend on depth.
    applies : bool
        False when the predictor does not apply on this task (``note`` says why).
    note : str
    on_boundary : (k,) bool array
        Points on the window boundary ``‖X‖_F = radius`` (optima of the objective restricted to the window).
    """

    name: str
    points: np.ndarray
    values: np.ndarray
    objective: str
    rank: int
    depth: float | None
    applies: bool
    note: str = ""
    on_boundary: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    _face: Any = field(default=None, repr=False, compare=False)

    def distance(self, X: Any) -> np.ndarray:
        """Frobenius distance ``(...)`` from ``X`` ``(..., m, n)`` to the nearest predicted point.

        For ``nuclear_norm_min_any_rank``: the distance to the whole set of minimizers (its optimal face).
        NaN when there are no points.
        """
        X = check_matrix(X)
        m, n = self.points.shape[1:]
        if X.shape[-2:] != (m, n):
            raise ShapeError(f"X has shape {X.shape}; expected (..., {m}, {n}) like the predicted points")
        if self._face is None and self.points.shape[0] == 0:
            return np.full(X.shape[:-2], np.nan)
        if self._face is not None:
            return self._face.distance(X)
        D = X[..., None, :, :] - self.points
        return np.min(np.sqrt(np.sum(D * D, axis=(-2, -1))), axis=-1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (``depth`` ``"inf"`` for ``math.inf``)."""
        depth: Any = self.depth
        if depth is not None and math.isinf(depth):
            depth = "inf"
        return {
            "name": self.name,
            "objective": self.objective,
            "points": self.points.tolist(),
            "values": [float(v) for v in self.values],
            "rank": int(self.rank),
            "depth": depth,
            "applies": bool(self.applies),
            "note": self.note,
            "on_boundary": [bool(b) for b in self.on_boundary],
        }


def _rank_of(points: np.ndarray) -> int:
    if points.shape[0] == 0:
        return -1
    s = np.linalg.svd(points, compute_uv=False)
    return int(np.max(np.sum(s > RANK_RTOL * np.maximum(s[:, :1], 1e-300), axis=1)))


def _make(name: str, points: list | np.ndarray, values: list | np.ndarray, objective: str, depth: float | None,
          applies: bool, note: str, shape: tuple[int, int], boundary: Any = None, face: Any = None) -> Prediction:
    P = np.asarray(points, dtype=np.float64).reshape((-1,) + tuple(shape))
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    b = np.zeros(P.shape[0], dtype=bool) if boundary is None else np.asarray(boundary, dtype=bool).reshape(-1)
    for a in (P, v, b):
        a.setflags(write=False)
    return Prediction(name, P, v, objective, _rank_of(P), depth, bool(applies), note, b, face)


# ----------------------------------------------------------------------------------------------- S ∩ M_r
@dataclass(frozen=True, eq=False)
class _Frames:
    X: np.ndarray
    U: np.ndarray  # (m, m)
    s: np.ndarray
    V: np.ndarray  # (n, n)
    T: np.ndarray  # (d, m, n) orthonormal tangent basis
    Nb: np.ndarray  # (k, m, n) orthonormal normal basis


class _Manifold:
    """``S ∩ M_r``, or with ``sphere`` its intersection with ``{‖X‖_F = sphere}``.

    Constraints ``q(Y) = (Y_Ω − M_Ω, Schur complement of Uᵀ Y V w.r.t. its top-left r×r block, (‖Y‖² − R²)/2R)``
    in the frames ``U, V`` of a base point (as ``samplers.solution_set``).
    """

    def __init__(self, task: CompletionTask, rank: int, sphere: float | None = None):
        self.mask, self.M = task.mask, task.values
        self.m, self.n = task.shape
        self.r = rank
        self.sphere = sphere
        self.obs_rows = np.eye(self.m * self.n)[self.mask.ravel()]

    def frames(self, X: np.ndarray) -> _Frames:
        m, n, r = self.m, self.n, self.r
        U, s, Vh = np.linalg.svd(X)
        V = Vh.T
        rows = [self.obs_rows, np.einsum("ia,jb->abij", U[:, r:], V[:, r:]).reshape(-1, m * n)]
        if self.sphere is not None:
            rows.append(X.reshape(1, -1) / max(np.linalg.norm(X), 1e-300))
        J = np.concatenate(rows, axis=0)
        _, S, Zt = np.linalg.svd(J, full_matrices=True)
        k = int(np.sum(S > _J_RTOL * S[0]))
        return _Frames(X, U, s, V, Zt[k:].reshape(-1, m, n), Zt[:k].reshape(-1, m, n))

    def q(self, Y: np.ndarray, fr: _Frames) -> np.ndarray:
        r = self.r
        parts = [(Y - self.M)[:, self.mask]]
        Yh = fr.U.T @ Y @ fr.V
        if r < min(self.m, self.n):
            A11 = np.linalg.inv(Yh[:, :r, :r])
            parts.append((Yh[:, r:, r:] - Yh[:, r:, :r] @ A11 @ Yh[:, :r, r:]).reshape(Y.shape[0], -1))
        if self.sphere is not None:
            R = self.sphere
            parts.append(((np.sum(Y * Y, axis=(1, 2)) - R * R) / (2 * R))[:, None])
        return np.concatenate(parts, axis=1)

    def q_jac(self, Y: np.ndarray, fr: _Frames) -> np.ndarray:
        """Jacobian ``(P, p, k)`` of :meth:`q` at ``Y`` along the normal basis."""
        r, Nb, P = self.r, fr.Nb, Y.shape[0]
        k = Nb.shape[0]
        parts = [np.broadcast_to(Nb[:, self.mask].T, (P, int(self.mask.sum()), k))]
        if r < min(self.m, self.n):
            Yh = fr.U.T @ Y @ fr.V
            A11 = np.linalg.inv(Yh[:, :r, :r])
            left, right = Yh[:, r:, :r] @ A11, A11 @ Yh[:, :r, r:]
            Dh = fr.U.T @ Nb @ fr.V  # (k, m, n)
            d11, d12, d21, d22 = Dh[:, :r, :r], Dh[:, :r, r:], Dh[:, r:, :r], Dh[:, r:, r:]
            ds = (d22[None] - d21[None] @ right[:, None] - left[:, None] @ d12[None]
                  + left[:, None] @ d11[None] @ right[:, None])
            parts.append(ds.reshape(P, k, -1).transpose(0, 2, 1))
        if self.sphere is not None:
            parts.append(np.einsum("pij,kij->pk", Y, Nb)[:, None, :] / self.sphere)
        return np.concatenate(parts, axis=1)

    def retract(self, fr: _Frames, W: np.ndarray, tol: float = 1e-13,
                max_iter: int = 30) -> tuple[np.ndarray, np.ndarray]:
        """Points ``Π(X + Σ W_pk T_k)`` ``(P, m, n)`` by Newton along the normal space, and success flags."""
        P = W.shape[0]
        Z = fr.X[None] + np.einsum("pd,dij->pij", W, fr.T)
        k = fr.Nb.shape[0]
        c = np.zeros((P, k))
        scale = 1.0 + np.linalg.norm(Z.reshape(P, -1), axis=1)
        done = np.zeros(P, dtype=bool)
        failed = np.zeros(P, dtype=bool)
        Y = Z
        with np.errstate(all="ignore"):
            for _ in range(max_iter):
                Y = Z + np.einsum("pk,kij->pij", c, fr.Nb)
                try:
                    qv = self.q(Y, fr)
                except np.linalg.LinAlgError:
                    return Z, np.zeros(P, dtype=bool)
                res = np.max(np.abs(qv), axis=1) if qv.shape[1] else np.zeros(P)
                failed |= ~np.isfinite(res)
                done |= (res < tol * scale) & ~failed
                todo = ~done & ~failed
                if not todo.any() or k == 0:
                    break
                Jc = self.q_jac(Y[todo], fr)
                if Jc.shape[1] == Jc.shape[2]:
                    try:
                        step = np.linalg.solve(Jc, qv[todo][:, :, None])[:, :, 0]
                    except np.linalg.LinAlgError:
                        step = (np.linalg.pinv(Jc) @ qv[todo][:, :, None])[:, :, 0]
                else:
                    step = (np.linalg.pinv(Jc) @ qv[todo][:, :, None])[:, :, 0]
                c[todo] -= step
                failed |= ~np.all(np.isfinite(c), axis=1) | (np.linalg.norm(c, axis=1) > 1e3 * scale)
        ok = done & ~failed
        return Y, ok


# ----------------------------------------------------------------------------------------------- objectives
@dataclass(frozen=True, eq=False)
class _Spectral:
    """``φ(X) = sign · f(σ_1, …, σ_r)`` for a symmetric smooth ``f`` of the top-``r`` singular values.

    ``df`` (optional) is its gradient; otherwise a fourth-order central difference in each ``σ_i``. The
    Euclidean gradient at a rank-``r`` point is ``U_r diag(∂f/∂σ) V_rᵀ``.
    """

    f: Callable[[np.ndarray], np.ndarray]  # (P, r) -> (P,)
    sign: float
    r: int
    df: Callable[[np.ndarray], np.ndarray] | None = None

    def value(self, Y: np.ndarray) -> np.ndarray:
        return self.sign * self.f(np.linalg.svd(Y, compute_uv=False)[:, : self.r])

    def grad(self, fr: _Frames) -> np.ndarray:
        r = self.r
        s = fr.s[:r]
        if self.df is not None:
            ds = self.df(s[None])[0]
        else:
            h = 1e-3 * s
            steps = np.array([-2.0, -1.0, 1.0, 2.0])
            S = np.repeat(s[None, None, :], 4, axis=0).repeat(r, axis=1)  # (4, r, r)
            for i in range(r):
                S[:, i, i] += steps * h[i]
            F = self.f(S.reshape(-1, r)).reshape(4, r)
            ds = (F[0] - 8 * F[1] + 8 * F[2] - F[3]) / (12 * h)
        return self.sign * (fr.U[:, :r] * ds) @ fr.V[:, :r].T


def _embed(sig: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    E = np.zeros(sig.shape[:-1] + tuple(shape))
    idx = np.arange(sig.shape[-1])
    E[..., idx, idx] = sig
    return E


def _log_rho(depth: float, rank: int, shape: tuple[int, int]) -> _Spectral:
    f = lambda s: dv.log_volume_density(_embed(s, shape), depth, rank=rank)  # noqa: E731
    return _Spectral(f, -1.0, rank)


def _nuclear(rank: int) -> _Spectral:
    return _Spectral(lambda s: np.sum(s, axis=-1), 1.0, rank, lambda s: np.ones_like(s))


def _frobenius(rank: int) -> _Spectral:
    def df(s: np.ndarray) -> np.ndarray:
        return s / np.sqrt(np.sum(s * s, axis=-1, keepdims=True))
    return _Spectral(lambda s: np.sqrt(np.sum(s * s, axis=-1)), 1.0, rank, df)


# ----------------------------------------------------------------------------------------------- local search
@dataclass(frozen=True, eq=False)
class _Local:
    X: np.ndarray
    value: float  # φ (minimized)
    status: str  # "interior", "boundary", "left_stratum", "failed"
    flat: int = 0  # Hessian eigenvalues ~0 at the optimum: the optimum is not isolated


def _tr_step(g: np.ndarray, H: np.ndarray, delta: float) -> np.ndarray:
    """Minimizer of ``gᵀs + ½ sᵀHs`` over ``‖s‖ <= δ`` (Moré & Sorensen 1983, by eigendecomposition)."""
    lam, Q = np.linalg.eigh(H)
    gt = Q.T @ g
    if lam[0] > 0:
        s = -gt / lam
        if np.linalg.norm(s) <= delta:
            return Q @ s
    lo = max(0.0, -lam[0])

    def psi(mu: float) -> float:
        return float(np.linalg.norm(gt / (lam + mu))) - delta

    a = lo + 1e-12 * (1.0 + lo)
    if psi(a) <= 0:  # hard case: g (almost) orthogonal to the lowest eigenvector; complete along it
        s = -gt / (lam + a)
        s[0] += math.sqrt(max(delta**2 - float(s @ s), 0.0)) * (-1.0 if gt[0] > 0 else 1.0)
        return Q @ s
    b = lo + np.linalg.norm(g) / delta + np.max(np.abs(lam)) + 1e-300  # psi(b) <= 0
    mu = optimize.brentq(psi, a, b, xtol=1e-15, rtol=1e-12)
    return Q @ (-gt / (lam + mu))


def _chart_hessian(man: _Manifold, fr: _Frames, phi: _Spectral, f0: float) -> np.ndarray | None:
    d = fr.T.shape[0]
    h = 1e-4 * max(fr.s[man.r - 1], 1e-300)
    E = np.eye(d)
    W = [E, -E]
    pairs = [(i, j) for i in range(d) for j in range(i + 1, d)]
    for sgn in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
        if pairs:
            W.append(np.array([sgn[0] * E[i] + sgn[1] * E[j] for i, j in pairs]))
    W = np.concatenate(W, axis=0)
    for _ in range(3):
        Y, ok = man.retract(fr, h * W)
        if ok.all():
            break
        h *= 0.25
    else:
        return None
    fv = phi.value(Y)
    H = np.diag((fv[:d] - 2 * f0 + fv[d:2 * d]) / h**2)
    p = len(pairs)
    for t, (i, j) in enumerate(pairs):
        base = 2 * d + t
        fpp, fpm, fmp, fmm = fv[base], fv[base + p], fv[base + 2 * p], fv[base + 3 * p]
        H[i, j] = H[j, i] = (fpp - fpm - fmp + fmm) / (4 * h * h)
    return H


def _minimize_on(task: CompletionTask, rank: int, radius: float, phi: _Spectral, X0: np.ndarray,
                 max_iter: int = 150, gtol: float = 1e-10, second_order: bool = True) -> _Local:
    """Local minimum of ``φ`` on ``S ∩ M_r ∩ {‖X‖_F ≤ radius}`` from ``X0`` (a point of ``S ∩ M_r``).

    ``second_order=False``: stop at the first critical point (a polish of a known minimizer)."""
    r = rank
    inner = _Manifold(task, r)
    outer = _Manifold(task, r, sphere=radius) if math.isfinite(radius) else None
    X = X0
    f = float(phi.value(X[None])[0])
    on_b = False
    delta = 0.1 * (1.0 + np.linalg.norm(X))
    cauchy_next = False
    for _ in range(max_iter):
        man = outer if on_b else inner
        fr = man.frames(X)
        if fr.s[r - 1] < _STRATUM_EXIT * fr.s[0]:
            return _Local(X, f, "left_stratum")
        gE = phi.grad(fr)
        g = np.einsum("dij,ij->d", fr.T, gE)
        d = g.shape[0]
        gscale = np.linalg.norm(gE) + 1e-300
        if d == 0 or np.linalg.norm(g) <= gtol * gscale:
            if on_b:  # active-set test: is the multiplier of ‖X‖² <= R² nonnegative?
                fi = inner.frames(X)
                gi = np.einsum("dij,ij->d", fi.T, gE)
                nout = np.einsum("dij,ij->d", fi.T, X)
                inward = gi @ nout > 1e-9 * np.linalg.norm(gi) * np.linalg.norm(nout) + 1e-300
                if inward and np.linalg.norm(gi) > gtol * gscale:
                    on_b, cauchy_next = False, True  # descent points inward: leave the boundary
                    continue
            if d == 0 or not second_order:
                return _Local(X, f, "boundary" if on_b else "interior")
            H = _chart_hessian(man, fr, phi, f)
            if H is None:
                return _Local(X, f, "failed")
            lam, Q = np.linalg.eigh(H)
            top = max(np.max(np.abs(lam)), 1e-300)
            if lam[0] >= -1e-6 * top:
                return _Local(X, f, "boundary" if on_b else "interior", int(np.sum(np.abs(lam) <= 1e-6 * top)))
            s = delta * Q[:, 0]  # saddle: follow negative curvature
            pred = -0.5 * lam[0] * delta**2
        else:
            H = _chart_hessian(man, fr, phi, f)
            if H is None:
                delta *= 0.25
                continue
            if cauchy_next:
                gHg = g @ H @ g
                tau = 1.0 if gHg <= 0 else min(1.0, np.linalg.norm(g) ** 3 / (delta * gHg))
                s = -tau * delta * g / np.linalg.norm(g)
                cauchy_next = False
            else:
                s = _tr_step(g, H, delta)
            pred = -(g @ s + 0.5 * s @ H @ s)
        Yb, okb = man.retract(fr, s[None])
        if not okb[0]:
            delta = 0.25 * np.linalg.norm(s)
            continue
        Y = Yb[0]
        if not on_b and outer is not None and np.linalg.norm(Y) > radius:
            # the step leaves the window: stop where the chart path crosses the sphere, then lie on it
            def cross(t: float) -> float:
                Z, okz = man.retract(fr, (t * s)[None])
                return float(np.linalg.norm(Z[0]) - radius) if okz[0] else math.nan
            try:
                t = optimize.brentq(cross, 0.0, 1.0, xtol=1e-13)
                Zc, _ = man.retract(fr, (t * s)[None])
                fb = outer.frames(Zc[0])
                Yc, okc = outer.retract(fb, np.zeros((1, fb.T.shape[0])))
            except (ValueError, np.linalg.LinAlgError):
                okc = np.zeros(1, dtype=bool)
            if okc[0]:
                fc = float(phi.value(Yc)[0])
                if fc < f:
                    X, f, on_b = Yc[0], fc, True
                    continue
            delta = 0.5 * np.linalg.norm(s) * (t if okc[0] else 0.5)
            continue
        fY = float(phi.value(Y[None])[0])
        actual = f - fY
        noise = 1e-14 * (1.0 + abs(f))
        rho = actual / pred if pred > 0 else (1.0 if actual >= 0 else -1.0)
        if rho > 1e-4 or (pred <= noise and actual >= -noise):
            stalled = np.linalg.norm(Y - X) <= 1e-15 * (1.0 + np.linalg.norm(X))
            X, f = Y, fY
            if rho > 0.75 and np.linalg.norm(s) > 0.8 * delta:
                delta *= 2.0
            if stalled:
                return _Local(X, f, "boundary" if on_b else "interior")
        else:
            delta = 0.25 * np.linalg.norm(s)
        if delta < 1e-14 * (1.0 + np.linalg.norm(X)):
            ok = d > 0 and np.linalg.norm(g) <= 1e-6 * gscale
            return _Local(X, f, ("boundary" if on_b else "interior") if ok else "failed")
    return _Local(X, f, "failed")


_START_CACHE: dict[tuple, np.ndarray] = {}


def _find_starts(task: CompletionTask, rank: int, radius: float, n: int, seed: int) -> np.ndarray:
    """Up to ``n`` points of ``S ∩ M_r`` inside the window, spread out (farthest-point selection among
    ``4n`` candidates from alternating projections finished by the Newton projection). Cached."""
    key = (task.digest(), rank, float(radius), n, seed)
    if key in _START_CACHE:
        return _START_CACHE[key]
    rng = np.random.default_rng(seed)
    m, nn = task.shape
    man = _Manifold(task, rank)
    obs = task.values[task.mask]
    lo = max(float(np.sqrt(np.mean(obs**2))), 1e-12)
    hi = max(lo, radius / math.sqrt(m * nn))
    cands: list[np.ndarray] = []
    for _round in range(6):
        P = 4 * n
        sc = np.exp(rng.uniform(math.log(lo) - 1.0, math.log(hi), size=P))
        X = task.project_to_solutions(sc[:, None, None] * rng.standard_normal((P, m, nn)))
        for _ in range(300):
            U, s, Vh = np.linalg.svd(X, full_matrices=False)
            Xr = (U[:, :, :rank] * s[:, None, :rank]) @ Vh[:, :rank]
            Xn = task.project_to_solutions(Xr)
            if np.max(np.abs(Xn - Xr)) < 1e-12 * (1.0 + np.max(s[:, 0])):
                X = Xn
                break
            X = Xn
        for Z in X:
            try:
                fr = man.frames(Z)
                Y, ok = man.retract(fr, np.zeros((1, fr.T.shape[0])))
            except np.linalg.LinAlgError:
                continue
            if not ok[0]:
                continue
            s = np.linalg.svd(Y[0], compute_uv=False)
            if np.linalg.norm(Y[0]) <= radius and s[rank - 1] > 1e-6 * s[0]:
                cands.append(Y[0])
        if len(cands) >= 2 * n:
            break
    if not cands:
        out = np.zeros((0, m, nn))
    else:
        C = np.array(cands)
        chosen = [0]
        dist = np.linalg.norm((C - C[0]).reshape(len(C), -1), axis=1)
        while len(chosen) < min(n, len(C)):
            j = int(np.argmax(dist))
            if dist[j] <= 0:
                break
            chosen.append(j)
            dist = np.minimum(dist, np.linalg.norm((C - C[j]).reshape(len(C), -1), axis=1))
        out = C[chosen]
    if len(_START_CACHE) > 32:
        _START_CACHE.clear()
    _START_CACHE[key] = out
    return out


def _dedup(items: list[tuple[float, np.ndarray, bool]]) -> list[tuple[float, np.ndarray, bool]]:
    kept: list[tuple[float, np.ndarray, bool]] = []
    for v, X, b in sorted(items, key=lambda t: t[0]):
        if all(np.linalg.norm(X - K) > _DEDUP * (1.0 + np.linalg.norm(X)) for _, K, _ in kept):
            kept.append((v, X, b))
    return kept


def _local_predictor(name: str, task: CompletionTask, rank: int, radius: float, phi: _Spectral, n_starts: int,
                     rng: Any, objective: str, depth: float | None, what: str) -> Prediction:
    gen = check_rng(rng)
    seed = int(gen.integers(2**63))
    starts = _find_starts(task, rank, radius, n_starts, seed)
    if starts.shape[0] == 0:
        return _make(name, [], [], objective, depth, False,
                     f"no point of S ∩ M_{rank} found inside ‖X‖_F <= {radius:g}", task.shape)
    results = [_minimize_on(task, rank, radius, phi, X0) for X0 in starts]
    kept = _dedup([(r.value, r.X, r.status == "boundary") for r in results if r.status in ("interior", "boundary")])
    n_left = sum(r.status == "left_stratum" for r in results)
    n_fail = sum(r.status == "failed" for r in results)
    nb = sum(b for _, _, b in kept)
    n_flat = sum(r.flat > 0 for r in results if r.status in ("interior", "boundary"))
    parts = [f"{len(kept)} local {what} of {objective} on S ∩ M_{rank} ∩ {{‖X‖_F <= {radius:g}}} from "
             f"{starts.shape[0]} starts"]
    if nb:
        parts.append(f"{nb} of them on the window boundary ‖X‖_F = {radius:g} (flagged in on_boundary): the "
                     "optimum over the window is attained on its boundary there")
    if n_flat:
        parts.append(f"{n_flat} searches ended where the Hessian has a null direction: those optima are not isolated "
                     "(a continuum of optima, of which the points are samples)")
    if n_left:
        sup = "supremum (+inf)" if phi.sign < 0 else "infimum"
        parts.append(f"{n_left} of {starts.shape[0]} searches left M_{rank} (σ_r/σ_1 < {_STRATUM_EXIT:g}): the {sup} "
                     f"is approached at the lower stratum M_{rank - 1} inside the window, not attained on M_{rank}")
    if n_fail:
        parts.append(f"{n_fail} searches did not converge")
    vals = [phi.sign * v for v, _, _ in kept]
    return _make(name, [X for _, X, _ in kept], vals, objective, depth, bool(kept), "; ".join(parts), task.shape,
                 [b for _, _, b in kept])


# ----------------------------------------------------------------------------------------------- predictors
@_one_blas_thread
def volume_max(task: CompletionTask, depth: float, rank: int, radius: float, *, n_starts: int = 16,
               rng: Any = None) -> Prediction:
    """Local maxima of ``log ρ_N^{(r)}`` over ``S ∩ M_r ∩ {‖X‖_F <= radius}`` (docs/math.md §3.3, §7)."""
    objective = f"log ρ_N^({rank}) (maximized)"
    if depth == 1:
        return _make("volume_max", [], [], objective, depth, False,
                     "depth 1: ρ_1 ≡ 1 (Lebesgue measure), every point of S ∩ M_r maximizes it", task.shape)
    return _local_predictor("volume_max", task, rank, radius, _log_rho(depth, rank, task.shape), n_starts, rng,
                            objective, depth, "maxima")


@_one_blas_thread
def nuclear_norm_min(task: CompletionTask, depth: float, rank: int, radius: float, *, n_starts: int = 16,
                     rng: Any = None) -> Prediction:
    """Local minima of ``‖X‖_*`` over ``S ∩ M_r ∩ {‖X‖_F <= radius}``."""
    return _local_predictor("nuclear_norm_min", task, rank, radius, _nuclear(rank), n_starts, rng, "‖X‖_*", None,
                            "minima")


@_one_blas_thread
def frobenius_min(task: CompletionTask, depth: float, rank: int, radius: float, *, n_starts: int = 16,
                  rng: Any = None) -> Prediction:
    """Local minima of ``‖X‖_F`` over ``S ∩ M_r ∩ {‖X‖_F <= radius}``."""
    return _local_predictor("frobenius_min", task, rank, radius, _frobenius(rank), n_starts, rng, "‖X‖_F", None,
                            "minima")


# ----------------------------------------------------------------------------------------------- convex problem
def _admm_nuclear(task: CompletionTask, max_iter: int = 20000, tol: float = 1e-12) -> tuple[np.ndarray, np.ndarray]:
    """ADMM with singular value thresholding for ``min ‖X‖_* s.t. P_Ω X = M_Ω`` (splitting ``X = Y``, ``Y ∈ S``).

    Returns ``X`` and the dual matrix ``Λ = −ρ·U`` (supported on ``Ω``, ``Λ ∈ ∂‖X‖_*`` at convergence).
    """
    M, mask = task.values, task.mask
    scale = float(np.linalg.norm(M))
    rho = 1.0 / max(0.2 * np.linalg.norm(M, 2), 1e-300)
    Y = M.copy()
    Ud = np.zeros_like(M)
    X = M
    for it in range(max_iter):
        Uu, s, Vh = np.linalg.svd(Y - Ud, full_matrices=False)
        X = (Uu * np.maximum(s - 1.0 / rho, 0.0)) @ Vh
        Yn = np.where(mask, M, X + Ud)
        rp = X - Yn
        Ud = Ud + rp
        rd = rho * np.linalg.norm(Yn - Y)
        Y = Yn
        pr = np.linalg.norm(rp)
        if pr <= tol * (1.0 + scale) and rd <= tol * (1.0 + rho * np.linalg.norm(Ud)):
            break
        if it % 25 == 24:  # residual balancing (Boyd et al. 2011, §3.4.1)
            if pr > 10.0 * rd:
                rho, Ud = 2.0 * rho, Ud / 2.0
            elif rd > 10.0 * pr:
                rho, Ud = rho / 2.0, 2.0 * Ud
    return X, -rho * Ud


def _certificate(task: CompletionTask, X: np.ndarray, s: int) -> tuple[np.ndarray, float, float]:
    """Dual certificate at ``X`` (rank ``s``): ``Λ`` supported on ``Ω`` with ``P_T Λ = U Vᵀ`` and the smallest
    ``‖P_T⊥ Λ‖`` found (least squares, then a smoothed min-max refinement); ``(Λ, ‖P_T⊥Λ‖_op, ‖P_TΛ − UVᵀ‖_F)``."""
    m, n = task.shape
    U, _, Vh = np.linalg.svd(X)
    Us, Vs = U[:, :s], Vh[:s].T
    PU, PV = Us @ Us.T, Vs @ Vs.T
    obs = np.argwhere(task.mask)
    E = np.zeros((len(obs), m, n))
    E[np.arange(len(obs)), obs[:, 0], obs[:, 1]] = 1.0
    PT = PU @ E + E @ PV - PU @ E @ PV
    AT, Ap = PT.reshape(len(obs), -1).T, (E - PT).reshape(len(obs), -1).T
    b = (Us @ Vs.T).ravel()
    lam0 = np.linalg.lstsq(AT, b, rcond=None)[0]
    _, S, Zt = np.linalg.svd(AT, full_matrices=True)
    k = int(np.sum(S > 1e-10 * max(S[0], 1e-300))) if S.size else 0
    Nmu = Zt[k:].T
    if Nmu.shape[1]:
        lam0 = lam0 + Nmu @ np.linalg.lstsq(Ap @ Nmu, -Ap @ lam0, rcond=None)[0]

    def W_of(mu: np.ndarray) -> np.ndarray:
        return (Ap @ (lam0 + Nmu @ mu)).reshape(m, n)

    mu = np.zeros(Nmu.shape[1])
    op = float(np.linalg.norm(W_of(mu), 2))
    if op > 1.0 + 1e-9 and Nmu.shape[1]:
        D = (Ap @ Nmu).T.reshape(-1, m, n)
        for p in (20.0, 200.0, 2e3, 2e4, 2e5):
            def lse(mu: np.ndarray, p: float = p) -> tuple[float, np.ndarray]:
                Uw, sw, Vwh = np.linalg.svd(W_of(mu))
                w = np.exp(p * (sw - sw[0]))
                val = sw[0] + math.log(w.sum()) / p
                G = (Uw[:, : len(sw)] * (w / w.sum())) @ Vwh[: len(sw)]
                return val, np.einsum("kij,ij->k", D, G)
            mu = optimize.minimize(lse, mu, jac=True, method="BFGS", options={"gtol": 1e-12}).x
        op = min(op, float(np.linalg.norm(W_of(mu), 2)))
    lam = lam0 + Nmu @ mu
    Lam = np.einsum("k,kij->ij", lam, E)
    return Lam, float(np.linalg.norm(W_of(mu), 2)), float(np.linalg.norm(AT @ lam - b))


def _sym_basis(q: int) -> np.ndarray:
    """Frobenius-orthonormal basis ``(q(q+1)/2, q, q)`` of symmetric q×q matrices."""
    out = []
    for i in range(q):
        for j in range(i, q):
            B = np.zeros((q, q))
            if i == j:
                B[i, i] = 1.0
            else:
                B[i, j] = B[j, i] = 1.0 / math.sqrt(2.0)
            out.append(B)
    return np.array(out).reshape(-1, q, q)


def _affine_null(task: CompletionTask, P: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """Orthonormal basis ``(f, q, q)`` of ``{Z symmetric : P_Ω(P Z Qᵀ) = 0}``."""
    q = P.shape[1]
    B = _sym_basis(q)
    A = (P[None] @ B @ Q.T[None])[:, task.mask].T  # (|Ω|, nb)
    _, S, Zt = np.linalg.svd(A, full_matrices=True)
    k = int(np.sum(S > 1e-9 * max(S[0], 1e-300))) if S.size else 0
    return np.einsum("fb,bij->fij", Zt[k:], B)


def _dykstra(C: np.ndarray, Zc: np.ndarray, N: np.ndarray, iters: int = 20000, tol: float = 1e-13) -> np.ndarray:
    """Projection of symmetric ``C`` ``(B, q, q)`` onto ``{Zc + span N} ∩ PSD`` by Dykstra's algorithm."""
    def paff(Z: np.ndarray) -> np.ndarray:
        return Zc + np.einsum("bf,fij->bij", np.einsum("fij,bij->bf", N, Z - Zc), N)
    x = C.copy()
    p = np.zeros_like(C)
    qd = np.zeros_like(C)
    scale = 1.0 + np.max(np.abs(C)) + np.max(np.abs(Zc))
    for _ in range(iters):
        y = paff(x + p)
        p = x + p - y
        w, v = np.linalg.eigh(y + qd)
        xn = (v * np.maximum(w, 0.0)[:, None, :]) @ np.swapaxes(v, -1, -2)
        qd = y + qd - xn
        if np.max(np.abs(xn - x)) < tol * scale and np.max(np.abs(xn - y)) < 10 * tol * scale:
            return xn
        x = xn
    return x


@dataclass(frozen=True, eq=False)
class _Face:
    """The optimal face ``{P Z Qᵀ : Z ⪰ 0, Z ∈ Zc + span N}`` (``P, Q`` orthonormal columns, ``Zc ≻ 0``)."""

    P: np.ndarray
    Q: np.ndarray
    Zc: np.ndarray
    N: np.ndarray  # (f, q, q)
    interval: tuple[float, float] | None  # θ range when f == 1

    def project_z(self, D: np.ndarray) -> np.ndarray:
        f = self.N.shape[0]
        if f == 0:
            return np.broadcast_to(self.Zc, D.shape).copy()
        if f == 1 and self.interval is not None:
            th = np.clip(np.einsum("ij,bij->b", self.N[0], D - self.Zc), *self.interval)
            return self.Zc + th[:, None, None] * self.N[0]
        return _dykstra(D, self.Zc, self.N)

    def matrices(self, Z: np.ndarray) -> np.ndarray:
        return self.P @ Z @ self.Q.T

    def distance(self, X: np.ndarray) -> np.ndarray:
        batch = X.shape[:-2]
        Xf = X.reshape((-1,) + X.shape[-2:])
        G = self.P.T @ Xf @ self.Q
        D = 0.5 * (G + np.swapaxes(G, -1, -2))
        R = Xf - self.matrices(D)
        Z = self.project_z(D)
        d2 = np.sum(R * R, axis=(-2, -1)) + np.sum((D - Z) ** 2, axis=(-2, -1))
        return np.sqrt(d2).reshape(batch)


def _build_face(task: CompletionTask, Xh: np.ndarray, Lam: np.ndarray, certified: bool, s: int,
                rng: np.random.Generator) -> _Face:
    """Face of minimizers from the σ = 1 singular subspaces of ``Λ`` (or ``{X̂}`` without a certificate)."""
    if certified:
        Ul, sl, Vlh = np.linalg.svd(Lam)
        t = int(np.sum(sl >= 1.0 - 1e-6))
        U1, V1 = Ul[:, :t], Vlh[:t].T
    else:
        Ux, _, Vxh = np.linalg.svd(Xh)
        U1, V1 = Ux[:, :s], Vxh[:s].T
    K = U1.T @ Xh @ V1
    K = 0.5 * (K + K.T)
    N = _affine_null(task, U1, V1)
    if N.shape[0] == 0 or not certified:
        return _Face(U1, V1, K, np.zeros((0,) + K.shape), None)
    # a maximal-rank element: average of projections of random PSD matrices onto the face
    t = K.shape[0]
    G = rng.standard_normal((6, t, t))
    C = G @ np.swapaxes(G, -1, -2) * (np.trace(K) / t)
    Kc = 0.5 * K + 0.5 * np.mean(_dykstra(C, K, N, iters=5000), axis=0)
    w, v = np.linalg.eigh(Kc)
    q = int(np.sum(w > 1e-6 * max(w[-1], 1e-300)))
    Vq = v[:, t - q:]
    P, Q = U1 @ Vq, V1 @ Vq
    Zc = Vq.T @ Kc @ Vq
    Nq = _affine_null(task, P, Q)
    interval = None
    if Nq.shape[0] == 1:
        L = np.linalg.cholesky(Zc)
        Li = np.linalg.inv(L)
        mu = np.linalg.eigvalsh(Li @ Nq[0] @ Li.T)
        lo = -1.0 / mu[-1] if mu[-1] > 0 else -np.inf
        hi = -1.0 / mu[0] if mu[0] < 0 else np.inf
        if hi - lo < 1e-9 * (1.0 + np.trace(Zc)):
            Nq = Nq[:0]
        else:
            interval = (float(lo), float(hi))
    return _Face(P, Q, Zc, Nq, interval)


@_one_blas_thread
def nuclear_norm_min_any_rank(task: CompletionTask, depth: float, rank: int, radius: float, *, n_starts: int = 16,
                              rng: Any = None) -> Prediction:
    """``min ‖X‖_* s.t. P_Ω X = M_Ω`` over all ranks (convex; docs/math.md §5.2, §8 item 26).

    ADMM with singular value thresholding, polished by the Riemannian Newton search for ``‖X‖_*`` on
    ``S ∩ M_s`` (``s`` the rank it found, no window); a dual certificate ``Λ`` (supported on ``Ω``,
    ``P_T Λ = UVᵀ``, ``‖P_T⊥Λ‖_op ≤ 1``) identifies the optimal face ``{U₁ K V₁ᵀ : K ⪰ 0, P_Ω(U₁KV₁ᵀ) = M_Ω}``.
    ``points[0]`` is the minimizer of least Frobenius norm; for a one-dimensional face ``points[1:]`` are
    its two extreme points. Every entry of ``values`` is the optimal value ``ν*``.
    """
    gen = check_rng(rng)
    m, n = task.shape
    name, objective = "nuclear_norm_min_any_rank", "‖X‖_* (convex, any rank)"
    if not np.any(task.values[task.mask]):
        Z = np.zeros((1, m, n))
        return _make(name, Z, [0.0], objective, None, True, "all observed values are 0: the minimizer is X = 0",
                     task.shape, face=_Face(np.zeros((m, 0)), np.zeros((n, 0)), np.zeros((0, 0)),
                                            np.zeros((0, 0, 0)), None))
    X0, Lam0 = _admm_nuclear(task)
    sv = np.linalg.svd(X0, compute_uv=False)
    s = int(np.sum(sv > RANK_RTOL * sv[0]))
    Xh = X0
    man = _Manifold(task, s)
    try:
        fr = man.frames(X0)
        Y, ok = man.retract(fr, np.zeros((1, fr.T.shape[0])))
        if ok[0]:
            res = _minimize_on(task, s, math.inf, _nuclear(s), Y[0], max_iter=10, gtol=1e-8, second_order=False)
            if res.status == "interior" and res.value <= np.sum(sv) + 1e-9 * (1 + np.sum(sv)):
                Xh = res.X
    except np.linalg.LinAlgError:
        pass
    nu = float(np.sum(np.linalg.svd(Xh, compute_uv=False)))
    Lam, op, res_t = _certificate(task, Xh, s)
    certified = op <= 1.0 + 1e-6 and res_t <= 1e-6
    if not certified:  # the ADMM multiplier is a dual-feasible candidate too
        U, _, Vh = np.linalg.svd(Xh)
        PU, PV = U[:, :s] @ U[:, :s].T, Vh[:s].T @ Vh[:s]
        PT0 = PU @ Lam0 + Lam0 @ PV - PU @ Lam0 @ PV
        op0, res0 = float(np.linalg.norm(Lam0 - PT0, 2)), float(np.linalg.norm(PT0 - U[:, :s] @ Vh[:s]))
        if op0 <= 1.0 + 1e-6 and res0 <= 1e-6:
            Lam, op, res_t, certified = Lam0, op0, res0, True
    face = _build_face(task, Xh, Lam, certified, s, gen)
    f = face.N.shape[0]
    Zmin = face.project_z(np.zeros((1,) + face.Zc.shape))
    pts = [face.matrices(Zmin[0])]
    if f == 1 and face.interval is not None:
        for th in face.interval:
            E = face.matrices(face.Zc + th * face.N[0])
            if all(np.linalg.norm(E - K) > _DEDUP * (1.0 + np.linalg.norm(E)) for K in pts):
                pts.append(E)
    ranks = [_rank_of(p[None]) for p in pts]
    dual = float(np.sum(Lam * task.values))
    note = (f"minimum nuclear norm ν* = {nu:.12g} (dual value ⟨Λ, M⟩ = {dual:.12g}); the minimizer of least "
            f"Frobenius norm has rank {ranks[0]}")
    if not certified:
        note += (f"; no dual certificate found (‖P_T⊥Λ‖_op = {op:.6g}, ‖P_TΛ − UVᵀ‖_F = {res_t:.3g}): optimality "
                 "is not certified and the optimal face is taken to be that single point")
    elif f == 0:
        note += "; the minimizer is unique (certified by a dual certificate Λ)"
    else:
        note += f"; the minimizer is NOT unique: the optimal face has dimension {f}"
        if f == 1:
            where = "points[1], points[2]" if len(pts) == 3 else "points[0] is one of them, points[1] the other"
            note += f", a segment whose extreme points have ranks {ranks[1:] if len(pts) == 3 else ranks[:2]} ({where})"
        note += "; distance() measures the distance to the whole face"
    return _make(name, pts, [nu] * len(pts), objective, None, True, note, task.shape, face=face)


# ----------------------------------------------------------------------------------------------- greedy low rank
def greedy_low_rank(task: CompletionTask, depth: float, rank: int, radius: float, *, n_starts: int = 16,
                    rng: Any = None) -> Prediction:
    """Greedy Low-Rank Learning (Li, Luo & Lyu, ICLR 2021): ``W₀ = 0``; step ``k`` adds ``ε u vᵀ`` along the
    top singular pair of ``−∇E(W_{k−1}) = P_Ω(M − W_{k−1})`` and runs the rank-``k`` factor gradient flow
    ``X = UVᵀ`` to convergence; stops at a solution or at rank ``min(m, n)``.

    The depth-2 case of :func:`greedy_depth` (balanced width-``k`` factors, :func:`_e2e_flow`), whatever
    ``depth`` is asked for: the paper's point. ``ε = GREEDY_EPSILON · ‖M_Ω‖_F``. When the top singular value
    is degenerate the greedy step is not unique: up to ``n_starts`` paths with random directions in the top
    singular subspace (from ``rng``); the distinct endpoints are returned, lowest loss first. ``values``
    holds the loss ``E`` at each.
    """
    return _greedy("greedy_low_rank", task, 2, None, rank, radius, n_starts, rng)


#: step cap of one greedy stage at depth N (:func:`greedy_depth`); the plateau before a stage's new component
#: grows lasts ~ε^{−(1−2/N)}, so depths above :data:`GREEDY_MAX_DEPTH` are not computed
GREEDY_MAX_STEPS = 5000
GREEDY_MAX_DEPTH = 5


def _e2e_flow(task: CompletionTask, depth: float, X0: np.ndarray, k: int, sigma: float, scale: float
              ) -> tuple[np.ndarray, bool, float]:
    """The depth-``N`` end-to-end flow on ``M_k`` from ``X0`` (rank ``k``), run as the gradient flow of balanced
    factors of width ``k`` (``W_1 = S^{1/N} Vᵀ``, ``W_2 … W_{N−1} = S^{1/N}``, ``W_N = U S^{1/N}``; balanced
    factors follow the end-to-end flow, docs/math.md §1.2–1.3, and width ``k`` keeps the rank ≤ ``k`` exactly)
    until the loss has dropped and the factor gradient is below ``1e-11 ‖M_Ω‖^{3/2}`` (a critical point of
    ``E`` on ``M_k``). LSODA, rtol 1e-11, at most :data:`GREEDY_MAX_STEPS` steps. ``(X, converged, t)``.

    (The SVD form of the field is not used here: at an exactly rank-deficient state its multipliers involve
    ``log 0`` and the solver rejects every step.)"""
    m, n = task.shape
    N = int(depth)
    U, sv, Vh = np.linalg.svd(X0, full_matrices=False)
    r = np.power(sv[:k], 1.0 / N)
    shapes = [(k, n)] + [(k, k)] * (N - 2) + [(m, k)]
    Ws = [r[:, None] * Vh[:k]] + [np.diag(r) for _ in range(N - 2)] + [U[:, :k] * r[None, :]]
    sizes = [a * b for a, b in shapes]
    cuts = np.cumsum([0] + sizes)
    Mv, mask = task.values, task.mask

    def unpack(y: np.ndarray) -> list[np.ndarray]:
        return [y[cuts[i]:cuts[i + 1]].reshape(shapes[i]) for i in range(N)]

    def grad(y: np.ndarray) -> tuple[np.ndarray, float]:
        W = unpack(y)
        left = [np.eye(n)]            # left[j] = W_j ⋯ W_1 (left[0] = I)
        for Wj in W:
            left.append(Wj @ left[-1])
        X = left[-1]
        G = np.where(mask, X - Mv, 0.0)
        out = []
        right = np.eye(m)             # W_N ⋯ W_{j+1}
        for j in range(N - 1, -1, -1):
            out.append((right.T @ G @ left[j].T).ravel())
            right = right @ W[j]
        return np.concatenate(out[::-1]), 0.5 * float(np.sum(G * G))

    def fun(t: float, y: np.ndarray) -> np.ndarray:
        return -grad(y)[0]

    thr = 1e-11 * scale**1.5
    loss0 = float(task.loss(X0))
    y = np.concatenate([w.ravel() for w in Ws])
    solver = integrate.LSODA(fun, 0.0, y, np.inf, rtol=1e-11, atol=1e-15 * scale)
    converged = False
    for _ in range(GREEDY_MAX_STEPS):
        if solver.status != "running":
            break
        solver.step()
        if not np.all(np.isfinite(solver.y)):
            break
        g, loss = grad(solver.y)
        if loss < (1.0 - 1e-6) * loss0 and np.linalg.norm(g) <= thr:
            converged = True
            break
    W = unpack(solver.y)
    X = W[0]
    for Wj in W[1:]:
        X = Wj @ X
    return X, converged, float(solver.t)


def _greedy_path(task: CompletionTask, depth: float, gen: np.random.Generator) -> tuple[np.ndarray, bool, str]:
    """One greedy path at ``depth`` (:func:`greedy_depth`): ``(W, degenerate step met, why it stopped or "")``."""
    m, n = task.shape
    M, mask = task.values, task.mask
    scale = float(np.linalg.norm(M))
    eps = GREEDY_EPSILON * scale
    W = np.zeros((m, n))
    degenerate = False
    for k in range(1, min(m, n) + 1):
        G = np.where(mask, M - W, 0.0)
        if 0.5 * np.sum(G * G) <= 1e-16 * scale**2:
            break
        Ug, sg, Vgh = np.linalg.svd(G)
        p = int(np.sum(sg >= sg[0] * (1.0 - 1e-6)))
        if p > 1:
            degenerate = True
            a = gen.standard_normal(p)
            a /= np.linalg.norm(a)
            u, v = Ug[:, :p] @ a, Vgh[:p].T @ a
        else:
            u, v = Ug[:, 0], Vgh[0]
        W, converged, t = _e2e_flow(task, depth, W + eps * np.outer(u, v), k, float(sg[0]), scale)
        if not converged:
            return W, degenerate, (f"the rank-{k} flow did not reach a critical point (stopped at t = {t:.3g}, "
                                   f"loss {float(task.loss(W)):.3g})")
    return W, degenerate, ""


def greedy_depth(task: CompletionTask, depth: float, rank: int, radius: float, *, n_starts: int = 16,
                 rng: Any = None) -> Prediction:
    """Greedy low-rank learning at depth ``N``: the construction of :func:`greedy_low_rank` (Li, Luo & Lyu,
    ICLR 2021) with each stage run by the depth-``N`` end-to-end flow instead of the depth-2 factor flow:
    ``W_k`` = the limit of ``Ẋ = −Ā_X(E'(X))`` from ``W_{k−1} + ε u vᵀ`` (rank ``k``, kept by the flow for
    N >= 2), ``(u, v)`` the top singular pair of ``P_Ω(M − W_{k−1})``. At N = 2 this is the same flow as the
    balanced factor flow (docs/math.md §1.2), so it equals :func:`greedy_low_rank`; at N >= 3 the stages
    follow the depth-N metric (the incremental-learning picture of deep factorizations). Not defined at
    N = ∞: there the multipliers between a nonzero and a zero singular value vanish (``L(σ², 0) = 0``,
    docs/math.md §2.3), so a stage cannot rotate its singular vectors and the construction degenerates.
    """
    if not math.isfinite(depth) or depth < 2 or depth > GREEDY_MAX_DEPTH:
        why = ("N = ∞ freezes the singular vectors of a rank-deficient state (L(σ², 0) = 0)" if not
               math.isfinite(depth) else "N = 1 is plain gradient descent on X (no greedy stages)" if depth < 2 else
               f"not computed above depth {GREEDY_MAX_DEPTH} (a stage's plateau from ε = {GREEDY_EPSILON:g}·‖M_Ω‖ "
               "lasts ~ε^(−(1−2/N)) and takes more than the step budget)")
        return _make("greedy_depth", [], [], "loss E (greedy low-rank learning at depth N)", depth, False,
                     "does not apply: " + why, task.shape)
    return _greedy("greedy_depth", task, int(depth), depth, rank, radius, n_starts, rng)


def _greedy(name: str, task: CompletionTask, N: int, depth: float | None, rank: int, radius: float, n_starts: int,
            rng: Any) -> Prediction:
    """The greedy paths at depth ``N`` as a :class:`Prediction` named ``name`` (``depth`` recorded on it)."""
    gen = check_rng(rng)
    scale = float(np.linalg.norm(task.values))
    paths = [_greedy_path(task, N, gen)]
    if paths[0][1]:
        paths += [_greedy_path(task, N, gen) for _ in range(n_starts - 1)]
    stuck = sorted({why for _, _, why in paths if why})
    loss = [float(task.loss(E)) for E, _, _ in paths]
    kept = _dedup([(lv, E, False) for lv, (E, _, _) in zip(loss, paths)])
    pts = [E for _, E, _ in kept]
    vals = [lv for lv, _, _ in kept]
    ranks = [_rank_of(E[None]) for E in pts]
    solved = [lv <= 1e-14 * (1.0 + scale**2) for lv in vals]
    applies = all(solved) and all(rk == rank for rk in ranks) and not stuck
    note = (f"{len(pts)} distinct endpoint(s) with ranks {ranks} and losses {[float(f'{v:.3g}') for v in vals]}"
            f" (depth {N}, ε = {GREEDY_EPSILON:g}·‖M_Ω‖_F)")
    if paths[0][1]:
        note += (f"; the top singular value of −∇E was degenerate at some step, so the greedy step is not unique: "
                 f"{len(paths)} paths with random directions in the top singular subspace")
    if stuck:
        note += "; does not apply: " + "; ".join(stuck)
    elif not applies:
        why = "not a solution (loss > 0)" if not all(solved) else f"a solution of rank {max(ranks)}, not {rank}"
        note += f"; does not apply: greedy low-rank learning ends at {why}"
    outside = sum(np.linalg.norm(E) > radius for E in pts)
    if outside:
        note += f"; {outside} endpoint(s) lie outside ‖X‖_F <= {radius:g}"
    objective = "loss E (greedy low-rank learning" + (")" if depth is None else " at depth N)")
    return _make(name, pts, vals, objective, depth, applies, note, task.shape)


# ----------------------------------------------------------------------------------------------- registry
PREDICTORS: dict[str, Callable[..., Prediction]] = {
    "volume_max": volume_max,
    "nuclear_norm_min": nuclear_norm_min,
    "frobenius_min": frobenius_min,
    "nuclear_norm_min_any_rank": nuclear_norm_min_any_rank,
    "greedy_low_rank": greedy_low_rank,
    "greedy_depth": greedy_depth,
}
"""name -> ``fn(task, depth, rank, radius, *, n_starts, rng) -> Prediction`` (inputs validated by :func:`predict`)."""

DEPTH_INDEPENDENT: frozenset[str] = frozenset(
    {"nuclear_norm_min", "frobenius_min", "nuclear_norm_min_any_rank", "greedy_low_rank"})
"""Predictors whose result does not depend on depth (a caller computes them once)."""

def _check_rank(rank: Any, m: int, n: int) -> int:
    k = min(m, n)
    integral = (isinstance(rank, numbers.Real) and not isinstance(rank, (bool, np.bool_))
                and math.isfinite(float(rank)) and float(rank).is_integer())
    if not integral:
        raise InvalidRankError(
            f"rank={short_repr(rank)} is not an integer; expected an integer in 1..{k} (shape {m}x{n})")
    r = int(rank)
    if not 1 <= r <= k:
        raise InvalidRankError(f"rank={r} is outside 1..{k} for shape {m}x{n}; expected an integer in 1..min(m, n)")
    return r


_SHARED_STARTS = ("volume_max", "nuclear_norm_min", "frobenius_min")  # one random stream: the same starts (cached)


def predict(task: CompletionTask, depth: Any, rank: Any, radius: Any, *, names: Any = None, n_starts: Any = 16,
            rng: Any = None) -> dict[str, Prediction]:
    """Every registered prediction (or those in ``names``) for one task, depth, rank and window.

    Parameters
    ----------
    task : dlnvolume.CompletionTask
    depth : int >= 1 or math.inf
    rank : int in 1..min(m, n)
        The stratum ``M_r`` of the rank-constrained predictors.
    radius : float > ‖M_Ω‖_F
        The window ``‖X‖_F <= radius`` (every solution has ``‖X‖_F >= ‖M_Ω‖_F``).
    names : iterable of str, optional
        Keys of :data:`PREDICTORS`; default all.
    n_starts : int >= 1
        Starts of the multi-start local searches (and paths of a degenerate greedy step).
    rng : None, int, SeedSequence or Generator
        Converted once; each predictor gets its own child stream, so a prediction does not depend on which
        other ``names`` were asked for. ``volume_max``, ``nuclear_norm_min`` and ``frobenius_min`` share their
        starting points.

    Returns
    -------
    dict name -> :class:`Prediction`, in the order of ``names``.

    Examples
    --------
    >>> import dlnvolume as dv
    >>> p = predict(dv.tasks.diagonal_2x2(), 2, 1, 3.0, n_starts=4, rng=0)
    >>> sorted(np.round(p["volume_max"].points[:, 0, 1], 6).tolist())   # the corners a = b = ±1 (§5.2)
    [-1.0, 1.0]
    >>> cvx = p["nuclear_norm_min_any_rank"]
    >>> round(float(cvx.values[0]), 9), round(float(cvx.distance(np.array([[1.0, 0.5], [0.5, 1.0]]))), 9)
    (2.0, 0.0)
    """
    if not isinstance(task, CompletionTask):
        raise InvalidArgumentError(
            f"task has type {type(task).__name__}; expected a dlnvolume.CompletionTask")
    depth = check_depth(depth)
    m, n = task.shape
    rank = _check_rank(rank, m, n)
    radius = check_positive(radius, "radius")
    obs = float(np.linalg.norm(task.values[task.mask]))
    if radius <= obs:
        raise InvalidArgumentError(
            f"radius={radius:g} does not exceed ‖observed values‖_F = {obs:.6g}, so the window ‖X‖_F <= radius "
            f"holds no solution; expected radius > {obs:.6g}")
    n_starts = check_int(n_starts, "n_starts", minimum=1)
    if names is None:
        selected = list(PREDICTORS)
    else:
        if isinstance(names, str):
            names = [names]
        try:
            selected = list(names)
        except TypeError:
            raise InvalidArgumentError(
                f"names={short_repr(names)} is not an iterable of names; expected names from {sorted(PREDICTORS)}"
            ) from None
        unknown = [s for s in selected if s not in PREDICTORS]
        if unknown:
            raise InvalidArgumentError(
                f"names contains unknown predictor(s) {unknown}; expected names from {sorted(PREDICTORS)}")
        if not selected:
            raise InvalidArgumentError(f"names is empty; expected at least one of {sorted(PREDICTORS)}")
    gen = check_rng(rng)
    base = int(gen.integers(2**63))
    out = {}
    for name in selected:
        tag = 0 if name in _SHARED_STARTS else zlib.crc32(name.encode())
        child = np.random.default_rng(np.random.SeedSequence([base, tag]))
        out[name] = PREDICTORS[name](task, depth, rank, radius, n_starts=n_starts, rng=child)
    return out
