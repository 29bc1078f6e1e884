"""Property-based bad-input tests of :mod:`dlnvolume.flows` and :mod:`dlnvolume.tasks` (issue 7, "Bad input").

Contract (common brief rule 5): for any input, an entry point either raises a
:class:`dlnvolume.errors.DLNVolumeError` (a ``ValueError``) or returns a result with no NaN in any
returned number. Inputs: arbitrary shapes, NaN/inf, entries of size 1e-300 and 1e+300, zero matrices,
repeated singular values, depth 0 / negative / fractional / huge, bools and strings where numbers are
expected. Flows are kept tiny (1×1..3×3, ``max_steps <= 50``) so 500 examples per entry point are fast.

Documented non-finite values that are allowed: ``Trajectory.crossing_times`` is ``inf`` for a singular
value that never crosses the threshold; ``Endpoints.min_sigma_ratio`` is NaN for ``method="factor"``
(documented sentinel: factor descent does not track it). Everything else must be NaN-free.

The plain regression tests at the end pin the bugs these properties found.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlnvolume import CompletionTask, flows, tasks
from dlnvolume.errors import DLNVolumeError, InvalidArgumentError, InvalidDepthError, NonFiniteError, ShapeError

PROPS = settings(max_examples=500, deadline=None, derandomize=True, database=None)

SPECIAL = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-300, -1e-300, 1e300, -1e300, 5e-324, 1.0, -1.0, 2.0]
FINITE_SPECIAL = [0.0, -0.0, 1e-300, -1e-300, 1e300, -1e300, 5e-324, 1.0, -1.0, 2.0, 0.5, 1e-3]
entries = st.one_of(
    st.sampled_from(SPECIAL),
    st.sampled_from(FINITE_SPECIAL),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.floats(min_value=-3.0, max_value=3.0),
)
finite_entries = st.one_of(st.sampled_from(FINITE_SPECIAL), st.floats(min_value=-3.0, max_value=3.0),
                           st.floats(allow_nan=False, allow_infinity=False, width=64))
small_finite = st.one_of(st.sampled_from([0.0, 1e-3, -1e-3, 1e-300, 0.01]), st.floats(min_value=-0.1, max_value=0.1))

valid_depths = st.one_of(st.integers(1, 5), st.sampled_from([math.inf, 10**6, np.int64(3), 2.0]))
depths = st.one_of(valid_depths, valid_depths, valid_depths,
                   st.sampled_from([0, -1, 2.5, math.nan, -math.inf, True, "2", None, 1e300, 10**400]))
# positive reals, including the edge cases of every check_positive argument
pos_reals = st.one_of(st.sampled_from([1e-300, 5e-324, 1e300, 1e-6, 1e-3, 0.1, 1.0, 10.0]),
                      st.floats(min_value=1e-8, max_value=1e3))
bad_reals = st.sampled_from([0.0, -1.0, math.nan, math.inf, -math.inf, "1", None, True])
maybe_bad_pos = st.one_of(pos_reals, pos_reals, pos_reals, bad_reals)
rngs = st.one_of(st.integers(0, 2**32), st.sampled_from([None, -1, "x", 1.5, np.random.default_rng(0)]))


@st.composite
def matrix_of(draw, m: int, n: int, elements=entries, batch: bool = True) -> np.ndarray:
    """(m, n) or (B, m, n) float arrays with few distinct values (many repeated singular values)."""
    lead = draw(st.sampled_from([(), (1,), (2,)])) if batch else ()
    size = int(np.prod(lead + (m, n)))
    pool = draw(st.lists(elements, min_size=1, max_size=3))
    vals = draw(st.lists(st.one_of(st.sampled_from(pool), elements), min_size=size, max_size=size))
    return np.array(vals, dtype=float).reshape(lead + (m, n))


def _fixed_tasks() -> list[CompletionTask]:
    full3 = CompletionTask(np.diag([3.0, 2.0, 1.0]), np.ones((3, 3), dtype=bool), name="full3")
    rect = CompletionTask(np.ones((2, 3)), np.array([[True, False, True], [False, True, False]]), name="rect")
    tall = CompletionTask(np.array([[1.0], [0.0], [2.0]]), np.array([[True], [False], [True]]), name="tall")
    scalar = CompletionTask(np.array([[1.0]]), np.array([[True]]), name="scalar")
    return [tasks.diagonal_2x2(), tasks.razin_cohen_2x2(), full3, rect, tall, scalar]


TASKS = _fixed_tasks()


@st.composite
def fuzzed_tasks(draw) -> CompletionTask:
    """Mostly the fixed tasks; sometimes a task built from fuzzed values/masks (may raise a package error)."""
    if draw(st.integers(0, 4)) > 0:
        return draw(st.sampled_from(TASKS))
    m, n = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    mask = np.array(draw(st.lists(st.booleans(), min_size=m * n, max_size=m * n))).reshape(m, n)
    values = draw(matrix_of(m, n, batch=False))
    return CompletionTask(values, mask, name="fuzzed")


def _assert_no_nan(name: str, value) -> None:
    arr = np.asarray(value)
    if arr.dtype.kind in "fc":
        assert not np.any(np.isnan(arr)), (name, arr)


def _check_trajectory(tr: flows.Trajectory, B: int, k: int) -> None:
    for name in ("times", "loss", "sigma", "crossing_times", "n_logged"):
        _assert_no_nan(f"trajectory.{name}", getattr(tr, name))
    assert tr.times.shape[0] == B and tr.loss.shape == tr.times.shape
    assert tr.sigma.shape == tr.times.shape + (k,)
    assert tr.crossing_times.shape == (B, k)
    assert np.all(tr.crossing_times >= 0)
    assert np.all(np.isfinite(tr.times)) and np.all(np.isfinite(tr.sigma))


def _check_flow_result(res: flows.FlowResult, task: CompletionTask, B: int | None = None) -> None:
    m, n = task.shape
    B = res.X.shape[0] if B is None else B
    assert res.X.shape == (B, m, n)
    for name in ("X", "loss", "t", "n_steps", "balancedness_drift", "X0", "n_rejected", "min_sigma_ratio"):
        _assert_no_nan(name, getattr(res, name))
        if getattr(res, name) is not None:
            assert np.shape(getattr(res, name))[0] == B, name
    for W in (res.factors or ()) + (res.factors0 or ()):
        _assert_no_nan("factor", W)
    assert np.all(np.isfinite(res.X)), "X is the last finite state for every status"
    assert set(res.status.tolist()) <= set(flows.STATUSES)
    assert np.all(res.loss >= 0) and np.all(res.t >= 0) and np.all(res.n_steps >= 0)
    _check_trajectory(res.trajectory, B, min(m, n))


# ------------------------------------------------------------------------------------------------
# end_to_end
# ------------------------------------------------------------------------------------------------
def _bad_if(flag: bool):
    """``bad(values)``: a strategy of the bad ``values`` when ``flag``, else one that draws nothing."""
    return lambda values: st.sampled_from(values) if flag else st.nothing()


@st.composite
def x0_for(draw, task: CompletionTask) -> np.ndarray:
    m, n = task.shape
    kind = draw(st.integers(0, 9))
    if kind == 0:  # wrong shape
        return draw(matrix_of(draw(st.integers(1, 3)), draw(st.integers(1, 4))))
    if kind == 1:
        return draw(st.sampled_from([np.zeros((m, n)), np.zeros((0, m, n)), np.zeros((1, 1, m, n)), np.ones(m),
                                     np.full((m, n), 1e-300), np.full((m, n), 1e300), 1e-3 * np.eye(m, n),
                                     [["a"] * n] * m]))
    if kind <= 4:
        return draw(matrix_of(m, n))
    return draw(matrix_of(m, n, elements=small_finite))


@PROPS
@given(data=st.data())
def test_property_end_to_end(data):
    try:
        task = data.draw(fuzzed_tasks())
    except DLNVolumeError:
        return
    # half of the examples draw only valid arguments, so the integrator itself is fuzzed, not just the checks
    clean = data.draw(st.booleans())
    bad = _bad_if(not clean)
    depth = data.draw(valid_depths if clean else depths)
    X0 = data.draw(x0_for(task))
    pos = pos_reals if clean else maybe_bad_pos
    kw = data.draw(st.fixed_dictionaries({}, optional={
        "normalized": st.one_of(st.booleans(), bad([1, "yes", None])),
        "t_max": st.one_of(pos, st.just(math.inf)),
        "loss_tol": st.one_of(st.none(), st.just(0.0), pos),
        # rtol below ~1e-12 rejects every step until the step size underflows (~1000 rejections, each 7
        # SVDs): exercised with the bad values, kept out of the valid half to stay within the time budget
        "rtol": st.floats(1e-10, 1.0) if clean else maybe_bad_pos,
        "atol": st.one_of(st.just(0.0), pos),
        "log_every": st.one_of(st.none(), st.integers(1, 60), bad([-1, 0, 2.5, "1", True])),
        "threshold": st.one_of(st.just(0.0), pos),
        "first_step": st.one_of(st.none(), pos),
        "n_log": st.one_of(st.integers(3, 8), bad([-1, 2, 2.5, None, "5"])),
        "spectral_control": st.one_of(st.booleans(), bad([0, "no"])),
    }))
    max_steps = data.draw(st.one_of(st.integers(1, 20), bad([0, -3, 2.5, None, "10"])))
    try:
        res = flows.end_to_end(task, depth, X0, max_steps=max_steps, **kw)
    except DLNVolumeError:
        return
    _check_flow_result(res, task)
    assert res.method == "end_to_end" and res.n_steps.max() <= max_steps


# ------------------------------------------------------------------------------------------------
# factor_descent
# ------------------------------------------------------------------------------------------------
@PROPS
@given(data=st.data())
def test_property_factor_descent(data):
    try:
        task = data.draw(fuzzed_tasks())
    except DLNVolumeError:
        return
    m, n = task.shape
    clean = data.draw(st.booleans())  # half of the examples: valid arguments only
    bad = _bad_if(not clean)
    pos = pos_reals if clean else maybe_bad_pos
    depth = data.draw(st.one_of(st.integers(1, 4), st.integers(1, 4), bad([0, -2, 2.5, math.inf, True, "3", None,
                                                                          math.nan])))
    kw = data.draw(st.fixed_dictionaries({}, optional={
        "n_runs": st.one_of(st.integers(1, 3), bad([0, -1, 1.5, True])),
        "init": st.one_of(st.sampled_from(["gaussian", "orthogonal"]), bad(["balanced", "bogus", None, 3])),
        "init_scale": pos,
        "widths": st.one_of(st.none(), bad(["ab", 3, [2.5], [-1], [0, 1, 2, 3]])),
        "lr": pos,
        "loss_tol": st.one_of(st.none(), st.just(0.0), pos),
        "t_max": st.one_of(pos, st.just(math.inf), st.just(1e308)),
        "log_every": st.one_of(st.none(), st.integers(1, 60), bad([-1, 0])),
        "threshold": st.one_of(st.just(0.0), pos),
        "n_log": st.one_of(st.integers(3, 8), bad([-1, 2, 2.5, "5"])),
        "rng": st.one_of(st.integers(0, 2**32), bad([None, -1, "x", 1.5])),
    }))
    if data.draw(st.integers(0, 3)) == 0:
        kw["X0"] = data.draw(x0_for(task))
        if clean:
            kw["init"] = "balanced"
    if data.draw(st.integers(0, 5)) == 0:
        N = depth if isinstance(depth, int) and not isinstance(depth, bool) and 1 <= depth <= 4 else 2
        d = max(m, n)
        dims = [n] + [d] * (N - 1) + [m]
        kw["initial_factors"] = [data.draw(matrix_of(dims[p + 1], dims[p])) for p in range(N)]
        if data.draw(st.booleans()):
            kw["initial_factors"] = data.draw(st.sampled_from([[], "ab", 3, [np.ones(2)] * N,
                                                               kw["initial_factors"][:-1]]))
    max_steps = data.draw(st.one_of(st.integers(1, 20), bad([0, -3, 2.5, None])))
    try:
        res = flows.factor_descent(task, depth, max_steps=max_steps, **kw)
    except DLNVolumeError:
        return
    _check_flow_result(res, task)
    assert res.method == "factor" and res.n_steps.max() <= max_steps
    assert len(res.factors) == len(res.factors0) == res.depth


# ------------------------------------------------------------------------------------------------
# endpoints
# ------------------------------------------------------------------------------------------------
@PROPS
@given(data=st.data())
def test_property_endpoints(data):
    task = data.draw(st.sampled_from(TASKS))
    method = data.draw(st.sampled_from(["end_to_end", "end_to_end", "factor", "factor", "bogus", None]))
    depth = data.draw(st.one_of(st.integers(1, 4), st.sampled_from([math.inf, 0, 2.5, "2", True])))
    n_runs = data.draw(st.one_of(st.integers(1, 3), st.sampled_from([0, -1, 1.5, None, True])))
    init_scale = data.draw(maybe_bad_pos)
    kw = data.draw(st.fixed_dictionaries({}, optional={
        "rng": rngs,
        "batch_size": st.one_of(st.none(), st.integers(-1, 4), st.sampled_from([1.5, "2"])),
        "init_depth": st.one_of(st.none(), st.integers(-1, 4), st.sampled_from([1.5, math.inf])),
        "widths": st.one_of(st.none(), st.lists(st.integers(-1, 3), max_size=3)),
        "progress": st.sampled_from([False, False, "yes", None]),
        "executor": st.sampled_from([None, None, 3, "pool"]),
    }))
    flow_kw = data.draw(st.fixed_dictionaries({}, optional={
        "normalized": st.one_of(st.booleans(), st.just("no")),
        "t_max": st.one_of(maybe_bad_pos, st.just(math.inf)),
        "loss_tol": st.one_of(st.none(), maybe_bad_pos),
        "threshold": st.one_of(st.just(0.0), maybe_bad_pos),
        "lr": maybe_bad_pos,
        "init": st.sampled_from(["gaussian", "balanced", "orthogonal", "bogus"]),
        "bogus_option": st.just(1),
        "X0": st.just(np.eye(2)),
    }))
    max_steps = data.draw(st.integers(1, 15))
    try:
        ep = flows.endpoints(task, depth, n_runs, init_scale, method=method, workers=1,
                             max_steps=max_steps, **{"progress": False, **kw}, **flow_kw)
    except DLNVolumeError:
        return
    m, n = task.shape
    R = ep.n_runs
    assert R == n_runs and ep.X.shape == ep.X0.shape == (R, m, n)
    for name in ("X", "X0", "loss", "t", "n_steps", "crossing_times"):
        _assert_no_nan(name, getattr(ep, name))
        assert np.shape(getattr(ep, name))[0] == R
    if ep.method == "end_to_end":
        _assert_no_nan("min_sigma_ratio", ep.min_sigma_ratio)
    else:  # documented sentinel (Endpoints docstring): NaN for every factor run
        assert np.all(np.isnan(ep.min_sigma_ratio))
    assert np.all(np.isfinite(ep.X)) and ep.seeds.dtype == np.uint64 and ep.seeds.shape == (R,)
    assert set(ep.status.tolist()) <= set(flows.STATUSES)
    assert not math.isnan(ep.init_scale) and not math.isnan(ep.threshold)


# ------------------------------------------------------------------------------------------------
# tasks constructors
# ------------------------------------------------------------------------------------------------
@PROPS
@given(m=st.one_of(st.integers(-1, 4), st.sampled_from([2.5, "3", None, True, 3.0])),
       n=st.one_of(st.integers(-1, 4), st.sampled_from([2.5, "3", None, False])),
       rank=st.one_of(st.integers(-1, 5), st.sampled_from([1.5, True, None, "1"])),
       n_observed=st.one_of(st.integers(-1, 17), st.sampled_from([1.5, True, None, math.nan])),
       rng=rngs)
def test_property_random_low_rank(m, n, rank, n_observed, rng):
    try:
        task = tasks.random_low_rank(m, n, rank, n_observed, rng=rng)
    except DLNVolumeError:
        return
    assert task.shape == (int(m), int(n)) and task.n_observed == int(n_observed)
    for arr in (task.values, task.ground_truth):
        assert np.all(np.isfinite(arr))
    assert np.linalg.matrix_rank(task.ground_truth) == int(rank)
    assert task.ground_truth is not None
    np.testing.assert_allclose(np.linalg.norm(task.ground_truth), math.sqrt(int(m) * int(n)), rtol=1e-12)


def test_fixed_tasks_are_valid():
    for task in (tasks.diagonal_2x2(), tasks.razin_cohen_2x2()):
        assert task.n_observed >= 1 and np.all(np.isfinite(task.values))
        assert not np.any(np.isnan(task.loss(np.zeros(task.shape))))


# ------------------------------------------------------------------------------------------------
# regression tests for the bugs the properties found
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("X0", [np.zeros((2, 2)), np.full((2, 2), 1e-300)])
@pytest.mark.parametrize("depth", [2, 3, math.inf])
def test_end_to_end_stationary_start_terminates(X0, depth):
    """The field vanishes (exactly, or by underflow for N >= 3) at X0 = 0 / entries 1e-300: the initial
    step was ``t_max / 0 = inf``, every trial state ``X0 + inf·0`` was NaN and the integrator looped
    forever. Now the run ends at its step limit; X0 = 0 is a stationary point (N >= 2) and stays put."""
    res = flows.end_to_end(tasks.diagonal_2x2(), depth, X0, max_steps=200)  # (a regression hangs here)
    assert res.status[0] in ("max_steps", "max_time") and res.n_steps[0] <= 200
    if not X0.any():
        np.testing.assert_array_equal(res.X[0], X0)
    assert np.all(np.isfinite(res.X)) and np.isfinite(res.t[0]) and not np.isnan(res.loss[0])


def test_end_to_end_huge_observed_value_terminates():
    """An observed value 1e300 made ‖F‖_F overflow (sum of squares) although F is finite; the step
    checks ``h·‖F‖ <= eps·‖Y‖`` were never true and the step loop never ended."""
    task = CompletionTask(np.array([[0.0, 1e300, 0.0], [0.0, 0.0, 0.0]]),
                          np.array([[False, True, False], [False, False, False]]))
    res = flows.end_to_end(task, 1, np.zeros((2, 3)), max_steps=5)  # (a regression hangs here)
    assert res.status[0] in flows.STATUSES and np.all(np.isfinite(res.X)) and not np.isnan(res.loss[0])


def test_factor_descent_nonfinite_start():
    """init_scale=1e300: the loss at step 0 overflows; the loss of the returned state was NaN (it is inf).
    Factors whose product overflows have no finite state to return: refused."""
    res = flows.factor_descent(tasks.diagonal_2x2(), 1, init_scale=1e300, max_steps=5, rng=0)
    assert res.status.tolist() == ["nonfinite"] and res.loss[0] == math.inf and np.all(np.isfinite(res.X))
    with pytest.raises(NonFiniteError, match=r"initial_factors: the initial product W_N⋯W_1 overflows float64"):
        flows.factor_descent(tasks.diagonal_2x2(), 2, initial_factors=[np.full((2, 2), 1e300)] * 2, max_steps=5)


def test_huge_depth_refused():
    """depth=10**400 passed check_depth and raised OverflowError (int too large to convert to float)."""
    with pytest.raises(InvalidDepthError, match=r"depth=1000.* does not fit in a float64"):
        flows.end_to_end(tasks.diagonal_2x2(), 10**400, 0.1 * np.eye(2), max_steps=5)


def test_factor_descent_huge_t_max_small_lr():
    """``t_max / lr`` overflowed to inf and ``math.ceil(inf)`` raised OverflowError."""
    res = flows.factor_descent(tasks.diagonal_2x2(), 2, lr=1e-10, t_max=1e308, max_steps=3, rng=0)
    assert res.status.tolist() == ["max_steps"] and res.n_steps[0] == 3


@pytest.mark.parametrize("method,key", [("end_to_end", "bogus"), ("end_to_end", "lr"), ("end_to_end", "init"),
                                        ("factor", "normalized"), ("factor", "rtol")])
def test_endpoints_unknown_flow_kwargs(method, key):
    """A flow option the chosen method does not have raised TypeError from inside the batch worker."""
    with pytest.raises(InvalidArgumentError, match=rf"flow_kwargs key '{key}' is not an option of "):
        flows.endpoints(tasks.diagonal_2x2(), 2, 2, 1e-3, method=method, workers=1, progress=False,
                        max_steps=5, **{key: 1})


def test_endpoints_bad_executor_and_progress():
    """executor=3 raised AttributeError ('int' object has no attribute 'submit'); progress was unchecked."""
    with pytest.raises(InvalidArgumentError, match=r"executor=3 has type int; expected None or a concurrent"):
        flows.endpoints(tasks.diagonal_2x2(), 2, 2, 1e-3, executor=3, progress=False, max_steps=5)
    with pytest.raises(InvalidArgumentError, match=r"progress='yes'; expected True or False"):
        flows.endpoints(tasks.diagonal_2x2(), 2, 2, 1e-3, workers=1, progress="yes", max_steps=5)


def test_end_to_end_X0_shape_errors_name_X0():
    with pytest.raises(ShapeError, match=r"\bX0 has shape \(0, 2, 2\)"):
        flows.end_to_end(tasks.diagonal_2x2(), 2, np.zeros((0, 2, 2)))


def test_x0_with_overflowing_singular_values_is_refused():
    """Found by the property test in a fresh CI venv: X0 = 8.988e307·ones(2, 2) has σ₁ = 1.798e308 (float64's
    max); its recorded spectrum overflowed to inf. Such X0 are refused with a clear NonFiniteError."""
    task = tasks.diagonal_2x2()
    with pytest.raises(NonFiniteError, match=r"X0\[0\] has largest singular value .* 2\*\*1023"):
        flows.end_to_end(task, 1, np.full((2, 2), 8.98846567e307), max_steps=3)
    res = flows.end_to_end(task, 1, np.full((2, 2), 1e300), max_steps=3)  # σ₁ = 2e300: accepted, finite spectrum
    assert np.all(np.isfinite(res.trajectory.sigma))
