"""Property-based bad-input tests of :mod:`analysis` (issue 7, "Bad input").

Contract (common brief rule 5): for arbitrary input every public entry point of statistics,
hypothesis, diagnostics, experiment and references either raises a
:class:`dlnvolume.errors.DLNVolumeError` (a ``ValueError``; ``ConfigError`` naming the key for
configurations) or returns numbers without NaN. Inputs: arbitrary shapes and sample sizes (0 and 1
included), NaN/inf, constant samples, entries of size 1e-300 and 1e+300, zero matrices, repeated
singular values, bad depths, arbitrary TOML documents.
"""

from __future__ import annotations

import math
import tomllib
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis import experiment as exp
from analysis import hypothesis as hyp
from analysis import references as refs
from analysis import statistics as S
from dlnvolume.errors import ConfigError, DLNVolumeError, InvalidArgumentError, NonFiniteError, ShapeError

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    from analysis import diagnostics as diag

PROPS = settings(max_examples=500, deadline=None, derandomize=True, database=None)

SPECIAL = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-300, -1e-300, 1e300, -1e300, 5e-324, 1.0, -1.0, 2.0]
FINITE_SPECIAL = [0.0, -0.0, 1e-300, -1e-300, 1e300, -1e300, 5e-324, 1.0, -1.0, 2.0, 0.5]
entries = st.one_of(st.sampled_from(SPECIAL), st.sampled_from(FINITE_SPECIAL),
                    st.floats(allow_nan=False, allow_infinity=False, width=64), st.floats(-3.0, 3.0))
finite_entries = st.one_of(st.sampled_from(FINITE_SPECIAL), st.floats(-3.0, 3.0),
                           st.floats(allow_nan=False, allow_infinity=False, width=64))
valid_depths = st.one_of(st.integers(1, 6), st.sampled_from([math.inf, 10**6, np.int64(3), 2.0, 1e300]))
depths = st.one_of(valid_depths, valid_depths, valid_depths,
                   st.sampled_from([0, -1, 2.5, math.nan, -math.inf, True, "2", None, 10**400]))
rngs = st.one_of(st.integers(0, 2**32), st.sampled_from([None, -1, "x", 1.5, np.random.default_rng(0)]))


@st.composite
def arrays(draw, shape, elements=entries) -> np.ndarray:
    """Float arrays of ``shape`` with few distinct values (ties, constant samples, repeated singular values)."""
    size = int(np.prod(shape))
    pool = draw(st.lists(elements, min_size=1, max_size=3))
    vals = draw(st.lists(st.one_of(st.sampled_from(pool), elements), min_size=size, max_size=size))
    return np.array(vals, dtype=float).reshape(shape)


@st.composite
def matrices(draw, m=None, n=None, elements=entries, lead=None) -> np.ndarray:
    m = draw(st.integers(1, 3)) if m is None else m
    n = draw(st.integers(1, 3)) if n is None else n
    lead = draw(st.sampled_from([(), (1,), (3,), (2, 2)])) if lead is None else lead
    return draw(arrays(lead + (m, n), elements))


any_matrices = st.one_of(matrices(), matrices(), matrices(elements=finite_entries), matrices(2, 2),
                         st.sampled_from([np.zeros((2, 2)), np.zeros((0, 2, 2)), np.zeros((2, 0)), np.ones(3),
                                          np.array(1.0), "ab", None]))


def _no_nan(name, value) -> None:
    arr = np.asarray(value)
    if arr.dtype.kind in "fc":
        assert not np.any(np.isnan(arr)), (name, arr)


def _call(fn, *args, **kwargs):
    """Call ``fn``; ``None`` when it raised a package error (the only exception allowed)."""
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(*args, **kwargs)
    except DLNVolumeError:
        return None


# ------------------------------------------------------------------------------------------------
# statistics
# ------------------------------------------------------------------------------------------------
@PROPS
@given(X=any_matrices, depth=depths, rank=st.one_of(st.none(), st.integers(-1, 4), st.sampled_from([1.5, "1"])),
       rtol=st.one_of(st.none(), st.sampled_from([1e-6, 1e-300, 0.5, 0.0, -1.0, math.nan, math.inf, "x"])),
       gt=st.one_of(st.none(), matrices(2, 2, lead=()), matrices(lead=())),
       normalized=st.sampled_from([True, False, "yes"]))
def test_property_statistics(X, depth, rank, rtol, gt, normalized):
    st_ = _call(S.compute_statistics, X, depth, rtol=rtol, ground_truth=gt, rank=rank, normalized=normalized)
    if st_ is not None:
        batch = np.shape(X)[:-2]
        for name, value in st_.scalars().items():
            _no_nan(name, value)
            assert np.shape(value) == batch, name
        _no_nan("singular_values", st_.singular_values)
        assert np.all(st_.effective_rank >= 0) and np.all(st_.numerical_rank >= 0)
    for fn in (S.singular_values, S.effective_rank, S.nuclear_norm, S.frobenius_norm, S.hyperbola_position):
        out = _call(fn, X)
        if out is not None:
            values = vars(out).items() if fn is S.hyperbola_position else [(fn.__name__, out)]
            for name, v in values:
                _no_nan(name, v)
                assert np.shape(v)[: len(np.shape(X)) - 2] == np.shape(X)[:-2]
    for fn, args in ((S.numerical_rank, (X, rtol)), (S.schatten_quasi_norm, (X, depth)),
                     (S.log_volume_density_on_stratum, (X, depth)), (S.test_error, (X, gt))):
        out = _call(fn, *args)
        if out is not None:
            _no_nan(fn.__name__, out)
            assert np.shape(out) == np.shape(X)[:-2]


# ------------------------------------------------------------------------------------------------
# hypothesis tests
# ------------------------------------------------------------------------------------------------
samples = st.one_of(
    st.integers(0, 12).flatmap(lambda k: arrays((k,))),
    st.integers(0, 12).flatmap(lambda k: arrays((k,), finite_entries)),
    st.integers(0, 12).flatmap(lambda k: arrays((k,), st.floats(-3, 3))),
    st.sampled_from([np.zeros((2, 3)), np.array(1.0), "ab", None, [1.0, "x"]]),
)
n_perms = st.one_of(st.integers(1, 6), st.sampled_from([0, -1, 2.5, "9", None, True]))


def _check_result(r) -> None:
    assert isinstance(r, hyp.TestResult)
    for name in ("statistic", "p_value", "effect_size"):
        v = getattr(r, name)
        assert isinstance(v, float) and not math.isnan(v), (name, r)
    assert 0 <= r.p_value <= 1 and r.n_x >= 1 and r.n_y >= 0  # n_y = 0: exact reference CDF (documented)
    if "permutation" in r.notes:  # (1 + hits)/(1 + B), never 0 (TestResult docstring)
        assert r.p_value > 0
    assert r.ess_used is None or not math.isnan(r.ess_used)
    assert r.p_adjusted is None or 0 <= r.p_adjusted <= 1


@PROPS
@given(x=samples, y=samples, n_perm=n_perms, rng=rngs)
def test_property_two_sample_tests(x, y, n_perm, rng):
    for fn in (hyp.ks_test, hyp.ad_test):
        r = _call(fn, x, y, n_perm=n_perm, rng=rng)
        if r is not None:
            _check_result(r)
    r = _call(hyp.energy_test, x, y, n_perm=n_perm, rng=rng)
    if r is not None:
        _check_result(r)
    r = _call(hyp.null_measure_test, x, y)
    if r is not None:
        _check_result(r)
        assert 0 <= r.effect_size <= 1


@PROPS
@given(v=samples, ref=st.one_of(samples, st.integers(0, 3).flatmap(lambda c: arrays((c, 6), finite_entries))),
       bins=st.one_of(st.integers(1, 12), st.sampled_from([0, -1, 2.5, "10"])),
       use_cdf=st.integers(0, 3), iid=st.booleans())
def test_property_volume_percentile(v, ref, bins, use_cdf, iid):
    cdfs = {1: lambda z: 1.0 / (1.0 + np.exp(-z)), 2: lambda z: np.full(np.shape(z), np.nan),
            3: lambda z: np.full(np.shape(z), 2.0)}
    kw = {"reference_cdf": cdfs[use_cdf]} if use_cdf else {"reference_draws": ref}
    res = _call(hyp.volume_percentile_test, v, bins=bins, iid=iid, **kw)
    if res is None:
        return
    _no_nan("percentiles", res.percentiles)
    assert np.all((res.percentiles >= 0) & (res.percentiles <= 1))
    _check_result(res.uniform)
    _check_result(res.small)
    assert res.counts.sum() == res.percentiles.size


@PROPS
@given(data=st.data())
def test_property_distribution_match_and_ess(data):
    keys = ["a", "b"]
    endpoints = {k: data.draw(samples) for k in keys if data.draw(st.booleans())}
    draws = {k: data.draw(st.one_of(samples, st.integers(0, 3).flatmap(lambda c: arrays((c, 8), finite_entries))))
             for k in keys if data.draw(st.booleans())}
    vector = None
    if data.draw(st.booleans()):
        vector = {"v": (data.draw(st.one_of(arrays((5, 2), finite_entries), samples)),
                        data.draw(st.one_of(arrays((2, 6, 2), finite_entries), samples)))}
    kw = data.draw(st.fixed_dictionaries({}, optional={
        "n_perm": n_perms, "max_n": st.one_of(st.integers(1, 20), st.sampled_from([0, -1, 2.5])),
        "tests": st.sampled_from([("ks",), ("ks",), ("ks",), ("ad",), ("ks", "ad"), ("bogus",), "ks", ()]),
        "iid": st.booleans(), "rng": rngs}))
    res = _call(hyp.distribution_match, endpoints, draws, vector=vector, **kw)
    if res is not None:
        for r in res:
            _check_result(r)
    x = data.draw(st.one_of(st.integers(0, 3).flatmap(lambda c: arrays((c, data.draw(st.integers(0, 10))))),
                            samples))
    e = _call(hyp.ess, x)
    if e is not None:
        assert isinstance(e, float) and not math.isnan(e) and e > 0
    thin = _call(hyp.thin_to_ess, x, data.draw(st.one_of(st.none(), st.sampled_from([0.0, -1.0, math.nan, 3.0, 1e300]))))
    if thin is not None:
        kept, ess_value = thin
        _no_nan("thin_to_ess", kept)
        assert not math.isnan(ess_value) and ess_value > 0
    bh = _call(hyp.benjamini_hochberg, [] if res is None else res)
    assert bh is not None


def test_benjamini_hochberg_empty():
    assert hyp.benjamini_hochberg([]) == []


# ------------------------------------------------------------------------------------------------
# diagnostics (InferenceData builders, summary)
# ------------------------------------------------------------------------------------------------
class _Chains:
    def __init__(self, draws, target):
        C, D = draws.shape[:2]
        self.draws = draws
        self.log_density = np.zeros((C, D))
        self.accept_prob = np.full((C, D), 0.5)
        self.step_size = np.full(C, 0.1)
        self.failures = {"projection": np.zeros(C, dtype=np.int64)}
        self.target = target
        self.method, self.seeds, self.warmup, self.thin = "rmala", np.arange(C, dtype=np.uint64), 1, 1


@settings(max_examples=500, deadline=None, derandomize=True, database=None)
@given(data=st.data())
def test_property_reference_tree(data):
    """Any finite draws: no NaN in the posterior, no constant posterior variable, coords for every dim."""
    from analysis.statistics import compute_statistics

    C, D = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 5))
    draws = data.draw(st.one_of(arrays((C, D, 2, 2), finite_entries), st.just(np.ones((C, D, 2, 2)))))
    depth = data.draw(depths)
    target = {"measure": "gibbs", "depth": depth, "rank": 2, "beta": 1.0, "normalized": True, "confinement": "none"}
    chains = _Chains(draws, target)
    st_ = _call(compute_statistics, draws, depth, rtol=1e-6)
    if st_ is None:
        return
    tree = diag.reference_tree({depth: chains}, {depth: st_}, exact=False, volume_rank=None, rtol=1e-6)
    post = tree["posterior"].to_dataset()
    assert set(post.dims) <= set(post.coords)
    for name, var in post.data_vars.items():
        assert not np.any(np.isnan(var.values)), name
        assert np.all(np.ptp(var.values, axis=(1, 2)) > 0), name


# ------------------------------------------------------------------------------------------------
# experiment configuration
# ------------------------------------------------------------------------------------------------
toml_scalars = st.one_of(st.integers(-3, 10**6), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                         st.text(max_size=6), st.sampled_from(["inf", "diagonal_2x2", "random_low_rank", "exact",
                                                               "solution_set", "gibbs", "converged", "numerical"]))
toml_values = st.recursive(toml_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                                  st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                           max_leaves=6)
SECTIONS = {"task": exp.TASK_SPEC, "flows": exp.FLOW_SPEC, "statistics": exp.STAT_SPEC, "tests": exp.TEST_SPEC,
            "output": exp.OUT_SPEC, "quick": exp.QUICK_SPEC}


@st.composite
def config_docs(draw):
    """A valid built-in configuration with some keys replaced, deleted or added."""
    name = draw(st.sampled_from(sorted(exp.builtin_experiments())))
    doc = tomllib.loads(exp.builtin_experiments()[name])
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.integers(0, 4))
        section = draw(st.sampled_from(sorted(SECTIONS) + ["references", ""]))
        if section == "":
            key = draw(st.sampled_from(sorted(exp.TOP_SPEC) + ["bogus"]))
            table = doc
        elif section == "references":
            if not isinstance(doc.get("references"), list) or not doc["references"]:
                continue  # absent, or replaced by another value in an earlier step
            table = draw(st.sampled_from(doc["references"]))
            if not isinstance(table, dict):
                continue
            key = draw(st.sampled_from(sorted(exp.REF_SPEC) + ["bogus"]))
        else:
            table = doc.setdefault(section, {})
            if not isinstance(table, dict):
                continue
            key = draw(st.sampled_from(sorted(SECTIONS[section]) + ["bogus"]))
        if action == 0:
            table.pop(key, None)
        else:
            table[key] = draw(toml_values)
    if draw(st.integers(0, 9)) == 0:
        doc = draw(st.sampled_from([[], "x", None, 3, {}]))
    return doc


@PROPS
@given(doc=config_docs())
def test_property_parse_config(doc):
    try:
        cfg = exp.parse_config(doc)
    except ConfigError as err:
        assert str(err).startswith("config key '"), str(err)  # the contract: the message names the key
        return
    assert isinstance(cfg, exp.ExperimentConfig)
    for value in (cfg.init_scale, cfg.rtol, cfg.alpha):
        assert isinstance(value, float) and math.isfinite(value)
    assert all(d == math.inf or (isinstance(d, int) and d >= 1) for d in cfg.depths)
    text = exp.to_toml(cfg.to_dict())  # round trip
    assert exp.parse_config(tomllib.loads(text)) == cfg
    cfg.quick_version()


@PROPS
@given(text=st.one_of(st.text(max_size=40), st.sampled_from(['name = 1\n[task]\nkind = "diagonal_2x2"',
                                                           '[task]\nkind = "diagonal_2x2"\n[flows]\nruns = 1e999',
                                                           "[task\n", 'x = "\\q"', "[[references]]\nname = 1"])))
def test_property_load_config_text(tmp_path_factory, text):
    path = tmp_path_factory.getbasetemp() / "cfg.toml"
    path.write_text(text, encoding="utf-8")
    try:
        cfg, back = exp.load_config(str(path))
    except ConfigError as err:
        assert str(err).startswith(("config key '", "config '", "experiment ")), str(err)
        return
    assert back == text and isinstance(cfg, exp.ExperimentConfig)


# ------------------------------------------------------------------------------------------------
# GridHyperbolaReference
# ------------------------------------------------------------------------------------------------
GRID_REFS = [refs.GridHyperbolaReference(3, "solution_set", 3.0, n_grid=201),
             refs.GridHyperbolaReference(math.inf, "gibbs_limit", 4.0, n_grid=201),
             refs.GridHyperbolaReference(1, "solution_set", 3.0, n_grid=201)]
points = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(SPECIAL), st.floats(-5.0, 5.0))


@PROPS
@given(data=st.data())
def test_property_grid_reference_methods(data):
    ref = data.draw(st.sampled_from(GRID_REFS))
    shape = data.draw(st.sampled_from([(), (0,), (1,), (3,), (2, 2)]))
    a = data.draw(st.one_of(arrays(shape, points), st.sampled_from(["ab", None])))
    for method in ("pdf", "cdf", "abs_cdf", "log_volume_cdf"):
        out = _call(getattr(ref, method), a)
        if out is not None:
            _no_nan(method, out)
            assert out.shape == np.shape(a) and np.all(out >= 0)
            if method != "pdf":
                assert np.all(out <= 1)
    Xa = _call(ref.matrices, a)
    if Xa is not None:
        assert np.all(np.isfinite(Xa))
    n = data.draw(st.one_of(st.integers(0, 6), st.sampled_from([-1, 2.5, "3", None, True])))
    draws = _call(ref.sample, n, rng=data.draw(rngs))
    if draws is not None:
        assert draws.shape == (n,) and np.all(np.isfinite(draws))


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(depth=depths, measure=st.sampled_from(["solution_set", "gibbs_limit", "volume", None]),
       radius=st.sampled_from([3.0, 2.0, 2.0 + 1e-9, 1e300, 0.0, -1.0, math.nan, math.inf, "3"]),
       n_grid=st.sampled_from([101, 201, 100, 0, 2.5, "201"]), normalized=st.sampled_from([True, False, "yes"]))
def test_property_grid_reference_construction(depth, measure, radius, n_grid, normalized):
    """Construction evaluates the density on the whole grid (~5 ms at n_grid=201): 60 examples."""
    ref = _call(refs.GridHyperbolaReference, depth, measure, radius, n_grid=n_grid, normalized=normalized)
    if ref is None:
        return
    assert math.isfinite(ref.Z) and ref.Z > 0
    _no_nan("F", ref.F)
    _no_nan("log_rho", ref.log_rho)


# ------------------------------------------------------------------------------------------------
# regression tests for the bugs the properties found
# ------------------------------------------------------------------------------------------------
def test_rng_validated():
    with pytest.raises(InvalidArgumentError, match=r"\brng='x' has type str"):
        hyp.ks_test([1.0, 2.0, 3.0], [1.0, 2.0, 4.0], rng="x")
    with pytest.raises(InvalidArgumentError, match=r"\brng=-1 is negative"):
        GRID_REFS[0].sample(3, rng=-1)


@pytest.mark.parametrize("fn", [hyp.ks_test, hyp.ad_test, hyp.energy_test])
@pytest.mark.parametrize("n_perm,pattern", [(0, r"n_perm=0 is out of range"), (2.5, r"n_perm=2\.5 is not an integer"),
                                            (-1, r"n_perm=-1 is out of range")])
def test_n_perm_validated(fn, n_perm, pattern):
    """n_perm=0 / -1 / 2.5 raised scipy's or numpy's ValueError / TypeError."""
    with pytest.raises(InvalidArgumentError, match=pattern):
        fn([0.0, 1.0, 2.0], [0.5, 1.5, 2.5], n_perm=n_perm, rng=0)


def test_sample_conversion_errors_name_the_argument():
    with pytest.raises(ShapeError, match=r"\by could not be converted"):
        hyp.ks_test([1.0, 2.0], "ab", rng=0)
    with pytest.raises(ShapeError, match=r"\breference_draws could not be converted"):
        hyp.volume_percentile_test([1.0, 2.0], reference_draws="ab")


def test_ad_constant_equal_samples():
    """scipy raised 'anderson_ksamp needs more than one distinct observation' (a bare ValueError)."""
    with pytest.raises(InvalidArgumentError, match=r"x and y are constant and equal"):
        hyp.ad_test([1.0, 1.0], [1.0, 1.0, 1.0], n_perm=9, rng=0)


def test_energy_huge_values_no_nan():
    """Squared distances of 1e300 overflowed and inf - inf made the statistic NaN. E is homogeneous of
    degree 1, so E(1e300·x, 1e300·y) = 1e300·E(x, y) (independent computation on the small sample)."""
    x, y = np.array([0.0, 0.0]), np.array([1.0, 1.0])
    small = hyp.energy_test(x, y, n_perm=9, rng=0)
    big = hyp.energy_test(1e300 * x, 1e300 * y, n_perm=9, rng=0)
    # E for x = {0, 0}, y = {1, 1}: 2·1 − 0 − 0 = 2
    assert small.statistic == pytest.approx(2.0, rel=1e-12)
    assert big.statistic == pytest.approx(2e300, rel=1e-12) and big.p_value == small.p_value


def test_volume_percentile_bins_and_cdf_validated():
    with pytest.raises(InvalidArgumentError, match=r"\bbins=0 is out of range"):
        hyp.volume_percentile_test([0.0, 1.0], reference_draws=[0.0, 1.0, 2.0], bins=0)
    with pytest.raises(InvalidArgumentError, match=r"reference_cdf returned .* expected shape \(2,\) with values in \[0, 1\]"):
        hyp.volume_percentile_test([0.0, 1.0], reference_cdf=lambda v: np.full(v.shape, np.nan))
    with pytest.raises(ShapeError, match=r"\bx has shape \(0, 6\)"):  # numpy reshape error before
        hyp.volume_percentile_test([0.0, 1.0], reference_draws=np.zeros((0, 6)), iid=False)


def test_distribution_match_validated():
    """tests=('bogus',) raised KeyError; an empty endpoint sample reached np.ptp (ValueError)."""
    ep = {"a": np.arange(5.0)}
    dr = {"a": np.arange(12.0).reshape(2, 6)}
    with pytest.raises(InvalidArgumentError, match=r"tests=\('bogus',\); expected a sequence of 'ks' and/or 'ad'"):
        hyp.distribution_match(ep, dr, tests=("bogus",), rng=0)
    with pytest.raises(ShapeError, match=r"endpoints\['a'\] has shape \(0,\)"):
        hyp.distribution_match({"a": np.zeros(0)}, dr, rng=0)
    with pytest.raises(ShapeError, match=r"\bx has shape \(0, 4\).*chains >= 1"):  # returned ESS 0
        hyp.ess(np.zeros((0, 4)))
    with pytest.raises(InvalidArgumentError, match=r"\bx has NaN or infinite entries"):  # returned NaN draws
        hyp.thin_to_ess(np.full((1, 4), np.nan), 3.0)


def test_reference_tree_shapes_validated():
    """Draws of the wrong rank reached xarray (ValueError: dimensions ... must have the same length)."""
    from analysis.statistics import compute_statistics

    target = {"measure": "gibbs", "depth": 3, "rank": 2, "beta": 1.0, "normalized": True, "confinement": "none"}
    X = np.ones((2, 2))
    with pytest.raises(ShapeError, match=r"draws have shape \(2, 2\); expected \(chain, draw, m, n\)"):
        diag.reference_tree({3: _Chains(X, target)}, {3: compute_statistics(X, 3)}, exact=False, volume_rank=None,
                            rtol=1e-6)


def test_grid_reference_inputs_validated():
    with pytest.raises(InvalidArgumentError, match=r"radius=1e\+300; expected a number <= 1e150"):
        refs.GridHyperbolaReference(3, "solution_set", 1e300, n_grid=101)
    with pytest.raises(NonFiniteError, match=r"\ba has NaN entries"):  # cdf(NaN) was NaN
        GRID_REFS[0].cdf(np.nan)
    with pytest.raises(InvalidArgumentError, match=r"\ba has zero, infinite or subnormal entries"):  # inf entries
        GRID_REFS[0].matrices([0.0])
