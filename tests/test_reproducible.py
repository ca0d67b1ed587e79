"""The same job gives the same record whatever the machine's thread count: every job pins torch to
one thread (jobs.JOB_THREADS), the person stage included, so a leaderboard does not depend on
OMP_NUM_THREADS or on the number of cores.

The workload can tell: with torch left at OMP_NUM_THREADS instead of JOB_THREADS, RefAtomNet's
record on synth:tiny differs between 1 and 2 threads (measured when this test was written; the
random-data split of the other tests is too small to show it)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ravar_bench.store import Store

SUITE = """
[suite]
name = "threads"
title = "jobs whose float reductions could depend on threads: text MLP, person stage, RefAtomNet"
seeds = 1
scale = "tiny"
controls = ["none"]
bootstrap = 20
efficiency = false
[train]
epochs = 3
batch_size = 32
lr = 3e-3
[[entries]]
baseline = "text_only_minilm"
[[entries]]
baseline = "clip4clip_vitb32"
[[entries]]
baseline = "refatomnet"
"""


def run_with_threads(threads: int, data: str, suite: Path, out: Path, cache: Path) -> dict[str, dict]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "RAVAR_CACHE": str(cache)}
    done = subprocess.run([sys.executable, "-m", "ravar_bench.cli", "run", str(suite), "--data", str(data),
                           "--out", str(out), "--jobs", "1", "--no-progress"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    store = Store(out)
    return {j: store.record(j)["results"] for j in store.job_ids()}


@pytest.mark.slow
def test_one_and_two_threads_give_identical_records(tmp_path):
    data = "synth:tiny"  # generated in each run's own cache
    suite = tmp_path / "threads.toml"
    suite.write_text(SUITE)
    # separate feature caches, so each run computes the person stage under its own thread count
    one = run_with_threads(1, data, suite, tmp_path / "one", tmp_path / "cache1")
    two = run_with_threads(2, data, suite, tmp_path / "two", tmp_path / "cache2")
    assert len(one) == 3 and one == two
    features = sorted((tmp_path / "cache1" / "person-features").glob("*/cand.npy"))
    assert features, "the person stage did not run"


def test_deterministic_kernels_are_on_inside_a_job_and_restored_after():
    import torch

    from ravar_bench.jobs import deterministic_kernels

    before = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    with deterministic_kernels():
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark) == before
