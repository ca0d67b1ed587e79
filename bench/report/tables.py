"""Format-neutral tables built from a :class:`~.model.Leaderboard`.

Each table is a list of columns (header + definition) and rows of :class:`Txt` cells (a main
text and an optional secondary line, e.g. the CI). Markdown, LaTeX and HTML render the *same*
tables, so the formats cannot disagree about a number.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .columns import CI_NOTE, EFFICIENCY, HEADLINE, POOLED_CI_NOTE, header, metric
from .model import Cell, Leaderboard, Row

DASH = "—"
KIND_TITLES = {"control": "Controls (blind baselines)",
               "reference": "References (analytic values of the synthetic data)"}


@dataclass
class Txt:
    main: str
    sub: str = ""
    strong: bool = False


@dataclass
class Column:
    header: str
    definition: str = ""
    align: str = "r"


@dataclass
class Table:
    key: str
    title: str
    columns: list[Column]
    rows: list[tuple[str, list[Txt]]]  # (row kind, cells)
    caption: str = ""
    notes: list[str] = field(default_factory=list)

    def group_title(self, kind: str) -> str:
        return KIND_TITLES.get(kind, "")


# ------------------------------------------------------------------------------- formatting
def num(value: float | None, digits: int = 2, signed: bool = False) -> str:
    if value is None or not math.isfinite(float(value)):
        return DASH
    text = f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
    return text.replace("-", "−")  # a real minus sign; LaTeX maps it back


def pnum(p: float | None) -> str:
    """A p-value: three decimals, ``<0.001`` below that."""
    if p is None or not math.isfinite(float(p)):
        return DASH
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def cell_txt(c: Cell | None, strong: bool = False) -> Txt:
    """``mean ± std`` over seeds, CI on the second line (``≈`` marks a pooled CI)."""
    if c is None or not math.isfinite(c.mean):
        return Txt(DASH)
    main = num(c.mean) + (f" ± {num(c.std)}" if c.std is not None else "")
    sub = ""
    if c.low is not None and c.high is not None:
        sub = ("≈" if c.ci == "pooled" else "") + f"[{num(c.low)}, {num(c.high)}]"
    return Txt(main, sub, strong)


def efficiency_txt(row: Row, key: str) -> Txt:
    value = row.efficiency.get(key)
    if isinstance(value, str):
        return Txt(value)
    if value is None or not math.isfinite(float(value)):
        return Txt(DASH)
    digits = 2 if key == "params_m" else 3 if key == "gflops" else 2
    return Txt(num(float(value), digits))


# ---------------------------------------------------------------------------------- tables
def leaderboard_table(lb: Leaderboard) -> Table:
    """The main table: paper_v1 on every split, strict_v1 and the paper value on the paper
    split, efficiency, seeds and the significance letters."""
    ps = lb.paper_split
    cols = [Column("#", "rank by " + header(ps, HEADLINE), "r"), Column("model", "", "l"),
            Column("domain", "", "l"), Column("seeds", "training seeds aggregated", "r")]
    metric_cols = [(s, k) for s in lb.splits for k in lb.paper_metrics]
    metric_cols += [(ps, k) for k in lb.strict_metrics]
    cols += [Column(header(s, k), metric(k).definition) for s, k in metric_cols]
    show_paper = lb.has_paper()
    if show_paper:
        cols += [Column(f"paper {header(ps, HEADLINE)}", "the paper's value for this row "
                        "(label 'unverified' = not checked against the PDF)"),
                 Column(f"Δ {metric(HEADLINE).label}", "measured seed mean minus the paper value")]
    cols += [Column(h, d) for _, h, d in EFFICIENCY]
    show_sig = lb.significance is not None
    if show_sig:
        cols.append(Column("sig.", "compact letters: rows sharing a letter do not differ "
                           f"significantly in {header(ps, HEADLINE)} (paired cluster bootstrap, "
                           "Holm-adjusted, α = 0.05); † = differs from the best row", "l"))
    show_learned = any(r.above_prior is not None for r in lb.rows)
    if show_learned:
        cols.append(Column("learned?", f"did it learn? yes = {header(ps, HEADLINE)} above the prior row "
                           "(paired cluster bootstrap, 95 % CI of the difference above 0); "
                           "NO = not above the prior: the row shows nothing", "l"))
    rows = []
    rank = 0
    for r in lb.ordered():
        rank += r.kind == "entry"
        cells = [Txt(str(rank) if r.kind == "entry" else ""), Txt(r.label, strong=r.is_best),
                 Txt(r.domain or DASH), Txt(str(len(r.seeds)) if r.seeds else DASH)]
        cells += [cell_txt(r.cell(s, k), strong=r.is_best and k == HEADLINE and s == ps)
                  for s, k in metric_cols]
        if show_paper:
            ref = r.paper.value(ps, HEADLINE) if r.paper else None
            cells.append(Txt(num(ref), r.paper.tag if ref is not None and r.paper else ""))
            cells.append(Txt(num(r.paper_diff(ps, HEADLINE), signed=True)))
        cells += [efficiency_txt(r, key) for key, _, _ in EFFICIENCY]
        if show_sig:
            mark = r.letters + (" †" if r.differs_from_best else "")
            cells.append(Txt(mark or DASH))
        if show_learned:
            cells.append(Txt(DASH if r.above_prior is None else "yes" if r.above_prior else "NO",
                             strong=r.above_prior is False))
        rows.append((r.kind, cells))
    notes = [CI_NOTE]
    if any(c.ci == "pooled" for r in lb.rows for c in r.cells.values()):
        notes.append(POOLED_CI_NOTE)
    notes += [f"{r.label}: {r.note}" for r in lb.of_kind("reference") if r.note]
    return Table("leaderboard", "Leaderboard", cols, rows,
                 caption=f"mean ± std over seeds; second line: 95 % CI. Ranked by "
                         f"{header(ps, HEADLINE)}.", notes=notes)


def paper_table(lb: Leaderboard) -> Table | None:
    """Measured vs the paper's numbers, per split, for rows whose baseline has [paper] values."""
    rows = []
    for r in lb.ordered():
        if r.paper is None:
            continue
        for split in lb.splits:
            if not any(r.paper.value(split, k) is not None for k in lb.paper_metrics):
                continue
            cells = [Txt(r.label), Txt(split), Txt(r.paper.paper_row or DASH), Txt(r.paper.tag)]
            for k in lb.paper_metrics:
                c, ref = r.cell(split, k), r.paper.value(split, k)
                cells.append(cell_txt(c))
                cells.append(Txt(num(ref)))
                d = r.paper_diff(split, k)
                inside = ""
                if d is not None and c is not None and c.low is not None and ref is not None:
                    inside = "paper inside CI" if c.low <= ref <= c.high else "paper outside CI"
                cells.append(Txt(num(d, signed=True), inside))
            rows.append((r.kind, cells))
    if not rows:
        return None
    cols = [Column("model", "", "l"), Column("split", "", "l"), Column("paper row", "", "l"),
            Column("numbers", "'paper (unverified)': not checked against the PDF", "l")]
    for k in lb.paper_metrics:
        m = metric(k)
        cols += [Column(f"measured {m.label}", m.definition), Column(f"paper {m.label}"),
                 Column(f"Δ {m.label}", "measured minus paper")]
    notes = sorted({f"{r.label}: {r.paper.source} (read from {r.paper.origin})"
                    for r in lb.rows if r.paper is not None})
    return Table("paper", "Paper comparison", cols, rows,
                 caption="Measured seed means next to the paper's numbers (paper_v1 definitions).",
                 notes=notes)


def conditions_table(lb: Leaderboard, keys: tuple[str, ...] = ("paper_v1.mIoU", HEADLINE)) -> Table | None:
    """mIoU and the headline metric under each evaluation control (text_swap, location_drop, ...).

    Both matter: a model that finds the referred person from the sentence loses its box first.
    """
    extra = lb.extra_conditions()
    if not extra:
        return None
    ps = lb.paper_split
    cols = [Column("model", "", "l")]
    for key in keys:
        cols.append(Column(f"none: {header(ps, key)}"))
        for c in extra:
            cols += [Column(f"{c}: {header(ps, key)}"), Column(f"Δ {c} − none")]
    rows = []
    for r in lb.ordered():
        if r.cell(ps, HEADLINE) is None:
            continue
        cells = [Txt(r.label)]
        for key in keys:
            base = r.cell(ps, key)
            cells.append(cell_txt(base))
            for c in extra:
                cc = r.cell(ps, key, c)
                cells.append(cell_txt(cc))
                d = cc.mean - base.mean if cc is not None and base is not None else None
                cells.append(Txt(num(d, signed=True)))
        rows.append((r.kind, cells))
    return Table("conditions", "Evaluation controls", cols, rows,
                 caption="text_swap gives each query another query's text; location_drop removes "
                         "the location cue. A model that uses the referring text should drop.")


def robustness_table(lb: Leaderboard) -> Table | None:
    """Headline metric per perturbation and severity (0 = clean)."""
    perts = lb.perturbations()
    if not perts:
        return None
    ps = lb.paper_split
    sevs = sorted({s for v in perts.values() for s, _ in v})
    cols = [Column("model", "", "l"), Column("perturbation", "", "l"), Column("clean")]
    cols += [Column(f"severity {s}") for s in sevs]
    rows = []
    for r in lb.ordered():
        clean = r.cell(ps, HEADLINE)
        for name, items in perts.items():
            by_sev = dict(items)
            cells = [Txt(r.label), Txt(name), cell_txt(clean)]
            cells += [cell_txt(r.cell(ps, HEADLINE, by_sev[s])) if s in by_sev else Txt(DASH)
                      for s in sevs]
            if any(c.main != DASH for c in cells[3:]):
                rows.append((r.kind, cells))
    return Table("robustness", f"Robustness: {header(ps, HEADLINE)}", cols, rows,
                 caption="Test-time perturbations (spec §4.4 parameters) at severities 1-5.")


def expectations_table(lb: Leaderboard) -> Table | None:
    """The suite's [[expect]] verdicts: one line per expectation, then one line per comparison
    that fails or cannot be decided (or, when it holds, the closest one), with its numbers."""
    if not lb.expectations:
        return None
    cols = [Column("#", "", "r"), Column("expected", "the suite's [[expect]] table in words; second "
                                         "line: the suite's own note", "l"),
            Column("verdict", "holds = every comparison holds; DOES NOT HOLD = at least one fails; "
                   "undecided = a number or CI is missing", "l"),
            Column("evidence", "the comparisons that decide it: seed means with 95 % CIs, Δ, and "
                   "for 'above' the Holm-adjusted paired-bootstrap p where the significance "
                   "matrix covers the metric", "l")]
    rows: list[tuple[str, list[Txt]]] = []
    for r in lb.expectations:
        shown = r.shown()
        first = shown[0].text if shown else DASH
        label = "closest: " if r.status == "holds" and shown else ""
        rows.append(("entry", [Txt(f"[{r.index + 1}]"), Txt(r.statement, f"suite's note: {r.note}" if r.note else ""),
                               Txt(r.verdict, strong=r.status != "holds"), Txt(label + first)]))
        rows += [("entry", [Txt(""), Txt(""), Txt(""), Txt(e.text)]) for e in shown[1:]]
    return Table("expectations", "Expected orderings", cols, rows,
                 caption="The orderings the suite declares ([[expect]] in its file), decided from "
                         "the numbers of this report: 'above' by 95 % CI separation, 'drop' and "
                         "'at_least' by seed means, 'within_ci' by the clean CI.")


def significance_table(lb: Leaderboard, max_rows: int = 14) -> Table | None:
    """Holm-adjusted p-values as a matrix (small suites only; the CSV always has every pair)."""
    sig = lb.significance
    if sig is None or len(sig.labels) < 2 or len(sig.labels) > max_rows:
        return None
    k = len(sig.labels)
    cols = [Column("row − column", "", "l")] + [Column(f"({j + 1})") for j in range(k)]
    rows = []
    for i in range(k):
        cells = [Txt(f"({i + 1}) {sig.labels[i]}")]
        for j in range(k):
            if i == j:
                cells.append(Txt(DASH))
                continue
            star = "*" if sig.significant[i, j] else ""
            cells.append(Txt(num(sig.diff[i, j], signed=True) + star,
                             "p_Holm" + (pnum(sig.p_holm[i, j]) if pnum(sig.p_holm[i, j]).startswith("<") else "=" + pnum(sig.p_holm[i, j]))))
        rows.append(("entry", cells))
    return Table("significance", f"Pairwise differences: {header(sig.split, sig.metric)}", cols,
                 rows, caption=f"row minus column; * = Holm-adjusted p < {sig.alpha} over "
                               f"{k * (k - 1) // 2} pairs; {sig.n_resamples} paired cluster "
                               f"resamples; {p_method_text(sig)}. Benjamini-Hochberg values are in "
                               "significance_pairs.csv.")


def p_method_text(sig) -> str:
    if sig.p_method == "percentile":
        return "p-values: share of paired resamples on the other side of 0 (paired_bootstrap)"
    return ("p-values: bootstrap-SE z-test (the resamples are too few for percentile p-values to "
            "survive Holm over this many pairs)")


def all_tables(lb: Leaderboard) -> list[Table]:
    out = [leaderboard_table(lb)]
    for build in (expectations_table, paper_table, conditions_table, robustness_table,
                  significance_table):
        t = build(lb)
        if t is not None:
            out.append(t)
    return out


def definitions(lb: Leaderboard) -> list[tuple[str, str]]:
    """(label, definition) for every metric the tables show, then efficiency columns."""
    keys = list(lb.paper_metrics) + list(lb.strict_metrics)
    out = [(metric(k).label, metric(k).definition) for k in keys]
    out += [(h, d) for _, h, d in EFFICIENCY]
    return out
