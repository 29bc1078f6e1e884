import math

import numpy as np
import pytest

import samplers
from dlnvolume.errors import InvalidArgumentError


def test_ball_indicator_and_gradient():
    ball = samplers.FrobeniusBall(2.0)
    assert float(ball.log_density_sigma(np.array([1.0, 1.0]))) == 0.0
    assert float(ball.log_density_sigma(np.array([2.0, 0.1]))) == -math.inf
    X = np.array([[1.0, 1.0], [0.0, 1.0]])
    assert float(ball.log_density(X)) == 0.0 and np.all(ball.grad(X) == 0)
    assert ball.bounded and ball.describe() == "FrobeniusBall(radius=2.0)"


def test_gaussian_prior_matches_frobenius_norm():
    prior = samplers.GaussianPrior(1.5)
    X = np.random.default_rng(1).standard_normal((3, 2))
    assert np.isclose(prior.log_density(X), -0.5 * np.sum(X * X) / 1.5**2)
    # gradient in X through the SVD equals -X/s^2
    assert np.allclose(samplers.Confinement.grad(prior, X), -X / 1.5**2)
    assert np.allclose(prior.grad_sigma(np.array([1.0, 2.0])), -np.array([1.0, 2.0]) / 2.25)


def test_floor_uses_stratum_singular_values():
    floor = samplers.SingularValueFloor(0.5)
    X = np.diag([2.0, 0.1])
    assert float(floor.log_density(X)) == -math.inf
    assert float(floor.log_density(X, rank=1)) == 0.0
    assert floor.floor == 0.5 and not floor.bounded


def test_combine_flattens_and_describes():
    c = samplers.Confinement.combine(samplers.FrobeniusBall(3.0), [samplers.SingularValueFloor(0.1), None])
    assert isinstance(c, samplers.CombinedConfinement)
    assert c.bounded and c.floor == 0.1
    assert c.describe() == "FrobeniusBall(radius=3.0) * SingularValueFloor(minimum=0.1)"
    assert float(c.log_density_sigma(np.array([1.0, 0.05]))) == -math.inf
    assert isinstance(samplers.Confinement.combine(), samplers.NoConfinement)


@pytest.mark.parametrize(
    "factory, arg, match",
    [
        (samplers.FrobeniusBall, 0.0, r"radius=0.0 is out of range; expected a number > 0"),
        (samplers.FrobeniusBall, -1.0, r"radius=-1.0 is out of range"),
        (samplers.FrobeniusBall, math.inf, r"radius=inf is not finite"),
        (samplers.GaussianPrior, 0, r"scale=0.0 is out of range"),
        (samplers.SingularValueFloor, -0.1, r"minimum=-0.1 is out of range"),
        (samplers.FrobeniusBall, "2", r"radius='2' is not a real number"),
    ],
)
def test_bad_parameters_raise(factory, arg, match):
    with pytest.raises(InvalidArgumentError, match=match):
        factory(arg)


def test_non_confinement_in_list_raises(scalar_task):
    with pytest.raises(InvalidArgumentError, match=r"confinement contains 3.0 of type float"):
        samplers.GibbsTarget(scalar_task, 2, 1, 1.0, [samplers.FrobeniusBall(1.0), 3.0])
