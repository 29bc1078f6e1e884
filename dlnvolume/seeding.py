"""Seeds for independent work items (ARCHITECTURE.md, "Scale-out").

Every work item (a flow run, a chain) gets its own seed, derived from one
:class:`numpy.random.SeedSequence` by ``spawn``; results therefore do not depend on how items are
grouped into batches or how many workers run them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InvalidArgumentError

__all__ = ["as_seed_sequence", "spawn_seeds"]


def as_seed_sequence(rng: Any) -> np.random.SeedSequence:
    """Turn ``rng`` (None, int, SeedSequence or Generator) into a SeedSequence.

    A Generator is consumed (four 63-bit draws), so the same Generator state gives the same
    sequence.
    """
    if isinstance(rng, np.random.SeedSequence):
        return rng
    if rng is None:
        return np.random.SeedSequence()
    if isinstance(rng, np.random.Generator):
        return np.random.SeedSequence([int(v) for v in rng.integers(0, 2**63 - 1, size=4)])
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        if int(rng) < 0:
            raise InvalidArgumentError(f"rng={int(rng)} is negative; expected a seed >= 0, a Generator, or None")
        return np.random.SeedSequence(int(rng))
    raise InvalidArgumentError(
        f"rng={rng!r} has type {type(rng).__name__}; expected None, an int seed >= 0, a SeedSequence or a numpy Generator"
    )


def spawn_seeds(rng: Any, n: int) -> np.ndarray:
    """``n`` independent 64-bit seeds (uint64 array) for ``n`` work items.

    Item ``i`` is reproduced alone by ``np.random.default_rng(seeds[i])``.
    """
    root = as_seed_sequence(rng)
    return np.array([c.generate_state(1, np.uint64)[0] for c in root.spawn(n)], dtype=np.uint64)
