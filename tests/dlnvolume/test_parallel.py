"""Seeds, batches, executors and atomic checkpoints (dlnvolume.parallel; ARCHITECTURE.md "Scale-out")."""

from __future__ import annotations

import concurrent.futures as cf
import os
import time
from pathlib import Path

import numpy as np
import pytest

from dlnvolume import parallel
from dlnvolume.errors import InvalidArgumentError

SEED_ROOT = 424242


# --- picklable work functions (module level, for the process pool) -------------------------------
def draw_batch(batch):
    """Batch = (indices, seeds). One Generator per item from its own seed."""
    idx, seeds = batch
    return {"idx": np.asarray(idx), "x": np.array([np.random.default_rng(int(s)).standard_normal(3) for s in seeds])}


def slow_first_batch(batch):
    """Earlier batches finish later, so completion order differs from batch order."""
    i, n = batch
    time.sleep(0.05 * (n - i))
    return {"i": np.array([i]), "pid": np.array([os.getpid()])}


def recording_batch(batch):
    """Appends its batch index to a log file, so the test can count calls across processes."""
    i, log = batch
    with open(log, "a") as fh:
        fh.write(f"{i}\n")
    return {"i": np.array([i]), "sq": np.array([i * i], dtype=float)}


def _calls(log):
    p = Path(log)
    return [int(v) for v in p.read_text().split()] if p.exists() else []


# ------------------------------------------------------------------------------------------------
def test_spawn_seeds_reproducible_and_distinct():
    a = parallel.spawn_seeds(SEED_ROOT, 50)
    b = parallel.spawn_seeds(SEED_ROOT, 50)
    assert a.dtype == np.uint64 and a.shape == (50,)
    np.testing.assert_array_equal(a, b)
    assert len(set(a.tolist())) == 50
    assert not np.array_equal(a, parallel.spawn_seeds(SEED_ROOT + 1, 50))
    # a prefix does not depend on how many items are requested
    np.testing.assert_array_equal(parallel.spawn_seeds(SEED_ROOT, 7), a[:7])
    # the same Generator state gives the same seeds; a Generator is consumed
    g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
    np.testing.assert_array_equal(parallel.spawn_seeds(g1, 4), parallel.spawn_seeds(g2, 4))
    assert not np.array_equal(parallel.spawn_seeds(g1, 4), parallel.spawn_seeds(np.random.default_rng(5), 4))
    assert parallel.spawn_seeds(SEED_ROOT, 1).shape == (1,)


def test_spawn_seeds_bad_rng():
    with pytest.raises(InvalidArgumentError, match=r"rng=-1"):
        parallel.spawn_seeds(-1, 3)
    with pytest.raises(InvalidArgumentError, match=r"rng='x'"):
        parallel.spawn_seeds("x", 3)


def test_make_batches():
    b = parallel.make_batches(10, 4)
    assert [x.tolist() for x in b] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert parallel.make_batches(0, 3) == []
    with pytest.raises(InvalidArgumentError, match="batch_size=0"):
        parallel.make_batches(5, 0)


@pytest.mark.parametrize("batch_size", [1, 3, 10])
def test_results_independent_of_batching(batch_size):
    n = 10
    seeds = parallel.spawn_seeds(SEED_ROOT, n)
    ref = np.array([np.random.default_rng(int(s)).standard_normal(3) for s in seeds])
    batches = [(idx, seeds[idx]) for idx in parallel.make_batches(n, batch_size)]
    out = parallel.run_batches(draw_batch, batches, workers=1, progress=False)
    np.testing.assert_array_equal(np.concatenate([r["idx"] for r in out]), np.arange(n))
    np.testing.assert_array_equal(np.concatenate([r["x"] for r in out]), ref)


def test_run_batches_order_and_pool_identical():
    n = 4
    batches = [(i, n) for i in range(n)]
    serial = parallel.run_batches(slow_first_batch, batches, workers=1, progress=False)
    with cf.ProcessPoolExecutor(2) as ex:
        pooled = parallel.run_batches(slow_first_batch, batches, executor=ex, progress=False)
    assert [int(r["i"][0]) for r in serial] == list(range(n))
    assert [int(r["i"][0]) for r in pooled] == list(range(n))
    # it really ran in other processes
    assert all(int(r["pid"][0]) != os.getpid() for r in pooled)
    assert all(int(r["pid"][0]) == os.getpid() for r in serial)

    seeds = parallel.spawn_seeds(SEED_ROOT, 9)
    db = [(idx, seeds[idx]) for idx in parallel.make_batches(9, 2)]
    a = parallel.run_batches(draw_batch, db, workers=1, progress=False)
    with cf.ProcessPoolExecutor(2) as ex:
        b = parallel.run_batches(draw_batch, db, executor=ex, progress=False)
    for ra, rb in zip(a, b):
        np.testing.assert_array_equal(ra["x"], rb["x"])
        np.testing.assert_array_equal(ra["idx"], rb["idx"])


def test_checkpoint_resume(tmp_path):
    log = tmp_path / "calls.txt"
    ck = tmp_path / "ck"
    meta = {"seed": 1, "task": "demo"}
    batches = [(i, str(log)) for i in range(5)]
    first = parallel.run_batches(recording_batch, batches, workers=1, progress=False, checkpoint=ck, meta=meta)
    assert sorted(_calls(log)) == [0, 1, 2, 3, 4]
    assert sorted(p.name for p in ck.glob("batch-*.npz")) == [f"batch-{i:05d}.npz" for i in range(5)]
    # second run: nothing recomputed, same results
    again = parallel.run_batches(recording_batch, batches, workers=1, progress=False, checkpoint=ck, meta=meta)
    assert sorted(_calls(log)) == [0, 1, 2, 3, 4]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a["sq"], b["sq"])
    # an interrupted run: batches 1 and 3 missing -> only those recomputed
    (ck / "batch-00001.npz").unlink()
    (ck / "batch-00003.npz").unlink()
    log.unlink()
    resumed = parallel.run_batches(recording_batch, batches, workers=1, progress=False, checkpoint=ck, meta=meta)
    assert sorted(_calls(log)) == [1, 3]
    assert [float(r["sq"][0]) for r in resumed] == [0.0, 1.0, 4.0, 9.0, 16.0]


def test_checkpoint_file_present_is_loaded_not_recomputed(tmp_path):
    log = tmp_path / "calls.txt"
    ck = tmp_path / "ck"
    meta = {"run": "x"}
    batches = [(i, str(log)) for i in range(3)]
    # first create the folder stamp for this meta with a run of zero batches, then plant batch 2
    parallel.run_batches(recording_batch, [], workers=1, progress=False, checkpoint=ck, meta=meta)
    parallel.atomic_save_npz(ck / "batch-00002.npz", i=np.array([2]), sq=np.array([-7.0]))
    with cf.ProcessPoolExecutor(2) as ex:
        out = parallel.run_batches(recording_batch, batches, executor=ex, progress=False, checkpoint=ck, meta=meta)
    assert sorted(_calls(log)) == [0, 1]
    assert float(out[2]["sq"][0]) == -7.0   # the planted file, not a recomputation
    assert [float(r["sq"][0]) for r in out[:2]] == [0.0, 1.0]


def test_checkpoint_of_other_run_refused(tmp_path):
    log = tmp_path / "calls.txt"
    ck = tmp_path / "ck"
    batches = [(i, str(log)) for i in range(2)]
    parallel.run_batches(recording_batch, batches, workers=1, progress=False, checkpoint=ck, meta={"seed": 1})
    n_calls = len(_calls(log))
    with pytest.raises(InvalidArgumentError, match=r"checkpoint=.*different run"):
        parallel.run_batches(recording_batch, batches, workers=1, progress=False, checkpoint=ck, meta={"seed": 2})
    assert len(_calls(log)) == n_calls   # nothing ran
    # no meta is also a different run from meta={"seed": 1}
    with pytest.raises(InvalidArgumentError, match=r"checkpoint="):
        parallel.run_batches(recording_batch, batches, workers=1, progress=False, checkpoint=ck)


class _Exploding:
    def __array__(self, dtype=None, copy=None):
        raise RuntimeError("boom")


def test_atomic_save_npz(tmp_path):
    path = tmp_path / "sub" / "out.npz"
    a = np.arange(6.0).reshape(2, 3)
    parallel.atomic_save_npz(path, a=a, b=np.array([1, 2]))
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.npz"]
    got = parallel.load_npz(path)
    np.testing.assert_array_equal(got["a"], a)
    np.testing.assert_array_equal(got["b"], [1, 2])
    # overwrite atomically
    parallel.atomic_save_npz(path, a=a + 1)
    np.testing.assert_array_equal(parallel.load_npz(path)["a"], a + 1)
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.npz"]
    # a failing write leaves the old file intact and no temporary file behind
    with pytest.raises(RuntimeError, match="boom"):
        parallel.atomic_save_npz(path, a=_Exploding())
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.npz"]
    np.testing.assert_array_equal(parallel.load_npz(path)["a"], a + 1)


def test_checkpoint_leaves_no_temp_files(tmp_path):
    log = tmp_path / "calls.txt"
    ck = tmp_path / "ck"
    parallel.run_batches(recording_batch, [(i, str(log)) for i in range(3)], workers=1, progress=False,
                         checkpoint=ck, meta={"a": 1})
    names = sorted(p.name for p in ck.iterdir())
    assert names == ["batch-00000.npz", "batch-00001.npz", "batch-00002.npz", "run.json"]


def test_progress_is_a_callback_and_dlnvolume_needs_no_tqdm(tmp_path):
    """run_batches reports (done, total) to a callback, starting from the batches resumed from a checkpoint;
    the geometry floor does not import tqdm (issue 11)."""
    import subprocess
    import sys

    seeds = parallel.spawn_seeds(SEED_ROOT, 6)
    batches = [(idx, seeds[idx]) for idx in parallel.make_batches(6, 2)]
    calls = []
    parallel.run_batches(draw_batch, batches[:2], workers=1, checkpoint=tmp_path, meta={"k": 1},
                         progress=lambda d, t: calls.append((d, t)))
    assert calls == [(0, 2), (1, 2), (2, 2)]
    calls.clear()
    parallel.run_batches(draw_batch, batches, workers=1, checkpoint=tmp_path, meta={"k": 1},
                         progress=lambda d, t: calls.append((d, t)))
    assert calls == [(2, 3), (3, 3)]
    with pytest.raises(InvalidArgumentError, match=r"progress='yes'; expected True or False"):
        parallel.check_progress("yes")
    code = "import sys, dlnvolume, dlnvolume.parallel; print(any(m.startswith('tqdm') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "False"


def ticking_batch(batch):
    """A batch that reports its progress through ``tick``: 4 steps of ``seconds / 4`` each."""
    from dlnvolume.batching import part, tick

    idx, seconds = batch
    for j in range(2):  # two items per batch, each reporting inside its half
        with part(j / 2, (j + 1) / 2):
            for k in range(2):
                time.sleep(seconds / 4)
                tick((k + 1) / 2)
    return {"x": np.asarray(idx, dtype=float)}


class _Partial:
    """A progress callback that asks for partial progress and records what it gets."""

    partial = True

    def __init__(self):
        self.calls = []

    def __call__(self, done, total):
        self.calls.append((done, total))


@pytest.mark.parametrize("workers", [1, 2])
def test_partial_progress_moves_inside_running_batches(workers):
    """A callback with ``partial = True`` hears the fractions that running batches report through ``tick``
    (between the integer calls for finished batches; issue 22 item 2), in-process and in a pool; without
    ``partial`` it hears whole batches only, and ``tick`` outside run_batches does nothing."""
    from dlnvolume.batching import tick

    tick(0.5)  # no listener: a no-op
    rec = _Partial()
    out = parallel.run_batches(ticking_batch, [(0, 4.0), (1, 4.0)], workers=workers, progress=rec)
    assert [float(r["x"]) for r in out] == [0.0, 1.0]
    values = [d for d, _ in rec.calls]
    assert all(t == 2 for _, t in rec.calls)
    fractional = [d for d in values if not float(d).is_integer()]
    assert len(fractional) >= 2, rec.calls  # ~8 s of batches polled every second
    assert values == sorted(values) and values[0] == 0 and values[-1] == 2
    plain = []
    parallel.run_batches(ticking_batch, [(0, 0.4), (1, 0.4)], workers=workers, progress=lambda d, t: plain.append(d))
    assert plain == [0, 1, 2]


def test_text_progress_shows_time_left(capsys, monkeypatch):
    """The built-in text line shows elapsed time and, once progress was made, the time left extrapolated
    from it (resumed batches do not count as speed)."""
    from dlnvolume import batching

    now = [100.0]
    monkeypatch.setattr(batching.time, "perf_counter", lambda: now[0])
    report = batching.text_progress("smc replicates")
    report(1, 4)  # one batch resumed from a checkpoint
    now[0] += 30.0
    report(1.5, 4)  # half a batch in 30 s: 2.5 batches left take 150 s = 2.5 min
    now[0] += 30.0
    report(4, 4)
    err = capsys.readouterr().err
    assert "smc replicates: 1.50/4 (30 s elapsed, ~2.5 min left)" in err
    assert "smc replicates: 4/4 (60 s elapsed)" in err
