"""Matrix completion: ``E(X) = ½‖P_Ω(X − M)‖_F²`` (MATH.md §5.1)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .validation import check_matrix
from .errors import InvalidMaskError, NonFiniteError, ShapeError

__all__ = ["CompletionTask"]


@dataclass(frozen=True, eq=False)
class CompletionTask:
    """A matrix completion problem: observe ``M_ij`` for ``(i, j) ∈ Ω``.

    Parameters
    ----------
    values : (m, n) array
        Observed values; entries outside the mask are ignored (they may be NaN).
    mask : (m, n) bool array
        ``Ω``; must observe at least one entry.
    ground_truth : (m, n) array, optional
        The matrix the observations came from, for :meth:`test_error`.
    name : str, optional

    Notes
    -----
    ``loss`` is ``½ Σ_Ω (X_ij − M_ij)²`` (the CMV convention, MATH.md §5.1); ``mse`` is the Arora et
    al. convention, the mean over ``Ω`` without the ½. The solution set ``S`` is the affine subspace
    of matrices that match the observations, of dimension ``mn − |Ω|``.

    Examples
    --------
    >>> import numpy as np
    >>> task = CompletionTask(np.eye(2), np.eye(2, dtype=bool))
    >>> float(task.loss(np.zeros((2, 2))))
    1.0
    """

    values: np.ndarray
    mask: np.ndarray
    ground_truth: np.ndarray | None = None
    name: str = "custom"
    _observed: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        mask = np.asarray(self.mask)
        if mask.dtype != np.bool_:
            raise InvalidMaskError(f"mask has dtype {mask.dtype}; expected a boolean array")
        if mask.ndim != 2 or 0 in mask.shape:
            raise ShapeError(f"mask has shape {mask.shape}; expected (m, n) with m, n >= 1")
        values = check_matrix(self.values, name="values", batch=False, finite=False)
        if values.shape != mask.shape:
            raise ShapeError(f"values has shape {values.shape} but mask has shape {mask.shape}; they must match")
        if not mask.any():
            raise InvalidMaskError("mask observes no entry; expected at least one True")
        if not np.all(np.isfinite(values[mask])):
            raise NonFiniteError("values has NaN or infinite entries at observed positions; expected finite numbers")
        clean = np.where(mask, values, 0.0)
        clean.setflags(write=False)
        mask = mask.copy()
        mask.setflags(write=False)
        gt = self.ground_truth
        if gt is not None:
            gt = check_matrix(gt, name="ground_truth", batch=False)
            if gt.shape != mask.shape:
                raise ShapeError(f"ground_truth has shape {gt.shape}; expected {mask.shape}")
            gt = gt.copy()
            gt.setflags(write=False)
        object.__setattr__(self, "values", clean)
        object.__setattr__(self, "mask", mask)
        object.__setattr__(self, "ground_truth", gt)
        object.__setattr__(self, "_observed", mask.astype(np.float64))

    # ---------------------------------------------------------------- sizes
    @property
    def shape(self) -> tuple[int, int]:
        return self.mask.shape  # type: ignore[return-value]

    @property
    def n_observed(self) -> int:
        """``|Ω|``."""
        return int(self.mask.sum())

    @property
    def solution_dim(self) -> int:
        """``dim S = mn − |Ω|`` (MATH.md §5.1)."""
        m, n = self.shape
        return m * n - self.n_observed

    # ---------------------------------------------------------------- energy
    def _check(self, X: Any) -> np.ndarray:
        X = check_matrix(X)
        if X.shape[-2:] != self.shape:
            raise ShapeError(f"X has shape {X.shape}; expected (..., {self.shape[0]}, {self.shape[1]}) for this task")
        return X

    def residual(self, X: Any) -> np.ndarray:
        """``P_Ω(X − M)``, shape ``(..., m, n)``."""
        X = self._check(X)
        return self._observed * (X - self.values)

    def digest(self) -> str:
        """Short sha256 (16 hex digits) of ``values`` and ``mask``: identifies the task in checkpoint
        fingerprints (a changed task never reuses another task's checkpoints)."""
        import hashlib

        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.values).tobytes())
        h.update(np.ascontiguousarray(self.mask).tobytes())
        return h.hexdigest()[:16]

    def loss(self, X: Any) -> np.ndarray:
        """``E(X) = ½ Σ_Ω (X_ij − M_ij)²``, shape ``(...)``."""
        return self._loss(self._check(X))

    def _loss(self, X: np.ndarray) -> np.ndarray:
        """:meth:`loss` of a float array of shape ``(..., m, n)``, without the input checks (the flows'
        step loop calls it at every step: the checks cost about 35 µs per call on the batched 2×2 runs)."""
        R = self._observed * (X - self.values)
        return 0.5 * np.sum(R * R, axis=(-2, -1))

    def grad(self, X: Any) -> np.ndarray:
        """Euclidean gradient ``E'(X) = P_Ω(X − M)``."""
        return self.residual(X)

    def mse(self, X: Any) -> np.ndarray:
        """Mean squared error over ``Ω`` (Arora et al. 2019 training loss) ``= 2 E(X)/|Ω|``."""
        return 2.0 * self.loss(X) / self.n_observed

    def test_error(self, X: Any) -> np.ndarray:
        """Mean over all entries of ``(X − W*)²`` against the ground truth (Arora et al. 2019)."""
        if self.ground_truth is None:
            raise InvalidMaskError("this task has no ground_truth; test_error needs one")
        X = self._check(X)
        D = X - self.ground_truth
        return np.mean(D * D, axis=(-2, -1))

    def project_to_solutions(self, X: Any) -> np.ndarray:
        """Euclidean projection onto ``S``: ``X + P_Ω(M − X)``."""
        X = self._check(X)
        return np.where(self.mask, self.values, X)

    def __repr__(self) -> str:
        m, n = self.shape
        return f"CompletionTask(name={self.name!r}, shape=({m}, {n}), n_observed={self.n_observed})"
