"""The one training loop: determinism, complete in-order evaluation, schedule, decay groups,
frozen-feature caching, safe checkpoints and config errors."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from conftest import make_random_split
from ravar_bench import train as T
from ravar_bench.adapters.registry import get_adapter
from ravar_bench.data.batches import dataset_info
from ravar_bench.train import TrainConfig, build_optimizer, evaluate, fit, lr_multiplier, predict

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


@pytest.fixture(scope="module")
def splits():
    return {"train": make_random_split(n_clips=6, seed=0, split="train"),
            "val": make_random_split(n_clips=5, seed=1, split="val")}


def build(name: str, splits, seed: int = 0, **params):
    T.set_seed(seed)
    return get_adapter(name).build(dataset_info(splits["train"]), params)


def small_cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 2, "batch_size": 4, "eval_batch_size": 5, "lr": 1e-3, **kw})


def test_same_seed_gives_identical_metrics_and_predictions(splits):
    runs = []
    for _ in range(2):
        model = build("text_only", splits, dim=16, hidden=16)
        result = fit(model, splits["train"], splits["val"], small_cfg(seed=3))
        preds, metrics = evaluate(model, splits["val"], small_cfg(seed=3))
        runs.append((result.history, metrics, preds.scores))
    assert runs[0][0] == runs[1][0]
    assert runs[0][1] == runs[1][1]
    np.testing.assert_array_equal(runs[0][2], runs[1][2])
    other = build("text_only", splits, seed=4, dim=16, hidden=16)
    fit(other, splits["train"], splits["val"], small_cfg(seed=4))
    assert not np.array_equal(predict(other, splits["val"], small_cfg()).scores, runs[0][2])


def test_evaluation_covers_every_sample_once_in_split_order(splits):
    val = splits["val"].subset([9, 0, 3, 4, 7, 1, 2])  # odd size, not a multiple of the batch
    model = build("video_only", splits, dim=16, hidden=16)
    preds = predict(model, val, small_cfg(eval_batch_size=3))
    assert preds.keys == val.keys and len(set(preds.keys)) == len(val)
    one_by_one = predict(model, val, small_cfg(eval_batch_size=1))
    np.testing.assert_allclose(preds.scores, one_by_one.scores, rtol=1e-5, atol=1e-5)
    # row i really is instance i: recompute it alone
    from ravar_bench.data.batches import BatchLoader

    loader = BatchLoader(val, model.inputs, 1)
    with torch.no_grad():
        alone = model(loader.make_batch(np.array([4])))
    np.testing.assert_allclose(preds.scores[4], alone.scores[0].numpy(), rtol=1e-5, atol=1e-5)


def test_warmup_cosine_values():
    # BertAdam warmup_cosine: x/w during warm-up, then 0.5 (1 + cos(pi x)), x = step / total
    assert lr_multiplier(0, 100, 0.3) == 0.0
    assert lr_multiplier(15, 100, 0.3) == pytest.approx(0.5)
    assert lr_multiplier(29, 100, 0.3) == pytest.approx(29 / 30)
    assert lr_multiplier(30, 100, 0.3) == pytest.approx(0.5 * (1 + math.cos(0.3 * math.pi)))
    assert lr_multiplier(50, 100, 0.3) == pytest.approx(0.5)
    assert lr_multiplier(100, 100, 0.3) == pytest.approx(0.0)
    assert lr_multiplier(7, 100, 0.3, "constant") == 1.0


def test_fit_applies_the_schedule_to_every_step(splits, monkeypatch):
    seen = []
    original = T.lr_multiplier

    def spy(step, total, warmup, schedule="warmup_cosine"):
        value = original(step, total, warmup, schedule)
        seen.append((step, total, value))
        return value

    monkeypatch.setattr(T, "lr_multiplier", spy)
    model = build("text_only", splits, dim=16, hidden=16)
    cfg = small_cfg(epochs=3, select_metric="")
    result = fit(model, splits["train"], None, cfg)
    steps_per_epoch = math.ceil(len(splits["train"]) / cfg.batch_size)
    assert result.steps == 3 * steps_per_epoch
    assert [s for s, _, _ in seen] == list(range(result.steps))
    assert all(total == result.steps for _, total, _ in seen)
    assert seen[0][2] == 0.0 and max(v for *_, v in seen) <= 1.0


def test_no_weight_decay_on_biases_and_norms(splits):
    model = build("text_only", splits, dim=16, hidden=16)
    opt = build_optimizer(model, TrainConfig(weight_decay=0.2))
    names = {id(p): n for n, p in model.named_parameters()}
    decay = [names[id(p)] for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]]
    no_decay = [names[id(p)] for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]]
    assert decay and no_decay
    assert not any(n.endswith(".bias") or "norm" in n for n in decay)
    assert any("norm" in n and n.endswith(".weight") for n in no_decay)
    assert any(n.endswith(".bias") for n in no_decay)
    assert len(decay) + len(no_decay) == sum(p.requires_grad for p in model.parameters())


def _count_encoded(model) -> list[int]:
    counted = []
    original = model.encode

    def encode(batch):
        counted.append(len(batch))
        return original(batch)

    model.encode = encode
    return counted


def test_frozen_encoder_is_run_once_per_instance(splits):
    model = build("video_only", splits, dim=16, hidden=16, freeze=True)
    assert model.frozen_encoder
    counted = _count_encoded(model)
    fit(model, splits["train"], splits["val"], small_cfg(epochs=3))
    assert sum(counted) == len(splits["train"]) + len(splits["val"])  # two caches, 3 epochs
    uncached = build("video_only", splits, dim=16, hidden=16, freeze=True)
    counted = _count_encoded(uncached)
    fit(uncached, splits["train"], splits["val"], small_cfg(epochs=3, cache_features=False))
    assert sum(counted) > 3 * len(splits["train"])


def test_fits_validation_features_evaluate_that_split_without_re_encoding(splits):
    from ravar_bench.data.batches import Controls

    model = build("video_only", splits, dim=16, hidden=16, freeze=True)
    result = fit(model, splits["train"], splits["val"], small_cfg(epochs=2))
    assert result.val_cache is not None
    counted = _count_encoded(model)
    reused, metrics = evaluate(model, splits["val"], small_cfg(), cache=result.val_cache)
    assert sum(counted) == 0
    fresh, fresh_metrics = evaluate(model, splits["val"], small_cfg())
    assert sum(counted) == len(splits["val"])
    np.testing.assert_array_equal(reused.scores, fresh.scores)
    assert metrics == fresh_metrics
    with pytest.raises(ValueError, match="controls or a perturbation need the split re-encoded"):
        evaluate(model, splits["val"], small_cfg(), Controls(text_swap=True), cache=result.val_cache)


def test_frozen_cache_gives_the_same_predictions_as_the_full_model(splits):
    model = build("video_only", splits, dim=16, hidden=16, freeze=True)
    cached, _ = evaluate(model, splits["val"], small_cfg())
    direct, _ = evaluate(model, splits["val"], small_cfg(cache_features=False))
    np.testing.assert_allclose(cached.scores, direct.scores, rtol=1e-5, atol=1e-6)


def test_selected_state_is_the_best_validation_epoch(splits):
    model = build("text_only", splits, dim=16, hidden=16)
    cfg = small_cfg(epochs=4, lr=3e-3, warmup=0.0)
    result = fit(model, splits["train"], splits["val"], cfg)
    values = [h["val.paper_v1.mAP"] for h in result.history]
    assert result.best_epoch == int(np.argmax(values))
    _, metrics = evaluate(model, splits["val"], cfg)
    assert metrics["paper_v1"]["mAP"] == pytest.approx(max(values))


def test_checkpoints_round_trip_and_load_tensors_only(tmp_path, splits, monkeypatch):
    model = build("text_only", splits, dim=16, hidden=16)
    path = tmp_path / "model.pt"
    T.save_checkpoint(model, str(path))
    other = build("text_only", splits, seed=9, dim=16, hidden=16)
    calls = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k) or real_load(*a, **k))
    T.load_checkpoint(other, str(path))
    assert calls and calls[0].get("weights_only") is True
    for (n, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        assert torch.equal(a, b), n
    evil = tmp_path / "evil.pt"
    torch.save({"x": torch.zeros(1), "payload": _Payload()}, evil)
    with pytest.raises(pickle.UnpicklingError):
        T.load_checkpoint(other, str(evil))


class _Payload:
    """An arbitrary object: a weights_only load must refuse to unpickle it."""


@pytest.mark.parametrize("values, key", [
    ({"epoch": 3}, "epoch"),
    ({"epochs": True}, "epochs"),
    ({"epochs": "3"}, "epochs"),
    ({"lr": "0.1"}, "lr"),
    ({"betas": [0.9]}, "betas"),
    ({"schedule": "linear"}, "schedule"),
    ({"warmup": 1.5}, "warmup"),
    ({"batch_size": 0}, "batch_size"),
    ({"select_metric": "mAP"}, "select_metric"),
    ({"cache_features": 1}, "cache_features"),
])
def test_train_config_errors_name_the_key(values, key):
    with pytest.raises(ValueError) as err:
        TrainConfig.from_dict(values, where="baselines/x.toml: [train]")
    assert repr(key) in str(err.value) and "baselines/x.toml: [train]" in str(err.value)


def test_train_config_accepts_toml_values():
    cfg = TrainConfig.from_dict({"epochs": 3, "lr": 1, "betas": [0.9, 0.99], "cache_features": False})
    assert cfg.lr == 1.0 and cfg.betas == (0.9, 0.99) and cfg.epochs == 3 and not cfg.cache_features


def test_unknown_select_metric_fails_with_its_name(splits):
    model = build("text_only", splits, dim=16, hidden=16)
    with pytest.raises(ValueError, match="paper_v1.nope"):
        fit(model, splits["train"], splits["val"], small_cfg(epochs=1, select_metric="paper_v1.nope"))


def test_encoder_parameters_train_at_scaled_lr():
    from ravar_bench.adapters.controls import VideoOnly
    from ravar_bench.data.batches import dataset_info
    from ravar_bench.train import TrainConfig, build_optimizer

    from conftest import make_random_split

    model = VideoOnly(dataset_info(make_random_split()))
    opt = build_optimizer(model, TrainConfig(lr=1e-3, encoder_lr_scale=1e-2))
    encoder = {id(p) for p in model.encoder_parameters()}
    for group in opt.param_groups:
        is_enc = {id(p) in encoder for p in group["params"]}
        assert len(is_enc) == 1, "a group mixes encoder and head parameters"
        assert group["lr"] == pytest.approx(1e-5 if is_enc.pop() else 1e-3)


def test_fit_skips_encoding_when_nothing_trains(monkeypatch):
    from ravar_bench.adapters.controls import PriorOnly
    from ravar_bench.data.batches import dataset_info
    from ravar_bench import train as train_mod

    from conftest import make_random_split

    split = make_random_split()
    model = PriorOnly(dataset_info(split))
    built = []
    monkeypatch.setattr(train_mod, "FeatureCache", lambda *a, **k: built.append(1))
    result = train_mod.fit(model, split, split, train_mod.TrainConfig(epochs=3))
    assert built == [] and result.steps == 0
