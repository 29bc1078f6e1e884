"""Bad input at every public entry point of the geometry core raises the specific dlnvolume error
whose message names the argument (common brief rule 5; STYLE.md 7), and a property test that nothing
else escapes and no NaN comes back."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dlnvolume as dv
from dlnvolume import strata, tasks
from dlnvolume.errors import (
    DegenerateMetricError,
    DLNVolumeError,
    InvalidArgumentError,
    InvalidDepthError,
    InvalidMaskError,
    InvalidRankError,
    NonFiniteError,
    ShapeError,
)

X22 = np.array([[2.0, 0.5], [0.1, 1.0]])
Z22 = np.array([[1.0, -1.0], [0.5, 2.0]])


def test_hierarchy():
    for cls in (InvalidDepthError, InvalidRankError, ShapeError, NonFiniteError, InvalidMaskError,
                InvalidArgumentError, DegenerateMetricError):
        assert issubclass(cls, DLNVolumeError) and issubclass(cls, ValueError)


# ------------------------------------------------------------------------------------------------
# depth
# ------------------------------------------------------------------------------------------------
BAD_DEPTHS = [
    (0, r"depth=0\b.*integer >= 1"),
    (-1, r"depth=-1\b.*integer >= 1"),
    (np.int64(0), r"depth=0\b"),
    (2.5, r"depth=2\.5.*not an integer"),
    (True, r"depth=True.*bool"),
    (False, r"depth=False.*bool"),
    ("3", r"depth='3'.*str"),
    (None, r"depth=None"),
    (math.nan, r"depth=nan"),
    (-math.inf, r"depth=-inf"),
    (0.0, r"depth=0\b"),
]


@pytest.mark.parametrize("depth,pattern", BAD_DEPTHS)
def test_bad_depth(depth, pattern):
    with pytest.raises(InvalidDepthError, match=pattern):
        dv.log_volume_density(X22, depth)
    with pytest.raises(InvalidDepthError, match=pattern):
        dv.DLNMetric(depth)
    with pytest.raises(InvalidDepthError, match=pattern):
        dv.DLNMetric(depth=depth, normalized=False)


def test_depth_inf_unnormalized_refused():
    with pytest.raises(InvalidDepthError, match=r"depth=inf.*normalized=False"):
        dv.DLNMetric(math.inf, normalized=False)
    with pytest.raises(InvalidDepthError, match=r"depth=inf.*normalized=False"):
        dv.log_volume_density(X22, math.inf, normalized=False)
    with pytest.raises(InvalidDepthError, match=r"depth=inf.*normalized=False"):
        dv.log_volume_density(X22, np.inf, normalized=False)


def test_accepted_depth_forms():
    """Integral floats and numpy integers are accepted and give the same values as ints."""
    ref = dv.log_volume_density(X22, 3)
    for d in (3.0, np.int32(3), np.float64(3.0)):
        assert dv.log_volume_density(X22, d) == ref
        assert dv.DLNMetric(d).depth == 3
    assert dv.DLNMetric(np.inf).depth == math.inf


@pytest.mark.parametrize("normalized", ["yes", 1, None, 0.0])
def test_bad_normalized(normalized):
    with pytest.raises(InvalidArgumentError, match="normalized"):
        dv.DLNMetric(3, normalized)
    with pytest.raises(InvalidArgumentError, match="normalized"):
        dv.log_volume_density(X22, 3, normalized=normalized)


# ------------------------------------------------------------------------------------------------
# X, Z and rank at every DLNMetric method
# ------------------------------------------------------------------------------------------------
METRIC = dv.DLNMetric(3)


def _calls(X=X22, Z=Z22, rank=None):
    """Every matrix entry point of the metric, called with (X, Z, rank)."""
    return {
        "log_volume_density": lambda: dv.log_volume_density(X, 3, rank=rank),
        "method.log_volume_density": lambda: METRIC.log_volume_density(X, rank=rank),
        "multipliers": lambda: METRIC.multipliers(X, rank=rank),
        "log_multipliers": lambda: METRIC.log_multipliers(X, rank=rank),
        "apply": lambda: METRIC.apply(X, Z, rank=rank),
        "sqrt_apply": lambda: METRIC.sqrt_apply(X, Z, rank=rank),
        "solve": lambda: METRIC.solve(X, Z, rank=rank),
        "inner": lambda: METRIC.inner(X, Z, Z, rank=rank),
    }


BAD_X = [
    (np.array([[1.0, np.nan], [0.0, 1.0]]), NonFiniteError, r"\bX has NaN or infinite"),
    (np.array([[1.0, np.inf], [0.0, 1.0]]), NonFiniteError, r"\bX has NaN or infinite"),
    (np.array([[1.0, -np.inf], [0.0, 1.0]]), NonFiniteError, r"\bX has NaN or infinite"),
    (np.array([1.0, 2.0]), ShapeError, r"\bX has shape \(2,\)"),
    (np.array(3.0), ShapeError, r"\bX has shape \(\)"),
    (np.zeros((0, 2)), ShapeError, r"\bX has shape \(0, 2\)"),
    (np.zeros((2, 0)), ShapeError, r"\bX has shape \(2, 0\)"),
    ([["a", "b"], ["c", "d"]], ShapeError, r"\bX could not be converted"),
]


@pytest.mark.parametrize("X,cls,pattern", BAD_X)
@pytest.mark.parametrize("entry", list(_calls()))
def test_bad_X(entry, X, cls, pattern):
    with pytest.raises(cls, match=pattern):
        _calls(X=X)[entry]()


BAD_Z = [
    (np.ones((2, 3)), ShapeError, r"\bZ1? has shape \(2, 3\)"),
    (np.ones(2), ShapeError, r"\bZ1? has shape \(2,\)"),
    (np.ones((3, 2, 2)), None, None),  # batch broadcasting against an unbatched X is allowed
    (np.array([[np.nan, 0.0], [0.0, 0.0]]), NonFiniteError, r"\bZ1? has NaN"),
]


@pytest.mark.parametrize("Z,cls,pattern", BAD_Z)
@pytest.mark.parametrize("entry", ["apply", "sqrt_apply", "solve", "inner"])
def test_bad_Z(entry, Z, cls, pattern):
    if cls is None:
        out = _calls(Z=Z)[entry]()
        assert out.shape[0] == 3
        return
    with pytest.raises(cls, match=pattern):
        _calls(Z=Z)[entry]()


@pytest.mark.parametrize("entry", ["apply", "sqrt_apply", "solve", "inner"])
def test_batch_shapes_not_broadcasting(entry):
    X = np.stack([X22] * 2)
    Z = np.stack([Z22] * 3)
    with pytest.raises(ShapeError, match=r"batch shapes of X .* and Z1? "):
        _calls(X=X, Z=Z)[entry]()


def test_inner_names_second_argument():
    with pytest.raises(ShapeError, match=r"\bZ2 has shape"):
        METRIC.inner(X22, Z22, np.ones((3, 3)))
    with pytest.raises(NonFiniteError, match=r"\bZ2 has NaN"):
        METRIC.inner(X22, Z22, np.full((2, 2), np.nan))


BAD_RANKS = [
    (-1, InvalidRankError, r"rank=-1 is outside 0\.\.2"),
    (3, InvalidRankError, r"rank=3 is outside 0\.\.2"),
    (1.5, InvalidRankError, r"rank=1\.5 is not an integer"),
    ("1", InvalidRankError, r"rank='1' is not an integer"),
    (math.nan, InvalidRankError, r"rank=nan is not an integer"),
]


@pytest.mark.parametrize("rank,cls,pattern", BAD_RANKS)
@pytest.mark.parametrize("entry", list(_calls()))
def test_bad_rank(entry, rank, cls, pattern):
    with pytest.raises(cls, match=pattern):
        _calls(rank=rank)[entry]()


def test_bool_rank_rejected():
    """A bool is not a rank (as for depth). check_rank tests ``isinstance(rank, bool)`` but then
    converts True to 1 because bool is a Real with an integral value."""
    with pytest.raises(InvalidRankError, match=r"rank=True"):
        dv.log_volume_density(X22, 3, rank=True)
    with pytest.raises(InvalidRankError, match=r"rank=False"):
        METRIC.multipliers(X22, rank=False)


def test_integral_float_rank_accepted():
    assert dv.log_volume_density(X22, 3, rank=1.0) == dv.log_volume_density(X22, 3, rank=1)


@pytest.mark.parametrize(
    "X,depth,rank",
    [(np.diag([1.0, 0.0]), 2, None),             # zero multiplier on the full-rank tangent space
     (np.zeros((2, 2)), 3, 1),                    # fewer than `rank` nonzero singular values
     (np.ones((3, 2)), math.inf, None),           # depth inf, rectangular: mixed multipliers vanish
     (np.diag([2.0, 1.0, 0.5]), math.inf, 2)],    # depth inf, lower stratum
)
def test_degenerate_metric(X, depth, rank):
    metric = dv.DLNMetric(depth)
    Z = np.ones_like(X)
    with pytest.raises(DegenerateMetricError, match=r"degenerate.*rank-\d stratum"):
        metric.solve(X, Z, rank=rank)
    with pytest.raises(DegenerateMetricError, match=r"degenerate.*rank-\d stratum"):
        metric.inner(X, Z, Z, rank=rank)


# ------------------------------------------------------------------------------------------------
# chart_log_density
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "sigma,shape,rank,cls,pattern",
    [([1.0, -1.0], (2, 2), None, InvalidArgumentError, r"\bsigma\b.*> 0"),
     ([1.0, 0.0], (2, 2), None, InvalidArgumentError, r"\bsigma\b.*> 0"),
     ([1.0, np.nan], (2, 2), None, InvalidArgumentError, r"\bsigma\b"),
     ([1.0, np.inf], (2, 2), None, InvalidArgumentError, r"\bsigma\b"),
     (1.0, (2, 2), None, ShapeError, r"\bsigma has shape \(\)"),
     ([1.0, 2.0], (0, 2), None, ShapeError, r"\bshape=\(0, 2\)"),
     ([1.0, 2.0], "ab", None, ShapeError, r"\bshape='ab'"),
     ([1.0, 2.0], (2,), None, ShapeError, r"\bshape="),
     ([1.0, 2.0], (3, 3), 1, ShapeError, r"\bsigma has 2 entries.*rank=1"),
     ([1.0, 2.0, 3.0], (2, 4), None, InvalidRankError, r"rank=3 is outside 0\.\.2"),
     ([1.0, 2.0], (3, 3), 1.5, InvalidRankError, r"rank=1\.5")],
)
def test_bad_chart_arguments(sigma, shape, rank, cls, pattern):
    with pytest.raises(cls, match=pattern):
        METRIC.chart_log_density(np.asarray(sigma, dtype=float), shape, rank=rank)


# ------------------------------------------------------------------------------------------------
# strata
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "call,cls,pattern",
    [(lambda: strata.dimension(0, 2, 0), InvalidArgumentError, r"\bm=0\b"),
     (lambda: strata.dimension(2, -1, 0), InvalidArgumentError, r"\bn=-1\b"),
     (lambda: strata.dimension(2.5, 2, 1), InvalidArgumentError, r"\bm=2\.5"),
     (lambda: strata.dimension(2, 3, 3), InvalidRankError, r"rank=3 is outside 0\.\.2"),
     (lambda: strata.dimension(2, 3, -1), InvalidRankError, r"rank=-1"),
     (lambda: strata.dimension(2, 3, 0.5), InvalidRankError, r"rank=0\.5"),
     (lambda: strata.numerical_rank(X22, rtol=-1.0), InvalidArgumentError, r"\brtol=-1\.0"),
     (lambda: strata.numerical_rank(X22, rtol=0.0), InvalidArgumentError, r"\brtol=0\.0"),
     (lambda: strata.numerical_rank(X22, rtol=math.nan), InvalidArgumentError, r"\brtol=nan"),
     (lambda: strata.numerical_rank(X22, rtol="x"), InvalidArgumentError, r"\brtol='x'"),
     (lambda: strata.numerical_rank(np.full((2, 2), np.nan)), NonFiniteError, r"\bX has NaN"),
     (lambda: strata.numerical_rank(np.ones(3)), ShapeError, r"\bX has shape \(3,\)"),
     (lambda: strata.best_rank_approx(X22, 3), InvalidRankError, r"rank=3"),
     (lambda: strata.best_rank_approx(X22, 1.5), InvalidRankError, r"rank=1\.5"),
     (lambda: strata.best_rank_approx(np.ones(3), 1), ShapeError, r"\bX has shape"),
     (lambda: strata.best_rank_approx(np.full((2, 2), np.inf), 1), NonFiniteError, r"\bX has NaN or inf"),
     (lambda: strata.tangent_project(X22, np.ones((2, 3)), 1), ShapeError, r"\bZ has shape \(2, 3\)"),
     (lambda: strata.tangent_project(X22, np.full((2, 2), np.nan), 1), NonFiniteError, r"\bZ has NaN"),
     (lambda: strata.tangent_project(np.full((2, 2), np.nan), Z22, 1), NonFiniteError, r"\bX has NaN"),
     (lambda: strata.tangent_project(X22, Z22, 5), InvalidRankError, r"rank=5"),
     (lambda: strata.normal_project(X22, np.ones((3, 2)), 1), ShapeError, r"\bZ has shape \(3, 2\)"),
     (lambda: strata.normal_project(X22, Z22, -2), InvalidRankError, r"rank=-2"),
     (lambda: strata.svd_chart([1.0, 2.0], np.eye(2)[:, :1], np.eye(2)), ShapeError, r"\bQ has shape"),
     (lambda: strata.svd_chart([1.0], np.eye(2)[:, :1], np.eye(2)), ShapeError, r"\bR has shape"),
     (lambda: strata.svd_chart([1.0], np.ones(2), np.eye(2)[:, :1]), ShapeError, r"\bQ \(2,\)|Q"),
     (lambda: strata.euclidean_log_jacobian([1.0, -2.0], (2, 2)), InvalidArgumentError, r"\bsigma\b.*> 0"),
     (lambda: strata.euclidean_log_jacobian([1.0, np.nan], (2, 2)), InvalidArgumentError, r"\bsigma\b"),
     (lambda: strata.euclidean_log_jacobian([1.0, 2.0, 3.0], (2, 4)), ShapeError, r"\bsigma has shape \(3,\)"),
     (lambda: strata.euclidean_log_jacobian([1.0], (0, 4)), InvalidArgumentError, r"shape entry=0"),
     ],
)
def test_bad_strata_arguments(call, cls, pattern):
    with pytest.raises(cls, match=pattern):
        call()


def test_svd_chart_rejects_non_finite():
    """Rule 5: non-finite input is refused, no NaN returned (svd_chart has no finiteness check)."""
    with pytest.raises(DLNVolumeError, match=r"\bsigma\b"):
        strata.svd_chart([np.nan], np.eye(2)[:, :1], np.eye(2)[:, :1])
    with pytest.raises(DLNVolumeError, match=r"\bQ\b"):
        strata.svd_chart([1.0], np.full((2, 1), np.inf), np.eye(2)[:, :1])


# ------------------------------------------------------------------------------------------------
# CompletionTask and tasks
# ------------------------------------------------------------------------------------------------
EYE = np.eye(2, dtype=bool)


@pytest.mark.parametrize(
    "kwargs,cls,pattern",
    [(dict(values=np.eye(2), mask=np.eye(2)), InvalidMaskError, r"\bmask has dtype float64.*boolean"),
     (dict(values=np.eye(2), mask=np.eye(2, dtype=int)), InvalidMaskError, r"\bmask has dtype int"),
     (dict(values=np.eye(2), mask=np.zeros((2, 2), bool)), InvalidMaskError, r"\bmask observes no entry"),
     (dict(values=np.ones(2), mask=np.ones(2, bool)), ShapeError, r"\bmask has shape \(2,\)"),
     (dict(values=np.ones((2, 2, 2)), mask=np.ones((2, 2, 2), bool)), ShapeError, r"\bmask has shape \(2, 2, 2\)"),
     (dict(values=np.ones((0, 2)), mask=np.ones((0, 2), bool)), ShapeError, r"\bmask has shape \(0, 2\)"),
     (dict(values=np.ones((2, 3)), mask=EYE), ShapeError, r"\bvalues has shape \(2, 3\)"),
     (dict(values=np.ones(4), mask=EYE), ShapeError, r"\bvalues has shape \(4,\)"),
     (dict(values=np.array([[np.nan, 0], [0, 1.0]]), mask=EYE), NonFiniteError, r"\bvalues has NaN"),
     (dict(values=np.array([[1.0, 0], [0, np.inf]]), mask=EYE), NonFiniteError, r"\bvalues has NaN or inf"),
     (dict(values=np.eye(2), mask=EYE, ground_truth=np.ones((3, 3))), ShapeError, r"\bground_truth has shape"),
     (dict(values=np.eye(2), mask=EYE, ground_truth=np.full((2, 2), np.nan)), NonFiniteError, r"\bground_truth has NaN"),
     ],
)
def test_bad_completion_task(kwargs, cls, pattern):
    with pytest.raises(cls, match=pattern):
        dv.CompletionTask(**kwargs)


@pytest.mark.parametrize("method", ["loss", "grad", "residual", "mse", "project_to_solutions"])
def test_bad_completion_X(method):
    task = tasks.diagonal_2x2()
    with pytest.raises(ShapeError, match=r"\bX has shape \(3, 3\)"):
        getattr(task, method)(np.ones((3, 3)))
    with pytest.raises(ShapeError, match=r"\bX has shape \(2,\)"):
        getattr(task, method)(np.ones(2))
    with pytest.raises(NonFiniteError, match=r"\bX has NaN"):
        getattr(task, method)(np.full((2, 2), np.nan))


def test_test_error_without_ground_truth():
    with pytest.raises(DLNVolumeError, match=r"ground_truth"):
        tasks.diagonal_2x2().test_error(np.eye(2))


@pytest.mark.parametrize(
    "args,cls,pattern",
    [((3, 3, 1, 10), InvalidArgumentError, r"\bn_observed=10 is out of range.*1\.\.9"),
     ((3, 3, 1, 0), InvalidArgumentError, r"\bn_observed=0 is out of range"),
     ((3, 3, 1, -1), InvalidArgumentError, r"\bn_observed=-1"),
     ((3, 3, 1, 2.5), InvalidArgumentError, r"\bn_observed=2\.5 is not an integer"),
     ((3, 3, 0, 4), InvalidArgumentError, r"\brank=0 is out of range"),
     ((3, 3, 4, 4), InvalidArgumentError, r"\brank=4 is out of range"),
     ((3, 3, 1.5, 4), InvalidArgumentError, r"\brank=1\.5"),
     ((0, 3, 1, 1), InvalidArgumentError, r"\bm=0 is out of range"),
     ((3, -2, 1, 1), InvalidArgumentError, r"\bn=-2 is out of range"),
     (("3", 3, 1, 1), InvalidArgumentError, r"\bm='3' is not an integer"),
     ],
)
def test_bad_random_low_rank(args, cls, pattern):
    with pytest.raises(cls, match=pattern):
        tasks.random_low_rank(*args, rng=0)


def test_random_low_rank_bool_rejected():
    """check_int has the same bool hole as check_rank: True is silently read as 1."""
    with pytest.raises(InvalidArgumentError, match=r"\brank=True"):
        tasks.random_low_rank(3, 3, True, 4, rng=0)
    with pytest.raises(InvalidArgumentError, match=r"\bn_observed=True"):
        tasks.random_low_rank(3, 3, 1, True, rng=0)


# ------------------------------------------------------------------------------------------------
# property test: only DLNVolumeError escapes, and no NaN is returned
# ------------------------------------------------------------------------------------------------
SPECIAL = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-300, -1e-300, 1e300, -1e300, 5e-324, 1.0, -1.0, 2.0,
           1.0 + 1e-12]
FINITE_SPECIAL = [0.0, -0.0, 1e-300, -1e-300, 1e300, -1e300, 5e-324, 1.0, -1.0, 2.0, 1.0 + 1e-12]
entries = st.one_of(
    st.sampled_from(SPECIAL),
    st.sampled_from(FINITE_SPECIAL),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
)
# valid depths are drawn about three times as often as invalid ones, so most examples reach the numerics
valid_depths = st.one_of(st.integers(min_value=1, max_value=12),
                         st.sampled_from([math.inf, 10**6, np.int64(4), 3.0, 1, 2]))
depths = st.one_of(
    valid_depths, valid_depths, valid_depths,
    st.sampled_from([-math.inf, math.nan, 2.5, 0.0, 0, -1, True, False, "3", None]),
)
ranks = st.one_of(st.none(), st.integers(min_value=-1, max_value=4), st.sampled_from([1.5, True, "1"]))


@st.composite
def matrices(draw):
    m = draw(st.integers(1, 3))
    n = draw(st.integers(1, 3))
    batch = draw(st.sampled_from([(), (1,), (2,)]))
    size = int(np.prod(batch + (m, n)))
    pool = draw(st.lists(entries, min_size=1, max_size=3))  # few distinct values: many repeats
    vals = draw(st.lists(st.one_of(st.sampled_from(pool), entries), min_size=size, max_size=size))
    return np.array(vals, dtype=float).reshape(batch + (m, n))


@settings(max_examples=1000, deadline=None, derandomize=True, database=None)
@given(X=matrices(), depth=depths, rank=ranks, normalized=st.booleans())
def test_property_only_package_errors_and_no_nan(X, depth, rank, normalized):
    try:
        f = dv.log_volume_density(X, depth, rank=rank, normalized=normalized)
    except DLNVolumeError:
        pass
    else:
        assert f.shape == X.shape[:-2]
        assert not np.any(np.isnan(f)), (X, depth, rank, f)
    try:
        a = dv.DLNMetric(depth, normalized).multipliers(X, rank=rank)
    except DLNVolumeError:
        pass
    else:
        assert a.shape == X.shape
        assert not np.any(np.isnan(a)), (X, depth, rank, a)
        assert np.all(a >= 0)


@pytest.mark.parametrize(
    "method,X,Z",
    [("apply", np.diag([0.0, 0.0, 1e300]), np.zeros((3, 3))),         # A(0) = 0 exactly
     ("apply", np.diag([1e300, 1.0]), np.array([[0.0, 1.0], [1.0, 0.0]])),
     ("solve", np.diag([1e-300, 1.0]), np.array([[0.0, 1.0], [1.0, 0.0]])),
     ("inner", np.diag([1e-300, 1.0]), np.array([[0.0, 1.0], [1.0, 0.0]]))],
)
def test_operators_extreme_entries_no_nan(method, X, Z):
    """Finite input near the float64 limits: the result may overflow to ±inf (or an error may be
    raised), but NaN is never correct (common brief rule 5)."""
    metric = dv.DLNMetric(3)
    try:
        with np.errstate(all="ignore"):
            out = metric.inner(X, Z, Z) if method == "inner" else getattr(metric, method)(X, Z)
    except DLNVolumeError:
        return
    assert not np.any(np.isnan(out)), out


def test_random_low_rank_bad_rng():
    """rng accepts None, an int seed or a Generator (rule 4); anything else is a dlnvolume error."""
    with pytest.raises(DLNVolumeError, match=r"\brng\b"):
        tasks.random_low_rank(3, 3, 1, 4, rng="x")


finite_entries = st.one_of(st.sampled_from(FINITE_SPECIAL), st.floats(allow_nan=False, allow_infinity=False, width=64))


@st.composite
def finite_pairs(draw):
    m = draw(st.integers(1, 3))
    n = draw(st.integers(1, 3))
    pool = draw(st.lists(finite_entries, min_size=1, max_size=3))
    X = draw(st.lists(st.one_of(st.sampled_from(pool), finite_entries), min_size=m * n, max_size=m * n))
    Z = draw(st.lists(finite_entries, min_size=m * n, max_size=m * n))
    return np.array(X, dtype=float).reshape(m, n), np.array(Z, dtype=float).reshape(m, n)


@settings(max_examples=500, deadline=None, derandomize=True, database=None)
@given(XZ=finite_pairs(), depth=valid_depths, rank=st.one_of(st.none(), st.integers(0, 3)))
def test_property_operators_no_nan(XZ, depth, rank):
    """apply / sqrt_apply / solve / inner on finite input: a DLNVolumeError or a NaN-free result
    (values that overflow float64 may be ±inf; NaN is never a correct answer, common brief rule 5)."""
    X, Z = XZ
    metric = dv.DLNMetric(depth)
    for name in ("apply", "sqrt_apply", "solve", "inner"):
        try:
            with np.errstate(all="ignore"):
                out = metric.inner(X, Z, Z, rank=rank) if name == "inner" else getattr(metric, name)(X, Z, rank=rank)
        except DLNVolumeError:
            continue
        assert not np.any(np.isnan(out)), (name, X, Z, depth, rank, out)
