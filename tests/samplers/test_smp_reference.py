import math

import numpy as np
import pytest
from scipy import integrate, stats

import dlnvolume as dv
from dlnvolume.errors import ImproperTargetError, InvalidArgumentError
from samplers.reference import HyperbolaReference, ScalarGibbsReference, hyperbola_matrices

SEED = 20261129
R = 4.0


@pytest.mark.parametrize("measure", ["solution_set", "gibbs_limit"])
@pytest.mark.parametrize("depth", [1, 2, 3, 10, math.inf])
def test_normalized_and_symmetric(measure, depth):
    ref = HyperbolaReference(depth, measure, radius=R)
    t = ref.t_min
    total = integrate.quad(lambda a: ref.pdf(a), t, 1 / t, epsrel=1e-10)[0]
    assert 2 * total == pytest.approx(1.0, rel=1e-7)
    assert ref.cdf(0.0) == pytest.approx(0.5)
    a = np.array([0.3, 0.7, 1.3, 2.5])
    # a ↔ -a (isometry diag(1,-1)·X·diag(1,-1)) and a ↔ 1/a (transposition): p(a) = p(1/a)/a²
    assert np.allclose(ref.pdf(-a), ref.pdf(a))
    assert np.allclose(ref.pdf(1 / a) / a**2, ref.pdf(a), rtol=1e-9)
    assert np.all(ref.pdf(np.array([0.9 * t, 1.1 / t])) == 0)


def test_solution_set_depth_1_and_2_closed_forms():
    # independent: N = 1 Euclidean arclength; N = 2 normalized multipliers σ (diag) and σ/2 (mixed)
    a = np.linspace(0.3, 3.5, 9)
    ref1 = HyperbolaReference(1, "solution_set", radius=R)
    f1 = np.sqrt(1 + 1 / a**4)
    assert np.allclose(ref1.pdf(a) / f1, ref1.pdf(a[0]) / f1[0], rtol=1e-9)
    ref2 = HyperbolaReference(2, "solution_set", radius=R)
    f2 = []
    for v in a:
        q = np.array([1.0, 1 / v]) / math.hypot(1, 1 / v)
        r = np.array([1.0, v]) / math.hypot(1, v)
        qp, rp = np.array([-q[1], q[0]]), np.array([-r[1], r[0]])
        Z = np.array([[0.0, 1.0], [-1 / v**2, 0.0]])
        s = v + 1 / v
        z11, z12, z21 = q @ Z @ r, q @ Z @ rp, qp @ Z @ r
        f2.append(math.sqrt(z11**2 / s + 2 * (z12**2 + z21**2) / s))
    f2 = np.array(f2)
    assert np.allclose(ref2.pdf(a) / f2, ref2.pdf(a[0]) / f2[0], rtol=1e-9)


def test_infinite_depth_is_the_large_depth_limit():
    a = np.array([0.3, 0.8, 1.0, 2.0, 3.5])
    for measure in ("solution_set", "gibbs_limit"):
        big = HyperbolaReference(10**6, measure, radius=R).pdf(a)
        inf = HyperbolaReference(math.inf, measure, radius=R).pdf(a)
        assert np.allclose(big, inf, rtol=1e-4)


def test_measures_differ():
    a = np.array([0.4, 1.0, 2.5])
    s = HyperbolaReference(3, "solution_set", radius=R).pdf(a)
    g = HyperbolaReference(3, "gibbs_limit", radius=R).pdf(a)
    assert not np.allclose(s / s[1], g / g[1], rtol=1e-2)


def test_sample_follows_cdf_and_log_volume_cdf():
    ref = HyperbolaReference(3, "solution_set", radius=R)
    a = ref.sample(2000, rng=SEED)
    assert stats.kstest(a, ref.cdf).pvalue > 0.01
    assert stats.kstest(a, HyperbolaReference(1, "solution_set", radius=R).cdf).pvalue < 0.01
    logv = dv.DLNMetric(3).log_volume_density(hyperbola_matrices(a), rank=1)
    assert stats.kstest(logv, ref.log_volume_cdf).pvalue > 0.01
    assert ref.matrices(a[:3]).shape == (3, 2, 2)
    assert ref.log_volume_cdf(np.array([-1e9, 1e9])).tolist() == [0.0, 1.0]


def test_hyperbola_reference_errors():
    with pytest.raises(InvalidArgumentError, match=r"radius=2.0; expected a number > 2"):
        HyperbolaReference(3, radius=2.0)
    with pytest.raises(InvalidArgumentError, match=r"measure='volume'; expected 'solution_set' or 'gibbs_limit'"):
        HyperbolaReference(3, "volume", radius=R)


def test_scalar_reference_against_independent_integrals():
    # N = 1: truncated normal
    ref = ScalarGibbsReference(1, 4.0, 1.0, radius=2.0)
    tn = stats.truncnorm(-3.0 * 2, 1.0 * 2, loc=1.0, scale=0.5)
    x = np.array([-1.0, 0.0, 0.5, 1.2, 1.9])
    assert np.allclose(ref.cdf(x), tn.cdf(x), atol=1e-9)
    # N = 3 with a floor: dense trapezoid on each side
    ref = ScalarGibbsReference(3, 2.0, 0.5, radius=3.0, floor=0.1)
    xs = np.linspace(0.1, 3.0, 200001)
    f = lambda v: np.exp(-(v - 0.5) ** 2) * np.abs(v) ** (-2 / 3)
    Z = np.trapezoid(f(xs), xs) + np.trapezoid(f(-xs), xs)
    assert ref.cdf(np.array([-0.1]))[0] == pytest.approx(np.trapezoid(f(-xs), xs) / Z, rel=1e-6)
    assert ref.expect(lambda v: v) == pytest.approx((np.trapezoid(xs * f(xs), xs) - np.trapezoid(xs * f(-xs), xs)) / Z, rel=1e-6)


def test_scalar_reference_errors():
    with pytest.raises(ImproperTargetError, match=r"depth inf: \|x\|\^-1 is not integrable at 0; give floor > 0"):
        ScalarGibbsReference(math.inf, 1.0, 1.0, radius=2.0)
    with pytest.raises(ImproperTargetError, match=r"beta=0 without radius or prior_scale"):
        ScalarGibbsReference(3, 0.0, 1.0)
