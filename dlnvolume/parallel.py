"""Seeds, batches, executors and atomic checkpoints shared by flows and samplers (a re-export).

The implementation is split by concept: :mod:`dlnvolume.seeding` (one ``SeedSequence`` spawned per
work item), :mod:`dlnvolume.batching` (batches on any executor, progress as a callback) and
:mod:`dlnvolume.checkpoint` (atomic writes). This module keeps the old import path working.
"""

from __future__ import annotations

from .batching import (  # noqa: F401
    Progress,
    _default_executor,
    _single_threaded_blas,
    as_progress,
    check_executor,
    check_progress,
    executor_workers,
    make_batches,
    run_batches,
    text_progress,
)
from .checkpoint import (  # noqa: F401
    AtomicWriteError,
    atomic_save_npz,
    atomic_write,
    atomic_write_text,
    fingerprint,
    load_npz,
)
from .checkpoint import fingerprint as _fingerprint  # noqa: F401
from .seeding import as_seed_sequence, spawn_seeds

__all__ = [
    "as_seed_sequence",
    "spawn_seeds",
    "check_executor",
    "executor_workers",
    "make_batches",
    "run_batches",
    "atomic_save_npz",
    "atomic_write",
    "atomic_write_text",
    "AtomicWriteError",
    "load_npz",
    "Progress",
    "text_progress",
]
