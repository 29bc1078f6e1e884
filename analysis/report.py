"""Outputs of a run: figures, ``results.nc``, ``endpoints.npz``, ``report.md``, ``report.html``.

``report.html`` is self-contained: figures are embedded as base64 PNG.

All outputs are first written into a staging folder ``OUT/.staging-*`` and then moved into place
with ``os.replace`` (atomic per file, same file system), so a failure while writing (disk full,
permission denied, ...) leaves every previous output file intact.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from dlnvolume import __version__ as dlnvolume_version
from dlnvolume.parallel import AtomicWriteError, atomic_save_npz

STAGING_PREFIX = ".staging-"
# commit order: data first, the report last (a report.md newer than the data means a complete set)
_LAST = ("run.json", "report.html", "report.md")

from . import plots
from .runner import ExperimentResult, depth_tag

__all__ = ["write_outputs"]


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if not math.isfinite(v):
            return str(v)
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.3g}"
        return f"{v:.4g}"
    return str(v)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_fmt(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _endpoint_rows(res: ExperimentResult) -> list[list[Any]]:
    rows = []
    for depth, ep in res.endpoints.items():
        st = res.endpoint_stats[depth]
        keep = res.keep[depth]
        status = np.asarray(ep.status).astype(str)
        counts = ", ".join(f"{k}: {v}" for k, v in zip(*np.unique(status, return_counts=True)))
        sel = keep if keep.any() else np.ones_like(keep)
        row = [plots.depth_label(depth), counts, int(keep.sum()),
               float(np.median(np.asarray(ep.loss)[sel])),
               float(np.mean(st.numerical_rank[sel] == 1)),
               float(np.median(st.effective_rank[sel])), float(np.median(st.nuclear_norm[sel])),
               float(np.median(st.log_volume_density[sel]))]
        if st.hyperbola is not None and res.config.task["kind"] == "diagonal_2x2":
            row.append(float(np.median(st.hyperbola.distance_to_corner[sel])))
        if st.test_error is not None:
            row.append(float(np.median(st.test_error[sel])))
        rows.append(row)
    return rows


def _stratum(cfg: Any) -> str:
    return "each matrix's numerical-rank stratum" if cfg.volume_rank == "numerical" else f"M_{cfg.volume_rank}"


def histogram_panels(res: ExperimentResult) -> list[dict]:
    """The data of the volume-histogram figure, per depth: the kept endpoints' log ρ and each
    reference's log ρ — the arrays the tests used (``res.endpoint_stats``, ``res.sample_stats``)."""
    panels = []
    for depth in res.endpoints:
        keep = res.keep[depth]
        refs = {n: res.sample_stats[(n, d)].log_volume_density for (n, d) in res.sample_stats if d == depth}
        if depth in res.null_log_volume:
            refs["euclidean (N=1)"] = res.null_log_volume[depth]
        legend = {}
        for (fam, name, d), tests in res.tests.items():
            if d != depth:
                continue
            for t in tests:
                if t.name in ("ks:log_volume_density", "percentile:small", "mannwhitney:log_volume_density"):
                    key = "euclidean (N=1)" if fam == "null" else name
                    legend[key] = legend.get(key, "") + f"; {t.name.split(':')[0]} p={_fmt(t.p_value)}"
        panels.append({"depth": depth, "endpoints": res.endpoint_stats[depth].log_volume_density[keep],
                       "references": refs, "legend": legend})
    return panels


def _figures(res: ExperimentResult, out: Path, trees: dict[str, Any]) -> list[tuple[str, str]]:
    cfg = res.config
    figs: list[tuple[str, str]] = []
    fdir = out / "figures"
    fdir.mkdir(exist_ok=True)
    depths = list(res.endpoints)
    panels = histogram_panels(res)
    fig = plots.volume_histograms(panels)
    plots.save(fig, fdir / "volume_histograms.png")
    figs.append(("volume_histograms.png", "Log volume density of flow endpoints vs reference draws, per depth."))
    if cfg.task["kind"] == "diagonal_2x2":
        fig = plots.hyperbola_picture([{"depth": d, "X": np.asarray(res.endpoints[d].X)} for d in depths])
        plots.save(fig, fdir / "hyperbola.png")
        figs.append(("hyperbola.png", "Endpoints on the (a, b) = (X12, X21) plane; red: rank-1 hyperbola ab = 1; "
                                      "shading: log ρ_N on the rank-1 stratum."))
    if res.bias:
        fig = plots.ladder([{"depth": d, "scales": b.scales, "distances": b.distances, "best": b.best,
                             "ratios": {k: t.median for k, (_, t) in b.stratum.groups.items()}}
                            for d, b in res.bias.items()])
        plots.save(fig, fdir / "ladder.png")
        figs.append(("ladder.png", "Median distance of the endpoints to each predictor's nearest point (quartile "
                                   "band) and σ_{r+1}/σ_1 (dashed), against the initialization scale s "
                                   "(decreasing to the right); the same seeds at every scale."))
    fig = plots.spectra([{"depth": d, "sigma": res.endpoint_stats[d].singular_values} for d in depths])
    plots.save(fig, fdir / "spectra.png")
    figs.append(("spectra.png", "Singular values of endpoints (median, 10–90% band)."))
    if cfg.trace_plots:
        from . import diagnostics

        for name, tree in trees.items():
            if tree["posterior"].attrs.get("exact"):
                continue
            obj = diagnostics.to_arviz(tree)
            vars_ = [v for v in ("log_volume_density", "nuclear_norm") if v in tree["posterior"].data_vars]
            for depth in tree["posterior"]["depth"].values:
                d = float(depth)
                for kind, fn in (("trace", diagnostics.plot_trace), ("rank", diagnostics.plot_rank)):
                    try:
                        fig = fn(obj, vars_, coords={"depth": [d]})
                    except Exception as exc:  # noqa: BLE001 - a failing plot must not lose the run
                        res.notes.append(f"{kind} plot {name} {depth_tag(d)} failed: {type(exc).__name__}: {exc}")
                        continue
                    fname = f"{kind}_{name}_{depth_tag(d)}.png"
                    plots.save(fig, fdir / fname)
                    figs.append((fname, f"ArviZ {kind} plot of the {name} reference at {plots.depth_label(d)}: "
                                        f"log ρ on {_stratum(cfg)} "
                                        "and nuclear norm, per chain (the arrays of results.nc)."))
    return figs


def reference_diagnostics(res: ExperimentResult) -> dict:
    """``{(reference, depth): summary}``: the dicts the runner computed once (:meth:`SampleSet.summary`);
    ``results.nc``, ``tests.json`` and the report all show these."""
    got = getattr(res, "reference_diagnostics", None)
    return dict(got) if got else {k: s.summary() for k, s in res.samples.items()}


def _diag_rows(res: ExperimentResult) -> list[list[Any]]:
    """The report's reference-diagnostics table (one row per reference and depth)."""
    rows = []
    for (name, depth), d in reference_diagnostics(res).items():
        def f(x: Any, fmt: str = ".3g") -> str:
            return "–" if x is None else format(x, fmt)

        pieces = _pieces_text(d.get("pieces"))
        dim = ("–" if d.get("dimension") is None else
               f"{d['dimension']}" + (f" (nominal {d['nominal_dimension']})" if d.get("nominal_dimension") is not None
                                      else ""))
        w = d.get("weight_ess")
        fails = ", ".join(f"{k} {v}" for k, v in d.get("failures", {}).items() if v) or "0"
        conv = "–" if d.get("converged") is None else ("yes" if d["converged"] else "**NO**")
        rows.append([name, plots.depth_label(depth), d["method"], conv, f(d.get("rhat"), ".4f"),
                     f(d.get("ess_bulk"), ".0f"), f(d.get("ess_tail"), ".0f"),
                     "–" if not w else f"{min(w):.0f}–{max(w):.0f}", pieces, dim, fails])
    return rows


#: sign pieces listed by name in the report's diagnostics table (the heaviest); the rest are summed (a 5×5 task
#: with 13 unobserved entries has hundreds; every one is in results.nc and tests.json)
PIECES_SHOWN = 6


def _pieces_text(pieces: dict | None) -> str:
    """The report's text of a reference's piece masses: the :data:`PIECES_SHOWN` heaviest, then what the others
    hold together.

    >>> _pieces_text({"+-": (0.5, 0.01), "-+": (0.3, 0.02), "++": (0.2, 0.01)})
    '+- 0.500 ± 0.01; -+ 0.300 ± 0.02; ++ 0.200 ± 0.01'
    >>> _pieces_text({f"p{i}": (0.1, 0.01) for i in range(10)})
    'p0 0.100 ± 0.01; p1 0.100 ± 0.01; p2 0.100 ± 0.01; p3 0.100 ± 0.01; p4 0.100 ± 0.01; p5 0.100 ± 0.01; 4 more pieces 0.400'
    """
    if not pieces:
        return "–"
    order = sorted(pieces, key=lambda k: -pieces[k][0])
    text = "; ".join(f"{k} {pieces[k][0]:.3f} ± {pieces[k][1]:.2g}" for k in order[:PIECES_SHOWN])
    rest = order[PIECES_SHOWN:]
    if rest:
        text += f"; {len(rest)} more pieces {sum(pieces[k][0] for k in rest):.3f}"
    return text


DIAG_HEADER = ["reference", "depth", "method", "converged", "R-hat", "ESS bulk", "ESS tail",
               "weight ESS (per chain)", "piece masses ± MC s.e.", "dimension", "failures"]


def reference_trees(res: ExperimentResult) -> dict[str, Any]:
    """One ``posterior``/``sample_stats`` tree per reference (dimension ``depth``), from the statistics
    the tests used (``res.sample_stats``)."""
    from . import diagnostics

    cfg = res.config
    vr = None if cfg.volume_rank == "numerical" else int(cfg.volume_rank)
    trees = {}
    for ref in cfg.references:
        depths = [d for (n, d) in res.samples if n == ref.name]
        if not depths:
            continue
        samples = {d: res.samples[(ref.name, d)] for d in depths}
        stats = {d: res.sample_stats[(ref.name, d)] for d in depths}
        diags = reference_diagnostics(res)
        trees[ref.name] = diagnostics.reference_tree(
            samples, stats, exact=samples[depths[0]].method == "exact", volume_rank=vr, rtol=cfg.rtol,
            attrs={"reference": ref.name, "seed": cfg.seed},
            summaries={d: diags[(ref.name, d)] for d in depths if (ref.name, d) in diags})
    return trees


def _inference_data(res: ExperimentResult, out: Path, trees: dict[str, Any]) -> tuple[list[str], dict]:
    from . import diagnostics

    cfg = res.config
    vr = None if cfg.volume_rank == "numerical" else int(cfg.volume_rank)
    problems: list[str] = []
    summaries = {}
    for name, tree in trees.items():
        if tree["posterior"].attrs.get("exact"):
            continue
        summ = diagnostics.summary(diagnostics.to_arviz(tree), warn=False)
        problems += [f"{name}: {p}" for p in summ.problems]
        summaries[name] = summ.table
    ep = diagnostics.endpoints_dataset(res.endpoints, res.endpoint_stats, res.keep, volume_rank=vr, rtol=cfg.rtol,
                                       attrs={"seed": cfg.seed}) if res.endpoints else None
    attrs = {"experiment": cfg.name, "seed": cfg.seed, **diagnostics.stratum_attrs(vr, cfg.rtol),
             "dlnvolume_version": dlnvolume_version}
    from .bias import bias_dataset

    diagnostics.save(diagnostics.results_tree(trees, ep, res.task, attrs, bias=bias_dataset(res.bias, res.resolution)),
                     out / "results.nc")
    return problems, summaries


def _save_endpoints(res: ExperimentResult, out: Path) -> None:
    arrays = {}
    for depth, ep in res.endpoints.items():
        t = depth_tag(depth)
        arrays[f"X_{t}"] = np.asarray(ep.X)
        arrays[f"X0_{t}"] = np.asarray(ep.X0)
        arrays[f"seeds_{t}"] = np.asarray(ep.seeds)
        arrays[f"status_{t}"] = np.asarray(ep.status).astype(str)
        arrays[f"loss_{t}"] = np.asarray(ep.loss)
        arrays[f"t_{t}"] = np.asarray(ep.t)
    atomic_save_npz(out / "endpoints.npz", **arrays)


def _tests_json(res: ExperimentResult, verdicts: list | None = None) -> str:
    """``tests.json``: the decision settings (``alpha``, ``n_perm``, the permutation floor
    ``1/(n_perm+1)``, the stratum and tolerance), the verdict rows and every test result (family,
    reference, depth, name, statistic, p-values, ``reject`` at ``alpha``, effect size, sample sizes).
    Floats are written with ``repr`` precision, so two runs can be compared exactly."""
    cfg = res.config
    floor = 1.0 / (cfg.n_perm + 1)
    rows = []
    for (fam, name, depth), tests in res.tests.items():
        for t in tests:
            p = t.p_adjusted if t.p_adjusted is not None else t.p_value
            rows.append({"family": fam, "reference": name, "depth": depth_tag(depth), "test": t.name,
                         "statistic": t.statistic, "p_value": t.p_value, "p_adjusted": t.p_adjusted,
                         "reject": bool(p <= cfg.alpha), "at_permutation_floor": bool(t.p_value <= floor * (1 + 1e-9)
                                                                                  and "permutation" in t.notes),
                         "effect_name": t.effect_name, "effect_size": t.effect_size,
                         "effect_ci": list(t.effect_ci) if t.effect_ci is not None else None,
                         "n_x": t.n_x, "n_y": t.n_y, "ess_used": t.ess_used,
                         "measure_x": t.measure_x, "measure_y": t.measure_y, "notes": t.notes})
    doc = {"alpha": cfg.alpha, "n_perm": cfg.n_perm, "permutation_floor": floor,
           "volume_rank": cfg.volume_rank, "rtol": cfg.rtol,
           "verdict": [v.to_dict() for v in (verdicts or [])], "tests": rows,
           "reference_diagnostics": [{"reference": name, "depth": depth_tag(depth), **d}
                                     for (name, depth), d in reference_diagnostics(res).items()]}
    return json.dumps(doc, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o))


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


def _bias_section(res: ExperimentResult) -> list[str]:
    """The ladder, the predictors and the laws per depth (the arrays of ``results.nc`` group ``bias``)."""
    if not res.bias:
        return []
    scales = ", ".join(f"{s:g}" for s in res.config.scales)
    L = ["## Which implicit bias? Stratum, predicted points, rival laws", "",
         f"Every depth runs its flows at the initialization scales {scales}"
         " with the same seeds (run i starts from s·D_i). *Stratum*: the per-run log–log slope of σ_(r+1)/σ_1 "
         "against s (median, 95 % bootstrap interval); 'tends to M_r' when the interval lies above 0.25, 'ends off' "
         "when below (docs/math.md §7.3). *Points*: distance of each endpoint to the nearest predicted point of each "
         "hypothesis; a predictor is approached when that distance shrinks with s by the same rule. *Laws*: tilts "
         "exp(θ·T) of the solution-set reference, θ by maximum likelihood; ΔAIC against the best law.", ""]
    rows = []
    for d, b in res.bias.items():
        for g, (n, t) in b.stratum.groups.items():
            rows.append([plots.depth_label(d), g, n, " / ".join(_fmt(x) for x in t.median),
                         f"{t.slope:.2f} [{t.slope_ci[0]:.2f}, {t.slope_ci[1]:.2f}]", t.answer])
        chk = res.resolution.get(d)
        if chk is not None:
            rows.append([plots.depth_label(d), f"re-run at rtol {chk.tight_rtol:g}", chk.n,
                         f"ratio factor {chk.factor:.3g}", "resolved" if chk.resolved else "NOT resolved",
                         f"{chk.moved:.2f} moved > 1e-3"])
    L += ["### Stratum", "", _table(["depth", "group", "runs", "median σ_{r+1}/σ_1 by scale", "slope [95%]", "answer"],
                                   rows), ""]
    rows = []
    for d, b in res.bias.items():
        for k, p in b.predictions.items():
            t = b.approach.get(k)
            val = ", ".join(_fmt(v) for v in np.asarray(p.values)[:3])
            rows.append([plots.depth_label(d), k, len(p.points), val, p.rank,
                         "–" if t is None else " / ".join(_fmt(x) for x in t.median),
                         "–" if t is None else f"{t.slope:.2f} [{t.slope_ci[0]:.2f}, {t.slope_ci[1]:.2f}]",
                         "–" if t is None else t.answer, p.note or ""])
    L += ["### Predicted points", "", _table(["depth", "predictor", "points", "objective", "rank",
                                              "median distance by scale", "slope [95%]", "answer", "note"], rows), ""]
    rows = []
    for d, b in res.bias.items():
        for s_, lc in b.laws.items():
            for k, f in lc.fits.items():
                if k == "reference":
                    continue
                tr = b.theta_trends.get(k, {})
                rows.append([plots.depth_label(d), f"{s_:g}", k, f"{_fmt(f.theta)} [{_fmt(f.theta_ci[0])}, "
                             f"{_fmt(f.theta_ci[1])}]", f.delta_aic, f.loglik_se, f.weight_ess,
                             "yes" if f.reliable else "no", "collapsing" if tr.get("collapsing") else ""])
    if rows:
        L += ["### Rival laws", "", _table(["depth", "s", "statistic T", "θ̂ [95% profile]", "ΔAIC", "MC s.e. of ℓ",
                                            "weight ESS", "reliable", "θ̂ along s"], rows), ""]
    return L


def _ci(v: Any) -> str:
    if v.effect_ci is None:
        return f"{v.effect:.3g}"
    return f"{v.effect:.3g} [{v.effect_ci[0]:.3g}, {v.effect_ci[1]:.3g}]"


def _verdict_section(res: ExperimentResult, verdicts: list) -> list[str]:
    from .verdict import EFFECT_COLUMNS, QUESTIONS
    from .verdict import short_repr as short_question

    from .verdict import untested_lines

    cfg = res.config
    L = ["## Verdict", ""]
    untested = [x.strip() for x in untested_lines(res, cfg, {v.depth for v in verdicts})]
    untested = (["Depths without a test (too few runs kept):", ""] + [f"- {x}" for x in untested] + [""]
                if untested else [])
    if not verdicts:
        why = ("this experiment has no references" if not cfg.references else
               "no test family is configured" if not cfg.families else "no depth kept two or more endpoints")
        return L + [f"**No hypothesis test was run**: {why}. The tables below are descriptive only.", ""] + untested
    stratum = "each endpoint's numerical rank" if cfg.volume_rank == "numerical" else f"M_{cfg.volume_rank}"
    L += [f"At α = {cfg.alpha:g}. Permutation tests use n_perm = {cfg.n_perm} permutations, so their smallest "
          f"possible p-value (the floor) is 1/(n_perm+1) = {1 / (cfg.n_perm + 1):.2g}; \"p ≤ floor\" means no "
          f"permutation reached the observed statistic. log ρ is the log g_N-volume density on {stratum} "
          f"(rank tolerance rtol = {cfg.rtol:g}). References failing R-hat ≤ 1.01 or ESS ≥ 400 are not used for "
          "an answer (\"inconclusive\"). The questions: *follow the reference?* — "
          + QUESTIONS["distribution"].format(ref="reference") + " (no = rejected); *higher volume than the reference?* — "
          + QUESTIONS["percentile"].format(ref="reference") + " *higher volume than Euclidean (N=1)?* — "
          + QUESTIONS["null"] + " Tests on log ρ use permutation p-values except the percentile KS and "
          "Mann–Whitney tests.", ""]
    kinds = [k for k in EFFECT_COLUMNS if any(v.effect_name == k for v in verdicts)]
    notes: list[str] = []
    rows = []
    for v in verdicts:
        marks = []
        for c in v.caveats:
            if c not in notes:
                notes.append(c)
            marks.append(str(notes.index(c) + 1))
        p = v.p_adjusted if v.p_adjusted is not None else v.p_value
        ptxt = f"≤ {_fmt(v.p_floor)} (floor)" if v.at_floor else ((_fmt(p) if p > 0 else "< 1e-300")
                                                                 + (" (BH)" if v.p_adjusted is not None else ""))
        test = (v.test.replace("one-sided KS of the volume percentiles against U(0,1)", "percentile KS, one-sided")
                .replace("permutation ", "").replace("log_volume_density", "log ρ"))
        row = [plots.depth_label(v.depth), v.reference, short_question(v.question), f"**{v.answer}**", test, ptxt]
        row += [_ci(v) if v.effect_name == k else "" for k in kinds]
        row += [v.n_endpoints, "exact CDF" if v.n_reference == 0 else v.n_reference,
                "–" if v.ess is None else f"{v.ess:.0f}",
                ", ".join(marks) or "none"]
        rows.append(row)
    L += [_table(["depth", "reference", "question", "answer", "test", "p"] + [EFFECT_COLUMNS[k] for k in kinds]
                 + ["n endpoints", "n reference (used)", "ESS of log ρ (all draws)", "caveats"], rows), ""]
    if notes:
        L += ["Caveats:", ""] + [f"{i + 1}. {c}" for i, c in enumerate(notes)] + [""]
    return L + untested


def _markdown(res: ExperimentResult, figs: list[tuple[str, str]], problems: list[str], summaries: dict,
              run_info: dict, verdicts: list | None = None) -> str:
    cfg = res.config
    L = [f"# dlnvolume experiment `{cfg.name}`", "", cfg.description, ""]
    if run_info.get("quick"):
        L += ["**Quick run** (`--quick`): reduced sizes; numbers are a smoke test, not evidence.", ""]
    L += _verdict_section(res, list(verdicts or []))
    L += _bias_section(res)
    L += [f"Task: `{res.task!r}`. Depths: {', '.join(plots.depth_label(d) for d in cfg.depths)}. "
          f"{cfg.runs} flows per depth ({cfg.flow_method}, init scale {cfg.init_scale:g}). Seed {cfg.seed}. "
          f"Numerical rank tolerance rtol = {cfg.rtol:g}; log volume density on the stratum "
          f"{'of each matrix numerical rank' if cfg.volume_rank == 'numerical' else 'M_' + str(cfg.volume_rank)}.", ""]
    L += ["## Flow endpoints", ""]
    header = ["depth", "status", "kept", "median loss", "frac. rank 1", "median erank", "median ‖X‖_*",
              "median log ρ"]
    st0 = next(iter(res.endpoint_stats.values()))
    if st0.hyperbola is not None and cfg.task["kind"] == "diagonal_2x2":
        header.append("median dist. to corner")
    if st0.test_error is not None:
        header.append("median test error")
    L += [_table(header, _endpoint_rows(res)), ""]
    if res.sample_stats:
        L += ["## Reference draws", ""]
        rows = []
        for (name, depth), st in res.sample_stats.items():
            s = res.samples[(name, depth)]
            rows.append([name, plots.depth_label(depth), s.method, s.draws.shape[0], s.draws.shape[1],
                         float(np.mean(s.accept_prob)), float(np.median(st.log_volume_density)),
                         float(np.median(st.nuclear_norm))])
        L += [_table(["reference", "depth", "method", "chains", "draws", "mean accept", "median log ρ",
                      "median ‖X‖_*"], rows), ""]
        L += ["### Reference diagnostics", "",
              "From the sampler (computed once; the same numbers are in `tests.json` \"reference_diagnostics\" "
              "and in `results.nc` sample_stats attribute `reference_diagnostics`): converged = R-hat ≤ 1.01 and "
              "bulk/tail ESS ≥ 400 on every diagnosed statistic (worst values shown); weight ESS = Kish ESS of the "
              "importance weights of each replicate; piece masses = weighted fraction of each sign group of the "
              "unobserved entries, mean ± Monte Carlo standard error across replicates (chains); dimension = "
              "actual dimension of the sampled set (nominal r(m+n−r) − |Ω| for solution sets); failures summed "
              "over chains.", "", _table(DIAG_HEADER, _diag_rows(res)), ""]
    if res.tests:
        L += ["## Tests", "",
              "Families: (a) distribution match endpoints vs reference (permutation KS / Anderson–Darling per "
              "statistic, energy distance on singular values; BH-adjusted across the family); (b) volume "
              "percentiles (uniform under the null, near 0 if endpoints sit at higher volume); (c) one-sided "
              "Mann–Whitney against the Euclidean (N=1) volume on the same set, AUC effect size.", ""]
        rows = []
        for (fam, name, depth), tests in res.tests.items():
            for t in tests:
                p = t.p_adjusted if t.p_adjusted is not None else t.p_value
                ci = "–" if t.effect_ci is None else f"[{_fmt(t.effect_ci[0])}, {_fmt(t.effect_ci[1])}]"
                rows.append([fam, plots.depth_label(depth), t.name, t.measure_y, t.n_x, t.n_y, t.statistic,
                             (f"≤ {_fmt(t.p_floor)} (floor)" if t.at_floor else t.p_value), t.p_adjusted,
                             "yes" if p <= cfg.alpha else "no", t.effect_name or "–", t.effect_size, ci, t.ess_used])
        L += [_table(["family", "depth", "test", "reference", "n_x", "n_y", "statistic", "p", "p (BH)",
                      f"reject at α={cfg.alpha:g}", "effect type", "effect", "95% CI", "ESS"], rows), ""]
    if res.percentiles:
        L += ["### Volume-percentile histograms (counts per decile bin)", ""]
        rows = [[name, plots.depth_label(d), " ".join(str(int(c)) for c in pr.counts), float(np.mean(pr.percentiles))]
                for (name, d), pr in res.percentiles.items()]
        L += [_table(["reference", "depth", "counts (0 → 1)", "mean percentile"], rows), ""]
    if summaries:
        L += ["## MCMC diagnostics (ArviZ)", ""]
        for label, table in summaries.items():
            cols = [c for c in ("mean", "sd", "mcse_mean", "ess_bulk", "ess_tail", "r_hat") if c in table.columns]
            rows = [[idx] + [table.loc[idx, c] for c in cols] for idx in table.index]
            L += [f"**{label}**", "", _table(["variable"] + cols, rows), ""]
        if problems:
            L += ["Warnings (R-hat > 1.01 or ESS < 400):", ""] + [f"- {p}" for p in problems] + [""]
    if res.notes:
        L += ["## Notes", ""] + [f"- {n}" for n in res.notes] + [""]
    L += ["## Figures", ""]
    for fname, cap in figs:
        L += [f"![{cap}](figures/{fname})", "", f"*{cap}*", ""]
    L += ["## Run", "", _table(["stage", "seconds"], [[k, v] for k, v in run_info.get("timings", {}).items()]), ""]
    spent = getattr(res, "time_spent", None) or {}
    if spent:
        n_sess = max(int(v["sessions"]) for v in spent.values())
        rows = [[k, v["wall_s"], v["cpu_s"], int(v["sessions"])] for k, v in spent.items()]
        L += [f"Time spent on the computing stages over {n_sess} session{'s' if n_sess > 1 else ''} of this results "
              "folder (interrupted and resumed sessions included; CPU time counts this process and its local "
              "worker processes, not a Dask cluster's):", "",
              _table(["stage", "wall seconds", "CPU seconds", "sessions"], rows), "",
              f"Total: {sum(v['wall_s'] for v in spent.values()):.1f} s wall, "
              f"{sum(v['cpu_s'] for v in spent.values()):.1f} s CPU.", ""]
    L += ["Files: `results.nc` (an xarray DataTree: `analysis.diagnostics.load(path, reference=NAME)` gives one "
          "reference as an ArviZ object), `endpoints.npz`, `tests.json` (the verdict and every test result), "
          "`config.toml`, `run.json`, `figures/`.", ""]
    return "\n".join(L)


def _md_to_html(md: str, out: Path) -> str:
    """Tiny Markdown → HTML for our own report (headings, tables, images, lists, emphasis)."""
    body: list[str] = []
    lines = md.split("\n")
    i = 0
    in_verdict = False

    def inline(t: str) -> str:
        t = html.escape(t)
        t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
        t = re.sub(r"`(.+?)`", r"<code>\1</code>", t)
        t = re.sub(r"(?<!\w)\*(.+?)\*(?!\w)", r"<i>\1</i>", t)
        return t

    while i < len(lines):
        line = lines[i]
        if line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            body.append("<table>")
            body.append("<tr>" + "".join(f"<th>{inline(c)}</th>" for c in rows[0]) + "</tr>")
            for r in rows[2:]:
                body.append("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>")
            body.append("</table>")
            continue
        m = re.match(r"!\[(.*)\]\((.+)\)", line)
        if m:
            data = base64.b64encode((out / m.group(2)).read_bytes()).decode()
            body.append(f'<figure><img alt="{html.escape(m.group(1))}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{inline(m.group(1))}</figcaption></figure>")
            i += 1
            while i < len(lines) and (not lines[i].strip() or lines[i].strip() == f"*{m.group(1)}*"):
                i += 1  # the Markdown caption line is the figcaption here
            continue
        elif re.match(r"\d+\. ", line):
            items = []
            while i < len(lines) and re.match(r"\d+\. ", lines[i]):
                items.append(f"<li>{inline(lines[i].split('. ', 1)[1])}</li>")
                i += 1
            body.append("<ol class='caveats'>" + "".join(items) + "</ol>")
            continue
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            if level <= 2 and in_verdict:
                body.append("</section>")
                in_verdict = False
            if line.strip() == "## Verdict":
                body.append("<section class='verdict'>")
                in_verdict = True
            body.append(f"<h{level}>{inline(line[level:].strip())}</h{level}>")
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{inline(lines[i][2:])}</li>")
                i += 1
            body.append("<ul>" + "".join(items) + "</ul>")
            continue
        elif line.strip():
            body.append(f"<p>{inline(line)}</p>")
        i += 1
    style = ("body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1200px;margin:1.5em auto;"
             "padding:0 1em;color:#222;line-height:1.45}"
             "h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.6em}"
             "table{border-collapse:collapse;font-size:13px;margin:.6em 0;width:auto}"
             "th{background:#2f4b7c;color:#fff;text-align:left;position:sticky;top:0}"
             "td,th{border:1px solid #ccd;padding:3px 8px;vertical-align:top}"
             "tr:nth-child(even) td{background:#f3f5f9}tr:nth-child(odd) td{background:#fff}"
             "figure{margin:1em 0;border:1px solid #ddd;padding:.5em;background:#fafafa}"
             "figure img{max-width:100%}figcaption{font-size:13px;color:#444;margin-top:.3em}"
             "code{background:#eef;padding:0 3px;border-radius:3px}ol.caveats{font-size:13px}"
             "section.verdict{background:#fffbe8;border:1px solid #e5d27a;padding:.4em 1em;border-radius:6px}"
             # three answers told apart by colour and by shape (filled, outlined, dashed), also in greyscale
             "b.ans-yes{color:#fff;background:#1f6f43;padding:0 6px;border-radius:3px}"
             "b.ans-no{color:#a11d1d;border:2px solid #a11d1d;padding:0 5px;border-radius:3px}"
             "b.ans-inconclusive{color:#7a5a00;border:1px dashed #b08a00;padding:0 5px;border-radius:3px}"
             "section.verdict td:nth-child(6){white-space:nowrap}")
    if in_verdict:
        body.append("</section>")
    text = "".join(body)
    for ans in ("yes", "no", "inconclusive"):
        text = text.replace(f"<td><b>{ans}</b></td>", f"<td><b class='ans-{ans}'>{ans}</b></td>")
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>dlnvolume report</title><style>{style}</style>" \
           f"</head><body>{text}</body></html>"


def _stage_outputs(res: ExperimentResult, stage: Path, run_info: dict, texts: dict[str, str],
                   t_start: float | None, current: list[str], verdicts: list | None = None) -> dict:
    """Write all outputs into ``stage``; ``current[0]`` names the output being written (for errors)."""
    import time

    timings = {}
    t0 = time.perf_counter()
    current[0] = "endpoints.npz"
    _save_endpoints(res, stage)
    current[0] = "results.nc"
    trees = reference_trees(res)
    problems, summaries = _inference_data(res, stage, trees)
    timings["inference_data"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    current[0] = "figures"
    figs = _figures(res, stage, trees) if res.config.figures else []
    timings["figures"] = time.perf_counter() - t1
    run_info.setdefault("timings", {}).update(timings)
    run_info["diagnostic_warnings"] = problems
    if verdicts is None:
        from .verdict import verdicts as _verdicts

        verdicts = _verdicts(res)
    md = _markdown(res, figs, problems, summaries, run_info, verdicts)
    current[0] = "report.md"
    (stage / "report.md").write_text(md, encoding="utf-8")
    current[0] = "report.html"
    (stage / "report.html").write_text(_md_to_html(md, stage), encoding="utf-8")
    current[0] = "tests.json"
    (stage / "tests.json").write_text(_tests_json(res, verdicts), encoding="utf-8")
    current[0] = "verdict.json"
    from .verdict import verdict_document

    (stage / "verdict.json").write_text(json.dumps(verdict_document(res, verdicts), indent=1, default=_json_default),
                                        encoding="utf-8")
    for name, text in texts.items():
        current[0] = name
        (stage / name).write_text(text, encoding="utf-8")
    if t_start is not None:
        run_info["timings"]["total"] = time.perf_counter() - t_start
    current[0] = "run.json"
    (stage / "run.json").write_text(json.dumps(run_info, indent=1, default=str), encoding="utf-8")
    return timings


def _commit(stage: Path, out: Path) -> list[str]:
    """Move every staged file into ``out`` (``os.replace``); returns the destination paths in order."""
    files = sorted((f for f in stage.rglob("*") if f.is_file()),
                   key=lambda f: (f.name in _LAST, _LAST.index(f.name) if f.name in _LAST else 0, str(f)))
    replaced: list[str] = []
    dest = out
    try:
        for f in files:
            dest = out / f.relative_to(stage)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(f, dest)
            replaced.append(str(dest))
    except OSError as exc:
        err = AtomicWriteError(exc.errno, exc.strerror or str(exc), str(dest))
        err.replaced = tuple(replaced)
        raise err from exc
    return replaced


def _dest(name: Any, stage: Path | None, out: Path, current: str) -> str:
    """The output path in ``out`` that a failure in the staging folder was about."""
    if name and stage is not None:
        try:
            return str(out / Path(os.fsdecode(name)).relative_to(stage))
        except ValueError:
            return os.fsdecode(name)
    return str(out / current)


def write_outputs(res: ExperimentResult, out: Path, run_info: dict, *, texts: dict[str, str] | None = None,
                  t_start: float | None = None, verdicts: list | None = None) -> dict:
    """Write figures, results.nc, endpoints.npz, report.md, report.html and run.json into ``out``.

    Parameters
    ----------
    res : ExperimentResult
    out : Path
        Results folder. Every file is first written to a staging folder ``out/.staging-*`` and moved
        into place only after all were written, so a failure leaves the previous results intact.
    run_info : dict
        Written to ``run.json`` (``timings`` is updated here).
    texts : dict, optional
        Further text files to write the same way, e.g. ``{"config.toml": ...}``.
    t_start : float, optional
        ``time.perf_counter()`` at the start of the run; sets ``run_info["timings"]["total"]``.
    verdicts : list of analysis.verdict.Verdict, optional
        The verdict rows (computed here when not given).

    Returns
    -------
    dict
        Timings of the output stages.

    Raises
    ------
    dlnvolume.parallel.AtomicWriteError
        (an ``OSError``) naming the output that could not be written; ``replaced`` lists the files
        already moved into place (empty unless the final moves failed part-way).
    """
    out = Path(out)
    for old in out.glob(STAGING_PREFIX + "*"):  # left behind by a killed run
        shutil.rmtree(old, ignore_errors=True)
    stage: Path | None = None
    current = [STAGING_PREFIX + "*"]
    try:
        stage = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out))
        timings = _stage_outputs(res, stage, run_info, dict(texts or {}), t_start, current, verdicts)
        _commit(stage, out)
        return timings
    except AtomicWriteError as exc:
        if exc.replaced:
            raise
        raise AtomicWriteError(exc.errno, exc.strerror, _dest(exc.filename, stage, out, current[0])) from exc
    except OSError as exc:
        raise AtomicWriteError(exc.errno, exc.strerror or str(exc) or type(exc).__name__,
                               _dest(exc.filename, stage, out, current[0])) from exc
    finally:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
