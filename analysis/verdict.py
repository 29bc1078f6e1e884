"""The verdict of a run: per depth and reference, a question, its answer at the configured α, and
what changes the reading (docs/math.md §7).

Three questions, one test each (the full test tables stay in the report):

* *higher volume* — "do endpoints sit at higher g_N-volume than the <reference> measure?": the
  one-sided KS test of the volume percentiles (family b, :func:`analysis.hypothesis.volume_percentile_test`),
  effect size the mean percentile (½ under the null, near 0 under the high-volume hypothesis);
* *follow* — "do endpoints follow the <reference> measure?": the distribution-match family (a),
  Benjamini–Hochberg across its statistics; the answer is "no" when any adjusted p-value is at most α;
  the reported test is the one with the smallest adjusted p-value, the effect size the KS distance D of
  the log volume density;
* *above Euclidean* — "do endpoints sit at higher g_N-volume than under the Euclidean (N = 1) volume on
  the same set?": one-sided Mann–Whitney (family c), effect size the AUC.

Caveats that change the reading: endpoints off the tested stratum, runs that did not converge, a
quick run, and references failing R-hat ≤ 1.01 / bulk ESS ≥ 400 (ArviZ, through
:mod:`samplers.diagnostics`). A reference that fails is not used for an answer: the answer is
``"inconclusive"`` and ``trusted`` is False; its p-value is still shown.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from samplers import diagnostics as sdiag

from .hypothesis import TestResult

__all__ = ["Verdict", "ReferenceCheck", "verdicts", "reference_checks", "convergence_advice", "format_lines", "depth_block",
           "verdict_document", "RHAT_MAX", "ESS_MIN", "EFFECT_COLUMNS", "DIRECTION_ANSWER"]

RHAT_MAX = 1.01
ESS_MIN = 400.0
#: a depth whose excluded (not converged) runs exceed this share of its runs gets the caveat that its test sees a
#: selection of the runs
CONDITIONAL_SHARE = 0.1
#: effect types and their column names in the verdict table (one column per effect type)
EFFECT_COLUMNS = {"mean percentile": "mean percentile [95% CI]", "KS D": "KS D [95% CI]", "AUC": "AUC [95% CI]",
                  "W1/sd": "W1/sd", "energy distance": "energy distance"}


def _tag(depth: float) -> str:
    return "N=∞" if depth == math.inf else f"N={int(depth)}"


@dataclass(frozen=True)
class ReferenceCheck:
    """Convergence of one reference sample at one depth (R-hat and ESS of its log volume density)."""

    method: str
    n_draws: int
    ess: float
    rhat: float | None
    passed: bool
    reason: str = ""
    advice: str = ""  # what to change in the config, from what failed (:func:`convergence_advice`)


def reference_checks(res: Any) -> dict[tuple[str, float], ReferenceCheck]:
    """R-hat / bulk ESS of the log volume density of every reference sample (``res.sample_stats``).

    Exact i.i.d. draws pass by construction (ESS = number of draws). For MCMC: rank-normalized split
    R-hat ≤ 1.01 and bulk ESS ≥ 400 (Vehtari et al. 2021). Fields that samplers add to their results
    later (``rhat``, ``ess``, ``converged``) are honoured when present.
    """
    out = {}
    for key, sst in res.sample_stats.items():
        s = res.samples[key]
        v = np.asarray(sst.log_volume_density, dtype=np.float64)
        n = int(v.size)
        if s.method == "exact":
            out[key] = ReferenceCheck("exact", n, float(n), None, True)
            continue
        reasons = []
        if v.ndim != 2 or v.shape[-1] < 4 or not np.all(np.isfinite(v)):
            out[key] = ReferenceCheck(s.method, n, 1.0, math.inf, False,
                                      "fewer than 4 draws per chain or non-finite log ρ: no R-hat/ESS")
            continue
        extra = getattr(s, "extras", {}) or {}
        ess = float(sdiag.ess(v))
        rhat = float(sdiag.rhat(v))
        for key_, val in (("rhat", extra.get("rhat")), ("ess", extra.get("ess"))):  # a sampler's own numbers
            if val is not None and np.size(val):
                worst = float(np.max(val)) if key_ == "rhat" else float(np.min(val))
                rhat, ess = (max(rhat, worst), ess) if key_ == "rhat" else (rhat, min(ess, worst))
        if v.shape[0] < 2:
            reasons.append("one chain: R-hat cannot see non-mixing")
        if not rhat <= RHAT_MAX:
            reasons.append(f"R-hat {rhat:.3f} > {RHAT_MAX}")
        if ess < ESS_MIN:
            reasons.append(f"ESS {ess:.0f} < {ESS_MIN:.0f}")
        conv = extra.get("converged")
        if conv is not None and not bool(np.all(conv)):
            reasons.append("the sampler reports it did not converge")
        advice = convergence_advice(s, rhat, ess, v.shape) if reasons else ""
        out[key] = ReferenceCheck(s.method, n, ess, rhat, not reasons, "; ".join(reasons), advice)
    return out


def convergence_advice(s: Any, rhat: float, ess: float, shape: tuple[int, ...]) -> str:
    """What to change in a reference's config when it fails its convergence check, from what its diagnostics saw.

    ``s`` is the reference's :class:`analysis.runner.SampleSet` (method, target and the sampler's extras), ``shape``
    ``(chains, draws)`` of its log ρ.

    >>> from types import SimpleNamespace
    >>> s = SimpleNamespace(method="rmala", target={"measure": "gibbs", "beta": 100.0, "rank": 2}, extras={})
    >>> print(convergence_advice(s, 1.05, 150.0, (4, 500)))  # doctest: +NORMALIZE_WHITESPACE
    the chains have not mixed (R-hat 1.05): raise warmup and draws (e.g. draws = 1600); method = 'smc' tempers
    from β = 0 and mixes across components; at β = 100 the Gibbs law is close to its β → ∞ limit: measure =
    'gibbs_limit' samples that limit directly on S ∩ M_r
    """
    chains, draws = (shape[0], shape[-1]) if len(shape) == 2 else (1, int(np.prod(shape)))
    extra = getattr(s, "extras", {}) or {}
    target = getattr(s, "target", {}) or {}
    population = s.method in ("smc", "solution_smc")  # independent replicates, not chains
    more = min(max(2.0, 1.2 * ESS_MIN / max(ess, 1.0)), 10.0) if ess < ESS_MIN else 2.0
    draws_hint = f"draws = {int(math.ceil(draws * more / 100.0) * 100)}"
    parts = []
    if chains < 2:
        parts.append("one chain cannot show non-mixing: chains >= 4")
    if not rhat <= 1.1 and not population:
        tempering = "'smc'" if target.get("measure") == "gibbs" else "'solution_smc'"
        parts.append(f"the chains sit in different places (R-hat {rhat:.3g}): longer runs rarely fix that; a tempering "
                     f"method does (method = {tempering})")
    elif not rhat <= RHAT_MAX:
        parts.append(f"the replicates disagree (R-hat {rhat:.3g}): raise draws ({draws_hint}: more particles and "
                     "kernel centres per replicate)" if population else
                     f"the chains have not mixed (R-hat {rhat:.3g}): raise warmup and draws (e.g. {draws_hint})")
    elif ess < ESS_MIN:
        parts.append(f"ESS {ess:.0f} < {ESS_MIN:.0f}: raise draws (e.g. {draws_hint})")
    from samplers.diagnostics import COVERAGE_MAX, CONSISTENCY_Z_MAX, MISSED_MAX

    k = extra.get("worst_pareto_k")
    if k is not None and float(k) > 0.7:
        parts.append(f"the importance weights are heavy-tailed (k̂ {float(k):.2f}): raise draws (the proposal gets "
                     "more centres)")
    unc = extra.get("worst_uncovered")
    if unc is not None and float(unc) > COVERAGE_MAX:
        parts.append(f"the proposal misses {100 * float(unc):.1f} % of the mass: raise draws, or shrink the window "
                     "radius if the missed draws sit at its edge")
    z = extra.get("worst_consistency_z")
    if z is not None and float(z) > CONSISTENCY_Z_MAX:
        parts.append(f"output draws and weights disagree (|z| {float(z):.1f}): raise draws")
    missed = extra.get("worst_missed")
    if missed is not None and float(missed) > MISSED_MAX:
        parts.append(f"the importance sampling lost pieces the SMC stage found (share {float(missed):.2f}): raise "
                     "draws (more kernel centres)")
    beta = target.get("beta")
    if target.get("measure") == "gibbs" and not population and 1.1 >= rhat > RHAT_MAX:
        parts.append("method = 'smc' tempers from β = 0 and mixes across components")
    if target.get("measure") == "gibbs" and beta is not None and math.isfinite(float(beta)) and float(beta) >= 100:
        parts.append(f"at β = {float(beta):g} the Gibbs law is close to its β → ∞ limit: measure = 'gibbs_limit' "
                     "samples that limit directly on S ∩ M_r")
    return "; ".join(parts) if parts else "raise draws and warmup"


@dataclass(frozen=True)
class Verdict:
    """One verdict row: a question about endpoints at one depth against one reference measure."""

    depth: float
    reference: str
    question: str
    answer: str                 # "yes" / "no" / "no (lower)" / "mixed" / "not shown" / "not rejected" /
    #                             "inconclusive" / "not asked" (endpoints off the stratum)
    reject: bool                # the test rejects its null at alpha (whatever the caveats)
    alpha: float
    test: str
    p_value: float
    p_adjusted: float | None
    p_floor: float | None       # 1/(n_perm+1) for a permutation test
    at_floor: bool
    effect_name: str
    effect: float
    effect_ci: tuple[float, float] | None
    n_endpoints: int
    n_reference: int            # reference draws the test used (0: the exact reference CDF)
    ess: float | None
    rhat: float | None
    trusted: bool
    caveats: tuple[str, ...] = field(default_factory=tuple)

    def p_text(self) -> str:
        p = self.p_adjusted if self.p_adjusted is not None else self.p_value
        txt = f"p ≤ {self.p_floor:.2g} (floor)" if self.at_floor and self.p_floor else \
            (f"p = {p:.3g}" if p > 0 else "p < 1e-300 (underflow)")
        return txt + (" (BH-adjusted)" if self.p_adjusted is not None and not self.at_floor else "")

    def effect_text(self) -> str:
        ci = f" [{self.effect_ci[0]:.3g}, {self.effect_ci[1]:.3g}]" if self.effect_ci else ""
        return f"{self.effect_name} {self.effect:.3g}{ci}"

    def line(self, skip: tuple[str, ...] = ()) -> str:
        """One terminal line; caveats not in ``skip`` on their own indented lines."""
        ess = "" if self.ess is None else f", ESS of log ρ {self.ess:.0f}"
        ref = "the exact reference CDF" if self.n_reference == 0 else f"{self.n_reference} reference draws"
        head = (f"{self.reference}: {short_repr(self.question)} {self.answer.upper()} — {self.test}, "
                f"{self.p_text()}; {self.effect_text()}; n = {self.n_endpoints} endpoints / {ref}{ess}")
        return "\n".join([head] + [f"    caveat: {c}" for c in self.caveats if c not in skip])

    def to_dict(self) -> dict:
        d = asdict(self)
        d["depth"] = "inf" if self.depth == math.inf else int(self.depth)
        d["effect_ci"] = list(self.effect_ci) if self.effect_ci else None
        d["caveats"] = list(self.caveats)
        return d


#: the percentile family's answer from :meth:`analysis.hypothesis.VolumePercentileResult.direction`
DIRECTION_ANSWER = {"higher": "yes", "lower": "no (lower)", "mixed": "mixed", "not shown": "not shown"}

QUESTIONS = {
    "percentile": "do endpoints sit at higher g_N-volume than the {ref} measure?",
    "distribution": "do endpoints follow the {ref} measure?",
    "null": "do endpoints sit at higher g_N-volume than under the Euclidean (N=1) volume on the same set?",
}


SHORT = {
    QUESTIONS["null"]: "higher volume than Euclidean (N=1)?",
}


def short_repr(question: str) -> str:
    if question in SHORT:
        return SHORT[question]
    if question.startswith("do endpoints follow"):
        return "follow the reference?"
    return "higher volume than the reference?"


def _endpoint_caveats(res: Any, depth: float) -> list[str]:
    cfg = res.config
    keep = np.asarray(res.keep[depth])
    st = res.endpoint_stats[depth]
    out = []
    ranks = np.asarray(st.numerical_rank)[keep]
    if cfg.volume_rank != "numerical":
        off = int(np.sum(ranks != int(cfg.volume_rank)))
        if off:
            counts = ", ".join(f"rank {r}: {c}" for r, c in zip(*np.unique(ranks[ranks != int(cfg.volume_rank)],
                                                                           return_counts=True)))
            out.append(f"{_tag(depth)}: {off} of {keep.sum()} endpoints are off the tested stratum M_{cfg.volume_rank} "
                       f"({counts}; rtol {cfg.rtol:g}); they are scored at their best rank-{cfg.volume_rank} "
                       "approximation")
    elif ranks.size and np.ptp(ranks) > 0:
        counts = ", ".join(f"rank {r}: {c}" for r, c in zip(*np.unique(ranks, return_counts=True)))
        out.append(f"{_tag(depth)}: endpoints lie on several strata ({counts}); log ρ compares densities of different strata")
    status = np.asarray(res.endpoints[depth].status).astype(str)
    bad = status != "converged"
    if bad.any():
        counts = ", ".join(f"{k}: {v}" for k, v in zip(*np.unique(status[bad], return_counts=True)))
        dropped = int(np.sum(bad & ~keep))
        text = (f"{_tag(depth)}: {int(bad.sum())} of {status.size} runs did not converge ({counts}); "
                + (f"{dropped} excluded" if dropped == int(bad.sum()) else
                   f"{int(bad.sum()) - dropped} of them kept in the test"))
        if dropped > CONDITIONAL_SHARE * status.size:  # the answer is about the runs that converged, a selection
            from .runner import max_steps_hint

            text += (f"; the test sees only the {status.size - dropped} that did, a selection (the excluded ones may "
                     f"end elsewhere): give them more steps, {max_steps_hint(cfg)}")
        out.append(text)
    return out


def _pick(fam: str, tests: list[TestResult]) -> TestResult:
    if fam == "percentile":
        return next(t for t in tests if t.name == "percentile:small")
    if fam == "null":
        return tests[0]
    return min(tests, key=lambda t: (t.p_adjusted if t.p_adjusted is not None else t.p_value,
                                     t.name != "ks:log_volume_density"))


def verdicts(res: Any) -> list[Verdict]:
    """The verdict rows of a run, in the order depth, reference, question."""
    cfg = res.config
    checks = reference_checks(res)
    rows = []
    comps = res.comparisons() if hasattr(res, "comparisons") else _comparisons(res)
    base_by_depth = {d: _endpoint_caveats(res, d) for d in dict.fromkeys(c.depth for c in comps)}
    for comp in comps:
        depth, name = comp.depth, comp.reference
        base = base_by_depth[depth]
        for fam in ("distribution", "percentile", "null"):
            tests = comp.tests.get(fam)
            if not tests:
                continue
            t = _pick(fam, tests)
            ks = next((x for x in tests if x.name == "ks:log_volume_density"), None) if fam == "distribution" else t
            eff = ks if ks is not None else t
            p = t.p_adjusted if t.p_adjusted is not None else t.p_value
            reject = bool(p <= cfg.alpha)
            chk = checks.get((name, depth))
            caveats = list(base)
            note = next((r.note for r in cfg.references if r.name == name and getattr(r, "note", None)), None)
            if note:
                caveats.append(f"reference {name}: {note}")
            trusted = True
            if chk is not None and not chk.passed:
                trusted = False
                caveats.append(f"reference {name} failed its convergence check ({chk.reason}); not used for the "
                               f"answer; to fix: {chk.advice}")
            if t.notes and "only" in t.notes:
                caveats.append(t.notes.split("; ")[-1])
            if fam == "distribution":
                answer = "no" if reject else "not rejected"
            elif fam == "percentile" and getattr(res, "percentiles", {}).get((name, depth)) is not None:
                answer = DIRECTION_ANSWER[res.percentiles[(name, depth)].direction(cfg.alpha)]
            else:
                answer = "yes" if reject else "not shown"
            if not trusted:
                answer = "inconclusive"
            bias = getattr(res, "bias", {}).get(depth)
            if bias is not None and bias.stratum.reached is not True:
                answer = "not asked"
                caveats.append(f"{_tag(depth)}: the endpoints do not reach M_{bias.rank} as s → 0 "
                               f"({bias.stratum.answer}); no volume answer is given for them")
            rows.append(Verdict(
                depth=depth, reference=name, question=QUESTIONS[fam].format(ref=name), answer=answer, reject=reject,
                alpha=cfg.alpha, test=_test_label(t), p_value=t.p_value, p_adjusted=t.p_adjusted,
                p_floor=t.p_floor, at_floor=t.at_floor, effect_name=eff.effect_name or "effect",
                effect=float(eff.effect_size), effect_ci=eff.effect_ci, n_endpoints=t.n_x,
                n_reference=t.n_y,
                ess=(chk.ess if chk is not None else None), rhat=(chk.rhat if chk is not None else None),
                trusted=trusted, caveats=tuple(caveats)))
    return rows


def _comparisons(res: Any) -> list[Any]:
    """Comparison-like records from a result object without ``comparisons()`` (duck typing for tests)."""
    from types import SimpleNamespace

    out = []
    for depth in res.config.depths:
        names = list(dict.fromkeys(n for (_, n, d) in res.tests if d == depth))
        for name in names:
            tests = {fam: list(t) for (fam, n, d), t in res.tests.items() if n == name and d == depth}
            out.append(SimpleNamespace(depth=depth, reference=name, tests=tests))
    return out


def _test_label(t: TestResult) -> str:
    kind, _, stat = t.name.partition(":")
    return {
        "ks": f"permutation KS on {stat}",
        "ad": f"permutation Anderson–Darling on {stat}",
        "energy": f"permutation energy test on {stat}",
        "percentile": "one-sided KS of the volume percentiles against U(0,1)",
        "mannwhitney": "one-sided Mann–Whitney on log ρ",
    }.get(kind, t.name)


def format_lines(rows: list[Verdict], cfg: Any, *, quick: bool = False, res: Any = None) -> list[str]:
    """The verdict as printed by ``dlnvolume run``: a header, then per depth the caveats shared by its
    rows and one line per reference and question.

    Examples
    --------
    >>> from analysis.experiment import parse_config
    >>> format_lines([], parse_config({"task": {"kind": "diagonal_2x2"}}))
    ['verdict: no hypothesis test was run (no references or no test families in this experiment)']
    """
    if res is not None and getattr(res, "bias", None):
        head = (f"verdict at α = {cfg.alpha:g} (init scales {', '.join(f'{x:g}' for x in cfg.scales)}, same seeds; "
                f"tests on the smallest)" + (" — QUICK RUN: a smoke test rather than evidence" if quick else "") + ":")
        out = [head]
        for depth in dict.fromkeys([*res.bias, *(r.depth for r in rows)]):
            out += depth_block(res, depth, rows)
        return out + untested_lines(res, cfg, {*res.bias, *(r.depth for r in rows)})
    if not rows:
        untested = untested_lines(res, cfg, set())
        if untested and cfg.references:
            return [f"verdict at α = {cfg.alpha:g}: no depth has runs to test"] + untested
        return ["verdict: no hypothesis test was run (no references or no test families in this experiment)"]
    stratum = "each endpoint's numerical rank" if cfg.volume_rank == "numerical" else f"M_{cfg.volume_rank}"
    out = [f"verdict at α = {cfg.alpha:g} (permutation tests: n_perm = {cfg.n_perm}, floor p = "
           f"{1 / (cfg.n_perm + 1):.2g}; log ρ on {stratum}, rtol {cfg.rtol:g})"
           + (" — QUICK RUN: reduced sizes, a smoke test rather than evidence" if quick else "") + ":"]
    for depth in dict.fromkeys(r.depth for r in rows):
        at = [r for r in rows if r.depth == depth]
        common = tuple(c for c in at[0].caveats if all(c in r.caveats for r in at))
        out.append(f"  {_tag(depth)}" + "".join(f"\n    caveat: {c}" for c in common))
        out += ["    " + r.line(skip=common).replace("\n", "\n    ") for r in at]
    return out + untested_lines(res, cfg, {r.depth for r in rows})


def untested_lines(res: Any, cfg: Any, answered: set) -> list[str]:
    """One line per flow depth that has no verdict because too few of its runs were kept (instead of a depth
    that silently goes missing from the verdict)."""
    if res is None:
        return []
    from .runner import kept_summary

    out = []
    for depth in cfg.depths:
        keep = getattr(res, "keep", {}).get(depth)
        ep = getattr(res, "endpoints", {}).get(depth)
        if depth in answered or keep is None or ep is None:
            continue
        keep = np.asarray(keep)
        if keep.sum() < 2:
            out.append(f"  {_tag(depth)}: no test — {int(keep.sum())} of {keep.size} runs kept ({kept_summary(ep, keep)})")
    return out


# --------------------------------------------------------------------------- the implicit-bias verdict
def _g(x: float | None) -> str:
    if x is None or math.isnan(x):
        return "–"
    return ("∞" if x > 0 else "−∞") if math.isinf(x) else f"{x:.2g}"


def _stratum_line(b: Any) -> str:
    st = b.stratum
    s_min = b.scales[-1]
    parts = []
    for name, (n, t) in st.groups.items():
        who = "" if name == "all" else f"{name} ({n} runs): "
        if t.answer == "within resolution":
            parts.append(f"{who}σ_{b.rank + 1}/σ_1 ≤ {_g(st.bound)}, below the flows' resolution")
        else:
            parts.append(f"{who}σ_{b.rank + 1}/σ_1 {_g(t.median[-1])} at s={s_min:g}, slope {t.slope:.2f} "
                         f"[{t.slope_ci[0]:.2f}, {t.slope_ci[1]:.2f}]")
    extra = ""
    if st.reached is False:
        extra = f"; rank {st.rank_reached} reached"
        if math.isfinite(b.nuclear_gap[-1]):
            extra += f", ‖X‖_* − min over S {_g(b.nuclear_gap[-1])}"
    verdict = {True: "REACHED", False: "NOT REACHED", None: "UNDETERMINED"}[st.reached]
    return f"stratum M_{b.rank}: {verdict} ({st.answer}) — " + "; ".join(parts) + extra


def _point_line(b: Any) -> str:
    s_min = b.scales[-1]
    if not b.approach:
        return "point: no predicted points"
    order = sorted(b.approach, key=lambda k: b.approach[k].median[-1])
    if b.best is not None:
        from .ladder import tied

        t = b.approach[b.best]
        group = tied(b.approach, b.best)
        rest = [k for k in order if k not in group][:2]
        others = ", ".join(f"{k} {_g(b.approach[k].median[-1])}" for k in rest)
        how = "at it at every scale" if t.answer == "at floor" else f"slope {t.slope:.2f}"
        names = b.best if len(group) == 1 else " = ".join(group) + " (not told apart here)"
        return (f"point: APPROACHES {names} (median distance {_g(t.median[-1])} at s={s_min:g}, {how})"
                + (f"; others: {others}" if others else ""))
    near = ", ".join(f"{k} {_g(b.approach[k].median[-1])} (slope {b.approach[k].slope:.2f} "
                     f"[{b.approach[k].slope_ci[0]:.2f}, {b.approach[k].slope_ci[1]:.2f}])" for k in order[:2])
    return f"point: NONE of the predicted points is approached (nearest at s={s_min:g}: {near})"


def collinear_classes(pairs: list) -> list[list[str]]:
    """Connected groups of statistics linked by ``(a, b, spearman)`` pairs (laws that cannot be told apart).

    >>> collinear_classes([("a", "b", 1.0), ("b", "c", -1.0), ("x", "y", 0.995)])
    [['a', 'b', 'c'], ['x', 'y']]
    """
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            x = parent[x]
        return x

    order: list[str] = []
    for a, c, _ in pairs:
        order += [x for x in (a, c) if x not in order]
        ra, rc = find(a), find(c)
        if ra != rc:
            parent[rc] = ra
    groups: dict[str, list[str]] = {}
    for x in order:
        groups.setdefault(find(x), []).append(x)
    return [g for g in groups.values() if len(g) > 1]


def _law_line(b: Any) -> str:
    lc = b.best_law
    if lc is None:
        return "law: " + (b.notes[0] if b.notes else "not fitted")
    fits = [f for k, f in lc.fits.items() if k != "reference"]
    ranked = sorted(lc.fits.values(), key=lambda f: f.aic)
    top = ranked[0]
    txt = (f"law (tilts of {b.law_reference}, s={b.scales[-1]:g}): best by AIC {top.statistic}"
           + (f" θ̂ = {_g(top.theta)} [{_g(top.theta_ci[0])}, {_g(top.theta_ci[1])}]" if top.statistic != "none" else ""))
    if len(ranked) > 1:
        txt += f", next {ranked[1].statistic} ΔAIC {_g(ranked[1].delta_aic)}"
    if lc.best is None:
        txt += " (not separated or not reliable: no best law)"
    classes = collinear_classes(lc.collinear)
    if classes:
        txt += "; one statistic on this task (|Spearman| > 0.99): " + "; ".join("{" + ", ".join(c) + "}" for c in classes)
        if any({"log_volume_density", "-nuclear_norm"} <= set(c) for c in classes):
            txt += " — here higher volume and lower nuclear norm are one hypothesis (docs/math.md §7.1)"
    grow = [k for k, v in b.theta_trends.items() if v.get("collapsing")]
    if grow:
        txt += "; θ̂ grows as s shrinks (the law collapses onto points): " + (
            "every statistic" if len(grow) == len(b.theta_trends) else ", ".join(grow))
    del fits
    return txt


def _tests_line(rows: list[Verdict]) -> str:
    if rows and all(r.answer == "not asked" for r in rows):
        return "tests: not asked — no volume answer for endpoints that do not reach the stratum"
    by_ref: dict[str, list[Verdict]] = {}
    for r in rows:
        by_ref.setdefault(r.reference, []).append(r)
    parts = []
    for ref, rs in by_ref.items():
        bits = []
        for r in rs:
            q = short_repr(r.question).rstrip("?").replace(" than the reference", "").replace(" (N=1)", "")
            bits.append(f"{q} {r.answer.upper()} ({r.effect_name} {r.effect:.2g}, {r.p_text()})")
        parts.append(f"vs {ref}: " + "; ".join(bits))
    return "tests: " + " | ".join(parts) if parts else "tests: none"


def depth_block(res: Any, depth: float, rows: list[Verdict]) -> list[str]:
    """At most five lines answering, for one depth: the stratum reached, the point approached, the best law,
    the tests against the references (answers only when the stratum is reached), caveats."""
    b = getattr(res, "bias", {}).get(depth)
    at = [r for r in rows if r.depth == depth]
    lines = []
    if b is not None:
        lines += [_stratum_line(b), _point_line(b), _law_line(b)]
    lines.append(_tests_line(at))
    skip = ("no volume answer",) + (("off the tested stratum",) if b is not None and b.stratum.reached is not True else ())
    cav = list(dict.fromkeys(c for r in at for c in r.caveats if not any(k in c for k in skip)))
    res_chk = getattr(res, "resolution", {}).get(depth)
    if res_chk is not None and res_chk.moved > 0:
        cav.append(f"{int(round(res_chk.moved * res_chk.n))} of {res_chk.n} re-run endpoints moved by > 1e-3 at rtol "
                   f"{res_chk.tight_rtol:g} (largest {_g(float(np.max(res_chk.change)))})")
    if cav:
        lines.append("caveats: " + " | ".join(c.replace(f"{_tag(depth)}: ", "") for c in cav))
    return [f"{_tag(depth):>5}  {lines[0]}"] + [f"       {x}" for x in lines[1:]]


def verdict_document(res: Any, rows: list[Verdict]) -> dict:
    """``verdict.json``: per depth the stratum, the predictors with their points, median distance at the
    smallest scale and ΔAIC of their distance law, the best predictor, and the answer text."""
    out = []
    depths = list(dict.fromkeys([*getattr(res, "bias", {}), *(r.depth for r in rows)]))
    for depth in depths:
        b = getattr(res, "bias", {}).get(depth)
        at = [r for r in rows if r.depth == depth]
        d: dict[str, Any] = {"depth": "inf" if depth == math.inf else int(depth)}
        if b is not None:
            lc = b.best_law
            st = b.stratum
            d["stratum"] = {"rank": b.rank, "reached": st.reached, "slope": st.slope, "answer": st.answer,
                            "groups": {k: {"n": n, "answer": t.answer, "slope": t.slope, "slope_ci": list(t.slope_ci),
                                           "median_ratio": list(t.median)} for k, (n, t) in st.groups.items()},
                            "resolution_bound": st.bound, "rank_reached": st.rank_reached,
                            "off_fraction": list(st.off_fraction),
                            "nuclear_gap": list(b.nuclear_gap)}
            d["scales"] = list(b.scales)
            preds = []
            for k, p in b.predictions.items():
                fit = lc.fits.get(f"-dist:{k}") if lc is not None else None
                t = b.approach.get(k)
                preds.append({"name": k, "points": np.asarray(p.points).tolist(), "values": np.asarray(p.values).tolist(),
                              "rank": p.rank, "applies": p.applies, "note": p.note,
                              "median_distance": t.median[-1] if t is not None else None,
                              "distance_by_scale": list(t.median) if t is not None else None,
                              "approach": t.answer if t is not None else None,
                              "delta_aic": None if fit is None or fit.delta_aic is None else float(fit.delta_aic)})
            d["predictors"] = preds
            d["best"] = b.best
            d["laws"] = None if lc is None else lc.to_dict()
            d["theta_trends"] = b.theta_trends
        else:
            d["stratum"] = None
            d["predictors"] = []
            d["best"] = None
        d["tests"] = [r.to_dict() for r in at]
        d["answer"] = "\n".join(x.strip() for x in depth_block(res, depth, rows))
        out.append(d)
    return {"depths": out}
