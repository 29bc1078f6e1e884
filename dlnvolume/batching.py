"""Batches of independent work items on any :class:`concurrent.futures.Executor`, with checkpoints.

Batches, not single items, are the unit of work (Dask costs ~1 ms per task). :func:`run_batches` maps
a picklable function over batches (a local process pool by default, a Dask ``client.get_executor()``
for clusters), reports progress through a callback, and with ``checkpoint`` writes each finished batch
atomically (:mod:`dlnvolume.checkpoint`) so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import concurrent.futures as cf
from concurrent.futures.process import BrokenProcessPool
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .validation import short_repr
from .checkpoint import atomic_save_npz, atomic_write_text, fingerprint, load_npz
from .errors import InvalidArgumentError, WorkerLostError

__all__ = ["make_batches", "check_executor", "executor_workers", "run_batches", "Progress", "text_progress",
           "as_progress", "check_progress"]

#: ``progress(done, total)``: called with the number of finished batches.
Progress = Callable[[int, int], None]


def text_progress(desc: str = "batches") -> Progress:
    """A progress callback that rewrites one line ``desc: done/total`` on stderr (no dependency)."""

    def report(done: int, total: int) -> None:
        end = "\n" if done >= total else ""
        sys.stderr.write(f"\r{desc}: {done}/{total}{end}")
        sys.stderr.flush()

    return report


def _silent(done: int, total: int) -> None:
    return None


def check_progress(progress: Any, name: str = "progress") -> None:
    """``progress`` must be a bool, None or a callable ``(done, total)``."""
    if progress is None or isinstance(progress, (bool, np.bool_)) or callable(progress):
        return
    raise InvalidArgumentError(f"{name}={short_repr(progress)}; expected True or False (or a callable progress(done, total))")


def as_progress(progress: Any, desc: str = "batches") -> Progress:
    """``True`` → :func:`text_progress`, ``False``/``None`` → silent, a callable as it is."""
    if progress is None or progress is False or (isinstance(progress, np.bool_) and not progress):
        return _silent
    if progress is True or isinstance(progress, np.bool_):
        return text_progress(desc)
    return progress


def make_batches(n: int, batch_size: int) -> list[np.ndarray]:
    """Split ``range(n)`` into consecutive index arrays of length ``batch_size`` (last one shorter)."""
    if batch_size < 1:
        raise InvalidArgumentError(f"batch_size={batch_size}; expected an integer >= 1")
    return [np.arange(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def _single_threaded_blas(parent: int | None = None) -> None:
    """Pool initializer: one BLAS thread per worker process, Ctrl-C left to the parent, and the worker's
    death with its parent.

    Several processes each running a multithreaded BLAS oversubscribe the cores; measured here, a
    batched 100×100 SVD took 142 ms instead of 1.7 ms under that contention. A terminal's Ctrl-C
    reaches the whole process group; workers ignore SIGINT so that only the parent reacts (it saves the
    finished batches and terminates the workers), whatever the start method (fork, spawn, forkserver).
    When the parent dies without that (``kill -9``), the kernel kills the worker too (Linux
    ``PR_SET_PDEATHSIG``; elsewhere a thread that checks the parent's pid every second, which runs as
    soon as compiled code releases the interpreter): no orphan keeps computing.
    """
    import signal

    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread of the worker (never the case for a process pool)
        pass
    if parent is None:
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, int(signal.SIGKILL), 0, 0, 0) != 0:  # PR_SET_PDEATHSIG
            raise OSError
    except (OSError, AttributeError):
        import threading
        import time

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != parent:  # the parent died before the guard was in place
        os._exit(1)


def _stop_now(ex: cf.Executor) -> None:
    """Stop a pool this module created without waiting for its running batches: cancel the queued ones and
    terminate the worker processes (their batches are lost; every finished one has been saved)."""
    live = getattr(ex, "_processes", None)  # CPython's ProcessPoolExecutor: {pid: Process}
    procs = list(live.values()) if isinstance(live, dict) else []
    ex.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        try:
            p.terminate()
        except (OSError, ValueError, AttributeError):
            pass
    for p in procs:
        try:
            p.join(timeout=2.0)
            if p.is_alive():
                p.kill()
        except (OSError, ValueError, AttributeError, AssertionError):
            pass


def check_executor(executor: Any, name: str = "executor") -> None:
    """``None`` or an object with a callable ``submit`` (a ``concurrent.futures.Executor``, e.g. a
    Dask ``client.get_executor()``); anything else raises :class:`InvalidArgumentError`."""
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise InvalidArgumentError(
            f"{name}={short_repr(executor)} has type {type(executor).__name__}; expected None or a "
            "concurrent.futures.Executor (e.g. a Dask client.get_executor())"
        )


def executor_workers(executor: Any, workers: int | None = None) -> int:
    """Number of tasks an executor runs at once, for sizing batches.

    ``workers`` if given; else the worker threads of a Dask ``client.get_executor()`` (summed over
    the cluster's workers), ``_max_workers`` of a ``concurrent.futures`` pool, or ``os.cpu_count()``.
    """
    if workers is not None:
        return int(workers)
    if executor is not None:
        client = getattr(executor, "_client", None)
        if client is not None:
            try:
                return max(1, int(sum(client.nthreads().values())))
            except Exception:  # pragma: no cover - a scheduler that cannot be asked
                pass
        n = getattr(executor, "_max_workers", None)
        if isinstance(n, int) and n >= 1:
            return n
    return os.cpu_count() or 1


def _default_executor(n_batches: int, workers: int | None) -> cf.Executor | None:
    if workers is None:
        workers = os.cpu_count() or 1
    if workers <= 1 or n_batches <= 1:
        return None
    return cf.ProcessPoolExecutor(max_workers=min(workers, n_batches), initializer=_single_threaded_blas,
                                  initargs=(os.getpid(),))


def run_batches(
    fn: Callable[[Any], dict[str, np.ndarray]],
    batches: Sequence[Any],
    *,
    executor: cf.Executor | None = None,
    workers: int | None = None,
    progress: Progress | bool | None = None,
    desc: str = "batches",
    checkpoint: str | os.PathLike | None = None,
    meta: dict[str, Any] | None = None,
    validate: Callable[[int, dict[str, np.ndarray]], bool] | None = None,
) -> list[dict[str, np.ndarray]]:
    """Run ``fn(batch)`` for every batch and return the results in batch order.

    Parameters
    ----------
    fn : picklable callable returning a dict of numpy arrays
    batches : sequence of picklable work descriptions
    executor : concurrent.futures.Executor, optional
        Used as given (not shut down). Default: a local process pool with ``workers`` processes, or
        in-process when ``workers == 1`` or there is a single batch.
    progress : callable ``progress(done, total)``, bool or None
        Called once with the batches already done (resumed from ``checkpoint``) and after every
        finished batch. ``True``: :func:`text_progress` on stderr; ``False``/``None``: silent. (A tqdm
        bar is the caller's business, e.g. ``samplers.driver.tqdm_progress``; ``dlnvolume`` does not
        import tqdm.)
    checkpoint : path, optional
        Folder for one ``batch-XXXXX.npz`` per finished batch, written atomically. Batches already
        there (with the same ``meta`` fingerprint) are loaded instead of recomputed.
    meta : dict, optional
        Description of the run (seed, task, depth, ...). A checkpoint folder written for a different
        description is refused rather than silently mixed.
    validate : callable, optional
        ``validate(i, arrays)``: whether a batch file loaded from ``checkpoint`` really holds batch
        ``i`` (e.g. its seeds match); a batch that fails is recomputed and its file rewritten.
    """
    report = as_progress(progress, desc)
    results: list[dict[str, np.ndarray] | None] = [None] * len(batches)
    folder: Path | None = None
    if checkpoint is not None:
        folder = Path(checkpoint)
        folder.mkdir(parents=True, exist_ok=True)
        fp = fingerprint(meta or {})
        stamp = folder / "run.json"
        if stamp.exists():
            old = json.loads(stamp.read_text()).get("fingerprint")
            if old != fp:
                raise InvalidArgumentError(
                    f"checkpoint={str(folder)!r} holds batches of a different run (fingerprint {old} != {fp}); "
                    "use another folder or delete it"
                )
        else:
            atomic_write_text(stamp, json.dumps({"fingerprint": fp, "meta": meta or {}}, default=str, indent=1))
        for i in range(len(batches)):
            f = folder / f"batch-{i:05d}.npz"
            if f.exists():
                loaded = load_npz(f)
                if validate is None or validate(i, loaded):
                    results[i] = loaded

    todo = [i for i, r in enumerate(results) if r is None]
    done = [len(batches) - len(todo)]
    report(done[0], len(batches))

    def finish(i: int, res: dict[str, np.ndarray]) -> None:
        if folder is not None:
            atomic_save_npz(folder / f"batch-{i:05d}.npz", **res)
        results[i] = res
        done[0] += 1
        report(done[0], len(batches))

    own = None
    futures: dict[cf.Future, int] = {}
    try:
        ex = executor
        if ex is None:
            own = ex = _default_executor(len(todo), workers)
        if ex is None:
            for i in todo:
                finish(i, fn(batches[i]))
        else:
            futures = {ex.submit(fn, batches[i]): i for i in todo}
            for fut in cf.as_completed(futures):
                finish(futures[fut], fut.result())
    except BaseException as exc:
        # Ctrl-C, a lost worker or an error in ``fn``: keep every batch that finished meanwhile, then stop the
        # pool without waiting for the running ones (an own pool: its processes are terminated)
        for fut, i in futures.items():
            if results[i] is None and fut.done() and not fut.cancelled() and fut.exception() is None:
                finish(i, fut.result())
        if own is not None:
            _stop_now(own)
            own = None
        elif ex is not None:
            for fut in futures:
                fut.cancel()
        if isinstance(exc, BrokenProcessPool):
            raise _worker_lost(desc, done[0], len(batches), folder) from None
        raise
    finally:
        if own is not None:
            own.shutdown(cancel_futures=True)
    return results  # type: ignore[return-value]


def _worker_lost(desc: str, done: int, total: int, folder: Path | None) -> WorkerLostError:
    """The one-line error of a worker process that died mid-batch."""
    try:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
        mem = f"; {avail:.1f} GiB of memory free now"
    except (ValueError, OSError, AttributeError):
        mem = ""
    kept = (f"the {done} finished of {total} batches are kept in {folder} (rerun with --resume)" if folder is not None
            else f"{done} of {total} batches had finished")
    return WorkerLostError(
        f"a worker process died while running {desc} (killed by the operating system, most likely out of memory"
        f"{mem}); {kept}; use fewer workers (--workers) or smaller batches (batch_size), or reduce the sizes "
        "(runs, draws, chains)")
