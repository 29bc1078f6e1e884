"""The vectorized grid hyperbola laws agree with the samplers' quadrature references (MATH.md §5.2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from analysis.references import GridHyperbolaReference
from dlnvolume.errors import InvalidArgumentError

samplers_reference = pytest.importorskip("samplers.reference")


@pytest.mark.parametrize("depth,measure", [(2, "solution_set"), (5, "gibbs_limit"), (math.inf, "solution_set")])
def test_grid_reference_matches_quadrature(depth, measure):
    g = GridHyperbolaReference(depth, measure, radius=3.0)
    H = samplers_reference.HyperbolaReference(depth, measure=measure, radius=3.0)
    a = np.array([-2.5, -1.0, -0.5, 0.4, 0.9, 1.0, 1.7, 2.6, 5.0])
    np.testing.assert_allclose(g.pdf(a), H.pdf(a), atol=1e-6)
    np.testing.assert_allclose(g.cdf(a), H.cdf(a), atol=1e-6)
    v = np.linspace(g.log_rho.min() - 0.1, g.log_rho.max() + 0.1, 7)
    np.testing.assert_allclose(g.log_volume_cdf(v), H.log_volume_cdf(v), atol=1e-6)


def test_grid_reference_sampling_and_symmetry():
    g = GridHyperbolaReference(5, "solution_set", radius=3.0)
    a = g.sample(4000, rng=3)
    assert stats.kstest(a, g.cdf).pvalue > 1e-3
    assert g.cdf(0.0) == pytest.approx(0.5, abs=1e-12)
    x = np.array([0.5, 0.8, 1.3])
    np.testing.assert_allclose(g.pdf(x), g.pdf(-x), rtol=1e-12)
    # a <-> 1/a: density of a at x equals density of 1/a, i.e. pdf(1/x)/x², at x
    np.testing.assert_allclose(g.pdf(x), g.pdf(1 / x) / x**2, rtol=1e-10)
    with pytest.raises(InvalidArgumentError, match="radius=2.0"):
        GridHyperbolaReference(5, "solution_set", radius=2.0)
    with pytest.raises(InvalidArgumentError, match="measure='x'"):
        GridHyperbolaReference(5, "x", radius=3.0)
