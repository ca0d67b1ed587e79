"""The Ray executor on a private local Ray instance gives the same records as the local one."""
from __future__ import annotations

import time

import numpy as np
import pytest

from conftest import control_baseline, write_baseline_tree, write_random_data
from ravar_bench.baselines import load_suite
from ravar_bench.data.specs import resolve_data
from ravar_bench.runner import run_suite
from ravar_bench.store import Store

ray = pytest.importorskip("ray", reason="the ray extra is not installed")
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning", "ignore::DeprecationWarning")

SUITE = """
[suite]
name = "mini"
title = "Mini"
seeds = 2
controls = ["none", "location_drop"]
bootstrap = 20
efficiency = false
[train]
epochs = 2
batch_size = 6
lr = 1e-3
[[entries]]
baseline = "text"
[[entries]]
baseline = "video"
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray")
    base = write_baseline_tree(root, {
        name: control_baseline(name, adapter, "dim = 16\nhidden = 16", title=name)
        for name, adapter in (("text", "text_only"), ("video", "video_only"))}, {"mini": SUITE})
    data = write_random_data(root / "data")
    mp = pytest.MonkeyPatch()
    mp.setenv("RAVAR_BASELINES", str(base))
    yield {"root": root, "data": resolve_data(str(data))}
    mp.undo()


def test_ray_and_local_executors_store_the_same_results(env, capsys):
    import torch

    suite = load_suite("mini")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a Ray task with num_cpus=1 (Ray sets OMP_NUM_THREADS=1)
    try:
        t0 = time.perf_counter()
        local = run_suite(suite, env["data"], env["root"] / "local", progress=False)
        t1 = time.perf_counter()
    finally:
        torch.set_num_threads(threads)
    remote = run_suite(suite, env["data"], env["root"] / "ray", executor="ray", ray_cpus=2, progress=False)
    t2 = time.perf_counter()
    with capsys.disabled():
        print(f"\n[tiny suite, 4 jobs] local {t1 - t0:.1f} s, ray (local instance, 2 CPUs, incl. start) {t2 - t1:.1f} s")
    assert local.count("done") == 4 and remote.count("done") == 4 and not remote.failed
    assert not ray.is_initialized()  # the private instance was shut down
    a, b = Store(env["root"] / "local"), Store(env["root"] / "ray")
    assert a.job_ids() == b.job_ids()  # same identities
    import os

    workers = {b.record(j)["provenance"]["pid"] for j in b.job_ids()}
    assert os.getpid() not in workers  # the jobs ran in Ray worker processes
    for job_id in a.job_ids():
        ra, rb = a.record(job_id), b.record(job_id)
        for split in ("val", "test"):
            for cond in ("none", "location_drop"):
                pa, _ = a.predictions(job_id, split, cond)
                pb, _ = b.predictions(job_id, split, cond)
                assert pa.keys == pb.keys
                np.testing.assert_array_equal(pa.scores, pb.scores)  # same threads: bit-identical
                np.testing.assert_array_equal(pa.boxes, pb.boxes)
                for profile, values in ra["results"][split][cond]["metrics"].items():
                    assert values == rb["results"][split][cond]["metrics"][profile]
        assert len(ra["fit"]["history"]) == len(rb["fit"]["history"]) == 2
        for ha, hb in zip(ra["fit"]["history"], rb["fit"]["history"]):
            assert ha["loss"] == hb["loss"]
        assert ra["fit"]["best_epoch"] == rb["fit"]["best_epoch"]
    again = run_suite(suite, env["data"], env["root"] / "ray", executor="ray", ray_cpus=2, progress=False)
    assert again.count("skipped") == 4  # resume works the same through Ray (nothing submitted)
