"""Exception hierarchy of dlnvolume.

Every error the package raises on bad input is a subclass of :class:`DLNVolumeError`, which is
itself a subclass of :class:`ValueError`, so ``except ValueError`` catches all of them. Messages
name the argument, the value received and what is accepted.
"""

from __future__ import annotations

__all__ = [
    "DLNVolumeError",
    "InvalidDepthError",
    "InvalidRankError",
    "ShapeError",
    "NonFiniteError",
    "InvalidMaskError",
    "InvalidArgumentError",
    "DegenerateMetricError",
    "ImproperTargetError",
    "ConfigError",
    "WorkerLostError",
]


class DLNVolumeError(ValueError):
    """Base class of all dlnvolume input errors."""


class InvalidDepthError(DLNVolumeError):
    """Depth is not an integer >= 1 or ``math.inf``."""


class InvalidRankError(DLNVolumeError):
    """Rank outside ``0..min(m, n)``."""


class ShapeError(DLNVolumeError):
    """Wrong number of dimensions or mismatched shapes."""


class NonFiniteError(DLNVolumeError):
    """NaN or infinite entries where finite numbers are required."""


class InvalidMaskError(DLNVolumeError):
    """Observation mask that is not boolean, observes nothing, or disagrees with the values."""


class InvalidArgumentError(DLNVolumeError):
    """Any other argument outside its accepted range."""


class DegenerateMetricError(DLNVolumeError):
    """The metric is zero or infinite in a tangent direction (e.g. depth inf off the square full-rank set)."""


class ImproperTargetError(DLNVolumeError):
    """A target density that cannot be normalized (MATH.md §3.5, §4.4); the message says which confinement fixes it."""


class ConfigError(DLNVolumeError):
    """Malformed experiment configuration."""


class WorkerLostError(RuntimeError):
    """A worker process died mid-batch (killed by the operating system, most often for lack of memory).
    Not an input error: the message says which batches were kept and which setting to reduce."""
