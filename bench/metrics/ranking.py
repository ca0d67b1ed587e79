"""Rank-based binary metrics (AP, ROC-AUC, VOC-interpolated AP), vectorised over many problems.

Every function here solves P independent binary ranking problems at once: the classes of an
(N, C) score matrix (column-wise) or its samples (row-wise, sklearn ``average="samples"``). One
argsort of the whole matrix gives each problem's descending order; tie blocks (runs of equal
scores) are found by comparing sorted neighbours, exactly like sklearn's ``_binary_clf_curve``
uses ``np.diff(y_score)``. A threshold exists only at the *end* of a tie block, so

* step-wise AP (sklearn, no interpolation) = ``sum_i y_i * P(end(i)) / n_pos`` where ``P(k)`` is
  the precision of the first ``k + 1`` ranked items. This is ``sum_k (R_k - R_{k-1}) P_k``
  regrouped by positive, hence independent of how tied items are ordered.
* ROC-AUC (Mann-Whitney, ties count 1/2) = ``sum_i y_i * (negatives strictly below i + 1/2
  negatives tied with i) / (n_pos * n_neg)``; equal to sklearn's trapezoidal ``roc_auc_score``.

Only the positives are visited after the sort: their sorted positions, block bounds and
"positives ranked at or above" counts come from ``np.searchsorted`` on flat row-major keys
``row * M + position``, and sums per problem from ``np.bincount``. So the cost is one argsort
plus a few linear passes, with no cumulative sum over the whole matrix.

Optional non-negative ``sample_weight`` reproduces sklearn's ``sample_weight``; integer weights
equal duplicated rows (tested), which is what the bootstrap relies on.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .validation import check_scores_labels


@dataclass(frozen=True)
class Ranked:
    """Descending order of each row of a (P, M) score matrix plus its tie-block ends.

    ``flat_order[p]`` lists the flat indices ``p * M + j`` of row ``p`` by descending score (ties
    in arbitrary order); ``np.take`` with it gathers any C-contiguous (P, M) array into sorted
    order much faster than ``take_along_axis``. ``block_ends`` holds the flat keys ``p * M + k``
    of the last sorted position ``k`` of every tie block, ascending (each row's last position is
    always one).
    """

    flat_order: np.ndarray
    block_ends: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.flat_order.shape

    @property
    def order(self) -> np.ndarray:
        """Per-row argsort (column indices), computed on demand."""
        p, m = self.shape
        return self.flat_order - (np.arange(p) * m)[:, None]

    def gather(self, rows: np.ndarray) -> np.ndarray:
        """``rows`` (P, M) in original order -> each row in its sorted order."""
        return np.take(np.ascontiguousarray(rows).reshape(-1), self.flat_order)


@dataclass(frozen=True)
class Located:
    """Items selected by a mask, in sorted coordinates, grouped by row (flat arrays, length T)."""

    key: np.ndarray  # row * M + pos, ascending
    row: np.ndarray
    pos: np.ndarray  # sorted position within the row
    end: np.ndarray  # last position of the item's tie block
    start: np.ndarray  # first position of the item's tie block
    offsets: np.ndarray  # (P + 1,) items of row p are [offsets[p], offsets[p + 1])
    m: int  # row length M

    def count_at_or_above(self, row: np.ndarray, position: np.ndarray, *, strict: bool = False
                          ) -> np.ndarray:
        """Number of these items in ``row`` ranked at positions <= ``position`` (< if strict)."""
        side = "left" if strict else "right"
        return np.searchsorted(self.key, row * self.m + position, side=side) - self.offsets[row]


def rank_rows(rows: np.ndarray) -> Ranked:
    """Rank every row of ``rows`` (P, M) by descending score; ties are kept as blocks."""
    neg = np.negative(rows, order="C")  # one contiguous copy; quicksort: tie order is irrelevant
    flat = np.argsort(neg, axis=1)
    flat += (np.arange(neg.shape[0]) * neg.shape[1])[:, None]
    s = np.take(neg.reshape(-1), flat)
    is_end = np.ones(s.shape, dtype=bool)
    np.not_equal(s[:, :-1], s[:, 1:], out=is_end[:, :-1])
    return Ranked(flat_order=flat, block_ends=np.flatnonzero(is_end))


def locate(ranked: Ranked, mask_rows: np.ndarray) -> Located:
    """Sorted positions and tie-block bounds of the items where ``mask_rows`` (P, M, original
    order) is true."""
    p, m = ranked.shape
    key = np.flatnonzero(ranked.gather(np.asarray(mask_rows, dtype=bool)))
    row = key // m
    base = row * m
    pos = key - base
    i = np.searchsorted(ranked.block_ends, key, side="left")  # first block end at or after key
    end = ranked.block_ends[i] - base
    prev = ranked.block_ends[np.maximum(i - 1, 0)]
    start = np.where((i > 0) & (prev >= base), prev - base + 1, 0)
    offsets = np.searchsorted(row, np.arange(p + 1), side="left")
    return Located(key=key, row=row, pos=pos, end=end, start=start, offsets=offsets, m=m)


def ap_auc_ranked(ranked: Ranked, y_rows: np.ndarray, weight: np.ndarray | None = None,
                  *, want_auc: bool = True) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Step-wise AP and ROC-AUC of each row problem; nan where undefined.

    ``y_rows`` (P, M) are 0/1 labels in the *original* order of the ranked rows; ``weight``
    optional non-negative weights, (M,) shared by every row. Returns ``(ap, auc, n_pos)`` with
    ``n_pos`` the (weighted) positives per row. AP is nan without positives, AUC also without
    negatives.
    """
    p, m = ranked.shape
    pos = locate(ranked, y_rows)
    row = pos.row
    if weight is None:
        n_pos = np.diff(pos.offsets).astype(np.float64)
        n_neg = m - n_pos
        wpos = 1.0
        tp_end = pos.count_at_or_above(row, pos.end).astype(np.float64)
        seen_end = pos.end + 1.0
    else:
        w_sorted = np.take(np.broadcast_to(weight, (p, m)).reshape(-1), ranked.flat_order)
        seen = np.cumsum(w_sorted, axis=1)
        wpos = w_sorted[row, pos.pos]
        cum = np.concatenate([[0.0], np.cumsum(wpos)])  # cumulative positive weight, flat
        base = cum[pos.offsets[:-1]]
        n_pos = cum[pos.offsets[1:]] - base
        n_neg = seen[:, -1] - n_pos
        tp_end = cum[pos.offsets[row] + pos.count_at_or_above(row, pos.end)] - base[row]
        seen_end = seen[row, pos.end]
    prec = np.divide(tp_end, seen_end, out=np.zeros_like(tp_end), where=seen_end > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.bincount(row, weights=wpos * prec, minlength=p) / n_pos
    ap[n_pos <= 0] = np.nan
    auc = None
    if want_auc:
        before = pos.count_at_or_above(row, pos.start, strict=True)
        if weight is None:
            tp_before = before.astype(np.float64)
            seen_before = pos.start.astype(np.float64)
        else:
            tp_before = cum[pos.offsets[row] + before] - base[row]
            seen_before = np.where(pos.start > 0, seen[row, np.maximum(pos.start - 1, 0)], 0.0)
        credit = n_neg[row] - 0.5 * ((seen_end - tp_end) + (seen_before - tp_before))
        with np.errstate(invalid="ignore", divide="ignore"):
            auc = np.bincount(row, weights=wpos * credit, minlength=p) / (n_pos * n_neg)
        auc[(n_pos <= 0) | (n_neg <= 0)] = np.nan
    return ap, auc, n_pos


def segmented_reverse_cummax(values: np.ndarray, row: np.ndarray) -> np.ndarray:
    """Running max from the right within each row of a flat, row-sorted array of values in
    [0, 1]: subtracting ``2 * row`` makes every later row smaller than any value of this row."""
    shifted = values - 2.0 * row
    return np.maximum.accumulate(shifted[::-1])[::-1] + 2.0 * row


def voc_ap_ranked(ranked: Ranked, tp_rows: np.ndarray, n_gt: np.ndarray) -> np.ndarray:
    """PASCAL VOC all-point interpolated AP per row (ActivityNet/AVA ``compute_average_precision``).

    ``tp_rows`` (P, M) marks true-positive detections (original order); every other item is a
    false positive; ``n_gt`` (P,) counts ground truths, so GTs never detected as TP lower recall.
    Precision is taken at tie-block ends (thresholds) like sklearn, then made monotone from the
    right; this makes the value independent of the order of tied scores (the ActivityNet code
    breaks ties by an unstable sort instead). Precision only rises at blocks holding a TP, so the
    running max over the TPs' own thresholds is the interpolated precision. nan where
    ``n_gt == 0``.
    """
    p, _ = ranked.shape
    tp = locate(ranked, tp_rows)
    prec = tp.count_at_or_above(tp.row, tp.end) / (tp.end + 1.0)
    interp = segmented_reverse_cummax(prec, tp.row)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.bincount(tp.row, weights=interp, minlength=p) / n_gt
    ap[n_gt <= 0] = np.nan
    return ap


def _check_weight(sample_weight, n: int) -> np.ndarray | None:
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"sample_weight must have shape ({n},), got {w.shape}")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("sample_weight must be finite and non-negative")
    return w


def _per_class(scores, labels, sample_weight, want_auc: bool):
    s, y = check_scores_labels(scores, labels)
    w = _check_weight(sample_weight, s.shape[0])
    ap, auc, n_pos = ap_auc_ranked(rank_rows(s.T), y.T, w, want_auc=want_auc)
    support = n_pos.astype(np.int64) if w is None else n_pos
    return ap, auc, support


def average_precision_per_class(scores, labels, *, sample_weight=None
                                ) -> tuple[np.ndarray, np.ndarray]:
    """Per-class step-wise AP, identical to ``sklearn.metrics.average_precision_score(...,
    average=None)`` except that classes without positives give nan (sklearn 1.9: 0 + warning).

    Returns ``(ap, support)``: (C,) float64 and (C,) int positives (weighted, float, when
    ``sample_weight`` is given).
    """
    ap, _, support = _per_class(scores, labels, sample_weight, want_auc=False)
    return ap, support


def roc_auc_per_class(scores, labels, *, sample_weight=None) -> tuple[np.ndarray, np.ndarray]:
    """Per-class ROC-AUC (Mann-Whitney with average ranks for ties) = sklearn ``roc_auc_score``
    per column; nan when a class has no positives or no negatives. Returns ``(auc, support)``."""
    _, auc, support = _per_class(scores, labels, sample_weight, want_auc=True)
    return auc, support


def ap_auc_per_class(scores, labels, *, sample_weight=None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AP and ROC-AUC per class from one sort: ``(ap, auc, support)``."""
    return _per_class(scores, labels, sample_weight, want_auc=True)


def average_precision_per_sample(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """Step-wise AP of each sample over its labels (sklearn ``average="samples"`` per row).

    Returns ``(ap, n_pos)``; ap is nan for a sample without positives, where sklearn 1.9 warns
    and scores 0 (so sklearn's ``samples`` mean counts such samples as 0).
    """
    s, y = check_scores_labels(scores, labels)
    ap, _, n_pos = ap_auc_ranked(rank_rows(s), y, want_auc=False)
    return ap, n_pos.astype(np.int64)


def frame_ap_voc_per_class(scores, labels, localized) -> tuple[np.ndarray, np.ndarray]:
    """AVA-style frame-AP per class for one-box-per-query predictions (harness-anchors §4.1).

    The query's box is its only detection; the detection of class c scored ``scores[:, c]`` is a
    TP iff the query is ``localized`` (IoU >= 0.5) and c is in its GT set; otherwise it is an FP
    and a GT of a mislocalised query stays missed. VOC all-point interpolation. Returns
    ``(ap, support)`` with nan AP for classes without positives.
    """
    s, y = check_scores_labels(scores, labels)
    loc = np.asarray(localized, dtype=bool)
    if loc.shape != (s.shape[0],):
        raise ValueError(f"localized must have shape ({s.shape[0]},), got {loc.shape}")
    support = y.sum(axis=0)
    tp = (y.T > 0) & loc[None, :]
    return voc_ap_ranked(rank_rows(s.T), tp, support), support.astype(np.int64)
