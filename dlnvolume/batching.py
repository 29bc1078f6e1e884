"""Batches of independent work items on any :class:`concurrent.futures.Executor`, with checkpoints.

Batches, not single items, are the unit of work (Dask costs ~1 ms per task). :func:`run_batches` maps
a picklable function over batches (a local process pool by default, a Dask ``client.get_executor()``
for clusters), reports progress through a callback, and with ``checkpoint`` writes each finished batch
atomically (:mod:`dlnvolume.checkpoint`) so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import concurrent.futures as cf
from concurrent.futures.process import BrokenProcessPool
import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Iterator
from typing import Any, Callable, Sequence

import numpy as np

from .validation import short_repr
from .checkpoint import atomic_save_npz, atomic_write_text, fingerprint, load_npz
from .errors import InvalidArgumentError, WorkerLostError

__all__ = ["make_batches", "check_executor", "executor_workers", "run_batches", "Progress", "text_progress",
           "as_progress", "check_progress", "tick", "part"]

#: ``progress(done, total)``: called with the number of finished batches. A callback with a true attribute
#: ``partial`` is also called while batches run, with ``done`` a float: the finished batches plus the
#: fractions the running ones reported through :func:`tick` (at most every :data:`POLL_S` seconds).
Progress = Callable[[int, int], None]

#: Seconds between two partial progress reports.
POLL_S = 1.0


def format_seconds(s: float) -> str:
    """``"42 s"``, ``"3.5 min"``, ``"1.2 h"``."""
    if not math.isfinite(s):
        return "?"
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min" if s < 5400 else f"{s / 3600:.1f} h"


def text_progress(desc: str = "batches") -> Progress:
    """A progress callback that rewrites one line ``desc: done/total (elapsed, time left)`` on stderr (no
    dependency). Time left is extrapolated from the progress made since the first call (batches resumed
    from a checkpoint do not count as speed); partial progress inside running batches counts."""
    first: list[tuple[float, float]] = []
    width = [0]

    def report(done: float, total: int) -> None:
        now = time.perf_counter()
        if not first:
            first.append((now, float(done)))
        t0, d0 = first[0]
        shown = f"{int(done)}" if float(done).is_integer() else f"{done:.2f}"
        timing = ""
        if now - t0 >= 1.0:
            timing = f" ({format_seconds(now - t0)} elapsed"
            if done < total and done - d0 > 0:
                timing += f", ~{format_seconds((now - t0) / (done - d0) * (total - done))} left"
            timing += ")"
        end = "\n" if done >= total else ""
        line = f"{desc}: {shown}/{total}{timing}"
        pad = " " * max(width[0] - len(line), 0)  # blank what a longer previous line left
        width[0] = len(line)
        sys.stderr.write(f"\r{line}{pad}{end}")
        sys.stderr.flush()

    report.partial = True  # type: ignore[attr-defined]
    return report


# -- progress inside a running batch ---------------------------------------------------------------------
_METER: Callable[[float], None] | None = None  # the listener of the batch running in this process, if any
_SPAN: tuple[float, float] = (0.0, 1.0)  # the part of that batch the current code runs (see part())
_SHARED: Any = None  # in a pool's worker: the parent's shared array of fractions, one slot per batch


def tick(fraction: float) -> None:
    """Report that the code running now has done ``fraction`` (0..1) of its work.

    Batch functions run by :func:`run_batches` call this from inside long computations (an SMC replicate,
    an MCMC chain) so that the progress line moves between finished batches. Inside :func:`part` blocks the
    fraction is mapped into the block's share of the batch. Without a listener (an external executor, a
    direct call) it costs one global lookup.
    """
    m = _METER
    if m is not None:
        lo, hi = _SPAN
        m(lo + (hi - lo) * min(max(float(fraction), 0.0), 1.0))


@contextlib.contextmanager
def part(lo: float, hi: float) -> Iterator[None]:
    """Within the block, :func:`tick` fractions are those of the block, which is ``[lo, hi]`` of the enclosing
    work (nested blocks compose): ``with part(k / n, (k + 1) / n): run_one()`` for the k-th of n items."""
    global _SPAN
    old = _SPAN
    a, b = old
    _SPAN = (a + (b - a) * lo, a + (b - a) * hi)
    try:
        yield
    finally:
        _SPAN = old


def _metered_call(fn: Callable[[Any], Any], slot: int, batch: Any) -> Any:
    """Run in a pool worker: ``fn(batch)`` with :func:`tick` writing into the parent's slot ``slot``."""
    global _METER, _SPAN
    shared = _SHARED
    if shared is None:
        return fn(batch)

    def meter(f: float) -> None:
        shared[slot] = f

    _METER, _SPAN = meter, (0.0, 1.0)
    try:
        return fn(batch)
    finally:
        _METER = None


def _one_blas_thread(fn: Callable[[Any], Any], batch: Any) -> Any:
    """``fn(batch)`` with one BLAS thread (in a caller's executor, whose workers may run several)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return fn(batch)


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


def _single_threaded_blas(parent: int | None = None, shared: Any = None) -> None:
    """Pool initializer: one BLAS thread per worker process, Ctrl-C left to the parent, and the worker's
    death with its parent; ``shared`` is the parent's array of running-batch fractions (:func:`tick`).

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

    global _SHARED
    _SHARED = shared

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
    for p in procs:  # first: whatever the pool's own shutdown then does, no worker keeps computing
        try:
            p.terminate()
        except (OSError, ValueError, AttributeError):
            pass
    ex.shutdown(wait=False, cancel_futures=True)
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


def _default_executor(n_batches: int, workers: int | None, shared: Any = None) -> cf.Executor | None:
    if workers is None:
        workers = os.cpu_count() or 1
    if workers <= 1 or n_batches <= 1:
        return None
    return cf.ProcessPoolExecutor(max_workers=min(workers, n_batches), initializer=_single_threaded_blas,
                                  initargs=(os.getpid(), shared))


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
    global _METER, _SPAN
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
    partial = bool(getattr(report, "partial", False))
    last = [time.perf_counter()]

    def finish(i: int, res: dict[str, np.ndarray]) -> None:
        if folder is not None:
            atomic_save_npz(folder / f"batch-{i:05d}.npz", **res)
        results[i] = res
        done[0] += 1
        report(done[0] + running(), len(batches))
        last[0] = time.perf_counter()

    def running() -> float:
        """Sum of the fractions the pool's running batches reported (0 without a shared array)."""
        if shared is None:
            return 0.0
        return sum(min(max(shared[i], 0.0), 1.0) for i in live)

    own = None
    futures: dict[cf.Future, int] = {}
    shared = None
    live: set[int] = set()  # batches submitted to a pool and not finished
    try:
        ex = executor
        if ex is None:
            if partial and len(todo) > 1 and (workers or os.cpu_count() or 1) > 1:
                import multiprocessing as mp

                shared = mp.RawArray("d", len(batches))  # fractions of the running batches, written by tick()
            own = ex = _default_executor(len(todo), workers, shared)
        if ex is None:
            # one BLAS thread, as in the pool's workers: a multithreaded BLAS sums in another order, and the
            # same seed must give the same bits with any number of workers
            from threadpoolctl import threadpool_limits

            with threadpool_limits(limits=1):
                for i in todo:
                    def meter(f: float) -> None:
                        now = time.perf_counter()
                        if now - last[0] >= POLL_S:
                            last[0] = now
                            report(done[0] + f, len(batches))

                    if partial:
                        _METER, _SPAN = meter, (0.0, 1.0)
                    try:
                        res = fn(batches[i])
                    finally:
                        _METER = None
                    finish(i, res)
        else:
            if shared is not None:
                futures = {ex.submit(_metered_call, fn, i, batches[i]): i for i in todo}
            elif own is None:  # a caller's executor (e.g. Dask): one BLAS thread inside each batch
                futures = {ex.submit(_one_blas_thread, fn, batches[i]): i for i in todo}
            else:
                futures = {ex.submit(fn, batches[i]): i for i in todo}
            pending = set(futures)
            live.update(futures.values())
            while pending:
                finished, pending = cf.wait(pending, timeout=POLL_S if shared is not None else None,
                                            return_when=cf.FIRST_COMPLETED)
                for fut in sorted(finished, key=futures.__getitem__):
                    live.discard(futures[fut])
                    finish(futures[fut], fut.result())
                if shared is not None and pending and not finished:
                    report(done[0] + running(), len(batches))
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
