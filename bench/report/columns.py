"""What each report column means: one place that names every metric's definition.

"mAP" means at least five different numbers in this field (harness-anchors §4.3), so a report
never prints a bare metric name: every header comes from :data:`METRICS`, which says the profile
and the averaging convention, and every report ends with the one-sentence definitions below.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """A stored metric (``profile.key`` as in the store) and how reports label it."""

    key: str  # "paper_v1.mAP": the profile and the key the store uses
    short: str  # "mAP": only ever shown next to ``label`` or inside a header that has it
    label: str  # "mAP (weighted, paper_v1)": the header text
    definition: str  # one sentence for the report's definitions section
    higher_is_better: bool = True

    @property
    def profile(self) -> str:
        return self.key.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.key.split(".", 1)[1]


METRICS: dict[str, Metric] = {m.key: m for m in (
    Metric("paper_v1.mIoU", "mIoU", "mIoU (paper_v1)",
           "mean IoU between the predicted and the ground-truth box over all queries, x100 "
           "(RefAtomNet's official mIOU@1)"),
    Metric("paper_v1.mAP", "mAP", "mAP (weighted, paper_v1)",
           "step-wise AP per class, averaged with weights = positives per class, over classes with "
           ">= 1 positive in the split, x100 (sklearn average='weighted'; RefAtomNet's official "
           "mAP)"),
    Metric("paper_v1.AUROC", "AUROC", "AUROC (weighted, paper_v1)",
           "ROC-AUC per class, support-weighted over classes with >= 1 positive, x100 "
           "(RefAtomNet's official AUC)"),
    Metric("strict_v1.mAP_macro", "mAP", "mAP (macro, strict_v1)",
           "unweighted mean of step-wise per-class AP over classes with >= 1 positive in the "
           "split, x100 (PySlowFast get_map)"),
    Metric("strict_v1.acc_iou50", "Acc@0.5", "Acc@IoU0.5 (strict_v1)",
           "fraction of queries whose predicted box has IoU >= 0.5 with the ground truth, x100"),
    Metric("strict_v1.frame_mAP50", "frame-mAP@0.5", "frame-mAP@0.5 (VOC, strict_v1)",
           "AVA-style frame-mAP: a mislocalised query (IoU < 0.5) counts as a false positive and a "
           "missed ground truth; VOC-interpolated, macro over classes with positives, x100"),
    Metric("strict_v1.mAP_macro_ava60", "mAP-60", "mAP (macro, AVA-60, strict_v1)",
           "macro mAP over the 60 ActivityNet AVA classes with positives, x100"),
)}

#: The paper's three columns, in the paper's order.
PAPER_METRICS: tuple[str, ...] = ("paper_v1.mIoU", "paper_v1.mAP", "paper_v1.AUROC")
#: strict_v1 headline columns shown next to them (on the paper split only, to keep tables legible).
STRICT_HEADLINE: tuple[str, ...] = ("strict_v1.mAP_macro", "strict_v1.acc_iou50")
#: The metric rows are ranked and tested by.
HEADLINE = "paper_v1.mAP"

#: Efficiency columns: (record key in ``efficiency``, header, definition).
EFFICIENCY: tuple[tuple[str, str, str], ...] = (
    ("params_m", "params (M)", "total parameters in millions (shared parameters counted once)"),
    ("gflops", "GFLOPs/query", "forward FLOPs per query in 1e9, from torch's FlopCounterMode "
                               "(matmul, conv, attention; other ops are not counted)"),
    ("latency_ms", "latency (ms/query)", "median forward time per query over timed repeats after "
                                         "warm-up, on the device named in the record"),
)

CI_NOTE = ("95 % CI = two-level percentile bootstrap, median-centred on the seed mean (resampling "
           "a cluster twice creates score ties that shift AP upwards; the shift is removed, the "
           "spread kept): video clusters are resampled (the same resamples for every row), and "
           "training seeds are resampled within each replicate; with one seed this is the cluster "
           "bootstrap of ravar_bench.metrics.bootstrap")
POOLED_CI_NOTE = ("CI marked ≈: pooled from the stored per-job CIs (used for evaluation conditions "
                  "other than none, and wherever the ground truth is not available): normal "
                  "approximation with SE = the seeds' mean bootstrap SE combined with the "
                  "between-seed SE / sqrt(seeds)")


def metric(key: str) -> Metric:
    """The :class:`Metric` of ``key``; unknown keys get a label that still names the profile."""
    if key in METRICS:
        return METRICS[key]
    profile, _, name = key.partition(".")
    return Metric(key, name, f"{name} ({profile})", f"{key} as computed by ravar_bench.metrics")


def header(split: str, key: str) -> str:
    """Column header of a metric on a split, e.g. ``test mAP (weighted, paper_v1)``."""
    return f"{split} {metric(key).label}"
