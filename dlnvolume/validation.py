"""Input validation at the public boundary (scipy's ``_*_iv`` habit); public, shared by all three packages.

Inner code trusts its inputs; every public entry point of ``dlnvolume``, ``samplers`` and ``analysis``
calls one of these first. Each check raises a subclass of :class:`ValueError` from
:mod:`dlnvolume.errors` whose message names the argument, the value received and what is accepted.

Examples
--------
>>> check_int(3, "n_runs", minimum=1)
3
>>> check_int(0, "n_runs", minimum=1)
Traceback (most recent call last):
...
dlnvolume.errors.InvalidArgumentError: n_runs=0 is out of range; expected an integer 1 or more
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from .errors import (
    InvalidArgumentError,
    InvalidDepthError,
    InvalidRankError,
    NonFiniteError,
    ShapeError,
)

__all__ = [
    "check_depth",
    "check_matrix",
    "check_rank",
    "check_positive",
    "check_int",
    "check_rng",
    "short_repr",
]


_MAX_FLOAT_INT = int(np.finfo(np.float64).max)


def short_repr(value: Any) -> str:
    """``repr(value)`` cut to 60 characters, for error messages."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_depth(depth: Any, *, normalized: bool = True, name: str = "depth") -> float | int:
    """Return depth as ``int`` (finite) or ``math.inf``.

    Accepts Python/numpy integers >= 1, integral floats >= 1 and ``math.inf``.
    """
    if isinstance(depth, bool):
        raise InvalidDepthError(
            f"{name}={depth!r} is a bool; expected an integer >= 1 or math.inf"
        )
    if isinstance(depth, numbers.Integral):
        value = int(depth)
    elif isinstance(depth, numbers.Real):
        d = float(depth)
        if d == math.inf:
            if not normalized:
                raise InvalidDepthError(
                    f"{name}=inf with normalized=False: the unnormalized operator A_N grows like N and "
                    "has no infinite-depth limit; use normalized=True (the operator A/N, MATH.md §1.3)"
                )
            return math.inf
        if not math.isfinite(d) or d != math.floor(d):
            raise InvalidDepthError(
                f"{name}={short_repr(depth)} is not an integer; expected an integer >= 1 or math.inf"
            )
        value = int(d)
    else:
        raise InvalidDepthError(
            f"{name}={short_repr(depth)} has type {type(depth).__name__}; expected an integer >= 1 or math.inf"
        )
    if value < 1:
        raise InvalidDepthError(f"{name}={short_repr(value)} is below 1; expected an integer >= 1 or math.inf")
    if value > _MAX_FLOAT_INT:  # the kernels compute in float64: float(10**400) raised OverflowError
        raise InvalidDepthError(
            f"{name}={short_repr(value)} does not fit in a float64; expected an integer in 1..1.8e308 or math.inf"
        )
    return value


def check_matrix(
    X: Any, *, name: str = "X", batch: bool = True, finite: bool = True, min_ndim: int = 2
) -> np.ndarray:
    """Return ``X`` as a float64 array of shape ``(..., m, n)`` with ``m, n >= 1``."""
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ShapeError(f"{name} could not be converted to a float array: {exc}") from None
    if arr.ndim < min_ndim or (not batch and arr.ndim != 2):
        accepted = "shape (..., m, n)" if batch else "shape (m, n)"
        raise ShapeError(f"{name} has shape {arr.shape}; expected a matrix of {accepted}")
    if arr.shape[-1] == 0 or arr.shape[-2] == 0:
        raise ShapeError(f"{name} has shape {arr.shape}; expected m >= 1 and n >= 1")
    if finite and not np.all(np.isfinite(arr)):
        raise NonFiniteError(f"{name} has NaN or infinite entries; expected finite numbers")
    return arr


def check_rank(rank: Any, m: int, n: int, *, name: str = "rank") -> int:
    """Return rank as an int in ``0..min(m, n)``; ``None`` means ``min(m, n)``."""
    k = min(m, n)
    if rank is None:
        return k
    if isinstance(rank, (bool, np.bool_)):
        raise InvalidRankError(f"{name}={rank!r} is a bool; expected an integer in 0..{k} (shape {m}x{n}) or None")
    if not isinstance(rank, numbers.Integral):
        if isinstance(rank, numbers.Real) and float(rank).is_integer():
            rank = int(rank)
        else:
            raise InvalidRankError(
                f"{name}={short_repr(rank)} is not an integer; expected an integer in 0..{k} (shape {m}x{n}) or None"
            )
    rank = int(rank)
    if not 0 <= rank <= k:
        raise InvalidRankError(
            f"{name}={rank} is outside 0..{k} for shape {m}x{n}; expected an integer in 0..min(m, n) or None"
        )
    return rank


def check_positive(value: Any, name: str, *, allow_zero: bool = False, allow_inf: bool = False) -> float:
    """Return a float that is > 0 (or >= 0), finite unless ``allow_inf``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise InvalidArgumentError(f"{name}={short_repr(value)} is not a real number")
    v = float(value)
    if math.isnan(v) or (math.isinf(v) and not allow_inf):
        raise InvalidArgumentError(f"{name}={v} is not finite; expected a finite number")
    if v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise InvalidArgumentError(f"{name}={v} is out of range; expected a number {bound}")
    return v


def check_int(value: Any, name: str, *, minimum: int = 0, maximum: int | None = None) -> int:
    """Return an int in ``minimum..maximum``."""
    if isinstance(value, (bool, np.bool_)):
        raise InvalidArgumentError(f"{name}={value!r} is a bool; expected an integer")
    if not isinstance(value, numbers.Integral):
        if isinstance(value, numbers.Real) and math.isfinite(float(value)) and float(value).is_integer():
            value = int(value)
        else:
            raise InvalidArgumentError(f"{name}={short_repr(value)} is not an integer")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        upper = f"..{maximum}" if maximum is not None else " or more"
        raise InvalidArgumentError(f"{name}={value} is out of range; expected an integer {minimum}{upper}")
    return value


def check_rng(rng: Any, name: str = "rng") -> np.random.Generator:
    """Convert ``rng`` once into a Generator: None, an int seed >= 0, a SeedSequence or a Generator.

    A Generator is returned as is (its state is shared, as ``numpy.random.default_rng`` does).
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, np.random.SeedSequence):
        return np.random.default_rng(rng)
    if isinstance(rng, (numbers.Integral, np.integer)) and not isinstance(rng, (bool, np.bool_)):
        if int(rng) < 0:
            raise InvalidArgumentError(f"{name}={int(rng)} is negative; expected a seed >= 0, a Generator, or None")
        return np.random.default_rng(int(rng))
    raise InvalidArgumentError(
        f"{name}={short_repr(rng)} has type {type(rng).__name__}; "
        "expected None, an int seed >= 0, a numpy SeedSequence or a numpy Generator"
    )
