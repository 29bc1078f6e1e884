"""Atomic file writes and ``.npz`` checkpoints (temporary file in the same folder + ``os.replace``).

A failure anywhere leaves a previous file intact; an :class:`OSError` is re-raised as
:class:`AtomicWriteError` naming the destination.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["AtomicWriteError", "atomic_write", "atomic_write_text", "atomic_save_npz", "load_npz", "fingerprint"]


class AtomicWriteError(OSError):
    """Writing ``path`` failed (disk full, permission denied, read-only file system, ...).

    An :class:`OSError` with the ``errno`` and ``strerror`` of the underlying failure and
    ``filename`` = the destination ``path`` (not the temporary file). The destination was not
    touched: a previous file there is intact. ``replaced`` lists files that a multi-file commit
    (``analysis.report.write_outputs``) had already moved into place before the failure.
    """

    replaced: tuple[str, ...] = ()


def _write_failed(exc: OSError, path: Path) -> AtomicWriteError:
    return AtomicWriteError(exc.errno, exc.strerror or str(exc) or type(exc).__name__, str(path))


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any], *, suffix: str = ".tmp") -> None:
    """Create ``path`` atomically: ``write(tmp)`` fills a temporary file in the same folder, then
    ``os.replace(tmp, path)``.

    A failure anywhere (including ``KeyboardInterrupt``) removes the temporary file and leaves a
    previous ``path`` unchanged; an :class:`OSError` is re-raised as :class:`AtomicWriteError`
    naming ``path``. ``suffix`` ends the temporary name (e.g. ``".png"`` for writers that infer the
    format from it).
    """
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=suffix, dir=path.parent)
        os.close(fd)
        write(Path(tmp))
        os.replace(tmp, path)
        tmp = None
    except AtomicWriteError:
        raise
    except OSError as exc:
        raise _write_failed(exc, path) from exc
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a UTF-8 text file atomically (see :func:`atomic_write`)."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    atomic_write(path, write)


def atomic_save_npz(path: str | os.PathLike, **arrays: Any) -> None:
    """Write an ``.npz`` file atomically: to a temporary file in the same folder, then ``os.replace``.

    Raises :class:`AtomicWriteError` (an ``OSError`` naming ``path``) on failure; a previous file at
    ``path`` is then intact.
    """

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())

    atomic_write(path, write)


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def fingerprint(meta: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(meta, sort_keys=True, default=str).encode()).hexdigest()[:16]
