"""Markdown, LaTeX and CSV renderings of the report tables.

User-supplied text (suite titles, baseline titles, labels, paths) is escaped for each target:
Markdown gets HTML entities and backslash escapes (renderers pass raw HTML through), LaTeX gets
its ten special characters escaped, CSV text cells that a spreadsheet would run as a formula get a
leading apostrophe.
"""
from __future__ import annotations

import csv
import html
import io
import math
import re
from typing import Any, Iterable

from .columns import EFFICIENCY, HEADLINE, header, metric
from .model import Cell, Leaderboard
from .tables import Table, Txt, all_tables, definitions

# ----------------------------------------------------------------------------------- Markdown
_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*|"})
_MD_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
_MD_LINK = re.compile(r"\](?=[(\[])")


def md_escape(text: str) -> str:
    """Safe inside a Markdown table cell or paragraph: no raw HTML, no emphasis, no link, no
    ``|``. Intra-word underscores (``paper_v1``) stay readable: CommonMark does not emphasise
    them."""
    out = html.escape(str(text), quote=False).translate(_MD_SPECIAL)
    out = _MD_UNDERSCORE.sub(r"\\_", out)
    return _MD_LINK.sub(r"\\]", out).replace("\n", " ")


def _md_cell(t: Txt) -> str:
    main = md_escape(t.main)
    if t.strong and main:
        main = f"**{main}**"
    return f"{main}<br>{md_escape(t.sub)}" if t.sub else main


def md_table(table: Table) -> str:
    cols = table.columns
    lines = ["| " + " | ".join(md_escape(c.header) for c in cols) + " |",
             "|" + "|".join(":--" if c.align == "l" else "--:" for c in cols) + "|"]
    kind = "entry"
    for row_kind, cells in table.rows:
        if row_kind != kind and table.group_title(row_kind):
            lines.append("| " + " | ".join([f"*{md_escape(table.group_title(row_kind))}*"]
                                           + [""] * (len(cols) - 1)) + " |")
        kind = row_kind
        lines.append("| " + " | ".join(_md_cell(t) for t in cells) + " |")
    return "\n".join(lines)


def markdown(lb: Leaderboard, plots: dict[str, str] | None = None) -> str:
    """The whole report as Markdown; ``plots`` maps a caption to a relative PNG path."""
    out = [f"# {md_escape(lb.title)}", "", _md_meta(lb), ""]
    for note in lb.notes:
        out += [f"> **Note.** {md_escape(note)}", ""]
    if lb.missing:
        out += [f"> **Incomplete.** {len(lb.missing)} job(s) of this suite have no record yet: "
                + md_escape(", ".join(sorted({f"{m.get('label')} (seed {m.get('seed')})"
                                              for m in lb.missing}))), ""]
    for table in all_tables(lb):
        out += [f"## {md_escape(table.title)}", ""]
        if table.caption:
            out += [md_escape(table.caption), ""]
        out += [md_table(table), ""]
        out += [f"- {md_escape(n)}" for n in table.notes]
        out += [""] if table.notes else []
    if plots:
        out += ["## Plots", ""]
        for caption, path in plots.items():
            out += [f"![{md_escape(caption)}]({_md_url(path)})", ""]
    out += ["## Definitions", ""]
    out += [f"- **{md_escape(label)}**: {md_escape(text)}" for label, text in definitions(lb)]
    return "\n".join(out).rstrip() + "\n"


def _md_url(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="/._-")


def _md_meta(lb: Leaderboard) -> str:
    parts = [f"suite `{md_escape(lb.suite)}`" if lb.suite else "all jobs in the store",
             f"results `{md_escape(lb.results_dir)}`"]
    if lb.data_specs:
        parts.append("data " + ", ".join(f"`{md_escape(d)}`" for d in lb.data_specs))
    parts += [f"{md_escape(k)} {md_escape(v)}" for k, v in lb.versions.items()]
    if lb.generated:
        parts.append(f"generated {md_escape(lb.generated)}")
    return "_" + " · ".join(parts) + "_"


# -------------------------------------------------------------------------------------- LaTeX
_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
                "±": r"$\pm$", "−": r"$-$", "—": "---", "≈": r"$\approx$", "†": r"$^\dagger$",
                "Δ": r"$\Delta$", "→": r"$\rightarrow$", "α": r"$\alpha$", "≥": r"$\geq$", "≤": r"$\leq$", "²": r"$^2$"}
_TEX_TABLE = str.maketrans(_TEX_SPECIAL)


def tex_escape(text: str) -> str:
    """Escape LaTeX specials (``\\ & % $ # _ { } ~ ^``) and map the report's symbols to math."""
    return str(text).translate(_TEX_TABLE).replace("\n", " ")


def _tex_cell(t: Txt) -> str:
    main = tex_escape(t.main)
    if t.strong and main:
        main = rf"\textbf{{{main}}}"
    return main + (rf" {{\tiny {tex_escape(t.sub)}}}" if t.sub else "")


def tex_table(table: Table, label: str) -> str:
    cols = table.columns
    spec = "".join(c.align for c in cols)
    lines = [r"\begin{table}[t]", r"\centering", r"\scriptsize",
             rf"\caption{{{tex_escape(table.title)}. {tex_escape(table.caption)}}}",
             rf"\label{{tab:{label}}}", r"\resizebox{\linewidth}{!}{%",
             rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(tex_escape(c.header) for c in cols) + r" \\", r"\midrule"]
    kind = "entry"
    for row_kind, cells in table.rows:
        if row_kind != kind and table.group_title(row_kind):
            lines += [r"\midrule",
                      rf"\multicolumn{{{len(cols)}}}{{l}}{{\textit{{{tex_escape(table.group_title(row_kind))}}}}} \\"]
        kind = row_kind
        lines.append(" & ".join(_tex_cell(t) for t in cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}}"]
    if table.notes:
        lines.append(r"\par\smallskip\parbox{\linewidth}{\tiny "
                     + " ".join(tex_escape(n) for n in table.notes) + "}")
    lines.append(r"\end{table}")
    return "\n".join(lines)


def latex(lb: Leaderboard) -> str:
    """Every table as a LaTeX ``table`` float (needs ``booktabs`` and ``graphicx``)."""
    head = ["% ravar-bench report: " + tex_escape(lb.title).replace("\n", " "),
            r"% requires \usepackage{booktabs} and \usepackage{graphicx}", ""]
    slug = re.sub(r"[^A-Za-z0-9-]+", "-", lb.suite or "all")
    body = [tex_table(t, f"ravar-{slug}-{t.key}") for t in all_tables(lb)]
    defs = [r"\begin{itemize}\scriptsize"]
    defs += [rf"\item \textbf{{{tex_escape(a)}}}: {tex_escape(b)}" for a, b in definitions(lb)]
    defs.append(r"\end{itemize}")
    return "\n".join(head) + "\n\n".join(body) + "\n\n" + "\n".join(defs) + "\n"


# ---------------------------------------------------------------------------------------- CSV
def csv_text(value: Any) -> Any:
    """Numbers as they are; text that a spreadsheet would evaluate as a formula is quoted."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _cell_fields(prefix: str, c: Cell | None) -> dict[str, Any]:
    def f(v: float | None) -> Any:
        return "" if v is None or not math.isfinite(v) else round(v, 6)

    if c is None:
        return {f"{prefix} mean": "", f"{prefix} std": "", f"{prefix} ci_low": "",
                f"{prefix} ci_high": "", f"{prefix} ci_method": ""}
    return {f"{prefix} mean": f(c.mean), f"{prefix} std": f(c.std), f"{prefix} ci_low": f(c.low),
            f"{prefix} ci_high": f(c.high), f"{prefix} ci_method": c.ci}


def leaderboard_records(lb: Leaderboard) -> list[dict[str, Any]]:
    """One flat dict per row with every number of the leaderboard (column names carry the
    split and the metric's definition, e.g. ``test mAP (weighted, paper_v1) mean``)."""
    out = []
    rank = 0
    for r in lb.ordered():
        rank += r.kind == "entry"
        rec: dict[str, Any] = {
            "rank": rank if r.kind == "entry" else "", "label": r.label, "kind": r.kind,
            "baseline": r.baseline or "", "title": r.title or "", "domain": r.domain or "",
            "group": r.group or "", "adapter": r.adapter or "", "n_seeds": len(r.seeds),
            "seeds": " ".join(str(s) for s in r.seeds), "job_ids": " ".join(r.job_ids)}
        for s in lb.splits:
            for k in lb.paper_metrics + lb.strict_metrics:
                rec.update(_cell_fields(header(s, k), r.cell(s, k)))
        for s in lb.splits:
            for k in lb.paper_metrics:
                ref = r.paper.value(s, k) if r.paper else None
                d = r.paper_diff(s, k)
                rec[f"paper {header(s, k)}"] = "" if ref is None else ref
                rec[f"diff vs paper {header(s, k)}"] = "" if d is None else round(d, 6)
        rec["paper_verified"] = "" if r.paper is None else r.paper.verified
        rec["paper_source"] = "" if r.paper is None else r.paper.source
        for key, head, _ in EFFICIENCY:
            v = r.efficiency.get(key)
            rec[head] = "" if v is None else v
        rec["device"] = r.efficiency.get("device", "")
        rec[f"sig letters ({header(lb.paper_split, HEADLINE)})"] = r.letters
        rec["differs_from_best"] = "" if r.differs_from_best is None else r.differs_from_best
        rec["above_prior"] = "" if r.above_prior is None else r.above_prior  # "did it learn?"
        rec["vs_prior_ci_low"], rec["vs_prior_ci_high"] = r.vs_prior or ("", "")
        out.append(rec)
    return out


def cells_records(lb: Leaderboard) -> list[dict[str, Any]]:
    """Every aggregated cell in long form: row, split, condition, metric, statistics."""
    out = []
    for r in lb.ordered():
        for (split, cond, key), c in sorted(r.cells.items()):
            pert, _, sev = cond.rpartition("+")[2].partition("@")
            out.append({"label": r.label, "kind": r.kind, "baseline": r.baseline or "",
                        "split": split, "condition": cond,
                        "perturbation": pert if sev else "", "severity": sev,
                        "metric": key, "metric_label": metric(key).label,
                        **{k.split(" ", 1)[1]: v for k, v in _cell_fields("x", c).items()},
                        "n_seeds": c.n})
    return out


def to_csv(records: Iterable[dict[str, Any]]) -> str:
    records = list(records)
    buf = io.StringIO()
    if not records:
        return ""
    fields = list(dict.fromkeys(k for rec in records for k in rec))
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for rec in records:
        writer.writerow({k: csv_text(v) for k, v in rec.items()})
    return buf.getvalue()
