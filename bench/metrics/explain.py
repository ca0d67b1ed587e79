"""``explain_gap``: one prediction set scored under every "mAP" convention in use (harness-anchors
§4.3), so a gap between "your number" and "the paper's number" can be attributed."""
from __future__ import annotations

import numpy as np

from ravar_bench.classes import NUM_CLASSES

from .validation import check_all, check_batch_size
from .boxes import iou_unchecked
from .profiles import IOU_THRESHOLD, batch_mean, class_stats, gate_scores, paper_v1
from .ranking import ap_auc_ranked, average_precision_per_sample, rank_rows
from .reduce import AVA60_MASK, masked_mean

GapRow = tuple[str, float, str]


def _weighted(ap: np.ndarray, support: np.ndarray) -> float:
    keep = support > 0
    return float(100.0 * np.sum(ap[keep] * support[keep]) / support[keep].sum()) if keep.any() \
        else 0.0


def explain_gap(scores, labels, pred_boxes, gt_boxes, batch_size: int = 8) -> list[GapRow]:
    """Score the same predictions under each convention: ``[(name, value x100, description)]``.

    ``batch_size`` is the evaluation batch size assumed for the ``drop_last`` and batch-mean
    rows (the official ``scripts/test.sh`` uses 8).
    """
    s, y, pb, gb = check_all(scores, labels, pred_boxes, gt_boxes, n_classes=NUM_CLASSES)
    bs = check_batch_size(batch_size, "batch_size")
    iou = iou_unchecked(pb, gb)
    localized = iou >= IOU_THRESHOLD
    st = class_stats(s, y, localized=localized)
    ap, sup = st.ap[0], st.support[0]
    has = sup > 0
    ap_all80 = np.where(has, ap, 0.0)  # sklearn 1.9: a class without positives scores 0

    micro_ap = ap_auc_ranked(rank_rows(s.reshape(1, -1)), y.reshape(1, -1), want_auc=False)[0][0]
    sample_ap, n_pos = average_precision_per_sample(s, y)
    samples_sklearn = float(np.nan_to_num(sample_ap).mean())  # rows without positives = 0

    gated = class_stats(gate_scores(s, iou), y)
    oracle = class_stats(s, y, localized=np.ones_like(localized))
    paper_drop = (paper_v1(s, y, pb, gb, drop_last=bs, batch_mean_iou=bs)
                  if s.shape[0] >= bs else None)

    rows: list[GapRow] = [
        ("weighted@cls>0 (paper_v1.mAP)", _weighted(ap, sup),
         "support-weighted step-wise AP over classes with positives; official RefAtomNet"),
        ("macro@cls>0 (strict_v1.mAP_macro)", float(100 * masked_mean(ap, has)),
         "unweighted mean AP over classes with positives (PySlowFast get_map)"),
        ("macro@all80", float(100 * ap_all80.mean()),
         "mean over all 80 classes, absent classes = 0 (sklearn 1.9 average='macro')"),
        ("micro", float(100 * micro_ap),
         "all (sample, class) pairs pooled into one ranking (sklearn/torchmetrics micro)"),
        ("samples@pos>0 (strict_v1.mAP_samples)", float(100 * sample_ap[n_pos > 0].mean())
         if (n_pos > 0).any() else float("nan"),
         "mean per-sample AP over samples with >= 1 positive"),
        ("samples (sklearn)", 100 * samples_sklearn,
         "sklearn average='samples': samples without positives count as 0"),
        ("macro@ava60", float(100 * masked_mean(ap, has & AVA60_MASK)),
         "macro over the 60 ActivityNet AVA classes with positives"),
        ("weighted@cls>0 + IoU gate", _weighted(gated.ap[0], gated.support[0]),
         "test.py: scores of queries with IoU < 0.5 zeroed, then the paper mAP"),
        ("macro@cls>0 + IoU gate", float(100 * masked_mean(gated.ap[0], has)),
         "as above with the macro mean"),
        ("frame-mAP@0.5 VOC (strict_v1.frame_mAP50)", float(100 * masked_mean(st.frame_ap[0], has)),
         "AVA-style: IoU < 0.5 makes the query's scores FPs and its GTs missed; VOC interpolation"),
        ("frame-mAP VOC, oracle boxes", float(100 * masked_mean(oracle.frame_ap[0], has)),
         "VOC-interpolated macro AP as if every box were correct (interpolation effect only)"),
        (f"weighted@cls>0, drop_last={bs}", paper_drop["mAP"] if paper_drop else float("nan"),
         f"paper mAP after dropping the last {s.shape[0] % bs} samples (N mod {bs})"),
        ("mIoU (sample mean)", float(100 * iou.mean()), "mean IoU over all queries"),
        (f"mIoU batch-mean, B={bs}", 100 * batch_mean(iou, bs),
         f"official: mean of per-batch means (batch {bs}, last batch partial)"),
        (f"mIoU batch-mean, B={bs}, drop_last", paper_drop["mIoU"] if paper_drop
         else float("nan"), "official test.sh: drop_last=True, then mean of batch means"),
        ("acc@IoU0.5", float(100 * localized.mean()), "fraction of queries with IoU >= 0.5"),
    ]
    return rows


def format_gap(rows: list[GapRow]) -> str:
    """Plain-text table of :func:`explain_gap` rows."""
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}}  {value:7.2f}  {desc}" for name, value, desc in rows)
