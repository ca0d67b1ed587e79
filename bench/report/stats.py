"""Statistics for reports: seed-aware CIs, pairwise significance, compact letter display.

Everything here works on bootstrap *replicates* (arrays of metric values, one per cluster
resample), produced by :func:`ravar_bench.metrics.bootstrap.bootstrap_replicates`. That function
draws its cluster resamples from ``numpy.random.default_rng(seed)`` and the number of clusters,
so every system scored on the same split with the same bootstrap seed sees the *same* resamples:
replicates of different rows are paired, exactly as inside
:func:`~ravar_bench.metrics.bootstrap.paired_bootstrap`. Computing replicates once per row (rather
than once per pair) keeps a k-row significance matrix at k bootstrap passes instead of k².

Seeds: a row trained with S seeds has S replicate vectors. Its seed-mean replicate r averages S
seeds drawn with replacement (the second level of a two-level bootstrap), so the interval widens
when seeds disagree; with S = 1 it is the plain cluster bootstrap.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ravar_bench.metrics.bootstrap import benjamini_hochberg, holm, percentile_interval


def seed_mean_replicates(per_seed: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Two-level replicates of the seed mean: ``per_seed`` is (S, R) with shared cluster
    resamples along R; each replicate averages S seeds drawn with replacement. (R,)"""
    per_seed = np.atleast_2d(np.asarray(per_seed, dtype=np.float64))
    s, r = per_seed.shape
    if s == 1:
        return per_seed[0].copy()
    pick = rng.integers(0, s, size=(r, s))
    return per_seed[pick, np.arange(r)[:, None]].mean(axis=1)


def above_reference(replicates: Sequence[np.ndarray], reference: np.ndarray, alpha: float = 0.05
                    ) -> list[tuple[bool, float, float]]:
    """"Did it learn?": for each row, whether its paired replicates lie above the reference row's
    (the lower end of the percentile interval of the paired difference is > 0), with that interval.
    The same paired cluster resamples as the significance matrix, one comparison per row."""
    ref = np.asarray(reference, dtype=np.float64)
    out = []
    for rep in replicates:
        lo, hi = percentile_interval(np.asarray(rep, dtype=np.float64) - ref, alpha)
        out.append((bool(np.isfinite(lo) and lo > 0), float(lo), float(hi)))
    return out


def bootstrap_p_value(diffs: np.ndarray) -> float:
    """Two-sided bootstrap p-value of a difference, the convention of ``paired_bootstrap``:
    ``min(1, 2 min(1 + #{d <= 0}, 1 + #{d >= 0}) / (1 + R))`` over the finite replicates."""
    d = np.asarray(diffs, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return float("nan")
    return float(min(1.0, 2.0 * min(1 + np.sum(d <= 0), 1 + np.sum(d >= 0)) / (1 + d.size)))


def normal_p_value(point_diff: float, diffs: np.ndarray) -> float:
    """Two-sided p of a bootstrap-SE z-test: ``2 (1 - Phi(|d| / sd(d*)))``. Unlike the percentile
    p-value it has no resolution floor of ``2 / (R + 1)``, which matters once a family of m pairs
    is Holm-adjusted (the floor becomes ``2m / (R + 1)``)."""
    from statistics import NormalDist

    d = np.asarray(diffs, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size < 2 or not np.isfinite(point_diff):
        return float("nan")
    se = float(d.std(ddof=1))
    if se == 0.0:
        return 0.0 if point_diff != 0 else 1.0
    return float(2 * (1 - NormalDist().cdf(abs(point_diff) / se)))


def choose_p_method(method: str, n_pairs: int, n_resamples: int, alpha: float) -> str:
    """"auto": the percentile p-value (the convention of ``paired_bootstrap``) when R resolves the
    Holm family (smallest adjusted p ``2m / (R + 1) <= alpha / 10``), else the normal one."""
    if method not in ("auto", "percentile", "normal"):
        raise ValueError(f"p_method must be 'auto', 'percentile' or 'normal', got {method!r}")
    if method != "auto":
        return method
    return "percentile" if 2 * max(n_pairs, 1) / (n_resamples + 1) <= alpha / 10 else "normal"


def pooled_ci(values: Sequence[float], cis: Sequence[tuple[float, float] | None],
              alpha: float = 0.05) -> tuple[float, float]:
    """Fallback CI of a seed mean from stored per-seed CIs, when per-sample scoring is impossible.

    Each seed's percentile CI is read as a normal one (SE = width / (2 z)). The seeds share the
    queries, so their query-resampling errors are near-perfectly correlated: the seed mean keeps
    the mean SE (not SE / sqrt(S)). The between-seed spread adds ``std / sqrt(S)``."""
    z = _z(alpha)
    vals = np.asarray(values, dtype=np.float64)
    widths = [(hi - lo) for ci in cis if ci is not None for lo, hi in [ci]
              if np.isfinite(lo) and np.isfinite(hi)]
    if vals.size == 0 or not widths:
        return float("nan"), float("nan")
    se_query = float(np.mean(widths)) / (2 * z)
    se_seed = float(vals.std(ddof=1) / np.sqrt(vals.size)) if vals.size > 1 else 0.0
    se = float(np.hypot(se_query, se_seed))
    mean = float(vals.mean())
    return mean - z * se, mean + z * se


def _z(alpha: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(1 - alpha / 2)


# ------------------------------------------------------------------------------ significance
@dataclass
class Significance:
    """Pairwise comparison of k rows on one metric; matrices are (k, k), diff = row - column."""

    labels: list[str]
    metric: str
    split: str
    points: np.ndarray  # (k,) seed-mean point values
    diff: np.ndarray
    low: np.ndarray
    high: np.ndarray
    p: np.ndarray  # raw two-sided p of ``p_method`` (nan on the diagonal)
    p_holm: np.ndarray
    p_bh: np.ndarray
    alpha: float
    n_resamples: int
    p_method: str = "percentile"
    p_percentile: np.ndarray | None = None  # always kept: the paired_bootstrap convention
    higher_is_better: bool = True
    letters: list[str] = field(default_factory=list)
    best: int = 0
    differs_from_best: list[bool] = field(default_factory=list)

    @property
    def significant(self) -> np.ndarray:
        """(k, k) bool: Holm-adjusted p < alpha (the family is all k(k-1)/2 pairs)."""
        with np.errstate(invalid="ignore"):
            return np.nan_to_num(self.p_holm, nan=1.0) < self.alpha

    def pairs(self) -> list[dict[str, object]]:
        """Long form, one entry per unordered pair (for CSV)."""
        k = len(self.labels)
        out = []
        for i in range(k):
            for j in range(i + 1, k):
                out.append({"a": self.labels[i], "b": self.labels[j], "metric": self.metric,
                            "split": self.split, "a_value": self.points[i], "b_value": self.points[j],
                            "diff_a_minus_b": self.diff[i, j], "ci_low": self.low[i, j],
                            "ci_high": self.high[i, j], "p": self.p[i, j],
                            "p_method": self.p_method,
                            "p_percentile": None if self.p_percentile is None
                            else self.p_percentile[i, j],
                            "p_holm": self.p_holm[i, j], "p_bh": self.p_bh[i, j],
                            "significant_holm": bool(self.significant[i, j])})
        return out


def significance_matrix(labels: Sequence[str], replicates: Sequence[np.ndarray],
                        points: Sequence[float], *, metric: str, split: str, alpha: float = 0.05,
                        higher_is_better: bool = True, p_method: str = "auto") -> Significance:
    """All pairwise differences of paired replicates (same cluster resamples, see module doc),
    two-sided p-values (see :func:`choose_p_method`), Holm and Benjamini-Hochberg adjustment
    over the k(k-1)/2 pairs, compact letters and which rows differ from the best one."""
    k = len(labels)
    if len(replicates) != k or len(points) != k:
        raise ValueError(f"significance_matrix: {k} labels but {len(replicates)} replicate vectors "
                         f"and {len(points)} points")
    reps = [np.asarray(r, dtype=np.float64) for r in replicates]
    if k and len({r.shape for r in reps}) != 1:
        raise ValueError("significance_matrix: every row needs the same number of replicates "
                         f"(shapes {[r.shape for r in reps]})")
    pts = np.asarray(points, dtype=np.float64)
    n_res = int(reps[0].size) if k else 0
    method = choose_p_method(p_method, k * (k - 1) // 2, n_res, alpha)
    nan = np.full((k, k), np.nan)
    diff, low, high, p, p_pct = nan.copy(), nan.copy(), nan.copy(), nan.copy(), nan.copy()
    for i in range(k):
        diff[i, i] = 0.0
        for j in range(i + 1, k):
            d = reps[i] - reps[j]
            lo, hi = percentile_interval(d, alpha)
            diff[i, j], diff[j, i] = pts[i] - pts[j], pts[j] - pts[i]
            low[i, j], high[i, j], low[j, i], high[j, i] = lo, hi, -hi, -lo
            p_pct[i, j] = p_pct[j, i] = bootstrap_p_value(d)
            p[i, j] = p[j, i] = p_pct[i, j] if method == "percentile" else \
                normal_p_value(diff[i, j], d)
    iu = np.triu_indices(k, 1)
    raw = p[iu]
    ok = np.isfinite(raw)
    p_holm, p_bh = nan.copy(), nan.copy()
    if ok.any():
        for target, fn in ((p_holm, holm), (p_bh, benjamini_hochberg)):
            adj = np.full(raw.shape, np.nan)
            adj[ok] = fn(raw[ok])
            target[iu] = adj
            target[(iu[1], iu[0])] = adj
    sig = Significance(list(labels), metric, split, pts, diff, low, high, p, p_holm, p_bh, alpha,
                       n_res, method, p_pct, higher_is_better)
    if k:
        order_key = np.where(np.isfinite(pts), pts, -np.inf if higher_is_better else np.inf)
        sig.best = int(np.argmax(order_key) if higher_is_better else np.argmin(order_key))
        s = sig.significant
        sig.differs_from_best = [bool(s[i, sig.best]) for i in range(k)]
        sig.letters = compact_letters(pts, s, higher_is_better)
    return sig


def compact_letters(points: Sequence[float], significant: np.ndarray,
                    higher_is_better: bool = True) -> list[str]:
    """Compact letter display: two rows share a letter iff they are *not* significantly
    different. Insert-and-absorb (Piepho 2004): start with one group holding every row; for each
    significant pair split every group holding both; drop groups contained in another. Letters
    go to groups in order of their best member ("a" = the group of the best row)."""
    pts = np.asarray(points, dtype=np.float64)
    k = pts.size
    sig = np.asarray(significant, dtype=bool)
    if sig.shape != (k, k):
        raise ValueError(f"compact_letters: significant must be ({k}, {k}), got {sig.shape}")
    groups: list[frozenset[int]] = [frozenset(range(k))] if k else []
    for i in range(k):
        for j in range(i + 1, k):
            if not (sig[i, j] or sig[j, i]):
                continue
            split: list[frozenset[int]] = []
            for g in groups:
                if i in g and j in g:
                    split += [g - {i}, g - {j}]
                else:
                    split.append(g)
            groups = _absorb(split)
    score = np.where(np.isfinite(pts), pts, -np.inf) if higher_is_better else \
        np.where(np.isfinite(pts), -pts, -np.inf)
    groups.sort(key=lambda g: (-max(score[m] for m in g), min(g)))
    names = [_letter(n) for n in range(len(groups))]
    return ["".join(names[n] for n, g in enumerate(groups) if i in g) for i in range(k)]


def _absorb(groups: list[frozenset[int]]) -> list[frozenset[int]]:
    unique = list(dict.fromkeys(groups))
    return [g for g in unique if not any(g < other for other in unique)]


def _letter(n: int) -> str:
    """a..z, then aa, ab, ... (more than 26 groups only with very many rows)."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    return letters[n] if n < 26 else _letter(n // 26 - 1) + letters[n % 26]


def quiet_bootstrap(fn, *args, **kwargs):
    """Call a metrics function with its expected RuntimeWarnings (empty classes in a resample)
    silenced: the point estimate has already reported them once."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kwargs)
