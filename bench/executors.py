"""Where jobs run: in this process one after another (``local``) or as Ray tasks (``ray``).

Both executors call :func:`ravar_bench.jobs.run_job`, which takes the job's lock, trains,
evaluates and commits the record atomically, so the store is correct whichever process writes it,
and a local runner and a Ray cluster may even share one results directory. A job that another
process is running (``busy``) is waited for at the end, and taken over if its owner dies.

Other executors (a batch scheduler, a cloud queue) plug in by name (:data:`EXECUTORS`, chosen with
``--executor``): ``@register_executor("name")`` on a factory, or an entry point of the group
``ravar_bench.executors``. The factory takes the run's options as keywords (``workers``,
``ray_address``, ``ray_cpus``, ``ray_job_cpus``, ``ray_job_gpus``; accept ``**options`` for the
rest) and returns an :class:`Executor`; each job must go through :func:`~ravar_bench.jobs.run_job`,
which keeps the store correct.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from .jobs import Job, JobOutcome, RunError, run_job, warm_person_features
from .logs import configure_from_env
from .registry import Registry
from .store import Store

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "ravar_bench.executors"


class Executor(Protocol):
    """What the runner needs of an executor: run the jobs, return one outcome per job."""

    name: str

    def run(self, jobs: Sequence[Job], out: Path, *, overwrite: str, run_started: float,
            progress: bool = True, wait_for_others: bool = True) -> list[JobOutcome]: ...


ExecutorFactory = Callable[..., Executor]
F = TypeVar("F", bound=ExecutorFactory)


def make_executor(name: str, factory: object, origin: str) -> ExecutorFactory:
    """The registry's entry: the factory itself, once it is known to be callable."""
    if not callable(factory):
        raise RunError(f"executor {name!r} ({origin}) is not callable: {factory!r}")
    return factory  # type: ignore[return-value]


#: Every executor: ``local`` and ``ray`` below (registered when this module is imported) and the
#: ``ravar_bench.executors`` entry points. Reads like the tuple of names it replaced.
EXECUTORS: Registry[ExecutorFactory] = Registry(
    "executor", package=__name__, group=ENTRY_POINT_GROUP, error=RunError, make=make_executor)


def register_executor(name: str) -> Callable[[F], F]:
    """Function decorator: register an executor factory under ``name`` (the ``--executor`` value)."""
    return EXECUTORS.register(name)


def get_executor(name: str, *, ray_address: str | None = None, ray_cpus: int | None = None,
                 ray_job_cpus: float = 1.0, ray_job_gpus: float = 0.0, workers: int = 1) -> Executor:
    """The executor registered under ``name``, built with the run's options."""
    if workers < 1:
        raise RunError(f"--jobs must be >= 1, got {workers}")
    return EXECUTORS.get(name)(workers=workers, ray_address=ray_address, ray_cpus=ray_cpus,
                               ray_job_cpus=ray_job_cpus, ray_job_gpus=ray_job_gpus)


@register_executor("local")
def local_executor(*, workers: int = 1, **options: Any) -> Executor:
    """Jobs in this process (``--jobs 1``) or in N local worker processes (``--jobs N``)."""
    return LocalExecutor() if workers == 1 else ProcessPoolExecutor(workers)


@register_executor("ray")
def ray_executor(*, ray_address: str | None = None, ray_cpus: int | None = None, ray_job_cpus: float = 1.0,
                 ray_job_gpus: float = 0.0, **options: Any) -> Executor:
    """One Ray task per job, on a cluster (``--ray-address``) or a private local instance."""
    if ray_job_cpus <= 0 or ray_job_gpus < 0:
        raise RunError(f"--ray-job-cpus must be > 0 and --ray-job-gpus >= 0, got {ray_job_cpus}, {ray_job_gpus}")
    return RayExecutor(address=ray_address, num_cpus=ray_cpus, cpus_per_job=ray_job_cpus,
                       gpus_per_job=ray_job_gpus)


def _bar(total: int, enabled: bool, desc: str, position: int = 0, leave: bool = True):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="job" if position == 0 else "step", position=position,
                leave=leave, disable=not enabled, dynamic_ncols=True)


class _JobProgress:
    """Per-job progress: one inner bar per phase (training steps, then evaluation conditions)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled, self.phase, self.bar = enabled, None, None

    def __call__(self, phase: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if phase != self.phase or self.bar is None:
            self.close()
            self.phase = phase
            self.bar = _bar(total, True, f"  {phase}", position=1, leave=False)
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _wait_for_busy(busy: list[Job], out: Path, overwrite: str, run_started: float,
                   poll: float = 2.0) -> list[JobOutcome]:
    """Wait until jobs held by other processes are recorded; run them here if an owner dies."""
    store = Store(out)
    owners = sorted({f"{o.get('host')}:{o.get('pid')}" for j in busy
                     if (o := store.lock_owner(j.job_id))})
    log.info("waiting for %d job(s) that other runners are doing (%s); they are taken over here if "
             "their owner dies", len(busy), ", ".join(owners) or "?")
    outcomes, waiting = [], list(busy)
    while waiting:
        still = []
        for job in waiting:
            if store.has(job.job_id):
                outcomes.append(JobOutcome(job.job_id, "skipped", job.label, job.seed,
                                           error="done by another runner"))
                continue
            outcome = run_job(job, out, overwrite, run_started)  # takes the lock if it is free/stale
            if outcome.status == "busy":
                still.append(job)
            else:
                outcomes.append(outcome)
                report(outcome)
        waiting = still
        if waiting:
            time.sleep(poll)
    return outcomes


def report(outcome: JobOutcome) -> None:
    """One log line per finished job: the progress record where no bar is shown (CI, pipes, files)."""
    if outcome.status == "failed":
        log.warning("FAILED %s seed %d (%s): %s", outcome.label, outcome.seed, outcome.job_id, outcome.error)
    elif outcome.status == "done":
        log.info("done %s seed %d (%s) in %.1f s", outcome.label, outcome.seed, outcome.job_id, outcome.seconds)
    else:
        log.debug("%s %s seed %d (%s)", outcome.status, outcome.label, outcome.seed, outcome.job_id)


def _settle_busy(outcomes: list[JobOutcome], busy: list[Job], out: Path, overwrite: str, run_started: float,
                 wait: bool) -> list[JobOutcome]:
    """Every executor's last step: wait for (or take over) jobs other runners held, or report them busy."""
    if busy and wait:
        return outcomes + _wait_for_busy(busy, out, overwrite, run_started)
    return outcomes + [JobOutcome(j.job_id, "busy", j.label, j.seed) for j in busy]


class LocalExecutor:
    """Jobs one after another in this process (all ranks together under torchrun)."""

    name = "local"

    def run(self, jobs: Sequence[Job], out: Path, *, overwrite: str, run_started: float,
            progress: bool = True, wait_for_others: bool = True) -> list[JobOutcome]:
        from . import distributed

        outcomes, busy = [], []
        bar = _bar(len(jobs), progress, "jobs")
        try:
            for job in jobs:
                bar.set_postfix_str(f"{job.label} seed {job.seed}", refresh=True)
                inner = _JobProgress(progress)
                try:
                    outcome = run_job(job, out, overwrite, run_started, progress=inner)
                finally:
                    inner.close()
                if outcome.status == "busy":
                    busy.append(job)
                else:
                    outcomes.append(outcome)
                report(outcome)
                bar.update(1)
        finally:
            bar.close()
        return _settle_busy(outcomes, busy, out, overwrite, run_started,
                            wait_for_others and not distributed.current().distributed)


def _pool_job(job: Job, out: str, overwrite: str, run_started: float) -> JobOutcome:
    return run_job(job, out, overwrite, run_started)


class ProcessPoolExecutor:
    """``--jobs N``: N local worker processes, one job each at a time. Every job runs on one
    torch thread whatever the executor (``jobs.JOB_THREADS``), so the numbers are the same as
    with ``--jobs 1``; the store's locks and atomic commits make concurrent writers safe. The
    person-stage features of the splits are computed first, one split per worker."""

    name = "local"

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def run(self, jobs: Sequence[Job], out: Path, *, overwrite: str, run_started: float,
            progress: bool = True, wait_for_others: bool = True) -> list[JobOutcome]:
        import concurrent.futures as cf
        import multiprocessing

        outcomes, busy = [], []
        ctx = multiprocessing.get_context("spawn")  # no fork of a process that holds torch threads
        with cf.ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=configure_from_env) as pool:
            for f in [pool.submit(warm_person_features, path) for path in _feature_splits(jobs)]:
                f.result()
            futures = {pool.submit(_pool_job, job, str(out), overwrite, run_started): job for job in jobs}
            bar = _bar(len(jobs), progress, f"jobs ({self.workers} workers)")
            try:
                for f in cf.as_completed(futures):
                    job = futures[f]
                    try:
                        outcome = f.result()
                    except Exception as exc:  # the worker died (run_job records every other failure)
                        outcome = JobOutcome(job.job_id, "failed", job.label, job.seed,
                                             error=f"worker process failed: {type(exc).__name__}: {exc}")
                    (busy.append(job) if outcome.status == "busy" else outcomes.append(outcome))
                    report(outcome)
                    bar.set_postfix_str(f"{job.label} seed {job.seed}: {outcome.status}", refresh=True)
                    bar.update(1)
            finally:
                bar.close()
        return _settle_busy(outcomes, busy, out, overwrite, run_started, wait_for_others)


def _feature_splits(jobs: Sequence[Job]) -> list[str]:
    """Prepared split folders that some job reads person-stage features from."""
    paths: dict[str, None] = {}
    for job in jobs:
        if job.person_stage:
            paths.update(dict.fromkeys(job.data.paths.values()))
    return list(paths)


def _ray_task(job: Job, out: str, overwrite: str, run_started: float) -> JobOutcome:
    """Body of one Ray task: exactly what the local executor does for a job."""
    return run_job(job, out, overwrite, run_started)


class RayExecutor:
    """One Ray task per job. Connects to ``address`` (e.g. ``auto`` or ``ray://host:10001``) or
    starts a private local instance (``num_cpus``, no dashboard) and shuts it down afterwards.
    The results directory and the prepared data must be reachable from every node (a shared
    filesystem); jobs write their records there themselves."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None,
                 cpus_per_job: float = 1.0, gpus_per_job: float = 0.0) -> None:
        self.address, self.num_cpus = address, num_cpus
        self.cpus_per_job, self.gpus_per_job = cpus_per_job, gpus_per_job

    def _init(self) -> bool:
        try:
            import ray
        except ImportError as exc:
            raise RunError(f"--executor ray needs the ray package ({exc}); pip install 'ravar-bench[ray]'") from exc
        if ray.is_initialized():
            return False
        env = {"env_vars": {k: os.environ[k] for k in ("RAVAR_CACHE", "RAVAR_BASELINES", "RAVAR_OFFLINE",
                                                        "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                                                        "RAVAR_WEIGHTS", "HF_HOME") if k in os.environ}}
        kwargs: dict[str, Any] = {"log_to_driver": False, "runtime_env": env}
        if self.address:
            try:
                ray.init(address=self.address, **kwargs)
            except Exception as exc:  # connection errors come in many types
                raise RunError(f"--ray-address {self.address}: cannot connect to Ray ({exc})") from exc
        else:
            ray.init(num_cpus=self.num_cpus or os.cpu_count(), include_dashboard=False, **kwargs)
        return True

    def run(self, jobs: Sequence[Job], out: Path, *, overwrite: str, run_started: float,
            progress: bool = True, wait_for_others: bool = True) -> list[JobOutcome]:
        if not jobs:
            return []
        import ray

        owned = self._init()
        try:
            # Ray sets OMP_NUM_THREADS (torch threads) to the task's CPUs and CUDA_VISIBLE_DEVICES
            # to its GPUs; a job whose worker dies is retried once (its stale lock is taken over)
            task = ray.remote(num_cpus=self.cpus_per_job, num_gpus=self.gpus_per_job,
                              max_retries=1)(_ray_task)
            pending = {task.remote(job, str(out), overwrite, run_started): job for job in jobs}
            outcomes, busy = [], []
            bar = _bar(len(jobs), progress, "jobs (ray)")
            try:
                while pending:
                    ready, _ = ray.wait(list(pending), num_returns=1)
                    job = pending.pop(ready[0])
                    try:
                        outcome = ray.get(ready[0])
                    except Exception as exc:  # worker died or task raised outside run_job's guard
                        outcome = JobOutcome(job.job_id, "failed", job.label, job.seed,
                                             error=f"ray task failed: {type(exc).__name__}: {exc}")
                    if outcome.status == "busy":
                        busy.append(job)
                    else:
                        outcomes.append(outcome)
                    report(outcome)
                    bar.set_postfix_str(f"{job.label} seed {job.seed}: {outcome.status}", refresh=False)
                    bar.update(1)
            finally:
                bar.close()
            return _settle_busy(outcomes, busy, out, overwrite, run_started, wait_for_others)
        finally:
            if owned:
                ray.shutdown()
