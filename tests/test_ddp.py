"""DistributedDataParallel on CPU (gloo, 2 processes via torchrun): evaluation scores every
instance exactly once and equals single-process evaluation; training gradients equal the
single-process gradient of the global batch; the runner works under torchrun."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import make_random_split
from ravar_bench import distributed, train as T
from ravar_bench.adapters.registry import get_adapter
from ravar_bench.data.batches import BatchLoader, Controls, dataset_info


pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
TESTS = Path(__file__).resolve().parent
TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")

WORKER = textwrap.dedent("""
    import json, sys
    import numpy as np, torch
    from torch import nn
    sys.path.insert(0, sys.argv[2])
    from conftest import make_random_split
    from ravar_bench import distributed, train as T
    from ravar_bench.adapters.registry import get_adapter
    from ravar_bench.data.batches import BatchLoader, Controls, dataset_info
    from ravar_bench.protocol import ModelOutput

    out = sys.argv[1]
    info = distributed.init_from_env("cpu")
    rank = info.rank
    train = make_random_split(n_clips=6, seed=0, split="train")
    val = make_random_split(n_clips=7, seed=1, split="val").subset(list(range(13)))  # odd size

    def build(name, **params):
        T.set_seed(0)
        model = get_adapter(name).build(dataset_info(train), params)
        for m in model.modules():  # dropout draws differ per process; switch it off to compare
            if isinstance(m, nn.Dropout):
                m.p = 0.0
        return model

    cfg = T.TrainConfig(epochs=2, batch_size=5, eval_batch_size=4, lr=1e-3, warmup=0.0, seed=0)
    res = {}
    # 1. evaluation: sharded, gathered, complete (plain model, and frozen encoder + cache)
    text = build("text_only", dim=16, hidden=16)
    text.load_state_dict(torch.load(out + "/init.pt", weights_only=True))
    preds = T.predict(text, val, cfg, controls=Controls(text_swap=True))
    np.savez(f"{out}/pred_{rank}.npz", scores=preds.scores, boxes=preds.boxes)
    res["keys"] = preds.keys
    video = build("video_only", dim=16, hidden=16, freeze=True)
    cached, _ = T.evaluate(video, val, cfg)
    np.save(f"{out}/cached_{rank}.npy", cached.scores)
    # 2. one training step: the DDP gradient of a global batch of 5 (3 + 2 rows)
    step = torch.nn.parallel.DistributedDataParallel(T._Step(text), find_unused_parameters=True)
    loader = BatchLoader(train, text.inputs, 5)
    rows, weight = distributed.train_rows(np.arange(5))
    batch = loader.make_batch(rows)
    scores, box = step(batch, None)
    (T.ravar_loss(ModelOutput(scores, box), batch, cfg) * weight).backward()
    torch.save({n: p.grad for n, p in text.named_parameters() if p.grad is not None}, f"{out}/grad_{rank}.pt")
    res["rows"], res["weight"] = rows.tolist(), weight
    # 3. a whole fit under DDP
    fitted = build("text_only", dim=16, hidden=16)
    fitted.load_state_dict(torch.load(out + "/init.pt", weights_only=True))
    T.fit(fitted, train, val, cfg)
    torch.save(fitted.state_dict(), f"{out}/fit_{rank}.pt")
    # 4. a gather with a duplicated row must refuse to produce a split
    try:
        distributed.gather_rows(torch.zeros(2, 3), np.array([0, 1]), 4)
        res["overlap"] = "no error"
    except RuntimeError as exc:
        res["overlap"] = str(exc)
    with open(f"{out}/res_{rank}.json", "w") as f:
        json.dump(res, f)
    distributed.shutdown()
""")


def torchrun(args: list[str], env: dict | None = None, timeout: int = 300):
    if TORCHRUN is None:
        pytest.fail("torchrun is not on PATH next to the interpreter")
    cmd = [TORCHRUN, "--standalone", "--nproc_per_node", "2", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


@pytest.fixture(scope="module")
def ddp(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    train = make_random_split(n_clips=6, seed=0, split="train")
    T.set_seed(0)
    model = get_adapter("text_only").build(dataset_info(train), {"dim": 16, "hidden": 16})
    torch.save(model.state_dict(), out / "init.pt")
    (out / "worker.py").write_text(WORKER)
    torchrun([str(out / "worker.py"), str(out), str(TESTS)])
    return out


def single(name: str, **params):
    train = make_random_split(n_clips=6, seed=0, split="train")
    T.set_seed(0)
    model = get_adapter(name).build(dataset_info(train), params)
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    return model, train, make_random_split(n_clips=7, seed=1, split="val").subset(list(range(13)))


def cfg() -> T.TrainConfig:
    return T.TrainConfig(epochs=2, batch_size=5, eval_batch_size=4, lr=1e-3, warmup=0.0, seed=0)


def test_gathered_predictions_cover_every_key_once_and_equal_single_process(ddp):
    model, _, val = single("text_only", dim=16, hidden=16)
    model.load_state_dict(torch.load(ddp / "init.pt", weights_only=True))
    ref = T.predict(model, val, cfg(), controls=Controls(text_swap=True))
    for rank in (0, 1):
        res = json.loads((ddp / f"res_{rank}.json").read_text())
        assert res["keys"] == val.keys and len(set(res["keys"])) == 13
        got = np.load(ddp / f"pred_{rank}.npz")
        np.testing.assert_allclose(got["scores"], ref.scores, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got["boxes"], ref.boxes, rtol=1e-5, atol=1e-6)


def test_frozen_feature_cache_is_sharded_and_gathered(ddp):
    model, _, val = single("video_only", dim=16, hidden=16, freeze=True)
    ref, _ = T.evaluate(model, val, cfg())
    for rank in (0, 1):
        np.testing.assert_allclose(np.load(ddp / f"cached_{rank}.npy"), ref.scores, rtol=1e-5, atol=1e-6)


def test_ddp_gradient_equals_the_single_process_gradient_of_the_global_batch(ddp):
    r0, r1 = (json.loads((ddp / f"res_{r}.json").read_text()) for r in (0, 1))
    assert (r0["rows"], r1["rows"]) == ([0, 1, 2], [3, 4])
    assert (r0["weight"], r1["weight"]) == pytest.approx((2 * 3 / 5, 2 * 2 / 5))
    model, train, _ = single("text_only", dim=16, hidden=16)
    model.load_state_dict(torch.load(ddp / "init.pt", weights_only=True))
    batch = BatchLoader(train, model.inputs, 5).make_batch(np.arange(5))
    out = model(batch)
    T.ravar_loss(out, batch, cfg()).backward()
    g0, g1 = (torch.load(ddp / f"grad_{r}.pt", weights_only=True) for r in (0, 1))
    assert g0.keys() == g1.keys() and g0
    for name, p in model.named_parameters():
        if p.grad is None:
            continue
        torch.testing.assert_close(g0[name], g1[name])  # all-reduced: identical on both ranks
        torch.testing.assert_close(g0[name], p.grad, rtol=1e-4, atol=1e-6)


def test_a_ddp_fit_keeps_ranks_in_sync_and_close_to_one_process(ddp):
    s0, s1 = (torch.load(ddp / f"fit_{r}.pt", weights_only=True) for r in (0, 1))
    init = torch.load(ddp / "init.pt", weights_only=True)
    model, train, val = single("text_only", dim=16, hidden=16)
    model.load_state_dict(init)
    T.fit(model, train, val, cfg())
    ref = model.state_dict()
    for name in ref:
        torch.testing.assert_close(s0[name], s1[name], rtol=0, atol=0)  # ranks never diverge
    # Same data, same gradients: the DDP run must land where one process lands. (Adam can turn
    # last-bit differences of near-zero gradients into small steps, so compare to how far
    # training moved the weights rather than bit for bit.)
    moved = sum((ref[n] - init[n]).abs().sum() for n in ref if ref[n].is_floating_point())
    apart = sum((s0[n] - ref[n]).abs().sum() for n in ref if ref[n].is_floating_point())
    assert moved > 0 and apart / moved < 1e-4, float(apart / moved)


def test_overlapping_shards_are_refused(ddp):
    for rank in (0, 1):
        res = json.loads((ddp / f"res_{rank}.json").read_text())
        assert "refusing to score a partial split" in res["overlap"] and "duplicated" in res["overlap"]


def test_shards_are_disjoint_and_complete_without_padding():
    for n in (0, 1, 2, 7, 13):
        for world in (1, 2, 3, 4):
            shards = [distributed.shard_rows(n, r, world) for r in range(world)]
            assert np.array_equal(np.concatenate(shards), np.arange(n))
    rows, w = distributed.train_rows(np.array([7]), rank=1, world_size=2)
    assert rows.tolist() == [7] and w == 0.0  # an empty rank still steps, with weight 0
    rows, w = distributed.train_rows(np.arange(4), rank=0, world_size=1)
    assert rows.tolist() == [0, 1, 2, 3] and w == 1.0


SUITE = """
[suite]
name = "one"
title = "One job"
seeds = 1
controls = ["none", "text_swap"]
bootstrap = 20
efficiency = false
[train]
epochs = 2
batch_size = 5
lr = 1e-3
[[entries]]
baseline = "text"
"""


def test_the_runner_under_torchrun_writes_one_complete_record(tmp_path):
    base = tmp_path / "baselines"
    (base / "suites").mkdir(parents=True)
    (base / "text.toml").write_text('[baseline]\nname = "text"\nadapter = "text_only"\ndomain = "control"\n'
                                    'title = "Text"\n[params_tiny]\ndim = 16\nhidden = 16\n')
    (base / "suites" / "one.toml").write_text(SUITE)
    data = tmp_path / "data"
    for i, split in enumerate(("train", "val", "test")):
        make_random_split(n_clips=5 + i, seed=i, split=split).save(data / split)
    proc = torchrun(["-m", "ravar_bench.cli", "run", "one", "--data", str(data), "--out", str(tmp_path / "out"),
                     "--no-progress"], env={"RAVAR_BASELINES": str(base)})
    assert proc.stdout.count("suite one: 1 jobs, 1 done") == 1, proc.stdout  # printed by rank 0 only
    from ravar_bench.store import Store

    store = Store(tmp_path / "out", create=False)
    (job_id,) = store.job_ids()
    rec = store.record(job_id)
    assert rec["provenance"]["world_size"] == 2 and store.verify(job_id) == []
    done = [e for e in store.events() if e["event"] == "done"]
    assert len(done) == 1
    for split in ("val", "test"):
        gt = make_random_split(n_clips=5 + (1 if split == "val" else 2), seed=1 if split == "val" else 2, split=split)
        preds, _ = store.predictions(job_id, split, "none")
        assert preds.keys == gt.keys  # every instance once, in split order
        assert rec["results"][split]["none"]["n"] == len(gt)
