"""Atomic-action-localization (AAL) baselines: AVA-world video backbones from mmaction2 that never
read the sentence (ravar-spec §4.1, §6: the paper's I3D and X3D rows score mIoU ≈ 0 and an mAP
near the class prior).

Every adapter is ``mmaction2 backbone -> clip features -> pooling -> ActionBoxHeads`` and is
trained by the one loop. One class, :class:`AALModel`, is registered once per row of
:data:`VARIANTS` (name, backbone family, default pooling), the way timm declares variants; the
families (:data:`FAMILIES`: ResNet3d, X3D, ResNet3dSlowFast, MViT, VisionTransformer) say where
each backbone's model-zoo config and checkpoint live. A new variant is one row.

Parameters (all adapters):

* ``size``: ``"tiny"`` = random init, a few layers, a few channels; trains on CPU in seconds on
  32–96 px clips. CNN families use the last-stage stride 1 of mmaction2's AVA detectors, so a
  32 px frame still gives a 2×2 grid (RoI pooling and BatchNorm need more than one cell).
  ``"base"`` = the backbone of the mmaction2 model-zoo config named in :data:`FAMILIES`, read from
  the config files inside the mmaction2 wheel, so this module and the model zoo cannot drift.
* ``weights``: an mmaction2 model-zoo checkpoint URL or a local path (``None``: random init).
  URLs resolve through :func:`~ravar_bench.adapters.weights.resolve_checkpoint` (offline mode
  fails fast naming the file and where to put it); files load with ``weights_only=True`` and the
  ``backbone.`` prefix of recognizer / detector checkpoints is stripped.
* ``freeze``: frozen backbone (``frozen_encoder=True``): the loop caches ``encode`` once per
  instance and trains the heads only; BatchNorm statistics stay fixed.
* ``pool``: ``"global"`` averages the feature map over time and space. ``"roi"`` RoI-aligns the
  time-averaged map inside every candidate *person* box (``cand_labels == 0``) and reduces over
  persons with ``person_reduce`` (mean or max): what person-level features buy without text.
  A clip without any person candidate falls back to the whole-frame box. ``aal_slowfast_roi``
  is ``aal_slowfast`` with ``pool="roi"`` by default, i.e. the layout of mmaction2's AVA detector.
* ``num_frames`` / ``resolution``: the clip is resampled (trilinear) to ``num_frames`` frames and
  a square ``resolution``; ``None`` keeps the data's geometry for ``tiny`` and uses the model-zoo
  clip length and crop for ``base``. Constraints are enforced by rounding up: SlowFast needs T
  divisible by its ``resample_rate`` (alpha), VideoMAE needs T equal to its ``num_frames``
  (a multiple of the tubelet size 2) and sides divisible by the patch size.

Frames arrive in [0, 1] RGB and are normalised with the zoo config's mean/std in 0..255 scale.
"""
from __future__ import annotations

import copy
import logging
import math
import pickle
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..protocol import Batch, DatasetInfo, ModelOutput, RavarModel
from .common import ActionBoxHeads, roi_pool
from .paper_configs import is_random
from .registry import register_adapter
from .weights import WeightsUnavailable, resolve_checkpoint

Size = Literal["tiny", "base"]
Pool = Literal["global", "roi"]
PersonReduce = Literal["mean", "max"]

MIN_SIDE = 32


# ------------------------------------------------------------------------------ family table
def _tiny_i3d(t: int, side: int) -> dict[str, Any]:
    return dict(type="ResNet3d", depth=18, base_channels=8, pretrained=None, pretrained2d=False,
                conv1_kernel=(5, 7, 7), conv1_stride_t=1, pool1_stride_t=2,
                inflate=((1, 1), (1, 0), (1, 0), (0, 1)), spatial_strides=(1, 2, 2, 1),
                zero_init_residual=False)


def _tiny_x3d(t: int, side: int) -> dict[str, Any]:
    return dict(type="X3D", gamma_w=0.25, gamma_b=2.25, gamma_d=0.5, spatial_strides=(2, 2, 2, 1))


def _tiny_slowfast(t: int, side: int) -> dict[str, Any]:
    slow = dict(type="resnet3d", depth=18, base_channels=8, pretrained=None, lateral=True,
                conv1_kernel=(1, 7, 7), dilations=(1, 1, 1, 1), conv1_stride_t=1, pool1_stride_t=1,
                inflate=(0, 0, 1, 1), spatial_strides=(1, 2, 2, 1), fusion_kernel=5)
    fast = dict(type="resnet3d", depth=18, base_channels=2, pretrained=None, lateral=False,
                conv1_kernel=(5, 7, 7), conv1_stride_t=1, pool1_stride_t=1,
                spatial_strides=(1, 2, 2, 1))
    return dict(type="ResNet3dSlowFast", resample_rate=4, speed_ratio=4, channel_ratio=4,
                pretrained=None, slow_pathway=slow, fast_pathway=fast)


def _tiny_mvit(t: int, side: int) -> dict[str, Any]:
    arch = dict(embed_dims=32, num_layers=2, num_heads=1, downscale_indices=[1])
    return dict(type="MViT", arch=arch, spatial_size=side, temporal_size=t, adaptive_kv_stride=(1, 4, 4),
                patch_cfg=dict(kernel_size=(3, 7, 7), stride=(2, 8, 8), padding=(1, 3, 3)))


def _tiny_videomae(t: int, side: int) -> dict[str, Any]:
    return dict(type="VisionTransformer", img_size=side, patch_size=16, embed_dims=64, depth=2,
                num_heads=2, num_frames=t, tubelet_size=2, use_mean_pooling=False,
                return_feat_map=True)


@dataclass(frozen=True)
class Family:
    """One mmaction2 backbone family: where its model-zoo config and checkpoint live."""

    key: str
    config: str  # path under mmaction/.mim/configs
    weights: str  # the model-zoo checkpoint of ``config`` (from its metafile.yml)
    tiny: Callable[[int, int], dict[str, Any]]  # (num_frames, side) -> backbone config
    fixed_frames: bool = False  # the backbone only accepts its configured T (VideoMAE)


FAMILIES: dict[str, Family] = {f.key: f for f in (
    # I3D ResNet3d-50, Kinetics-400
    Family("i3d", "recognition/i3d/i3d_imagenet-pretrained-r50_8xb8-32x2x1-100e_kinetics400-rgb.py",
           "https://download.openmmlab.com/mmaction/v1.0/recognition/i3d/"
           "i3d_imagenet-pretrained-r50_8xb8-32x2x1-100e_kinetics400-rgb/"
           "i3d_imagenet-pretrained-r50_8xb8-32x2x1-100e_kinetics400-rgb_20220812-e213c223.pth",
           _tiny_i3d),
    # X3D-M, Kinetics-400 (converted from PySlowFast)
    Family("x3d", "recognition/x3d/x3d_m_16x5x1_facebook-kinetics400-rgb.py",
           "https://download.openmmlab.com/mmaction/v1.0/recognition/x3d/facebook/"
           "x3d_m_16x5x1_facebook-kinetics400-rgb_20201027-3f42382a.pth",
           _tiny_x3d),
    # SlowFast-R50 8x8: the backbone of the AVA 2.2 detector
    Family("slowfast", "detection/slowfast/slowfast_kinetics400-pretrained-r50_8xb6-8x8x1-cosine-10e_ava22-rgb.py",
           "https://download.openmmlab.com/mmaction/v1.0/detection/slowfast/"
           "slowfast_kinetics400-pretrained-r50_8xb6-8x8x1-cosine-10e_ava22-rgb/"
           "slowfast_kinetics400-pretrained-r50_8xb6-8x8x1-cosine-10e_ava22-rgb_20220906-d934a48f.pth",
           _tiny_slowfast),
    # MViTv2-B, Kinetics-400 (converted from PySlowFast)
    Family("mvitv2", "recognition/mvit/mvit-base-p244_32x3x1_kinetics400-rgb.py",
           "https://download.openmmlab.com/mmaction/v1.0/recognition/mvit/converted/"
           "mvit-base-p244_32x3x1_kinetics400-rgb_20221021-f392cd2d.pth",
           _tiny_mvit),
    # VideoMAE ViT-B/16: the backbone of the AVA-Kinetics detector
    Family("videomae", "detection/videomae/vit-base-p16_videomae-k400-pre_8xb8-16x4x1-20e-adamw_ava-kinetics-rgb.py",
           "https://download.openmmlab.com/mmaction/v1.0/detection/videomae/"
           "vit-base-p16_videomae-k400-pre_8xb8-16x4x1-20e-adamw_ava-kinetics-rgb/"
           "vit-base-p16_videomae-k400-pre_8xb8-16x4x1-20e-adamw_ava-kinetics-rgb_20230314-3dafab75.pth",
           _tiny_videomae, fixed_frames=True),
)}


@dataclass(frozen=True)
class Variant:
    """One registered AAL adapter: its name, its backbone family and the pooling it defaults to."""

    name: str
    family: str  # a key of FAMILIES
    summary: str
    pool: Pool = "global"


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("aal_i3d", "i3d", "I3D (mmaction2 ResNet3d) clip features -> heads; text-blind (paper row I3D)."),
    Variant("aal_x3d", "x3d", "X3D clip features -> heads; text-blind (paper row X3D)."),
    Variant("aal_slowfast", "slowfast",
            "SlowFast (mmaction2 ResNet3dSlowFast, AVA backbone) clip features -> heads; text-blind."),
    Variant("aal_mvitv2", "mvitv2", "MViTv2 (mmaction2 MViT) clip features -> heads; text-blind."),
    Variant("aal_videomae", "videomae",
            "VideoMAE ViT (mmaction2 VisionTransformer) clip features -> heads; text-blind."),
    # the layout of mmaction2's AVA detector: person RoIs on the SlowFast map
    Variant("aal_slowfast_roi", "slowfast",
            "SlowFast features RoI-pooled in the candidate person boxes, reduced over persons; no text.",
            pool="roi"),
)}


@dataclass(frozen=True)
class ZooConfig:
    """What this module takes from an mmaction2 model-zoo config file."""

    backbone: dict[str, Any]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    clip_len: int
    crop: int
    path: Path = field(compare=False, default=Path())


def _config_root() -> Path:
    from .mmaction_compat import import_mmaction

    import_mmaction()
    import mmaction

    return Path(mmaction.__file__).parent / ".mim" / "configs"


@lru_cache(maxsize=None)
def zoo_config(family: str) -> ZooConfig:
    """Read backbone, normalisation, clip length and test crop from the wheel's config file."""
    from mmengine.config import Config

    fam = FAMILIES[family]
    path = _config_root() / fam.config
    if not path.is_file():
        raise FileNotFoundError(f"aal_{family}: mmaction2 config {path} is missing from the installed wheel")
    cfg = Config.fromfile(str(path))
    model = cfg.model.to_dict() if hasattr(cfg.model, "to_dict") else dict(cfg.model)
    pre = model.get("data_preprocessor", {})
    pipeline = list(cfg.get("val_pipeline") or cfg.get("test_pipeline") or [])
    clip_len, crop = None, None
    for step in pipeline:
        kind = str(step.get("type", "")).split(".")[-1]
        if kind in ("SampleFrames", "SampleAVAFrames"):
            clip_len = int(step["clip_len"])
        elif kind in ("CenterCrop", "ThreeCrop", "TenCrop"):
            crop = int(step["crop_size"])
        elif kind == "Resize" and crop is None:
            crop = int(max(step["scale"]))  # AVA pipelines: short side 256, no crop
    if clip_len is None or crop is None or "mean" not in pre:
        raise ValueError(f"aal_{family}: cannot read clip length / crop / mean from {path}")
    return ZooConfig(backbone=dict(model["backbone"]), mean=tuple(pre["mean"]), std=tuple(pre["std"]),
                     clip_len=clip_len, crop=crop, path=path)


def _no_pretrained(cfg: dict[str, Any]) -> dict[str, Any]:
    """Drop the config's own pretrained pointers (torchvision:// …): weights load only through
    ``weights=``, so a build never touches the network behind the user's back."""
    out = copy.deepcopy(cfg)
    out.pop("init_cfg", None)
    for key in ("pretrained", "pretrained2d"):
        if key in out:
            out[key] = None if key == "pretrained" else False
    for sub in ("slow_pathway", "fast_pathway"):
        if isinstance(out.get(sub), dict):
            out[sub] = _no_pretrained(out[sub])
    return out


def temporal_constraint(cfg: dict[str, Any]) -> tuple[int, int]:
    """(multiple, minimum) for the clip length T, so every temporal stride and pooling of the
    backbone has input left: SlowFast needs T divisible by its resample_rate (alpha), VideoMAE
    by its tubelet size, and I3D's stem strides and pool2 consume a factor of 8 by default."""
    kind = str(cfg["type"]).split(".")[-1]
    if kind == "ResNet3dSlowFast":
        rate = int(cfg.get("resample_rate", 8))
        return rate, rate
    if kind == "VisionTransformer":
        tubelet = int(cfg.get("tubelet_size", 2))
        return tubelet, tubelet
    if kind == "ResNet3d":
        stride = int(cfg.get("conv1_stride_t", 1)) * int(cfg.get("pool1_stride_t", 1))
        return 1, stride * (2 if cfg.get("with_pool2", True) else 1)
    return 1, 1


def spatial_multiple(cfg: dict[str, Any]) -> int:
    return int(cfg.get("patch_size", 1)) if str(cfg["type"]).endswith("VisionTransformer") else 1


def round_up(value: int, multiple: int, minimum: int = 1) -> int:
    return max(minimum, int(math.ceil(value / multiple)) * multiple)


# ------------------------------------------------------------------------------ weights
_MULTIARRAY = (np._core if hasattr(np, "_core") else np.core).multiarray  # numpy 2 / numpy 1
_NUMPY_GLOBALS: dict[str, Any] = {
    "numpy.dtype": np.dtype, "numpy.ndarray": np.ndarray,
    "numpy.core.multiarray.scalar": _MULTIARRAY.scalar,
    "numpy._core.multiarray.scalar": _MULTIARRAY.scalar,
    "numpy.core.multiarray._reconstruct": _MULTIARRAY._reconstruct,
    "numpy._core.multiarray._reconstruct": _MULTIARRAY._reconstruct,
}


def _numpy_global(name: str) -> Any | None:
    """Numpy array/scalar/dtype builders only (they build values from the stream, run nothing)."""
    if name in _NUMPY_GLOBALS:
        return _NUMPY_GLOBALS[name]
    if name.startswith("numpy.dtypes.") and name.endswith("DType"):
        return getattr(getattr(np, "dtypes", None), name.rsplit(".", 1)[1], None)
    return None


def load_state_dict_file(path: Path, adapter: str) -> dict[str, torch.Tensor]:
    """Load a checkpoint with ``weights_only=True``; numpy metadata (mmengine stores epoch/iter
    as numpy scalars) is admitted through an explicit allow-list, anything else is refused by name."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        allowed = {n: _numpy_global(n) for n in unsafe}
        refused = sorted(n for n, obj in allowed.items() if obj is None)
        if refused:
            raise WeightsUnavailable(
                f"{adapter}: checkpoint {path} contains objects other than tensors and numpy values "
                f"({', '.join(refused)}); weights are only read with torch.load(weights_only=True): "
                f"save its 'state_dict' entry alone with torch.save on a machine where you trust the "
                f"file and pass that path as weights=") from None
        dtypes = [cls for cls in vars(getattr(np, "dtypes", object)).values()
                  if isinstance(cls, type) and cls.__name__.endswith("DType")]
        # numpy dtype instances unpickle through their DType classes, which the scan above does not list
        with torch.serialization.safe_globals([(obj, name) for name, obj in allowed.items()] + dtypes):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsUnavailable(f"{adapter}: {path} holds no state dict of tensors")
    return state


def backbone_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keep the ``backbone.`` entries of a recognizer/detector checkpoint, prefix stripped; a
    checkpoint without that prefix is taken to be a bare backbone state dict."""
    prefixed = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    return prefixed or dict(state)


def load_backbone_weights(backbone: nn.Module, spec: str, adapter: str) -> None:
    """Resolve ``spec`` (URL or path), load it and check that every backbone weight was found."""
    path = resolve_checkpoint(spec, adapter)
    state = backbone_state(load_state_dict_file(path, adapter))
    own = backbone.state_dict()
    shape_errors = [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                    for k, v in state.items() if k in own and own[k].shape != v.shape]
    if shape_errors:
        raise ValueError(f"{adapter}: weights {path} do not fit this backbone (same family and size?): "
                         + "; ".join(shape_errors[:3]))
    result = backbone.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(f"{adapter}: weights {path} lack {len(missing)} backbone entries, e.g. "
                         f"{', '.join(missing[:3])}")


def _quiet_init(backbone: nn.Module) -> None:
    """Random init as mmaction2 does it, without mmengine's per-parameter INFO log."""
    if not hasattr(backbone, "init_weights"):
        return
    from mmengine.logging import MMLogger

    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        backbone.init_weights()
    finally:
        logger.setLevel(level)


# ------------------------------------------------------------------------------ the model
class AALModel(RavarModel):
    """mmaction2 backbone -> pooled clip (or person) features -> the standard 80-way + box heads.

    Text-blind by construction: it never reads ``Batch.text``. ``variant`` is bound by the
    registry (one registration per :data:`VARIANTS` row), so it is not a parameter."""

    inputs = frozenset({"frames"})

    def __init__(self, info: DatasetInfo, *, variant: Variant, size: Size = "tiny", weights: str | None = None,
                 freeze: bool = False, pool: Pool = "global", person_reduce: PersonReduce = "max",
                 num_frames: int | None = None, resolution: int | None = None,
                 hidden: int = 256) -> None:
        super().__init__()
        from .mmaction_compat import build_backbone

        name, family = variant.name, variant.family
        if family not in FAMILIES:
            raise TypeError(f"{name} names no AAL family; use one of {sorted(FAMILIES)}")
        self.variant = variant
        for key, value in (("num_frames", num_frames), ("resolution", resolution)):
            if value is not None and value < (1 if key == "num_frames" else MIN_SIDE):
                raise ValueError(f"{name}: parameter {key!r} must be >= "
                                 f"{1 if key == 'num_frames' else MIN_SIDE}, got {value}")
        zoo = zoo_config(family)
        frames = num_frames or (info.num_frames if size == "tiny" else zoo.clip_len)
        side = resolution or (max(MIN_SIDE, *info.frame_size) if size == "tiny" else zoo.crop)
        cfg = FAMILIES[family].tiny(frames, side) if size == "tiny" else _no_pretrained(zoo.backbone)
        multiple, minimum = temporal_constraint(cfg)
        self.clip_len = round_up(frames, multiple, minimum)
        self.side_multiple = spatial_multiple(cfg)
        if FAMILIES[family].fixed_frames:
            cfg["num_frames"] = self.clip_len
        # tiny keeps the data's H, W unless asked; base (or an explicit resolution) resizes square
        self.resolution = (round_up(side, self.side_multiple, MIN_SIDE)
                           if (resolution is not None or size == "base") else None)
        self.backbone_cfg = cfg
        self.backbone = build_backbone(cfg)
        _quiet_init(self.backbone)
        if weights and not is_random(weights):  # "random": the zoo config without load_from
            load_backbone_weights(self.backbone, weights, name)
        self.register_buffer("mean", torch.tensor(zoo.mean, dtype=torch.float32).view(1, 3, 1, 1, 1) / 255.0,
                             persistent=False)
        self.register_buffer("std", torch.tensor(zoo.std, dtype=torch.float32).view(1, 3, 1, 1, 1) / 255.0,
                             persistent=False)
        self.pool, self.person_reduce = pool, person_reduce
        self.inputs = frozenset({"frames", "candidates"}) if pool == "roi" else frozenset({"frames"})
        self.head_inputs = frozenset()  # the cache holds everything the head needs
        self.feature_dim = self._probe_dim()
        self.heads = ActionBoxHeads(self.feature_dim, info, hidden)
        if freeze:
            self.backbone.requires_grad_(False)
        self.frozen_encoder = freeze

    # -- input geometry and backbone output ---------------------------------------------------
    def prepare(self, frames: torch.Tensor) -> torch.Tensor:
        """(B,T,3,H,W) in [0,1] -> normalised (B,3,T',H',W') at the backbone's geometry."""
        x = frames.permute(0, 2, 1, 3, 4)
        t, h, w = x.shape[2:]
        if self.resolution is not None:
            th = tw = self.resolution
        else:
            th, tw = (round_up(s, self.side_multiple, MIN_SIDE) for s in (h, w))
        if (t, h, w) != (self.clip_len, th, tw):
            x = F.interpolate(x, size=(self.clip_len, th, tw), mode="trilinear", align_corners=False)
        return (x - self.mean) / self.std

    def feature_grid(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone output -> a time-averaged grid (B, C, h, w); SlowFast concatenates pathways."""
        out = self.backbone(x)
        maps: list[torch.Tensor] = []
        for item in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(item, (tuple, list)):  # MViT: [patch tokens, cls token]
                item = item[0]
            maps.append(item.mean(2))
        size = maps[0].shape[-2:]
        maps = [m if m.shape[-2:] == size else F.interpolate(m, size=size, mode="bilinear") for m in maps]
        return torch.cat(maps, 1)

    def _probe_dim(self) -> int:
        side = max(MIN_SIDE, self.side_multiple)
        was_training = self.backbone.training
        self.backbone.eval()
        with torch.no_grad():
            grid = self.feature_grid(torch.zeros(1, 3, self.clip_len, side, side))
        self.backbone.train(was_training)
        return int(grid.shape[1])

    # -- RavarModel -------------------------------------------------------------------------
    def encode(self, batch: Batch) -> dict[str, torch.Tensor]:
        if batch.frames is None:
            raise ValueError(f"{self.variant.name}: the batch has no frames (inputs={sorted(self.inputs)})")
        grid = self.feature_grid(self.prepare(batch.frames))
        if self.pool == "global":
            return {"clip": grid.mean((2, 3))}
        if batch.cand_boxes is None:
            raise ValueError(f"{self.variant.name}: pool='roi' needs candidate boxes in the batch")
        persons = batch.cand_mask & (batch.cand_labels == 0)
        # one extra slot, the whole frame, used only where the clip has no person candidate
        whole = torch.tensor([0.0, 0.0, 1.0, 1.0], device=grid.device).expand(len(persons), 1, 4)
        boxes = torch.cat([batch.cand_boxes.to(grid.dtype), whole.to(grid.dtype)], 1)
        persons = torch.cat([persons, ~persons.any(1, keepdim=True)], 1)
        return {"persons": roi_pool(grid, boxes), "person_mask": persons}

    def head(self, features: dict[str, torch.Tensor], batch: Batch) -> ModelOutput:
        if self.pool == "global":
            pooled = features["clip"]
        else:
            feats, mask = features["persons"], features["person_mask"].bool()
            if self.person_reduce == "max":
                pooled = feats.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)
            else:
                m = mask.unsqueeze(-1).to(feats.dtype)
                pooled = (feats * m).sum(1) / m.sum(1).clamp_min(1.0)
        scores, box = self.heads(pooled)
        return ModelOutput(scores, box)

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self.backbone.parameters())

    def train(self, mode: bool = True) -> "AALModel":
        super().train(mode)
        if self.frozen_encoder:  # frozen means deterministic: no BatchNorm updates, no drop-path
            self.backbone.eval()
        return self


for variant in VARIANTS.values():  # one registration per row: the names live in VARIANTS only
    register_adapter(variant.name, domain="AAL", summary=variant.summary, bind={"variant": variant},
                     defaults={"pool": variant.pool})(AALModel)
del variant


__all__ = ["FAMILIES", "Family", "VARIANTS", "Variant", "ZooConfig", "zoo_config", "AALModel",
           "load_backbone_weights", "load_state_dict_file", "backbone_state"]
