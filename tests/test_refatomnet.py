"""The refatomnet and fusion_model adapters: streams, switches, caching, training, baseline files."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import torch

from conftest import make_random_split
from ravar_bench.adapters.fusion import list_fusions
from ravar_bench.adapters.refatomnet import TEXT_LEN
from ravar_bench.adapters.registry import AdapterError, get_adapter
from ravar_bench.adapters.weights import WeightsUnavailable
from ravar_bench.data.batches import BatchLoader, Controls, dataset_info
from ravar_bench.train import TrainConfig, fit

BASELINES = Path(__file__).resolve().parent.parent / "baselines"
MINE = ["refatomnet", "refatomnet_corrected", "refatomnet_rescale_only", "refatomnet_log_guided", "refatomnet_wo_location",
        "refatomnet_wo_caaf", "refatomnet_wo_catf", "refatomnet_fusion_addition", "refatomnet_fusion_concat",
        "refatomnet_fusion_bottleneck", "refatomnet_agents_1", "refatomnet_agents_4", "refatomnet_agents_16",
        "refatomnet_agents_64", "fusion_v0", "fusion_v1", "fusion_v2"]
SMALL = {"dim": 32, "hidden": 64}


@pytest.fixture(scope="module")
def split():
    return make_random_split(n_clips=4, per_clip=2, frames=3, size=48)


@pytest.fixture(scope="module")
def info(split):
    return dataset_info(split)


def build(info, name="refatomnet", **params):
    torch.manual_seed(0)
    return get_adapter(name).build(info, {**SMALL, **params}).eval()


def batch_for(model, split, controls=Controls()):
    return next(iter(BatchLoader(split, model.inputs, 8, controls=controls)))


def fusion_input(model, split):
    """The streams the model's fusion receives for the first batch."""
    b = batch_for(model, split)
    return model.streams(model.encode(b), b)


# ------------------------------------------------------------------------- contracts
def test_forward_shapes_inputs_and_streams(split, info):
    m = build(info)
    b = batch_for(m, split)
    out = m(b)
    assert out.scores.shape == (8, 80) and out.box.shape == (8, 4)
    assert m.inputs == {"frames", "text", "candidates"} and m.head_inputs == {"candidates"}
    s = fusion_input(m, split)
    assert set(s) == {"video", "text", "loc"}
    assert s["video"].num_tokens == 9  # 48 px → 3 × 3 grid, averaged over the 3 frames
    assert s["text"].num_tokens == TEXT_LEN and s["text"].mask.sum(1).min() >= 1
    assert s["loc"].num_tokens == info.max_candidates
    # padded text slots and non-person / absent candidates hold zeros
    assert torch.count_nonzero(s["text"].x[~s["text"].mask]) == 0
    assert torch.count_nonzero(s["loc"].x[~s["loc"].mask]) == 0


def test_accepts_other_frame_sizes_and_clip_lengths():
    for size, frames in ((32, 1), (96, 8)):
        sp = make_random_split(n_clips=2, per_clip=2, frames=frames, size=size)
        m = build(dataset_info(sp), mode="corrected")
        assert m(batch_for(m, sp)).scores.shape == (4, 80)


def test_non_person_candidates_are_masked(split, info):
    m = build(info, mode="corrected")
    b = batch_for(m, split)
    b.cand_labels[:, 1] = 1  # "chair"
    feats = m.encode(b)
    loc = m.streams(feats, b)["loc"]
    assert not loc.mask[:, 1].any() and torch.count_nonzero(loc.x[:, 1]) == 0


def test_location_drop_control_runs_in_every_mode(split, info):
    for mode in ("as_released", "corrected", "rescale_only"):
        m = build(info, mode=mode)
        out = m(batch_for(m, split, Controls(location_drop=True)))
        assert torch.isfinite(out.scores).all() and torch.isfinite(out.box).all()


@pytest.mark.parametrize("mode", ["as_released", "corrected", "rescale_only"])
def test_gradient_reaches_every_encoder(split, info, mode):
    m = build(info, mode=mode).train()
    out = m(batch_for(m, split))
    (out.scores.square().mean() + out.box.square().mean()).backward()
    parts = {"video": m.streams.video, "text": m.streams.text, "loc": m.streams.loc_proj,
             "class names": m.streams.class_table, "heads": m.heads}
    for name, module in parts.items():
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters()), name


# --------------------------------------------------------------------- ablation switches
def test_without_location_stream(split, info):
    m = build(info, location=False)
    assert "candidates" not in m.inputs and m.head_inputs == frozenset()
    assert m.fusion.streams == ("video", "text") and "loc" not in m.fusion.blocks
    assert not any("loc_proj" in n for n, _ in m.named_parameters())
    b = batch_for(m, split)
    assert b.cand_boxes is None and m(b).scores.shape == (8, 80)


def test_caaf_catf_switches_remove_the_cross_stream_paths(split, info):
    full = build(info, mode="corrected")
    s = fusion_input(full, split)
    other = {**s, "text": s["text"].__class__(s["text"].x.flip(0), s["text"].mask.flip(0), kind="text")}

    def video_changes(model) -> bool:
        a = model.fusion(s).aux["outputs"]["video"]
        b = model.fusion(other).aux["outputs"]["video"]
        return not torch.allclose(a, b, atol=1e-6)

    assert full.fusion.caaf and full.fusion.catf and video_changes(full)
    none = build(info, mode="corrected", caaf=False, catf=False)
    assert not none.fusion.caaf and not none.fusion.catf and not video_changes(none)
    assert video_changes(build(info, mode="corrected", catf=False))  # CAAF alone still crosses
    assert video_changes(build(info, mode="corrected", caaf=False))  # CATF alone still crosses


@pytest.mark.parametrize("n", [1, 16, 64])
def test_agent_count(split, info, n):
    m = build(info, agents=n)
    out = m.fusion(fusion_input(m, split))
    assert out.aux["agents"]["video"].shape == (8, 1, n, SMALL["dim"])


@pytest.mark.parametrize("fusion,variant", [("addition", "v0"), ("concat", "concat"), ("bottleneck", "bottleneck")])
def test_fusion_switch_replaces_the_agent_blocks(split, info, fusion, variant):
    m = build(info, fusion=fusion)
    assert m.fusion.variant_id == variant
    assert not any("blocks." in n and "attn.pool" in n for n, _ in m.named_parameters())
    assert m(batch_for(m, split)).scores.shape == (8, 80)
    if fusion == "addition":
        assert sum(p.numel() for p in m.fusion.parameters()) == 0


def test_agent_only_parameters_are_rejected_with_other_fusions(info):
    with pytest.raises(AdapterError, match="parameter 'agents' only applies to fusion='agent'"):
        build(info, fusion="addition", agents=16)
    with pytest.raises(AdapterError, match="parameter 'mode'.*must be one of"):
        get_adapter("refatomnet").validate({"mode": "released"})
    with pytest.raises(AdapterError, match="'weights' only applies to size='base'"):
        build(info, weights="/nonexistent.pth")


# ------------------------------------------------------------------ frozen encoders
def test_frozen_encoders_are_cached_and_match_the_direct_forward(split, info):
    m = build(info, freeze=True, mode="corrected")
    assert m.frozen_encoder
    assert all(not p.requires_grad for p in m.encoder_parameters()) and m.encoder_parameters()
    b = batch_for(m, split)
    with torch.no_grad():
        direct = m(b)
        feats = {k: v.clone() for k, v in m.encode(b).items()}
        cached = m.head(feats, b)
    torch.testing.assert_close(direct.scores, cached.scores)
    trainable = build(info)
    assert not trainable.frozen_encoder and all(p.requires_grad for p in trainable.encoder_parameters())


def test_overfit_lowers_the_loss(split):
    for name, params in (("refatomnet", {}), ("fusion_model", {"fusion": "v2", "fusion_params": {"heads": 2}})):
        m = build(dataset_info(split), name, **params).train()
        cfg = TrainConfig(epochs=20, batch_size=8, lr=5e-3, schedule="constant", weight_decay=0.0,
                          select_metric="")
        hist = [h["loss"] for h in fit(m, split, None, cfg).history]
        assert hist[-1] < 0.85 * hist[0], (name, hist)


# ------------------------------------------------------------------- generic adapter
@pytest.mark.parametrize("variant", [s.id for s in list_fusions()])
def test_fusion_model_plugs_every_registered_variant(split, info, variant):
    params = {"heads": 2} if variant in {"v1", "v2", "v2b", "bottleneck"} else {}
    m = build(info, "fusion_model", fusion=variant, fusion_params=params)
    assert m.fusion.variant_id == variant
    out = m(batch_for(m, split))
    assert out.scores.shape == (8, 80) and torch.isfinite(out.scores).all()


def test_fusion_model_errors_name_the_key(info):
    with pytest.raises(ValueError, match="unknown hyper-parameter 'layerz'"):
        build(info, "fusion_model", fusion="v1", fusion_params={"layerz": 2})
    with pytest.raises(AdapterError, match="may not set 'streams'"):
        build(info, "fusion_model", fusion="v1", fusion_params={"streams": ["video"]})
    with pytest.raises(ValueError, match="unknown fusion variant 'v42'"):
        build(info, "fusion_model", fusion="v42")


# --------------------------------------------------------------------- paper setting
def test_base_size_fails_fast_offline(info, monkeypatch):
    monkeypatch.setenv("RAVAR_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-ravar-test-cache")
    with pytest.raises(WeightsUnavailable):
        get_adapter("refatomnet").build(info, {"size": "base", "dim": 768, "text_encoder": "blip2", "freeze": True})


def test_base_code_path_with_a_tiny_random_blip2(split, info, monkeypatch):
    """size='base' wiring (Q-Former image tokens averaged over frames, Q-Former text, class names
    embedded by the text path) on the VTR family's tiny random BLIP-2 instead of ViT-g."""
    import ravar_bench.adapters.refatomnet as ran
    from ravar_bench.adapters.vtr_encoders import Blip2Encoder

    monkeypatch.setattr(ran, "_blip2_encoder", lambda adapter, weights, freeze: Blip2Encoder(
        size="tiny", freeze=freeze, max_words=TEXT_LEN, adapter=adapter))
    m = build(info, size="base", text_encoder="blip2", class_embed="text", freeze=True)
    assert m.frozen_encoder and m.streams.n_video == 32
    b = batch_for(m, split)
    feats = m.encode(b)
    assert feats["video"].shape == (8, 32, 64) and feats["text"].shape == (8, TEXT_LEN, 64)
    out = m.head(feats, b)
    assert out.scores.shape == (8, 80) and torch.isfinite(out.scores).all()
    # the released setting: 32 Q-Former tokens are index-aligned without a video projection
    assert "video" not in m.fusion.align and m.fusion.tokens == 32


# -------------------------------------------------------------------- baseline files
@pytest.mark.parametrize("name", MINE)
def test_baseline_file(name, split, info):
    data = tomllib.loads((BASELINES / f"{name}.toml").read_text())
    head = data["baseline"]
    assert head["name"] == name
    spec = get_adapter(head["adapter"])
    assert spec.domain == head["domain"]
    spec.validate(data["params"], where=f"{name}.toml: [params]")
    assert data["params"]["size"] == "base" and data["params_tiny"]["size"] == "person"  # CPU: person stage
    m = spec.build(info, data["params_tiny"], where=f"{name}.toml: [params_tiny]")
    assert m(batch_for(m, split)).scores.shape == (8, 80)
    # the tiny table replaces [params]: it must repeat the switch that defines the row
    for key in set(data["params"]) - {"size", "dim", "text_encoder", "class_embed", "freeze", "weights", "hidden", "heads",
                                      "fusion_params"}:
        assert data["params_tiny"].get(key) == data["params"][key], key
    if "paper" in data:
        paper = data["paper"]
        assert paper["verified"] is False and "not checked against the PDF" in paper["source"]
        assert set(paper["val"]) == {"mIoU", "mAP", "AUROC"}


def test_paper_numbers_are_the_recovered_ones():
    def val(name):
        return tuple(tomllib.loads((BASELINES / f"{name}.toml").read_text())["paper"]["val"].values())

    ref = tomllib.loads((BASELINES / "refatomnet.toml").read_text())["paper"]
    assert tuple(ref["val"].values()) == (38.22, 55.98, 69.73) and tuple(ref["test"].values()) == (36.42, 57.52, 73.95)
    assert val("refatomnet_fusion_addition") == (27.30, 50.70, 65.31)
    assert val("refatomnet_wo_location") == (31.90, 55.21, 69.47)
    assert val("refatomnet_wo_caaf") == (36.21, 55.43, 69.66)
    assert val("refatomnet_wo_catf") == (35.01, 53.83, 67.71)
    assert val("refatomnet_fusion_concat") == (18.64, 52.23, 66.45)
    assert val("refatomnet_fusion_bottleneck") == (33.47, 50.97, 65.07)
    for n in (1, 4, 16, 64):  # the agent-count table was not recovered
        assert "paper" not in tomllib.loads((BASELINES / f"refatomnet_agents_{n}.toml").read_text())
