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

__all__ = ["Verdict", "ReferenceCheck", "verdicts", "reference_checks", "format_lines", "RHAT_MAX", "ESS_MIN",
           "EFFECT_COLUMNS"]

RHAT_MAX = 1.01
ESS_MIN = 400.0
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
        out[key] = ReferenceCheck(s.method, n, ess, rhat, not reasons, "; ".join(reasons))
    return out


@dataclass(frozen=True)
class Verdict:
    """One verdict row: a question about endpoints at one depth against one reference measure."""

    depth: float
    reference: str
    question: str
    answer: str                 # "yes" / "no" / "not shown" / "not rejected" / "inconclusive"
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
        out.append(f"{_tag(depth)}: {int(bad.sum())} of {status.size} runs did not converge ({counts}); "
                   + (f"{dropped} excluded" if dropped == int(bad.sum()) else
                      f"{int(bad.sum()) - dropped} of them kept in the test"))
    return out


def _on_stratum_percentiles(res: Any, name: str, depth: float) -> str:
    """The percentile answer restricted to the kept endpoints ON the tested stratum (same percentiles)."""
    from scipy import stats

    cfg = res.config
    pr = getattr(res, "percentiles", {}).get((name, depth))
    if pr is None or cfg.volume_rank == "numerical":
        return ""
    keep = np.asarray(res.keep[depth])
    on = (np.asarray(res.endpoint_stats[depth].numerical_rank) == int(cfg.volume_rank))[keep]
    if on.all():
        return ""
    u = np.asarray(pr.percentiles)[on]
    if u.size < 2:
        return f"{_tag(depth)}, {name}: only {u.size} kept endpoint(s) on M_{cfg.volume_rank}: no test on the stratum alone"
    p = float(stats.kstest(u, "uniform", alternative="greater").pvalue)
    ptxt = f"p = {p:.3g}" if p > 0 else "p < 1e-300"
    return (f"{_tag(depth)}, {name}: on the {u.size} endpoints on M_{cfg.volume_rank} alone: mean percentile {u.mean():.3g}, one-sided KS "
            f"{ptxt} ({'reject' if p <= cfg.alpha else 'not rejected'} at α = {cfg.alpha:g})")


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
                               "answer")
            if t.notes and "only" in t.notes:
                caveats.append(t.notes.split("; ")[-1])
            if fam == "percentile":
                sub = _on_stratum_percentiles(res, name, depth)
                if sub:
                    caveats.append(sub)
            if fam == "distribution":
                answer = "no" if reject else "not rejected"
            else:
                answer = "yes" if reject else "not shown"
            if not trusted:
                answer = "inconclusive"
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


def format_lines(rows: list[Verdict], cfg: Any, *, quick: bool = False) -> list[str]:
    """The verdict as printed by ``dlnvolume run``: a header, then per depth the caveats shared by its
    rows and one line per reference and question.

    Examples
    --------
    >>> from analysis.experiment import parse_config
    >>> format_lines([], parse_config({"task": {"kind": "diagonal_2x2"}}))
    ['verdict: no hypothesis test was run (no references or no test families in this experiment)']
    """
    if not rows:
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
    return out
