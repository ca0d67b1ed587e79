"""Run a suite: expand it into jobs (:mod:`.jobs`) on resolved data (:mod:`.data.specs`), skip
the finished ones, and hand the rest to an executor (:mod:`.executors`); resumable at any point.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import distributed, provenance
from .baselines import Suite, suite_conditions
from .data.specs import DataRef
from .executors import get_executor
from .jobs import (OVERWRITE, Job, JobOutcome, RunError, adapter_source, job_status, person_stage_identity,
                   reads_person_stage, resolve_params, resolve_train)
from .store import Store, StoreError

log = logging.getLogger(__name__)


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
        stage = person_stage_identity() if reads_person_stage(adapter, params) else {}
        for s in range(n_seeds):
            seed = int(base_train["seed"]) + s
            train = {**base_train, "seed": seed, "betas": list(base_train["betas"])}
            job = Job(suite=suite.name, entry=entry.index, label=entry.label,
                      baseline=entry.baseline.summary(), adapter=adapter,
                      params=params, train=train, seed=seed, data=data, splits=suite.splits,
                      conditions=conditions, bootstrap=suite.bootstrap, efficiency=suite.efficiency,
                      scale=suite.scale, person_stage=stage)
            if job.job_id not in seen:
                seen.add(job.job_id)
                jobs.append(job)
    return jobs


def manifest(suite: Suite, data: DataRef, jobs: Sequence[Job]) -> dict[str, Any]:
    """The suite manifest stored as ``suites/<name>.json`` (see docs/store.md)."""
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
            "entries": entries, "missing_baselines": list(suite.missing), "written": provenance.iso(time.time())}


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


def run_suite(suite: Suite, data: DataRef, out: str | Path, *, seeds: int | None = None,
              executor: str = "local", workers: int = 1, ray_address: str | None = None, ray_cpus: int | None = None,
              ray_job_cpus: float = 1.0, ray_job_gpus: float = 0.0, overwrite: str = "never", limit_jobs: int | None = None, dry_run: bool = False,
              train_overrides: dict[str, Any] | None = None, progress: bool = True,
              wait_for_others: bool = True) -> RunSummary:
    """Expand ``suite`` on ``data`` and run its jobs that are not done yet; resumable at any point."""
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
    log.info("suite %s on %s: %d jobs, %d kept, %d to run (%s executor, %d worker(s))", suite.name, data.spec,
             len(jobs), len(jobs) - len(todo), len(todo), executor, workers)
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
    index = {j.job_id: i for i, j in enumerate(jobs)}
    chosen = [index[j.job_id] for j in todo] if distributed.current().is_main else [0] * n
    return [jobs[distributed.broadcast_int(i)] for i in chosen[:n]]
