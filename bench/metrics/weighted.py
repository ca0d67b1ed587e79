"""Profile statistics for many resamples at once, given as integer cluster multiplicities.

A cluster bootstrap replicate is the data set in which every sample of cluster k appears
``M[r, k]`` times. Duplicating rows never changes the order of scores, so each class is sorted
ONCE; a replicate is then only a weight vector in that sorted order, and every rank metric of the
duplicated data follows from a few weighted sums per *tie block that holds a positive*:

* ``dtp_b``   positive weight in block b (``tp_b`` = its running sum),
* ``seen_b``  total weight ranked at or above the end of block b,
* ``before_b`` total weight ranked strictly above block b.

AP = sum_b dtp_b * tp_b / seen_b / tp_B; AUC and VOC frame-AP likewise (see ``_finish``).
All of these are linear in ``M``: either ``M @ A`` with a small per-class count matrix ``A``
(clusters x blocks; used when that is cheap, e.g. for rare classes) or, for frequent classes, a
gather of per-sample weights in sorted order followed by ONE flat 1-D cumulative sum over a
block of resamples (numpy's 1-D ``cumsum`` into a reused buffer is several times faster than
``cumsum(axis=1)`` or ``add.reduceat`` on 2-D arrays, and fresh large temporaries cost more in
page faults than the arithmetic). Everything is vectorised over the R resamples of a block.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .profiles import IOU_THRESHOLD
from .ranking import average_precision_per_sample, locate, rank_rows
from .reduce import Stats

CLASS_FIELDS = frozenset({"support", "n_neg", "ap", "auc", "frame_ap"})

#: Use the dense ``M @ A`` path when ``A`` has at most this many cells per sample.
_DENSE_CELLS_PER_SAMPLE = 32
#: Cells of one (resamples x samples) gather block; bounds memory to a few tens of MB.
_GATHER_CELLS = 8_000_000


@dataclass(frozen=True)
class _ClassPlan:
    """Everything about one class that does not depend on the weights."""

    n_cut: int  # number of cut points (ends of the blocks we need cumulative weight at)
    n_blocks: int  # tie blocks holding at least one positive
    end_col: np.ndarray  # (B,) cut index of each block's end
    before_col: np.ndarray  # (B,) cut index of the position before each block (-1: none)
    loc_blocks: np.ndarray  # (B_l,) blocks holding a localised positive (frame-AP TPs)
    dense: np.ndarray | None  # flat indices into a (K, n_cut + 2B) count matrix, or None
    # gather path
    cluster_sorted: np.ndarray | None = None  # (L,) cluster of sorted positions up to last cut
    cuts: np.ndarray | None = None  # (n_cut,) sorted positions to read cumulative weight at
    cluster_pos: np.ndarray | None = None  # (P,) cluster of each positive, in sorted order
    blk_last: np.ndarray | None = None  # (B,) index (into positives) of each block's last one
    loc_pos: np.ndarray | None = None  # (P,) 1 where the positive is localised


def _plan_class(order: np.ndarray, pos: np.ndarray, end_p: np.ndarray, start_p: np.ndarray,
                cluster: np.ndarray, localized: np.ndarray, n_clusters: int) -> _ClassPlan | None:
    """Block layout of one class from the sorted positions (and tie-block bounds) of its
    positives; None for a class without positives."""
    if pos.size == 0:
        return None
    blk_end, blk_starts = np.unique(end_p, return_index=True)  # end_p is non-decreasing
    blk_begin = start_p[blk_starts]
    blk_of_pos = np.searchsorted(blk_end, end_p)
    cuts = np.unique(np.concatenate([blk_end, blk_begin[blk_begin > 0] - 1]))
    end_col = np.searchsorted(cuts, blk_end)
    before_col = np.where(blk_begin > 0, np.searchsorted(cuts, blk_begin - 1), -1)
    loc_p = localized[order[pos]]
    loc_blocks = np.unique(blk_of_pos[loc_p])
    n_cut, n_blk = cuts.size, blk_end.size
    last = int(cuts[-1]) + 1
    cl_sorted = cluster[order[:last]]
    if n_clusters * (n_cut + 2 * n_blk) <= _DENSE_CELLS_PER_SAMPLE * order.size:
        ncols = n_cut + 2 * n_blk
        seg = np.searchsorted(cuts, np.arange(last))  # cut segment of each sorted position
        cl_pos = cluster[order[pos]]
        flat = np.concatenate([
            cl_sorted * ncols + seg,
            cl_pos * ncols + n_cut + blk_of_pos,
            cl_pos[loc_p] * ncols + n_cut + n_blk + blk_of_pos[loc_p],
        ])
        return _ClassPlan(n_cut, n_blk, end_col, before_col, loc_blocks, dense=flat)
    blk_last = np.append(blk_starts[1:], pos.size) - 1
    return _ClassPlan(n_cut, n_blk, end_col, before_col, loc_blocks, dense=None,
                      cluster_sorted=cl_sorted, cuts=cuts, cluster_pos=cluster[order[pos]],
                      blk_last=blk_last, loc_pos=loc_p.astype(np.uint8))


class WeightedEngine:
    """Evaluate :class:`~ravar_bench.metrics.reduce.Stats` for cluster multiplicities.

    ``needs`` names the Stats fields to fill (see ``reduce.NEEDS``); inputs must be validated.
    """

    def __init__(self, scores: np.ndarray, labels: np.ndarray, iou: np.ndarray,
                 cluster: np.ndarray, n_clusters: int, needs: frozenset[str]) -> None:
        self.needs = needs
        self.n_clusters = n_clusters
        self.n, self.n_classes = scores.shape
        bc = lambda w=None: np.bincount(cluster, weights=w, minlength=n_clusters)  # noqa: E731
        self.count_g = bc().astype(np.float64)
        # float32 matmuls are exact while every weighted count stays below 2**24 ...
        max_weight = n_clusters * self.count_g.max()  # bound on one replicate's total weight
        self.dtype = np.float32 if max_weight < 2**24 else np.float64
        # ... and the int32 running sum over a block of replicates below 2**31
        rows_per_block = max(1, _GATHER_CELLS // max(1, self.n))
        self.cum_dtype = np.int32 if rows_per_block * max_weight < 2**31 else np.int64
        localized = iou >= IOU_THRESHOLD
        if "miou" in needs:
            self.iou_g = bc(iou)
        if "acc50" in needs:
            self.acc_g = bc(localized.astype(np.float64))
        if "samples_ap" in needs:
            sample_ap, n_pos = average_precision_per_sample(scores, labels)
            has = n_pos > 0
            self.sap_g = bc(np.where(has, sample_ap, 0.0))
            self.has_g = bc(has.astype(np.float64))
        self.plans: list[_ClassPlan | None] = []
        if needs & CLASS_FIELDS:
            ranked = rank_rows(scores.T)
            pos = locate(ranked, labels.T)
            order = ranked.order
            for c in range(self.n_classes):
                sl = slice(pos.offsets[c], pos.offsets[c + 1])
                self.plans.append(_plan_class(order[c], pos.pos[sl], pos.end[sl],
                                              pos.start[sl], cluster, localized, n_clusters))

    def stats(self, mult: np.ndarray) -> Stats:
        """Stats for multiplicities ``mult`` (R, K) of a small integer dtype (e.g. uint8); R = 1
        with all ones is the plain data. Classes are the outer loop so that each class's count
        matrix is built once for all R resamples."""
        r = mult.shape[0]
        sample_sums = {"total": self.count_g}
        for name, attr in (("miou", "iou_g"), ("acc50", "acc_g"), ("samples_ap", "sap_g")):
            if name in self.needs:
                sample_sums[name] = getattr(self, attr)
        if "samples_ap" in self.needs:
            sample_sums["has"] = self.has_g
        table = np.stack(list(sample_sums.values()), axis=1)  # (K, S) per-cluster sums
        step = max(1, _GATHER_CELLS // (8 * self.n_clusters))
        # einsum's own loop (not BLAS) per column: a sum's rounding must not depend on which
        # other metrics share the call, nor on the BLAS thread count
        sums = np.concatenate([
            np.stack([np.einsum("rk,k->r", mult[lo:lo + step].astype(np.float64), table[:, j])
                      for j in range(table.shape[1])], axis=1)
            for lo in range(0, r, step)])
        col = dict(zip(sample_sums, sums.T))
        total = col["total"]
        st = Stats()
        with np.errstate(invalid="ignore", divide="ignore"):
            if "miou" in self.needs:
                st.miou = col["miou"] / total
            if "acc50" in self.needs:
                st.acc50 = col["acc50"] / total
            if "samples_ap" in self.needs:
                st.samples_ap = np.where(col["has"] > 0, col["samples_ap"] / col["has"], np.nan)
        if not self.needs & CLASS_FIELDS:
            return st
        shape = (r, self.n_classes)
        st.support, st.n_neg = np.zeros(shape), np.repeat(total[:, None], self.n_classes, 1)
        st.ap, st.auc, st.frame_ap = (np.full(shape, np.nan) for _ in range(3))
        m_dense = mult.astype(self.dtype) if any(p is not None and p.dense is not None
                                                 for p in self.plans) else None
        chunk = max(1, _GATHER_CELLS // max(1, self.n))
        buffers = _Buffers(min(chunk, r) * self.n, mult.dtype, self.cum_dtype)
        for c, plan in enumerate(self.plans):
            if plan is None:
                continue
            if plan.dense is not None:
                ncols = plan.n_cut + 2 * plan.n_blocks
                a = np.bincount(plan.dense, minlength=self.n_clusters * ncols)
                x = (m_dense @ a.reshape(self.n_clusters, ncols).astype(self.dtype)
                     ).astype(np.float64)  # small: ncols <= 32 N / K
                b = plan.n_cut + plan.n_blocks
                seen_cut = np.cumsum(x[:, :plan.n_cut], axis=1)
                tp = np.cumsum(x[:, plan.n_cut:b], axis=1)
                tpl = np.cumsum(x[:, b:], axis=1)
                self._finish(st, c, slice(None), plan, total, seen_cut, tp, tpl)
                continue
            for lo in range(0, r, chunk):  # bounded (rows x N) work blocks
                rows = slice(lo, min(r, lo + chunk))
                m = mult[rows]
                seen_cut = buffers.row_cumsum_at(m, plan.cluster_sorted, plan.cuts)
                tp = buffers.row_cumsum_at(m, plan.cluster_pos, plan.blk_last)
                tpl = buffers.row_cumsum_at(m, plan.cluster_pos, plan.blk_last, plan.loc_pos) \
                    if "frame_ap" in self.needs else None
                self._finish(st, c, rows, plan, total[rows], seen_cut, tp, tpl)
        return st

    def _finish(self, st: Stats, c: int, rows: slice, plan: _ClassPlan, total: np.ndarray,
                seen_cut: np.ndarray, tp: np.ndarray, tpl: np.ndarray | None) -> None:
        """AP / AUC / frame-AP of class ``c`` for replicates ``rows`` from cumulative weights:
        ``seen_cut`` (R, n_cut) through each cut, ``tp``/``tpl`` (R, B) positive / localised
        positive weight through each block."""
        seen = seen_cut[:, plan.end_col]
        dtp = np.diff(tp, axis=1, prepend=0.0)
        support = tp[:, -1]
        n_neg = total - support
        valid = support > 0
        st.support[rows, c], st.n_neg[rows, c] = support, n_neg
        with np.errstate(invalid="ignore", divide="ignore"):
            if "ap" in self.needs:
                prec = np.divide(tp, seen, out=np.zeros_like(tp), where=seen > 0)
                st.ap[rows, c] = np.where(valid, (dtp * prec).sum(axis=1) / support, np.nan)
            if "auc" in self.needs:
                before = np.where(plan.before_col >= 0,
                                  seen_cut[:, np.maximum(plan.before_col, 0)], 0.0)
                tp_before = tp - dtp
                credit = n_neg[:, None] - 0.5 * ((seen - tp) + (before - tp_before))
                ok = valid & (n_neg > 0)
                st.auc[rows, c] = np.where(ok, (dtp * credit).sum(axis=1) / (support * n_neg),
                                           np.nan)
            if "frame_ap" in self.needs:
                st.frame_ap[rows, c] = np.where(valid, self._frame_sum(tpl, seen, plan) / support,
                                                np.nan)

    @staticmethod
    def _frame_sum(tpl: np.ndarray, seen: np.ndarray, plan: _ClassPlan) -> np.ndarray:
        """Sum over TP blocks of (TP weight x VOC-interpolated precision), per replicate.

        ``tpl`` (R, B) is the cumulative localised-positive (TP) weight through each block.
        Precision only rises at blocks holding a true positive, so the interpolated precision
        (max over this and every later threshold) is a running max over those blocks from the
        right. A block whose weight is 0 in a replicate repeats the precision of a real
        threshold above it that is itself among the candidates, so it never changes the max.
        """
        if plan.loc_blocks.size == 0:
            return np.zeros(seen.shape[0])
        dtpl = np.diff(tpl, axis=1, prepend=0.0)[:, plan.loc_blocks]
        t = tpl[:, plan.loc_blocks]
        s = seen[:, plan.loc_blocks]
        prec = np.divide(t, s, out=np.zeros_like(t), where=s > 0)
        interp = np.maximum.accumulate(prec[:, ::-1], axis=1)[:, ::-1]
        return (dtpl * interp).sum(axis=1)


class _Buffers:
    """Reused flat work buffers for the gather path (allocating fresh multi-MB temporaries per
    class and block costs more in page faults than the arithmetic)."""

    def __init__(self, cells: int, weight_dtype: np.dtype, cum_dtype: type) -> None:
        self.weights = np.empty(cells, dtype=weight_dtype)
        self.cum = np.empty(cells, dtype=cum_dtype)

    def row_cumsum_at(self, mult: np.ndarray, cluster_of: np.ndarray, at: np.ndarray,
                      mask: np.ndarray | None = None) -> np.ndarray:
        """For each row r of ``mult`` (R, K): cumulative sum of ``mult[r, cluster_of]`` (times
        ``mask``) read at positions ``at``; returns (R, len(at)) float64.

        One 1-D cumsum runs over all rows back to back; subtracting each row's starting offset
        turns it into per-row prefix sums.
        """
        r, length = mult.shape[0], cluster_of.size
        w = self.weights[:r * length].reshape(r, length)
        np.take(mult, cluster_of, axis=1, out=w, mode="clip")
        if mask is not None:
            np.multiply(w, mask, out=w)
        cum = np.cumsum(self.weights[:r * length], dtype=self.cum.dtype,
                        out=self.cum[:r * length]).reshape(r, length)
        offset = np.concatenate([[0], cum[:-1, -1]])
        return (cum[:, at] - offset[:, None]).astype(np.float64)
