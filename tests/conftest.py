"""Shared test configuration: one seed and one Generator fixture, and (under pytest-xdist) the first numba
compile of the flow integrator done once, in the background, while the sampler tests run first."""

from __future__ import annotations

import os

import numpy as np
import pytest

SEED = 20261129


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh Generator seeded with :data:`SEED` for every test."""
    return np.random.default_rng(SEED)


# ---------------------------------------------------------------- the first numba compile, once, off the critical path
def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, the controller compiles the flow integrator (or loads it from numba's cache) in a
    background process while the workers run the sampler tests, which come first (below) and do not need it:
    on a fresh install the compile (about 45 s of CPU here) is then paid once instead of once per worker."""
    if hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None):
        return
    if os.environ.get("DLNVOLUME_TEST_NO_WARMUP"):  # a selection that needs the flows at once (.ci/run's arviz run)
        return
    import subprocess
    import sys

    config._flows_warm_up = subprocess.Popen(  # type: ignore[attr-defined]
        [sys.executable, "-c", "from dlnvolume.flows import compiled; compiled.warm_up()"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def pytest_unconfigure(config: pytest.Config) -> None:
    proc = getattr(config, "_flows_warm_up", None)
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    """The sampler tests first (stable otherwise): they do not run flows (see :func:`pytest_configure`)."""
    items.sort(key=lambda item: 0 if "tests/samplers/" in str(item.path).replace("\\", "/") else 1)
