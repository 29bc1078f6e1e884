import math

import numpy as np
import pytest
from scipy import stats

import samplers
from dlnvolume.errors import InvalidArgumentError
from samplers.diagnostics import thin_to_ess
from samplers.reference import ScalarGibbsReference

SEED = 20261129


def test_emcee_matches_scalar_quadrature(scalar_task):
    # both signs of x carry mass here: emcee moves between them through the polar factors
    beta, mu, R = 3.0, 1.0, 3.0
    target = samplers.GibbsTarget(scalar_task, 3, 1, beta, samplers.FrobeniusBall(R))
    ref = ScalarGibbsReference(3, beta, mu, radius=R)
    assert ref.cdf(0.0) > 0.05
    chains = samplers.sample(target, "emcee", 1000, n_chains=4, thin=4, warmup=400, rng=SEED, workers=1, progress=False)
    x = chains.draws[..., 0, 0]
    e = samplers.ess(x)
    assert e > 150
    mean = ref.expect(lambda v: v)
    sd = math.sqrt(ref.expect(lambda v: v * v) - mean**2)
    assert abs(x.mean() - mean) <= 4 * sd / math.sqrt(e)
    xs = thin_to_ess(x, ess_value=e)
    assert stats.kstest(xs, ref.cdf).pvalue > 0.01
    wrong = ScalarGibbsReference(1, beta, mu, radius=R)
    assert stats.kstest(xs, wrong.cdf).pvalue < 0.01
    assert np.all(chains.step_size == 2.0)
    assert np.all(chains.n_evaluations == 16 * (400 + 1000 * 4) + 1)


def test_emcee_is_reproducible_and_ignores_global_state(scalar_task):
    target = samplers.GibbsTarget(scalar_task, 2, 1, 2.0, samplers.FrobeniusBall(3.0))
    a = samplers.sample(target, "emcee", 5, n_chains=2, warmup=3, rng=7, workers=1, progress=False)
    np.random.seed(123)
    state = np.random.get_state()
    b = samplers.sample(target, "emcee", 5, n_chains=2, warmup=3, rng=7, workers=1, progress=False, batch_size=2)
    assert np.array_equal(a.draws, b.draws)
    # the global legacy state was neither used nor advanced
    assert np.array_equal(np.random.get_state()[1], state[1])
    c = samplers.sample(target, "emcee", 5, n_chains=2, warmup=3, rng=8, workers=1, progress=False)
    assert not np.array_equal(a.draws, c.draws)


def test_emcee_walker_count_validated(scalar_task):
    target = samplers.GibbsTarget(scalar_task, 2, 1, 2.0, samplers.FrobeniusBall(3.0))
    with pytest.raises(InvalidArgumentError, match=r"n_walkers=5; expected an even number >= 2\*ndim = 6 for ndim=3"):
        samplers.sample(target, "emcee", 5, n_walkers=5, progress=False)
