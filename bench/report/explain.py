"""Readable output of :func:`ravar_bench.metrics.explain_gap` (``ravar-bench explain-gap``).

The metrics function scores one prediction file under every convention; this module groups the
rows by what they measure (action mAP, box IoU, localisation accuracy), shows each value's
difference to the paper_v1 value of its group, and, given the paper's number, which convention
lands closest to it.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Mapping, Sequence

#: explain_gap row name of the paper_v1 value of each group.
REFERENCE_ROWS = {"mAP": "(paper_v1.mAP)", "mIoU": "mIoU (sample mean)"}
GROUP_TITLES = {"mAP": "action mAP conventions", "mIoU": "box IoU conventions",
                "other": "other"}


def _group(name: str) -> str:
    low = name.lower()
    if low.startswith("miou"):
        return "mIoU"
    if low.startswith("acc@"):
        return "other"
    return "mAP"


def _reference(rows: Sequence[tuple[str, float, str]], group: str) -> float | None:
    needle = REFERENCE_ROWS.get(group)
    if needle is None:
        return None
    for name, value, _ in rows:
        if needle in name and _group(name) == group:
            return float(value)
    return None


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def format_explain_gap(rows: Sequence[tuple[str, float, str]],
                       paper: Mapping[str, float] | None = None, *,
                       paper_label: str = "paper (unverified)", width: int = 100) -> str:
    """A plain-text table of ``explain_gap`` rows: convention, value (x100), difference to the
    paper_v1 value of the same group, and what the convention computes.

    ``paper``: optional paper numbers by group (``{"mAP": 57.52, "mIoU": 36.42}``); each adds a
    line with the gap from the paper_v1 value to the paper and the nearest convention.
    """
    rows = [(str(n), float(v), str(d)) for n, v, d in rows]
    if not rows:
        return "explain-gap: no rows (nothing was scored)"
    name_w = max(len(n) for n, _, _ in rows) + 2
    lines = ["explain-gap: the same predictions under each metric convention (values x100)",
             "Δ = value minus the paper_v1 value of the same group (the official RefAtomNet "
             "definition)", "",
             f"{'convention':<{name_w}}{'value':>8}  {'Δ paper_v1':>10}  what it computes",
             "-" * min(width, name_w + 8 + 14 + 30)]
    for group in ("mAP", "mIoU", "other"):
        members = [r for r in rows if _group(r[0]) == group]
        if not members:
            continue
        ref = _reference(rows, group)
        title = GROUP_TITLES[group]
        if group in REFERENCE_ROWS:
            title += f" (paper_v1 value {_fmt(ref)})" if ref is not None else \
                " (paper_v1 row not found: no Δ)"
        lines.append(title)
        for name, value, desc in members:
            diff = "ref" if ref is not None and REFERENCE_ROWS[group] in name else \
                _fmt(value - ref, signed=True) if ref is not None and math.isfinite(value) else ""
            lines.append(f"  {name:<{name_w - 2}}{_fmt(value):>8}  {diff:>10}  {desc}")
        if paper and group in paper and paper[group] is not None:
            target = float(paper[group])
            finite = [(n, v) for n, v, _ in members if math.isfinite(v)]
            near = min(finite, key=lambda nv: abs(nv[1] - target)) if finite else None
            gap = f"{_fmt(target - ref, signed=True)} from the paper_v1 value" if ref is not None else ""
            closest = f"; closest convention: {near[0]} ({_fmt(near[1])})" if near else ""
            lines.append(f"  -> {paper_label} {group}: {_fmt(target)} {gap}{closest}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def paper_for_predictions(path: str | Path, split: str | None = None
                          ) -> tuple[dict[str, float] | None, str]:
    """The paper's numbers for a stored prediction file, for :func:`format_explain_gap`.

    A file inside a results directory (``jobs/<job_id>/predictions/<split>.<cond>.parquet``)
    has its job record two folders up; the record names the baseline, whose ``[paper]`` table
    (the current baseline file, else the record's copy) holds the numbers. Returns
    ``(values by group or None, label)``, e.g. ``({"mAP": 57.52, "mIoU": 36.42}, "paper
    (unverified)")``. ``split`` defaults to the split in the file name."""
    from .collect import paper_ref

    p = Path(path)
    record = p.parent.parent / "record.json"
    if not record.is_file():
        return None, "paper"
    try:
        rec = json.loads(record.read_text())
    except (OSError, json.JSONDecodeError):
        return None, "paper"
    ref = paper_ref(rec.get("baseline") or {})
    split = split or p.name.split(".", 1)[0]
    if ref is None or split not in ref.values:
        return None, "paper"
    values = {k: float(v) for k, v in ref.values[split].items() if k in ("mAP", "mIoU")}
    return (values or None), f"{ref.tag} {split}"
