"""emcee's affine-invariant ensemble sampler on the coordinates ``θ`` of a :class:`GibbsTarget`.

One "chain" of :func:`samplers.sample` is one independent ensemble of ``n_walkers`` walkers.

* **What a chain reports.** The draws of a chain are the trajectory of walker 0 of its ensemble
  (mapped to ``X``). At stationarity every walker is marginally distributed as the target, so these
  are draws from ``π_β``; their autocorrelation is that of the ensemble (emcee's own
  ``get_autocorr_time`` also works per walker), so ESS computed from them is honest. The other
  walkers only serve as the proposal population. ``accept_prob`` is the fraction of walkers that
  moved in the step; ``n_evaluations`` counts every walker's log-density evaluation.
* **Randomness.** emcee draws from a legacy ``numpy.random.RandomState`` held by the sampler
  (``EnsembleSampler.random_state`` getter/setter, emcee 3.1 ``ensemble.py``). The kernel state
  carries that RandomState's state, seeded from the chain's seed; before each step it is installed
  with ``emcee.State(..., random_state=...)`` (``sample`` calls the ``random_state`` setter), so a
  seeded run is reproducible and nothing depends on the global ``np.random`` state.
* **Coordinates.** ``coordinates="theta"`` (default) samples ``θ = (u, A, B)`` of
  :class:`GibbsTarget` (any stratum); ``coordinates="matrix"`` samples the entries of ``X`` with
  the density ``-βE + log ρ̄_N + log conf`` w.r.t. ``dX`` (full-rank targets only). The latter is
  much better conditioned for emcee's affine-invariant moves when ``β`` pins the entries, but it
  crosses ``det X = 0`` (where ``ρ̄_N`` has an integrable singularity for ``N >= 2``) only rarely.
* **Initial state.** Walkers start at independent ``θ`` for jittered copies ``X0 + ε Z`` of the
  starting matrix (``ε = init_scale · ‖X0‖_F``, default ``1e-3``; a wider start, 0.1 × RMS entry,
  did not improve ESS on the 5×5 benchmark) with independent radial parts of ``A``, ``B``; emcee's ``walkers_independent`` check is run once at
  initialization and an error is raised if it fails.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from dlnvolume.validation import check_int, check_positive
from dlnvolume.errors import InvalidArgumentError

from .chains import StepInfo
from .targets import GibbsTarget

__all__ = ["EmceeKernel", "EmceeState"]


@dataclass(frozen=True, eq=False)
class EmceeState:
    coords: np.ndarray  # (n_walkers, ndim)
    log_prob: np.ndarray  # (n_walkers,)
    random_state: tuple  # legacy RandomState.get_state()
    step_size: float = 2.0


class _VectorizedLogProb:
    """Picklable ``coords (W, ndim) -> log p (W,)`` for ``EnsembleSampler(vectorize=True)``."""

    def __init__(self, target: GibbsTarget, coordinates: str = "theta"):
        self.target = target
        self.coordinates = coordinates

    def __call__(self, coords: np.ndarray) -> np.ndarray:
        coords = np.asarray(coords, dtype=np.float64)
        if self.coordinates == "matrix":
            m, n = self.target.shape
            with np.errstate(divide="ignore", invalid="ignore"):
                lp = self.target.log_target_matrix(coords.reshape(coords.shape[:-1] + (m, n)))
            return np.where(np.isnan(lp), -np.inf, lp)
        return self.target._evaluate(coords, grad=False)[0]


@dataclass(eq=False)
class EmceeKernel:
    """Kernel ``step(state, rng) -> (state, info)`` advancing one emcee ensemble by one stretch move.

    The ``rng`` argument is used only at :meth:`init` (walker positions and the RandomState seed);
    each step's randomness comes from the RandomState state stored in ``state`` (see module docs).
    """

    target: GibbsTarget
    n_walkers: int | None = None
    coordinates: str = "theta"
    init_scale: float = 1e-3
    _sampler: Any = field(default=None, repr=False)

    name = "emcee"
    adaptive = False
    target_accept = float("nan")
    stats = ("accept_prob",)

    def __post_init__(self) -> None:
        if not isinstance(self.target, GibbsTarget):
            raise InvalidArgumentError(f"target has type {type(self.target).__name__}; emcee needs a samplers.GibbsTarget")
        if self.coordinates not in ("theta", "matrix"):
            raise InvalidArgumentError(f"coordinates={self.coordinates!r}; expected 'theta' or 'matrix'")
        m, n = self.target.shape
        if self.coordinates == "matrix" and self.target.rank != min(m, n):
            raise InvalidArgumentError(
                f"coordinates='matrix' needs a full-rank target (rank={min(m, n)}), got rank={self.target.rank}; "
                "use coordinates='theta'"
            )
        d = self.ndim
        if self.n_walkers is None:
            self.n_walkers = max(2 * d + 2, 16)
        self.n_walkers = check_int(self.n_walkers, "n_walkers", minimum=2)
        self.init_scale = check_positive(self.init_scale, "init_scale")
        if self.n_walkers < 2 * d or self.n_walkers % 2:
            raise InvalidArgumentError(
                f"n_walkers={self.n_walkers}; expected an even number >= 2*ndim = {2 * d} for ndim={d}"
            )

    @property
    def ndim(self) -> int:
        m, n = self.target.shape
        return m * n if self.coordinates == "matrix" else self.target.ndim

    def __getstate__(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["_sampler"] = None
        return d

    def _get_sampler(self) -> Any:
        if self._sampler is None:
            import emcee

            self._sampler = emcee.EnsembleSampler(
                self.n_walkers, self.ndim, _VectorizedLogProb(self.target, self.coordinates), vectorize=True
            )
        return self._sampler

    def init(self, X0: np.ndarray, rng: np.random.Generator) -> EmceeState:
        from emcee.ensemble import walkers_independent

        t = self.target
        X0 = np.asarray(X0, dtype=np.float64)
        norm = float(np.linalg.norm(X0))
        if not math.isfinite(norm):  # ‖X0‖_F overflows for entries near 1e300: jitter relative to max |X0_ij|
            norm = float(np.max(np.abs(X0)))
        scale = self.init_scale * max(norm, 1e-3)
        logp = _VectorizedLogProb(t, self.coordinates)
        coords = []
        for _ in range(self.n_walkers):
            for _attempt in range(100):
                Xj = X0 + scale * rng.standard_normal(X0.shape)
                th = Xj.ravel() if self.coordinates == "matrix" else t.initial_theta(Xj, rng=rng)
                if np.isfinite(logp(th[None])[0]):
                    break
            coords.append(th)
        coords = np.array(coords)
        if not walkers_independent(coords):
            raise InvalidArgumentError(
                "emcee initial walkers are not linearly independent (emcee's condition-number check failed); "
                "start from a matrix with distinct nonzero singular values"
            )
        lp = logp(coords)
        if not np.all(np.isfinite(lp)):
            raise InvalidArgumentError(
                f"initial walkers outside the support of the target (confinement {t.confinement.describe()})"
            )
        seed = int(rng.integers(0, 2**32 - 1))
        rs = np.random.RandomState(seed).get_state()
        return EmceeState(coords, lp, rs)

    @staticmethod
    def with_step_size(state: EmceeState, step_size: float) -> EmceeState:
        return replace(state, step_size=float(step_size))

    def _to_matrix(self, coords: np.ndarray) -> np.ndarray:
        if self.coordinates == "matrix":
            return coords.reshape(self.target.shape).copy()
        return self.target.to_matrix(coords)

    def matrix(self, state: EmceeState) -> np.ndarray:
        return self._to_matrix(state.coords[0])

    def step(self, state: EmceeState, rng: np.random.Generator | None = None) -> tuple[EmceeState, StepInfo]:
        import emcee

        sampler = self._get_sampler()
        start = emcee.State(state.coords, log_prob=state.log_prob, random_state=state.random_state)
        new = next(sampler.sample(start, iterations=1, store=False, skip_initial_state_check=True))
        moved = np.any(new.coords != state.coords, axis=1)
        out = EmceeState(np.array(new.coords), np.array(new.log_prob), new.random_state, state.step_size)
        # the matrix-coordinate log density of walker 0 is computed only for recorded draws
        return out, StepInfo(float(np.mean(moved)), math.nan, {}, n_evaluations=self.n_walkers)

    def record_log_density(self, state: EmceeState) -> float:
        """Target log density in matrix coordinates of the reported walker (walker 0)."""
        return float(self.target.log_target_matrix(self._to_matrix(state.coords[0])))
