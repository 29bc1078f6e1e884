"""Figures (matplotlib, Agg backend): volume histograms, the 2×2 hyperbola picture, spectra.

Every function returns a :class:`matplotlib.figure.Figure`; :func:`save` writes PNG. ArviZ trace and
rank plots live in :mod:`analysis.diagnostics` (the only module importing arviz).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import dlnvolume as dv  # noqa: E402

__all__ = ["depth_label", "volume_histograms", "hyperbola_picture", "spectra", "ladder", "save", "close"]


#: legend text size (points): at the saved 110 dpi and the report's 1168-px column, 9 pt renders at 13.75 px
#: (figures up to 1168 px wide are not scaled down; 6 pt in a 3-column figure had rendered at ~7 px)
LEGEND_PT = 9
#: width of the report's content column in pixels (body max-width 1200 px minus 2×1em padding)
PAGE_PX = 1168


def depth_label(depth: float) -> str:
    """``"N=5"`` / ``"N=∞"``."""
    return "N=∞" if depth == math.inf else f"N={int(depth)}"


def _grid(n: int) -> tuple[int, int]:
    cols = min(n, 2)  # at most two columns: text stays readable at the report's width (LEGEND_PT)
    return int(math.ceil(n / cols)), cols


def volume_histograms(
    panels: Sequence[dict[str, Any]], *, title: str = "log volume density: endpoints vs reference"
) -> Figure:
    """One panel per depth: histograms of ``log ρ_N`` for endpoints and each reference sample.

    ``panels``: dicts with ``depth``, ``endpoints`` (runs,), ``references`` (label -> values) and
    ``legend`` (label -> extra text, e.g. test results, appended in the legend).
    """
    rows, cols = _grid(max(len(panels), 1))
    fig, axes = plt.subplots(rows, cols, figsize=(5.6 * cols, 4.2 * rows), squeeze=False)
    for ax, p in zip(axes.flat, panels):
        ep = np.asarray(p["endpoints"], dtype=float)
        refs = {k: np.asarray(v, dtype=float).reshape(-1) for k, v in p.get("references", {}).items()}
        finite = [a[np.isfinite(a)] for a in [ep, *refs.values()] if a.size]
        allv = np.concatenate(finite) if finite else np.zeros(1)
        lo, hi = np.percentile(allv, [0.5, 99.5]) if allv.size else (0, 1)
        if hi <= lo:
            lo, hi = lo - 1, hi + 1
        bins = np.linspace(lo, hi, 40)
        legend = p.get("legend", {})
        for label, vals in refs.items():
            vals = vals[np.isfinite(vals)]
            if vals.size:
                ax.hist(np.clip(vals, lo, hi), bins=bins, density=True, alpha=0.45,
                        label=f"{label} (n={vals.size})" + legend.get(label, ""))
        fin = ep[np.isfinite(ep)]
        if fin.size:  # a density of no values is 0/0
            ax.hist(np.clip(fin, lo, hi), bins=bins, density=True, histtype="step", lw=2, color="k",
                    label=f"flow endpoints (n={ep.size})" + legend.get("endpoints", ""))
        else:
            ax.text(0.5, 0.5, "no endpoint kept at this depth", transform=ax.transAxes, ha="center", va="center",
                    fontsize=LEGEND_PT)
        ax.set_title(depth_label(p["depth"]))
        ax.set_xlabel("log ρ_N (rank stratum)")
        ax.legend(fontsize=LEGEND_PT)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def hyperbola_picture(
    panels: Sequence[dict[str, Any]], *, limit: float = 3.0, grid: int = 121, rank: int = 1
) -> Figure:
    """The 2×2 diagonal task (docs/math.md §5.2, CMV Fig. 4): endpoints on the ``(a, b) = (X12, X21)`` plane.

    Shading: ``log ρ_N`` on the solution set ``[[1, a], [b, 1]]`` evaluated on the rank-``rank``
    stratum (rank 1: at the best rank-1 approximation, so the shading is finite off the hyperbola);
    the rank-1 hyperbola ``ab = 1`` in red, corners ``±(1, 1)`` marked. ``panels``: dicts with
    ``depth`` and ``X`` (runs, 2, 2).
    """
    rows, cols = _grid(max(len(panels), 1))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4.0 * rows), squeeze=False)
    g = np.linspace(-limit, limit, grid)
    A, B = np.meshgrid(g, g)
    M = np.ones(A.shape + (2, 2))
    M[..., 0, 1] = A
    M[..., 1, 0] = B
    for ax, p in zip(axes.flat, panels):
        L = np.asarray(dv.log_volume_density(M, p["depth"], rank=rank), dtype=float)
        L = np.where(np.isfinite(L), L, np.nan)
        im = ax.pcolormesh(A, B, L, shading="auto", cmap="viridis")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=f"log ρ (rank {rank})")
        for sign in (1, -1):
            tt = sign * np.linspace(1 / limit, limit, 200)
            ax.plot(tt, 1 / tt, color="red", lw=1)
        X = np.asarray(p["X"], dtype=float)
        ax.scatter(X[:, 0, 1], X[:, 1, 0], s=6, c="white", edgecolors="k", linewidths=0.3, label="endpoints")
        ax.scatter([1, -1], [1, -1], marker="x", c="red", s=40, label="corners")
        ax.set_xlim(-limit, limit)
        ax.set_ylim(-limit, limit)
        ax.set_aspect("equal")
        ax.set_xlabel("a = X12")
        ax.set_ylabel("b = X21")
        ax.set_title(depth_label(p["depth"]))
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def spectra(panels: Sequence[dict[str, Any]], *, top: int = 10) -> Figure:
    """Singular values (log scale) of endpoints per depth: median and 10–90% band of each index.

    ``panels``: dicts with ``depth``, ``sigma`` (runs, k) and optionally ``references``
    (label -> (n, k)) drawn as dashed medians.
    """
    fig, ax = plt.subplots(figsize=(7, 4.6))
    for p in panels:
        s = np.asarray(p["sigma"], dtype=float)[:, :top]
        idx = np.arange(1, s.shape[1] + 1)
        med = np.median(s, axis=0)
        line, = ax.plot(idx, np.maximum(med, 1e-300), marker="o", label=depth_label(p["depth"]))
        lo, hi = np.percentile(s, [10, 90], axis=0)
        ax.fill_between(idx, np.maximum(lo, 1e-300), np.maximum(hi, 1e-300), color=line.get_color(), alpha=0.2)
        for label, r in (p.get("references") or {}).items():
            r = np.asarray(r, dtype=float).reshape(-1, np.asarray(r).shape[-1])[:, :top]
            ax.plot(idx, np.maximum(np.median(r, axis=0), 1e-300), ls="--", color=line.get_color(), lw=0.8,
                    label=f"{label} {depth_label(p['depth'])}")
    ax.set_yscale("log")
    ax.set_xlabel("index i")
    ax.set_ylabel("σ_i (median, 10–90%)")
    ax.set_title("singular-value spectra of flow endpoints")
    ax.legend(fontsize=LEGEND_PT)
    fig.tight_layout()
    return fig


def ladder(panels: Sequence[dict[str, Any]]) -> Figure:
    """Per depth, against the initialization scale s (log–log, s decreasing to the right): the median
    distance of the endpoints to each predictor's nearest point (quartile band), and σ_{r+1}/σ_1 (dashed, per
    sign group of det X0).

    ``panels``: dicts with ``depth``, ``scales`` (k,), ``distances`` (name -> (k, runs)), ``ratios``
    (label -> (k,) medians) and ``best`` (the predictor approached, or None).
    """
    rows, cols = _grid(max(len(panels), 1))
    fig, axes = plt.subplots(rows, cols, figsize=(4.8 * cols, 3.8 * rows), squeeze=False)
    for ax, p in zip(axes.flat, panels):
        s = np.asarray(p["scales"], dtype=float)
        for name, d in p.get("distances", {}).items():
            d = np.maximum(np.asarray(d, dtype=float), 1e-300)
            med = np.median(d, axis=1)
            lo, hi = np.percentile(d, [25, 75], axis=1)
            lw = 2.5 if name == p.get("best") else 1.2
            line, = ax.plot(s, med, marker="o", lw=lw, label=name + (" (approached)" if name == p.get("best") else ""))
            ax.fill_between(s, lo, hi, color=line.get_color(), alpha=0.15)
        for label, r in p.get("ratios", {}).items():
            ax.plot(s, np.maximum(np.asarray(r, dtype=float), 1e-300), ls="--", color="0.3", lw=1,
                    label=f"σ_{{r+1}}/σ_1 {label}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.invert_xaxis()
        ax.set_xlabel("initialization scale s")
        ax.set_ylabel("median distance to predicted point")
        ax.set_title(depth_label(p["depth"]))
        ax.legend(fontsize=LEGEND_PT)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def save(fig: Figure, path: Any, *, dpi: int = 110) -> None:
    """Write PNG and close the figure."""
    fig.savefig(str(path), dpi=dpi)
    plt.close(fig)


def close(fig: Figure) -> None:
    plt.close(fig)
