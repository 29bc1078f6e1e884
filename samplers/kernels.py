"""The kernel seam: what a Markov kernel provides to the driver (STYLE.md item 2; blackjax/mici style).

A kernel is an object with

* ``init(X0, rng) -> state`` — ``state`` a small frozen dataclass with at least ``step_size``;
* ``step(state, rng) -> (state, StepInfo)`` — one transition; ``StepInfo`` carries the acceptance
  probability, the log density and failure counts (:class:`samplers.StepInfo`);
* ``matrix(state) -> X`` and ``with_step_size(state, h) -> state``;
* the attributes ``name``, ``adaptive`` (dual averaging of the step size during warm-up),
  ``target_accept`` and ``stats``: the per-step statistics it declares (names of ``StepInfo`` fields and
  failure kinds), so the driver allocates storage without probing.

Population methods (tempered SMC) are not kernels: they are registered in :mod:`samplers.registry`
with a ``run`` function that returns :class:`samplers.Chains` directly.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from .chains import StepInfo

__all__ = ["Kernel"]


@runtime_checkable
class Kernel(Protocol):
    """Structural type of a Markov kernel for :func:`samplers.driver.run_chains`."""

    name: str
    adaptive: bool
    target_accept: float
    stats: tuple[str, ...]

    def init(self, X0: np.ndarray, rng: Any) -> Any: ...

    def step(self, state: Any, rng: np.random.Generator) -> tuple[Any, StepInfo]: ...

    def matrix(self, state: Any) -> np.ndarray: ...

    def with_step_size(self, state: Any, h: float) -> Any: ...
