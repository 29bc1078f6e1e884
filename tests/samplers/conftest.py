"""Shared fixtures of the samplers tests."""

from __future__ import annotations

import numpy as np
import pytest

import dlnvolume as dv

SEED = 20261129


@pytest.fixture
def scalar_task() -> dv.CompletionTask:
    """1×1 task observing x = 1."""
    return dv.CompletionTask(np.array([[1.0]]), np.array([[True]]), name="scalar")


@pytest.fixture
def conditioned_3x3() -> dv.CompletionTask:
    """Fully observed 3×3 task with singular values (3, 2, 1.5) in random frames."""
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    R, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    M = Q @ np.diag([3.0, 2.0, 1.5]) @ R.T
    return dv.CompletionTask(M, np.ones((3, 3), dtype=bool), name="conditioned_3x3")
