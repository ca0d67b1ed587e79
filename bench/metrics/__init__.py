"""RAVAR metrics: pure numpy functions over arrays, versioned profiles and bootstrap statistics.

Inputs everywhere: ``scores`` (N, 80) logits or probabilities, ``labels`` (N, 80) 0/1,
``pred_boxes``/``gt_boxes`` (N, 4) normalised ``[x1, y1, x2, y2]``. Profile values are x100.

* :func:`paper_v1` - bit-compatible with RefAtomNet's official evaluation (weighted mAP/AUROC).
* :func:`strict_v1` - macro/group/sample/frame mAP, accuracy@0.5, order invariant.
* :func:`explain_gap` - the same predictions under every "mAP" convention.
* :mod:`.bootstrap` - cluster bootstrap CIs, paired tests, Holm / Benjamini-Hochberg.
"""
from .bootstrap import (
    HEADLINE,
    benjamini_hochberg,
    bootstrap_replicates,
    cluster_bootstrap_ci,
    cluster_bootstrap_cis,
    headline_cis,
    holm,
    paired_bootstrap,
)
from .boxes import box_iou
from .explain import explain_gap, format_gap
from .profiles import (
    METRICS_VERSION,
    PROFILES,
    metrics_fingerprint,
    paper_v1,
    per_class_ap_table,
    score_all,
    strict_v1,
)
from .ranking import (
    ap_auc_per_class,
    average_precision_per_class,
    average_precision_per_sample,
    frame_ap_voc_per_class,
    roc_auc_per_class,
)
from .reduce import PAPER_KEYS, STRICT_KEYS

__all__ = [
    "HEADLINE", "METRICS_VERSION", "PAPER_KEYS", "PROFILES", "STRICT_KEYS", "ap_auc_per_class",
    "average_precision_per_class", "average_precision_per_sample", "benjamini_hochberg",
    "bootstrap_replicates", "box_iou", "cluster_bootstrap_ci", "cluster_bootstrap_cis",
    "explain_gap", "format_gap", "frame_ap_voc_per_class", "headline_cis", "holm", "metrics_fingerprint",
    "paired_bootstrap", "paper_v1", "per_class_ap_table", "roc_auc_per_class", "score_all",
    "strict_v1",
]
