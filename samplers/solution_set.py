"""The g_N-volume of the solution set ``S ∩ M_r`` inside a window (ARCHITECTURE.md "The measures").

Target. The g_N-Hausdorff measure of ``𝓜 = S ∩ M_r`` restricted to the window. W.r.t. the Euclidean
Hausdorff measure of ``𝓜`` its density is (docs/samplers.md §1)::

    f(X) = √det(Tᵀ 𝒢 T) · window(X),      𝒢 = Ā_X^{-1} on T_X M_r,

``T`` a Frobenius-orthonormal basis of ``T_X 𝓜 = T_X S ∩ T_X M_r``, evaluated in the SVD basis where ``Ā``
is diagonal (MATH.md §2.1). At ``N = ∞`` on a lower stratum or rectangular shape the mixed multipliers
of ``Ā`` vanish like ``σ²/N``: the Gram matrix is ``P + N M`` (``M`` from the mixed block with
renormalized multipliers ``σ_i²``), and the law is the ``N → ∞`` limit of the normalized laws, with
density ``√(pdet M · det(Kᵀ P K))`` (``K`` spans ``ker M``; MATH.md §3.4 for the stratum itself).

Dimension. The constraints are the observed entries and the normal space of ``M_r`` at ``X``; the
tangent space is the kernel of their Jacobian ``J`` (rows ``E_ij``, ``(i,j) ∈ Ω``, and
``Q_⊥ e_a e_bᵀ R_⊥ᵀ``). Its numerical rank (singular values above ``1e-9`` relative) gives the
codimension, so clean but non-transversal intersections (dependent observations, e.g. a fully observed
(r+1)×(r+1) block) have their actual dimension ``mn - rank J`` (:attr:`SolutionSetSampler.dim`), which
can exceed the nominal ``r(m+n-r) - |Ω|`` (:attr:`SolutionSetSampler.nominal_dim`).

Default algorithm, ``method="smc"`` (docs/samplers.md §3–§4), one replicate per chain: tempered SMC on the
Gibbs path ``π_β ∝ e^{-βE} ρ_N^{(r)} window`` up to a moderate ``β_max`` (:mod:`samplers.smc`) places
particles on every component; they are projected onto ``𝓜`` (Newton along the normal space), reweighted
by ``f/g`` (``g`` the Gibbs-limit density ``ρ window/√pdet(L Lᵀ)``, ``f/g = √pdet(L Ā Lᵀ)`` at finite
``N``) and resampled to kernel centres. The draws then come from importance sampling of ``f`` with a kernel
mixture on those centres whose density is explicit (:meth:`SolutionSetSampler._mixture_is`), so component
masses are carried by exact weights and do not depend on where particles started or how well the SMC
balanced them; finally resampling and sweeps of the constrained random walk below.

``method="walk"``: the constrained random walk of Zappa, Holmes-Cerfon & Goodman, "Monte Carlo on
manifolds", CPAM 71(12), 2018 (Algorithm 1; tangent Gaussian step, Newton projection along the normal
space, Metropolis–Hastings, reverse projection check) from given or found starts. It never leaves the
component of its start: use it only for within-component questions or from ``initial`` matrices.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numba import njit

from dlnvolume import CompletionTask
from dlnvolume.validation import check_depth, check_int, check_matrix, check_positive, check_rank, check_rng
from dlnvolume.errors import ImproperTargetError, InvalidArgumentError, InvalidRankError, ShapeError
from dlnvolume._lu import lu_inplace
from dlnvolume.batching import part, tick
from dlnvolume.parallel import as_seed_sequence, spawn_seeds
from dlnvolume.spectral import log_multipliers, log_volume_density_from_log_sigma

from ._projection import project_points
from .chains import Chains, StepInfo
from .diagnostics import khat_max, pareto_khat
from .confinement import Confinement, SingularValueFloor, as_confinement

__all__ = ["SolutionSetSampler", "SolutionSetState", "ConstrainedWalkKernel", "sign_pieces", "centre_bandwidths"]

#: the laws on S ∩ M_r a SolutionSetSampler draws from (ARCHITECTURE.md "The measures")
MEASURES = ("solution_set", "gibbs_limit")

_RANK_TOL = 1e-9
#: Shares of an SMC replicate's time (progress, and the plan's extrapolation of a calibration replicate from its
#: progress): tempered SMC, projection and centres, importance rounds, final walk. Measured with the compiled
#: projection, 2000 draws: tempered SMC + centres 0.11–0.20 of the time, importance rounds to 0.73–0.79, final walk
#: the rest, on 8×8 rank 2 (N = 5), 5×5 rank 2 (N = 5, 20) and 10×10 rank 1 (N = 5); with the shares from before
#: (0.25/0.13/·/0.2) the plan estimated an 8×8 replicate at 17 s that took 24 s.
W_SMC, W_CENTRES, W_WALK = 0.10, 0.06, 0.23
#: the importance proposal's defensive component (α, c): a share α of the draws come from kernels c times wider,
#: so that gaps between the narrow kernels are covered and the weights there stay bounded by f / (α q_{c·h})
DEFENSIVE = (0.2, 3.0)
#: shares of the proposal's three kernel families (:func:`centre_bandwidths`): one bandwidth h₀ everywhere, the
#: local bandwidth max(h₀, d_3(j)), and the defensive family DEFENSIVE[1] times wider (share DEFENSIVE[0])
KERNEL_SHARES = (0.4, 0.4, DEFENSIVE[0])
#: a piece counts as found by the SMC stage with at least this many projected particles, and as lost by the importance
#: sampling with fewer weighted draws than this (the "missed" check)
MISSED_MIN_PARTICLES = 10
#: the deepest finite depth of the SMC stage's tempering path (docs/samplers.md §4.3): beyond it the path's Gibbs
#: law piles up near the lower strata (ρ_N tends to the non-integrable ρ_∞ there) and its particles no longer
#: project onto S ∩ M_r; a shallower path only places the kernel centres, the importance weights use the depth N
PATH_DEPTH_MAX = 20.0
#: the centres of a population Monte Carlo round are resampled from the previous round's weights raised to this
#: power: drawn from ≈ f^γ rather than f, they reach the thin tails, so the proposal is heavier-tailed than f
#: (bounded weights there) at a small cost in the bulk (docs/samplers.md §4.1)
CENTRE_TEMPER = 0.5
#: population Monte Carlo rounds beyond ``n_rounds`` while the last round's PSIS k̂ fails its threshold
#: (a gap between centres; the next round's centres are resampled from its heavy weights)
EXTRA_ROUNDS = 2


def sign_pieces(task: CompletionTask, X: np.ndarray) -> np.ndarray:
    """Labels ``(...)`` of the sign pattern of the unobserved entries (strings like ``"+-"``).

    Sign groups are *pieces*, not necessarily connected components: one component can cross a sign change.
    """
    sg = np.where(np.asarray(X)[..., ~task.mask] >= 0, "+", "-")
    return np.apply_along_axis(lambda a: "".join(a), -1, sg) if sg.shape[-1] else np.full(sg.shape[:-1], "")


@dataclass(frozen=True, eq=False)
class SolutionSetState:
    X: np.ndarray
    log_density: float
    U: np.ndarray  # (m, m)
    V: np.ndarray  # (n, n)
    T: np.ndarray  # (d, m, n) orthonormal tangent basis of 𝓜
    Nb: np.ndarray  # (p, m, n) orthonormal normal basis of 𝓜
    step_size: float
    Hc: np.ndarray | None = None  # the part of Nb inside T_X M_r as coefficients (SolutionSetSampler._batch_project)


@dataclass(frozen=True, eq=False)
class _Batch:
    """Geometry of ``P`` points of ``𝓜`` (leading axis P); ``ok`` marks points where it is defined."""

    X: np.ndarray  # (P, m, n)
    log_f: np.ndarray  # (P,)
    U: np.ndarray
    V: np.ndarray
    T: np.ndarray  # (P, d, m, n)
    Hc: np.ndarray  # (P, kl, d_r): the normal directions of 𝓜 inside T_X M_r, over the SVD pairs (i < r or j < r)
    ok: np.ndarray  # (P,) bool
    log_limit: np.ndarray  # (P,) log of the Gibbs-limit density g (w.r.t. Euclidean Hausdorff measure)

    def take(self, idx: np.ndarray) -> "_Batch":
        return _Batch(*(getattr(self, f)[idx] for f in ("X", "log_f", "U", "V", "T", "Hc", "ok", "log_limit")))

    def where(self, mask: np.ndarray, other: "_Batch") -> "_Batch":
        def pick(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return np.where(mask.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)
        return _Batch(*(pick(getattr(self, f), getattr(other, f)) for f in ("X", "log_f", "U", "V", "T", "Hc", "ok", "log_limit")))


@njit(cache=True, error_model="numpy")
def log_abs_det_blocks(B: np.ndarray) -> np.ndarray:
    """``out[t, p] = log |det B[p, :, t, :]|`` for ``B`` of shape (P, d, T, d) (the layout of one matrix product
    ``T_Cᵀ T_Y`` over all pairs), by Gaussian elimination with partial pivoting (``-inf`` for a singular block),
    read in place: on one 5×5 rank-2 replicate (36 million 4×4 blocks) 2.9 s against 7.6 s for ``np.linalg.det``
    on the stack, whose LAPACK call per matrix dominates, plus the copy of the transposed stack it needs.

    >>> B = np.random.default_rng(0).normal(size=(3, 4, 2, 4))
    >>> ref = np.log(np.abs(np.linalg.det(B.transpose(2, 0, 1, 3))))
    >>> bool(np.allclose(log_abs_det_blocks(B), ref))
    True
    """
    P, d, T = B.shape[0], B.shape[1], B.shape[2]
    out = np.empty((T, P))
    W = np.empty((d, d))
    piv = np.empty(d, dtype=np.int64)
    for p in range(P):
        for t in range(T):
            for i in range(d):
                for j in range(d):
                    W[i, j] = B[p, i, t, j]
            _, logabs, ok = lu_inplace(W, piv)
            out[t, p] = logabs if ok else -np.inf
    return out


def share_variances(pieces: np.ndarray, w: np.ndarray, fractions: dict[str, float]) -> dict[str, float]:
    """Delta-method variance ``Σ_i w_i² (1[i ∈ k] − p_k)²`` of each self-normalized weighted share ``p_k``
    (normalized weights ``w``; Owen, "Monte Carlo theory, methods and examples", 2013, §9.2)."""
    return {k: float(np.sum(w * w * ((pieces == k) - p) ** 2)) for k, p in fractions.items()}


def _consistency_z(variances: dict[str, float], fractions: dict[str, float], out_pieces: np.ndarray,
                   parents: np.ndarray) -> float:
    """The output draws' piece shares against the weighted ones (docs/samplers.md §4.2), as one z-score.

    Per piece ``k`` with weighted share ``p`` and output share ``p_out``: ``z_k = |p_out − p| / √(v_w + v_out)``, with
    ``v_w`` the delta-method variance of the weighted share (:func:`share_variances`; a share carried by one heavy
    weight is uncertain by about itself) and ``v_out`` that of the output share with the draws
    clustered by parent (siblings resampled from one importance draw walk from the same point):
    ``max(Σ_g (a_g − c_g p_out)², n p(1−p)) / n²`` (``a_g`` of the ``c_g`` siblings of parent ``g`` in ``k``,
    ``n`` draws). The largest ``z_k`` becomes the z of its Bonferroni family-wise p-value over the ``K`` pieces,
    so one threshold serves 3 pieces and 1000. Measured on an 8×8 rank-2 set (~1000 sign pieces of < 1 % each,
    98 % of the draws change piece in the walk): the uncorrected maximum with binomial ``v_out`` and no ``v_w`` was
    4.3 and 6.2 on two replicates; its largest terms were 7 siblings of one parent walking into a piece of
    weighted share 0.0002.
    """
    from scipy import stats

    if not fractions:
        return 0.0
    n = out_pieces.size
    _, group = np.unique(parents, return_inverse=True)
    c = np.bincount(group).astype(np.float64)
    top = 0.0
    for k, p in fractions.items():
        in_k = out_pieces == k
        p_out = float(np.mean(in_k))
        a = np.bincount(group, weights=in_k.astype(np.float64), minlength=c.size)
        v_out = max(float(np.sum((a - c * p_out) ** 2)), n * p * (1.0 - p)) / (n * n)
        top = max(top, abs(p_out - p) / math.sqrt(max(variances[k] + v_out, 1e-300)))
    p_family = min(1.0, 2.0 * len(fractions) * float(stats.norm.sf(top)))
    return float(stats.norm.isf(p_family / 2.0)) if p_family < 1.0 else 0.0


def _round_up(x: float) -> str:
    """``x`` rounded up to two significant digits, as text (a radius to suggest).

    >>> _round_up(12.31), _round_up(0.0423)
    ('13', '0.043')
    """
    e = math.floor(math.log10(x)) - 1
    return f"{math.ceil(x / 10.0**e - 1e-9) * 10.0**e:.{max(-e, 0)}f}"


def centre_bandwidths(X: np.ndarray, k: int = 3) -> np.ndarray:
    """Kernel bandwidths of the centres ``X`` (P, m, n) (docs/samplers.md §4.1): ``(3, P)``, one row per kernel
    family of the proposal (shares :data:`KERNEL_SHARES`).

    With ``d_k(j)`` centre ``j``'s distance to its ``k``-th nearest distinct centre and ``h₀`` their median (at most a
    quarter of the median norm): ``h₀`` for every centre (the same local resolution everywhere, also next to an
    isolated centre); ``max(h₀, d_k(j))`` (where the centres are sparse, in the thin tails of a component, the
    kernels reach the neighbours, so no gap opens between them); and ``c`` times that (the defensive family,
    ``c`` = :data:`DEFENSIVE` [1]).

    >>> X = np.concatenate([np.linspace(0, 1, 101), np.linspace(2, 10, 9)])[:, None, None] * np.ones((1, 1, 2))
    >>> h = centre_bandwidths(X + 20.0)
    >>> bool(np.all(h[0] == h[0, 0]) and h[0, 0] < 0.05), bool(np.all(h[1, -9:] > 1.0)), bool(np.all(h[2] == 3 * h[1]))
    (True, True, True)
    """
    P = X.shape[0]
    flat = X.reshape(P, -1)
    sq = np.sum(flat * flat, axis=1)
    kth = np.full(P, np.inf)
    kk = min(k, P - 1) - 1
    for a in range(0, P, 512) if P > 1 else ():
        b = min(P, a + 512)
        d2 = sq[a:b, None] + sq[None, :] - 2.0 * flat[a:b] @ flat.T
        d = np.sqrt(np.maximum(d2, 0.0))
        d = np.where(d > 1e-12 * (1.0 + np.sqrt(sq[a:b]))[:, None], d, np.inf)  # itself and exact copies
        kth[a:b] = np.partition(d, kk, axis=1)[:, kk]
    finite = kth[np.isfinite(kth)]
    cap = max(0.25 * float(np.median(np.sqrt(sq))), 1e-6)
    h0 = min(max(float(np.median(finite)) if finite.size else 1.0, 1e-6), cap)
    local = np.clip(np.where(np.isfinite(kth), kth, h0), h0, cap)
    return np.stack([np.full(P, h0), local, DEFENSIVE[1] * local])


def _bandwidth_rows(h: Any, P: int) -> np.ndarray:
    """``(3, P)`` bandwidths as from :func:`centre_bandwidths`, also from one (or one per centre) bandwidth ``h``:
    ``h``, ``h`` and :data:`DEFENSIVE` [1] ``· h``."""
    h = np.asarray(h, dtype=float)
    if h.ndim == 2:
        return np.broadcast_to(h, (len(KERNEL_SHARES), P))
    narrow = np.broadcast_to(h, (P,))
    return np.stack([narrow, narrow, DEFENSIVE[1] * narrow])


def _logdet_limit(H: np.ndarray, w_in: np.ndarray, w_mix: np.ndarray) -> np.ndarray:
    """``log(pdet M · det KᵀPK)`` for Gram parts ``P`` (inside weights) and ``M`` (mixed), batched."""
    P = np.einsum("pkij,plij,pij->pkl", H, H, w_in)
    M = np.einsum("pkij,plij,pij->pkl", H, H, w_mix)
    ev, vec = np.linalg.eigh(M)
    top = np.maximum(ev[:, -1:], 1e-300)
    big = ev > _RANK_TOL * top
    out = np.sum(np.where(big, np.log(np.where(big, ev, 1.0)), 0.0), axis=1)
    for i in range(H.shape[0]):  # the null space of M differs per point; usually empty (then no loop work)
        K = vec[i][:, ~big[i]]
        if K.shape[1]:
            sign, ld = np.linalg.slogdet(K.T @ P[i] @ K)
            out[i] = out[i] + (ld if sign > 0 else -np.inf)
    return out


@dataclass(eq=False)
class SolutionSetSampler:
    """Sampler of the g_N-volume of ``S ∩ M_r`` inside ``window`` (see the module docstring).

    Parameters
    ----------
    task : dlnvolume.CompletionTask
    depth : int >= 1 or math.inf
        ``inf`` on a lower stratum or rectangular shape gives the ``N → ∞`` limit of the normalized laws.
    rank : int in 1..min(m, n)
    window : Confinement or list
        Must contain a :class:`FrobeniusBall` or :class:`GaussianPrior` (the solution set is unbounded);
        other factors multiply the density. At depth ``inf`` with rank >= 2 it must also contain a
        :class:`SingularValueFloor` (the tempering path passes near lower strata, where ``ρ_∞`` is not
        integrable, MATH.md §3.5).
    normalized : bool, default True
    newton_tol, newton_max_iter : projection tolerance (relative to ``1 + ‖X‖_F``) and iterations.
    measure : {"solution_set", "gibbs_limit"}, default "solution_set"
        The law on ``S ∩ M_r`` to sample: the g_N-volume ``f``, or the Gibbs limit ``g = f / √pdet(L Ā Lᵀ)``
        (the ``β → ∞`` limit of ``π_β``; docs/samplers.md §2, §4.4). Both run the same algorithm with the
        other density, so the Gibbs limit's importance weights are the solution set's reweighted by the exact
        ratio, with their own checks (PSIS ``k̂``, coverage, consistency).
    """

    task: CompletionTask
    depth: float
    rank: int
    window: Any = None
    normalized: bool = True
    newton_tol: float = 1e-11
    newton_max_iter: int = 40
    measure: str = "solution_set"

    name = "solution_set"
    adaptive = True
    target_accept = 0.5

    def __post_init__(self) -> None:
        if not isinstance(self.task, CompletionTask):
            raise InvalidArgumentError(
                f"task={self.task!r} has type {type(self.task).__name__}; expected a dlnvolume.CompletionTask"
            )
        self.depth = check_depth(self.depth, normalized=bool(self.normalized))
        m, n = self.task.shape
        self.rank = check_rank(self.rank, m, n)
        if self.rank < 1:
            raise InvalidRankError(f"rank={self.rank}; expected rank in 1..{min(m, n)}")
        self.window = as_confinement(self.window, "window")
        self.newton_tol = check_positive(self.newton_tol, "newton_tol")
        self.newton_max_iter = check_int(self.newton_max_iter, "newton_max_iter", minimum=1)
        if self.measure not in MEASURES:
            raise InvalidArgumentError(f"measure={self.measure!r}; expected one of {', '.join(map(repr, MEASURES))}")
        if not self.window.bounded:
            raise ImproperTargetError(
                f"window={self.window.describe()}: the solution set S ∩ M_r is unbounded, so its volume is infinite "
                "without a bounded window; pass window=FrobeniusBall(radius) (or a GaussianPrior)"
            )
        self._obs_pairs = np.nonzero(self.task.mask)
        inside = np.ones((m, n), dtype=bool)
        inside[self.rank:, self.rank:] = False  # pairs (i, j) of the SVD basis that span T_X M_r
        self._svd_pairs = (*np.nonzero(inside), *np.nonzero(~inside))
        self._codim: int | None = None
        self._limit = math.isinf(self.depth) and (m != n or self.rank != m)

    # ------------------------------------------------------------------ dimension
    @property
    def nominal_dim(self) -> int:
        """``r(m+n-r) - |Ω|``: the dimension of ``S ∩ M_r`` if the intersection is transversal."""
        m, n = self.task.shape
        return self.rank * (m + n - self.rank) - self.task.n_observed

    @property
    def dim(self) -> int:
        """Actual dimension ``mn - rank J`` of ``S ∩ M_r`` (found at a point of the set; see the module docstring)."""
        if self._codim is None:
            self.find_starts(1, rng=0)
        m, n = self.task.shape
        return m * n - int(self._codim)  # type: ignore[arg-type]

    def _set_codim(self, X: np.ndarray) -> None:
        """Fix the codimension from a point of the set (numerical rank of J there)."""
        k = self._jacobian_rank(X)
        m, n = self.task.shape
        if k >= m * n:
            raise InvalidArgumentError(
                f"S ∩ M_r (rank {self.rank}, {self.task.n_observed} observed entries of a {m}x{n} matrix) has "
                f"dimension 0 at the points found (nominal r(m+n-r) - |Ω| = {self.nominal_dim}): it is a finite set, "
                "which has no volume measure; observe fewer entries or raise the rank"
            )
        self._codim = k

    def _jacobian_rank(self, X: np.ndarray) -> int:
        """Numerical rank of the constraint Jacobian ``J`` at ``X``: the rank the geometry computes per point
        (:meth:`_batch_geometry`, one SVD of the observations on ``T_X M_r``), so the two cannot disagree."""
        G = self._batch_geometry(np.asarray(X, dtype=np.float64)[None], force_codim=True, rank_only=True)
        return int(G)

    # ------------------------------------------------------------------ geometry (batched over points)
    def _batch_geometry(self, X: np.ndarray, force_codim: bool = False, measure: str | None = None,
                        rank_only: bool = False) -> Any:
        """Frames, tangent/normal bases, the log density of ``measure`` (default :attr:`measure`; ``f`` for
        ``"solution_set"``, ``g`` for ``"gibbs_limit"``, window included) and the Gibbs-limit ``log g`` (without
        window) at ``X`` (P, m, n).

        ``force_codim``: take the normal basis as the top ``codim`` right singular vectors of ``J`` even
        where the numerical rank differs (points off the set, the start of a projection).
        """
        m, n = self.task.shape
        r = self.rank
        P = X.shape[0]
        with np.errstate(all="ignore"):
            U, s, Vh = np.linalg.svd(X, full_matrices=True)
        V = np.swapaxes(Vh, -1, -2)
        ok = np.all(np.isfinite(s), axis=1) & (s[:, r - 1] > 1e-12 * np.maximum(s[:, 0], 1e-300))
        # Everything in the SVD basis {u_i v_jᵀ} (orthonormal): T_X M_r is spanned by the pairs with i < r or j < r,
        # its normal space by the others ((m-r)(n-r) of them). The observations restricted to T_X M_r are
        # L[(p,q), (i,j)] = U_pi V_qj (|Ω| x d_r); the row space of the constraint Jacobian J = [E_Ω; normal of
        # M_r] is the normal of M_r plus the row space of L, so one small SVD of L gives the numerical rank of J,
        # the tangent space of S ∩ M_r (null space of L) and its normal space (docs/samplers.md §1).
        ti, tj, ni, nj = self._svd_pairs
        op, oq = self._obs_pairs
        if not ok.all():  # NaN/inf points: any orthonormal frame (they are marked not ok)
            eye_m, eye_n = np.eye(m), np.eye(n)
            U = np.where(ok[:, None, None], U, eye_m)
            V = np.where(ok[:, None, None], V, eye_n)
        L = U[:, op][:, :, ti] * V[:, oq][:, :, tj]  # (P, |Ω|, d_r)
        rr = ni.size
        full_row = self._codim is not None and self._codim - rr == L.shape[1] and not rank_only
        if L.shape[1] and full_row:
            # the transversal case (the observations independent on T_X M_r): the singular values for the rank and
            # pdet, and any orthonormal basis of the row space and null space of L, from a QR of Lᵀ (measured on
            # 2000 8×8 rank-2 points: 0.09 s against 0.18 s for the full SVD); every use of the bases is invariant
            # under a rotation within each space (docs/samplers.md §1)
            with np.errstate(all="ignore"):
                S = np.linalg.svd(L, compute_uv=False)
                Bh = np.swapaxes(np.linalg.qr(np.swapaxes(np.where(ok[:, None, None], L, 0.0), -1, -2), mode="complete")[0], -1, -2)
        elif L.shape[1]:
            _, S, Bh = np.linalg.svd(L, full_matrices=True)
        else:  # nothing observed: T_X M_r itself
            S, Bh = np.zeros((P, 0)), np.broadcast_to(np.eye(ti.size), (P, ti.size, ti.size))
        k_pt = rr + np.sum(S > _RANK_TOL * np.maximum(S[:, :1], 1.0), axis=1)
        if rank_only:  # the numerical rank of J at the first point (_jacobian_rank)
            return int(k_pt[0])
        if self._codim is not None:
            k = self._codim
        else:  # before a point of the set fixed it (find_starts): the rank at the given points
            k = int(np.max(k_pt[ok])) if ok.any() else rr + int(min(L.shape[1:]))
        if not force_codim:
            ok &= k_pt == k
        kl = min(max(k - rr, 0), ti.size)
        # the normal space of 𝓜: the rows Bh[:kl] (inside T_X M_r) and the unit pairs (ni, nj) (the normal of M_r);
        # kept as coefficients, the projection works in the frames (:meth:`_batch_project`, :meth:`normal_basis`)
        Hc = Bh[:, :kl]
        H = np.zeros((P, ti.size - kl, m, n))  # the tangent basis of S ∩ M_r in the SVD basis
        H[:, :, ti, tj] = Bh[:, kl:]
        T = U[:, None] @ H @ np.swapaxes(V, -1, -2)[:, None]
        with np.errstate(divide="ignore"):
            ls = np.log(np.where(ok[:, None], s[:, :r], 1.0))
        ext = np.concatenate([ls, np.full((P, min(m, n) - r), -np.inf)], axis=1)
        lm = log_multipliers(ext, (m, n), r, self.depth, self.normalized)
        ii, jj = np.arange(m)[:, None] < r, np.arange(n)[None, :] < r
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            if self._limit:
                w_in = np.where(ii & jj, np.exp(-np.where(ii & jj, lm, 0.0)), 0.0)
                lo = np.minimum(np.arange(m)[:, None], np.arange(n)[None, :])
                lo = np.minimum(lo, r - 1)
                w_mix = np.where(ii ^ jj, np.exp(-2.0 * ls[:, lo]), 0.0)
                logdet = _logdet_limit(H, w_in, w_mix)
            else:
                mask = ii | jj
                inv = np.where(mask, np.exp(-np.where(mask, lm, 0.0)), 0.0)
                G = np.einsum("pkij,plij,pij->pkl", H, H, inv)
                sign, logdet = np.linalg.slogdet(G)
                logdet = np.where(sign > 0, logdet, -np.inf)
            log_f = 0.5 * logdet + self.window.log_density_sigma(np.where(ok[:, None], s[:, :r], 1.0))
            log_rho = log_volume_density_from_log_sigma(ls, (m, n), r, self.depth, self.normalized)
            ev = S * S  # eigenvalues of L Lᵀ (the observation map on T_X M_r)
            big = ev > _RANK_TOL * np.maximum(ev[:, :1], 1e-300)
            log_pdet = np.sum(np.where(big, np.log(np.where(big, ev, 1.0)), 0.0), axis=1)
            log_limit = log_rho - 0.5 * log_pdet
            if (measure or self.measure) == "gibbs_limit":
                log_f = np.where(np.isfinite(log_f), log_limit, -np.inf) + self.window.log_density_sigma(
                    np.where(ok[:, None], s[:, :r], 1.0))
        log_f = np.where(ok & np.isfinite(log_f), log_f, -np.inf)
        return _Batch(X, log_f, U, V, T, Hc, ok, np.where(ok, log_limit, -np.inf))

    def normal_basis(self, B: _Batch) -> np.ndarray:
        """The Frobenius-orthonormal normal basis ``(P, k, m, n)`` of ``𝓜`` at the points of ``B``: ``U Hn Vᵀ`` for the
        rows of ``B.Hc`` (placed on the SVD pairs of ``T_X M_r``) and the unit pairs ``u_a v_bᵀ`` (``a, b >= r``)."""
        m, n = self.task.shape
        ti, tj, ni, nj = self._svd_pairs
        P, kl = B.Hc.shape[:2]
        Hn = np.zeros((P, kl + ni.size, m, n))
        Hn[:, :kl, ti, tj] = B.Hc
        Hn[:, np.arange(kl, kl + ni.size), ni, nj] = 1.0
        return B.U[:, None] @ Hn @ np.swapaxes(B.V, -1, -2)[:, None]

    def _batch_project(self, Z: np.ndarray, U: np.ndarray, V: np.ndarray, Hc: np.ndarray,
                       active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Solve ``q(Z + Σ c_k Nb_k) = 0`` over the normal space of ``𝓜`` at the point with frames ``U, V`` (normal
        basis :meth:`normal_basis` from the coefficients ``Hc``); ``(Y, ok)``.

        Compiled (:func:`samplers._projection.project_points`): the rank constraint is solved exactly in the
        frames and Newton runs on the observed entries. Deterministic in ``(Z, U, V, Hc)``, as the walk's reverse
        check needs. Converged where the constraints ``q`` are below ``newton_tol·(1 + ‖Z‖_F)``.
        """
        ti, tj, _, _ = self._svd_pairs
        op, oq = self._obs_pairs
        f64 = np.float64
        return project_points(np.ascontiguousarray(Z, dtype=f64), np.ascontiguousarray(U, dtype=f64),
                              np.ascontiguousarray(V, dtype=f64), np.ascontiguousarray(Hc, dtype=f64),
                              ti.astype(np.int64), tj.astype(np.int64), op.astype(np.int64), oq.astype(np.int64),
                              np.ascontiguousarray(self.task.values[self.task.mask], dtype=f64), int(self.rank),
                              np.asarray(active, dtype=np.bool_), float(self.newton_tol), int(self.newton_max_iter))

    def _geometry(self, X: np.ndarray) -> _Batch | None:
        g = self._batch_geometry(np.asarray(X, dtype=np.float64)[None])
        return g if bool(g.ok[0]) and math.isfinite(float(g.log_f[0])) else None

    def _project(self, Z: np.ndarray, geo: _Batch) -> np.ndarray | None:
        Y, ok = self._batch_project(np.asarray(Z, dtype=np.float64)[None], geo.U, geo.V, geo.Hc, np.ones(1, dtype=bool))
        return Y[0] if ok[0] else None

    def log_density(self, X: Any) -> float:
        """``log f(X)`` (Gram determinant plus the window's log density) at a point ``X`` of ``S ∩ M_r``; the
        Gibbs limit's ``log g(X)`` (window included) when :attr:`measure` is ``"gibbs_limit"``."""
        X = check_matrix(X, batch=False)
        if X.shape != self.task.shape:
            raise ShapeError(f"X has shape {X.shape}; expected {self.task.shape} for this task")
        geo = self._geometry(X)
        return -math.inf if geo is None else float(geo.log_f[0])

    def log_gibbs_ratio(self, X: Any) -> Any:
        """``log(f/g)`` at points of ``S ∩ M_r``: the reweighting from the Gibbs limit to the solution-set
        volume (``= ½ log pdet(L Ā Lᵀ)`` at finite depth; docs/samplers.md §2), window excluded.

        ``X`` (m, n) gives a float; a batch (..., m, n) gives an array (...) (one batched geometry call).
        Points outside the window give -inf (the window's density is part of the geometry).
        """
        X = check_matrix(X)
        if X.shape[-2:] != self.task.shape:
            raise ShapeError(f"X has shape {X.shape}; expected (..., {self.task.shape[0]}, {self.task.shape[1]})")
        flat = np.asarray(X, dtype=np.float64).reshape((-1,) + X.shape[-2:])
        geo = self._batch_geometry(flat, measure="solution_set")
        s = np.linalg.svd(flat, compute_uv=False)[:, : self.rank]
        with np.errstate(invalid="ignore"):
            out = geo.log_f - self.window.log_density_sigma(s) - geo.log_limit
        out = np.where(np.isfinite(geo.log_f), out, -np.inf)
        return float(out[0]) if X.ndim == 2 else out.reshape(X.shape[:-2])

    # ------------------------------------------------------------------ kernel interface (one chain)
    def init(self, X0: np.ndarray, rng: Any = None) -> SolutionSetState:
        return ConstrainedWalkKernel(self).init(X0, rng)

    @staticmethod
    def with_step_size(state: SolutionSetState, step_size: float) -> SolutionSetState:
        return replace(state, step_size=float(step_size))

    @staticmethod
    def matrix(state: SolutionSetState) -> np.ndarray:
        return state.X

    def step(self, state: SolutionSetState, rng: np.random.Generator) -> tuple[SolutionSetState, StepInfo]:
        return ConstrainedWalkKernel(self).step(state, rng)

    def walk_sweep(self, B: _Batch, s: np.ndarray, rng: np.random.Generator) -> tuple[_Batch, np.ndarray, dict[str, np.ndarray]]:
        """One constrained random-walk step for every point of ``B`` with step sizes ``s`` (P,)."""
        P, d = B.T.shape[:2]
        xi = rng.standard_normal((P, d))
        log_u = np.log(rng.uniform(size=P))
        v = s[:, None, None] * np.einsum("pk,pkij->pij", xi, B.T)
        Y, okp = self._batch_project(B.X + v, B.U, B.V, B.Hc, B.ok)
        G = self._batch_geometry(Y)
        ok_y = okp & G.ok & np.isfinite(G.log_f)
        D = B.X - Y
        coef = np.einsum("pkij,pij->pk", G.T, D)
        v_rev = np.einsum("pk,pkij->pij", coef, G.T)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            w = coef / s[:, None]
            log_alpha = G.log_f - B.log_f - 0.5 * np.sum(w * w, axis=1) + 0.5 * np.sum(xi * xi, axis=1)
        log_alpha = np.where(ok_y & ~np.isnan(log_alpha), log_alpha, -np.inf)
        acc = np.exp(np.minimum(log_alpha, 0.0))
        want = ok_y & (log_u < log_alpha)
        back, okb = self._batch_project(Y + v_rev, G.U, G.V, G.Hc, want)
        tol = 1e-8 * (1.0 + np.linalg.norm(B.X.reshape(P, -1), axis=1))
        good = want & okb & (np.max(np.abs(back - B.X).reshape(P, -1), axis=1) <= tol)
        fails = {"projection": (B.ok & ~okp).astype(np.int64), "outside": (okp & ~ok_y).astype(np.int64),
                 "reverse_check": (want & ~good).astype(np.int64)}
        return G.where(good, B), acc, fails

    # ------------------------------------------------------------------ starting points
    def find_starts(self, n_chains: int, *, rng: Any = None, n_candidates: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Points of ``S ∩ M_r`` in the window ``(n_chains, m, n)``, spread over the sign-pattern groups, and labels.

        Alternating projections (truncated SVD to rank ``r``, then onto ``S``) from random matrices, finished
        by the Newton projection. Only starting points for ``method="walk"`` (which never leaves the
        component of its start); the SMC sampler does not use them.
        """
        n_chains = check_int(n_chains, "n_chains", minimum=1)
        if n_candidates is not None:
            n_candidates = check_int(n_candidates, "n_candidates", minimum=1)
        rng = check_rng(rng)
        m, n = self.task.shape
        r = self.rank
        want = n_candidates if n_candidates is not None else max(8, 4 * n_chains)
        obs = self.task.values[self.task.mask]
        with np.errstate(over="ignore"):
            rms = float(np.sqrt(np.mean(obs**2)))
        scale = max(1.0, rms if math.isfinite(rms) else float(np.max(np.abs(obs))))  # RMS overflows near 1e154
        groups: dict[tuple, list[np.ndarray]] = {}
        found = 0
        nearest = math.inf  # the smallest ‖X‖_F of a solution found outside the window (for the error message)
        for _attempt in range(50 * want):
            if found >= want:
                break
            X = self.task.project_to_solutions(scale * rng.standard_normal((m, n)))
            for _ in range(300):
                U, s, Vh = np.linalg.svd(X, full_matrices=False)
                Xr = (U[:, :r] * s[:r]) @ Vh[:r]
                X = self.task.project_to_solutions(Xr)
                if np.max(np.abs(X - Xr)) < 1e-13 * (1 + s[0]):
                    if np.isinf(self.window.log_density_sigma(s[None, :r]))[0]:
                        nearest = min(nearest, float(np.linalg.norm(X)))
                    break
            geo = self._geometry(X)
            if geo is None:
                continue
            Y = self._project(X, geo)
            if Y is None:
                continue
            if self._codim is None:
                self._set_codim(Y)
            geo = self._geometry(Y)
            if geo is None:
                continue
            key = tuple(np.sign(Y[~self.task.mask]).astype(int).tolist())
            groups.setdefault(key, []).append(Y)
            found += 1
        if not groups:
            if math.isfinite(nearest):
                hint = (f"enlarge the window: the solutions found lie outside it, the nearest at ‖X‖_F = {nearest:.4g}; "
                        f"a Frobenius radius of {_round_up(1.5 * nearest)} contains it")
            else:  # alternating projections met no rank-r completion at all, inside the window or outside
                hint = (f"no rank-{r} matrix matching the observed entries was found anywhere (nominal dimension "
                        f"r(m+n-r) - |Ω| = {self.nominal_dim}{': generically there is none' if self.nominal_dim < 0 else ''})"
                        f"; check the rank, or enlarge the window")
            raise InvalidArgumentError(
                f"no point of S ∩ M_r (rank {r}) found inside window {self.window.describe()}; {hint}"
            )
        keys = sorted(groups)
        starts, labels = [], []
        used = {k: 0 for k in keys}
        for i in range(n_chains):
            k = keys[i % len(keys)]
            pool = groups[k]
            starts.append(pool[used[k] % len(pool)])
            used[k] += 1
            labels.append(keys.index(k))
        return np.array(starts), np.array(labels)

    # ------------------------------------------------------------------ front end
    def _path_confinement(self) -> Confinement:
        """The window, plus at depth inf a singular-value floor that does not change the β → ∞ limit."""
        if not math.isinf(self.depth) or self.window.floor > 0:
            return self.window
        if self.rank == 1:
            # |X_ij| <= σ_1 for every matrix, so σ_1 >= max |M_Ω| on S: a floor below it vanishes as β → ∞
            top = float(np.max(np.abs(self.task.values[self.task.mask])))
            if top > 0:
                return Confinement.combine(self.window, SingularValueFloor(0.5 * top))
        raise ImproperTargetError(
            f"depth inf with rank={self.rank} and window={self.window.describe()}: the tempering path of "
            "method='smc' passes near lower strata, where the infinite-depth density is not integrable (MATH.md "
            "§3.5); add SingularValueFloor(minimum) to the window (below the smallest σ_r on the solution set)"
        )

    def _walk(self, B: _Batch, n_sweeps: int, rng: np.random.Generator, s0: float | None = None
              ) -> tuple[_Batch, np.ndarray, float, dict[str, int]]:
        """``n_sweeps`` constrained random-walk sweeps of every point (step adapted in the first half)."""
        P = B.X.shape[0]
        scale = float(np.median(np.linalg.norm(B.X.reshape(P, -1), axis=1)))
        s = 0.05 * (1.0 + scale) if s0 is None else s0
        acc_sum = np.zeros(P)
        fails = {"projection": 0, "reverse_check": 0, "outside": 0}
        for sweep in range(n_sweeps):
            B, acc, f = self.walk_sweep(B, np.full(P, s), rng)
            acc_sum += acc
            for k in fails:
                fails[k] += int(f[k].sum())
            if sweep < n_sweeps // 2:
                s = s * math.exp(2.0 * (float(np.mean(acc)) - 0.5))
        return B, acc_sum / max(n_sweeps, 1), s, fails

    def _mixture_is(self, C: _Batch, n_proposals: int, h: np.ndarray, rng: np.random.Generator,
                    cut: float = 2.5) -> tuple[_Batch, np.ndarray, int]:
        """Importance sampling of ``f`` with a kernel mixture on the manifold (docs/samplers.md §4).

        ``q(Y) = (1/P) Σ_j K_j(Y)``, ``K_j`` the law of ``Π_j(Y_j + T_j w)``, ``w ~ N(0, h_j² I_d)`` truncated to
        ``|w| <= cut·h_j``, ``Π_j`` the Newton projection along ``N_{Y_j}``; w.r.t. the Hausdorff measure
        ``K_j(Y) = φ_{h_j}(w_j) |det(T_jᵀ T_Y)| / P(χ²_d <= cut²)``, ``w_j = T_jᵀ(Y - Y_j)``, on the local sheet
        ``|w_j| <= cut·h_j``, ``‖Y - Y_j‖ <= 1.5 cut·h_j``; the bandwidth rows ``h`` (:func:`centre_bandwidths`) are
        three kernel families drawn with the shares :data:`KERNEL_SHARES`. Returns the draws, ``log f - log q`` (``-inf`` for failed draws) and the
        number of failed projections.
        """
        P, d = C.T.shape[:2]
        M = n_proposals
        h = _bandwidth_rows(h, P)
        i = rng.integers(P, size=M)
        family = rng.choice(len(KERNEL_SHARES), size=M, p=KERNEL_SHARES)
        hs = h[family, i]
        w = rng.standard_normal((M, d))
        while True:  # truncation by rejection
            bad = np.sum(w * w, axis=1) > cut * cut
            if not bad.any():
                break
            w[bad] = rng.standard_normal((int(bad.sum()), d))
        w = hs[:, None] * w
        Z = C.X[i] + np.einsum("mk,mkij->mij", w, C.T[i])
        Y, ok = self._batch_project(Z, C.U[i], C.V[i], C.Hc[i], C.ok[i])
        ok &= np.linalg.norm((Y - C.X[i]).reshape(M, -1), axis=1) <= 1.5 * cut * hs
        G = self._batch_geometry(Y)
        ok &= G.ok & np.isfinite(G.log_f)
        n_fail = int(np.sum(~ok))
        log_q = self._proposal_log_q(C, G, h, cut)
        with np.errstate(invalid="ignore"):
            logw = G.log_f - log_q
        logw = np.where(ok & np.isfinite(logw), logw, -np.inf)
        return G, logw, n_fail

    @staticmethod
    def _proposal_log_q(C: _Batch, G: _Batch, h: np.ndarray, cut: float = 2.5) -> np.ndarray:
        """``log q(Y)`` of :meth:`_mixture_is`'s proposal at the points of ``G``: ``Σ_f s_f q_{h[f]}`` (shares ``s_f``
        :data:`KERNEL_SHARES`), ``q_h = (1/P) Σ_j K_{j,h_j}`` the kernel mixture on the centres ``C`` with
        bandwidths ``h_j``; ``-inf`` outside every kernel's sheet (where the proposal has no mass). The families
        share one pass over the centres (the distances and Jacobian determinants do not depend on the bandwidth)."""
        from scipy import stats

        P, d = C.T.shape[:2]
        M = G.X.shape[0]
        h = _bandwidth_rows(h, P)
        parts = [(h[f], math.log(share)) for f, share in enumerate(KERNEL_SHARES)]
        log_chi = math.log(stats.chi2.cdf(cut * cut, d))
        log_q = np.full(M, -np.inf)
        CX = C.X.reshape(P, -1)
        CT = C.T.reshape(P, d, -1)
        CTf = CT.reshape(P * d, -1)
        GX = G.X.reshape(M, -1)
        # every (point, centre) pair through matrix products (most pairs are within the defensive kernels' reach):
        # w_j = T_jᵀ(Y − Y_j) = T_jᵀY − T_jᵀY_j, ‖Y − Y_j‖² expanded, and the d×d blocks T_jᵀ T_Y of one product
        c = np.einsum("px,pkx->pk", CX, CT)
        sq_c = np.sum(CX * CX, axis=1)
        for a in range(0, M, 128):
            b = min(M, a + 128)
            t = b - a
            wj = (GX[a:b] @ CTf.T).reshape(t, P, d) - c[None]
            w2 = np.sum(wj * wj, axis=2)
            sq_g = np.sum(GX[a:b] * GX[a:b], axis=1)
            dist = np.sqrt(np.maximum(sq_g[:, None] + sq_c[None, :] - 2.0 * (GX[a:b] @ CX.T), 0.0))
            TY = G.T[a:b].reshape(t * d, -1)
            log_det = log_abs_det_blocks((CTf @ TY.T).reshape(P, d, t, d))  # (t, P): log |det T_jᵀ T_Y|
            terms = []
            for hk, log_share in parts:
                near = (w2 <= (cut * hk) ** 2 * (1 + 1e-9)) & (dist <= 1.5 * cut * hk)
                lk = np.where(near, -0.5 * w2 / (hk * hk) + log_det, -np.inf)
                terms.append(lk + (log_share - d * np.log(hk) - 0.5 * d * math.log(2 * math.pi) - log_chi))
            lk = np.concatenate(terms, axis=1)
            top = np.max(lk, axis=1)
            safe = np.where(np.isfinite(top), top, 0.0)
            with np.errstate(divide="ignore"):
                log_q[a:b] = safe + np.log(np.sum(np.exp(lk - safe[:, None]), axis=1)) - math.log(P)
        return log_q

    def smc_replicate(self, n_draws: int, seed: int, *, n_particles: int | None = None, beta_max: float | None = None,
                      n_mcmc: int = 10, n_walk: int = 20, target_ess: float = 0.5, n_centers: int | None = None,
                      n_proposals: int | None = None, n_rounds: int = 2) -> dict[str, Any]:
        """One replicate (module docstring): ``n_draws`` equally weighted draws and their record.

        1. tempered SMC on ``π_β`` to ``β_max`` with ``n_particles`` (default 1000) particles, projected
           onto ``S ∩ M_r`` and reweighted by ``f/g``: finds the components and places ``n_centers``
           (default ``max(n_draws, 500)``) kernel centres (resampled, then ``n_walk`` walk sweeps);
        2. importance sampling of ``f`` with the kernel mixture on those centres (:meth:`_mixture_is`,
           ``n_proposals`` draws, default ``4 n_draws``): exact weights, so the component masses do not
           depend on how well step 1 balanced them; ``n_rounds`` (default 2) rounds of population Monte
           Carlo, the centres of a round resampled from the weighted draws of the previous one (only the
           last round's draws and weights are used), and up to :data:`EXTRA_ROUNDS` more while the last
           round's PSIS k̂ is above its threshold;
        3. ``n_draws`` draws resampled (systematic, sorted by piece) and moved by ``n_walk`` sweeps.
        """
        import time

        from .smc import default_path, kish_ess, run_tempered_smc, systematic_resample
        from .targets import GibbsTarget

        t0 = time.perf_counter()
        rng = np.random.default_rng(int(seed))
        if self._codim is None:
            _ = self.dim
        obs = self.task.values[self.task.mask]
        s2 = max(1.0, float(np.mean(obs**2)))
        b_max = 10.0 / s2 if beta_max is None else float(beta_max)
        n_particles = 1000 if n_particles is None else n_particles
        n_centers = max(n_draws, 500) if n_centers is None else n_centers
        n_proposals = 4 * n_draws if n_proposals is None else n_proposals
        conf = self._path_confinement()
        path_depth = self.depth if math.isinf(self.depth) else min(self.depth, PATH_DEPTH_MAX)
        target = GibbsTarget(self.task, path_depth, self.rank, b_max, conf, self.normalized)
        with part(0.0, W_SMC):
            run = run_tempered_smc(default_path(target), n_particles, rng, n_mcmc=n_mcmc, target_ess=target_ess)
        X = target.to_matrix(run.theta)
        G0 = self._batch_geometry(X, force_codim=True)
        Y, okp = self._batch_project(X, G0.U, G0.V, G0.Hc, G0.ok)
        G = self._batch_geometry(Y)
        s_x = np.linalg.svd(X, compute_uv=False)[:, : self.rank]
        log_limit = G.log_limit
        if path_depth != self.depth:  # the path's Gibbs limit g has the path's volume density ρ_{N'}, not ρ_N
            with np.errstate(divide="ignore", invalid="ignore"):
                ls = np.log(np.linalg.svd(Y, compute_uv=False)[:, : self.rank])
                m_n = self.task.shape
                log_limit = (log_limit + log_volume_density_from_log_sigma(ls, m_n, self.rank, path_depth, self.normalized)
                             - log_volume_density_from_log_sigma(ls, m_n, self.rank, self.depth, self.normalized))
        with np.errstate(invalid="ignore"):
            logw0 = G.log_f - log_limit - conf.log_density_sigma(s_x)
        logw0 = np.where(okp & G.ok & np.isfinite(logw0), logw0, -np.inf)
        n_lost = int(np.sum(~np.isfinite(logw0)))
        if not np.any(np.isfinite(logw0)):
            raise InvalidArgumentError("no SMC particle projected onto S ∩ M_r inside the window; enlarge the window")
        pieces0 = sign_pieces(self.task, Y)
        order = np.argsort(pieces0, kind="stable")
        Cn = G.take(order[systematic_resample(logw0[order], rng, n_centers)])
        Cn, _, s_walk, fails = self._walk(Cn, max(n_walk // 2, 1), rng)
        tick(W_SMC + W_CENTRES)
        n_fail = 0
        rnd = 0
        while True:
            if rnd:  # population Monte Carlo: the next centres follow the weighted draws of this round
                order = np.argsort(sign_pieces(self.task, Gis.X), kind="stable")
                Cn = Gis.take(order[systematic_resample(CENTRE_TEMPER * logw[order], rng, n_centers)])
                Cn, _, s_walk, f1 = self._walk(Cn, max(n_walk // 2, 1), rng, s0=s_walk)
                for k in fails:
                    fails[k] += f1[k]
            h = centre_bandwidths(Cn.X)
            Gis, logw, nf = self._mixture_is(Cn, n_proposals, h, rng)
            n_fail += nf
            rnd += 1
            tick(W_SMC + W_CENTRES + (1.0 - W_SMC - W_CENTRES - W_WALK) * min(rnd / n_rounds, 1.0))
            fin = np.isfinite(logw)
            if not np.any(fin) or rnd >= n_rounds + EXTRA_ROUNDS:
                break
            # after the planned rounds, more while the weights' tail is heavy (k̂ above its threshold): the
            # heavy weights sit in gaps between centres, and the next round's centres follow them there
            if rnd >= n_rounds and pareto_khat(logw[fin]) <= khat_max(int(np.sum(fin))):
                break
        if not np.any(np.isfinite(logw)):
            raise InvalidArgumentError("every importance-sampling draw failed to project; enlarge the window")
        pieces = sign_pieces(self.task, Gis.X)
        w = np.exp(logw - np.max(logw))
        w = w / np.sum(w)
        fractions = {str(k): float(np.sum(w[pieces == k])) for k in np.unique(pieces[np.isfinite(logw)])}
        weight_ess = kish_ess(logw)
        order = np.argsort(pieces, kind="stable")
        parents = order[systematic_resample(logw[order], rng, n_draws)]
        # output order: groups of siblings (same parent) stay adjacent, so the ArviZ ESS sees their
        # correlation; the groups are shuffled, so pieces are not blocked together in a chain
        _, first, counts = np.unique(parents, return_index=True, return_counts=True)
        perm = rng.permutation(first.size)
        parents = np.concatenate([parents[first[g]:first[g] + counts[g]] for g in perm])
        B = Gis.take(parents)
        B, acc, s_walk, f2 = self._walk(B, n_walk, rng, s0=s_walk)
        # checks of the importance sampling (docs/samplers.md §4.2): the tail of the weights (PSIS k̂), the share
        # of the walked draws (≈ f) where the proposal has no mass, and the walked draws' piece fractions
        # against the weighted ones
        fin = np.isfinite(logw)
        pareto_k = pareto_khat(logw[fin])
        uncovered = float(np.mean(~np.isfinite(self._proposal_log_q(Cn, B, h))))
        # a piece the SMC stage found (a share of its f/g-weighted particles) that the importance sampling lost
        w0 = np.exp(logw0 - np.max(logw0))
        w0 = w0 / np.sum(w0)
        # (lost: the proposal put fewer than MISSED_MIN_PARTICLES weighted draws there; where it put more, the
        # weights are exact and the stage's share, from particles of π_β only roughly reweighted to f, is the
        # rougher estimate of the two: docs/samplers.md §4.2 item 4)
        missed = 0.0
        for k in np.unique(pieces0[np.isfinite(logw0)]):
            sel = (pieces0 == k) & np.isfinite(logw0)
            share0 = float(np.sum(w0[sel]))
            seen = int(np.sum((pieces == k) & fin))
            if (int(np.sum(sel)) >= MISSED_MIN_PARTICLES and seen < MISSED_MIN_PARTICLES
                    and fractions.get(str(k), 0.0) < 0.1 * share0):
                missed += share0
        variances = share_variances(pieces, w, fractions)
        consistency = _consistency_z(variances, fractions, sign_pieces(self.task, B.X), parents)
        return {
            "draws": B.X, "log_density": B.log_f, "accept_prob": acc,
            "step_size": np.array(float(s_walk)),
            "n_evaluations": np.array(run.n_evaluations + 2 * n_particles + (n_centers + n_draws) * 2 * n_walk
                                      + n_proposals, dtype=np.int64),
            "elapsed": np.array(time.perf_counter() - t0),
            "log_evidence": np.array(run.log_evidence), "weight_ess": np.array(weight_ess),
            "n_stages": np.array(run.n_stages), "fractions": fractions, "fraction_variances": variances,
            "bandwidth": np.array(float(h[0, 0])),
            "failures_projection": np.array(fails["projection"] + f2["projection"] + n_lost + n_fail),
            "failures_reverse_check": np.array(fails["reverse_check"] + f2["reverse_check"]),
            "failures_outside": np.array(fails["outside"] + f2["outside"]),
            "failures_divergent": np.array(0),
            "pareto_k": np.array(pareto_k), "uncovered": np.array(uncovered), "consistency_z": np.array(consistency),
            "missed": np.array(missed),
            "n_weights": np.array(int(np.sum(fin))), "n_rounds": np.array(rnd),
        }

    def sample(
        self,
        n_draws: int,
        *,
        n_chains: int = 4,
        warmup: int | None = None,
        thin: int = 1,
        rng: Any = None,
        executor: Any = None,
        progress: bool = True,
        initial: Any = None,
        step_size: float | None = None,
        workers: int | None = None,
        batch_size: int | None = None,
        checkpoint: str | os.PathLike | None = None,
        method: str | None = None,
        beta_max: float | None = None,
        n_mcmc: int = 10,
        n_walk: int = 20,
    ) -> Chains:
        """Equally weighted draws of the solution-set volume (see :func:`samplers.sample` for common arguments).

        Parameters
        ----------
        method : {"smc", "walk"}, default "smc" ("walk" when ``initial`` is given)
            ``"smc"``: one replicate per chain (:meth:`smc_replicate`, module docstring); the draws of a
            chain are its resampled importance draws after ``n_walk`` walk sweeps, sibling groups
            adjacent. ``thin``, ``step_size`` and ``initial`` are not used; ``checkpoint`` stores one file
            per batch of replicates. ``"walk"``: the constrained random walk from ``initial`` or
            :meth:`find_starts` (stays in the components of its starts).
        beta_max : float, optional
            Last inverse temperature of the SMC stage that places the kernel centres (default
            ``10 / max(1, mean M_Ω²)``); it affects efficiency only, the importance weights are exact.
        n_mcmc : int, default 10
            MALA steps per tempering stage.
        n_walk : int, default 20
            Constrained random-walk sweeps after the projection (the first half adapts the step size).

        Returns
        -------
        Chains
            With ``log_evidence``, ``weight_ess``, ``pieces`` (weighted sign-group fractions per chain),
            ``dimension`` and the diagnostics of :func:`samplers.diagnostics.summarize`.
        """
        from dlnvolume.parallel import make_batches, run_batches

        from .diagnostics import attach_diagnostics
        from .driver import run_chains

        n_draws = check_int(n_draws, "n_draws", minimum=1)
        n_chains = check_int(n_chains, "n_chains", minimum=1)
        thin = check_int(thin, "thin", minimum=1)
        if method is None:
            method = "walk" if initial is not None else "smc"
        if method not in ("smc", "walk"):
            raise InvalidArgumentError(f"method={method!r}; expected 'smc' or 'walk'")
        if warmup is None:
            warmup = n_draws * thin // 2
        root = as_seed_sequence(rng)
        start_seq, chain_seq = root.spawn(2)
        seeds = spawn_seeds(chain_seq, n_chains)
        if method == "smc":
            n_mcmc = check_int(n_mcmc, "n_mcmc", minimum=1)
            n_walk = check_int(n_walk, "n_walk", minimum=0)
            if beta_max is not None:
                beta_max = check_positive(beta_max, "beta_max")
            if workers is not None:
                workers = check_int(workers, "workers", minimum=1)
            self._path_confinement()
            if self._codim is None:
                _ = self.dim
            bs = check_int(batch_size if batch_size is not None else 1, "batch_size", minimum=1)
            payloads = [{"sampler": self, "seeds": [int(seeds[i]) for i in idx], "n": n_draws,
                         "opts": {"beta_max": beta_max, "n_mcmc": n_mcmc, "n_walk": n_walk}}
                        for idx in make_batches(n_chains, bs)]
            meta = None
            if checkpoint is not None:
                meta = {"kind": "samplers.SolutionSetSampler.smc", "target": {k: str(v) for k, v in self.describe().items()},
                        "task": self.task.digest(), "n_draws": n_draws, "warmup": warmup, "thin": thin,
                        "seeds": [int(v) for v in seeds], "opts": {k: repr(v) for k, v in payloads[0]["opts"].items()},
                        "newton": [self.newton_tol, self.newton_max_iter]}

            def same(i: int, arrays: dict[str, np.ndarray]) -> bool:
                got = arrays.get("chain_seeds")
                return got is not None and np.array_equal(got, np.array(payloads[i]["seeds"], dtype=np.uint64))

            results = run_batches(_smc_batch, payloads, executor=executor, workers=workers, progress=progress,
                                  desc="smc replicates", checkpoint=checkpoint, meta=meta, validate=same)
            cat = {k: np.concatenate([r[k] for r in results]) for k in results[0] if not k.startswith("piece")}
            labels = sorted({str(k) for r in results for k in np.asarray(r["piece_labels"]).ravel() if str(k)})
            def per_chain(r: dict[str, np.ndarray], k: str, name: str) -> np.ndarray:
                if name not in r:  # a checkpoint from before the variances were stored: NaN (the s.e. then
                    return np.full(r["draws"].shape[0], np.nan)  # comes from the replicates alone)
                return (np.where(r["piece_labels"] == k, r[name], 0.0).sum(axis=1) if r["piece_labels"].size
                        else np.zeros(r["draws"].shape[0]))

            pieces = {k: np.concatenate([per_chain(r, k, "piece_fractions") for r in results]) for k in labels}
            piece_variances = {k: np.concatenate([per_chain(r, k, "piece_variances") for r in results]) for k in labels}
            chains = Chains(
                draws=cat["draws"], log_density=cat["log_density"], accept_prob=cat["accept_prob"],
                step_size=cat["step_size"],
                failures={k[len("failures_"):]: cat[k] for k in cat if k.startswith("failures_")},
                target=self.describe(), method="smc", seeds=np.asarray(seeds, dtype=np.uint64), warmup=0, thin=1,
                n_evaluations=cat["n_evaluations"], elapsed=cat["elapsed"], log_evidence=cat["log_evidence"],
                weight_ess=cat["weight_ess"], pieces=pieces, piece_variances=piece_variances, dimension=self.dim,
                pareto_k=cat["pareto_k"],
                uncovered=cat["uncovered"], consistency_z=cat["consistency_z"], n_weights=cat["n_weights"],
                missed=cat.get("missed", np.full(len(seeds), np.nan)),  # NaN (fails): a checkpoint from before it
            )
            return attach_diagnostics(chains, free=~self.task.mask)
        if initial is None:
            initial, _ = self.find_starts(n_chains, rng=np.random.default_rng(start_seq))
        if step_size is not None:
            step_size = check_positive(step_size, "step_size")
        kernel = ConstrainedWalkKernel(self, step_size)
        kernel_meta = None
        if checkpoint is not None:
            kernel_meta = {"task": self.task.digest(), "step_size": step_size, "newton_tol": self.newton_tol,
                           "newton_max_iter": self.newton_max_iter}
        chains = run_chains(kernel, n_draws, n_chains=n_chains, warmup=warmup, thin=thin, rng=None, executor=executor,
                            progress=progress, target=self.describe(), initial=initial, workers=workers,
                            batch_size=batch_size, seeds=seeds, shape=self.task.shape, checkpoint=checkpoint,
                            kernel_meta=kernel_meta)
        return attach_diagnostics(replace(chains, dimension=self.dim), free=~self.task.mask)

    def describe(self) -> dict[str, Any]:
        return {
            "measure": self.measure,
            "depth": self.depth,
            "rank": self.rank,
            "beta": math.inf,
            "normalized": self.normalized,
            "confinement": self.window.describe(),
            "task": self.task.name,
        }


def _smc_batch(payload: dict[str, Any]) -> dict[str, np.ndarray]:
    """Picklable batch function: SMC replicates for a list of seeds, stacked into arrays (checkpointable).

    Piece fractions are stored as ``piece_labels`` (chains, L) strings, ``piece_fractions`` (chains, L) and their
    delta-method variances ``piece_variances`` (chains, L).
    """
    sampler: SolutionSetSampler = payload["sampler"]
    rows = []
    k = len(payload["seeds"])
    for j, seed in enumerate(payload["seeds"]):
        with part(j / k, (j + 1) / k):
            rows.append(sampler.smc_replicate(payload["n"], seed, **payload["opts"]))
    out = {k: np.stack([np.asarray(r[k]) for r in rows]) for k in rows[0] if not k.startswith("fraction")}
    L = max(len(r["fractions"]) for r in rows)
    labels = np.full((len(rows), L), "", dtype=object)
    fr = np.zeros((len(rows), L))
    var = np.zeros((len(rows), L))
    for i, r in enumerate(rows):
        for j, (k, v) in enumerate(sorted(r["fractions"].items())):
            labels[i, j], fr[i, j], var[i, j] = k, v, r["fraction_variances"][k]
    out["piece_labels"] = labels.astype(str)
    out["piece_fractions"] = fr
    out["piece_variances"] = var
    out["chain_seeds"] = np.array(payload["seeds"], dtype=np.uint64)
    return out


class ConstrainedWalkKernel:
    """The constrained random walk as a kernel ``init``/``step(state, rng) -> (state, info)`` (one chain).

    Declared per-step statistics: ``accept_prob`` and the failure counts ``projection``,
    ``reverse_check``, ``outside``.
    """

    name = "solution_set"
    adaptive = True
    target_accept = 0.5
    stats = ("accept_prob", "projection", "reverse_check", "outside")

    def __init__(self, sampler: SolutionSetSampler, step_size: float | None = None):
        self.sampler = sampler
        self.step_size = step_size

    def init(self, X0: np.ndarray, rng: Any = None) -> SolutionSetState:
        sp = self.sampler
        X0 = np.asarray(X0, dtype=np.float64)
        if sp._codim is None:
            _ = sp.dim
        geo = sp._geometry(X0)
        if geo is None:
            raise InvalidArgumentError(
                "initial matrix is not a regular point of S ∩ M_r inside the window; use find_starts or pass "
                "matrices of rank r that match the observations"
            )
        X = sp._project(X0, geo)
        if X is None or np.max(np.abs(X - X0)) > 1e-6 * (1 + np.linalg.norm(X0)):
            raise InvalidArgumentError("initial matrix is not on S ∩ M_r (residual of the constraints too large)")
        geo = sp._geometry(X)
        if geo is None:
            raise InvalidArgumentError("initial matrix is not on S ∩ M_r (residual of the constraints too large)")
        h = 0.1 * (1.0 + float(np.linalg.norm(X))) / 4 if self.step_size is None else float(self.step_size)
        return SolutionSetState(X, float(geo.log_f[0]), geo.U[0], geo.V[0], geo.T[0], sp.normal_basis(geo)[0], h, geo.Hc[0])

    def step(self, state: SolutionSetState, rng: np.random.Generator) -> tuple[SolutionSetState, StepInfo]:
        B = _Batch(state.X[None], np.array([state.log_density]), state.U[None], state.V[None], state.T[None],
                   state.Hc[None] if state.Hc is not None else self.sampler._batch_geometry(state.X[None]).Hc,
                   np.ones(1, dtype=bool), np.zeros(1))
        new, acc, fails = self.sampler.walk_sweep(B, np.array([state.step_size]), rng)
        moved = new.X[0] is not state.X and not np.array_equal(new.X[0], state.X)
        out = SolutionSetState(new.X[0], float(new.log_f[0]), new.U[0], new.V[0], new.T[0],
                               self.sampler.normal_basis(new)[0] if moved else state.Nb, state.step_size, new.Hc[0])
        return out, StepInfo(float(acc[0]), out.log_density, {k: int(v[0]) for k, v in fails.items()})

    @staticmethod
    def matrix(state: SolutionSetState) -> np.ndarray:
        return state.X

    @staticmethod
    def with_step_size(state: SolutionSetState, h: float) -> SolutionSetState:
        return replace(state, step_size=float(h))
