"""``build_report``: one call from a results directory to every report file.

Used by ``ravar-bench report`` and ``ravar-bench quickstart``. The work is: collect the table
model from the store (:mod:`.collect`), draw the plots the data supports (:mod:`.plots`), then
render the same tables to each requested format.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Iterable

from . import html as html_mod
from . import plots as plot_mod
from .collect import CollectOptions, ReportError, collect
from .expectations import summary_line as expectations_summary
from .expectations import text_report as expectations_text
from .model import Leaderboard
from .text import cells_records, latex, leaderboard_records, markdown, to_csv

FORMATS = ("md", "tex", "csv", "html", "png")

#: plot key -> (file name, caption)
PLOTS = {
    "bars": ("bars.png", "Headline metric per row with 95 % CI"),
    "pareto_gflops": ("pareto_gflops.png", "Accuracy vs GFLOPs per query, Pareto front"),
    "pareto_latency": ("pareto_latency.png", "Accuracy vs latency per query, Pareto front"),
    "sweep": ("sweep.png", "Parameter sweep"),
    "robustness": ("robustness.png", "Robustness per perturbation and severity"),
    "per_class": ("per_class_ap.png", "Per-class AP of the best row (strict_v1 per-class table)"),
    "significance": ("significance.png", "Pairwise significance (paired cluster bootstrap, Holm)"),
}


def draw_plots(lb: Leaderboard, folder: Path) -> dict[str, Path]:
    """Every plot the leaderboard has data for: {plot key: path}."""
    made = {
        "bars": plot_mod.bars(lb, folder / PLOTS["bars"][0]),
        "pareto_gflops": plot_mod.pareto(lb, "gflops", folder / PLOTS["pareto_gflops"][0]),
        "pareto_latency": plot_mod.pareto(lb, "latency_ms", folder / PLOTS["pareto_latency"][0]),
        "sweep": plot_mod.sweep(lb, folder / PLOTS["sweep"][0]),
        "robustness": plot_mod.robustness(lb, folder / PLOTS["robustness"][0]),
        "per_class": plot_mod.per_class(lb, folder / PLOTS["per_class"][0]),
        "significance": plot_mod.significance_heatmap(lb.significance,
                                                      folder / PLOTS["significance"][0]),
    }
    return {k: v for k, v in made.items() if v is not None}


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def write_report(lb: Leaderboard, out_dir: str | Path,
                 formats: Iterable[str] = FORMATS) -> dict[str, Path]:
    """Render a collected leaderboard into ``out_dir``; returns {what: path}."""
    fmts = tuple(formats)
    bad = [f for f in fmts if f not in FORMATS]
    if bad:
        raise ReportError(f"build_report: parameter 'formats' has unknown value(s) {bad}; "
                          f"choose from {', '.join(FORMATS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    tmp_plots = None
    plots: dict[str, Path] = {}
    if "png" in fmts:
        plots = draw_plots(lb, out / "plots")
        written.update({f"png:{k}": p for k, p in plots.items()})
    elif "html" in fmts:
        tmp_plots = Path(tempfile.mkdtemp(prefix="ravar-report-"))
        plots = draw_plots(lb, tmp_plots)
    try:
        captions = {PLOTS[k][1]: p for k, p in plots.items()}
        if "md" in fmts:
            rel = {c: str(p.relative_to(out)) for c, p in captions.items()} if "png" in fmts else {}
            written["md"] = _write(out / "leaderboard.md", markdown(lb, rel))
        if "tex" in fmts:
            written["tex"] = _write(out / "leaderboard.tex", latex(lb))
        if "csv" in fmts:
            written["csv"] = _write(out / "leaderboard.csv", to_csv(leaderboard_records(lb)))
            written["csv:cells"] = _write(out / "cells.csv", to_csv(cells_records(lb)))
            if lb.significance is not None:
                sig = lb.significance
                written["csv:significance"] = _write(out / "significance_pairs.csv",
                                                     to_csv(sig.pairs()))
                written["csv:significance_matrix"] = _write(
                    out / "significance_matrix.csv", to_csv(_matrix_records(lb)))
            if lb.per_class:
                written["csv:per_class"] = _write(out / "per_class_ap.csv",
                                                  to_csv(lb.per_class["rows"]))
        if "html" in fmts:
            written["html"] = _write(out / "report.html", html_mod.render(lb, captions))
        line = lb.learning_summary()
        if line is not None:  # "did it learn?" in one line, for the end of run / quickstart
            written["txt:learning"] = _write(out / "did_it_learn.txt", line + "\n")
        text = expectations_text(lb)
        if text is not None:  # the suite's [[expect]] verdicts; the first line is the summary
            written["txt:expectations"] = _write(out / "expectations.txt", text)
    finally:
        if tmp_plots is not None:
            shutil.rmtree(tmp_plots, ignore_errors=True)
    return written


def _matrix_records(lb: Leaderboard) -> list[dict[str, object]]:
    """Holm-adjusted p-values as a square matrix (row label, then one column per row)."""
    sig = lb.significance
    assert sig is not None
    out = []
    for i, a in enumerate(sig.labels):
        rec: dict[str, object] = {"p_holm (row vs column)": a, "letters": sig.letters[i]}
        for j, b in enumerate(sig.labels):
            rec[b] = "" if i == j else round(float(sig.p_holm[i, j]), 6)
        out.append(rec)
    return out


def build_report(results_dir: str | Path, suite_name: str | None, out_dir: str | Path,
                 formats: Iterable[str] = FORMATS, paper_split: str | None = None, *,
                 n_resamples: int | None = None, data_dir: str | Path | None = None,
                 alpha: float = 0.05, significance: bool = True) -> dict[str, Path]:
    """Write the report of ``suite_name`` (None: every job in the store) into ``out_dir``.

    * ``formats``: any of "md", "tex", "csv", "html", "png".
    * ``paper_split``: the split compared with the paper and used for ranking, strict_v1
      columns, significance and plots; None = the suite's ``paper_split`` (else "test").
    * ``n_resamples``: cluster-bootstrap resamples (None = the suite's ``bootstrap`` setting;
      0 = no recomputed CIs, stored CIs are shown instead).
    * ``data_dir``: where to look for the prepared splits when the paths stored in the records
      no longer exist (ground truth for CIs, significance and per-class AP).

    Returns {what: path}: "md", "tex", "csv", "html", "csv:cells", "csv:significance",
    "csv:significance_matrix", "csv:per_class", "txt:learning" (the "did it learn?" line),
    "txt:expectations" (the suite's expected orderings, when its file declares any; first line =
    the summary) and "png:<plot>" for each plot drawn.
    Raises :class:`ReportError` (a one-line message naming the directory, suite or parameter).
    """
    if paper_split is not None and paper_split not in ("val", "test"):
        raise ReportError(f"build_report: parameter 'paper_split' must be 'val' or 'test', got "
                          f"{paper_split!r}")
    if n_resamples is not None and n_resamples < 0:
        raise ReportError(f"build_report: parameter 'n_resamples' must be >= 0, got {n_resamples}")
    if not 0 < alpha < 1:
        raise ReportError(f"build_report: parameter 'alpha' must be in (0, 1), got {alpha}")
    fmts = tuple(formats)
    bad = [f for f in fmts if f not in FORMATS]
    if bad:
        raise ReportError(f"build_report: parameter 'formats' has unknown value(s) {bad}; "
                          f"choose from {', '.join(FORMATS)}")
    lb = collect(results_dir, suite_name, CollectOptions(
        paper_split=paper_split, n_resamples=n_resamples, alpha=alpha, data_dir=data_dir,
        significance=significance))
    return write_report(lb, out_dir, fmts)


def summary_lines(results_dir: str | Path, suite_name: str | None) -> list[str]:
    """The lines that end a run, from one collection: "did it learn?" and, when the suite
    declares expected orderings, whether they hold. (No significance matrix: the verdicts rest
    on CIs and seed means; the p-values are in the full report.)"""
    lb = collect(results_dir, suite_name, CollectOptions(significance=False))
    return [line for line in (lb.learning_summary(), expectations_summary(lb)) if line]
