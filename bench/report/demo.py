"""A small synthetic results directory, written through the store's own API.

For trying ``ravar-bench report`` without training anything, and for the report tests. The
predictions are random but *graded*: each system's scores carry a known amount of label signal
and its boxes a known amount of noise, so the leaderboard order is predictable. Every stored
number is computed from those predictions by :mod:`ravar_bench.metrics`, the suite manifest by
:func:`ravar_bench.runner.manifest` and the job ids by :class:`ravar_bench.jobs.Job`, so the
directory has exactly the shape the runner writes (docs/store.md); nothing here is hand-written
JSON.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ravar_bench.baselines import Baseline, PaperNumbers, Suite, SuiteEntry
from ravar_bench.data.prepared import PreparedMeta, PreparedSplit
from ravar_bench.protocol import Predictions, make_key
from ravar_bench.store import Store


@dataclass
class DemoSystem:
    """One fake model: ``signal`` scales how strongly its scores follow the labels; ``box_noise``
    is the std of its box error (normalised units)."""

    name: str
    title: str
    domain: str = "ours"
    signal: float = 1.0
    box_noise: float = 0.05
    params: dict[str, Any] = field(default_factory=dict)
    paper: PaperNumbers | None = None
    params_total: int = 1_000_000
    gflops: float | str = 1.0
    latency_ms: float = 5.0
    seed_jitter: float = 0.15  # how much a training seed changes the scores
    adapter: str | None = None  # job identity = adapter + params: default "demo:<name>"


DEFAULT_SYSTEMS: tuple[DemoSystem, ...] = (
    DemoSystem("demo_prior", "Prior", "control", signal=0.0, box_noise=0.25, params_total=80,
               gflops=1e-6, latency_ms=0.01),
    DemoSystem("demo_text_only", "Text only", "control", signal=0.15, box_noise=0.2,
               params_total=200_000, gflops=0.01, latency_ms=0.3),
    DemoSystem("demo_small", "Small model", "AAL", signal=0.5, box_noise=0.12,
               params_total=2_000_000, gflops=0.5, latency_ms=2.0),
    DemoSystem("demo_big", "Big model", "VTR", signal=0.9, box_noise=0.06,
               params_total=60_000_000, gflops=20.0, latency_ms=30.0,
               paper=PaperNumbers(source="made-up numbers for the demo", verified=False,
                                  val={"mIoU": 30.0, "mAP": 50.0, "AUROC": 65.0},
                                  test={"mIoU": 31.0, "mAP": 51.0, "AUROC": 66.0})),
    DemoSystem("demo_best", "Best model", "ours", signal=1.2, box_noise=0.04,
               params_total=20_000_000, gflops=5.0, latency_ms=12.0,
               paper=PaperNumbers(source="made-up numbers for the demo", verified=True,
                                  test={"mIoU": 36.42, "mAP": 57.52, "AUROC": 73.95})),
)


def _quiet(fn, *args, **kwargs):
    """Tiny demo splits have classes without negatives; the metrics warn about each, once is
    enough for a demo."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kwargs)


def demo_split(split: str, n_videos: int = 40, clips_per_video: int = 2, per_clip: int = 2,
               seed: int = 0) -> PreparedSplit:
    """A prepared split with AVA-like long-tailed labels and tiny frames (pixels are unused)."""
    rng = np.random.default_rng([seed, sum(map(ord, split))])
    n_clips = n_videos * clips_per_video
    n = n_clips * per_clip
    keys = [make_key(f"v{c // clips_per_video:03d}", 902 + c, p)
            for c in range(n_clips) for p in range(per_clip)]
    prior = np.clip(0.6 * np.arange(1, 81, dtype=np.float64) ** -1.1, 0.0, 0.6)
    prior = rng.permutation(prior)
    labels = (rng.random((n, 80)) < prior).astype(np.uint8)
    labels[labels.sum(1) == 0, int(np.argmax(prior))] = 1
    x1, y1 = rng.uniform(0, 0.5, n), rng.uniform(0, 0.4, n)
    boxes = np.stack([x1, y1, x1 + rng.uniform(0.2, 0.5, n), y1 + rng.uniform(0.3, 0.6, n)], 1)
    k = 2
    return PreparedSplit(
        meta=PreparedMeta(source=f"demo seed={seed}", split=split, fingerprint=f"demo-{seed}",
                          object_classes=["person"]),
        keys=keys, texts=[f"person {i}" for i in range(n)],
        clip_index=np.repeat(np.arange(n_clips), per_clip).astype(np.int32),
        boxes=boxes.astype(np.float32), labels=labels,
        frames=np.zeros((n_clips, 1, 4, 4, 3), np.uint8),
        key_frames=np.zeros((n_clips, 4, 4, 3), np.uint8),
        cand_boxes=np.zeros((n_clips, k, 4), np.float32),
        cand_labels=np.zeros((n_clips, k), np.int16),
        cand_scores=np.zeros((n_clips, k), np.float32),
        cand_mask=np.zeros((n_clips, k), bool))


def _degrade(condition: str) -> float:
    """Signal kept under an evaluation condition (text_swap hurts, severity hurts more)."""
    factor = 1.0
    if condition.startswith("text_swap"):
        factor *= 0.4
    if condition.startswith("location_drop"):
        factor *= 0.8
    if "@" in condition:
        factor *= 1.0 - 0.15 * int(condition.rsplit("@", 1)[1])
    return factor


def demo_predictions(system: DemoSystem, split: PreparedSplit, seed: int,
                     condition: str = "none") -> Predictions:
    rng = np.random.default_rng([seed, sum(map(ord, system.name)), sum(map(ord, split.meta.split)),
                                 sum(map(ord, condition))])
    y = np.asarray(split.labels, dtype=np.float64)
    prior = y.mean(0)
    signal = system.signal * _degrade(condition) * (1 + system.seed_jitter * rng.normal())
    logits = signal * (2 * y - 1) + np.log(prior + 1e-3) + rng.normal(0, 1, y.shape)
    noise = system.box_noise / max(_degrade(condition), 0.3)
    boxes = np.asarray(split.boxes) + rng.normal(0, noise, (len(split), 4))
    return Predictions(list(split.keys), logits.astype(np.float32), boxes.astype(np.float32))


def write_demo_store(out: str | Path, data_dir: str | Path | None = None, *,
                     systems: Sequence[DemoSystem] = DEFAULT_SYSTEMS, seeds: int = 2,
                     suite: str = "demo", title: str = "Demo suite (synthetic predictions)",
                     controls: Sequence[str] = ("none",), perturbations: Sequence[str] = (),
                     severities: Sequence[int] = (1, 2, 3), bootstrap: int = 200,
                     data_seed: int = 0, paper_split: str = "test", n_videos: int = 40,
                     skip_jobs: Sequence[tuple[int, int]] = (),
                     splits: Mapping[str, str | Path] | None = None) -> Store:
    """Write prepared val/test splits to ``data_dir`` (default ``<out>-data`` next to ``out``) and
    one record per system x seed into the store at ``out``. ``splits`` uses existing prepared
    val/test folders instead (e.g. RAVAR-Synth's, whose ``references.json`` the report then
    shows). ``skip_jobs`` lists (entry, seed) pairs left without a record (to test gaps)."""
    from ravar_bench.metrics import METRICS_VERSION, cluster_bootstrap_cis, score_all
    from ravar_bench.data.specs import DataRef
    from ravar_bench.baselines import suite_conditions
    from ravar_bench.jobs import Job
    from ravar_bench.metrics import HEADLINE
    from ravar_bench.runner import manifest

    out = Path(out)
    data = Path(data_dir) if data_dir is not None else out.parent / f"{out.name}-data"
    if splits is not None:
        loaded = {s: PreparedSplit.load(splits[s]) for s in ("val", "test")}
        paths = {s: str(Path(splits[s])) for s in ("val", "test")}
    else:
        loaded = {s: demo_split(s, n_videos=n_videos, seed=data_seed) for s in ("val", "test")}
        paths = {s: str(sp.save(data / s)) for s, sp in loaded.items()}
    ref = DataRef(spec=f"demo:{data_seed}", paths=paths,
                  fingerprint=f"demo{data_seed:012d}",
                  split_fingerprints={s: sp.fingerprint() for s, sp in loaded.items()},
                  sizes={s: len(sp) for s, sp in loaded.items()})
    entries = []
    for i, sys_ in enumerate(systems):
        base = Baseline(name=sys_.name, adapter=sys_.adapter or f"demo:{sys_.name}", domain=sys_.domain, title=sys_.title,
                        path=data / f"{sys_.name}.toml", paper_row=sys_.title if sys_.paper else None,
                        params=dict(sys_.params), paper=sys_.paper)
        entries.append(SuiteEntry(index=i, baseline_name=sys_.name, baseline=base, label=sys_.title))
    st = Suite(name=suite, title=title, path=data / f"{suite}.toml", data=ref.spec, seeds=seeds,
               scale="tiny", paper_split=paper_split, controls=tuple(controls),
               perturbations=tuple(perturbations),
               severities=tuple(severities) if perturbations else (1, 2, 3, 4, 5),
               bootstrap=bootstrap, entries=tuple(entries))
    conditions = tuple(c.name for c in suite_conditions(st))
    jobs = [Job(suite=suite, entry=e.index, label=e.label, baseline=e.baseline.summary(),
                adapter=e.baseline.adapter_for("tiny"), params=e.baseline.params_for("tiny"),
                train={"seed": s, "epochs": 0}, seed=s, data=ref, splits=("val", "test"),
                conditions=conditions, bootstrap=bootstrap)
            for e in entries for s in range(seeds)]
    store = Store(out)
    store.write_suite_manifest(suite, manifest(st, ref, jobs))
    for job in jobs:
        if (job.entry, job.seed) in set(skip_jobs):
            continue
        sys_ = systems[job.entry]
        results: dict[str, dict[str, Any]] = {}
        preds_out = {}
        for split_name, sp in loaded.items():
            results[split_name] = {}
            for cond in conditions:
                preds = demo_predictions(sys_, sp, job.seed, cond)
                metrics = _quiet(score_all, preds.scores, sp.labels, preds.boxes, sp.boxes)
                entry: dict[str, Any] = {"metrics": metrics, "n": len(sp),
                                         "predictions": f"predictions/{split_name}.{cond}.parquet"}
                if bootstrap:
                    entry["ci"] = _quiet(cluster_bootstrap_cis, preds.scores, sp.labels, preds.boxes,
                                                        sp.boxes, sp.video_ids, metrics=HEADLINE,
                                                        n_resamples=bootstrap, seed=job.seed)
                results[split_name][cond] = entry
                preds_out[(split_name, cond)] = (preds, {
                    "data_spec": ref.spec, "data_fingerprint": ref.fingerprint,
                    "split_fingerprint": ref.split_fingerprints[split_name]})
        record = {
            "created": time.time(), "suite": suite, "entry": job.entry, "label": job.label,
            "baseline": job.baseline, "adapter": job.adapter, "params": job.params,
            "scale": "tiny", "train": job.train, "seed": job.seed, "identity": job.identity(),
            "config_hash": job.config_hash, "data": ref.summary(), "splits": list(job.splits),
            "conditions": list(conditions),
            "fit": {"best_epoch": 0, "steps": 0, "train_seconds": 0.0, "history": []},
            "results": results,
            "efficiency": {"params_total": sys_.params_total, "params_trainable": sys_.params_total,
                           "flops_per_sample": sys_.gflops * 1e9 if isinstance(sys_.gflops, float)
                           else sys_.gflops,
                           "latency_ms": sys_.latency_ms * 8, "latency_ms_per_sample": sys_.latency_ms,
                           "batch_size": 8, "device": "cpu: demo"},
            "provenance": {"job_id": job.job_id, "seed": job.seed,
                           "metrics": {"version": METRICS_VERSION}},
        }
        store.commit(job.job_id, record, preds_out)
    return store
