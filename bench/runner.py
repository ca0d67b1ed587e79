"""Suites -> jobs -> records: data specs, job identity, running one job, resuming a suite.

A *job* is one suite entry (a baseline with its resolved parameters) trained with one seed on one
dataset, then evaluated under every condition (controls x perturbations, on val and test). Its
identity is the sha256 of the canonical JSON of everything that changes its numbers (adapter,
parameters, training config, data fingerprint, seed, protocol and metrics versions, evaluation
conditions), so a finished job is found again by any later run and never recomputed unless
asked (``overwrite``). Executors (:mod:`.executors`) decide where jobs run; every one of them
goes through :func:`run_job`, which writes through the atomic store (:mod:`.store`).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .baselines import Suite
from .data.prepared import cache_root
from .store import Store, StoreError, canonical_json, fault_point

#: Bump when the meaning of a job changes (what a job computes or how it is scored), so that old
#: records are not mistaken for new ones.
PROTOCOL_VERSION = "1"
OVERWRITE = ("never", "always", "only-missing")
TRAIN_SPLIT, SELECT_SPLIT = "train", "val"

Progress = Callable[[str, int, int], None]


class RunError(RuntimeError):
    """A run cannot start (bad data spec, bad option); the message says which and why."""


# =========================================================================== data specifications
INDEX_FILE = "ravar-data.json"  # {"spec": ..., "splits": {split: relative path}} in a data folder


@dataclass(frozen=True)
class DataRef:
    """A resolved data spec: prepared split folders (shared by every worker) and fingerprints."""

    spec: str
    paths: dict[str, str]
    fingerprint: str
    split_fingerprints: dict[str, str]
    sizes: dict[str, int]

    def load(self, split: str):
        from .data.prepared import PreparedSplit

        if split not in self.paths:
            raise RunError(f"data {self.spec!r} has no split {split!r} (has {', '.join(self.paths)})")
        return PreparedSplit.load(self.paths[split])

    def summary(self) -> dict[str, Any]:
        return {"spec": self.spec, "fingerprint": self.fingerprint,
                "splits": {s: {"fingerprint": self.split_fingerprints[s], "n": self.sizes[s],
                               "path": self.paths[s]} for s in self.paths}}


def _ref_from_paths(spec: str, paths: dict[str, Path]) -> DataRef:
    from .data.prepared import PreparedSplit

    fps, sizes = {}, {}
    for split, path in sorted(paths.items()):
        s = PreparedSplit.load(path)
        fps[split], sizes[split] = s.fingerprint(), len(s)
    joint = hashlib.sha256(canonical_json(fps).encode()).hexdigest()[:16]
    return DataRef(spec, {k: str(v) for k, v in sorted(paths.items())}, joint, fps, sizes)


def _index_paths(folder: Path) -> dict[str, Path] | None:
    """Split folders of a data folder: from its index file, or ``train/ val/ test/`` children."""
    index = folder / INDEX_FILE
    if index.is_file():
        raw = json.loads(index.read_text())
        return {s: folder / rel for s, rel in raw["splits"].items()}
    found = {s: folder / s for s in ("train", "val", "test") if (folder / s / "meta.json").is_file()}
    return found or None


def _publish(tmp: Path, final: Path) -> None:
    """Move a freshly built data folder into place; if another process won the race, use its."""
    try:
        os.rename(tmp, final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if _index_paths(final) is None:
            raise


def resolve_data(spec: str, progress: bool = True) -> DataRef:
    """Turn a data spec into prepared splits, building (once, cached) what is needed.

    * ``synth:<tiny|small|full>[@seed]`` - RAVAR-Synth, generated under ``$RAVAR_CACHE/synth``;
    * ``refava:<folder>`` - a RefAVA folder, prepared (8 frames, 112 px, correct frame policy)
      under ``$RAVAR_CACHE/refava``;
    * ``<folder>`` - prepared splits: ``train/ val/ test/`` sub-folders (or a ``ravar-data.json``).
    """
    if spec.startswith("synth:"):
        return _resolve_synth(spec, progress)
    if spec.startswith("refava:"):
        return _resolve_refava(spec, progress)
    folder = Path(spec).expanduser()
    if not folder.is_dir():
        raise RunError(f"data {spec!r}: not a folder, and not of the form synth:<size>[@seed] or "
                       "refava:<folder>")
    paths = _index_paths(folder)
    if not paths:
        raise RunError(f"data {spec!r}: {folder} holds no prepared splits (expected train/, val/, "
                       f"test/ each with meta.json, or {INDEX_FILE}); prepare a RefAVA folder with "
                       "`ravar-bench data prepare` or use refava:<folder>")
    return _ref_from_paths(spec, paths)


SYNTH_SIZES = ("tiny", "small", "full")


def _resolve_synth(spec: str, progress: bool) -> DataRef:
    body = spec[len("synth:"):]
    size, _, seed_text = body.partition("@")
    if size not in SYNTH_SIZES:
        raise RunError(f"data {spec!r}: synthetic size must be one of {', '.join(SYNTH_SIZES)}")
    if seed_text and not seed_text.isdigit():
        raise RunError(f"data {spec!r}: the seed after '@' must be a non-negative integer")
    seed = int(seed_text or 0)
    final = cache_root() / "synth" / f"{size}-seed{seed}"
    paths = _index_paths(final) if final.is_dir() else None
    if paths is None:
        try:
            from .data.synth import generate
        except ImportError as exc:
            raise RunError(f"data {spec!r}: the synthetic generator is not available ({exc})") from exc
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".{final.name}.{os.getpid()}.{uuid.uuid4().hex[:6]}"
        try:
            made = _call_generate(generate, size, seed, tmp, progress)
            rel = {s: str(Path(p).resolve().relative_to(tmp.resolve())) for s, p in made.items()}
            (tmp / INDEX_FILE).write_text(json.dumps({"spec": f"synth:{size}@{seed}", "splits": rel}))
            _publish(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        paths = _index_paths(final)
    return _ref_from_paths(f"synth:{size}@{seed}", paths or {})


def _call_generate(generate: Callable[..., Any], size: str, seed: int, out: Path, progress: bool):
    import inspect

    kwargs: dict[str, Any] = {"size": size, "seed": seed, "out": out}
    if "progress" in inspect.signature(generate).parameters:
        kwargs["progress"] = progress
    made = generate(**kwargs)
    if not isinstance(made, dict) or not made:
        raise RunError(f"synth generator returned {made!r}; expected {{split: prepared folder}}")
    return made


def _resolve_refava(spec: str, progress: bool) -> DataRef:
    from .data.prepare import prepare_refava, prepared_path

    root = Path(spec[len("refava:"):]).expanduser()
    if not root.is_dir():
        raise RunError(f"data {spec!r}: {root} is not a folder")
    base = cache_root() / "refava"
    paths = {}
    for split in ("train", "val", "test"):
        out = prepared_path(base, root, split)
        prepare_refava(root, split, out, progress=progress)  # reuses an up-to-date cache
        paths[split] = out
    return _ref_from_paths(f"refava:{root.resolve()}", paths)


# ================================================================================= conditions
@dataclass(frozen=True)
class Condition:
    """One evaluation condition: a control plus an optional perturbation at a severity."""

    control: str = "none"
    perturbation: str | None = None
    severity: int | None = None

    @property
    def name(self) -> str:
        if self.perturbation is None:
            return self.control
        pert = f"{self.perturbation}@{self.severity}"
        return pert if self.control == "none" else f"{self.control}+{pert}"

    @classmethod
    def parse(cls, name: str) -> "Condition":
        control, _, pert = name.partition("+") if "+" in name else (
            ("none", "", name) if "@" in name else (name, "", ""))
        if not pert:
            return cls(control)
        pname, _, sev = pert.partition("@")
        return cls(control, pname, int(sev))

    def build(self):
        """(Controls, FrameTransform or None) for the batch loader."""
        from .data.batches import Controls
        from .data.perturb import get_perturbation

        perturb = get_perturbation(self.perturbation, self.severity) if self.perturbation else None
        return Controls.parse(self.control), perturb


def suite_conditions(suite: Suite) -> list[Condition]:
    """Every control, clean and under every perturbation x severity (controls x perturbations)."""
    out = [Condition(c) for c in suite.controls]
    for control in suite.controls:
        for pert in suite.perturbations:
            for sev in suite.severities:
                out.append(Condition(control, pert, sev))
    return out


# ======================================================================================== jobs
@dataclass(frozen=True)
class Job:
    """Everything a worker needs to run one job, and nothing it does not (plain data only)."""

    suite: str
    entry: int
    label: str
    baseline: dict[str, Any]  # Baseline.summary()
    adapter: str
    params: dict[str, Any]
    train: dict[str, Any]  # full TrainConfig as a dict (seed included)
    seed: int
    data: DataRef
    splits: tuple[str, ...]
    conditions: tuple[str, ...]
    bootstrap: int = 1000
    efficiency: bool = True
    scale: str = "tiny"

    def identity(self) -> dict[str, Any]:
        """What the job id hashes. ``device`` is left out on purpose: where a job ran is
        provenance, so a CPU resume does not redo GPU jobs (and vice versa)."""
        from .metrics import METRICS_VERSION

        train = {k: v for k, v in self.train.items() if k != "device"}
        return {"protocol": PROTOCOL_VERSION, "metrics_version": METRICS_VERSION,
                "adapter": self.adapter, "params": self.params, "train": train, "seed": self.seed,
                "data": self.data.fingerprint,
                "eval": {"splits": list(self.splits), "conditions": list(self.conditions),
                         "bootstrap": self.bootstrap}}

    @property
    def config_hash(self) -> str:
        return hashlib.sha256(canonical_json(json.loads(json.dumps(self.identity()))).encode()).hexdigest()

    @property
    def job_id(self) -> str:
        return self.config_hash[:16]


def resolve_train(suite: Suite, entry, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """TrainConfig for an entry: defaults < baseline [train] < suite [train] < entry train <
    command-line overrides. The suite, being the experiment, has the last word over the baseline."""
    from .train import TrainConfig

    merged = {**entry.baseline.train, **suite.train, **entry.train, **(extra or {})}
    where = f"{suite.path}: entries[{entry.index}] ({entry.baseline_name}) train"
    return asdict(TrainConfig.from_dict(merged, where=where))


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return not (isinstance(value, float) and value != value)
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return False


def resolve_params(adapter: str, params: dict[str, Any]) -> dict[str, Any]:
    """The adapter's parameters with its signature defaults filled in, so that a changed default
    changes the job identity (a default that is not plain data is left to the adapter)."""
    import inspect

    from .adapters.registry import get_adapter

    resolved = {name: list(p.default) if isinstance(p.default, tuple) else p.default
                for name, p in get_adapter(adapter).parameters().items()
                if p.default is not inspect.Parameter.empty and _plain(p.default)}
    resolved.update(params)
    return dict(sorted(resolved.items()))


def expand(suite: Suite, data: DataRef, seeds: int | None = None,
           train_overrides: dict[str, Any] | None = None) -> list[Job]:
    """Suite entries x seeds on one dataset -> jobs (deduplicated by identity, in suite order)."""
    n_seeds = suite.seeds if seeds is None else seeds
    if n_seeds < 1:
        raise RunError(f"--seeds must be >= 1, got {n_seeds}")
    conditions = tuple(c.name for c in suite_conditions(suite))
    jobs, seen = [], set()
    for entry in suite.entries:
        base_train = resolve_train(suite, entry, train_overrides)
        adapter = entry.baseline.adapter_for(suite.scale)
        params = resolve_params(adapter, entry.baseline.params_for(suite.scale, entry.params))
        for s in range(n_seeds):
            seed = int(base_train["seed"]) + s
            train = {**base_train, "seed": seed, "betas": list(base_train["betas"])}
            job = Job(suite=suite.name, entry=entry.index, label=entry.label,
                      baseline=entry.baseline.summary(), adapter=adapter,
                      params=params, train=train, seed=seed, data=data, splits=suite.splits,
                      conditions=conditions, bootstrap=suite.bootstrap, efficiency=suite.efficiency,
                      scale=suite.scale)
            if job.job_id not in seen:
                seen.add(job.job_id)
                jobs.append(job)
    return jobs


def manifest(suite: Suite, data: DataRef, jobs: Sequence[Job]) -> dict[str, Any]:
    """The suite manifest stored as ``suites/<name>.json`` (see docs/store.md)."""
    from .provenance import iso

    entries = []
    for entry in suite.entries:
        entries.append({
            "index": entry.index, "label": entry.label, "baseline": entry.baseline.summary(),
            "params": entry.baseline.params_for(suite.scale, entry.params),
            "jobs": [{"seed": j.seed, "job_id": j.job_id} for j in jobs if j.entry == entry.index],
        })
    return {"format": "ravar-bench-suite", "version": 1, "suite": suite.name, "title": suite.title,
            "description": suite.description, "paper_split": suite.paper_split, "scale": suite.scale,
            "data": data.summary(), "seeds": sorted({j.seed for j in jobs}), "splits": list(suite.splits),
            "controls": list(suite.controls), "perturbations": list(suite.perturbations),
            "severities": list(suite.severities) if suite.perturbations else [],
            "conditions": [c.name for c in suite_conditions(suite)], "bootstrap": suite.bootstrap,
            "entries": entries, "missing_baselines": list(suite.missing), "written": iso(time.time())}


# ================================================================================== one job
@dataclass
class JobOutcome:
    job_id: str
    status: str  # done | skipped | busy | failed
    label: str = ""
    seed: int = 0
    seconds: float = 0.0
    error: str | None = None
    owner: dict[str, Any] | None = None


def _needs_run(store: Store, job: Job, overwrite: str, run_started: float) -> bool:
    if not store.has(job.job_id):
        return True
    if overwrite == "always":
        try:
            return float(store.record(job.job_id).get("created", 0)) < run_started
        except (OSError, ValueError, KeyError, TypeError, StoreError):  # unreadable record: redo it
            return True
    if overwrite == "only-missing":
        return bool(store.verify(job.job_id))
    return False


def run_job(job: Job, out: str | Path, overwrite: str = "never", run_started: float | None = None,
            progress: Progress | None = None) -> JobOutcome:
    """Run one job end to end and commit its record, unless it is done or being done elsewhere.

    Safe to call from any process (local loop, Ray task, torchrun rank): the decision to run is
    taken under the job's lock, on rank 0 when distributed, and broadcast to the other ranks."""
    from . import checkpoint, distributed

    if overwrite not in OVERWRITE:
        raise RunError(f"--overwrite must be one of {', '.join(OVERWRITE)}, got {overwrite!r}")
    run_started = time.time() if run_started is None else run_started
    dist = distributed.current()
    store = Store(out) if dist.is_main else None
    lock, outcome = None, JobOutcome(job.job_id, "done", job.label, job.seed)
    decision = 1
    if store is not None:
        if not _needs_run(store, job, overwrite, run_started):
            decision = 0
        else:
            lock = store.try_lock(job.job_id)
            if lock is None:
                decision, outcome.owner = 2, store.lock_owner(job.job_id)
            elif not _needs_run(store, job, overwrite, run_started):  # finished while we looked
                lock.release()
                lock, decision = None, 0
    decision = distributed.broadcast_int(decision)
    if decision == 0:
        outcome.status = "skipped"
        return outcome
    if decision == 2:
        outcome.status = "busy"
        return outcome
    started = time.time()
    try:
        if store is not None:
            store.log_event("start", job.job_id, label=job.label, seed=job.seed)
        record, predictions, ckpt = _compute(job, progress, started)
        if store is not None:
            store.commit(job.job_id, record, predictions, replace=True,
                         extra_files={checkpoint.CHECKPOINT_FILE: lambda path: checkpoint.write(ckpt, path)})
            store.log_event("done", job.job_id, label=job.label, seed=job.seed,
                            seconds=round(time.time() - started, 3))
            fault_point("after_job")
    except Exception as exc:  # one broken job must not end the suite; the failure is recorded
        outcome.status, outcome.error = "failed", f"{type(exc).__name__}: {exc}"
        if store is not None:
            store.write_failure(job.job_id, {"job_id": job.job_id, "label": job.label, "seed": job.seed,
                                             "baseline": job.baseline["name"], "error": outcome.error,
                                             "traceback": traceback.format_exc(), "time": time.time()})
            store.log_event("fail", job.job_id, error=outcome.error)
    finally:
        if lock is not None:
            lock.release()
        distributed.barrier()
    outcome.seconds = time.time() - started
    return outcome


#: Torch threads of every job. Float reductions depend on the thread count, so a published number
#: must not: each job runs on one thread (CPU jobs are small; parallelism comes from ``--jobs N``).
JOB_THREADS = 1


def reads_person_stage(job: Job) -> bool:
    """Whether the job's model reads the person stage (its adapter asks for the features, or a
    stream-fusion model runs at size="person")."""
    from .adapters.registry import get_adapter

    cls = get_adapter(job.adapter).cls
    return "person_features" in getattr(cls, "head_inputs", frozenset()) or job.params.get("size") == "person"


def person_stage_provenance(job: Job) -> dict[str, Any]:
    """The person-stage config and weights identity, for jobs that read it."""
    from .data.backbones import BACKBONES
    from .data.person_features import DEFAULT_STAGE, STAGE_VERSION

    if not reads_person_stage(job):
        return {}
    return {"person_stage": {**asdict(DEFAULT_STAGE), "version": STAGE_VERSION,
                             "weights": BACKBONES[DEFAULT_STAGE.backbone].weights_id()}}


def warm_person_features(path: str) -> str:
    """Compute (or find) the person-stage cache of one prepared split: the first step of a pool."""
    from .data.person_features import features_for
    from .data.prepared import PreparedSplit

    return features_for(PreparedSplit.load(path), progress=False).key


def _compute(job: Job, progress: Progress | None, started: float):
    from .data.person_features import torch_threads

    with torch_threads(JOB_THREADS):
        return _compute_pinned(job, progress, started)


def _compute_pinned(job: Job, progress: Progress | None, started: float):
    """Train, evaluate under every condition, measure; return (record, predictions, checkpoint)."""
    from . import checkpoint, distributed, provenance
    from .adapters.registry import get_adapter
    from .data.batches import dataset_info
    from .train import FitResult, TrainConfig, evaluate, fit, set_seed

    cfg = TrainConfig.from_dict(job.train)
    splits = {name: job.data.load(name) for name in dict.fromkeys((TRAIN_SPLIT, SELECT_SPLIT, *job.splits))}
    info = dataset_info(splits[TRAIN_SPLIT], name=job.data.spec)
    set_seed(cfg.seed)  # model initialisation is part of the seeded run
    model = get_adapter(job.adapter).build(info, job.params, where=f"baseline {job.baseline['name']!r}")
    fitted: FitResult = fit(model, splits[TRAIN_SPLIT], splits[SELECT_SPLIT], cfg, progress)
    ckpt = checkpoint.payload(  # the selected state, before evaluation touches anything
        model, job_id=job.job_id, config_hash=job.config_hash, protocol=PROTOCOL_VERSION,
        adapter=job.adapter, params=job.params, seed=job.seed, train=job.train, info=info,
        data=checkpoint.data_summary(job.data.spec, splits[TRAIN_SPLIT].meta))

    results: dict[str, dict[str, Any]] = {}
    predictions = {}
    total, done = len(job.splits) * len(job.conditions), 0
    for split_name in job.splits:
        split = splits[split_name]
        results[split_name] = {}
        for cond_name in job.conditions:
            controls, perturb = Condition.parse(cond_name).build()
            # the selection split's clean features were already encoded by fit: reuse them
            cache = fitted.val_cache if (split_name == SELECT_SPLIT and cond_name == "none") else None
            preds, metrics = evaluate(model, split, cfg, controls, perturb, cache)
            entry: dict[str, Any] = {"metrics": metrics, "n": len(split),
                                     "predictions": f"predictions/{split_name}.{cond_name}.parquet"}
            if job.bootstrap:
                entry["ci"] = _bootstrap(preds, split, job.bootstrap, cfg.seed)
            results[split_name][cond_name] = entry
            predictions[(split_name, cond_name)] = (preds, {
                "data_spec": job.data.spec, "data_fingerprint": job.data.fingerprint,
                "split_fingerprint": job.data.split_fingerprints[split_name]})
            done += 1
            if progress:
                progress("eval", done, total)
        if split_name == SELECT_SPLIT:
            fitted.val_cache = None  # free its memory before the next split is encoded

    efficiency: dict[str, Any] | None = None
    if job.efficiency and distributed.current().is_main:
        efficiency = _efficiency(model, splits[job.splits[-1]], cfg)
    ended = time.time()
    record = {
        "created": ended,
        "suite": job.suite, "entry": job.entry, "label": job.label,
        "baseline": job.baseline, "adapter": job.adapter, "params": job.params, "scale": job.scale,
        "train": job.train, "seed": job.seed, "identity": job.identity(), "config_hash": job.config_hash,
        "data": job.data.summary(), "splits": list(job.splits), "conditions": list(job.conditions),
        "fit": {"best_epoch": fitted.best_epoch, "steps": fitted.steps,
                "train_seconds": round(fitted.train_seconds, 3), "history": fitted.history},
        "results": results, "efficiency": efficiency, "checkpoint": checkpoint.summary(ckpt),
        "provenance": provenance.stamp(
            job_id=job.job_id, config_hash=job.config_hash, seed=job.seed,
            data_fingerprint=job.data.fingerprint, device=distributed.resolve_device(cfg.device),
            started=started, ended=ended, world_size=distributed.current().world_size,
            extra={"adapter_source": adapter_source(job.adapter), "torch_threads": JOB_THREADS,
                   **person_stage_provenance(job)}),
    }
    return record, predictions, ckpt


HEADLINE = ("paper_v1.mIoU", "paper_v1.mAP", "paper_v1.AUROC")


def adapter_source(adapter: str) -> dict[str, Any]:
    """Module and sha256 of the source file that defines ``adapter``: the job identity leaves code
    out (editing a file must not silently invalidate a results directory), so records carry this
    to tell which finished jobs an edit has made outdated."""
    import inspect

    from .adapters.registry import get_adapter
    from .store import sha256_file

    cls = get_adapter(adapter).cls
    try:
        path = inspect.getsourcefile(cls)
    except TypeError:
        path = None
    return {"module": cls.__module__, "sha256": sha256_file(Path(path)) if path else None}


def _bootstrap(preds, split, n_resamples: int, seed: int) -> dict[str, Any]:
    """Cluster-bootstrap CIs of the headline metrics; clusters are video ids."""
    import warnings

    import numpy as np

    from .metrics import cluster_bootstrap_cis

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the point estimate already warned once
        return cluster_bootstrap_cis(preds.scores, np.asarray(split.labels), preds.boxes,
                                     np.asarray(split.boxes), split.video_ids, metrics=HEADLINE,
                                     n_resamples=n_resamples, seed=seed)


def _efficiency(model, split, cfg) -> dict[str, Any]:
    import numpy as np

    from .data.batches import BatchLoader

    try:
        from .efficiency import measure
    except ImportError as exc:
        return {"error": f"ravar_bench.efficiency is not importable: {exc}"}
    rows = np.arange(min(8, len(split)))
    batch = BatchLoader(split, model.inputs, max(1, len(rows))).make_batch(rows)
    try:
        return measure(model, batch)
    except Exception as exc:  # efficiency is a side measurement; never lose a trained job to it
        return {"error": f"{type(exc).__name__}: {exc}"}


# ================================================================================ run a suite
@dataclass
class RunSummary:
    suite: str
    out: str
    jobs: int
    outcomes: list[JobOutcome] = field(default_factory=list)
    seconds: float = 0.0
    planned: list[dict[str, Any]] = field(default_factory=list)  # --dry-run
    outdated: list[str] = field(default_factory=list)  # kept jobs whose adapter source changed since

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def failed(self) -> list[JobOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    def line(self) -> str:
        parts = [f"{self.count(s)} {s}" for s in ("done", "skipped", "failed", "busy") if self.count(s)]
        return (f"suite {self.suite}: {self.jobs} jobs, {', '.join(parts) or 'nothing to do'} "
                f"in {self.seconds:.1f} s -> {self.out}")


def job_status(store: Store, job: Job) -> str:
    if store.has(job.job_id):
        return "done"
    owner = store.lock_owner(job.job_id)
    return "running" if owner is not None else "pending"


def run_suite(suite: Suite, data: DataRef, out: str | Path, *, seeds: int | None = None,
              executor: str = "local", workers: int = 1, ray_address: str | None = None, ray_cpus: int | None = None,
              ray_job_cpus: float = 1.0, ray_job_gpus: float = 0.0, overwrite: str = "never", limit_jobs: int | None = None, dry_run: bool = False,
              train_overrides: dict[str, Any] | None = None, progress: bool = True,
              wait_for_others: bool = True) -> RunSummary:
    """Expand ``suite`` on ``data`` and run its jobs that are not done yet; resumable at any point."""
    from . import distributed
    from .executors import get_executor

    if overwrite not in OVERWRITE:
        raise RunError(f"--overwrite must be one of {', '.join(OVERWRITE)}, got {overwrite!r}")
    if limit_jobs is not None and limit_jobs < 0:
        raise RunError(f"--limit-jobs must be >= 0, got {limit_jobs}")
    started = time.time()
    jobs = expand(suite, data, seeds, train_overrides)
    summary = RunSummary(suite.name, str(out), len(jobs))
    dist = distributed.current()
    if dry_run:  # look, touch nothing (not even create the results directory)
        probe = Store(out, create=False) if (Path(out) / "store.json").is_file() else None
        summary.planned = [{"entry": j.entry, "label": j.label, "baseline": j.baseline["name"],
                            "seed": j.seed, "job_id": j.job_id,
                            "status": job_status(probe, j) if probe else "pending"} for j in jobs]
        return summary
    store = Store(out) if dist.is_main else None
    if store is not None:
        store.recover()
        store.write_suite_manifest(suite.name, manifest(suite, data, jobs))
    todo = jobs
    if store is not None and overwrite == "never":
        todo = [j for j in jobs if not store.has(j.job_id)]
        kept = [j for j in jobs if store.has(j.job_id)]
        summary.outcomes += [JobOutcome(j.job_id, "skipped", j.label, j.seed) for j in kept]
        summary.outdated = _outdated(store, kept)
    if limit_jobs is not None:
        todo = todo[:limit_jobs]
    if dist.distributed:  # every rank must walk the same job list: rank 0's
        if executor != "local":
            raise RunError("under torchrun only the local executor is supported (one job at a time, "
                           "all ranks together)")
        n = distributed.broadcast_int(len(todo) if dist.is_main else 0)
        todo = _agree(todo if dist.is_main else [], jobs, n)
    if workers > 1 and dist.distributed:
        raise RunError("--jobs N runs N local processes; under torchrun use --jobs 1")
    runner = get_executor(executor, ray_address=ray_address, ray_cpus=ray_cpus,
                          ray_job_cpus=ray_job_cpus, ray_job_gpus=ray_job_gpus, workers=workers)
    summary.outcomes += runner.run(todo, Path(out), overwrite=overwrite, run_started=started,
                                   progress=progress and dist.is_main, wait_for_others=wait_for_others)
    summary.seconds = time.time() - started
    return summary


def _outdated(store: Store, kept: list[Job]) -> list[str]:
    """Labels of kept jobs whose record was made from another version of the adapter's source."""
    current: dict[str, Any] = {}
    out = []
    for job in kept:
        if job.adapter not in current:
            current[job.adapter] = adapter_source(job.adapter)["sha256"]
        try:
            made = store.record(job.job_id)["provenance"].get("adapter_source", {}).get("sha256")
        except (OSError, ValueError, KeyError, AttributeError, StoreError):  # no usable stamp: skip
            continue
        if made and current[job.adapter] and made != current[job.adapter]:
            out.append(f"{job.label} seed {job.seed}")
    return out


def _agree(todo: list[Job], jobs: list[Job], n: int) -> list[Job]:
    """Under torchrun: rank 0 chose ``todo``; broadcast the chosen indices so all ranks agree."""
    from . import distributed

    index = {j.job_id: i for i, j in enumerate(jobs)}
    chosen = [index[j.job_id] for j in todo] if distributed.current().is_main else [0] * n
    return [jobs[distributed.broadcast_int(i)] for i in chosen[:n]]
