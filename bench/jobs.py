"""One job: its identity, and running it (build, fit, evaluate every condition, bootstrap,
efficiency, provenance) into one atomic record.

A *job* is one suite entry (a baseline with its resolved parameters) trained with one seed on one
dataset, then evaluated under every condition (controls x perturbations, on val and test). Its
identity is the sha256 of the canonical JSON of everything that changes its numbers (adapter,
parameters, training config, data fingerprint, seed, protocol and metrics versions, evaluation
conditions), so a finished job is found again by any later run and never recomputed unless
asked (``overwrite``). Every executor (:mod:`.executors`) goes through :func:`run_job`, which
writes through the atomic store (:mod:`.store`); :mod:`.runner` only expands suites into jobs.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import checkpoint, distributed, provenance
from .baselines import Condition, Suite
from .data.specs import DataRef
from .protocol import PROTOCOL_VERSION, canonical_json
from .store import Store, StoreError, fault_point

OVERWRITE = ("never", "always", "only-missing")
TRAIN_SPLIT, SELECT_SPLIT = "train", "val"

Progress = Callable[[str, int, int], None]


class RunError(RuntimeError):
    """A run cannot start (bad option, bad job); the message says which and why."""


# ======================================================================================== identity
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
    person_stage: dict[str, Any] = field(default_factory=dict)  # {} when the model reads none

    def identity(self) -> dict[str, Any]:
        """What the job id hashes. ``device`` is left out on purpose: where a job ran is
        provenance, so a CPU resume does not redo GPU jobs (and vice versa). The person stage
        changes the features a model sees, so it is part of the identity of the jobs that read it."""
        from .metrics import METRICS_VERSION

        train = {k: v for k, v in self.train.items() if k != "device"}
        stage = {"person_stage": self.person_stage} if self.person_stage else {}
        return {"protocol": PROTOCOL_VERSION, "metrics_version": METRICS_VERSION,
                "adapter": self.adapter, "params": self.params, "train": train, "seed": self.seed,
                "data": self.data.fingerprint, **stage,
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
    from .train import TrainConfig, config_dict

    merged = {**entry.baseline.train, **suite.train, **entry.train, **(extra or {})}
    where = f"{suite.path}: entries[{entry.index}] ({entry.baseline_name}) train"
    return config_dict(TrainConfig.from_dict(merged, where=where))


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


# ================================================================================= running it
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


def reads_person_stage(adapter: str, params: dict[str, Any]) -> bool:
    """Whether a model reads the person stage (its adapter asks for the features, or a
    stream-fusion model runs at size="person")."""
    from .adapters.registry import get_adapter

    cls = get_adapter(adapter).cls
    return "person_features" in getattr(cls, "head_inputs", frozenset()) or params.get("size") == "person"


@functools.lru_cache(maxsize=None)
def person_stage_identity() -> dict[str, Any]:
    """The person stage as a job identity sees it: config, version and the weights' bytes."""
    from .data.backbones import BACKBONES
    from .data.person_features import DEFAULT_STAGE, STAGE_VERSION

    return {**asdict(DEFAULT_STAGE), "version": STAGE_VERSION,
            "weights": BACKBONES[DEFAULT_STAGE.backbone].weights_id()}


def warm_person_features(path: str) -> str:
    """Compute (or find) the person-stage cache of one prepared split: the first step of a pool."""
    from .data.person_features import features_for
    from .data.prepared import PreparedSplit

    return features_for(PreparedSplit.load(path), progress=False).key


@contextlib.contextmanager
def deterministic_kernels() -> Iterator[None]:
    """Torch's deterministic kernels where it offers them (warning, not failing, where an op has
    none), cuDNN without autotuning, and cuBLAS's fixed workspace; the caller's settings come back
    after the job."""
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
    before = (torch.are_deterministic_algorithms_enabled(),
              torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before[2], before[3]


def _compute(job: Job, progress: Progress | None, started: float):
    from .data.person_features import torch_threads

    with torch_threads(JOB_THREADS), deterministic_kernels():
        return _compute_pinned(job, progress, started)


def _compute_pinned(job: Job, progress: Progress | None, started: float):
    """Train, evaluate under every condition, measure; return (record, predictions, checkpoint)."""
    from .adapters.registry import get_adapter
    from .data.batches import dataset_info
    from .metrics import headline_cis
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
                entry["ci"] = headline_cis(preds.scores, np.asarray(split.labels), preds.boxes,
                                           np.asarray(split.boxes), split.video_ids, job.bootstrap, cfg.seed)
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
                   "deterministic_algorithms": True,
                   **({"person_stage": job.person_stage} if job.person_stage else {})}),
    }
    return record, predictions, ckpt


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


def _efficiency(model, split, cfg) -> dict[str, Any]:
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


def job_status(store: Store, job: Job) -> str:
    if store.has(job.job_id):
        return "done"
    owner = store.lock_owner(job.job_id)
    return "running" if owner is not None else "pending"
