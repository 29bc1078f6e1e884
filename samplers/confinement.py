"""Confinements: explicit factors that make a volume or Gibbs target normalizable (MATH.md §3.5, §4.4).

Every confinement used here is *spectral*: it depends on ``X`` only through its singular values, so
it can be evaluated in the SVD coordinates of :class:`samplers.GibbsTarget` (``σ``) and in matrix
coordinates (``X``) alike. Indicator sets have log density ``0`` inside and ``-inf`` outside and a
zero gradient inside.

``FrobeniusBall(R)``
    ``‖X‖_F = ‖σ‖_2 ≤ R`` (bounded).
``GaussianPrior(s)``
    ``exp(-‖X‖_F²/(2 s²))`` (bounded in the sense that its tails are integrable).
``SingularValueFloor(m)``
    ``σ_r ≥ m`` for the ``r`` singular values of the stratum (removes the non-integrable
    ``σ^{-1}`` singularity of depth ``inf``, MATH.md §3.5).

Combine with :meth:`Confinement.combine` or by passing a list wherever one confinement is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from dlnvolume.validation import check_matrix, check_positive, check_rank
from dlnvolume.errors import InvalidArgumentError

__all__ = [
    "Confinement",
    "FrobeniusBall",
    "GaussianPrior",
    "SingularValueFloor",
    "NoConfinement",
    "CombinedConfinement",
    "as_confinement",
]


class Confinement:
    """Base class of the spectral confinements (a log density in ``σ`` and its gradient).

    Subclasses implement :meth:`log_density_sigma` and :meth:`grad_sigma`; the matrix versions
    :meth:`log_density` and :meth:`grad` follow from the SVD.
    """

    #: True if the confinement alone makes every locally integrable density on a stratum integrable at infinity.
    bounded: bool = False
    #: Smallest singular value the confinement allows (0 if it does not bound ``σ`` from below).
    floor: float = 0.0

    # ---------------------------------------------------------------- in σ
    def log_density_sigma(self, sigma: np.ndarray) -> np.ndarray:
        """Log density at singular values ``sigma`` of shape ``(..., r)``; returns ``(...)``."""
        raise NotImplementedError

    def grad_sigma(self, sigma: np.ndarray) -> np.ndarray:
        """Gradient of :meth:`log_density_sigma` w.r.t. ``sigma`` (zero inside indicator sets)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- in X
    def log_density(self, X: Any, rank: int | None = None) -> np.ndarray:
        """Log density at matrices ``X`` (..., m, n), using the top ``rank`` singular values."""
        X = check_matrix(X)
        r = check_rank(rank, *X.shape[-2:])
        s = np.linalg.svd(X, compute_uv=False)
        return self.log_density_sigma(s[..., :r])

    def grad(self, X: Any, rank: int | None = None) -> np.ndarray:
        """Euclidean gradient in ``X``: ``Q diag(∂c/∂σ) Rᵀ`` (spectral functions, MATH.md §4.3)."""
        X = check_matrix(X)
        r = check_rank(rank, *X.shape[-2:])
        U, s, Vh = np.linalg.svd(X, full_matrices=False)
        g = self.grad_sigma(s[..., :r])
        # Σ_i g_i u_i v_iᵀ term by term: an infinite g_i (overflow) times an exactly-zero entry of u_i v_iᵀ is 0, not nan
        outer = U[..., :, None, :r] * np.swapaxes(Vh[..., :r, :], -1, -2)[..., None, :, :]
        with np.errstate(invalid="ignore", over="ignore"):
            terms = np.where(outer == 0, 0.0, outer * g[..., None, None, :])
            return np.sum(terms, axis=-1)

    # ---------------------------------------------------------------- composition
    @staticmethod
    def combine(*parts: "Confinement | Sequence[Confinement] | None") -> "Confinement":
        """Product of confinements (sum of log densities). Nested lists and ``None`` are accepted."""
        flat: list[Confinement] = []
        for p in parts:
            c = as_confinement(p)
            if isinstance(c, CombinedConfinement):
                flat.extend(c.parts)
            elif not isinstance(c, NoConfinement):
                flat.append(c)
        if not flat:
            return NoConfinement()
        if len(flat) == 1:
            return flat[0]
        return CombinedConfinement(tuple(flat))

    def describe(self) -> str:
        """Short string stored in ``Chains.target['confinement']``."""
        return repr(self)

    def __str__(self) -> str:
        return self.describe()


@dataclass(frozen=True, repr=False)
class NoConfinement(Confinement):
    """The constant 1 (no confinement)."""

    def log_density_sigma(self, sigma: np.ndarray) -> np.ndarray:
        return np.zeros(np.shape(sigma)[:-1])

    def grad_sigma(self, sigma: np.ndarray) -> np.ndarray:
        return np.zeros(np.shape(sigma))

    def describe(self) -> str:
        return "none"

    def __repr__(self) -> str:
        return "NoConfinement()"


@dataclass(frozen=True, repr=False)
class FrobeniusBall(Confinement):
    """Indicator of ``‖X‖_F ≤ radius``.

    Examples
    --------
    >>> import numpy as np
    >>> float(FrobeniusBall(2.0).log_density_sigma(np.array([1.0, 1.0])))
    0.0
    """

    radius: float

    bounded = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "radius", check_positive(self.radius, "radius"))

    def log_density_sigma(self, sigma: np.ndarray) -> np.ndarray:
        sigma = np.asarray(sigma, dtype=np.float64)
        z = sigma / self.radius  # radius**2 overflows (OverflowError) for radius > 1.3e154
        inside = np.sum(z * z, axis=-1) <= 1.0
        return np.where(inside, 0.0, -np.inf)

    def grad_sigma(self, sigma: np.ndarray) -> np.ndarray:
        return np.zeros(np.shape(sigma))

    def describe(self) -> str:
        return f"FrobeniusBall(radius={self.radius!r})"

    __repr__ = describe


def _sq(x: float) -> np.float64:
    """``x**2`` in float64: ``inf`` for |x| > 1.3e154 (a Python float would raise OverflowError)."""
    with np.errstate(over="ignore"):
        return np.float64(x) * np.float64(x)


@dataclass(frozen=True, repr=False)
class GaussianPrior(Confinement):
    """Gaussian factor ``exp(-‖X‖_F²/(2 scale²))`` (= ``exp(-Σσ²/(2 scale²))``)."""

    scale: float

    bounded = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", check_positive(self.scale, "scale"))

    def log_density_sigma(self, sigma: np.ndarray) -> np.ndarray:
        sigma = np.asarray(sigma, dtype=np.float64)
        if _sq(self.scale) > 0:  # the original arithmetic (same draws as before for the same seed)
            return -0.5 * np.sum(sigma * sigma, axis=-1) / _sq(self.scale)
        z = sigma / self.scale  # s**2 underflows to 0 for s < 1e-154 (0/0 was NaN)
        return -0.5 * np.sum(z * z, axis=-1)

    def grad_sigma(self, sigma: np.ndarray) -> np.ndarray:
        sigma = np.asarray(sigma, dtype=np.float64)
        return -sigma / _sq(self.scale) if _sq(self.scale) > 0 else -(sigma / self.scale) / self.scale

    def grad(self, X: Any, rank: int | None = None) -> np.ndarray:
        if rank is None:
            X = check_matrix(X)
            return -X / _sq(self.scale) if _sq(self.scale) > 0 else -(X / self.scale) / self.scale
        return super().grad(X, rank)

    def describe(self) -> str:
        return f"GaussianPrior(scale={self.scale!r})"

    __repr__ = describe


@dataclass(frozen=True, repr=False)
class SingularValueFloor(Confinement):
    """Indicator of ``σ_i ≥ minimum`` for every singular value of the stratum."""

    minimum: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "minimum", check_positive(self.minimum, "minimum"))

    @property
    def floor(self) -> float:  # type: ignore[override]
        return self.minimum

    def log_density_sigma(self, sigma: np.ndarray) -> np.ndarray:
        sigma = np.asarray(sigma, dtype=np.float64)
        inside = np.all(sigma >= self.minimum, axis=-1)
        return np.where(inside, 0.0, -np.inf)

    def grad_sigma(self, sigma: np.ndarray) -> np.ndarray:
        return np.zeros(np.shape(sigma))

    def describe(self) -> str:
        return f"SingularValueFloor(minimum={self.minimum!r})"

    __repr__ = describe


@dataclass(frozen=True, repr=False)
class CombinedConfinement(Confinement):
    """Product of several confinements."""

    parts: tuple[Confinement, ...]

    @property
    def bounded(self) -> bool:  # type: ignore[override]
        return any(p.bounded for p in self.parts)

    @property
    def floor(self) -> float:  # type: ignore[override]
        return max(p.floor for p in self.parts)

    def log_density_sigma(self, sigma: np.ndarray) -> np.ndarray:
        return sum(p.log_density_sigma(sigma) for p in self.parts)  # type: ignore[return-value]

    def grad_sigma(self, sigma: np.ndarray) -> np.ndarray:
        return sum(p.grad_sigma(sigma) for p in self.parts)  # type: ignore[return-value]

    def describe(self) -> str:
        return " * ".join(p.describe() for p in self.parts)

    __repr__ = describe


def as_confinement(value: Any, name: str = "confinement") -> Confinement:
    """Accept a :class:`Confinement`, ``None`` (no confinement) or an iterable of confinements."""
    if value is None:
        return NoConfinement()
    if isinstance(value, Confinement):
        return value
    if isinstance(value, (list, tuple)):
        items = list(value)
        for v in items:
            if not isinstance(v, Confinement) and v is not None:
                raise InvalidArgumentError(
                    f"{name} contains {v!r} of type {type(v).__name__}; expected FrobeniusBall, GaussianPrior, "
                    "SingularValueFloor or a list of them"
                )
        return Confinement.combine(*items)
    raise InvalidArgumentError(
        f"{name}={value!r} has type {type(value).__name__}; expected FrobeniusBall, GaussianPrior, "
        "SingularValueFloor, a list of them, or None"
    )
