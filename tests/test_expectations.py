"""Expected orderings: a suite's [[expect]] tables evaluated on report numbers.

Decision rules on hand-built leaderboards (every number known), then the whole path on a results
directory written by ``ravar_bench.report.demo`` (the runner's shapes) with a suite file that
declares groups and expectations: one holds, one fails, and the report names the failing pair
with its numbers. Last, groups never change a job id.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest

from ravar_bench.baselines import Expectation, load_suite, suite_path
from ravar_bench.data.specs import DataRef
from ravar_bench.report import build_report
from ravar_bench.report.build import summary_lines
from ravar_bench.report.collect import CollectOptions, collect
from ravar_bench.report.demo import DemoSystem, write_demo_store
from ravar_bench.report.expectations import cell_text, evaluate, summary_line, text_report
from ravar_bench.report.model import Cell, Leaderboard, Row
from ravar_bench.report.stats import significance_matrix
from ravar_bench.runner import expand

MAP = "paper_v1.mAP"


def row(label: str, group: str | None, mean: float, low: float | None = None,
        high: float | None = None, **conditions: float) -> Row:
    r = Row(id=label, label=label, group=group)
    r.cells[("test", "none", MAP)] = Cell.of([mean], low, high, "bootstrap")
    for cond, value in conditions.items():
        r.cells[("test", cond, MAP)] = Cell.of([value])
    return r


def board(*rows: Row) -> Leaderboard:
    return Leaderboard(title="t", suite="s", results_dir="r", rows=list(rows))


def expect(kind: str, **kw) -> Expectation:
    return Expectation(index=kw.pop("index", 0), kind=kind, metric=kw.pop("metric", MAP),
                       split="test", **kw)


# ----------------------------------------------------------------------------- decision rules
def test_above_decides_by_ci_separation_and_names_each_failing_pair():
    lb = board(row("A", "up", 50.0, 48.0, 52.0), row("C", "up", 49.0, 46.0, 51.0),
               row("D", "up", 44.0, 42.0, 44.5), row("B", "low", 47.0, 45.0, 47.5))
    res = evaluate(lb, expect("above", upper="up", lower="low"))
    assert res.status == "does not hold" and res.verdict == "DOES NOT HOLD (2 of 3 pairs fail)"
    worst, overlap = res.failing  # the furthest miss first
    assert worst.text == ("D 44.00 [42.00, 44.50] vs B 47.00 [45.00, 47.50]: CIs separate in the "
                          "reverse order (short of the expected separation by 5.50), Δ −3.00")
    assert overlap.text == ("C 49.00 [46.00, 51.00] vs B 47.00 [45.00, 47.50]: CIs overlap "
                            "(short of separating by 1.50), Δ +2.00")
    assert overlap.margin == pytest.approx(-1.5)
    held = evaluate(board(lb.rows[0], lb.rows[3]), expect("above", upper="up", lower="low"))
    assert held.status == "holds" and held.shown()[0].text.endswith("CIs separate by 0.50, Δ +3.00")


def test_above_shows_the_holm_p_of_the_significance_matrix():
    lb = board(row("A", "up", 50.0, 48.0, 52.0), row("B", "low", 47.0, 45.0, 47.5),
               row("X", None, 10.0, 9.0, 11.0))
    rng = np.random.default_rng(0)
    reps = [rng.normal(m, 1.0, 400) for m in (50.0, 47.0, 10.0)]
    lb.significance = significance_matrix(["A", "B", "X"], reps, [50.0, 47.0, 10.0],
                                          metric=MAP, split="test")
    ev = evaluate(lb, expect("above", upper="up", lower="low")).evidence[0]
    assert ev.p_holm == pytest.approx(float(lb.significance.p_holm[0, 1]))
    assert re.search(r", p_Holm (<0\.001|\d\.\d{3})$", ev.text)
    # another metric than the matrix's: no p rather than a wrong one
    other = row("A", "up", 50.0, 48.0, 52.0)
    other.cells[("test", "none", "paper_v1.mIoU")] = Cell.of([50.0], 48.0, 52.0, "bootstrap")
    low = row("B", "low", 47.0)
    low.cells[("test", "none", "paper_v1.mIoU")] = Cell.of([47.0], 45.0, 47.5, "bootstrap")
    lb.rows[:2] = [other, low]
    ev = evaluate(lb, expect("above", upper="up", lower="low", metric="paper_v1.mIoU")).evidence[0]
    assert ev.p_holm is None and "p_Holm" not in ev.text


def test_drop_within_ci_and_at_least():
    lb = board(row("A", "aware", 50.0, 48.0, 52.0, text_swap=40.0),
               row("B", "aware", 50.0, 48.0, 52.0, text_swap=43.0),
               row("C", "blind", 47.0, 45.0, 49.0, text_swap=47.5),
               row("D", "blind", 47.0, 45.0, 49.0, text_swap=44.0))
    drop = evaluate(lb, expect("drop", group="aware", condition="text_swap", at_least=10.0))
    assert drop.status == "does not hold"  # exactly 10 holds, 7 does not
    assert [e.holds for e in drop.evidence] == [False, True]
    assert drop.failing[0].text == "B: none 50.00 [48.00, 52.00] → text_swap 43.00: drop 7.00 < 10"
    within = evaluate(lb, expect("within_ci", group="blind", condition="text_swap"))
    assert within.verdict == "DOES NOT HOLD (1 of 2 rows fail)"
    assert within.failing[0].text == "D: text_swap 44.00 (Δ −3.00) outside (by 1.00) the clean CI [45.00, 49.00]"
    assert evaluate(board(lb.rows[2]), expect("within_ci", group="blind", condition="text_swap")).status == "holds"
    at_least = evaluate(lb, expect("at_least", group="blind", value=47.0))
    assert at_least.status == "holds" and at_least.shown()[0].text == "C: 47.00 [45.00, 49.00] ≥ 47 (by 0.00)"
    fail = evaluate(lb, expect("at_least", group="aware", value=51.0))
    assert fail.failing[0].text == "A: 50.00 [48.00, 52.00] < 51 (short by 1.00)"


def test_missing_numbers_leave_it_undecided_never_holding():
    lb = board(row("A", "up", 50.0), row("B", "low", 40.0, 39.0, 41.0))  # A has no CI
    res = evaluate(lb, expect("above", upper="up", lower="low"))
    assert res.status == "undecided" and "no CI to compare" in res.evidence[0].text
    res = evaluate(lb, expect("drop", group="up", condition="text_swap", at_least=1.0))
    assert res.status == "undecided" and res.evidence[0].text == "A: no test paper_v1.mAP under text_swap in the store"
    res = evaluate(lb, expect("above", upper="up", lower="nobody"))
    assert res.verdict == "undecided (no row of group 'nobody' in this report)" and not res.evidence


def test_summary_and_text_report():
    lb = board(row("A", "up", 50.0, 48.0, 52.0), row("B", "low", 49.0, 47.0, 51.0))
    assert summary_line(lb) is None and text_report(lb) is None
    lb.expectations = [evaluate(lb, expect("above", upper="up", lower="low", note="said by the suite")),
                       evaluate(lb, expect("at_least", group="up", value=40.0, index=1))]
    line = summary_line(lb)
    assert line == "expected orderings: 1 of 2 hold; [1] up above low (test mAP): DOES NOT HOLD (1 of 1 pairs fail)"
    text = text_report(lb)
    assert text.splitlines()[0] == line
    assert "    evidence: A 50.00 [48.00, 52.00] vs B 49.00 [47.00, 51.00]: CIs overlap" in text
    assert "    suite's note: said by the suite" in text
    assert "[2] every up row ≥ 40: test mAP (weighted, paper_v1): holds (1 rows)" in text


# ------------------------------------------------------------------ through a results directory
SYSTEMS = (DemoSystem("e_prior", "Prior", "control", signal=0.0, adapter="prior", seed_jitter=0.0),
           DemoSystem("e_blind", "Blind", "AAL", signal=0.75, seed_jitter=0.0),
           DemoSystem("e_weak", "Weak aware", "VTR", signal=0.8, seed_jitter=0.0),
           DemoSystem("e_strong", "Strong aware", "ours", signal=1.6, seed_jitter=0.0),
           DemoSystem("e_gone", "Gone", "ours", signal=1.0))
GROUPS = ("prior", "blind", "aware", "aware", "absent")
EXPECT = """
[[expect]]
kind = "above"
upper = "aware"
lower = "prior"

[[expect]]
kind = "above"
upper = "aware"
lower = "blind"
note = "the suite's note"

[[expect]]
kind = "drop"
group = "aware"
condition = "text_swap"
at_least = 10.0

[[expect]]
kind = "within_ci"
group = "blind"
condition = "text_swap"

[[expect]]
kind = "at_least"
group = "absent"
value = 1.0
"""


@pytest.fixture(scope="module")
def grouped(tmp_path_factory):
    root = tmp_path_factory.mktemp("expect")
    base = root / "baselines"
    (base / "suites").mkdir(parents=True)
    entries = ""
    for s, group in zip(SYSTEMS, GROUPS):
        (base / f"{s.name}.toml").write_text(
            f'[baseline]\nname = "{s.name}"\nadapter = "prior"\ndomain = "{s.domain}"\ntitle = "{s.title}"\n')
        entries += f'\n[[entries]]\nbaseline = "{s.name}"\ngroup = "{group}"\n'
    (base / "suites" / "grouped.toml").write_text(
        '[suite]\nname = "grouped"\ntitle = "Grouped"\ncontrols = ["none", "text_swap"]\n' + entries + EXPECT)
    write_demo_store(root / "store", root / "data", systems=SYSTEMS, seeds=2, suite="grouped",
                     controls=("none", "text_swap"), bootstrap=100, skip_jobs=[(4, 0), (4, 1)])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAVAR_BASELINES", str(base))
        written = build_report(root / "store", "grouped", root / "out",
                               formats=("md", "html", "csv", "tex"), n_resamples=100)
    return {"root": root, "written": written, "base": base}


def test_the_report_says_which_expectations_hold(grouped, monkeypatch):
    monkeypatch.setenv("RAVAR_BASELINES", str(grouped["base"]))
    lb = collect(grouped["root"] / "store", "grouped", CollectOptions(n_resamples=100))
    assert {r.label: r.group for r in lb.rows if r.kind != "reference"} == \
        {"Prior": "prior", "Blind": "blind", "Weak aware": "aware", "Strong aware": "aware"}
    assert [r.status for r in lb.expectations] == ["holds", "does not hold", "holds", "does not hold",
                                                   "undecided"]
    # the failing pair of [2] is the weak text-aware row against the blind one, with its numbers
    (fail,) = lb.expectations[1].failing
    cells = {r.label: r.cell("test", MAP) for r in lb.rows}
    assert fail.text.startswith(f"Weak aware {cell_text(cells['Weak aware'])} vs Blind "
                                f"{cell_text(cells['Blind'])}: CIs overlap")
    assert cells["Weak aware"].low <= cells["Blind"].high  # what "does not hold" means
    assert "p_Holm" in fail.text  # the significance matrix covers test mAP
    text = grouped["written"]["txt:expectations"].read_text()
    assert text.splitlines()[0].startswith("expected orderings: 2 of 5 hold; [2] aware above blind (test mAP): "
                                           "DOES NOT HOLD (1 of 2 pairs fail); [4] ")
    assert f"    evidence: {fail.text}" in text and "suite's note: the suite's note" in text
    assert "[5] every absent row ≥ 1: test mIoU" not in text  # metric defaults to the headline
    assert "undecided (no row of group 'absent' in this report)" in text


def test_every_format_shows_the_expectations(grouped):
    w = grouped["written"]
    md = w["md"].read_text()
    assert "## Expected orderings" in md and "**DOES NOT HOLD (1 of 2 pairs fail)**" in md
    assert "Weak aware" in md.split("## Expected orderings")[1].split("##")[0]
    assert 'id="expectations">Expected orderings' in w["html"].read_text()
    assert r"DOES NOT HOLD" in w["tex"].read_text()
    with open(w["csv"], newline="", encoding="utf-8") as f:
        groups = {r["label"]: r["group"] for r in csv.DictReader(f)}
    assert groups["Weak aware"] == "aware" and groups["Prior"] == "prior"


def test_summary_lines_end_a_run(grouped, monkeypatch):
    monkeypatch.setenv("RAVAR_BASELINES", str(grouped["base"]))
    lines = summary_lines(grouped["root"] / "store", "grouped")
    assert lines[0].startswith("did it learn?")
    assert lines[1].startswith("expected orderings: 2 of 5 hold; [2] aware above blind")


def test_a_broken_suite_file_is_a_note_and_no_file_is_nothing(grouped, monkeypatch, tmp_path):
    monkeypatch.setenv("RAVAR_BASELINES", str(grouped["base"]))
    suite = grouped["base"] / "suites" / "grouped.toml"
    good = suite.read_text()
    try:
        suite.write_text(good.replace('lower = "blind"', 'lower = "blinde"'))
        lb = collect(grouped["root"] / "store", "grouped", CollectOptions(n_resamples=0))
        assert not lb.expectations
        assert any(n.startswith("expected orderings not checked: ") and "'blinde' is a group that no entry has" in n
                   for n in lb.notes)
    finally:
        suite.write_text(good)
    monkeypatch.setenv("RAVAR_BASELINES", str(tmp_path))
    lb = collect(grouped["root"] / "store", "grouped", CollectOptions(n_resamples=0))
    assert not lb.expectations and not any("expected orderings" in n for n in lb.notes)


# -------------------------------------------------------------------------- the quickstart suite
def test_quickstart_declares_the_issues_expectations():
    s = load_suite("quickstart", skip_missing=True)
    groups = {e.baseline_name: e.group for e in s.entries}
    assert groups["prior"] == "prior" and groups["text_only_minilm"] is None
    assert {b for b, g in groups.items() if g == "text-blind"} == {"video_only", "x3d", "text_blind_persons"}
    assert {b for b, g in groups.items() if g == "text-aware"} >= {"clip4clip_vitb32", "refatomnet", "fusion_v2"}
    got = [(x.kind, x.upper or x.group, x.lower, x.metric, x.split, x.condition, x.at_least, x.value)
           for x in s.expectations]
    assert got == [("above", "text-aware", "text-blind", MAP, "test", "none", None, None),
                   ("above", "text-blind", "prior", MAP, "test", "none", None, None),
                   ("drop", "text-aware", None, MAP, "test", "text_swap", 10.0, None),
                   ("within_ci", "text-blind", None, MAP, "test", "text_swap", None, None),
                   ("at_least", "text-aware", None, "paper_v1.mIoU", "test", "none", None, 35.0)]


def test_groups_and_expectations_do_not_change_job_ids(tmp_path):
    """The same quickstart without a single group or [[expect]] expands to the same job ids."""
    text = suite_path("quickstart").read_text()
    bare = "\n".join(line for line in text.split("[[expect]]")[0].splitlines()
                     if not line.startswith("group = "))
    assert "\ngroup = " in text and "\ngroup = " not in bare and "[[expect]]" not in bare
    (tmp_path / "quickstart.toml").write_text(bare + "\n")
    data = DataRef(spec="synth:small", paths={}, fingerprint="f" * 16, split_fingerprints={}, sizes={})
    grouped = load_suite("quickstart", skip_missing=True)
    plain = load_suite(str(tmp_path / "quickstart.toml"), skip_missing=True)
    assert not plain.expectations and all(e.group is None for e in plain.entries)
    assert [j.job_id for j in expand(grouped, data)] == [j.job_id for j in expand(plain, data)]
    assert len(expand(grouped, data)) == 3 * len(grouped.entries)
