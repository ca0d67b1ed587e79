"""Reports: tables equal the stored records, paper differences, significance, escaping, plots.

The results directories are written by ``ravar_bench.report.demo`` through the store's own API
(Store.commit, runner.manifest, jobs.Job ids), so they have the runner's shape; the numbers in
them are computed by ravar_bench.metrics from graded random predictions.
"""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np
import pytest

from ravar_bench.baselines import PaperNumbers
from ravar_bench.metrics import explain_gap, paired_bootstrap
from ravar_bench.metrics.bootstrap import bootstrap_replicates
from ravar_bench.report import (
    ReportError, build_report, format_explain_gap, paper_for_predictions,
)
from ravar_bench.report.build import write_report
from ravar_bench.report.collect import CollectOptions, collect
from ravar_bench.report.demo import DemoSystem, demo_predictions, demo_split, write_demo_store
from ravar_bench.report import plots
from ravar_bench.report.plots import pareto_front
from ravar_bench.report.stats import (
    compact_letters, pooled_ci, seed_mean_replicates, significance_matrix,
)
from ravar_bench.report.text import md_escape, tex_escape
from ravar_bench.store import Store

TITLE = r"Zoo_v2: 100% & more #1 {x} ~ ^ \ $y$"
SYSTEMS = (
    DemoSystem("demo_prior", "Prior", "control", signal=0.0, box_noise=0.25, params_total=80,
               gflops=1e-6, latency_ms=0.01),
    DemoSystem("demo_small", "Small_net", "AAL", signal=0.5, box_noise=0.12,
               params_total=2_000_000, gflops=0.5, latency_ms=2.0,
               paper=PaperNumbers(source="note", verified=False,
                                  test={"mIoU": 20.0, "mAP": 45.0, "AUROC": 60.0})),
    DemoSystem("demo_best", "Best & co", "ours", signal=1.2, box_noise=0.04,
               params_total=20_000_000, gflops=5.0, latency_ms=12.0,
               paper=PaperNumbers(source="pdf", verified=True,
                                  val={"mIoU": 38.22, "mAP": 55.98, "AUROC": 69.73},
                                  test={"mIoU": 36.42, "mAP": 57.52, "AUROC": 73.95})),
)
N_RES = 200


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    store = write_demo_store(root / "store", root / "data", systems=SYSTEMS, seeds=2,
                             suite="zoo", title=TITLE, controls=("none", "text_swap"),
                             perturbations=("fog",), severities=(1,), bootstrap=50)
    written = build_report(root / "store", "zoo", root / "out", n_resamples=N_RES)
    return {"root": root, "store": store, "written": written}


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _records_by_title(store: Store) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for rec in store.records():
        out.setdefault(rec["baseline"]["title"], []).append(rec)
    return out


# ------------------------------------------------------------------------------ leaderboard
def test_every_format_is_written(demo):
    w = demo["written"]
    for key in ("md", "tex", "csv", "html", "csv:cells", "csv:significance",
                "csv:significance_matrix", "csv:per_class", "png:bars", "png:pareto_gflops",
                "png:pareto_latency", "png:robustness", "png:per_class", "png:significance"):
        assert key in w and Path(w[key]).is_file() and Path(w[key]).stat().st_size > 0, key
    assert "png:sweep" not in w  # three different adapters: no one-parameter sweep


def test_table_numbers_equal_the_records(demo):
    rows = {r["label"]: r for r in _csv(demo["written"]["csv"])}
    recs = _records_by_title(demo["store"])
    assert set(rows) == set(recs)
    checked = 0
    for title, group in recs.items():
        row = rows[title]
        assert row["n_seeds"] == "2"
        for split in ("val", "test"):
            for profile, key, label in (("paper_v1", "mAP", "mAP (weighted, paper_v1)"),
                                        ("paper_v1", "mIoU", "mIoU (paper_v1)"),
                                        ("paper_v1", "AUROC", "AUROC (weighted, paper_v1)"),
                                        ("strict_v1", "mAP_macro", "mAP (macro, strict_v1)"),
                                        ("strict_v1", "acc_iou50", "Acc@IoU0.5 (strict_v1)")):
                values = [r["results"][split]["none"]["metrics"][profile][key] for r in group]
                col = f"{split} {label}"
                assert float(row[f"{col} mean"]) == pytest.approx(np.mean(values), abs=1e-5)
                assert float(row[f"{col} std"]) == pytest.approx(np.std(values, ddof=1), abs=1e-5)
                lo, hi = float(row[f"{col} ci_low"]), float(row[f"{col} ci_high"])
                assert lo <= hi and row[f"{col} ci_method"] == "bootstrap"
                checked += 1
    assert checked == 3 * 2 * 5
    # the Markdown shows the same mean for the headline
    md = Path(demo["written"]["md"]).read_text()
    best = np.mean([r["results"]["test"]["none"]["metrics"]["paper_v1"]["mAP"]
                    for r in recs["Best & co"]])
    assert f"{best:.2f}" in md


def test_a_rows_intervals_do_not_depend_on_the_other_rows(demo, monkeypatch):
    """Adding or reordering suite entries must not move an unchanged row's bootstrap CI."""
    from ravar_bench.report import collect as C

    def cis(lb):
        return {r.label: {k: (c.low, c.high) for k, c in r.cells.items() if c.ci == "bootstrap"} for r in lb.rows}

    opts = C.CollectOptions(n_resamples=N_RES)
    ref = cis(C.collect(demo["store"].root, "zoo", opts))
    original = C._entries
    monkeypatch.setattr(C, "_entries", lambda store, suite: (lambda e, m: (e[::-1][1:], m))(*original(store, suite)))
    fewer = cis(C.collect(demo["store"].root, "zoo", opts))
    assert fewer and set(fewer) < set(ref)
    for label, cells in fewer.items():
        assert cells and cells == ref[label], label


def test_rows_are_ranked_and_controls_frame_the_table(demo):
    rows = _csv(demo["written"]["csv"])
    assert [r["label"] for r in rows] == ["Best & co", "Small_net", "Prior"]
    assert [r["kind"] for r in rows] == ["entry", "entry", "control"]
    assert [r["rank"] for r in rows] == ["1", "2", ""]
    md = Path(demo["written"]["md"]).read_text()
    assert "Controls (blind baselines)" in md
    # every metric column names its definition: never a bare "mAP" header
    header = next(line for line in md.splitlines() if line.startswith("| #"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    assert not any(c.endswith(" mAP") or c == "mAP" for c in cols)
    assert "test mAP (weighted, paper\\_v1)" in cols or "test mAP (weighted, paper_v1)" in cols


def test_paper_difference_and_unverified_label(demo):
    rows = {r["label"]: r for r in _csv(demo["written"]["csv"])}
    recs = _records_by_title(demo["store"])
    for title, paper in (("Best & co", 57.52), ("Small_net", 45.0)):
        mean = np.mean([r["results"]["test"]["none"]["metrics"]["paper_v1"]["mAP"]
                        for r in recs[title]])
        col = "test mAP (weighted, paper_v1)"
        assert float(rows[title][f"paper {col}"]) == pytest.approx(paper)
        assert float(rows[title][f"diff vs paper {col}"]) == pytest.approx(mean - paper, abs=1e-5)
    assert rows["Best & co"]["paper_verified"] == "True"
    assert rows["Small_net"]["paper_verified"] == "False"
    assert rows["Prior"]["paper test mAP (weighted, paper_v1)"] == ""
    assert rows["Small_net"]["paper val mAP (weighted, paper_v1)"] == ""  # no val numbers
    md = Path(demo["written"]["md"]).read_text()
    paper_section = md.split("## Paper comparison", 1)[1].split("\n## ", 1)[0]
    small = next(line for line in paper_section.splitlines() if line.startswith("| Small"))
    best = next(line for line in paper_section.splitlines() if line.startswith("| Best"))
    assert "paper (unverified)" in small and "paper (unverified)" not in best


def test_paper_numbers_come_from_the_baseline_file(demo, tmp_path, monkeypatch):
    """The [paper] table of baselines/<name>.toml is the source of truth; the record holds a copy."""
    (tmp_path / "demo_small.toml").write_text(
        '[baseline]\nname = "demo_small"\nadapter = "prior"\ndomain = "AAL"\ntitle = "Small"\n'
        '[paper]\nsource = "corrected from the PDF"\nverified = true\n'
        'test = { mIoU = 1.5, mAP = 47.25, AUROC = 61.0 }\n')
    monkeypatch.setenv("RAVAR_BASELINES", str(tmp_path))
    lb = collect(demo["root"] / "store", "zoo", CollectOptions(n_resamples=0))
    small = next(r for r in lb.rows if r.baseline == "demo_small")
    assert small.paper.origin == str(tmp_path / "demo_small.toml")
    assert small.paper.verified and small.paper.value("test", "paper_v1.mAP") == 47.25
    best = next(r for r in lb.rows if r.baseline == "demo_best")
    assert best.paper.origin == "record" and best.paper.value("test", "paper_v1.mAP") == 57.52


def test_conditions_and_robustness_tables(demo):
    md = Path(demo["written"]["md"]).read_text()
    assert "## Evaluation controls" in md and "| Best &amp; co |" in md
    assert "text_swap: test mAP (weighted, paper_v1)" in md
    assert "## Robustness" in md
    cells = _csv(demo["written"]["csv:cells"])
    fog2 = [c for c in cells if c["condition"] == "fog@1" and c["metric"] == "paper_v1.mAP"
            and c["split"] == "test" and c["label"] == "Best & co"]
    assert len(fog2) == 1 and fog2[0]["perturbation"] == "fog" and fog2[0]["severity"] == "1"
    recs = _records_by_title(demo["store"])["Best & co"]
    values = [r["results"]["test"]["fog@1"]["metrics"]["paper_v1"]["mAP"] for r in recs]
    assert float(fog2[0]["mean"]) == pytest.approx(np.mean(values), abs=1e-5)
    assert fog2[0]["ci_method"] == "pooled"  # conditions other than none: stored CIs pooled


# ----------------------------------------------------------------------------- significance
def test_significance_matrix_is_consistent(demo):
    pairs = _csv(demo["written"]["csv:significance"])
    assert len(pairs) == 3  # 3 rows -> 3 pairs
    for p in pairs:
        raw, holm, bh = float(p["p"]), float(p["p_holm"]), float(p["p_bh"])
        assert 0 <= raw <= holm <= 1 and raw <= bh <= 1
    matrix = _csv(demo["written"]["csv:significance_matrix"])
    labels = [m["p_holm (row vs column)"] for m in matrix]
    for i, a in enumerate(labels):
        for j, b in enumerate(labels):
            if i != j:
                assert matrix[i][b] == matrix[j][a]  # symmetric
    lb = collect(demo["root"] / "store", "zoo", CollectOptions(n_resamples=N_RES))
    sig = lb.significance
    np.testing.assert_allclose(sig.diff, -sig.diff.T)
    np.testing.assert_allclose(np.nan_to_num(sig.p), np.nan_to_num(sig.p.T))
    # the best model is far ahead of the prior: significant, and the letters say so
    best, prior = sig.labels.index("Best & co"), sig.labels.index("Prior")
    assert sig.significant[best, prior]
    assert not set(sig.letters[best]) & set(sig.letters[prior])
    assert sig.best == best and not sig.differs_from_best[best]


def test_replicates_match_paired_bootstrap():
    """One seed: the report's paired replicates reproduce paired_bootstrap exactly."""
    split = demo_split("test", n_videos=20)
    a = demo_predictions(SYSTEMS[2], split, seed=0)
    b = demo_predictions(SYSTEMS[1], split, seed=0)
    labels, gt, clusters = np.asarray(split.labels), np.asarray(split.boxes), split.video_ids
    ref = paired_bootstrap(a, b, labels, gt, clusters, metric="paper_v1.mAP", n_resamples=300,
                           seed=0)
    reps = [bootstrap_replicates(p.scores, labels, p.boxes, gt, clusters, metrics="paper_v1.mAP",
                                 n_resamples=300, seed=0)["paper_v1.mAP"] for p in (a, b)]
    sig = significance_matrix(["a", "b"], reps, [ref["point_a"], ref["point_b"]],
                              metric="paper_v1.mAP", split="test", p_method="percentile")
    assert sig.diff[0, 1] == pytest.approx(ref["diff"])
    assert sig.low[0, 1] == pytest.approx(ref["low"]) and sig.high[0, 1] == pytest.approx(ref["high"])
    assert sig.p[0, 1] == pytest.approx(ref["p_value"])
    assert sig.p_percentile[0, 1] == pytest.approx(ref["p_value"])


def test_holm_and_bh_adjust_over_all_pairs():
    rng = np.random.default_rng(3)
    reps = [rng.normal(m, 0.3, 400) for m in (0.0, 0.05, 0.3, 3.0)]
    sig = significance_matrix(list("abcd"), reps, [0.0, 0.05, 0.3, 3.0], metric="m", split="test",
                              p_method="normal")
    iu = np.triu_indices(4, 1)
    raw, holm, bh = sig.p[iu], sig.p_holm[iu], sig.p_bh[iu]
    assert np.all(holm >= raw - 1e-12) and np.all(bh >= raw - 1e-12)
    order = np.argsort(raw)
    m = raw.size
    expected = np.maximum.accumulate(np.minimum(1, (m - np.arange(m)) * raw[order]))
    np.testing.assert_allclose(holm[order], expected)
    assert sig.significant[3, 0] and not sig.significant[0, 1]


def test_p_method_auto_follows_resolution():
    reps = [np.zeros(100), np.ones(100)]
    few = significance_matrix(["a", "b"], reps, [0, 1], metric="m", split="s")
    assert few.p_method == "normal"  # 2/(101) > 0.05/10
    many = significance_matrix(["a", "b"], [np.zeros(5000), np.ones(5000)], [0, 1], metric="m",
                               split="s")
    assert many.p_method == "percentile" and many.p[0, 1] == pytest.approx(2 / 5001)


def test_compact_letters_share_a_letter_iff_not_different():
    rng = np.random.default_rng(0)
    for trial in range(40):
        k = int(rng.integers(2, 8))
        sig = rng.random((k, k)) < 0.5
        sig = np.triu(sig, 1)
        sig = sig | sig.T
        pts = rng.normal(size=k)
        letters = compact_letters(pts, sig)
        for i in range(k):
            assert letters[i]
            for j in range(i + 1, k):
                share = bool(set(letters[i]) & set(letters[j]))
                assert share == (not sig[i, j]), (trial, sig, letters)
    assert compact_letters([3.0, 1.0], np.array([[0, 1], [1, 0]], bool)) == ["a", "b"]


def test_seed_mean_replicates_and_pooled_ci():
    rng = np.random.default_rng(1)
    one = rng.normal(size=(1, 50))
    np.testing.assert_array_equal(seed_mean_replicates(one, rng), one[0])
    per_seed = rng.normal(size=(3, 500))
    reps = seed_mean_replicates(per_seed, np.random.default_rng(2))
    assert np.all(reps >= per_seed.min(0) - 1e-12) and np.all(reps <= per_seed.max(0) + 1e-12)
    # the two-level interval is wider than the one of the fixed-seed mean when seeds disagree
    shifted = per_seed + np.array([[-2.0], [0.0], [2.0]])
    wide = seed_mean_replicates(shifted, np.random.default_rng(2))
    assert np.std(wide) > 2 * np.std(shifted.mean(0))
    lo, hi = pooled_ci([10.0], [(8.0, 12.0)])
    assert (lo, hi) == pytest.approx((8.0, 12.0))
    lo2, hi2 = pooled_ci([9.0, 11.0], [(8.0, 12.0), (8.0, 12.0)])
    assert lo2 < 8.0 and hi2 > 12.0 and (lo2 + hi2) / 2 == pytest.approx(10.0)


# ----------------------------------------------------------------------------------- escaping
def test_latex_escapes_specials(demo):
    assert tex_escape("a_b 50% & c#1 $x$ {y} ~^\\") == (
        r"a\_b 50\% \& c\#1 \$x\$ \{y\} \textasciitilde{}\textasciicircum{}\textbackslash{}")
    tex = Path(demo["written"]["tex"]).read_text()
    assert tex_escape(TITLE) in tex
    assert r"Best \& co" in tex and r"Small\_net" in tex
    assert "Best & co" not in tex and "Small_net" not in tex
    assert "100% &" not in tex
    assert r"paper\_v1" in tex and r"$\pm$" in tex


def test_markdown_escapes_user_text(demo):
    assert md_escape("<script>alert(1)</script> | *x*") == \
        r"&lt;script&gt;alert(1)&lt;/script&gt; \| \*x\*"
    assert md_escape("paper_v1") == "paper_v1" and md_escape("_x_") == r"\_x\_"
    md = Path(demo["written"]["md"]).read_text()
    assert "Best &amp; co" in md and "Small_net" in md


def test_csv_guards_formulas(tmp_path):
    from ravar_bench.report.text import to_csv

    text = to_csv([{"label": "=HYPERLINK(1)", "v": -1.5}])
    assert "'=HYPERLINK(1)" in text and ",-1.5" in text


# -------------------------------------------------------------------------------------- plots
def test_plots_are_real_pngs(demo):
    from PIL import Image

    for key, path in demo["written"].items():
        if key.startswith("png:"):
            with Image.open(path) as im:
                assert im.format == "PNG" and im.width > 300 and im.height > 200
                assert np.asarray(im.convert("L")).std() > 5, key  # not blank


def test_pareto_front():
    costs = [1.0, 2.0, 3.0, 0.5, 2.0, 10.0]
    vals = [50.0, 55.0, 54.0, 40.0, 60.0, 61.0]
    assert pareto_front(costs, vals) == [3, 0, 4, 5]
    assert pareto_front([1, 1], [5, 5]) == [0]
    assert pareto_front([float("nan"), 1.0], [99.0, 1.0]) == [1]


def test_sweep_plot_for_one_varying_parameter(tmp_path):
    systems = [DemoSystem(f"demo_agents_{n}", f"n = {n}", "ours", signal=0.3 + 0.1 * i,
                          params={"agents": n}, adapter="demo_refatomnet")
               for i, n in enumerate((1, 4, 16))]
    write_demo_store(tmp_path / "s", tmp_path / "d", systems=systems, seeds=1, suite="agents",
                     bootstrap=0, n_videos=12)
    lb = collect(tmp_path / "s", "agents", CollectOptions(n_resamples=0))
    assert lb.sweep["param"] == "agents" and [p[0] for p in sorted(lb.sweep["points"])] == [1, 4, 16]
    assert lb.significance is None and not lb.perturbations()
    assert plots.sweep(lb, tmp_path / "sweep.png").is_file()
    assert plots.robustness(lb, tmp_path / "rob.png") is None
    assert plots.significance_heatmap(lb.significance, tmp_path / "sig.png") is None


# ------------------------------------------------------------------------------ degradations
def test_without_ground_truth_the_stored_cis_are_used(demo, tmp_path):
    data = demo["root"] / "data"
    moved = demo["root"] / "data-moved"
    os.rename(data, moved)
    try:
        w = build_report(demo["root"] / "store", "zoo", tmp_path, formats=("md", "csv"))
    finally:
        os.rename(moved, data)
    rows = {r["label"]: r for r in _csv(w["csv"])}
    assert rows["Best & co"]["test mAP (weighted, paper_v1) ci_method"] == "pooled"
    assert "csv:significance" not in w and "csv:per_class" not in w
    assert "ground truth of split" in Path(w["md"]).read_text()
    # data_dir points the report at the moved data again
    os.rename(data, moved)
    try:
        lb = collect(demo["root"] / "store", "zoo", CollectOptions(n_resamples=50, data_dir=moved))
    finally:
        os.rename(moved, data)
    assert lb.significance is not None


def test_missing_jobs_are_reported(tmp_path):
    write_demo_store(tmp_path / "s", tmp_path / "d", systems=SYSTEMS[:2], seeds=2, suite="gap",
                     bootstrap=0, n_videos=12, skip_jobs=[(1, 1)])
    w = build_report(tmp_path / "s", "gap", tmp_path / "o", formats=("md", "csv"), n_resamples=0)
    rows = {r["label"]: r for r in _csv(w["csv"])}
    assert rows["Small_net"]["n_seeds"] == "1" and rows["Prior"]["n_seeds"] == "2"
    assert "Incomplete" in Path(w["md"]).read_text()


def test_errors_name_the_problem(demo, tmp_path):
    with pytest.raises(ReportError, match="formats"):
        build_report(demo["root"] / "store", "zoo", tmp_path, formats=("md", "pdf"))
    with pytest.raises(ReportError, match="nosuch"):
        build_report(demo["root"] / "store", "nosuch", tmp_path)
    with pytest.raises(ReportError, match="paper_split"):
        build_report(demo["root"] / "store", "zoo", tmp_path, paper_split="train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="store.json"):
        build_report(tmp_path / "empty", None, tmp_path / "o")


def test_report_of_every_job_without_a_suite(demo, tmp_path):
    w = build_report(demo["root"] / "store", None, tmp_path, formats=("csv",), n_resamples=0)
    labels = sorted(r["label"] for r in _csv(w["csv"]))
    assert labels == ["Best & co", "Prior", "Small_net"]


# -------------------------------------------------------------------------------- explain-gap
def test_format_explain_gap():
    split = demo_split("test", n_videos=16)
    p = demo_predictions(SYSTEMS[1], split, seed=0)
    rows = explain_gap(p.scores, split.labels, p.boxes, split.boxes)
    text = format_explain_gap(rows, paper={"mAP": 57.52})
    ref = next(v for n, v, _ in rows if "(paper_v1.mAP)" in n)
    miou = next(v for n, v, _ in rows if n == "mIoU (sample mean)")
    for name, value, _ in rows:
        line = next(line for line in text.splitlines() if line.strip().startswith(name))
        assert f"{value:.2f}" in line
        if name.startswith("mIoU") and name != "mIoU (sample mean)" and math.isfinite(value):
            assert f"{value - miou:+.2f}" in line
        elif not name.startswith(("mIoU", "acc@")) and "(paper_v1.mAP)" not in name \
                and math.isfinite(value):
            assert f"{value - ref:+.2f}" in line
    assert "paper (unverified) mAP: 57.52" in text and f"{57.52 - ref:+.2f}" in text
    assert "closest convention" in text
    assert "no rows" in format_explain_gap([])


def test_paper_numbers_for_a_prediction_file(demo):
    store = demo["store"]
    jobs = {rec["baseline"]["title"]: rec["job_id"] for rec in store.records()}
    best = store.job_dir(jobs["Best & co"]) / "predictions" / "test.none.parquet"
    assert paper_for_predictions(best) == ({"mAP": 57.52, "mIoU": 36.42}, "paper test")
    small = store.job_dir(jobs["Small_net"]) / "predictions"
    assert paper_for_predictions(small / "test.none.parquet") == \
        ({"mAP": 45.0, "mIoU": 20.0}, "paper (unverified) test")
    assert paper_for_predictions(small / "val.none.parquet") == (None, "paper")
    prior = store.job_dir(jobs["Prior"]) / "predictions" / "test.none.parquet"
    assert paper_for_predictions(prior)[0] is None


def test_did_it_learn_flags_rows_at_the_prior_and_not_learners(tmp_path):
    """Both ways: a learner is not flagged; a second prior and a model whose encoder output is
    zeroed (its scores ignore the input, plus noise) are; the run ends with one line saying so."""
    systems = (DemoSystem("p", "Prior", "control", signal=0.0, adapter="prior"),
               DemoSystem("learner", "Learner", "VTR", signal=1.0),
               DemoSystem("prior_copy", "Prior again", "control", signal=0.0, seed_jitter=0.0),
               DemoSystem("zeroed", "Encoder zeroed", "ours", signal=0.0))
    write_demo_store(tmp_path / "store", tmp_path / "data", systems=systems, seeds=2, suite="learn",
                     bootstrap=200)
    lb = collect(tmp_path / "store", "learn", CollectOptions(n_resamples=200))
    flag = {r.label: r.above_prior for r in lb.rows if r.kind != "reference"}
    assert flag == {"Prior": None, "Learner": True, "Prior again": False, "Encoder zeroed": False}
    assert "Prior again" in lb.learning_summary() and "Encoder zeroed" in lb.learning_summary()
    written = write_report(lb, tmp_path / "report", ("md", "html"))
    assert "| NO |" in written["md"].read_text().replace("**", "")
    assert "not above the prior" in written["html"].read_text()
    assert written["txt:learning"].read_text().startswith("did it learn? 1/3")


def test_a_run_where_nothing_learned_says_so(tmp_path):
    systems = (DemoSystem("p", "Prior", "control", signal=0.0, adapter="prior"),
               DemoSystem("flat", "Flat", "ours", signal=0.0))
    write_demo_store(tmp_path / "store", tmp_path / "data", systems=systems, seeds=2, suite="flat")
    line = collect(tmp_path / "store", "flat", CollectOptions(n_resamples=200)).learning_summary()
    assert line.startswith("did it learn? NO learned model is above the prior")
