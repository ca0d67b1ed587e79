"""Bootstrap: weighted engine == duplicated data, cluster resampling, paired tests, corrections."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import ravar_bench.metrics.weighted as weighted
from ravar_bench.metrics import (
    benjamini_hochberg,
    bootstrap_replicates,
    cluster_bootstrap_ci,
    cluster_bootstrap_cis,
    holm,
    paired_bootstrap,
    paper_v1,
    strict_v1,
)
from ravar_bench.metrics.boxes import box_iou
from ravar_bench.metrics.reduce import NEEDS, paper_from_stats, strict_from_stats

ALL_FIELDS = frozenset().union(*(n for p in NEEDS.values() for n in p.values()))


def make_data(n=240, seed=0, signal=1.5, ties=False, persons=2):
    """Informative scores, long-tailed labels; ``persons`` samples per clip (cluster)."""
    rng = np.random.default_rng(seed)
    prior = np.clip(rng.pareto(1.2, 80) * 0.03, 0.01, 0.6)
    y = (rng.random((n, 80)) < prior).astype(np.int64)
    s = signal * y + rng.normal(size=(n, 80))
    if ties:
        s = np.round(s, 1)
    xy = rng.random((n, 2)) * 0.6
    gt = np.c_[xy, xy + 0.3]
    pred = gt + rng.normal(scale=0.05, size=(n, 4))
    clusters = np.array([f"vid{i // persons}" for i in range(n)])
    return s, y, pred, gt, clusters


# ----------------------------------------------------------------------------- weighted engine
@pytest.mark.parametrize("dense_cells", [0, 10**9])  # force the gather path, then the matmul one
@pytest.mark.parametrize("ties", [False, True])
def test_engine_with_integer_weights_equals_duplicated_data(monkeypatch, dense_cells, ties):
    s, y, pred, gt, _ = make_data(n=150, seed=1, ties=ties)
    y[:, 5] = 0
    y[:, 6] = 0
    y[:4, 6] = 1  # a rare class that often vanishes from a replicate
    y[:, 7] = 1  # a class without negatives
    monkeypatch.setattr(weighted, "_DENSE_CELLS_PER_SAMPLE", dense_cells)
    rng = np.random.default_rng(0)
    k = 30
    cluster = rng.integers(0, k, len(s))
    engine = weighted.WeightedEngine(s, y.astype(float), box_iou(pred, gt), cluster, k,
                                     ALL_FIELDS)
    mult = rng.integers(0, 3, (6, k)).astype(np.uint8)
    mult[0] = 1
    st = engine.stats(mult)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        paper, strict = paper_from_stats(st), strict_from_stats(st)
        for r in range(len(mult)):
            dup = np.repeat(np.arange(len(s)), mult[r][cluster])
            ref_p = paper_v1(s[dup], y[dup], pred[dup], gt[dup])
            ref_s = strict_v1(s[dup], y[dup], pred[dup], gt[dup])
            for k_, v in ref_p.items():
                assert abs(paper[k_][r] - v) < 1e-9, (r, k_)
            for k_, v in ref_s.items():
                if np.isnan(v):
                    assert np.isnan(strict[k_][r]), (r, k_)
                else:
                    assert abs(strict[k_][r] - v) < 1e-9, (r, k_)


# ----------------------------------------------------------------------------- CIs
def test_ci_contains_point_and_is_deterministic():
    s, y, pred, gt, cl = make_data(seed=2)
    a = cluster_bootstrap_ci(s, y, pred, gt, cl, metric="paper_v1.mAP", n_resamples=300, seed=7)
    b = cluster_bootstrap_ci(s, y, pred, gt, cl, metric="paper_v1.mAP", n_resamples=300, seed=7)
    c = cluster_bootstrap_ci(s, y, pred, gt, cl, metric="paper_v1.mAP", n_resamples=300, seed=8)
    assert a == b
    assert (a["low"], a["high"]) != (c["low"], c["high"])
    assert a["low"] <= a["point"] <= a["high"] and a["high"] - a["low"] > 0.1
    assert a["point"] == paper_v1(s, y, pred, gt)["mAP"]
    assert a["n_resamples"] == 300 and a["n_clusters"] == len(s) // 2
    for key in ("point", "low", "high", "n_resamples", "n_clusters"):
        assert key in a


def test_many_metrics_in_one_pass_match_single_calls():
    s, y, pred, gt, cl = make_data(n=120, seed=3)
    metrics = ["paper_v1.mAP", "paper_v1.AUROC", "paper_v1.mIoU", "strict_v1.mAP_macro",
               "strict_v1.mAP_samples", "strict_v1.frame_mAP50", "strict_v1.acc_iou50"]
    many = cluster_bootstrap_cis(s, y, pred, gt, cl, metrics=metrics, n_resamples=100, seed=1)
    strict = strict_v1(s, y, pred, gt)
    for m in metrics:
        one = cluster_bootstrap_ci(s, y, pred, gt, cl, metric=m, n_resamples=100, seed=1)
        assert one == many[m]
        if m.startswith("strict_v1"):
            assert one["point"] == strict[m.split(".")[1]]


def test_single_cluster_gives_zero_width_ci():
    s, y, pred, gt, _ = make_data(n=60, seed=4)
    ci = cluster_bootstrap_ci(s, y, pred, gt, ["same"] * 60, metric="strict_v1.mAP_macro",
                              n_resamples=50)
    assert ci["n_clusters"] == 1
    assert ci["low"] == pytest.approx(ci["point"], abs=1e-9)
    assert ci["high"] == pytest.approx(ci["point"], abs=1e-9)


def test_resampling_is_by_cluster_not_by_sample():
    """Two clusters, IoU 1 in one and 0 in the other: only 3 mIoU values are reachable."""
    n_a, n_b = 3, 5
    s, y, _, gt, _ = make_data(n=n_a + n_b, seed=5)
    pred = gt.copy()
    pred[n_a:] = gt[n_a:] + 0.9  # no overlap
    clusters = ["a"] * n_a + ["b"] * n_b
    reps = bootstrap_replicates(s, y, pred, gt, clusters, metrics="paper_v1.mIoU",
                                n_resamples=200, seed=0)["paper_v1.mIoU"]
    reachable = [100.0, 100.0 * n_a / (n_a + n_b), 0.0]
    assert np.all(np.min(np.abs(reps[:, None] - np.array(reachable)[None]), axis=1) < 1e-9)
    assert len(np.unique(np.round(reps, 9))) == 3


def test_iou_gate_is_applied_before_scoring():
    s, y, pred, gt, cl = make_data(n=120, seed=6)
    pred = pred + np.random.default_rng(0).normal(scale=0.1, size=pred.shape)
    ci = cluster_bootstrap_ci(s, y, pred, gt, cl, n_resamples=50, iou_gate=True)
    assert ci["point"] == paper_v1(s, y, pred, gt, iou_gate=True)["mAP"]


# ----------------------------------------------------------------------------- paired
def test_paired_identical_predictions():
    s, y, pred, gt, cl = make_data(n=120, seed=7)
    out = paired_bootstrap((s, pred), {"scores": s, "boxes": pred}, y, gt, cl,
                           metric="strict_v1.mAP_macro", n_resamples=200)
    assert out["diff"] == 0.0 and out["low"] == 0.0 and out["high"] == 0.0
    assert out["p_value"] == 1.0


def test_paired_detects_a_real_difference_and_is_antisymmetric():
    s, y, pred, gt, cl = make_data(n=300, seed=8, signal=1.0)
    better = s + 1.0 * y  # strictly more informative scores
    ab = paired_bootstrap((better, pred), (s, pred), y, gt, cl, n_resamples=300, seed=3)
    ba = paired_bootstrap((s, pred), (better, pred), y, gt, cl, n_resamples=300, seed=3)
    assert ab["diff"] > 0 and ab["low"] > 0 and ab["p_value"] < 0.01
    assert ab["diff"] == pytest.approx(-ba["diff"]) and ab["p_value"] == ba["p_value"]
    assert ab["diff"] == pytest.approx(paper_v1(better, y, pred, gt)["mAP"]
                                       - paper_v1(s, y, pred, gt)["mAP"])


def test_paired_noise_difference_is_not_significant():
    s, y, pred, gt, cl = make_data(n=300, seed=9)
    rng = np.random.default_rng(1)
    a, b = s + rng.normal(scale=0.05, size=s.shape), s + rng.normal(scale=0.05, size=s.shape)
    out = paired_bootstrap((a, pred), (b, pred), y, gt, cl, n_resamples=300)
    assert out["low"] <= 0 <= out["high"] and out["p_value"] > 0.05


# ----------------------------------------------------------------------------- corrections
def test_holm_hand_computed():
    # sorted: .005 .01 .03 .04 -> x4 x3 x2 x1 = .02 .03 .06 .04 -> running max .02 .03 .06 .06
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])
    assert holm([]).size == 0


def test_benjamini_hochberg_hand_computed():
    # sorted: .005 .01 .03 .04 -> x4/1 x4/2 x4/3 x4/4 = .02 .02 .04 .04 -> running min from right
    np.testing.assert_allclose(benjamini_hochberg([0.01, 0.04, 0.03, 0.005]),
                               [0.02, 0.04, 0.04, 0.02])
    np.testing.assert_allclose(benjamini_hochberg([0.01, 0.02, 0.03]), [0.03, 0.03, 0.03])
    np.testing.assert_allclose(benjamini_hochberg([0.9, 0.01]), [0.9, 0.02])


# ----------------------------------------------------------------------------- validation
def test_bootstrap_validation_errors():
    s, y, pred, gt, cl = make_data(n=20, seed=0)
    with pytest.raises(ValueError, match="clusters must have shape"):
        cluster_bootstrap_ci(s, y, pred, gt, cl[:-1])
    with pytest.raises(ValueError, match="unknown key"):
        cluster_bootstrap_ci(s, y, pred, gt, cl, metric="paper_v1.mAP_macro")
    with pytest.raises(ValueError, match="unknown profile"):
        cluster_bootstrap_ci(s, y, pred, gt, cl, metric="paper_v2.mAP")
    with pytest.raises(ValueError, match="profile.key"):
        cluster_bootstrap_ci(s, y, pred, gt, cl, metric="mAP")
    with pytest.raises(ValueError, match="n_resamples"):
        cluster_bootstrap_ci(s, y, pred, gt, cl, n_resamples=0)
    with pytest.raises(ValueError, match="alpha"):
        cluster_bootstrap_ci(s, y, pred, gt, cl, alpha=1.0)
    with pytest.raises(ValueError, match="pred_b boxes"):
        paired_bootstrap((s, pred), (s, pred[:, :2]), y, gt, cl)
    with pytest.raises(ValueError, match="pred_a"):
        paired_bootstrap(s, (s, pred), y, gt, cl)
    with pytest.raises(ValueError, match="p_values"):
        holm([0.1, 1.5])
    with pytest.raises(ValueError, match="p_values"):
        benjamini_hochberg([[0.1]])


def test_bias_corrected_ci_contains_point_for_uninformative_scores():
    """Chance-level scores on a small split: the bootstrap distribution of weighted and macro mAP is
    shifted upwards; the median-centred interval must still contain the point estimate, where a
    plain percentile interval misses it."""
    from ravar_bench.metrics.bootstrap import bootstrap_replicates, cluster_bootstrap_cis

    rng = np.random.default_rng(3)
    n = 300
    labels = (rng.random((n, 80)) < 0.05).astype(np.uint8)
    scores = rng.random((n, 80))
    boxes = np.tile([0.1, 0.1, 0.5, 0.5], (n, 1))
    clusters = np.arange(n) // 2
    metrics = ("paper_v1.mAP", "strict_v1.mAP_macro")
    cis = cluster_bootstrap_cis(scores, labels, boxes, boxes, clusters, metrics, n_resamples=400, seed=0)
    reps = bootstrap_replicates(scores, labels, boxes, boxes, clusters, metrics, n_resamples=400, seed=0)
    for name in metrics:
        ci = cis[name]
        assert ci["low"] <= ci["point"] <= ci["high"], (name, ci)
    plain_low = np.percentile(reps["strict_v1.mAP_macro"], 2.5)
    assert plain_low > cis["strict_v1.mAP_macro"]["point"], "fixture no longer shows the bias"
