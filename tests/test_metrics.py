"""Metrics: equality with sklearn and the official RefAtomNet formulas, quirks, invariances."""
from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from ravar_bench.classes import AVA60_IDS, GROUPS
from ravar_bench.metrics import (
    METRICS_VERSION,
    PROFILES,
    average_precision_per_class,
    average_precision_per_sample,
    box_iou,
    explain_gap,
    format_gap,
    frame_ap_voc_per_class,
    metrics_fingerprint,
    paper_v1,
    per_class_ap_table,
    roc_auc_per_class,
    score_all,
    strict_v1,
)

TOL = 1e-9


# ----------------------------------------------------------------------------- helpers
def make_data(n=400, c=80, seed=0, ties=False, signal=1.0):
    """Long-tailed multi-label data with informative scores and noisy boxes."""
    rng = np.random.default_rng(seed)
    prior = np.clip(rng.pareto(1.2, c) * 0.03, 0.002, 0.6)
    y = (rng.random((n, c)) < prior).astype(np.int64)
    s = signal * y + rng.normal(size=(n, c))
    if ties:
        s = np.round(s, 1)
    xy = rng.random((n, 2)) * 0.6
    gt = np.c_[xy, xy + 0.2 + 0.2 * rng.random((n, 2))]
    pred = gt + rng.normal(scale=0.06, size=(n, 4))
    return s, y, pred, gt


def official_get_iou(bb1, bb2):
    """The official scalar get_iou as described in ravar-spec §3.4 (asserts included)."""
    x_left, y_top = max(bb1[0], bb2[0]), max(bb1[1], bb2[1])
    x_right, y_bottom = min(bb1[2], bb2[2]), min(bb1[3], bb2[3])
    if x_right < x_left or y_bottom < y_top:
        return 0.0
    inter = (x_right - x_left) * (y_bottom - y_top)
    a1 = (bb1[2] - bb1[0]) * (bb1[3] - bb1[1])
    a2 = (bb2[2] - bb2[0]) * (bb2[3] - bb2[1])
    iou = inter / float(a1 + a2 - inter)
    assert 0.0 <= iou <= 1.0
    return iou


def official_paper(s, y, pred, gt):
    """ravar-spec §3.7 reference: sklearn on the kept columns, x100, ValueError -> 0."""
    keep = y.sum(0) > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            m = average_precision_score(y[:, keep], s[:, keep], average="weighted")
        except ValueError:
            m = 0.0
        try:
            a = roc_auc_score(y[:, keep], s[:, keep], average="weighted")
            if np.isnan(a):  # sklearn >= 1.6 warns + nan where the official sklearn raised
                a = 0.0
        except ValueError:
            a = 0.0
    iou = np.mean([official_get_iou(p, g) for p, g in zip(pred, gt)])
    return {"mIoU": 100 * iou, "mAP": 100 * m, "AUROC": 100 * a}


def sk_ap_per_class(s, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.array([average_precision_score(y[:, c], s[:, c]) for c in range(y.shape[1])])


def sk_auc_per_class(s, y):
    out = np.full(y.shape[1], np.nan)
    for c in range(y.shape[1]):
        if 0 < y[:, c].sum() < y.shape[0]:
            out[c] = roc_auc_score(y[:, c], s[:, c])
    return out


def degenerate_data(seed=0):
    """Class without positives, class of all positives, constant scores, single positive."""
    s, y, pred, gt = make_data(n=120, seed=seed, ties=True)
    y[:, 3] = 0
    y[:, 4] = 1
    s[:, 5] = 0.25
    y[:, 6] = 0
    y[7, 6] = 1
    s[:, 7] = np.where(y[:, 7] == 1, 2.0, 0.0)  # perfect separation with ties
    return s, y, pred, gt


CASES = {
    "random": lambda seed: make_data(n=300, c=40, seed=seed),
    "ties": lambda seed: make_data(n=300, c=40, seed=seed, ties=True),
    "coarse_ties": lambda seed: (lambda d: (np.round(d[0]), *d[1:]))(
        make_data(n=300, c=40, seed=seed)),
    "degenerate": degenerate_data,
}


# ----------------------------------------------------------------------------- per-class AP/AUC
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("seed", [0, 1])
def test_per_class_ap_auc_equal_sklearn(case, seed):
    s, y, _, _ = CASES[case](seed)
    ap, support = average_precision_per_class(s, y)
    auc, _ = roc_auc_per_class(s, y)
    has = y.sum(0) > 0
    np.testing.assert_array_equal(support, y.sum(0))
    assert support.dtype.kind == "i"
    assert np.isnan(ap[~has]).all()
    np.testing.assert_allclose(ap[has], sk_ap_per_class(s, y)[has], rtol=0, atol=TOL)
    ref = sk_auc_per_class(s, y)
    np.testing.assert_array_equal(np.isnan(auc), np.isnan(ref))
    np.testing.assert_allclose(auc[~np.isnan(ref)], ref[~np.isnan(ref)], rtol=0, atol=TOL)


@pytest.mark.parametrize("seed", range(25))
def test_tiny_random_problems_equal_sklearn(seed):
    """Many tiny tie-heavy problems: the tie-block logic must match sklearn exactly."""
    rng = np.random.default_rng(100 + seed)
    n, c = rng.integers(1, 12), rng.integers(1, 6)
    s = rng.integers(0, 3, (n, c)).astype(float)
    y = rng.integers(0, 2, (n, c))
    ap, _ = average_precision_per_class(s, y)
    has = y.sum(0) > 0
    np.testing.assert_allclose(ap[has], sk_ap_per_class(s, y)[has], atol=TOL)
    auc, _ = roc_auc_per_class(s, y)
    ref = sk_auc_per_class(s, y)
    np.testing.assert_array_equal(np.isnan(auc), np.isnan(ref))
    np.testing.assert_allclose(auc[~np.isnan(ref)], ref[~np.isnan(ref)], atol=TOL)


def test_float32_scores_and_bool_labels_accepted():
    s, y, _, _ = make_data(n=200, seed=3, ties=True)
    ap64, _ = average_precision_per_class(s.astype(np.float32).astype(np.float64), y)
    ap32, _ = average_precision_per_class(s.astype(np.float32), y.astype(bool))
    np.testing.assert_allclose(ap32, ap64, atol=TOL)


@pytest.mark.parametrize("ties", [False, True])
def test_sample_weight_equals_sklearn_and_duplication(ties):
    s, y, _, _ = make_data(n=150, c=12, seed=5, ties=ties)
    w = np.random.default_rng(0).integers(0, 4, s.shape[0])
    ap, sup = average_precision_per_class(s, y, sample_weight=w)
    auc, _ = roc_auc_per_class(s, y, sample_weight=w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = average_precision_score(y, s, average=None, sample_weight=w)
    dup = np.repeat(np.arange(s.shape[0]), w)
    ap_dup, sup_dup = average_precision_per_class(s[dup], y[dup])
    auc_dup, _ = roc_auc_per_class(s[dup], y[dup])
    has = sup > 0
    np.testing.assert_allclose(ap[has], ref[has], atol=TOL)
    np.testing.assert_allclose(ap, ap_dup, atol=TOL)
    np.testing.assert_allclose(auc, auc_dup, atol=TOL)
    np.testing.assert_array_equal(sup, sup_dup)


def test_samples_ap_equals_sklearn_samples():
    s, y, _, _ = make_data(n=200, seed=4, ties=True)
    y[:5] = 0  # samples without positives
    ap, n_pos = average_precision_per_sample(s, y)
    assert np.isnan(ap[:5]).all() and (n_pos[:5] == 0).all()
    has = n_pos > 0
    ref = average_precision_score(y[has], s[has], average="samples")
    assert abs(np.mean(ap[has]) - ref) < TOL
    with warnings.catch_warnings():  # sklearn on all rows counts the empty rows as 0
        warnings.simplefilter("ignore")
        ref_all = average_precision_score(y, s, average="samples")
    assert abs(np.nan_to_num(ap).mean() - ref_all) < TOL


# ----------------------------------------------------------------------------- boxes
def test_box_iou_matches_official_get_iou():
    rng = np.random.default_rng(0)
    gt = np.c_[rng.random((300, 2)) * 0.5, rng.random((300, 2)) * 0.5 + 0.5]
    pred = gt + rng.normal(scale=0.2, size=(300, 4))  # includes inverted / out-of-range boxes
    ours = box_iou(pred, gt)
    ref = np.array([official_get_iou(p, g) for p, g in zip(pred, gt)])
    np.testing.assert_allclose(ours, ref, atol=1e-12)
    assert ours.dtype == np.float64 and ours.shape == (300,)


def test_box_iou_hand_cases():
    gt = np.array([[0.0, 0.0, 0.5, 0.5]] * 6)
    pred = np.array([
        [0.0, 0.0, 0.5, 0.5],    # identical -> 1
        [0.25, 0.0, 0.75, 0.5],  # half shift -> 1/3
        [0.5, 0.0, 1.0, 0.5],    # touching edge -> 0
        [0.6, 0.6, 0.9, 0.9],    # disjoint -> 0
        [0.4, 0.4, 0.1, 0.1],    # inverted (x2 < x1) -> 0, like the official early return
        [-0.5, -0.5, 1.5, 1.5],  # unclamped superset -> 0.25 / 4
    ])
    np.testing.assert_allclose(box_iou(pred, gt), [1, 1 / 3, 0, 0, 0, 0.25 / 4], atol=1e-12)
    # both boxes of zero area: official 0/0 -> nan -> AssertionError; we score 0
    assert box_iou([[0.2, 0.2, 0.2, 0.2]], [[0.2, 0.2, 0.2, 0.2]])[0] == 0.0
    # zero-area prediction inside a real box: 0 like the official formula
    assert box_iou([[0.1, 0.1, 0.1, 0.3]], [[0.0, 0.0, 0.5, 0.5]])[0] == 0.0


# ----------------------------------------------------------------------------- paper_v1
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("seed", [0, 1])
def test_paper_v1_equals_official_definition(case, seed):
    s, y, pred, gt = CASES[case](seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = paper_v1(s, y, pred, gt)
    ref = official_paper(s, y, pred, gt)
    assert set(ours) == {"mIoU", "mAP", "AUROC"}
    for k in ours:
        assert abs(ours[k] - ref[k]) < 100 * TOL, (k, ours[k], ref[k])


def test_paper_v1_weighted_not_macro():
    s, y, pred, gt = make_data(seed=7)
    keep = y.sum(0) > 0
    ours = paper_v1(s, y, pred, gt)["mAP"]
    macro = 100 * average_precision_score(y[:, keep], s[:, keep], average="macro")
    weighted = 100 * average_precision_score(y[:, keep], s[:, keep], average="weighted")
    assert abs(ours - weighted) < 1e-7 and abs(ours - macro) > 1.0


def test_paper_v1_official_failure_paths():
    s, y, pred, gt = make_data(n=50, seed=1)
    # a kept class without negatives: official get_auc catches sklearn's ValueError -> 0
    y2 = y.copy()
    y2[:, 0] = 1
    with pytest.warns(RuntimeWarning, match="no negatives"):
        out = paper_v1(s, y2, pred, gt)
    assert out["AUROC"] == 0.0 and out["mAP"] > 0
    # no positive at all: empty column set -> sklearn ValueError -> 0 for both
    out = paper_v1(s, np.zeros_like(y), pred, gt)
    assert out["mAP"] == 0.0 and out["AUROC"] == 0.0


def test_paper_v1_iou_gate():
    s, y, pred, gt = make_data(seed=2)
    iou = np.array([official_get_iou(p, g) for p, g in zip(pred, gt)])
    assert 0.1 < (iou < 0.5).mean() < 0.9  # the gate really bites
    gated = np.where((iou >= 0.5)[:, None], s, 0.0)
    ref = official_paper(gated, y, pred, gt)
    ours = paper_v1(s, y, pred, gt, iou_gate=True)
    assert abs(ours["mAP"] - ref["mAP"]) < 1e-7 and abs(ours["AUROC"] - ref["AUROC"]) < 1e-7
    assert abs(ours["mAP"] - paper_v1(s, y, pred, gt)["mAP"]) > 0.1


def test_paper_v1_batch_mean_iou_and_drop_last():
    s, y, pred, gt = make_data(n=203, seed=3)
    iou = np.array([official_get_iou(p, g) for p, g in zip(pred, gt)])
    b = 8
    batches = [iou[i:i + b] for i in range(0, len(iou), b)]
    ours = paper_v1(s, y, pred, gt, batch_mean_iou=b)
    assert abs(ours["mIoU"] - 100 * np.mean([x.mean() for x in batches])) < 1e-9
    assert abs(ours["mIoU"] - 100 * iou.mean()) > 1e-6  # last partial batch (3) matters
    keep = (len(iou) // b) * b
    dropped = paper_v1(s, y, pred, gt, drop_last=b, batch_mean_iou=b)
    ref = official_paper(s[:keep], y[:keep], pred[:keep], gt[:keep])
    for k in ref:
        assert abs(dropped[k] - ref[k]) < 1e-7
    with pytest.raises(ValueError, match="drop_last"):
        paper_v1(s[:5], y[:5], pred[:5], gt[:5], drop_last=8)
    with pytest.raises(ValueError, match="batch_mean_iou"):
        paper_v1(s, y, pred, gt, batch_mean_iou=0)


# ----------------------------------------------------------------------------- strict_v1
def test_strict_v1_equals_sklearn_definitions():
    s, y, pred, gt = make_data(n=300, seed=11, ties=True)
    y[:, 2] = 0
    out = strict_v1(s, y, pred, gt)
    has = y.sum(0) > 0

    def macro(mask):
        return 100 * average_precision_score(y[:, mask], s[:, mask], average="macro")

    ava60 = np.zeros(80, bool)
    ava60[np.array(AVA60_IDS) - 1] = True
    assert abs(out["mAP_macro"] - macro(has)) < 1e-7
    assert abs(out["mAP_macro_ava60"] - macro(has & ava60)) < 1e-7
    for g, ids in GROUPS.items():
        gm = np.zeros(80, bool)
        gm[np.array(ids) - 1] = True
        assert abs(out[f"mAP_{g}"] - macro(has & gm)) < 1e-7
    rows = y.sum(1) > 0
    assert abs(out["mAP_samples"]
               - 100 * average_precision_score(y[rows], s[rows], average="samples")) < 1e-7
    both = has & (y.sum(0) < len(y))
    assert abs(out["AUROC_macro"]
               - 100 * roc_auc_score(y[:, both], s[:, both], average="macro")) < 1e-7
    iou = np.array([official_get_iou(p, g) for p, g in zip(pred, gt)])
    assert abs(out["mIoU"] - 100 * iou.mean()) < 1e-9
    assert abs(out["acc_iou50"] - 100 * (iou >= 0.5).mean()) < 1e-9


def test_strict_v1_group_without_positives_is_nan():
    s, y, pred, gt = make_data(n=100, seed=1)
    y[:, 63:] = 0  # no PI positives
    assert np.isnan(strict_v1(s, y, pred, gt)["mAP_PI"])


def test_strict_v1_invariant_to_order_batching_and_monotone_transform():
    s, y, pred, gt = make_data(n=300, seed=12, ties=True)
    ref = strict_v1(s, y, pred, gt)
    perm = np.random.default_rng(0).permutation(len(s))
    permuted = strict_v1(s[perm], y[perm], pred[perm], gt[perm])
    # "batching": predictions assembled from uneven chunks are the same data
    chunks = np.array_split(np.arange(len(s)), [7, 50, 51, 200])
    rebuilt = strict_v1(*(np.concatenate([a[c] for c in chunks]) for a in (s, y, pred, gt)))
    sig = strict_v1(1 / (1 + np.exp(-s)), y, pred, gt)  # probabilities instead of logits
    for k in ref:
        assert abs(permuted[k] - ref[k]) < TOL, k
        assert abs(rebuilt[k] - ref[k]) < TOL, k
        assert abs(sig[k] - ref[k]) < 1e-9, k
    # paper_v1 with the official batch-mean mIoU is NOT order invariant (the quirk is real)
    a = paper_v1(s, y, pred, gt, batch_mean_iou=7)["mIoU"]
    b = paper_v1(s[perm], y[perm], pred[perm], gt[perm], batch_mean_iou=7)["mIoU"]
    assert a != b


def voc_ap_reference(scores, tp, n_gt):
    """ActivityNet compute_precision_recall + compute_average_precision, from the spec."""
    order = np.argsort(-scores, kind="stable")
    t = tp[order].astype(float)
    ctp, cfp = np.cumsum(t), np.cumsum(1 - t)
    prec, rec = ctp / (ctp + cfp), ctp / n_gt
    rec = np.concatenate([[0], rec, [1]])
    prec = np.concatenate([[0], prec, [0]])
    for i in range(len(prec) - 2, -1, -1):
        prec[i] = max(prec[i], prec[i + 1])
    idx = np.where(rec[1:] != rec[:-1])[0] + 1
    return np.sum((rec[idx] - rec[idx - 1]) * prec[idx])


def test_frame_ap_voc_matches_activitynet_formula_without_ties():
    s, y, pred, gt = make_data(n=300, c=10, seed=9)
    loc = box_iou(pred, gt) >= 0.5
    ap, support = frame_ap_voc_per_class(s, y, loc)
    for c in range(10):
        if support[c]:
            ref = voc_ap_reference(s[:, c], (y[:, c] == 1) & loc, support[c])
            assert abs(ap[c] - ref) < TOL
    # perfect boxes: VOC interpolation is never below step-wise AP
    ap_all, _ = frame_ap_voc_per_class(s, y, np.ones(len(s), bool))
    step, _ = average_precision_per_class(s, y)
    ok = support > 0
    assert (ap_all[ok] >= step[ok] - TOL).all()
    # mislocalised queries can only lower frame-AP
    assert (ap[ok] <= ap_all[ok] + TOL).all()


def test_frame_ap_voc_ties_are_order_invariant():
    s, y, pred, gt = make_data(n=200, c=8, seed=3)
    s = np.round(s)
    loc = box_iou(pred, gt) >= 0.5
    perm = np.random.default_rng(1).permutation(len(s))
    a, _ = frame_ap_voc_per_class(s, y, loc)
    b, _ = frame_ap_voc_per_class(s[perm], y[perm], loc[perm])
    np.testing.assert_allclose(a, b, atol=TOL)


# ----------------------------------------------------------------------------- registry etc.
def test_score_all_profiles_version_fingerprint():
    s, y, pred, gt = make_data(n=120, seed=0)
    out = score_all(s, y, pred, gt)
    assert set(out) == set(PROFILES) == {"paper_v1", "strict_v1"}
    assert out["paper_v1"] == paper_v1(s, y, pred, gt)
    assert {"mAP_macro", "mAP_macro_ava60", "mAP_PM", "mAP_OM", "mAP_PI", "mAP_samples",
            "acc_iou50", "mIoU", "AUROC_macro"} <= set(out["strict_v1"])
    assert isinstance(METRICS_VERSION, str) and METRICS_VERSION
    fp = metrics_fingerprint()
    assert re.fullmatch(r"[0-9a-f]{64}", fp) and fp == metrics_fingerprint()


def test_per_class_ap_table():
    s, y, pred, gt = make_data(n=200, seed=4)
    y[:, 15] = 0
    table = per_class_ap_table(s, y)
    assert len(table) == 80
    assert table[0]["id"] == 1 and table[0]["group"] == "PM" and table[79]["group"] == "PI"
    assert table[79]["name"] == "watch (a person)"
    assert np.isnan(table[15]["AP"]) and table[15]["support"] == 0
    ap = sk_ap_per_class(s, y)
    for row in table:
        if row["support"]:
            assert abs(row["AP"] - 100 * ap[row["id"] - 1]) < 1e-7


def test_explain_gap_rows_are_consistent():
    s, y, pred, gt = make_data(n=403, seed=5)
    y[:, 20] = 0
    rows = explain_gap(s, y, pred, gt, batch_size=8)
    assert all(len(r) == 3 and isinstance(r[0], str) and isinstance(r[2], str) for r in rows)
    by = {r[0]: r[1] for r in rows}
    paper, strict = paper_v1(s, y, pred, gt), strict_v1(s, y, pred, gt)
    assert abs(by["weighted@cls>0 (paper_v1.mAP)"] - paper["mAP"]) < 1e-9
    assert abs(by["macro@cls>0 (strict_v1.mAP_macro)"] - strict["mAP_macro"]) < 1e-9
    assert abs(by["weighted@cls>0 + IoU gate"] - paper_v1(s, y, pred, gt, iou_gate=True)["mAP"]) \
        < 1e-9
    assert abs(by["frame-mAP@0.5 VOC (strict_v1.frame_mAP50)"] - strict["frame_mAP50"]) < 1e-9
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert abs(by["macro@all80"] - 100 * average_precision_score(y, s, average="macro")) \
            < 1e-7
        assert abs(by["samples (sklearn)"]
                   - 100 * average_precision_score(y, s, average="samples")) < 1e-7
    assert abs(by["micro"] - 100 * average_precision_score(y, s, average="micro")) < 1e-7
    assert abs(by["weighted@cls>0, drop_last=8"]
               - paper_v1(s, y, pred, gt, drop_last=8)["mAP"]) < 1e-9
    assert by["macro@cls>0 (strict_v1.mAP_macro)"] < by["weighted@cls>0 (paper_v1.mAP)"]
    assert "weighted@cls>0" in format_gap(rows)


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize("mutate, pattern", [
    (lambda s, y, p, g: (s, y[:, :79], p, g), r"labels must have the same shape"),
    (lambda s, y, p, g: (s[0], y, p, g), r"scores must be a 2-D array"),
    (lambda s, y, p, g: (np.where(np.eye(*s.shape) > 0, np.nan, s), y, p, g),
     r"scores contains NaN"),
    (lambda s, y, p, g: (s + np.inf, y, p, g), r"scores contains infinite"),
    (lambda s, y, p, g: (s, y * 2, p, g), r"labels must contain only 0 and 1"),
    (lambda s, y, p, g: (s, y, p[:, :3], g), r"pred_boxes must have shape \(10, 4\)"),
    (lambda s, y, p, g: (s, y, p, g[:9]), r"gt_boxes must have shape \(10, 4\)"),
    (lambda s, y, p, g: (s, y, p * np.nan, g), r"pred_boxes contains NaN"),
    (lambda s, y, p, g: (np.array([["a"] * 80] * 10), y, p, g), r"scores must be numeric"),
])
@pytest.mark.parametrize("fn", [paper_v1, strict_v1])
def test_input_validation_names_the_argument(fn, mutate, pattern):
    s, y, p, g = make_data(n=10, seed=0)
    with pytest.raises(ValueError, match=pattern):
        fn(*mutate(s, y, p, g))


def test_validation_of_class_count_and_iou_inputs():
    s, y, p, g = make_data(n=10, c=12, seed=0)
    paper_v1(s, y, p, g)  # paper_v1 is generic in C
    with pytest.raises(ValueError, match="scores must have 80 columns"):
        strict_v1(s, y, p, g)
    with pytest.raises(ValueError, match=r"pred_boxes must have shape \(N, 4\)"):
        box_iou([0, 0, 1, 1], [[0, 0, 1, 1]])
    with pytest.raises(ValueError, match="sample_weight"):
        average_precision_per_class(s, y, sample_weight=-np.ones(10))
    with pytest.raises(ValueError, match="localized"):
        frame_ap_voc_per_class(s, y, np.ones(9, bool))
