"""dlnvolume: the geometry of the deep linear network and the high-volume bias hypothesis.

Geometry (:class:`DLNMetric`, :func:`log_volume_density`, :mod:`dlnvolume.strata`), matrix
completion (:class:`CompletionTask`, :mod:`dlnvolume.tasks`) and gradient flows
(:mod:`dlnvolume.flows`). numpy and scipy only.
"""

from __future__ import annotations

from . import errors, strata, tasks
from . import flows
from .completion import CompletionTask
from .errors import DLNVolumeError
from .metric import DLNMetric, log_volume_density

__version__ = "0.1.0"

__all__ = [
    "DLNMetric",
    "log_volume_density",
    "CompletionTask",
    "DLNVolumeError",
    "errors",
    "flows",
    "strata",
    "tasks",
    "__version__",
]
