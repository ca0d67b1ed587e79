"""Report plots (PNG, matplotlib's Agg canvas; no pyplot, so no global backend is changed).

Each function draws one figure from the table model and returns the written path, or None when
the leaderboard lacks the data for it (a plot of nothing is worse than no plot).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from .columns import HEADLINE, header
from .model import Cell, Leaderboard, Row
from .stats import Significance

DOMAIN_COLORS = {"ours": "#c0392b", "fusion": "#8e44ad", "AAL": "#2874a6", "VTR": "#16a085",
                 "VQA": "#d68910", "VOS": "#7d6608", "control": "#7f8c8d", "external": "#34495e"}
GROUP_COLORS = {"PM": "#2874a6", "OM": "#d68910", "PI": "#16a085"}
DPI = 110


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path, margins: dict[str, float] | None = None) -> Path:
    """Fixed margins instead of tight_layout (measuring every tick label twice was most of the
    report's run time); ``bbox_inches="tight"`` then grows the canvas so long labels and titles
    are never cut off."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.subplots_adjust(**{"left": 0.1, "right": 0.97, "top": 0.9, "bottom": 0.12,
                           **(margins or {})})
    fig.savefig(path, format="png", bbox_inches="tight", pad_inches=0.15)
    return path


def plain(text: str) -> str:
    """User text shown literally (matplotlib would treat ``$...$`` as math)."""
    return str(text).replace("$", r"\$")


def _err(c: Cell) -> tuple[float, float]:
    if c.low is None or c.high is None:
        return 0.0, 0.0
    return max(0.0, c.mean - c.low), max(0.0, c.high - c.mean)


def _rows_with(lb: Leaderboard, kinds: Sequence[str] = ("entry", "control")) -> list[tuple[Row, Cell]]:
    out = []
    for r in lb.ordered():
        c = r.cell(lb.paper_split, HEADLINE)
        if r.kind in kinds and c is not None and math.isfinite(c.mean):
            out.append((r, c))
    return out


# ---------------------------------------------------------------------------------- bars
def bars(lb: Leaderboard, path: Path) -> Path | None:
    """Headline metric per row with CI whiskers; analytic references as dashed lines."""
    items = _rows_with(lb)
    if len(items) < 1:
        return None
    fig = _figure(max(6.0, 0.55 * len(items) + 2.5), 4.2)
    ax = fig.add_subplot()
    x = np.arange(len(items))
    means = [c.mean for _, c in items]
    err = np.array([_err(c) for _, c in items]).T
    from matplotlib.colors import to_rgba

    colors = [to_rgba(DOMAIN_COLORS.get(r.domain or "", "#5d6d7e"),
                      0.5 if r.kind == "control" else 0.9) for r, _ in items]
    ax.bar(x, means, color=colors)
    ax.errorbar(x, means, yerr=err, fmt="none", ecolor="#1d2330", capsize=3, lw=1)
    for r in lb.of_kind("reference"):
        c = r.cell(lb.paper_split, HEADLINE)
        if c is not None and math.isfinite(c.mean):
            ax.axhline(c.mean, ls="--", lw=0.9, color="#7f8c8d")
            ax.annotate(plain(r.label), (len(items) - 0.5, c.mean), fontsize=7, color="#555",
                        ha="right", va="bottom")
    ax.set_xticks(x, [plain(r.label) for r, _ in items], rotation=35, ha="right", fontsize=8)
    ax.set_ylabel(header(lb.paper_split, HEADLINE), fontsize=9)
    ax.set_title(f"{plain(lb.title)} (95 % CI whiskers)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path, {"bottom": 0.3})


# -------------------------------------------------------------------------------- pareto
def pareto_front(costs: Sequence[float], values: Sequence[float]) -> list[int]:
    """Indices of points no other point beats on both axes (lower cost, higher value), sorted by
    cost. Ties: a point with equal cost and equal value to an earlier one is not repeated."""
    pts = [(float(c), float(v), i) for i, (c, v) in enumerate(zip(costs, values))
           if math.isfinite(float(c)) and math.isfinite(float(v))]
    pts.sort(key=lambda t: (t[0], -t[1], t[2]))
    front, best = [], -math.inf
    for c, v, i in pts:
        if v > best:
            front.append(i)
            best = v
    return front


def pareto(lb: Leaderboard, cost: str, path: Path) -> Path | None:
    """Headline metric vs a cost (``gflops`` or ``latency_ms``), Pareto front highlighted."""
    items = [(r, c, r.efficiency.get(cost)) for r, c in _rows_with(lb)]
    items = [(r, c, float(v)) for r, c, v in items
             if isinstance(v, (int, float)) and math.isfinite(float(v)) and float(v) > 0]
    if len(items) < 2:
        return None
    xs = [v for _, _, v in items]
    ys = [c.mean for _, c, _ in items]
    front = pareto_front(xs, ys)
    fig = _figure(7.0, 4.6)
    ax = fig.add_subplot()
    for i, (r, c, v) in enumerate(items):
        on = i in front
        lo, hi = _err(c)
        ax.errorbar([v], [c.mean], yerr=[[lo], [hi]], fmt="o" if on else "s",
                    ms=8 if on else 5, color=DOMAIN_COLORS.get(r.domain or "", "#5d6d7e"),
                    mec="#1d2330" if on else "none", capsize=2, lw=0.8,
                    alpha=1.0 if on else 0.65)
        ax.annotate(plain(r.label), (v, c.mean), xytext=(4, 4), textcoords="offset points",
                    fontsize=7)
    fx = [xs[i] for i in front]
    fy = [ys[i] for i in front]
    ax.step(fx, fy, where="post", color="#c0392b", lw=1.2, alpha=0.8, label="Pareto front")
    ax.set_xscale("log")
    names = {"gflops": "GFLOPs per query (log)", "latency_ms": "latency, ms per query (log)"}
    ax.set_xlabel(names.get(cost, cost), fontsize=9)
    ax.set_ylabel(header(lb.paper_split, HEADLINE), fontsize=9)
    ax.set_title("accuracy vs cost (95 % CI whiskers)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    return _save(fig, path, {"left": 0.11, "bottom": 0.12})


# --------------------------------------------------------------------------------- sweep
def sweep(lb: Leaderboard, path: Path) -> Path | None:
    """A one-parameter sweep (e.g. the number of agents n) against the headline metric."""
    if not lb.sweep or len(lb.sweep.get("points", [])) < 2:
        return None
    pts = sorted(lb.sweep["points"], key=lambda p: p[0])
    xs = [float(x) for x, _, _ in pts]
    cells = [c for _, c, _ in pts]
    err = np.array([_err(c) for c in cells]).T
    fig = _figure(6.0, 4.0)
    ax = fig.add_subplot()
    ax.errorbar(xs, [c.mean for c in cells], yerr=err, fmt="-o", color="#c0392b", capsize=3)
    if min(xs) > 0 and max(xs) / min(xs) >= 8:
        ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [f"{x:g}" for x in xs])
    ax.set_xlabel(plain(lb.sweep["param"]), fontsize=9)
    ax.set_ylabel(header(lb.paper_split, HEADLINE), fontsize=9)
    ax.set_title(f"{plain(lb.sweep['param'])} sweep (95 % CI whiskers)", fontsize=10)
    ax.grid(alpha=0.3)
    return _save(fig, path, {"left": 0.13})


# ---------------------------------------------------------------------------- robustness
def robustness(lb: Leaderboard, path: Path) -> Path | None:
    """One panel per perturbation: headline metric vs severity (0 = clean), a line per row."""
    perts = lb.perturbations()
    if not perts:
        return None
    rows = [r for r in lb.ordered() if r.kind != "reference"]
    n = len(perts)
    ncol = min(4, n)
    nrow = math.ceil(n / ncol)
    fig = _figure(3.4 * ncol, 2.9 * nrow + 0.6)
    drawn = False
    for k, (name, items) in enumerate(perts.items()):
        ax = fig.add_subplot(nrow, ncol, k + 1)
        for r in rows:
            clean = r.cell(lb.paper_split, HEADLINE)
            pts = [(0, clean)] + [(s, r.cell(lb.paper_split, HEADLINE, cond)) for s, cond in items]
            pts = [(s, c) for s, c in pts if c is not None and math.isfinite(c.mean)]
            if len(pts) < 2:
                continue
            err = np.array([_err(c) for _, c in pts]).T
            ax.errorbar([s for s, _ in pts], [c.mean for _, c in pts], yerr=err, fmt="-o", ms=3,
                        capsize=2, lw=1, label=plain(r.label),
                        color=DOMAIN_COLORS.get(r.domain or "", None))
            drawn = True
        ax.set_title(plain(name), fontsize=9)
        ax.set_xlabel("severity", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if k % ncol == 0:
            ax.set_ylabel(header(lb.paper_split, HEADLINE), fontsize=7)
    if not drawn:
        return None
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=7)
    return _save(fig, path, {"left": 0.08, "bottom": 0.22, "hspace": 0.45, "wspace": 0.3})


# ------------------------------------------------------------------------------- per class
def per_class(lb: Leaderboard, path: Path) -> Path | None:
    """strict_v1 per-class AP of the best row, classes with positives, sorted, coloured by group."""
    if not lb.per_class or not lb.per_class.get("rows"):
        return None
    rows = [r for r in lb.per_class["rows"] if r["support"] > 0 and math.isfinite(r["AP"])]
    if not rows:
        return None
    rows.sort(key=lambda r: -r["AP"])
    fig = _figure(max(7.0, 0.16 * len(rows) + 2), 4.4)
    ax = fig.add_subplot()
    x = np.arange(len(rows))
    ax.bar(x, [r["AP"] for r in rows], color=[GROUP_COLORS.get(r["group"], "#777") for r in rows])
    ax.set_xticks(x, [plain(f"{r['name'][:22]} ({r['support']})") for r in rows], rotation=90,
                  fontsize=6)
    ax.set_ylabel("AP (step-wise, per class) ×100", fontsize=9)
    ax.set_title(f"per-class AP, {plain(lb.per_class['label'])} ({lb.per_class['split']}, mean "
                 "over seeds; support in brackets)", fontsize=9)
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color=c, label=g) for g, c in GROUP_COLORS.items()], fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path, {"left": 0.06, "right": 0.99, "bottom": 0.42})


# ---------------------------------------------------------------------------- significance
def significance_heatmap(sig: Significance | None, path: Path) -> Path | None:
    """Row-minus-column differences; * marks Holm-significant pairs."""
    if sig is None or len(sig.labels) < 2:
        return None
    k = len(sig.labels)
    fig = _figure(max(5.0, 0.55 * k + 3), max(4.0, 0.5 * k + 2))
    ax = fig.add_subplot()
    d = np.where(np.eye(k, dtype=bool), np.nan, sig.diff)
    lim = float(np.nanmax(np.abs(d))) if np.isfinite(d).any() else 1.0
    im = ax.imshow(d, cmap="RdBu", vmin=-lim or -1, vmax=lim or 1)
    for i in range(k):
        for j in range(k):
            if i != j and np.isfinite(d[i, j]):
                star = "*" if sig.significant[i, j] else ""
                ax.text(j, i, f"{d[i, j]:+.1f}{star}", ha="center", va="center", fontsize=7)
    names = [plain(f"{lab} [{sig.letters[i]}]" if sig.letters else lab)
             for i, lab in enumerate(sig.labels)]
    ax.set_xticks(range(k), names, rotation=40, ha="right", fontsize=7)
    ax.set_yticks(range(k), names, fontsize=7)
    fig.colorbar(im, ax=ax, label=f"row − column, {header(sig.split, sig.metric)}")
    ax.set_title(f"paired cluster bootstrap; * Holm p < {sig.alpha}", fontsize=9)
    return _save(fig, path, {"left": 0.25, "bottom": 0.25, "right": 0.95})
