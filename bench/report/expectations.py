"""Expected orderings: a suite's ``[[expect]]`` tables checked against the report's numbers.

A suite states what it expects (text-aware rows above text-blind rows, text_swap lowering the
text-aware rows, ...) as data (:class:`ravar_bench.baselines.Expectation`); this module decides
each statement from the leaderboard's cells and says *which* comparisons fail and by how much, so
that the claim is generated from the numbers, not written by hand next to them. It never explains
a failure: the only words besides the numbers are the suite's own ``note``.

Decision rules (all on the seed-aggregated cells of the leaderboard, 95 % CIs):

* ``above``: every (upper, lower) pair of rows has ``upper.low > lower.high`` (CIs separate).
  The paired-bootstrap p (Holm, over the significance matrix's pairs) is shown as evidence where
  the metric and split are the matrix's; it does not decide.
* ``drop``: ``none − condition >= at_least`` for every row of the group (seed means).
* ``within_ci``: the condition's seed mean lies inside the row's clean (``none``) CI.
* ``at_least``: the row's seed mean ``>= value``.

Groups and expectations are read from the suite file as it is now (like the paper's numbers, see
:func:`.collect.paper_ref`): declaring or correcting an expectation needs no re-run.
"""
from __future__ import annotations

import math

from ravar_bench.baselines import BaselineError, Expectation, Suite, load_suite, suite_path

from .columns import header, metric
from .model import Cell, Evidence, ExpectationResult, Leaderboard, Row
from .tables import DASH, num, pnum


# ------------------------------------------------------------------------------- attaching
def attach_suite_file(lb: Leaderboard, suite_name: str) -> None:
    """Groups and expectations of suite ``suite_name`` from its file, evaluated on ``lb``.

    No file (a demo store, results from elsewhere): nothing to check, silently. A file that does
    not load: a note that says why, so a broken expectation is never mistaken for none."""
    if not suite_path(suite_name).is_file():
        return
    try:
        suite = load_suite(suite_name, skip_missing=True, check_adapter=False)
    except (BaselineError, ValueError) as exc:
        lb.notes.append(f"expected orderings not checked: {exc}")
        return
    apply_suite(lb, suite)


def apply_suite(lb: Leaderboard, suite: Suite) -> None:
    """Set each row's ``group`` from the suite's entries (a row is matched by entry index and
    baseline name, so an edited suite never lends its group to another baseline) and evaluate
    the suite's expectations into ``lb.expectations``."""
    by_index = {str(e.index): e for e in suite.entries}
    for r in lb.rows:
        e = by_index.get(r.id)
        if e is not None and e.baseline_name == r.baseline:
            r.group = e.group
    lb.expectations = [evaluate(lb, x) for x in suite.expectations]


# ------------------------------------------------------------------------------ evaluating
def statement(x: Expectation) -> str:
    """The expectation in words, with the metric's full name."""
    what = header(x.split, x.metric)
    if x.kind == "above":
        return f"every {x.upper} row above every {x.lower} row: {what}, 95 % CIs separate"
    if x.kind == "drop":
        return f"{x.condition} lowers every {x.group} row by ≥ {x.at_least:g}: {what}, none − {x.condition}"
    if x.kind == "within_ci":
        return f"{x.condition} leaves every {x.group} row inside its clean 95 % CI: {what}"
    under = f" under {x.condition}" if x.condition != "none" else ""
    return f"every {x.group} row ≥ {x.value:g}: {what}{under}"


def short_statement(x: Expectation) -> str:
    """The expectation in a few words, for the one line that ends a run."""
    what = f"{x.split} {metric(x.metric).short}"
    if x.kind == "above":
        return f"{x.upper} above {x.lower} ({what})"
    if x.kind == "drop":
        return f"{x.condition} lowers {x.group} by ≥ {x.at_least:g} ({what})"
    if x.kind == "within_ci":
        return f"{x.condition} leaves {x.group} within CI ({what})"
    under = "" if x.condition == "none" else f" under {x.condition}"
    return f"{x.group} ≥ {x.value:g}{under} ({what})"


def evaluate(lb: Leaderboard, x: Expectation) -> ExpectationResult:
    """Every comparison ``x`` implies on ``lb``; rows are found by their ``group``."""
    res = ExpectationResult(x.index, x.kind, statement(x), note=x.note, short=short_statement(x))
    rows = {g: [r for r in lb.rows if r.group == g] for g in x.groups()}
    empty = [g for g, rs in rows.items() if not rs]
    if empty:
        res.reason = (f"no row of group {empty[0]!r}" if len(empty) == 1 else
                      "no row of groups " + " and ".join(repr(g) for g in empty)) + " in this report"
        return res
    if x.kind == "above":
        res.evidence = [_above(lb, x, u, lo) for u in rows[x.upper] for lo in rows[x.lower]]
    else:
        check = {"drop": _drop, "within_ci": _within, "at_least": _at_least}[x.kind]
        res.evidence = [check(x, r) for r in rows[x.group]]
    # the closest call first: failing pairs by how far they miss, then the rest
    res.evidence.sort(key=lambda e: (e.holds is not False, e.holds is not None,
                                     e.margin if e.margin is not None else math.inf))
    return res


def cell_text(c: Cell | None) -> str:
    """``50.41 [48.12, 52.63]`` (``≈[...]``: a pooled CI, see the leaderboard's notes)."""
    if c is None or not math.isfinite(c.mean):
        return DASH
    if c.low is None or c.high is None:
        return num(c.mean)
    return f"{num(c.mean)} {'≈' if c.ci == 'pooled' else ''}[{num(c.low)}, {num(c.high)}]"


def _has_ci(c: Cell | None) -> bool:
    return c is not None and c.low is not None and c.high is not None and \
        math.isfinite(c.low) and math.isfinite(c.high)


def _missing(row: Row, x: Expectation, condition: str) -> Evidence:
    return Evidence(None, f"{row.label}: no {x.split} {x.metric} under {condition} in the store")


def _above(lb: Leaderboard, x: Expectation, up: Row, low: Row) -> Evidence:
    cu, cl = up.cell(x.split, x.metric), low.cell(x.split, x.metric)
    for row, c in ((up, cu), (low, cl)):
        if c is None or not math.isfinite(c.mean):
            return _missing(row, x, "none")
    p = _p_holm(lb, x, up, low)
    ptxt = "" if p is None else f", p_Holm {pnum(p)}"
    head = f"{up.label} {cell_text(cu)} vs {low.label} {cell_text(cl)}"
    delta = cu.mean - cl.mean
    if not (_has_ci(cu) and _has_ci(cl)):
        return Evidence(None, f"{head}: no CI to compare, Δ {num(delta, signed=True)}{ptxt}", None, p)
    gap = cu.low - cl.high  # > 0: separate; else how far the upper CI is from separating
    if gap > 0:
        how = f"CIs separate by {num(gap)}"
    elif cu.high < cl.low:
        how = f"CIs separate in the reverse order (short of the expected separation by {num(-gap)})"
    else:
        how = (f"CIs overlap (short of separating by {num(-gap)}"
               + (", order reversed)" if delta < 0 else ")"))
    return Evidence(gap > 0, f"{head}: {how}, Δ {num(delta, signed=True)}{ptxt}", gap, p)


def _p_holm(lb: Leaderboard, x: Expectation, a: Row, b: Row) -> float | None:
    """Holm-adjusted paired-bootstrap p of the pair, where the significance matrix covers it."""
    sig = lb.significance
    if sig is None or sig.metric != x.metric or sig.split != x.split:
        return None
    if sig.labels.count(a.label) != 1 or sig.labels.count(b.label) != 1:
        return None
    p = float(sig.p_holm[sig.labels.index(a.label), sig.labels.index(b.label)])
    return p if math.isfinite(p) else None


def _drop(x: Expectation, row: Row) -> Evidence:
    clean, cond = row.cell(x.split, x.metric), row.cell(x.split, x.metric, x.condition)
    if clean is None or not math.isfinite(clean.mean):
        return _missing(row, x, "none")
    if cond is None or not math.isfinite(cond.mean):
        return _missing(row, x, x.condition)
    assert x.at_least is not None
    drop = clean.mean - cond.mean
    margin = drop - x.at_least
    verdict = f"drop {num(drop)} {'≥' if margin >= 0 else '<'} {x.at_least:g}"
    return Evidence(margin >= 0, f"{row.label}: none {cell_text(clean)} → {x.condition} "
                                 f"{cell_text(cond)}: {verdict}", margin)


def _within(x: Expectation, row: Row) -> Evidence:
    clean, cond = row.cell(x.split, x.metric), row.cell(x.split, x.metric, x.condition)
    if clean is None or not math.isfinite(clean.mean):
        return _missing(row, x, "none")
    if cond is None or not math.isfinite(cond.mean):
        return _missing(row, x, x.condition)
    head = f"{row.label}: {x.condition} {num(cond.mean)} (Δ {num(cond.mean - clean.mean, signed=True)})"
    if not _has_ci(clean):
        return Evidence(None, f"{head}, clean {cell_text(clean)} has no CI")
    assert clean.low is not None and clean.high is not None
    margin = min(cond.mean - clean.low, clean.high - cond.mean)
    where = "inside" if margin >= 0 else f"outside (by {num(-margin)})"
    return Evidence(margin >= 0, f"{head} {where} the clean CI [{num(clean.low)}, {num(clean.high)}]",
                    margin)


def _at_least(x: Expectation, row: Row) -> Evidence:
    c = row.cell(x.split, x.metric, x.condition)
    if c is None or not math.isfinite(c.mean):
        return _missing(row, x, x.condition)
    assert x.value is not None
    margin = c.mean - x.value
    cmp = f"≥ {x.value:g} (by {num(margin)})" if margin >= 0 else f"< {x.value:g} (short by {num(-margin)})"
    return Evidence(margin >= 0, f"{row.label}: {cell_text(c)} {cmp}", margin)


# ------------------------------------------------------------------------------- rendering
def summary_line(lb: Leaderboard) -> str | None:
    """One line for the end of a run; None when the suite declares no expectation."""
    if not lb.expectations:
        return None
    ok = [r for r in lb.expectations if r.status == "holds"]
    line = f"expected orderings: {len(ok)} of {len(lb.expectations)} hold"
    bad = [r for r in lb.expectations if r.status != "holds"]
    if bad:
        line += "; " + "; ".join(f"[{r.index + 1}] {r.short or r.statement}: {r.verdict}" for r in bad)
    return line


def text_report(lb: Leaderboard) -> str | None:
    """``expectations.txt``: the summary line first, then each expectation, its verdict and the
    comparisons that decide it."""
    line = summary_line(lb)
    if line is None:
        return None
    out = [line, ""]
    for r in lb.expectations:
        out.append(f"[{r.index + 1}] {r.statement}: {r.verdict}")
        label = "closest" if r.status == "holds" else "evidence"
        out += [f"    {label}: {e.text}" for e in r.shown()]
        if r.note:
            out.append(f"    suite's note: {r.note}")
    out += ["", "CIs: 95 %, as in the leaderboard (≈ = pooled from stored per-job CIs); p_Holm: "
                "paired cluster bootstrap, Holm-adjusted over all pairs of the significance matrix."]
    return "\n".join(out) + "\n"
