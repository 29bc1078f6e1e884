"""Shared test configuration: one seed and one Generator fixture, nothing else global."""

from __future__ import annotations

import numpy as np
import pytest

SEED = 20261129


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh Generator seeded with :data:`SEED` for every test."""
    return np.random.default_rng(SEED)
