"""Cluster bootstrap confidence intervals, paired bootstrap tests and multiplicity corrections.

Why clusters: RefAVA has several referred persons (and texts) per clip, so samples of one video
are correlated and an instance bootstrap understates the variance. We resample whole clusters
(e.g. video ids) with replacement and recompute the metric on each replicate; intervals are
percentile intervals. For paired comparisons the same resampled clusters score both systems.

A replicate is represented by integer cluster multiplicities, and every metric is computed by
:class:`~ravar_bench.metrics.weighted.WeightedEngine` from one sort per class (see there), so a
1000-resample CI on the RefAVA test split takes seconds.

Caveat (harness-anchors §4.3): AP is a non-linear ranking statistic, and percentile CIs of
absolute AP can be biased upward on small/rare classes; prefer paired differences for claims.
"""
from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np

from .validation import check_all, check_boxes, check_scores_labels
from .boxes import iou_unchecked
from .profiles import PROFILES, gate_scores
from .reduce import NEEDS, REDUCERS, parse_metric
from .weighted import WeightedEngine

#: The metrics every job record carries a CI for.
HEADLINE = ("paper_v1.mIoU", "paper_v1.mAP", "paper_v1.AUROC")

#: Cap on the cells of one block of raw cluster draws (int64), ~32 MB.
_BLOCK_CELLS = 4_000_000


# --------------------------------------------------------------------------- inputs
def _cluster_ids(clusters, n: int) -> tuple[np.ndarray, int]:
    """Map arbitrary hashable cluster labels to 0..K-1."""
    arr = np.asarray(clusters, dtype=object) if not isinstance(clusters, np.ndarray) else clusters
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"clusters must have shape ({n},) (one cluster id per sample), "
                         f"got {np.shape(clusters)}")
    try:
        _, inverse = np.unique(arr, return_inverse=True)
    except TypeError:  # mixed, unorderable labels
        index: dict[Any, int] = {}
        inverse = np.array([index.setdefault(c, len(index)) for c in arr.tolist()])
    inverse = inverse.reshape(-1).astype(np.intp)
    return inverse, int(inverse.max()) + 1


def _check_settings(n_resamples, alpha) -> None:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) \
            or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")


def _metric_list(metrics) -> list[tuple[str, str, str]]:
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    if not names:
        raise ValueError("metrics must name at least one 'profile.key'")
    return [(name, *parse_metric(name)) for name in names]


def _unpack_pred(pred, name: str) -> tuple[Any, Any]:
    """A prediction set as (scores, boxes): a tuple, a mapping or an object with attributes."""
    if isinstance(pred, dict):
        try:
            return pred["scores"], pred["boxes"]
        except KeyError as err:
            raise ValueError(f"{name} mapping needs 'scores' and 'boxes' keys") from err
    if hasattr(pred, "scores") and hasattr(pred, "boxes"):
        return pred.scores, pred.boxes
    if isinstance(pred, (tuple, list)) and len(pred) == 2:
        return pred[0], pred[1]
    raise ValueError(f"{name} must be (scores, boxes), a dict with 'scores'/'boxes' or an object "
                     f"with .scores/.boxes, got {type(pred).__name__}")


class _Prepared:
    """Validated inputs of one system plus the engine that scores its replicates."""

    def __init__(self, scores, labels, pred_boxes, gt_boxes, cluster, n_clusters,
                 metrics: list[tuple[str, str, str]], iou_gate: bool) -> None:
        s, y, pb, gb = check_all(scores, labels, pred_boxes, gt_boxes)
        iou = iou_unchecked(pb, gb)
        if iou_gate:
            s = gate_scores(s, iou)
        self.metrics = metrics
        profiles = {prof: PROFILES[prof](s, y, pb, gb) for prof in {p for _, p, _ in metrics}}
        self.point = {name: profiles[prof][key] for name, prof, key in metrics}
        needs = frozenset().union(*(NEEDS[prof][key] for _, prof, key in metrics))
        self.engine = WeightedEngine(s, y, iou, cluster, n_clusters, needs)

    def replicate_values(self, mult: np.ndarray) -> dict[str, np.ndarray]:
        st = self.engine.stats(mult)
        out = {}
        for name, prof, key in self.metrics:
            out[name] = REDUCERS[prof](st, keys=(key,))[key]
        return out


def _multiplicities(rng: np.random.Generator, n_resamples: int, n_clusters: int) -> np.ndarray:
    """Cluster multiplicities (R, K): each row counts K cluster draws with replacement.

    Drawn in row blocks to bound memory; stored as uint8 when possible (a cluster drawn 255+
    times in one replicate is practically impossible but handled by widening).
    """
    block = max(1, _BLOCK_CELLS // n_clusters)
    parts = []
    for lo in range(0, n_resamples, block):
        r = min(block, n_resamples - lo)
        draws = rng.integers(0, n_clusters, size=(r, n_clusters))
        flat = (draws + n_clusters * np.arange(r)[:, None]).ravel()
        parts.append(np.bincount(flat, minlength=r * n_clusters).reshape(r, n_clusters))
    mult = np.concatenate(parts)
    return mult.astype(np.uint8 if mult.max() < 256 else np.int32)


def _run(systems: list[_Prepared], n_resamples: int, n_clusters: int, seed
         ) -> list[dict[str, np.ndarray]]:
    """Score every system on the same resampled clusters."""
    mult = _multiplicities(np.random.default_rng(seed), n_resamples, n_clusters)
    return [system.replicate_values(mult) for system in systems]


def percentile_interval(values: np.ndarray, alpha: float = 0.05,
                        point: float | None = None) -> tuple[float, float]:
    """Percentile interval; with ``point``, the median-centred percentile interval.

    AP is a ranking statistic, and a resample that repeats a cluster creates tied scores whose
    tie blocks raise AP, so the bootstrap distribution of an absolute mAP sits *above* the point
    estimate (by more than its spread for chance-level scores; harness-anchors §4.3). A plain
    percentile interval can then miss the point, and a bias-corrected (BC) one degenerates when
    every replicate lies above it. We keep the bootstrap *spread* and remove its median *shift*:
    the interval is ``point + percentiles(replicates - median(replicates))``. The shift itself is
    reported as ``bias`` by :func:`cluster_bootstrap_cis`. Paired differences (where the shift
    cancels) use the plain percentile interval.
    """
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return float("nan"), float("nan")
    if point is not None and np.isfinite(point):
        finite = finite - np.median(finite) + point
    low, high = np.percentile(finite, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


# --------------------------------------------------------------------------- public API
def bootstrap_replicates(scores, labels, pred_boxes, gt_boxes, clusters,
                         metrics: str | Sequence[str] = "paper_v1.mAP", n_resamples: int = 1000,
                         seed: int | None = 0, *, iou_gate: bool = False
                         ) -> dict[str, np.ndarray]:
    """The raw bootstrap distribution ``{metric: (n_resamples,)}`` (for plots and custom tests).

    A replicate where a metric is undefined (e.g. a group without positives) is nan.
    """
    _check_settings(n_resamples, 0.05)
    n = check_scores_labels(scores, labels)[0].shape[0]
    cluster, k = _cluster_ids(clusters, n)
    system = _Prepared(scores, labels, pred_boxes, gt_boxes, cluster, k, _metric_list(metrics),
                       iou_gate)
    return _run([system], int(n_resamples), k, seed)[0]


def cluster_bootstrap_cis(scores, labels, pred_boxes, gt_boxes, clusters,
                          metrics: Sequence[str] = ("paper_v1.mAP",), n_resamples: int = 1000,
                          alpha: float = 0.05, seed: int | None = 0, *, iou_gate: bool = False
                          ) -> dict[str, dict[str, Any]]:
    """:func:`cluster_bootstrap_ci` for several metrics from the same replicates (one pass)."""
    _check_settings(n_resamples, alpha)
    s, _ = check_scores_labels(scores, labels)
    n = s.shape[0]
    cluster, k = _cluster_ids(clusters, n)
    system = _Prepared(scores, labels, pred_boxes, gt_boxes, cluster, k, _metric_list(metrics),
                       iou_gate)
    reps = _run([system], int(n_resamples), k, seed)[0]
    out = {}
    for name, values in reps.items():
        low, high = percentile_interval(values, alpha, system.point[name])
        finite = values[np.isfinite(values)]
        out[name] = {"point": system.point[name], "low": low, "high": high,
                     "n_resamples": int(n_resamples), "n_clusters": k,
                     "n_valid": int(finite.size),
                     "bias": float(np.median(finite) - system.point[name]) if finite.size else float("nan"),
                     "std": float(finite.std(ddof=1)) if finite.size > 1 else float("nan"),
                     "alpha": float(alpha), "metric": name}
    return out


def headline_cis(scores, labels, pred_boxes, gt_boxes, clusters, n_resamples: int = 1000,
                 seed: int | None = 0) -> dict[str, dict[str, Any]]:
    """CIs of the :data:`HEADLINE` metrics with video ids as clusters, as job records and
    ``ravar-bench score --bootstrap`` report them; quiet, because the point estimate already warned."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return cluster_bootstrap_cis(scores, labels, pred_boxes, gt_boxes, clusters, metrics=HEADLINE,
                                     n_resamples=n_resamples, seed=seed)


def cluster_bootstrap_ci(scores, labels, pred_boxes, gt_boxes, clusters,
                         metric: str = "paper_v1.mAP", n_resamples: int = 1000,
                         alpha: float = 0.05, seed: int | None = 0, *, iou_gate: bool = False
                         ) -> dict[str, Any]:
    """Median-centred percentile CI of ``metric`` ("profile.key", e.g. "strict_v1.mAP_macro") by resampling
    ``clusters`` (one id per sample, e.g. the video id) with replacement.

    Returns ``dict(point, low, high, n_resamples, n_clusters)`` plus ``n_valid`` (replicates where
    the metric is defined), ``bias`` (median replicate minus point), ``std``, ``alpha`` and ``metric``. ``point`` is the profile value on
    the data as given. ``iou_gate`` applies the official test.py gate before scoring.
    """
    return cluster_bootstrap_cis(scores, labels, pred_boxes, gt_boxes, clusters, (metric,),
                                 n_resamples, alpha, seed, iou_gate=iou_gate)[metric]


def paired_bootstrap(pred_a, pred_b, labels, gt_boxes, clusters, metric: str = "paper_v1.mAP",
                     n_resamples: int = 1000, alpha: float = 0.05, seed: int | None = 0, *,
                     iou_gate: bool = False) -> dict[str, Any]:
    """Paired cluster bootstrap of ``metric(a) - metric(b)`` on the same queries.

    ``pred_a``/``pred_b``: ``(scores, boxes)`` tuples, dicts with ``scores``/``boxes`` or objects
    with those attributes (e.g. ``protocol.Predictions``), in the same sample order as
    ``labels``. Each replicate scores both systems on the *same* resampled clusters.

    Returns ``dict(diff, low, high, p_value)`` plus ``point_a``, ``point_b``, ``n_resamples``,
    ``n_clusters``. ``p_value`` is two-sided, from the bootstrap distribution of the difference:
    ``min(1, 2 * min(1 + #{d* <= 0}, 1 + #{d* >= 0}) / (1 + R))``, i.e. the smallest alpha at
    which the percentile interval excludes 0 (the +1 keeps it above 0).
    """
    _check_settings(n_resamples, alpha)
    (sa, ba), (sb, bb) = _unpack_pred(pred_a, "pred_a"), _unpack_pred(pred_b, "pred_b")
    s, _ = check_scores_labels(sa, labels)
    check_scores_labels(sb, labels)
    n = s.shape[0]
    check_boxes(ba, n, "pred_a boxes"), check_boxes(bb, n, "pred_b boxes")
    cluster, k = _cluster_ids(clusters, n)
    metrics = _metric_list(metric)
    if len(metrics) != 1:
        raise ValueError("paired_bootstrap takes a single metric")
    a = _Prepared(sa, labels, ba, gt_boxes, cluster, k, metrics, iou_gate)
    b = _Prepared(sb, labels, bb, gt_boxes, cluster, k, metrics, iou_gate)
    reps_a, reps_b = _run([a, b], int(n_resamples), k, seed)
    d = reps_a[metric] - reps_b[metric]
    d = d[np.isfinite(d)]
    low, high = percentile_interval(d, alpha)
    if d.size:
        p = min(1.0, 2.0 * min(1 + np.sum(d <= 0), 1 + np.sum(d >= 0)) / (1 + d.size))
    else:
        p = float("nan")
    return {"diff": a.point[metric] - b.point[metric], "low": low, "high": high,
            "p_value": float(p), "point_a": a.point[metric], "point_b": b.point[metric],
            "n_resamples": int(n_resamples), "n_valid": int(d.size), "n_clusters": k,
            "alpha": float(alpha), "metric": metric}


# --------------------------------------------------------------------------- corrections
def _check_p(p_values) -> np.ndarray:
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p_values must be 1-D, got shape {p.shape}")
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ValueError("p_values must be finite and in [0, 1]")
    return p


def holm(p_values) -> np.ndarray:
    """Holm step-down adjusted p-values (family-wise error), in the input order.

    ``adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))`` over ascending p.
    """
    p = _check_p(p_values)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adj = np.empty(m)
    adj[order] = np.maximum.accumulate(scaled)
    return adj


def benjamini_hochberg(p_values) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (false discovery rate), in the input order.

    ``adj_(i) = min_{j >= i} min(1, m p_(j) / j)`` over ascending p.
    """
    p = _check_p(p_values)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, m * p[order] / np.arange(1, m + 1))
    adj = np.empty(m)
    adj[order] = np.minimum.accumulate(scaled[::-1])[::-1]
    return adj
