"""The compiled Newton projection onto S ∩ M_r (samplers/_projection.py, docs/samplers.md §1) against the
definition of its answer and against MINPACK's Levenberg–Marquardt on the full constraint system.

A point ``Y`` answers the projection of ``Z`` along the normal space of ``𝓜`` at ``X`` when it matches the
observations, has rank ``r``, and ``Y − Z`` has no component in ``T_X 𝓜``. The tasks cover square and rectangular
shapes, ranks 1–3, and dependent observations (10×10 rank 1 with 15 entries: 14 independent constraints on
``T M_r``, so Newton takes least-squares steps).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize

import dlnvolume as dv
import samplers

CASES = [(8, 8, 2, 24), (10, 10, 1, 15), (6, 4, 2, 10), (5, 5, 3, 14), (4, 7, 1, 6)]


def _setup(m, n, r, k, step, P=40):
    task = dv.tasks.random_low_rank(m, n, r, k, rng=1)
    s = samplers.SolutionSetSampler(task, 5.0, r, window=samplers.FrobeniusBall(1e3))
    X0, _ = s.find_starts(4, rng=np.random.default_rng(0))
    B = s._batch_geometry(np.repeat(X0, P // 4, axis=0))
    rng = np.random.default_rng(1)
    Z = B.X + step * np.einsum("pk,pkij->pij", rng.standard_normal((P, B.T.shape[1])), B.T)
    return task, s, B, Z


def _lm(s, B, Z, p):
    """The root of the full system q(Z + Σ c_k Nb_k) = 0 nearest c = 0 by MINPACK LM (frame Schur complement)."""
    Nb = s.normal_basis(B.take(np.array([p])))[0]
    U, V, r, task = B.U[p], B.V[p], s.rank, s.task

    def q(c):
        Y = Z[p] + np.einsum("k,kij->ij", c, Nb)
        Yh = U.T @ Y @ V
        schur = Yh[r:, r:] - Yh[r:, :r] @ np.linalg.solve(Yh[:r, :r], Yh[:r, r:])
        return np.concatenate([(Y - task.values)[task.mask], schur.ravel()])

    sol = optimize.least_squares(q, np.zeros(Nb.shape[0]), method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15)
    Y = Z[p] + np.einsum("k,kij->ij", sol.x, Nb)
    return Y, bool(np.max(np.abs(q(sol.x))) < 1e-9 * (1 + np.linalg.norm(Z[p])))


@pytest.mark.parametrize("m,n,r,k", CASES)
@pytest.mark.parametrize("step", [0.3, 1.0])
def test_projection_answers_its_definition_and_matches_levenberg_marquardt(m, n, r, k, step):
    task, s, B, Z = _setup(m, n, r, k, step)
    Y, ok = s._batch_project(Z, B.U, B.V, B.Hc, B.ok)
    assert ok.mean() >= 0.9, ok.mean()
    scale = 1 + np.linalg.norm(Z.reshape(len(Z), -1), axis=1)
    obs = np.max(np.abs(Y[:, task.mask] - task.values[task.mask]), axis=1)
    sv = np.linalg.svd(Y, compute_uv=False)
    tangent = np.linalg.norm(np.einsum("pkij,pij->pk", B.T, Y - Z), axis=1)
    assert np.all(obs[ok] <= 1e-10 * scale[ok])
    assert np.all(sv[ok, r] <= 1e-9 * sv[ok, 0])  # rank r
    assert np.all(tangent[ok] <= 1e-9 * scale[ok])  # moved along the normal space only
    assert np.array_equal(Y[~ok], Z[~ok])  # a failed projection leaves its point alone
    same = both = 0
    for p in np.flatnonzero(ok):
        Y_lm, ok_lm = _lm(s, B, Z, p)
        if ok_lm:
            both += 1
            same += np.max(np.abs(Y_lm - Y[p])) <= 1e-7 * scale[p]
    assert both >= 0.8 * ok.sum() and same >= 0.95 * both, (same, both)


def test_projection_is_deterministic_and_fails_cleanly_far_away():
    task, s, B, Z = _setup(8, 8, 2, 24, 1.0)
    Y1, ok1 = s._batch_project(Z, B.U, B.V, B.Hc, B.ok)
    Y2, ok2 = s._batch_project(Z.copy(), B.U.copy(), B.V.copy(), B.Hc.copy(), B.ok.copy())
    assert np.array_equal(Y1, Y2) and np.array_equal(ok1, ok2)  # the walk's reverse check relies on it
    far = B.X + 1e4 * np.einsum("pk,pkij->pij", np.ones((len(Z), B.T.shape[1])), B.T)
    far[0, 0, 0] = np.nan
    Yf, okf = s._batch_project(far, B.U, B.V, B.Hc, B.ok)
    assert not okf[0] and np.all(np.isfinite(Yf[okf])) and okf.mean() < 0.5
    inactive = np.zeros(len(Z), dtype=bool)
    assert not s._batch_project(Z, B.U, B.V, B.Hc, inactive)[1].any()
