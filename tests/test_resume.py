"""Crash safety end to end: runs killed by fault injection and by a real ``kill -9`` resume to the
same records as an uninterrupted run, with no job lost, duplicated or corrupt, and two runners
sharing one results directory do every job exactly once."""
from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import control_baseline, write_baseline_tree, write_random_data
from ravar_bench.baselines import load_suite
from ravar_bench.data.specs import resolve_data
from ravar_bench.runner import run_suite
from ravar_bench.store import Store

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

SUITE = """
[suite]
name = "mini"
title = "Mini"
seeds = 2
controls = ["none", "text_swap"]
bootstrap = 20
efficiency = false
[train]
epochs = 1
batch_size = 6
lr = 1e-3
[[entries]]
baseline = "prior"
[[entries]]
baseline = "text"
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    base = write_baseline_tree(root, {
        "prior": control_baseline("prior", "prior"),
        "text": control_baseline("text", "text_only", "dim = 16\nhidden = 16"),
    }, {"mini": SUITE})
    data = write_random_data(root / "data")
    mp = pytest.MonkeyPatch()
    mp.setenv("RAVAR_BASELINES", str(base))
    reference = root / "reference"
    summary = run_suite(load_suite("mini"), resolve_data(str(data)), reference, progress=False)
    assert summary.count("done") == 4
    yield {"root": root, "base": base, "data": data, "reference": metrics_of(reference)}
    mp.undo()


def metrics_of(out: Path) -> dict[str, dict]:
    store = Store(out, create=False)
    return {r["job_id"]: r["results"] for r in store.records()}


def cli(env, out: Path, fault: str = "", wait: bool = True):
    cmd = [sys.executable, "-m", "ravar_bench.cli", "run", "mini", "--data", str(env["data"]),
           "--out", str(out), "--no-progress", "--jobs", "1"]  # the crash points are in this process
    # same intra-op thread count as the in-process reference run: CPU training is only bitwise
    # reproducible at a fixed thread count
    proc_env = {**os.environ, "RAVAR_BASELINES": str(env["base"]), "RAVAR_FAULT": fault,
                "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen(cmd, env=proc_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if not wait:
        return proc
    output, _ = proc.communicate(timeout=300)
    return proc.returncode, output


def done_events(out: Path) -> collections.Counter:
    return collections.Counter(e["job_id"] for e in Store(out).events() if e["event"] == "done")


def assert_complete_and_equal(env, out: Path) -> None:
    store = Store(out)
    assert sorted(store.job_ids()) == sorted(env["reference"])  # none missing, none extra
    for job_id, results in metrics_of(out).items():
        assert store.verify(job_id) == []
        for split, by_cond in results.items():
            for cond, res in by_cond.items():
                assert res["metrics"] == env["reference"][job_id][split][cond]["metrics"], (job_id, split, cond)
    assert list((store.root / ".tmp").iterdir()) == []
    assert list((store.root / ".locks").glob("*.lock")) == []


def started_by(out: Path, pid: int) -> list[str]:
    if not (out / "store.json").exists():
        return []
    return [e["job_id"] for e in Store(out).events() if e["event"] == "start" and e["pid"] == pid]


def test_crashes_at_every_stage_resume_to_the_same_records(env):
    """One results directory through every kind of death, then two concurrent resumers.

    Jobs, in order: J1, J2 = prior seeds 0, 1; J3, J4 = text seeds 0, 1. Each launch is a fresh
    ``ravar-bench run`` process that skips what is done, so the chain also checks that no stage
    of a crash leaves a state that a later run misreads."""
    out = env["root"] / "chain"
    code, log = cli(env, out, "mid_write:2")  # J1 done; J2 dies half-way through writing its files
    assert code == 137, log
    store = Store(out)
    j1 = store.job_ids()
    assert len(j1) == 1 and len(list((store.root / ".tmp").iterdir())) == 1
    code, log = cli(env, out, "after_rename:1")  # J2 renamed into place, lock left, no "done" line
    assert code == 137, log
    j2 = [j for j in store.job_ids() if j not in j1]
    assert len(j2) == 1 and [p.stem for p in (store.root / ".locks").glob("*.lock")] == j2
    assert not list((store.root / ".tmp").iterdir())  # the mid-write leftovers were cleaned up

    victim = cli(env, out, wait=False)  # a real kill -9 while J3 (text, seed 0) runs
    deadline = time.time() + 240
    while not started_by(out, victim.pid):
        if victim.poll() is not None or time.time() > deadline:
            pytest.fail(f"the run ended before it could be killed: {victim.communicate()[0]}")
        time.sleep(0.02)
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate()
    assert victim.returncode == -signal.SIGKILL
    j3 = started_by(out, victim.pid)[0]
    assert not store.has(j3) and len(store.job_ids()) == 2

    first, second = cli(env, out, wait=False), cli(env, out, wait=False)  # two resumers at once
    for p in (first, second):
        output, _ = p.communicate(timeout=300)
        assert p.returncode == 0, output
    assert_complete_and_equal(env, out)
    done = done_events(out)
    assert set(done.values()) == {1} and set(done) == set(store.job_ids()) - set(j2), done
    by_resumers = [e["job_id"] for e in store.events() if e["event"] == "done" and e["pid"] in (first.pid, second.pid)]
    assert sorted(by_resumers) == sorted(set(store.job_ids()) - set(j1) - set(j2))  # J3, J4 once each
