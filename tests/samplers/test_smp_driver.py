import concurrent.futures as cf
import math
import warnings

import numpy as np
import pytest

import dlnvolume as dv
import samplers
from dlnvolume.errors import InvalidArgumentError, ShapeError

SEED = 20261129


@pytest.fixture
def target(conditioned_3x3):
    return samplers.GibbsTarget(conditioned_3x3, 3, 3, 20.0, samplers.GaussianPrior(5.0))


@pytest.mark.parametrize("method", ["rmala", "emcee"])
def test_shapes_do_not_depend_on_values(target, method):
    ch = samplers.sample(target, method, 1, n_chains=1, warmup=0, rng=SEED, workers=1, progress=False)
    assert ch.draws.shape == (1, 1, 3, 3)
    assert ch.log_density.shape == (1, 1) and ch.accept_prob.shape == (1, 1)
    assert ch.step_size.shape == (1,) and ch.seeds.shape == (1,) and ch.seeds.dtype == np.uint64
    assert all(v.shape == (1,) for v in ch.failures.values())
    assert ch.method == method and ch.warmup == 0 and ch.thin == 1
    assert ch.target == target.describe()
    assert np.isfinite(ch.log_density).all()


def test_log_density_is_the_matrix_target(target):
    ch = samplers.sample(target, "rmala", 5, n_chains=2, warmup=5, thin=2, rng=SEED, workers=1, progress=False)
    assert np.allclose(ch.log_density, target.log_target_matrix(ch.draws))
    assert ch.n_evaluations.tolist() == [1 + 5 + 10] * 2


def test_same_draws_for_any_batching_and_executor(target):
    kw = dict(n_chains=3, warmup=5, rng=SEED, progress=False)
    a = samplers.sample(target, "rmala", 4, workers=1, **kw)
    b = samplers.sample(target, "rmala", 4, workers=1, batch_size=2, **kw)
    with cf.ThreadPoolExecutor(2) as ex:
        c = samplers.sample(target, "rmala", 4, executor=ex, **kw)
    assert np.array_equal(a.draws, b.draws) and np.array_equal(a.draws, c.draws)
    assert np.array_equal(a.seeds, dv.parallel.spawn_seeds(SEED, 3))
    # chain i is reproduced alone from its seed
    d = samplers.sample(target, "rmala", 4, n_chains=1, warmup=5, rng=np.random.SeedSequence(0), workers=1, progress=False)
    assert d.draws.shape == (1, 4, 3, 3)


def test_initial_matrices_are_used(target, conditioned_3x3):
    X0 = conditioned_3x3.values
    ch = samplers.sample(target, "rmala", 1, n_chains=2, warmup=0, initial=X0, rng=SEED, workers=1, progress=False)
    assert np.max(np.abs(ch.draws - X0)) < 2.0


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"method": "hmc"}, InvalidArgumentError, r"method='hmc'; expected one of 'rmala', 'emcee', 'smc'"),
        ({"n_draws": 0}, InvalidArgumentError, r"n_draws=0 is out of range; expected an integer 1 or more"),
        ({"n_chains": 0}, InvalidArgumentError, r"n_chains=0 is out of range"),
        ({"thin": 0}, InvalidArgumentError, r"thin=0 is out of range"),
        ({"warmup": -1}, InvalidArgumentError, r"warmup=-1 is out of range"),
        ({"step_size": -0.1}, InvalidArgumentError, r"step_size=-0.1; expected a finite number > 0"),
        ({"initial": np.zeros((2, 2))}, ShapeError, r"initial has shape \(2, 2\); expected \(3, 3\) or \(n_chains=4, 3, 3\)"),
        ({"initial": np.full((3, 3), np.nan)}, InvalidArgumentError, r"initial has NaN or infinite entries"),
        ({"rng": -3}, InvalidArgumentError, r"rng=-3 is negative"),
        ({"coordinates": "polar", "method": "emcee"}, InvalidArgumentError, r"coordinates='polar'; expected 'theta' or 'matrix'"),
    ],
)
def test_bad_arguments(target, kwargs, exc, match):
    args = {"method": "rmala", "n_draws": 2, "progress": False, "workers": 1}
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        samplers.sample(target, **args)


def test_target_type_checked():
    with pytest.raises(InvalidArgumentError, match=r"target has type str; expected a samplers.GibbsTarget"):
        samplers.sample("target", "rmala", 2)


def test_initial_outside_support(target):
    with pytest.raises(InvalidArgumentError, match=r"initial matrix has target log density -inf"):
        samplers.sample(target, "rmala", 2, n_chains=1, initial=np.zeros((3, 3)), workers=1, progress=False)


def test_ess_estimator():
    rng = np.random.default_rng(SEED)
    iid = rng.standard_normal((4, 4000))
    assert 0.9 * 16000 < samplers.ess(iid) < 1.1 * 16000
    # AR(1) with ρ = 0.9: ESS ≈ n (1-ρ)/(1+ρ)
    rho, n = 0.9, 20000
    x = np.empty((4, n))
    x[:, 0] = rng.standard_normal(4) / math.sqrt(1 - rho**2)
    eps = rng.standard_normal((4, n))
    for t in range(1, n):
        x[:, t] = rho * x[:, t - 1] + eps[:, t]
    expected = 4 * n * (1 - rho) / (1 + rho)
    assert 0.8 * expected < samplers.ess(x) < 1.2 * expected
    # chains stuck at different values: ESS collapses
    stuck = np.concatenate([rng.standard_normal((2, 1000)) * 0.01, 5 + rng.standard_normal((2, 1000)) * 0.01])
    assert samplers.ess(stuck) < 10
    with pytest.raises(ShapeError, match=r"x has 3 draws per chain; expected at least 4"):
        samplers.ess(np.zeros((2, 3)))


def test_process_pool_gives_the_same_draws(target, scalar_task):
    kw = dict(n_chains=2, warmup=3, rng=SEED, progress=False)
    with cf.ProcessPoolExecutor(2) as ex:
        a = samplers.sample(target, "rmala", 3, executor=ex, **kw)
        st = samplers.GibbsTarget(scalar_task, 2, 1, 2.0, samplers.FrobeniusBall(3.0))
        b = samplers.sample(st, "emcee", 3, executor=ex, **kw)
        ss = samplers.SolutionSetSampler(dv.tasks.diagonal_2x2(), 3, 1, window=samplers.FrobeniusBall(4.0))
        c = ss.sample(3, executor=ex, **kw)
    assert np.array_equal(a.draws, samplers.sample(target, "rmala", 3, workers=1, **kw).draws)
    assert np.array_equal(b.draws, samplers.sample(st, "emcee", 3, workers=1, **kw).draws)
    assert np.array_equal(c.draws, ss.sample(3, workers=1, **kw).draws)


def test_not_converged_warning_names_only_what_failed():
    """One line; it names the check that failed (ESS here, R-hat fine), not both conditions."""
    from dataclasses import dataclass

    from samplers.diagnostics import ConvergenceWarning, attach_diagnostics

    @dataclass
    class Fake:
        draws: np.ndarray
        method: str = "fake"
        diagnostics: dict | None = None

    rng = np.random.default_rng(SEED)
    short = rng.standard_normal((4, 50, 1, 2))  # iid but only 200 draws: R-hat ~1, ESS < 400
    with pytest.warns(ConvergenceWarning, match=r"^fake: not converged \(ESS bulk/tail \d+/\d+ < 400\); see Chains"):
        out = attach_diagnostics(Fake(short))
    assert not out.diagnostics["converged"]
    stuck = short + np.arange(4)[:, None, None, None] * 10.0  # chains at different levels
    with pytest.warns(ConvergenceWarning, match=r"not converged \(R-hat [\d.]+ > 1.01; ESS bulk/tail"):
        attach_diagnostics(Fake(stuck))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        attach_diagnostics(Fake(rng.standard_normal((4, 500, 1, 2))))  # 2000 iid draws: no warning
