"""The reference of the built-in ``cmv-3x3-diagonal`` against exact quadrature, at the built-in's own window
and depths (the sampler's tests, tests/samplers/test_smp_exact_references.py, use radius 12 and N = 1, 3, 10, ∞).

Independent reference: :class:`Diagonal3x3Rank1` (tests/samplers/exact_solution_sets.py) integrates
``√det G(t)`` over an explicit parametrization of ``S ∩ M_1`` and never calls :mod:`samplers`.
"""

from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import samplers
from analysis.experiment import load_config
from analysis.runner import prepare, registry_method
from samplers import registry
from samplers.diagnostics import ConvergenceWarning, thin_to_ess

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "samplers"))
from exact_solution_sets import Diagonal3x3Rank1  # noqa: E402

SEED = 20261130


def _builtin():
    cfg, task = prepare(load_config("cmv-3x3-diagonal")[0])
    (ref,) = cfg.references
    return cfg, task, ref


def test_builtin_is_the_exactly_known_task():
    cfg, task, ref = _builtin()
    np.testing.assert_array_equal(task.mask, np.eye(3, dtype=bool))
    np.testing.assert_array_equal(task.values[task.mask], np.ones(3))
    assert ref.measure == "solution_set" and ref.rank == 1 and ref.radius == pytest.approx(4.5)
    assert set(cfg.quick_version().depths) <= set(cfg.depths) == {2, 3, 5}


@pytest.mark.parametrize("depth", [2, pytest.param(3, marks=pytest.mark.slow), pytest.param(5, marks=pytest.mark.slow)])
def test_builtin_reference_matches_exact_quadrature(depth):
    cfg, task, ref = _builtin()
    spec = registry.get(registry_method(ref.measure, ref.method))
    sampler = samplers.SolutionSetSampler(task, depth, 1, window=samplers.FrobeniusBall(ref.radius))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        ch = spec.run(sampler, 300, n_chains=6, rng=SEED, workers=1, progress=False)
    exact = Diagonal3x3Rank1(depth, ref.radius)
    X = ch.draws * np.sign(ch.draws[..., :1, :1])
    for x in (X[..., 0, 1], X[..., 0, 2]):
        e = samplers.ess(x)
        assert e >= 400
        thin = thin_to_ess(x, ess_value=e)
        assert stats.kstest(thin, exact.x12_cdf).pvalue > 0.01
    absx = np.abs(X[..., 0, 1])
    tol = 4 * float(np.std(absx)) / math.sqrt(samplers.ess(absx))
    assert abs(float(np.mean(absx)) - exact.mean_abs_x12()) <= tol
    # negative controls at the same sample size: a wider window, and unequal component masses, are rejected
    # (at radius 4.5 the laws of different depths differ by a KS distance <= 0.014: depth is not a usable control)
    thin = thin_to_ess(X[..., 0, 1], ess_value=samplers.ess(X[..., 0, 1]))
    assert stats.kstest(thin, Diagonal3x3Rank1(depth, 6.0).x12_cdf).pvalue < 0.01
    assert abs(float(np.mean(absx)) - Diagonal3x3Rank1(depth, 6.0).mean_abs_x12()) > tol
    F0 = float(exact.x12_cdf(np.array([0.0]))[0])
    wrong = lambda x: np.where(x < 0, exact.x12_cdf(x) * 0.4 / F0, 0.4 + (exact.x12_cdf(x) - F0) * 0.6 / (1 - F0))  # noqa: E731
    assert stats.kstest(thin, wrong).pvalue < 0.01
    masses = ch.piece_masses()
    assert len(masses) == 4 and all(abs(m - 0.25) <= 4 * se for m, se in masses.values())
