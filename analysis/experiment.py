"""Experiment configuration: a TOML schema, validation, built-in experiments, TOML writing.

A configuration is validated into an :class:`ExperimentConfig` (defaults filled in). Every problem is
reported as one :class:`dlnvolume.errors.ConfigError` line naming the key, e.g.
``config key 'flows.runs': expected an integer >= 1, got 'many'``.

Schema (all tables optional except ``task``; see the built-ins in ``analysis/experiments/*.toml``)::

    name = "cmv-2x2"              description = "..."            seed = 20231
    [task]        kind = "diagonal_2x2" | "razin_cohen_2x2" | "random_low_rank" | "custom"
                  m, n, rank, n_observed, seed         (random_low_rank)
                  values, mask [, ground_truth, name]  (custom: matrices inline or .npy/.npz paths;
                                                        analysis.tasks has the registry of kinds)
    [flows]       depths = [2, 5, "inf"]   runs = 200   init_scale = 1e-3
                  method = "end_to_end" | "factor"     batch_size = 25
                  keep_status = ["converged", ...]     [flows.options] (passed to the flow)
    [[references]] name = "solution_set"
                  measure = "solution_set" | "gibbs_limit" | "gibbs"
                  method = "exact" | "mcmc" | a samplers.registry name: "rmala" | "emcee" | "smc" | "smc_factor" (gibbs),
                           "solution_smc" | "walk" (solution_set, gibbs_limit); "mcmc" = the registry's first
                           (default) method of the measure ("solution_smc"); support of the measure and stratum is
                           checked against samplers.registry before any flow runs
                  radius (Frobenius window / ball; default 1.5 x the task's scale)   draws, chains, warmup, thin
                  beta, rank (gibbs)   depths = [...] (subset; default all flow depths)
                  note = "..." (a caveat printed with every verdict row of this reference)
                  floor (a SingularValueFloor in the window: N = inf with rank >= 2 on a lower stratum needs one,
                         below the smallest σ_r on the solution set)
    [statistics]  rtol = 1e-6   volume_rank = "numerical" | r
    [tests]       families = ["distribution", "percentile", "null"]
                  n_perm = 499   max_n = 1000   statistics = [...]   null_draws = 2000   alpha = 0.05
    [output]      figures = true   trace_plots = true
    [flows]       init_scales = [1e-2, 1e-3, 1e-4]  (the s → 0 ladder; default a decade above and below
                  init_scale; the same seeds at every scale, the tests use the smallest)
                  ladder_runs = 50  (runs at the larger scales: the first ones of the smallest; default runs)
    [predictors]  names = [...] (analysis.predictors.PREDICTORS; default all)   n_starts = 16
    [quick]       overrides for --quick: runs, draws, chains, warmup, depths, n_perm, null_draws, ladder_runs,
                  n_starts
"""

from __future__ import annotations

import json
import math
import numbers
import re
import tomllib
import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from dlnvolume.errors import ConfigError

from .statistics import SCALAR_STATISTICS
from .tasks import TASK_KINDS, task_spec

__all__ = [
    "ExperimentConfig",
    "ReferenceConfig",
    "parse_config",
    "load_config",
    "builtin_experiments",
    "to_toml",
    "defaults_text",
    "KEY_DOCS",
]

STAT_NAMES = SCALAR_STATISTICS + (
    "test_error",
    "hyperbola_log_abs_a",
    "hyperbola_distance_to_hyperbola",
    "hyperbola_distance_to_corner",
    "hyperbola_defect",
    "hyperbola_a",
    "hyperbola_b",
    "hyperbola_nearest_a",
)
FAMILIES = ("distribution", "percentile", "null")
STATUSES = ("converged", "max_time", "max_steps", "nonfinite", "stalled")


# --------------------------------------------------------------------------- small validators
def _fail(key: str, expected: str, value: Any) -> ConfigError:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return ConfigError(f"config key '{key}': expected {expected}, got {text}")


def _int(minimum: int = 0) -> Callable[[str, Any], int]:
    def check(key: str, v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise _fail(key, f"an integer >= {minimum}", v)
        return int(v)

    return check


def _float(minimum: float = 0.0, strict: bool = True, maximum: float | None = None) -> Callable[[str, Any], float]:
    def check(key: str, v: Any) -> float:
        ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))
        if ok:
            f = float(v)
            ok = (f > minimum if strict else f >= minimum) and (maximum is None or f < maximum)
        if not ok:
            rng = f"{'>' if strict else '>='} {minimum}" + (f" and < {maximum}" if maximum is not None else "")
            raise _fail(key, f"a finite number {rng}", v)
        return float(v)

    return check


def _str(key: str, v: Any) -> str:
    if not isinstance(v, str):
        raise _fail(key, "a string", v)
    return v


def _bool(key: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise _fail(key, "true or false", v)
    return v


def _enum(*choices: str) -> Callable[[str, Any], str]:
    def check(key: str, v: Any) -> str:
        if v not in choices:
            raise _fail(key, "one of " + ", ".join(repr(c) for c in choices), v)
        return v

    return check


def _depth(key: str, v: Any) -> float | int:
    if isinstance(v, str) and v.strip().lower() in ("inf", "infinity"):
        return math.inf
    if isinstance(v, float) and math.isinf(v) and v > 0:
        return math.inf
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise _fail(key, 'a depth: an integer >= 1 or "inf"', v)
    return int(v)


def _list(item: Callable[[str, Any], Any], nonempty: bool = True) -> Callable[[str, Any], list]:
    def check(key: str, v: Any) -> list:
        if not isinstance(v, list) or (nonempty and not v):
            raise _fail(key, "a non-empty list" if nonempty else "a list", v)
        return [item(f"{key}[{i}]", x) for i, x in enumerate(v)]

    return check


def _volume_rank(key: str, v: Any) -> str | int:
    if v == "numerical":
        return v
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise _fail(key, '"numerical" or an integer >= 0', v)
    return v


def _options(key: str, v: Any) -> dict:
    if not isinstance(v, dict):
        raise _fail(key, "a table", v)
    for k, x in v.items():
        if not isinstance(x, (int, float, str, bool)):
            raise _fail(f"{key}.{k}", "a number, string or boolean", x)
    return dict(v)


def _table(key: str, v: Any, spec: dict[str, Callable[[str, Any], Any]], required: tuple[str, ...] = ()) -> dict:
    if not isinstance(v, dict):
        raise _fail(key, "a table", v)
    out = {}
    for k, x in v.items():
        full = f"{key}.{k}" if key else k
        if k not in spec:
            raise ConfigError(f"config key '{full}': unknown key; accepted: {', '.join(sorted(spec))}")
        out[k] = spec[k](full, x)
    for k in required:
        if k not in out:
            raise ConfigError(f"config key '{key + '.' if key else ''}{k}': required key is missing")
    return out


def _method(key: str, v: Any) -> str:
    """A reference method: ``"exact"``, the alias ``"mcmc"`` or a name of :data:`samplers.registry.REGISTRY`
    (which measure and stratum it supports is checked against the task by :func:`analysis.runner.prepare`)."""
    from samplers import registry

    choices = ("exact", "mcmc", *registry.REGISTRY)
    if v not in choices:
        raise _fail(key, "one of " + ", ".join(repr(c) for c in choices), v)
    return v


def _predictor(key: str, v: Any) -> str:
    """A name of :data:`analysis.predictors.PREDICTORS`."""
    from .predictors import PREDICTORS

    if v not in PREDICTORS:
        raise _fail(key, "one of " + ", ".join(repr(c) for c in PREDICTORS), v)
    return v


# every key some task kind accepts (which kind accepts which: analysis.tasks.TASK_KINDS)
TASK_SPEC = {"kind": _enum(*TASK_KINDS), **{k: v for kind in TASK_KINDS.values() for k, v in kind.keys.items()}}
FLOW_SPEC = {"depths": _list(_depth), "runs": _int(2), "init_scale": _float(), "init_scales": _list(_float()),
             "ladder_runs": _int(2),
             "method": _enum("end_to_end", "factor"),
             "batch_size": _int(1), "keep_status": _list(_enum(*STATUSES)), "options": _options}
REF_SPEC = {"name": _str, "measure": _enum("solution_set", "gibbs_limit", "gibbs"),
            "method": _method, "radius": _float(), "draws": _int(4), "chains": _int(1),
            "warmup": _int(0), "thin": _int(1), "beta": _float(), "rank": _int(1), "depths": _list(_depth),
            "note": _str, "floor": _float()}
STAT_SPEC = {"rtol": _float(), "volume_rank": _volume_rank}
TEST_SPEC = {"families": _list(_enum(*FAMILIES), nonempty=False), "n_perm": _int(19), "max_n": _int(10),
             "statistics": _list(_enum(*STAT_NAMES)), "null_draws": _int(10), "alpha": _float(0.0, True, 1.0),
             "bins": _int(2)}
OUT_SPEC = {"figures": _bool, "trace_plots": _bool}
PRED_SPEC = {"names": lambda k, v: _list(_predictor)(k, v), "n_starts": _int(1)}
QUICK_SPEC = {"runs": _int(2), "draws": _int(4), "chains": _int(1), "warmup": _int(0), "depths": _list(_depth),
              "n_perm": _int(19), "null_draws": _int(10), "ladder_runs": _int(2), "n_starts": _int(1)}
TOP_SPEC: dict[str, Callable[[str, Any], Any]] = {
    "name": _str, "description": _str, "seed": _int(0),
    "task": task_spec,
    "flows": lambda k, v: _table(k, v, FLOW_SPEC),
    "references": lambda k, v: _refs(k, v),
    "statistics": lambda k, v: _table(k, v, STAT_SPEC),
    "tests": lambda k, v: _table(k, v, TEST_SPEC),
    "output": lambda k, v: _table(k, v, OUT_SPEC),
    "predictors": lambda k, v: _table(k, v, PRED_SPEC),
    "quick": lambda k, v: _table(k, v, QUICK_SPEC),
}


def _refs(key: str, v: Any) -> list[dict]:
    if not isinstance(v, list):
        raise _fail(key, "an array of tables [[references]]", v)
    return [_table(f"{key}[{i}]", x, REF_SPEC, ("name", "measure")) for i, x in enumerate(v)]


# --------------------------------------------------------------------------- config objects
@dataclass(frozen=True)
class ReferenceConfig:
    """One reference measure (docs/math.md §5.2, ARCHITECTURE.md "The measures")."""

    name: str
    measure: str
    method: str = "exact"
    radius: float | None = None  # None: derived from the task's scale (analysis.tasks.default_radius)
    draws: int = 2000
    chains: int = 4
    warmup: int = 500
    thin: int = 1
    beta: float | None = None
    rank: int | None = None
    depths: tuple | None = None
    note: str | None = None  # printed as a caveat with every verdict row of this reference
    floor: float | None = None  # SingularValueFloor(floor) in the window (N = inf on a lower stratum needs one)


@dataclass(frozen=True)
class ExperimentConfig:
    """A validated experiment (defaults filled in). ``to_toml`` writes it back."""

    name: str
    task: dict
    description: str = ""
    seed: int = 0
    depths: tuple = (2, 5, 10, 20, math.inf)
    runs: int = 200
    init_scale: float = 1e-3
    init_scales: tuple | None = None  # None: analysis.ladder.default_scales(init_scale)
    ladder_runs: int | None = None    # runs at the larger scales of the ladder (the first ones); None: runs
    flow_method: str = "end_to_end"
    batch_size: int = 25
    # runs stopped by max_steps / max_time are states on the way, not endpoints (a 5×5 rank-2 task at N = 20: 7 of
    # 16 runs stopped on a rank-1 plateau with loss 0.49 and σ_1 = 169, still growing); they are counted in the caveats
    keep_status: tuple = ("converged",)
    flow_options: dict = field(default_factory=dict)
    references: tuple = ()
    rtol: float = 1e-6
    volume_rank: str | int = "numerical"
    families: tuple = FAMILIES
    n_perm: int = 499
    max_n: int = 1000
    test_statistics: tuple = ("log_volume_density", "effective_rank", "nuclear_norm")
    null_draws: int = 2000
    alpha: float = 0.05
    bins: int = 10
    figures: bool = True
    trace_plots: bool = True
    predictors: tuple | None = None  # None: every registered predictor
    n_starts: int = 16
    quick: dict = field(default_factory=dict)

    @property
    def scales(self) -> tuple[float, ...]:
        """The initialization-scale ladder, largest first (``init_scales``, default a decade above and below
        ``init_scale``; only ``init_scale`` when ``volume_rank = "numerical"`` names no stratum and no
        ``init_scales`` are given); the tests use the endpoints of the smallest scale."""
        from .ladder import default_scales

        if self.init_scales is None and self.volume_rank == "numerical":
            return (float(self.init_scale),)  # no stratum named: no implicit-bias analysis, no ladder
        sc = self.init_scales if self.init_scales is not None else default_scales(self.init_scale)
        return tuple(sorted((float(x) for x in sc), reverse=True))

    @property
    def ladder_size(self) -> int:
        """Runs at every scale but the smallest (the first ``ladder_runs`` of them; all ``runs`` at the smallest)."""
        return self.runs if self.ladder_runs is None else min(self.ladder_runs, self.runs)

    def quick_version(self) -> "ExperimentConfig":
        """The ``--quick`` variant: values of the ``[quick]`` table replace runs/draws/... ; a reference
        restricted to depths that ``--quick`` does not run is left out."""
        from dataclasses import replace

        q = self.quick
        depths = tuple(q.get("depths", self.depths))
        refs = []
        for r in self.references:
            keep = None if r.depths is None else tuple(d for d in r.depths if d in depths)
            if keep == ():
                continue  # none of its depths is run by --quick
            refs.append(replace(r, draws=q.get("draws", r.draws), chains=q.get("chains", r.chains),
                                warmup=q.get("warmup", r.warmup), depths=keep))
        refs = tuple(refs)
        return replace(self, runs=q.get("runs", self.runs), depths=depths,
                       ladder_runs=q.get("ladder_runs", self.ladder_runs), n_starts=q.get("n_starts", self.n_starts),
                       n_perm=q.get("n_perm", self.n_perm), null_draws=q.get("null_draws", self.null_draws),
                       references=refs, quick={})

    def to_dict(self) -> dict:
        """The TOML document (nested dicts) of this configuration."""
        refs = []
        for r in self.references:
            d = {k: getattr(r, k) for k in ReferenceConfig.__dataclass_fields__ if getattr(r, k) is not None}
            if "depths" in d:
                d["depths"] = list(d["depths"])
            refs.append(d)
        out: dict[str, Any] = {
            "name": self.name, "description": self.description, "seed": self.seed, "task": dict(self.task),
            "flows": {"depths": list(self.depths), "runs": self.runs, "init_scale": self.init_scale,
                      **({} if self.init_scales is None else {"init_scales": list(self.init_scales)}),
                      **({} if self.ladder_runs is None else {"ladder_runs": self.ladder_runs}),
                      "method": self.flow_method, "batch_size": self.batch_size,
                      "keep_status": list(self.keep_status), "options": dict(self.flow_options)},
            "references": refs,
            "statistics": {"rtol": self.rtol, "volume_rank": self.volume_rank},
            "tests": {"families": list(self.families), "n_perm": self.n_perm, "max_n": self.max_n,
                      "statistics": list(self.test_statistics), "null_draws": self.null_draws,
                      "alpha": self.alpha, "bins": self.bins},
            "output": {"figures": self.figures, "trace_plots": self.trace_plots},
            "predictors": {**({} if self.predictors is None else {"names": list(self.predictors)}),
                           "n_starts": self.n_starts},
        }
        if self.quick:
            out["quick"] = dict(self.quick)
        return out


def parse_config(doc: Any, base: str | Path | None = None) -> ExperimentConfig:
    """Validate a parsed TOML document (dict) into an :class:`ExperimentConfig`.

    ``base``: folder that relative paths of a custom task (``task.values``, ``task.mask``) refer to
    (the configuration file's folder); they are stored resolved. Keys and types are checked here;
    what depends on the task (ranks, windows, reference methods) is checked by
    :func:`analysis.runner.prepare` before anything runs.

    Raises
    ------
    ConfigError
        One line naming the offending key: unknown keys, wrong types, values out of range,
        missing required keys.
    """
    top = _table("", doc, TOP_SPEC, ("task",))
    task = top["task"]
    if base is not None:  # paths of a custom task are relative to the configuration file
        for k in ("values", "mask", "ground_truth"):
            if isinstance(task.get(k), str) and not Path(task[k]).is_absolute():
                task[k] = str((Path(base) / task[k]).resolve())
    flows = top.get("flows", {})
    stats_ = top.get("statistics", {})
    tests = top.get("tests", {})
    out = top.get("output", {})
    names = set()
    refs = []
    kw: dict[str, Any] = {}
    for i, r in enumerate(top.get("references", [])):
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", r["name"]) or r["name"] in ("euclidean", "endpoints"):
            raise ConfigError(f"config key 'references[{i}].name': {r['name']!r}; expected letters, digits, '_', "
                              "'.', '-' (it names files and result groups), not 'euclidean' or 'endpoints'")
        if r["name"] in names:
            raise ConfigError(f"config key 'references[{i}].name': duplicate name {r['name']!r}")
        names.add(r["name"])
        if r["measure"] == "gibbs" and "beta" not in r:
            raise ConfigError(f"config key 'references[{i}].beta': required for measure 'gibbs'")
        if "depths" in r:
            r["depths"] = tuple(r["depths"])
        refs.append(ReferenceConfig(**r))
    kw: dict[str, Any] = {}
    if "init_scales" in flows:
        sc = flows["init_scales"]
        if len(sc) < 2 or len(set(sc)) != len(sc):
            raise _fail("flows.init_scales", "at least two distinct scales (the s → 0 ladder)", sc)
    pred = top.get("predictors", {})
    if "names" in pred:
        kw["predictors"] = tuple(pred["names"])
    if "n_starts" in pred:
        kw["n_starts"] = pred["n_starts"]
    for src, dst in (("depths", "depths"), ("runs", "runs"), ("init_scale", "init_scale"), ("init_scales", "init_scales"),
                     ("ladder_runs", "ladder_runs"),
                     ("method", "flow_method"),
                     ("batch_size", "batch_size"), ("keep_status", "keep_status"), ("options", "flow_options")):
        if src in flows:
            kw[dst] = tuple(flows[src]) if isinstance(flows[src], list) else flows[src]
    for src in ("rtol", "volume_rank"):
        if src in stats_:
            kw[src] = stats_[src]
    for src, dst in (("families", "families"), ("n_perm", "n_perm"), ("max_n", "max_n"),
                     ("statistics", "test_statistics"), ("null_draws", "null_draws"), ("alpha", "alpha"),
                     ("bins", "bins")):
        if src in tests:
            kw[dst] = tuple(tests[src]) if isinstance(tests[src], list) else tests[src]
    kw.update(out)
    return ExperimentConfig(name=top.get("name", "custom"), description=top.get("description", ""),
                            seed=top.get("seed", 0), task=task, references=tuple(refs),
                            quick=top.get("quick", {}), **kw)


def builtin_experiments() -> dict[str, str]:
    """Built-in experiment names -> their TOML text (package data ``analysis/experiments``)."""
    folder = resources.files("analysis") / "experiments"
    out = {}
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".toml"):
            out[entry.name[: -len(".toml")]] = entry.read_text(encoding="utf-8")
    return out


def load_config(source: str) -> tuple[ExperimentConfig, str]:
    """Load a built-in experiment name or a TOML file path; returns ``(config, toml text)``."""
    builtins = builtin_experiments()
    base = None
    if source in builtins:
        text = builtins[source]
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(
                f"experiment {source!r}: not a built-in ({', '.join(builtins)}) and no such file"
            )
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config {source!r}: not UTF-8 text (byte {exc.start}: {exc.reason}); "
                              "TOML files must be UTF-8") from None
        except OSError as exc:
            raise ConfigError(f"config {source!r}: cannot read ({exc.strerror or exc})") from None
        base = path.parent
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {source!r}: malformed TOML: {exc}") from None
    return parse_config(doc, base), text


# --------------------------------------------------------------------------- TOML writer
def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and math.isinf(v):
        return '"inf"'
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return _toml_string(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _toml_key(k: str) -> str:
    """A bare key when TOML allows one, else a quoted key (e.g. the empty key)."""
    if re.fullmatch(r"[A-Za-z0-9_-]+", k):
        return k
    return _toml_string(k)


def _toml_string(v: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, and DEL must be escaped too."""
    return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")


def to_toml(doc: dict, _prefix: str = "") -> str:
    """Minimal TOML writer for configuration documents (scalars, lists, tables, arrays of tables)."""
    lines = []
    tables = []
    for k, v in doc.items():
        if isinstance(v, dict):
            tables.append((k, v))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            tables.append((k, v))
        elif isinstance(v, list) and not v and k == "references":
            continue
        else:
            lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
    for k, v in tables:
        name = f"{_prefix}{_toml_key(k)}"
        if isinstance(v, dict):
            lines.append(f"\n[{name}]")
            lines.append(to_toml(v, name + ".").rstrip("\n"))
        else:
            for item in v:
                lines.append(f"\n[[{name}]]")
                lines.append(to_toml(item, name + ".").rstrip("\n"))
    return "\n".join(x for x in lines if x != "") + "\n"


# --------------------------------------------------------------------------- every key, its default and meaning
#: (table, key) -> meaning, for ``dlnvolume config --defaults`` (a test checks it names every key of the specs)
KEY_DOCS: dict[tuple[str, str], str] = {
    ("", "name"): "name of the experiment (report title, file names)",
    ("", "description"): "one line shown in the report and by `dlnvolume experiments`",
    ("", "seed"): "root seed: every flow, chain and test draws from SeedSequence(seed, stage, item)",
    ("task", "kind"): "diagonal_2x2 | razin_cohen_2x2 | random_low_rank | custom (required)",
    ("task", "m"): "random_low_rank: rows",
    ("task", "n"): "random_low_rank: columns",
    ("task", "rank"): "random_low_rank: rank of the ground truth",
    ("task", "n_observed"): "random_low_rank: observed entries |Ω|",
    ("task", "seed"): "random_low_rank: seed of the ground truth and Ω (default: the experiment seed)",
    ("task", "values"): "custom: the observed values, a matrix or a .npy/.npz path (an .npz may hold 'values', "
                        "'mask' and 'ground_truth')",
    ("task", "mask"): "custom: true/false (or 0/1) matrix of observed entries, or a .npy/.npz path",
    ("task", "ground_truth"): "custom, optional: the full matrix (test error in the report)",
    ("task", "name"): "custom: the task's name in the report",
    ("flows", "depths"): "depths N of the flows (integers >= 1 or inf); each is compared with the references",
    ("flows", "runs"): "flows per depth at the smallest initialization scale (the tests use these)",
    ("flows", "init_scale"): "initialization scale s (X0 = product of Gaussian factors of scale s)",
    ("flows", "init_scales"): "the s → 0 ladder (default: a decade above and below init_scale when a stratum is "
                              "named by statistics.volume_rank)",
    ("flows", "ladder_runs"): "flows at the larger scales of the ladder (default: runs)",
    ("flows", "method"): "end_to_end (the compiled Riemannian flow) | factor (gradient flow of the factors)",
    ("flows", "batch_size"): "flows per batch: the unit of work, of checkpointing and of what Ctrl-C gives up",
    ("flows", "keep_status"): "flow statuses whose endpoints are analysed (default converged only: a run stopped by "
                              "max_steps or max_time is a state on the way; the caveats count the others)",
    ("flows", "options"): "keyword arguments of dlnvolume.flows.end_to_end / factor_descent (e.g. rtol, "
                          "max_steps, loss_tol)",
    ("references", "name"): "the reference's name (files, report rows; required)",
    ("references", "measure"): "solution_set | gibbs_limit | gibbs (required)",
    ("references", "method"): "exact (2×2 hyperbola tasks) or a sampler of the registry (mcmc, solution_smc, "
                              "smc, ...)",
    ("references", "radius"): "Frobenius window radius of the measure (default: from the task's scale)",
    ("references", "draws"): "draws per chain (or per replicate) after warm-up",
    ("references", "chains"): "independent chains (or SMC replicates): R-hat needs >= 2",
    ("references", "warmup"): "warm-up iterations per chain, discarded",
    ("references", "thin"): "keep every thin-th draw",
    ("references", "beta"): "inverse temperature β of the Gibbs measure exp(-βE)·vol_N (required for gibbs)",
    ("references", "rank"): "stratum M_r of the measure (default: statistics.volume_rank)",
    ("references", "depths"): "depths this reference is computed for (default: every flow depth)",
    ("references", "note"): "a caveat printed with every verdict row of this reference",
    ("references", "floor"): "singular-value floor of the window (N = inf on a lower stratum needs one)",
    ("statistics", "rtol"): "numerical rank of a matrix: the number of σ_i > rtol·σ_1",
    ("statistics", "volume_rank"): "the stratum M_r whose volume density is compared (an integer r), or "
                                   "'numerical' (each matrix's numerical rank; no implicit-bias analysis)",
    ("tests", "families"): "distribution (two-sample tests), percentile (volume percentiles of endpoints), null "
                           "(against the Euclidean volume)",
    ("tests", "n_perm"): "permutations of each permutation test",
    ("tests", "max_n"): "the reference sample of a test is subsampled evenly to at most this many draws",
    ("tests", "statistics"): "the scalar statistics compared",
    ("tests", "null_draws"): "draws of the Euclidean null measure",
    ("tests", "alpha"): "significance level of the verdict (p-values Benjamini–Hochberg-adjusted within a family)",
    ("tests", "bins"): "bins of the volume-percentile histograms",
    ("output", "figures"): "write figures/",
    ("output", "trace_plots"): "write trace plots of the MCMC references",
    ("predictors", "names"): "the implicit-bias predictors compared with the endpoints (default: every registered "
                             "one)",
    ("predictors", "n_starts"): "random starts of the nonconvex predictors",
    ("quick", "runs"): "--quick: flows.runs",
    ("quick", "draws"): "--quick: references' draws",
    ("quick", "chains"): "--quick: references' chains",
    ("quick", "warmup"): "--quick: references' warmup",
    ("quick", "depths"): "--quick: flows.depths",
    ("quick", "n_perm"): "--quick: tests.n_perm",
    ("quick", "null_draws"): "--quick: tests.null_draws",
    ("quick", "ladder_runs"): "--quick: flows.ladder_runs",
    ("quick", "n_starts"): "--quick: predictors.n_starts",
}


def _spec_keys() -> dict[str, dict[str, Any]]:
    from .tasks import TASK_KINDS

    task = {"kind": None, **{k: None for kind in TASK_KINDS.values() for k in kind.keys}}
    return {"": {k: v for k, v in TOP_SPEC.items() if k in ("name", "description", "seed")}, "task": task,
            "flows": FLOW_SPEC, "references": REF_SPEC, "statistics": STAT_SPEC, "tests": TEST_SPEC,
            "output": OUT_SPEC, "predictors": PRED_SPEC, "quick": QUICK_SPEC}


def defaults_text() -> str:
    """Every configuration key with its default and meaning, as a commented TOML template (``dlnvolume config
    --defaults``): defaults are read from :class:`ExperimentConfig` and :class:`ReferenceConfig`, so they are
    the ones a run uses."""
    base = ExperimentConfig(name="custom", task={"kind": "diagonal_2x2"}).to_dict()
    base[""] = {"name": "custom", "description": "", "seed": 0}
    ref = {k: f.default for k, f in ReferenceConfig.__dataclass_fields__.items()
           if f.default is not dataclasses.MISSING}
    unset = {("flows", "init_scales"): "a decade above and below init_scale", ("flows", "ladder_runs"): "runs",
             ("predictors", "names"): "every registered predictor", ("references", "radius"): "from the task's scale",
             ("references", "beta"): "required for measure = 'gibbs'", ("references", "rank"): "statistics.volume_rank",
             ("references", "depths"): "every flow depth", ("task", "seed"): "the experiment seed"}
    lines = ["# dlnvolume configuration: every key, its default and its meaning. Keys marked 'required' have no",
             "# default; the [quick] table has none either (each key replaces its namesake under --quick).", ""]
    for table, keys in _spec_keys().items():
        if table == "references":
            lines.append("[[references]]   # one table per reference measure")
        elif table:
            lines.append(f"[{table}]")
        for key in keys:
            doc = KEY_DOCS[(table, key)]
            if table == "references":
                have, value = key in ref and ref[key] is not None, ref.get(key)
            elif table in ("task", "quick"):
                have, value = False, None
            else:
                have, value = key in base.get(table, {}), base.get(table, {}).get(key)
            if have:
                text = "{}" if value == {} else _toml_value(value)  # [flows.options]: an empty inline table
                lines.append(f"{_toml_key(key)} = {text}   # {doc}")
            else:
                why = unset.get((table, key), "" if "required" in doc else "no default")
                lines.append(f"# {_toml_key(key)} = ...   " + (f"({why}) " if why else "") + doc)
        lines.append("")
    return "\n".join(lines)
