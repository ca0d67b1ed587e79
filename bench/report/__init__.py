"""Reports: leaderboards (Markdown, LaTeX, CSV, static HTML), plots, significance, explain-gap.

* :func:`build_report` - results directory (+ suite) -> report files (see docs/reports.md).
* :func:`format_explain_gap` - readable table of :func:`ravar_bench.metrics.explain_gap` rows;
  :func:`paper_for_predictions` finds the paper's numbers for a stored prediction file.

Heavy imports (pandas, matplotlib) happen inside the functions that need them.
"""
from __future__ import annotations

from typing import Any

from .explain import format_explain_gap, paper_for_predictions

__all__ = ["build_report", "format_explain_gap", "paper_for_predictions", "ReportError",
           "FORMATS", "write_report"]


def __getattr__(name: str) -> Any:
    if name in ("build_report", "FORMATS", "write_report"):
        from . import build

        return getattr(build, name)
    if name == "ReportError":
        from .collect import ReportError

        return ReportError
    raise AttributeError(f"module 'ravar_bench.report' has no attribute {name!r}")
