"""Signed checks of a share (an arc's or a piece's mass) against an exact value, with standard errors that do not
rest on the spread of a handful of replicates (six replicates estimate a spread with 5 degrees of freedom: on the
3×3 two-arc sets they gave 0.006–0.009 where 36–48 replicates give 0.017–0.018)."""

from __future__ import annotations

import math

import numpy as np

import samplers


def draws_share_z(indicator: np.ndarray, exact: float) -> float:
    """z of the pooled share of a (chains, draws) indicator against ``exact``; standard error ``√(p(1-p)/ESS)``
    with ArviZ's bulk ESS of the indicator (between-chain differences lower it)."""
    p = float(np.mean(indicator))
    return (p - exact) / math.sqrt(max(p * (1 - p), 1e-12) / samplers.ess(np.asarray(indicator, dtype=np.float64)))


def mass_z(mass: tuple[float, float], exact: float) -> float:
    """z of ``(mean, s.e.)`` from :meth:`samplers.Chains.piece_masses` against ``exact``."""
    return (mass[0] - exact) / mass[1]
