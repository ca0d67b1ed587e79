"""Versioned metric profiles: ``paper_v1`` (bit-compatible with RefAtomNet) and ``strict_v1``.

Never report a bare "mAP": a number is ``profile.key`` plus :data:`METRICS_VERSION` and
:func:`metrics_fingerprint`. All values are x100, like the paper tables.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ravar_bench.classes import AVA60_IDS, NUM_CLASSES, group_of, name_of

from .validation import check_all, check_batch_size, check_scores_labels
from .boxes import iou_unchecked
from .ranking import ap_auc_ranked, average_precision_per_sample, rank_rows, voc_ap_ranked
from .reduce import Stats, paper_from_stats, strict_from_stats

#: Bump when any number a profile returns can change for the same inputs.
METRICS_VERSION = "1.0.0"

IOU_THRESHOLD = 0.5


def class_stats(scores: np.ndarray, labels: np.ndarray, *, localized: np.ndarray | None = None
                ) -> Stats:
    """Per-class AP, ROC-AUC, support and negatives (and frame-AP when ``localized`` is given)
    from one sort of the whole matrix. Inputs must already be validated; arrays come back (1, C).
    """
    ranked = rank_rows(scores.T)
    y_rows = labels.T > 0
    ap, auc, support = ap_auc_ranked(ranked, y_rows)
    st = Stats(support=support[None], n_neg=(labels.shape[0] - support)[None],
               ap=ap[None], auc=auc[None])
    if localized is not None:
        st.frame_ap = voc_ap_ranked(ranked, y_rows & localized[None, :], support)[None]
    return st


def gate_scores(scores: np.ndarray, iou: np.ndarray) -> np.ndarray:
    """The official ``test.py`` gate: all scores of a sample with IoU < 0.5 become 0 (not -inf)."""
    return np.where((iou >= IOU_THRESHOLD)[:, None], scores, scores.dtype.type(0))


def batch_mean(values: np.ndarray, batch_size: int) -> float:
    """Mean of per-batch means over consecutive batches (the last one may be partial)."""
    starts = np.arange(0, values.shape[0], batch_size)
    sums = np.add.reduceat(values, starts)
    sizes = np.diff(np.append(starts, values.shape[0]))
    return float(np.mean(sums / sizes))


def paper_v1(scores, labels, pred_boxes, gt_boxes, *, iou_gate: bool = False,
             batch_mean_iou: int | None = None, drop_last: int | None = None) -> dict[str, float]:
    """RefAtomNet's official numbers: ``{"mIoU", "mAP", "AUROC"}`` (x100).

    * mAP = ``average_precision_score(Y[:, keep], S[:, keep], average="weighted")``, keep =
      classes with >= 1 positive; AUROC likewise with ``roc_auc_score``; mIoU = mean IoU.
    * Official failure paths: no positive at all -> mAP = AUROC = 0; a kept class without
      negatives -> AUROC = 0 (see :func:`~ravar_bench.metrics.reduce.paper_from_stats`).

    Quirks of the official code, all off by default:

    * ``iou_gate`` (``test.py`` only): zero all scores of samples whose box IoU < 0.5.
    * ``batch_mean_iou=B``: mIoU is the mean of per-batch means with batch size B.
    * ``drop_last=B``: drop the last ``N mod B`` samples (DataLoader ``drop_last=True``) first.
    """
    s, y, pb, gb = check_all(scores, labels, pred_boxes, gt_boxes)
    drop = check_batch_size(drop_last, "drop_last")
    bmi = check_batch_size(batch_mean_iou, "batch_mean_iou")
    if drop is not None:
        n_keep = (s.shape[0] // drop) * drop
        if n_keep == 0:
            raise ValueError(f"drop_last={drop} leaves no sample of the {s.shape[0]} given")
        s, y, pb, gb = s[:n_keep], y[:n_keep], pb[:n_keep], gb[:n_keep]
    iou = iou_unchecked(pb, gb)
    if iou_gate:
        s = gate_scores(s, iou)
    st = class_stats(s, y)
    st.miou = np.array([batch_mean(iou, bmi) if bmi else iou.mean()])
    return {k: float(v[0]) for k, v in paper_from_stats(st).items()}


def _strict_stats(s: np.ndarray, y: np.ndarray, iou: np.ndarray) -> Stats:
    localized = iou >= IOU_THRESHOLD
    st = class_stats(s, y, localized=localized)
    sample_ap, n_pos = average_precision_per_sample(s, y)
    has = n_pos > 0
    st.samples_ap = np.array([sample_ap[has].mean() if has.any() else np.nan])
    st.miou = np.array([iou.mean()])
    st.acc50 = np.array([localized.mean()])
    return st


def strict_v1(scores, labels, pred_boxes, gt_boxes) -> dict[str, float]:
    """The principled profile (x100); invariant to sample order and batching.

    * ``mAP_macro``: mean step-wise AP over classes with >= 1 positive in the given split.
    * ``mAP_macro_ava60``: the same over the 60 ActivityNet AVA classes; ``mAP_PM/OM/PI``: per
      AVA group (nan if a group has no positive class).
    * ``mAP_samples``: mean per-sample AP over samples with >= 1 positive. This equals sklearn
      ``average="samples"`` on those rows; sklearn itself would score a sample without positives
      0 (with a warning) and keep it in the mean, which rewards nothing and only dilutes.
    * ``frame_mAP50``: AVA-style frame-mAP@0.5, VOC-interpolated, mislocalised query = FP + missed
      GT (harness-anchors §4.1), macro over classes with positives.
    * ``acc_iou50``: fraction of queries with IoU >= 0.5; ``mIoU``: mean IoU.
    * ``AUROC_macro``: mean ROC-AUC over classes with positives and negatives.
    """
    s, y, pb, gb = check_all(scores, labels, pred_boxes, gt_boxes, n_classes=NUM_CLASSES)
    st = _strict_stats(s, y, iou_unchecked(pb, gb))
    return {k: float(v[0]) for k, v in strict_from_stats(st).items()}


PROFILES: dict[str, Callable[..., dict[str, float]]] = {"paper_v1": paper_v1,
                                                        "strict_v1": strict_v1}


def score_all(scores, labels, pred_boxes, gt_boxes) -> dict[str, dict[str, float]]:
    """Every profile with default settings: ``{"paper_v1": {...}, "strict_v1": {...}}``."""
    return {name: fn(scores, labels, pred_boxes, gt_boxes) for name, fn in PROFILES.items()}


def per_class_ap_table(scores, labels) -> list[dict[str, Any]]:
    """One row per AVA class: id, name, group, ava60, support, AP and AUROC (x100, nan when
    undefined). For per-class plots and the group breakdowns of reports."""
    s, y = check_scores_labels(scores, labels, n_classes=NUM_CLASSES)
    st = class_stats(s, y)
    ava60 = set(AVA60_IDS)
    return [
        {"id": c + 1, "name": name_of(c + 1), "group": group_of(c + 1), "ava60": c + 1 in ava60,
         "support": int(st.support[0, c]), "AP": float(100.0 * st.ap[0, c]),
         "AUROC": float(100.0 * st.auc[0, c])}
        for c in range(NUM_CLASSES)
    ]


def metrics_fingerprint() -> str:
    """SHA-256 over the source of every module of this package (provenance of a score)."""
    digest = hashlib.sha256(METRICS_VERSION.encode())
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()
