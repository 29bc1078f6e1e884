"""Task kinds of the ``[task]`` table: one registry, each kind with its keys, its builder and its
exact-reference capability.

``TASK_KINDS[name]`` is a :class:`TaskKind`. The built-ins wrap :mod:`dlnvolume.tasks`; ``custom``
takes the user's own observations::

    [task]
    kind = "custom"
    name = "my-3x3"                                  # optional
    values = [[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 0.5]]   # or "values.npy" / "task.npz"
    mask = [[true, false, false], [false, true, false], [false, false, true]]  # or 0/1, or a path
    ground_truth = [[...]]                           # optional, for test_error

A path is resolved relative to the configuration file. An ``.npz`` file may hold ``values`` and
``mask`` (and ``ground_truth``) together; then ``mask`` may be omitted. Unobserved values are ignored
(``nan`` is accepted there). From Python, ``run_experiment(config, out, task=CompletionTask(...))``
runs any task; the ``[task]`` table then only names it (``kind = "custom"``).

Exact references (inverse-CDF draws of the hyperbola laws, docs/math.md §5.2) exist only for the 2×2
diagonal task; every other task needs MCMC references (``method = "mcmc"`` for the solution-set
volume, ``"rmala"``/``"emcee"`` for Gibbs measures).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

import dlnvolume as dv
from dlnvolume.errors import ConfigError, DLNVolumeError

__all__ = ["TaskKind", "TASK_KINDS", "build_task", "default_radius", "task_spec"]


@dataclass(frozen=True)
class TaskKind:
    """One ``task.kind``.

    Attributes
    ----------
    keys : accepted keys of the ``[task]`` table besides ``kind`` (name -> validator)
    required : keys that must be present
    build : ``(task table, experiment seed, config folder) -> CompletionTask``
    exact_measures : measures with exact reference draws for this task (``()``: MCMC only)
    null_family : the test family "null" (Euclidean volume on the hyperbola) applies
    """

    name: str
    keys: dict
    required: tuple[str, ...]
    build: Callable[[dict, int, Path | None], dv.CompletionTask]
    exact_measures: tuple[str, ...] = ()
    null_family: bool = False
    description: str = ""


def _fail(key: str, expected: str, value: Any) -> ConfigError:
    text = repr(value)
    return ConfigError(f"config key '{key}': expected {expected}, got {text[:57] + '...' if len(text) > 60 else text}")


def _pos_int(key: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise _fail(key, "an integer >= 1", v)
    return v


def _nonneg_int(key: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise _fail(key, "an integer >= 0", v)
    return v


def _matrix_or_path(key: str, v: Any) -> Any:
    if isinstance(v, str):
        if not v.endswith((".npy", ".npz")):
            raise _fail(key, "a matrix (array of arrays) or a path to a .npy/.npz file", v)
        return v
    if (not isinstance(v, list) or not v or not all(isinstance(r, list) and r for r in v)
            or len({len(r) for r in v}) != 1
            or not all(isinstance(x, numbers.Real) for r in v for x in r)):
        raise _fail(key, "a matrix (non-empty array of equally long arrays of numbers or booleans) or a path "
                         "to a .npy/.npz file", v)
    return v


def _str(key: str, v: Any) -> str:
    if not isinstance(v, str):
        raise _fail(key, "a string", v)
    return v


def _load_array(key: str, v: Any, base: Path | None, field_name: str) -> np.ndarray | None:
    if not isinstance(v, str):
        return np.asarray(v)
    path = Path(v) if Path(v).is_absolute() or base is None else base / v
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"config key '{key}': cannot read {str(path)!r} ({exc})") from None
    if isinstance(data, np.ndarray):
        return data
    with data:
        if field_name in data.files:
            return np.asarray(data[field_name])
        if field_name == "ground_truth":
            return None
        if len(data.files) == 1:
            return np.asarray(data[data.files[0]])
        raise ConfigError(f"config key '{key}': {str(path)!r} has arrays {data.files}; expected one named "
                          f"'{field_name}'")


def _build_custom(t: dict, seed: int, base: Path | None) -> dv.CompletionTask:
    if "values" not in t:
        raise ConfigError("config key 'task.values': required for kind 'custom' (a matrix or a .npy/.npz path), "
                          "unless a CompletionTask is passed to run_experiment(..., task=...)")
    values = _load_array("task.values", t["values"], base, "values")
    mask_src = t.get("mask", t["values"] if isinstance(t["values"], str) and t["values"].endswith(".npz") else None)
    if mask_src is None:
        raise ConfigError("config key 'task.mask': required for kind 'custom' (a matrix of true/false or 0/1, or a "
                          ".npy/.npz path)")
    mask = _load_array("task.mask", mask_src, base, "mask")
    if mask is None:
        raise ConfigError("config key 'task.mask': not found")
    mask = np.asarray(mask)
    if mask.dtype != np.bool_:
        if mask.dtype.kind not in "iuf" or not np.all(np.isin(mask, (0, 1))):
            raise ConfigError(f"config key 'task.mask': expected booleans or 0/1 entries, got dtype {mask.dtype} "
                              f"with values {np.unique(mask)[:5].tolist()}")
        mask = mask.astype(bool)
    gt = t.get("ground_truth")
    if gt is None and isinstance(t["values"], str) and t["values"].endswith(".npz"):
        gt = _load_array("task.ground_truth", t["values"], base, "ground_truth")
    elif gt is not None:
        gt = _load_array("task.ground_truth", gt, base, "ground_truth")
    try:
        return dv.CompletionTask(np.asarray(values, dtype=np.float64), mask, ground_truth=gt,
                                 name=t.get("name", "custom"))
    except DLNVolumeError as exc:
        raise ConfigError(f"config key 'task': {exc}") from None


TASK_KINDS: dict[str, TaskKind] = {
    "diagonal_2x2": TaskKind("diagonal_2x2", {}, (), lambda t, s, b: dv.tasks.diagonal_2x2(),
                             exact_measures=("solution_set", "gibbs_limit"), null_family=True,
                             description="observe X11 = X22 = 1 (docs/math.md §5.2)"),
    "razin_cohen_2x2": TaskKind("razin_cohen_2x2", {}, (), lambda t, s, b: dv.tasks.razin_cohen_2x2(),
                                description="observe X12 = X21 = 1, X22 = 0 (docs/math.md §5.3)"),
    "random_low_rank": TaskKind(
        "random_low_rank", {"m": _pos_int, "n": _pos_int, "rank": _pos_int, "n_observed": _pos_int,
                            "seed": _nonneg_int},
        ("m", "n", "rank", "n_observed"),
        lambda t, s, b: dv.tasks.random_low_rank(t["m"], t["n"], t["rank"], t["n_observed"], rng=t.get("seed", s)),
        description="Arora et al. 2019 conventions (docs/math.md §6.2)"),
    "custom": TaskKind("custom", {"values": _matrix_or_path, "mask": _matrix_or_path,
                                  "ground_truth": _matrix_or_path, "name": _str}, (), _build_custom,
                       description="your own values and mask, inline or from .npy/.npz"),
}


def task_spec(key: str, v: Any) -> dict:
    """Validate the ``[task]`` table against the registry (keys and types; files are read later)."""
    if not isinstance(v, dict):
        raise _fail(key, "a table", v)
    if "kind" not in v:
        raise ConfigError(f"config key '{key}.kind': required key is missing")
    kind = v["kind"]
    if not isinstance(kind, str) or kind not in TASK_KINDS:
        raise _fail(f"{key}.kind", "one of " + ", ".join(repr(k) for k in TASK_KINDS), kind)
    tk = TASK_KINDS[kind]
    out = {"kind": kind}
    for k, x in v.items():
        if k == "kind":
            continue
        if k not in tk.keys:
            accepted = ", ".join(sorted(tk.keys)) or "no other key"
            raise ConfigError(f"config key '{key}.{k}': not accepted for kind '{kind}'; accepted: {accepted}")
        out[k] = tk.keys[k](f"{key}.{k}", x)
    for k in tk.required:
        if k not in out:
            raise ConfigError(f"config key '{key}.{k}': required for kind '{kind}'")
    return out


def build_task(table: dict, seed: int, base: Path | None = None) -> dv.CompletionTask:
    """The :class:`dlnvolume.CompletionTask` of a validated ``[task]`` table.

    Examples
    --------
    >>> t = build_task(task_spec("task", {"kind": "custom", "values": [[1.0, 0.0], [0.0, 2.0]],
    ...                                   "mask": [[True, False], [False, True]]}), seed=0)
    >>> t.shape, t.n_observed
    ((2, 2), 2)
    """
    return TASK_KINDS[table["kind"]].build(table, seed, base)


def default_radius(task: dv.CompletionTask) -> float:
    """Default Frobenius window of the references: 1.5 × the task's scale ``‖P_Ω M‖_F · √(mn/|Ω|)``
    (an estimate of ‖M‖_F from the observed entries; 3.0 for the 2×2 diagonal task).

    Examples
    --------
    >>> round(default_radius(dv.tasks.diagonal_2x2()), 12)
    3.0
    """
    m, n = task.shape
    obs = np.asarray(task.values)[np.asarray(task.mask)]
    scale = float(np.linalg.norm(obs)) * math.sqrt(m * n / obs.size)
    return 1.5 * max(scale, 1e-12)
