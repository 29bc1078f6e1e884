"""Boundary checks shared by the flow front ends (inner code trusts its inputs)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..validation import short_repr, check_int, check_matrix, check_positive
from ..completion import CompletionTask
from ..errors import InvalidArgumentError, NonFiniteError, ShapeError
from ..spectral import scaled_singular_values

_LOG_MAX = 1023 * math.log(2.0)  # largest singular value accepted in X0: 2**1023 ≈ 9e307 (half of float64's max)


def _check_task(task: Any) -> CompletionTask:
    if not isinstance(task, CompletionTask):
        raise InvalidArgumentError(
            f"task={short_repr(task)} has type {type(task).__name__}; expected a dlnvolume.CompletionTask"
        )
    return task


def _check_X0(task: CompletionTask, X0: Any, name: str = "X0") -> np.ndarray:
    X0 = check_matrix(X0, name=name)
    if X0.ndim > 3:
        raise ShapeError(f"{name} has shape {X0.shape}; expected (m, n) or a batch (B, m, n)")
    if X0.shape[-2:] != task.shape:
        raise ShapeError(
            f"{name} has shape {X0.shape}; expected (m, n) = {task.shape} or (B, {task.shape[0]}, {task.shape[1]}) for this task"
        )
    if X0.ndim == 2:
        X0 = X0[None]
    if X0.shape[0] == 0:
        raise ShapeError(f"{name} has shape {X0.shape}; expected at least one matrix")
    # finite entries whose largest singular value overflows float64 (entries ~1e308): the state's
    # spectrum and loss cannot be represented, so there is no finite trajectory to report
    s, log_scale = scaled_singular_values(X0)
    with np.errstate(divide="ignore"):
        log_top = np.log(s[..., 0]) + log_scale
    if np.any(log_top > _LOG_MAX):
        i = int(np.argmax(log_top))
        raise NonFiniteError(
            f"{name}[{i}] has largest singular value exp({float(log_top[i]):.6g}), beyond 2**1023 ≈ 9e307; "
            "expected a matrix whose singular values stay representable in float64 (entries well below 1e307)"
        )
    return X0


def _loss_tol(task: CompletionTask, loss_tol: Any) -> float:
    if loss_tol is None:
        return 1e-6 * task.n_observed / 2.0
    return check_positive(loss_tol, "loss_tol", allow_zero=True)


def _check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidArgumentError(f"{name}={short_repr(value)}; expected True or False")
    return bool(value)


def _log_every(log_every: Any, n_log: Any) -> tuple[int, int]:
    le = 1 if log_every is None else check_int(log_every, "log_every", minimum=1)
    return le, check_int(n_log, "n_log", minimum=3)


