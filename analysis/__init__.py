"""analysis: statistics, hypothesis tests, ArviZ export, plots, experiments and the ``dlnvolume`` CLI.

Imports :mod:`dlnvolume` and :mod:`samplers` (ARCHITECTURE.md: ``analysis → samplers → dlnvolume``).

* :mod:`analysis.statistics` — the registry of statistics (effective rank, numerical rank, norms,
  log-volume density on the configured stratum, test error, position on the 2×2 hyperbola; docs/math.md
  §3, §5.2, §6.2), computed once per set of matrices.
* :mod:`analysis.hypothesis` — :class:`TestResult`; distribution match (permutation KS / AD, energy
  distance, Benjamini–Hochberg), volume percentiles, Mann–Whitney against a null measure (docs/math.md §7).
* :mod:`analysis.verdict` — per depth and reference: the question, the answer at α, p-value and its
  permutation floor, effect size with its interval, ESS, caveats.
* :mod:`analysis.diagnostics` — the only arviz user: ``results.nc`` as an xarray DataTree, one
  posterior/sample_stats per reference (ArviZ 0.23 InferenceData or 1.x DataTree), R-hat / ESS summaries.
* :mod:`analysis.tasks` — the registry of task kinds (built-ins and ``custom``) with their exact-reference
  capability.
* :mod:`analysis.plots` — volume histograms, the hyperbola picture, spectra.
* :mod:`analysis.references` — vectorized grid version of the exact 2×2 hyperbola references.
* :mod:`analysis.experiment`, :mod:`analysis.runner`, :mod:`analysis.report`, :mod:`analysis.cli` —
  TOML experiments, the pipeline, reports and the command line.

Heavy modules (arviz, matplotlib) are imported only by the submodules that need them.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["statistics", "hypothesis", "experiment", "TestResult"]


def __getattr__(name: str) -> Any:
    """The public names, imported on first use (PEP 562): ``import analysis.cli`` stays light, so that the
    console script installs its Ctrl-C handling before numpy, scipy and the samplers are imported."""
    if name in ("statistics", "hypothesis", "experiment"):
        return importlib.import_module(f".{name}", __name__)
    if name == "TestResult":
        from .hypothesis import TestResult

        return TestResult
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
