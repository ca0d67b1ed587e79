"""AAL adapters (mmaction2 backbones through the compat shim): build, shapes, gradients, training
through the one loop, frozen-feature caching, RoI pooling, weights and model-zoo provenance."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

from conftest import make_random_split
from ravar_bench.adapters import aal
from ravar_bench.adapters.registry import get_adapter
from ravar_bench.adapters.weights import WeightsUnavailable
from ravar_bench.data.batches import BatchLoader, dataset_info
from ravar_bench.efficiency import measure
from ravar_bench.protocol import Batch
from ravar_bench.train import TrainConfig, evaluate, fit, predict

AAL = ["aal_i3d", "aal_x3d", "aal_slowfast", "aal_mvitv2", "aal_videomae", "aal_slowfast_roi"]
REPO = Path(__file__).resolve().parents[1]
FAST = TrainConfig(epochs=4, batch_size=8, eval_batch_size=8, lr=1e-2, schedule="constant",
                   warmup=0.0, weight_decay=0.0, select_metric="")


@pytest.fixture(scope="module")
def split():
    return make_random_split(n_clips=4, per_clip=2, frames=4, size=32)


@pytest.fixture(scope="module")
def info(split):
    return dataset_info(split)


def first_batch(split, model, n: int = 4) -> Batch:
    return next(iter(BatchLoader(split, model.inputs, n)))


def build(name: str, info, **params):
    torch.manual_seed(0)  # random init must not depend on which tests ran before
    return get_adapter(name).build(info, {"hidden": 64, **params})


@pytest.mark.parametrize("name", AAL)
def test_builds_trains_and_predicts(name, split, info):
    """Shapes, gradients reaching every trainable parameter, and a falling training loss."""
    model = build(name, info)
    assert get_adapter(name).domain == "AAL"
    with torch.no_grad():
        out = model.eval()(first_batch(split, model, 2))
    assert out.scores.shape == (2, 80) and out.box.shape == (2, 4)
    assert torch.isfinite(out.scores).all() and torch.isfinite(out.box).all()
    result = fit(model, split, None, FAST)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0] - 0.01, losses
    # fit leaves the gradients of its last step in place
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, f"parameters without gradient: {no_grad[:5]}"
    assert any(p.grad.abs().sum() > 0 for p in model.backbone.parameters())
    preds = predict(model, split, FAST)
    assert preds.keys == list(split.keys) and preds.scores.shape == (len(split), 80)


def test_evaluate_scores_a_split(split, info):
    pytest.importorskip("ravar_bench.metrics.profiles", reason="metrics module not in this checkout")
    model = build("aal_videomae", info)
    preds, metrics = evaluate(model, split, FAST)
    assert preds.boxes.shape == (len(split), 4) and metrics


@pytest.mark.parametrize("name", ["aal_i3d", "aal_slowfast_roi"])
def test_frozen_backbone_is_encoded_once_per_instance(name, split, info):
    model = build(name, info, freeze=True)
    assert model.frozen_encoder and not any(p.requires_grad for p in model.backbone.parameters())
    seen: list[int] = []
    encode = model.encode

    def counting_encode(batch):
        seen.extend(batch.index.tolist())
        return encode(batch)

    model.encode = counting_encode
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    result = fit(model, split, None, FAST)
    assert sorted(seen) == list(range(len(split))), "encode must run exactly once per instance"
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    after = model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "frozen backbone changed (BN stats?)"


def test_roi_pooling_follows_person_boxes(split, info):
    model = build("aal_slowfast_roi", info).eval()
    assert model.inputs == frozenset({"frames", "candidates"})
    batch = first_batch(split, model)
    with torch.no_grad():
        base = model(batch).scores
        moved = Batch(**{**batch.__dict__, "cand_boxes": batch.cand_boxes.flip(-1).clamp(0, 1).sort(-1).values})
        assert not torch.allclose(model(moved).scores, base), "person boxes must matter"
        labels = batch.cand_labels.clone()
        labels[:, 1:] = 1  # only candidate 0 is a person now; the others are objects
        only_first = Batch(**{**batch.__dict__, "cand_labels": labels})
        ref = model(only_first).scores
        boxes = batch.cand_boxes.clone()
        boxes[:, 1:] = torch.tensor([0.0, 0.0, 1.0, 1.0])  # moving non-person boxes changes nothing
        assert torch.allclose(model(Batch(**{**only_first.__dict__, "cand_boxes": boxes})).scores, ref)
        dropped = Batch(**{**batch.__dict__, "cand_mask": torch.zeros_like(batch.cand_mask)})
        assert torch.isfinite(model(dropped).scores).all(), "no person: whole-frame fallback"


@pytest.mark.parametrize("name,frames,height,width", [
    ("aal_i3d", 1, 32, 32), ("aal_slowfast", 3, 33, 47), ("aal_videomae", 3, 47, 33),
    ("aal_mvitv2", 1, 33, 47), ("aal_x3d", 2, 40, 32)])
def test_any_clip_geometry(name, frames, height, width):
    odd = make_random_split(n_clips=2, per_clip=1, frames=frames, size=32)
    model = build(name, dataset_info(odd)).eval()
    clip = torch.rand(2, frames, 3, height, width)
    batch = Batch(keys=["a", "b"], index=torch.arange(2), gt_box=torch.zeros(2, 4),
                  labels=torch.zeros(2, 80), frames=clip)
    with torch.no_grad():
        out = model(batch)
    assert out.scores.shape == (2, 80)
    t = model.prepare(clip).shape[2]
    assert t >= frames and t % aal.temporal_constraint(model.backbone_cfg)[0] == 0


def test_slowfast_clip_length_is_divisible_by_alpha(info):
    model = build("aal_slowfast", info, num_frames=6)
    assert model.backbone_cfg["resample_rate"] == 4 and model.clip_len == 8


def test_geometry_parameters_are_checked(info):
    with pytest.raises(ValueError, match="aal_slowfast_roi: parameter 'num_frames' must be >= 1"):
        build("aal_slowfast_roi", info, num_frames=0)
    with pytest.raises(ValueError, match="parameter 'resolution' must be >= 32"):
        build("aal_i3d", info, resolution=16)
    assert build("aal_i3d", info, resolution=48).prepare(torch.rand(1, 4, 3, 32, 40)).shape[-2:] == (48, 48)


def test_normalisation_uses_zoo_mean_std(info):
    model = build("aal_i3d", info)
    mean = torch.tensor(aal.zoo_config("i3d").mean).view(1, 1, 3, 1, 1) / 255.0
    clip = mean.expand(1, model.clip_len, 3, 32, 32).contiguous()
    assert model.prepare(clip).abs().max() < 1e-5


def test_efficiency_of_an_aal_model(split, info):
    model = build("aal_i3d", info).train()
    stats = measure(model, first_batch(split, model), repeats=2)
    assert model.training, "measure must restore train mode"
    assert stats["params_total"] > 0 and stats["flops_per_sample"] > 0 and stats["latency_ms"] > 0


# ------------------------------------------------------------------------------ weights
def _save_checkpoint(path: Path, backbone: torch.nn.Module, extra: dict | None = None) -> None:
    state = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
    state["cls_head.fc.weight"] = torch.zeros(3, 3)
    torch.save({"state_dict": state, "meta": {"epoch": np.int64(3), "lr": np.float32(0.1),
                                              **(extra or {})}}, path)


def test_weights_load_from_a_local_mmaction_checkpoint(tmp_path, info):
    source = build("aal_x3d", info)
    path = tmp_path / "x3d.pth"
    _save_checkpoint(path, source.backbone)
    loaded = build("aal_x3d", info, weights=str(path))
    for (k, a), b in zip(source.backbone.state_dict().items(), loaded.backbone.state_dict().values()):
        assert torch.equal(a, b), k


class NotAllowed:
    """A global that weights_only loading must refuse."""


def test_checkpoint_with_foreign_objects_is_refused_by_name(tmp_path, info):
    source = build("aal_x3d", info)
    path = tmp_path / "evil.pth"
    _save_checkpoint(path, source.backbone, {"obj": NotAllowed()})
    with pytest.raises(WeightsUnavailable, match="NotAllowed"):
        build("aal_x3d", info, weights=str(path))


def test_checkpoint_of_another_architecture_is_named(tmp_path, info):
    path = tmp_path / "x3d.pth"
    _save_checkpoint(path, build("aal_x3d", info).backbone)
    with pytest.raises(ValueError, match="lack .* backbone entries"):
        build("aal_mvitv2", info, weights=str(path))
    state = {f"backbone.{k}": v for k, v in build("aal_x3d", info).backbone.state_dict().items()}
    state[next(k for k in state if k.endswith("conv.weight"))] = torch.zeros(1)
    torch.save(state, path)
    with pytest.raises(ValueError, match="do not fit"):
        build("aal_x3d", info, weights=str(path))


def test_offline_url_fails_fast_naming_the_file(tmp_path, info, monkeypatch):
    monkeypatch.setenv("RAVAR_OFFLINE", "1")
    monkeypatch.setenv("RAVAR_WEIGHTS", str(tmp_path))
    url = aal.FAMILIES["x3d"].weights
    with pytest.raises(WeightsUnavailable) as err:
        build("aal_x3d", info, weights=url)
    message = str(err.value)
    assert "aal_x3d" in message and url.rsplit("/", 1)[1] in message and str(tmp_path) in message


def test_missing_local_file_is_named(info):
    with pytest.raises(WeightsUnavailable, match="does not exist"):
        build("aal_x3d", info, weights="/nonexistent/x3d.pth")


# ------------------------------------------------------------------------------ model zoo
@pytest.mark.parametrize("family", sorted(aal.FAMILIES))
def test_zoo_config_and_weights_come_from_the_wheel(family):
    yaml = pytest.importorskip("yaml")
    fam, zoo = aal.FAMILIES[family], aal.zoo_config(family)
    assert zoo.clip_len in (16, 32) and zoo.crop in (224, 256) and len(zoo.mean) == 3
    metafile = zoo.path.parent / "metafile.yml"
    models = yaml.safe_load(metafile.read_text())["Models"]
    entry = [m for m in models if m["Config"].endswith(fam.config)]
    assert len(entry) == 1, f"{fam.config} not in {metafile}"
    assert entry[0]["Weights"] == fam.weights


def test_base_x3d_matches_the_model_zoo_architecture(info):
    model = build("aal_x3d", info, size="base")
    n = sum(p.numel() for p in model.backbone.parameters())
    assert model.feature_dim == 432 and 1.9e6 < n < 2.3e6  # X3D-M backbone, as in mmaction2
    assert model.clip_len == 16 and model.resolution == 256


@pytest.mark.slow
@pytest.mark.parametrize("name,dim", [("aal_i3d", 2048), ("aal_slowfast", 2304),
                                      ("aal_mvitv2", 768), ("aal_videomae", 768)])
def test_base_backbones_build(name, dim, info):
    assert build(name, info, size="base").feature_dim == dim


def test_one_class_registered_once_per_variant_row():
    """The names live in VARIANTS only; a row's pooling is that name's default, its family is bound."""
    from ravar_bench.adapters.registry import list_adapters

    rows = {s.name: s for s in list_adapters() if s.cls is aal.AALModel}
    assert sorted(rows) == sorted(aal.VARIANTS) == sorted(AAL)
    for name, spec in rows.items():
        row = aal.VARIANTS[name]
        assert spec.bind == {"variant": row} and row.family in aal.FAMILIES and spec.summary == row.summary
        assert "variant" not in spec.parameters() and spec.parameters()["pool"].default == row.pool
    assert aal.VARIANTS["aal_slowfast_roi"].pool == "roi" and aal.VARIANTS["aal_slowfast"].pool == "global"
    assert not hasattr(aal.AALModel, "adapter_name")


@pytest.mark.parametrize("stem", ["i3d", "x3d", "slowfast", "mvitv2", "videomae", "slowfast_roi"])
def test_baseline_files_name_real_adapters_and_zoo_weights(stem, info):
    data = tomllib.loads((REPO / "baselines" / f"{stem}.toml").read_text())
    spec = get_adapter(data["baseline"]["adapter"])
    assert data["baseline"]["name"] == stem and data["baseline"]["domain"] == spec.domain == "AAL"
    spec.validate(data["params"], f"baselines/{stem}.toml [params]")
    # CPU scale: the person-level AAL adapter (per-person RoI features of the frozen person stage)
    tiny = get_adapter(data["baseline"]["adapter_tiny"])
    assert tiny.name == "person_aal" and tiny.domain == "AAL"
    tiny.validate(data["params_tiny"], f"baselines/{stem}.toml [params_tiny]")
    assert data["params"]["size"] == "base"
    family = aal.VARIANTS[spec.name].family
    assert data["params"]["weights"] == aal.FAMILIES[family].weights
    TrainConfig.from_dict(data.get("train", {}), f"baselines/{stem}.toml [train]")
