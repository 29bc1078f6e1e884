"""Sampling the g_N-volume of the solution set ``S ∩ M_r`` inside a window (ARCHITECTURE.md "The measures").

Algorithm: the constrained random walk of Zappa, Holmes-Cerfon & Goodman, "Monte Carlo on manifolds:
sampling densities and integrating functions", Comm. Pure Appl. Math. 71(12), 2018 (Algorithm 1):

1. at ``X ∈ 𝓜 = S ∩ M_r`` draw a Gaussian step ``v = s·Tξ`` in the tangent space ``T_X𝓜``
   (``T`` an orthonormal Frobenius basis, ``ξ ~ N(0, I_d)``, ``d = dim 𝓜 = r(m+n-r) - |Ω|``);
2. project ``X + v`` back onto ``𝓜`` along the normal space ``N_X𝓜``: find ``w ∈ N_X𝓜`` with
   ``q_X(X + v + w) = 0`` by Newton's method (failure: reject, counted as "projection");
3. Metropolis–Hastings with ``f(Y) p(v') / (f(X) p(v))`` where ``v' = P_{T_Y}(X - Y)`` is the
   reverse tangent step and ``p`` the Gaussian step density;
4. the reverse projection check: an accepted move is kept only if projecting ``Y + v'`` along
   ``N_Y𝓜`` returns to ``X`` (counted as "reverse_check"); this makes the chain reversible although
   the projection is not unique.

Constraints. ``q_X(Y) = (P_Ω(Y - M), Ŷ_22 - Ŷ_21 Ŷ_11^{-1} Ŷ_12)`` with ``Ŷ = [Q Q_⊥]ᵀ Y [R R_⊥]`` in the
singular frames of the base point ``X``: the Schur complement vanishes exactly on rank-``r`` matrices
near ``X`` (where ``Ŷ_11`` is invertible), so ``{q_X = 0}`` is ``𝓜`` near ``X``. Its gradient at ``X``
spans ``N_X𝓜 = span{E_ij : (i,j) ∈ Ω} + span{Q_⊥ e_a e_bᵀ R_⊥ᵀ}`` (the defining function only
enters Newton's method; tangent and normal spaces are geometric).

Density. The target is the g_N-Hausdorff measure of ``𝓜``; w.r.t. the Euclidean Hausdorff measure
of ``𝓜`` its density is ``f(X) = √det(Tᵀ 𝒢 T)``, ``𝒢 = Ā_X^{-1}`` on ``T_X M_r`` (``T ⊂ T_X M_r``),
evaluated in the SVD basis where ``Ā`` is diagonal (MATH.md §2.1, §7 item 3).

Starting points and connected components. Candidates are found by alternating projections
(truncated SVD to rank ``r``, then onto ``S``) from random matrices, finished by the Newton
projection, and kept if inside the window. Candidates are grouped by the sign pattern of their
unobserved entries, a cheap proxy for connected components (on the 2×2 hyperbola it separates
exactly the two branches ``a > 0`` and ``a < 0``); chains are assigned to the groups round-robin,
so with two groups half the chains start on each. The random walk never leaves a component, so
the pooled draws weight the groups equally: this is the target only when the components have
equal mass (true for the hyperbola by the isometry ``X ↦ diag(1,-1) X diag(1,-1)``); in general it is
a known limitation.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from dlnvolume import CompletionTask
from dlnvolume._validation import check_depth, check_int, check_matrix, check_positive, check_rank, check_rng
from dlnvolume.errors import DegenerateMetricError, ImproperTargetError, InvalidArgumentError, InvalidRankError, ShapeError
from dlnvolume.parallel import as_seed_sequence, spawn_seeds
from dlnvolume.spectral import log_multipliers

from .chains import Chains, StepInfo
from .confinement import Confinement, as_confinement

__all__ = ["SolutionSetSampler", "SolutionSetState"]


@dataclass(frozen=True, eq=False)
class SolutionSetState:
    X: np.ndarray
    log_density: float
    U: np.ndarray  # (m, m)
    V: np.ndarray  # (n, n)
    T: np.ndarray  # (d, m, n) orthonormal tangent basis of 𝓜
    Nb: np.ndarray  # (p, m, n) orthonormal normal basis of 𝓜
    step_size: float


@dataclass(frozen=True, eq=False)
class _Geometry:
    U: np.ndarray
    V: np.ndarray
    T: np.ndarray
    Nb: np.ndarray
    log_f: float


@dataclass(eq=False)
class SolutionSetSampler:
    """Constrained random walk on ``S ∩ M_r`` targeting its g_N-volume inside ``window``.

    Parameters
    ----------
    task : dlnvolume.CompletionTask
    depth : int >= 1 or math.inf
        ``inf`` only for square full-rank ``r`` (elsewhere ``g_∞`` is infinite on the mixed directions).
    rank : int in 1..min(m, n)
    window : Confinement or list
        Must contain a :class:`FrobeniusBall` or :class:`GaussianPrior` (the solution set is unbounded);
        other factors multiply the density.
    normalized : bool, default True
    newton_tol, newton_max_iter : projection tolerance (relative to ``1 + ‖X‖_F``) and iterations.

    See the module docstring for the algorithm, the density and the starting points.
    """

    task: CompletionTask
    depth: float
    rank: int
    window: Any = None
    normalized: bool = True
    newton_tol: float = 1e-11
    newton_max_iter: int = 40

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
        self.dim = self.rank * (m + n - self.rank) - self.task.n_observed
        if self.dim < 1:
            raise InvalidArgumentError(
                f"rank={self.rank} with {self.task.n_observed} observed entries of a {m}x{n} matrix: the transversal "
                f"dimension of S ∩ M_r is r(m+n-r) - |Ω| = {self.dim}; expected >= 1 (a curve or larger)"
            )
        if math.isinf(self.depth) and (m != n or self.rank != m):
            raise DegenerateMetricError(
                f"depth inf with rank={self.rank} on shape {m}x{n}: the mixed multipliers of Ā_inf vanish, so g_inf is "
                "infinite on T(S ∩ M_r) (MATH.md §2.3, §3.4); use a finite depth (samplers.reference.HyperbolaReference "
                "gives the N -> inf limit for the 2x2 example)"
            )
        if not self.window.bounded:
            raise ImproperTargetError(
                f"window={self.window.describe()}: the solution set S ∩ M_r is unbounded, so its volume is infinite "
                "without a bounded window; pass window=FrobeniusBall(radius) (or a GaussianPrior)"
            )
        self._obs_rows = np.eye(m * n)[self.task.mask.ravel()]

    # ------------------------------------------------------------------ geometry
    def _geometry(self, X: np.ndarray) -> _Geometry | None:
        m, n = self.task.shape
        r = self.rank
        U, s, Vh = np.linalg.svd(X, full_matrices=True)
        V = Vh.T
        if s[r - 1] <= 1e-12 * max(s[0], 1e-300):
            return None
        rank_part = np.einsum("ia,jb->abij", U[:, r:], V[:, r:]).reshape((m - r) * (n - r), m * n)
        J = np.concatenate([self._obs_rows, rank_part], axis=0)
        W, S, Zt = np.linalg.svd(J, full_matrices=True)
        p = J.shape[0]
        if S[-1] < 1e-10 * S[0]:
            return None  # not transversal here
        Nb = Zt[:p].reshape(p, m, n)
        T = Zt[p:].reshape(m * n - p, m, n)
        ls = np.log(s[:r])
        lm = log_multipliers(np.concatenate([ls, np.full(min(m, n) - r, -np.inf)]), (m, n), r, self.depth,
                             self.normalized)
        mask = (np.arange(m)[:, None] < r) | (np.arange(n)[None, :] < r)
        inv = np.where(mask, np.exp(-np.where(mask, lm, 0.0)), 0.0)
        H = np.einsum("ai,kab,bj->kij", U, T, V)
        G = np.einsum("kij,lij,ij->kl", H, H, inv)
        sign, logdet = np.linalg.slogdet(G)
        if sign <= 0:
            return None
        log_f = 0.5 * logdet + float(self.window.log_density_sigma(s[:r]))
        return _Geometry(U, V, T, Nb, log_f)

    def _q(self, Y: np.ndarray, U: np.ndarray, V: np.ndarray) -> np.ndarray:
        r = self.rank
        Yh = U.T @ Y @ V
        A11, A12, A21, A22 = Yh[:r, :r], Yh[:r, r:], Yh[r:, :r], Yh[r:, r:]
        schur = A22 - A21 @ (np.linalg.inv(A11) @ A12)
        obs = (Y - self.task.values)[self.task.mask]
        return np.concatenate([obs, schur.ravel()])

    def _q_jac(self, Y: np.ndarray, U: np.ndarray, V: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        """Jacobian of ``q`` at ``Y`` along ``dirs`` (k, m, n): shape (p, k)."""
        r = self.rank
        Yh = U.T @ Y @ V
        A11inv = np.linalg.inv(Yh[:r, :r])
        left = Yh[r:, :r] @ A11inv  # A21 A11^{-1}
        right = A11inv @ Yh[:r, r:]  # A11^{-1} A12
        Dh = np.einsum("ai,kab,bj->kij", U, dirs, V)
        d11, d12, d21, d22 = Dh[:, :r, :r], Dh[:, :r, r:], Dh[:, r:, :r], Dh[:, r:, r:]
        dschur = d22 - d21 @ right - left @ d12 + left @ d11 @ right
        k = dirs.shape[0]
        return np.concatenate([dirs[:, self.task.mask], dschur.reshape(k, -1)], axis=1).T

    def _project(self, Z: np.ndarray, geo: _Geometry | SolutionSetState) -> np.ndarray | None:
        """Newton solve of ``q(Z + Σ c_k Nb_k) = 0`` with frames of the base point; ``None`` on failure."""
        c = np.zeros(geo.Nb.shape[0])
        scale = 1.0 + float(np.linalg.norm(Z))
        Y = Z
        for _ in range(self.newton_max_iter):
            Y = Z + np.tensordot(c, geo.Nb, axes=1)
            try:
                qv = self._q(Y, geo.U, geo.V)
            except np.linalg.LinAlgError:
                return None
            if not np.all(np.isfinite(qv)):
                return None
            if np.max(np.abs(qv)) < self.newton_tol * scale:
                return Y
            try:
                Jc = self._q_jac(Y, geo.U, geo.V, geo.Nb)
                c = c - np.linalg.solve(Jc, qv)
            except np.linalg.LinAlgError:
                return None
            if not np.all(np.isfinite(c)) or np.linalg.norm(c) > 1e3 * scale:
                return None
        return None

    def log_density(self, X: Any) -> float:
        """``log √det(Tᵀ𝒢T)`` (plus the window's log density) at a point ``X`` of ``S ∩ M_r``."""
        X = check_matrix(X, batch=False)
        if X.shape != self.task.shape:
            raise ShapeError(f"X has shape {X.shape}; expected {self.task.shape} for this task")
        geo = self._geometry(X)
        return -math.inf if geo is None else geo.log_f

    # ------------------------------------------------------------------ kernel interface
    def init(self, X0: np.ndarray, rng: Any = None) -> SolutionSetState:
        geo = self._geometry(np.asarray(X0, dtype=np.float64))
        if geo is None or not math.isfinite(geo.log_f):
            raise InvalidArgumentError(
                "initial matrix is not a regular point of S ∩ M_r inside the window; use find_starts or pass "
                "matrices of rank r that match the observations"
            )
        X = self._project(np.asarray(X0, dtype=np.float64), geo)
        if X is None or np.max(np.abs(X - X0)) > 1e-6 * (1 + np.linalg.norm(X0)):
            raise InvalidArgumentError("initial matrix is not on S ∩ M_r (residual of the constraints too large)")
        geo = self._geometry(X)
        assert geo is not None
        return SolutionSetState(X, geo.log_f, geo.U, geo.V, geo.T, geo.Nb, 0.1 * (1.0 + float(np.linalg.norm(X))) / 4)

    @staticmethod
    def with_step_size(state: SolutionSetState, step_size: float) -> SolutionSetState:
        return replace(state, step_size=float(step_size))

    @staticmethod
    def matrix(state: SolutionSetState) -> np.ndarray:
        return state.X

    def step(self, state: SolutionSetState, rng: np.random.Generator) -> tuple[SolutionSetState, StepInfo]:
        s = state.step_size
        d = state.T.shape[0]
        xi = rng.standard_normal(d)
        log_u = math.log(rng.uniform())
        failures = {"projection": 0, "reverse_check": 0, "outside": 0}
        v = s * np.tensordot(xi, state.T, axes=1)
        Y = self._project(state.X + v, state)
        if Y is None:
            failures["projection"] = 1
            return state, StepInfo(0.0, state.log_density, failures)
        geo = self._geometry(Y)
        if geo is None or not math.isfinite(geo.log_f):
            failures["outside"] = 1
            return state, StepInfo(0.0, state.log_density, failures)
        D = state.X - Y
        coef = np.tensordot(geo.T, D, axes=([1, 2], [0, 1]))  # reverse tangent step in T_Y basis
        v_rev = np.tensordot(coef, geo.T, axes=1)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            if s * s > 0:  # the original arithmetic: same draws as before for the same seed
                log_alpha = geo.log_f - state.log_density - 0.5 * float(coef @ coef) / s**2 + 0.5 * float(xi @ xi)
            else:  # s**2 underflows to 0 for s < 1e-154 (was ZeroDivisionError)
                w = coef / s
                log_alpha = geo.log_f - state.log_density - 0.5 * float(w @ w) + 0.5 * float(xi @ xi)
        if math.isnan(log_alpha):  # s = 0 (0/0) or inf - inf: no valid move
            log_alpha = -math.inf
        accept = 1.0 if log_alpha >= 0 else math.exp(log_alpha)
        if log_u >= log_alpha:
            return state, StepInfo(accept, state.log_density, failures)
        back = self._project(Y + v_rev, geo)
        if back is None or np.max(np.abs(back - state.X)) > 1e-8 * (1.0 + float(np.linalg.norm(state.X))):
            failures["reverse_check"] = 1
            return state, StepInfo(accept, state.log_density, failures)
        new = SolutionSetState(Y, geo.log_f, geo.U, geo.V, geo.T, geo.Nb, s)
        return new, StepInfo(accept, geo.log_f, failures)

    # ------------------------------------------------------------------ starting points
    def find_starts(self, n_chains: int, *, rng: Any = None, n_candidates: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Starting matrices ``(n_chains, m, n)`` spread over the sign-pattern groups, and group labels.

        See the module docstring ("Starting points and connected components").
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
        for _attempt in range(50 * want):
            if found >= want:
                break
            X = self.task.project_to_solutions(scale * rng.standard_normal((m, n)))
            for _ in range(300):
                U, s, Vh = np.linalg.svd(X, full_matrices=False)
                Xr = (U[:, :r] * s[:r]) @ Vh[:r]
                X = self.task.project_to_solutions(Xr)
                if np.max(np.abs(X - Xr)) < 1e-13 * (1 + s[0]):
                    break
            geo = self._geometry(X)
            if geo is None:
                continue
            Y = self._project(X, geo)
            if Y is None:
                continue
            geo = self._geometry(Y)
            if geo is None or not math.isfinite(geo.log_f):
                continue
            key = tuple(np.sign(Y[~self.task.mask]).astype(int).tolist())
            groups.setdefault(key, []).append(Y)
            found += 1
        if not groups:
            raise InvalidArgumentError(
                f"no point of S ∩ M_r (rank {r}) found inside window {self.window.describe()}; enlarge the window"
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
    ) -> Chains:
        """Run ``n_chains`` chains (see :func:`samplers.sample` for the common arguments).

        The step size is adapted during warm-up by dual averaging to acceptance 0.5. Starting points:
        ``initial`` or :meth:`find_starts` (seeded from a child of ``rng`` independent of the chains).

        Parameters
        ----------
        checkpoint : str or PathLike, optional
            Folder for one ``batch-XXXXX.npz`` per finished batch of chains, written atomically
            (temporary file + ``os.replace``) with the batch's chain seeds. A rerun with the same
            arguments after an interruption loads the finished batches and runs only the others; the
            draws are bit-identical to an uninterrupted run for any ``batch_size``, ``workers`` or
            executor. The folder is stamped with a fingerprint of :meth:`describe`, the task's values
            and mask, ``n_draws``, ``warmup``, ``thin``, the seeds, the starting matrices, ``step_size``
            and the Newton settings; a folder written for different values raises
            ``InvalidArgumentError``.
        """
        from dlnvolume._validation import check_int

        from .driver import run_chains

        n_draws = check_int(n_draws, "n_draws", minimum=1)
        n_chains = check_int(n_chains, "n_chains", minimum=1)
        thin = check_int(thin, "thin", minimum=1)
        if warmup is None:
            warmup = n_draws * thin // 2
        root = as_seed_sequence(rng)
        start_seq, chain_seq = root.spawn(2)
        seeds = spawn_seeds(chain_seq, n_chains)
        if initial is None:
            initial, _ = self.find_starts(n_chains, rng=np.random.default_rng(start_seq))
        if step_size is not None:
            step_size = check_positive(step_size, "step_size")
        kernel = _SolutionSetKernel(self, step_size)
        kernel_meta = None
        if checkpoint is not None:
            kernel_meta = {"task": self.task.digest(), "step_size": step_size, "newton_tol": self.newton_tol,
                           "newton_max_iter": self.newton_max_iter}
        return run_chains(kernel, n_draws, n_chains=n_chains, warmup=warmup, thin=thin, rng=None, executor=executor,
                          progress=progress, target=self.describe(), initial=initial, workers=workers,
                          batch_size=batch_size, seeds=seeds, shape=self.task.shape, checkpoint=checkpoint,
                          kernel_meta=kernel_meta)

    def describe(self) -> dict[str, Any]:
        return {
            "measure": "solution_set",
            "depth": self.depth,
            "rank": self.rank,
            "beta": math.inf,
            "normalized": self.normalized,
            "confinement": self.window.describe(),
            "task": self.task.name,
        }


class _SolutionSetKernel:
    """Kernel wrapper fixing the initial step size."""

    def __init__(self, sampler: SolutionSetSampler, step_size: float | None):
        self.sampler = sampler
        self.step_size = step_size
        self.name = "solution_set"
        self.adaptive = True
        self.target_accept = 0.5

    def init(self, X0: np.ndarray, rng: Any) -> SolutionSetState:
        st = self.sampler.init(X0, rng)
        return st if self.step_size is None else replace(st, step_size=float(self.step_size))

    def step(self, state: SolutionSetState, rng: Any) -> Any:
        return self.sampler.step(state, rng)

    def matrix(self, state: SolutionSetState) -> np.ndarray:
        return state.X

    def with_step_size(self, state: SolutionSetState, h: float) -> SolutionSetState:
        return replace(state, step_size=float(h))
