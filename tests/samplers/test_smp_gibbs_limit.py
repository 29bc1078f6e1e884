"""π_β on M_1 of the 2×2 diagonal task approaches the Gibbs-limit reference as β → ∞.

Deterministic check of GibbsTarget's density (chart density, Jacobian, Gaussian polar trick) against
the independently derived Laplace limit of samplers.reference: the exact law of ``a = X12/X11``
under π_β is computed by quadrature of the target density in the coordinates ``(u, φ, ψ)``
(``A = (cos φ, sin φ)``, ``B = (cos ψ, sin ψ)``, ``a = tan ψ``), where the radial parts of ``A`` and
``B`` integrate out to a constant.
"""

import math

import numpy as np
import pytest
from scipy.integrate import cumulative_trapezoid

import dlnvolume as dv
import samplers
from samplers.reference import HyperbolaReference

R = 4.0


def _law_of_a(target, grid, beta):
    x, w = np.polynomial.legendre.leggauss(32)
    L = 9.0 / math.sqrt(beta)  # ±9 standard deviations of (X11 - 1, X22 - 1)
    Y1, Y2 = np.meshgrid(L * x, L * x, indexing="ij")
    W = np.outer(w, w) * L * L
    dens = []
    for a in grid:
        u0, phi0, psi = math.log(a + 1 / a), math.atan(1 / a), math.atan(a)
        J = np.array([[1.0, -1.0 / a], [1.0, a]])  # d(X11, X22)/d(u, φ) on the curve
        Ji = np.linalg.inv(J)
        u = u0 + Ji[0, 0] * Y1 + Ji[0, 1] * Y2
        ph = phi0 + Ji[1, 0] * Y1 + Ji[1, 1] * Y2
        theta = np.stack([u, np.cos(ph), np.sin(ph), np.full_like(u, math.cos(psi)), np.full_like(u, math.sin(psi))], -1)
        lp = target.log_density(theta.reshape(-1, 5)).reshape(u.shape)
        dens.append(np.sum(W * np.exp(lp)) / abs(np.linalg.det(J)) / (1 + a * a))
    dens = np.array(dens)
    F = cumulative_trapezoid(dens * grid, np.log(grid), initial=0.0)
    return F / F[-1]


@pytest.mark.parametrize("depth", [3, math.inf])
def test_gibbs_target_approaches_gibbs_limit(depth):
    t = (R - math.sqrt(R * R - 4)) / 2
    grid = np.exp(np.linspace(math.log(t), -math.log(t), 121))
    conf = [samplers.FrobeniusBall(R)] + ([samplers.SingularValueFloor(0.5)] if math.isinf(depth) else [])
    limit = HyperbolaReference(depth, "gibbs_limit", radius=R).abs_cdf(grid)
    volume = HyperbolaReference(depth, "solution_set", radius=R).abs_cdf(grid)
    dist = {}
    for beta in (1e2, 1e4):
        target = samplers.GibbsTarget(dv.tasks.diagonal_2x2(), depth, 1, beta, conf)
        F = _law_of_a(target, grid, beta)
        dist[beta] = float(np.max(np.abs(F - limit)))
        # negative control: the solution-set volume is a different law
        assert np.max(np.abs(F - volume)) > 0.02
    assert dist[1e4] < 0.003
    assert dist[1e4] < dist[1e2] / 3
