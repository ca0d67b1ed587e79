"""Speed of ravar_bench.metrics against sklearn, measured in the same run.

    /work/venv/bin/python benchmarks/bench_metrics.py [--n 36630] [--repeats 3]

Synthetic RefAVA-like data: AVA training-set class priors (``classes.REFAVA_TRAIN_COUNTS``),
informative float32 logits, noisy boxes, two referred persons per clip (the bootstrap cluster).
Times are medians over repeats of ``time.perf_counter``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from ravar_bench.classes import REFAVA_TRAIN_COUNTS, REFAVA_TRAIN_SIZE
from ravar_bench.metrics import box_iou, cluster_bootstrap_ci, paper_v1, score_all, strict_v1

TEST_SPLIT = 3056


def make_data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    prior = np.array(REFAVA_TRAIN_COUNTS) / REFAVA_TRAIN_SIZE
    labels = (rng.random((n, 80)) < prior).astype(np.uint8)
    scores = (1.2 * labels + rng.normal(size=(n, 80))).astype(np.float32)
    xy = rng.random((n, 2)) * 0.6
    gt = np.c_[xy, xy + 0.3]
    pred = (gt + rng.normal(scale=0.07, size=(n, 4))).astype(np.float32)
    clusters = np.arange(n) // 2
    return scores, labels, pred, gt, clusters


def sklearn_paper(scores, labels, pred, gt) -> dict[str, float]:
    """The official definition with sklearn (IoU vectorised so that only the ranking is timed)."""
    keep = labels.sum(0) > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = average_precision_score(labels[:, keep], scores[:, keep], average="weighted")
        a = roc_auc_score(labels[:, keep], scores[:, keep], average="weighted")
    return {"mIoU": 100 * float(box_iou(pred, gt).mean()), "mAP": 100 * m, "AUROC": 100 * a}


def timed(fn, repeats: int):
    """Median wall time (perf_counter) and median process CPU time over ``repeats`` runs.

    CPU time is printed too because the 2-core machine is shared: under contention wall time
    inflates while CPU time stays close to the quiet-machine wall time of single-threaded code.
    """
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    timed.cpu = statistics.median(cpus)
    return statistics.median(walls), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=36630, help="samples (RefAVA total: 36630)")
    ap.add_argument("--repeats", type=int, default=3, help="repeats per timing (median)")
    ap.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    ap.add_argument("--no-full-bootstrap", action="store_true",
                    help="skip the bootstrap on --n samples (only the test-split size)")
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

    s, y, pred, gt, clusters = make_data(args.n)
    paper_v1(s, y, pred, gt)  # warm-up (imports, page faults)
    t_ours, ours = timed(lambda: paper_v1(s, y, pred, gt), args.repeats)
    c_ours = timed.cpu
    t_sk, ref = timed(lambda: sklearn_paper(s, y, pred, gt), args.repeats)
    c_sk = timed.cpu
    diff = max(abs(ours[k] - ref[k]) for k in ours)
    print(f"paper_v1 N={args.n}x80: ours {t_ours:.3f} s (cpu {c_ours:.3f} s) | sklearn "
          f"{t_sk:.3f} s (cpu {c_sk:.3f} s) | speed-up {t_sk / t_ours:.1f}x | "
          f"max |diff| {diff:.2e} (x100 units) | median of {args.repeats}")
    t_strict, _ = timed(lambda: strict_v1(s, y, pred, gt), args.repeats)
    c_strict = timed.cpu
    t_all, _ = timed(lambda: score_all(s, y, pred, gt), args.repeats)
    print(f"strict_v1 N={args.n}: {t_strict:.3f} s (cpu {c_strict:.3f} s) | score_all (both "
          f"profiles): {t_all:.3f} s (cpu {timed.cpu:.3f} s)")

    sizes = [min(TEST_SPLIT, args.n)]
    if not args.no_full_bootstrap and args.n > TEST_SPLIT:
        sizes.append(args.n)
    for n in sizes:
        sub = slice(0, n)
        reps = args.repeats if n <= TEST_SPLIT else 1
        t_boot, ci = timed(lambda: cluster_bootstrap_ci(
            s[sub], y[sub], pred[sub], gt[sub], clusters[sub], metric="paper_v1.mAP",
            n_resamples=args.resamples, seed=0), reps)
        print(f"cluster bootstrap CI paper_v1.mAP, {args.resamples} resamples, N={n} "
              f"({ci['n_clusters']} clusters): {t_boot:.2f} s (cpu {timed.cpu:.2f} s, median "
              f"of {reps}) | "
              f"point {ci['point']:.2f} [{ci['low']:.2f}, {ci['high']:.2f}]")
        if n <= TEST_SPLIT:
            t_auc, _ = timed(lambda: cluster_bootstrap_ci(
                s[sub], y[sub], pred[sub], gt[sub], clusters[sub], metric="paper_v1.AUROC",
                n_resamples=args.resamples, seed=0), reps)
            t_macro, _ = timed(lambda: cluster_bootstrap_ci(
                s[sub], y[sub], pred[sub], gt[sub], clusters[sub], metric="strict_v1.mAP_macro",
                n_resamples=args.resamples, seed=0), reps)
            print(f"cluster bootstrap CI N={n}: paper_v1.AUROC {t_auc:.2f} s | "
                  f"strict_v1.mAP_macro {t_macro:.2f} s")


if __name__ == "__main__":
    main()
