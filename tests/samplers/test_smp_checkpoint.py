"""Chain checkpoints of ``samplers.sample`` and ``SolutionSetSampler.sample`` (issue 7).

An interruption is simulated in-process by a batch function that raises after some batches were
written; the rerun must load those batches (not recompute them: counted calls, unchanged bytes and
mtimes) and give draws bit-identical to a run without checkpoint.
"""

from __future__ import annotations

import concurrent.futures as cf

import numpy as np
import pytest

import dlnvolume as dv
import samplers
import samplers.driver as driver
import samplers.solution_set as solution_set
from dlnvolume.errors import InvalidArgumentError

SEED = 20261129
FIELDS = ("draws", "log_density", "accept_prob", "step_size", "seeds")
REAL_BATCH = driver._run_batch
REAL_SMC_BATCH = solution_set._smc_batch  # SolutionSetSampler.sample runs SMC replicates by default


@pytest.fixture
def target(conditioned_3x3):
    return samplers.GibbsTarget(conditioned_3x3, 3, 3, 20.0, samplers.GaussianPrior(5.0))


def assert_same_chains(a, b):
    for k in FIELDS:
        x, y = getattr(a, k), getattr(b, k)
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), k
    assert a.failures.keys() == b.failures.keys()
    for k in a.failures:
        assert np.array_equal(a.failures[k], b.failures[k]), k
    assert np.array_equal(a.n_evaluations, b.n_evaluations)
    assert a.target == b.target and a.method == b.method and a.warmup == b.warmup and a.thin == b.thin


def snapshot(folder):
    return {f.name: (f.read_bytes(), f.stat().st_mtime_ns) for f in sorted(folder.glob("batch-*.npz"))}


class Interrupted(Exception):
    pass


def interrupting(monkeypatch, after: int) -> list:
    """Make the batch function raise on call ``after + 1``; returns the list of seeds of each call."""
    calls: list = []

    def wrap(real):
        def fn(payload):
            calls.append(list(payload["seeds"]))
            if len(calls) > after:
                raise Interrupted
            return real(payload)
        return fn

    monkeypatch.setattr(driver, "_run_batch", wrap(REAL_BATCH))
    monkeypatch.setattr(solution_set, "_smc_batch", wrap(REAL_SMC_BATCH))
    return calls


def counting(monkeypatch) -> list:
    calls: list = []
    real = REAL_BATCH

    def fn(payload):
        calls.append(list(payload["seeds"]))
        return real(payload)

    monkeypatch.setattr(driver, "_run_batch", fn)
    return calls


@pytest.mark.parametrize("method", ["rmala", "emcee"])
def test_checkpoint_gives_bit_identical_draws(target, method, tmp_path):
    kw = dict(n_chains=3, warmup=4, thin=2, rng=SEED, progress=False)
    plain = samplers.sample(target, method, 5, workers=1, **kw)
    ck = tmp_path / "ck"
    with_ck = samplers.sample(target, method, 5, workers=1, batch_size=2, checkpoint=ck, **kw)
    assert_same_chains(plain, with_ck)
    assert sorted(f.name for f in ck.iterdir()) == ["batch-00000.npz", "batch-00001.npz", "run.json"]
    # a complete folder: a rerun only loads (from a thread pool, another batch layout is not needed)
    with cf.ThreadPoolExecutor(2) as ex:
        again = samplers.sample(target, method, 5, executor=ex, batch_size=2, checkpoint=str(ck), **kw)
    assert_same_chains(plain, again)


def test_interrupted_run_resumes_and_skips_finished_batches(target, tmp_path, monkeypatch):
    kw = dict(n_chains=5, warmup=4, rng=SEED, progress=False, workers=1, batch_size=1)
    plain = samplers.sample(target, "rmala", 6, **kw)
    ck = tmp_path / "ck"
    calls = interrupting(monkeypatch, after=3)
    with pytest.raises(Interrupted):
        samplers.sample(target, "rmala", 6, checkpoint=ck, **kw)
    before = snapshot(ck)
    assert sorted(before) == [f"batch-{i:05d}.npz" for i in range(3)]
    assert not list(ck.glob("*.tmp"))  # no temporary file is left behind
    calls = counting(monkeypatch)
    resumed = samplers.sample(target, "rmala", 6, checkpoint=ck, **kw)
    seeds = dv.parallel.spawn_seeds(SEED, 5)
    assert calls == [[int(seeds[3])], [int(seeds[4])]]  # only the two unfinished chains ran
    after = snapshot(ck)
    assert {k: after[k] for k in before} == before  # finished batches were not rewritten
    assert len(after) == 5
    assert_same_chains(plain, resumed)


def test_other_batch_size_recomputes_only_mismatched_batches(target, tmp_path, monkeypatch):
    kw = dict(n_chains=4, warmup=3, rng=SEED, progress=False, workers=1)
    plain = samplers.sample(target, "rmala", 4, **kw)
    ck = tmp_path / "ck"
    samplers.sample(target, "rmala", 4, batch_size=1, checkpoint=ck, **kw)
    calls = counting(monkeypatch)
    ch = samplers.sample(target, "rmala", 4, batch_size=2, checkpoint=ck, **kw)
    # batches 0 and 1 of size 2 hold chains {0,1}, {2,3}: their files (chains 0 and 1) do not match
    assert len(calls) == 2
    assert_same_chains(plain, ch)


@pytest.mark.parametrize("change", [{"n_draws": 5}, {"warmup": 2}, {"thin": 2}, {"rng": SEED + 1},
                                    {"method": "emcee"}, {"step_size": 0.01}, {"n_chains": 3}])
def test_a_changed_run_never_reuses_a_checkpoint(target, tmp_path, change):
    kw = dict(method="rmala", n_draws=4, n_chains=2, warmup=3, thin=1, rng=SEED, progress=False, workers=1)
    ck = tmp_path / "ck"
    samplers.sample(target, checkpoint=ck, **kw)
    with pytest.raises(InvalidArgumentError, match=r"checkpoint='.*ck' holds batches of a different run"):
        samplers.sample(target, checkpoint=ck, **{**kw, **change})


def test_another_task_never_reuses_a_checkpoint(conditioned_3x3, tmp_path):
    t1 = samplers.GibbsTarget(conditioned_3x3, 3, 3, 20.0, samplers.GaussianPrior(5.0))
    other = dv.CompletionTask(conditioned_3x3.values * 1.5, conditioned_3x3.mask, name=conditioned_3x3.name)
    t2 = samplers.GibbsTarget(other, 3, 3, 20.0, samplers.GaussianPrior(5.0))
    assert t1.describe() == t2.describe()  # the description alone cannot tell them apart
    kw = dict(n_chains=1, warmup=1, rng=SEED, progress=False, workers=1, checkpoint=tmp_path / "ck")
    samplers.sample(t1, "rmala", 2, **kw)
    with pytest.raises(InvalidArgumentError, match="different run"):
        samplers.sample(t2, "rmala", 2, **kw)


def test_solution_set_checkpoint_resume_any_workers(tmp_path, monkeypatch):
    task = dv.tasks.diagonal_2x2()
    sampler = samplers.SolutionSetSampler(task, 5, 1, window=samplers.FrobeniusBall(3.0))
    kw = dict(n_chains=4, warmup=10, rng=SEED, progress=False)
    plain = sampler.sample(20, workers=1, **kw)
    ck = tmp_path / "ss"
    interrupting(monkeypatch, after=2)
    with pytest.raises(Interrupted):
        sampler.sample(20, workers=1, batch_size=1, checkpoint=ck, **kw)
    before = snapshot(ck)
    assert len(before) == 2
    monkeypatch.undo()
    resumed = sampler.sample(20, workers=2, batch_size=1, checkpoint=ck, **kw)  # process pool
    after = snapshot(ck)
    assert {k: after[k] for k in before} == before and len(after) == 4
    assert_same_chains(plain, resumed)
    with pytest.raises(InvalidArgumentError, match="different run"):
        sampler.sample(20, workers=1, batch_size=1, checkpoint=ck, **{**kw, "warmup": 11})
    # other starting matrices are another run too
    with pytest.raises(InvalidArgumentError, match="different run"):
        sampler.sample(20, workers=1, batch_size=1, checkpoint=ck, initial=plain.draws[:, -1], **kw)
