"""Make the PyPI wheel of mmaction2 1.2.0 importable, without touching site-packages.

Why this module exists: ``import mmaction.models`` fails on a clean install of
``mmaction2==1.2.0`` for three independent reasons, and every AAL adapter needs that import
(it is what registers the backbones in ``mmaction.registry.MODELS``):

1. The wheel lacks the package ``mmaction/models/localizers/drn`` although
   ``mmaction/models/localizers/__init__.py`` does ``from .drn.drn import DRN``
   (open-mmlab/mmaction2 issue 2714). We register a stub package for
   ``mmaction.models.localizers.drn`` / ``.drn.drn`` in ``sys.modules`` whose ``DRN`` raises a
   clear error if anyone tries to use it (DRN is a temporal-grounding localizer we never use).
2. ``mmaction.models.multimodal`` (VindLU) is imported whenever ``transformers>=4.28`` is
   installed and imports helpers that transformers 5 removed (``apply_chunking_to_forward`` …).
   mmaction2 already has a fallback for "transformers missing": it registers placeholders that
   raise on use. We take that path by setting ``mmaction.utils.dependency.WITH_MULTIMODAL`` to
   False before ``mmaction.models`` is imported.
3. ``mmaction.utils.dependency`` imports ``importlib_metadata``, which mmaction2 does not declare
   (our ``[mmaction]`` extra does). A missing package is reported in one sentence.

Call :func:`import_mmaction` (idempotent) before using anything under ``mmaction.models``;
:func:`build_backbone` builds a backbone from an mmaction2 config dict.
"""
from __future__ import annotations

import importlib
import sys
import types
import warnings
from pathlib import Path
from typing import Any

from torch import nn

SUPPORTED_VERSION = "1.2.0"
DRN_MODULES = ("mmaction.models.localizers.drn", "mmaction.models.localizers.drn.drn")


class MMActionUnavailable(ImportError):
    """mmaction2 (or one of its undeclared dependencies) cannot be imported here."""


class _MissingDRN(nn.Module):
    """Stand-in for mmaction2's DRN localizer, whose source the 1.2.0 wheel does not ship."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError(
            "mmaction2's DRN localizer is not shipped in the mmaction2 1.2.0 wheel "
            "(open-mmlab/mmaction2 issue 2714); ravar_bench.adapters.mmaction_compat replaced it "
            "with this placeholder so that the rest of mmaction.models can be imported")


def _require(module: str, hint: str) -> types.ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MMActionUnavailable(
            f"mmaction_compat: cannot import {module!r} ({exc}); install it with {hint}") from exc


def _drn_missing(mmaction_pkg: types.ModuleType) -> bool:
    """True when the installed mmaction2 lacks the DRN sources (checked on disk, not by
    importing, because importing the parent package is exactly what fails)."""
    root = Path(mmaction_pkg.__file__).parent
    return not (root / "models" / "localizers" / "drn" / "drn.py").is_file()


def _install_drn_stub() -> None:
    pkg = types.ModuleType(DRN_MODULES[0])
    pkg.__path__ = []  # a package, so that ``.drn.drn`` resolves below it
    pkg.__doc__ = "ravar_bench stub: the DRN sources are missing from the mmaction2 wheel"
    mod = types.ModuleType(DRN_MODULES[1])
    mod.DRN = _MissingDRN
    pkg.drn = mod
    for module in (pkg, mod):
        sys.modules.setdefault(module.__name__, module)


def _disable_multimodal() -> None:
    """Take mmaction2's own "no transformers" path, which registers raising placeholders."""
    dependency = importlib.import_module("mmaction.utils.dependency")
    dependency.WITH_MULTIMODAL = False


def import_mmaction() -> types.ModuleType:
    """Import ``mmaction.models`` with the three workarounds above; return it.

    Idempotent. If upstream fixes the wheel, the DRN stub is skipped (the real module exists).
    """
    if "mmaction.models" in sys.modules:
        return sys.modules["mmaction.models"]
    _require("importlib_metadata", "pip install importlib_metadata (mmaction2 uses it undeclared)")
    with warnings.catch_warnings():
        # mmcv-lite has no compiled ops; mmcv warns about MultiScaleDeformableAttention on import,
        # which no backbone here uses.
        warnings.filterwarnings("ignore", message=".*MultiScaleDeformableAttention.*")
        mmaction = _require("mmaction", "pip install 'ravar-bench[mmaction]'")
        if getattr(mmaction, "__version__", None) != SUPPORTED_VERSION:
            warnings.warn(f"mmaction_compat was written for mmaction2 {SUPPORTED_VERSION}, "
                          f"found {getattr(mmaction, '__version__', '?')}", stacklevel=2)
        if _drn_missing(mmaction):
            _install_drn_stub()
        _disable_multimodal()
        try:
            return importlib.import_module("mmaction.models")
        except Exception as exc:
            raise MMActionUnavailable(
                f"mmaction_compat: 'import mmaction.models' still fails after the workarounds "
                f"({exc.__class__.__name__}: {exc})") from exc


def build_backbone(cfg: dict[str, Any]) -> nn.Module:
    """Build an mmaction2 backbone from a config dict (``type`` + arguments) via
    ``mmaction.registry.MODELS``; an ``mmaction.`` scope prefix on ``type`` is accepted."""
    import_mmaction()
    from mmaction.registry import MODELS

    cfg = dict(cfg)
    kind = str(cfg.get("type", ""))
    if not kind:
        raise ValueError(f"mmaction_compat.build_backbone: config has no 'type': {cfg!r}")
    cfg["type"] = kind.split(".", 1)[1] if kind.startswith("mmaction.") else kind
    module = MODELS.build(cfg)
    if not isinstance(module, nn.Module):
        raise TypeError(f"mmaction_compat.build_backbone: {kind!r} built a {type(module).__name__}, "
                        f"not an nn.Module")
    return module


__all__ = ["import_mmaction", "build_backbone", "MMActionUnavailable", "DRN_MODULES", "SUPPORTED_VERSION"]
