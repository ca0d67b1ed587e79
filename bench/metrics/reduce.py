"""From per-class / per-sample statistics to profile numbers: the one definition of each metric.

Both the direct profiles (one evaluation) and the bootstrap (many resamples at once) feed these
functions arrays with a leading resample axis R (R = 1 for a plain evaluation), so a CI is always
computed by the very code that produced the point estimate.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ravar_bench.classes import AVA60_IDS, GROUPS, NUM_CLASSES

#: Keys of each profile, in report order.
PAPER_KEYS: tuple[str, ...] = ("mIoU", "mAP", "AUROC")
STRICT_KEYS: tuple[str, ...] = (
    "mAP_macro", "mAP_macro_ava60", "mAP_PM", "mAP_OM", "mAP_PI", "mAP_samples",
    "frame_mAP50", "acc_iou50", "mIoU", "AUROC_macro",
)


def _id_mask(ids) -> np.ndarray:
    mask = np.zeros(NUM_CLASSES, dtype=bool)
    mask[np.asarray(ids) - 1] = True
    return mask


AVA60_MASK = _id_mask(AVA60_IDS)
GROUP_MASKS = {name: _id_mask(ids) for name, ids in GROUPS.items()}


@dataclass
class Stats:
    """Sufficient statistics of one or many (R) evaluations; arrays are (R, C) or (R,).

    Any field a requested metric does not need may be ``None``.
    """

    support: np.ndarray | None = None  # (R, C) positives (weighted)
    n_neg: np.ndarray | None = None  # (R, C) negatives (weighted)
    ap: np.ndarray | None = None  # (R, C) step-wise AP, nan without positives
    auc: np.ndarray | None = None  # (R, C) ROC-AUC, nan without positives or negatives
    frame_ap: np.ndarray | None = None  # (R, C) VOC frame-AP@0.5, nan without positives
    miou: np.ndarray | None = None  # (R,) mean IoU in [0, 1]
    acc50: np.ndarray | None = None  # (R,) fraction with IoU >= 0.5
    samples_ap: np.ndarray | None = None  # (R,) mean AP over samples with >= 1 positive


def masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of ``values`` over ``mask`` along the last axis; nan where the mask is empty."""
    count = mask.sum(axis=-1)
    total = np.where(mask, values, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def paper_from_stats(st: Stats, keys=PAPER_KEYS) -> dict[str, np.ndarray]:
    """The official RefAtomNet numbers (x100) from statistics.

    mAP/AUROC: support-weighted mean over classes with >= 1 positive (sklearn
    ``average="weighted"`` on ``Y[:, keep]``). The official ``get_map``/``get_auc`` return 0 when
    sklearn raises ``ValueError``: no class has a positive (empty column set), or (AUROC, old
    sklearn) a kept class has no negatives. sklearn 1.9 no longer raises in the latter case but
    warns and yields nan; we reproduce the official 0 and warn.
    """
    out: dict[str, np.ndarray] = {}
    if "mIoU" in keys:
        out["mIoU"] = 100.0 * st.miou
    if "mAP" in keys or "AUROC" in keys:
        sup = st.support
        keep = sup > 0
        total = sup.sum(axis=-1)
        none_kept = total <= 0
        denom = np.where(none_kept, 1.0, total)
        if "mAP" in keys:
            num = np.where(keep, sup * np.nan_to_num(st.ap), 0.0).sum(axis=-1)
            out["mAP"] = np.where(none_kept, 0.0, 100.0 * num / denom)
        if "AUROC" in keys:
            no_neg = (keep & (st.n_neg <= 0)).any(axis=-1)
            num = np.where(keep, sup * np.nan_to_num(st.auc), 0.0).sum(axis=-1)
            out["AUROC"] = np.where(none_kept | no_neg, 0.0, 100.0 * num / denom)
            if no_neg.size == 1 and no_neg.all():
                warnings.warn("paper_v1 AUROC: a class has positives but no negatives; the "
                              "official get_auc returns 0 in that case (sklearn ValueError)",
                              RuntimeWarning, stacklevel=3)
    return out


def strict_from_stats(st: Stats, keys=STRICT_KEYS) -> dict[str, np.ndarray]:
    """The principled profile (x100): macro means over classes with >= 1 positive.

    A subset without positive classes (e.g. a group absent from a small split) gives nan.
    """
    out: dict[str, np.ndarray] = {}
    has = st.support > 0 if st.support is not None else None
    masks = {"mAP_macro": None, "mAP_macro_ava60": AVA60_MASK,
             **{f"mAP_{g}": m for g, m in GROUP_MASKS.items()}}
    for key, subset in masks.items():
        if key in keys:
            mask = has if subset is None else has & subset
            out[key] = 100.0 * masked_mean(st.ap, mask)
    if "mAP_samples" in keys:
        out["mAP_samples"] = 100.0 * st.samples_ap
    if "frame_mAP50" in keys:
        out["frame_mAP50"] = 100.0 * masked_mean(st.frame_ap, has)
    if "acc_iou50" in keys:
        out["acc_iou50"] = 100.0 * st.acc50
    if "mIoU" in keys:
        out["mIoU"] = 100.0 * st.miou
    if "AUROC_macro" in keys:
        out["AUROC_macro"] = 100.0 * masked_mean(st.auc, has & (st.n_neg > 0))
    return out


#: What each metric needs from :class:`Stats` (the bootstrap computes only that).
NEEDS: dict[str, dict[str, frozenset[str]]] = {
    "paper_v1": {
        "mIoU": frozenset({"miou"}),
        "mAP": frozenset({"support", "ap"}),
        "AUROC": frozenset({"support", "n_neg", "auc"}),
    },
    "strict_v1": {
        **{k: frozenset({"support", "ap"}) for k in
           ("mAP_macro", "mAP_macro_ava60", "mAP_PM", "mAP_OM", "mAP_PI")},
        "mAP_samples": frozenset({"samples_ap"}),
        "frame_mAP50": frozenset({"support", "frame_ap"}),
        "acc_iou50": frozenset({"acc50"}),
        "mIoU": frozenset({"miou"}),
        "AUROC_macro": frozenset({"support", "n_neg", "auc"}),
    },
}

REDUCERS = {"paper_v1": paper_from_stats, "strict_v1": strict_from_stats}


def parse_metric(metric: str) -> tuple[str, str]:
    """Split ``"profile.key"`` and check that it exists."""
    if not isinstance(metric, str) or metric.count(".") != 1:
        raise ValueError(f"metric must be a 'profile.key' string such as 'paper_v1.mAP', "
                         f"got {metric!r}")
    profile, key = metric.split(".")
    if profile not in NEEDS:
        raise ValueError(f"metric {metric!r}: unknown profile {profile!r}; "
                         f"choose from {sorted(NEEDS)}")
    if key not in NEEDS[profile]:
        raise ValueError(f"metric {metric!r}: unknown key {key!r} for {profile}; "
                         f"choose from {list(NEEDS[profile])}")
    return profile, key
