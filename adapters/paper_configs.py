"""Random-weight builds at paper scale: ``weights = "random"``.

Why: the paper-scale rows name multi-gigabyte checkpoints that a CPU machine without network
cannot fetch, yet whether ``scale = "paper"`` *builds*, what shapes its tensors have and what it
costs can be checked without them. ``weights = "random"`` builds exactly the architecture the
real weights would fill (same config, same input sizes) with random initialisation, and never
touches the network.

The transformers configs of the four paper-scale checkpoints are written into the repository
(``adapters/configs/<name>.json``) from their published values, each file naming its source, so
that no hub access is needed to know the architecture. open_clip and mmaction2 need no such file:
open_clip ships its model configs (``create_model(name, pretrained=None)``) and mmaction2 its
model-zoo configs (read without ``load_from``).
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from .weights import WeightsUnavailable

#: The ``weights`` value that asks for a random-weight build of the paper-scale architecture.
RANDOM_WEIGHTS = "random"

#: Hub id -> config file under ``adapters/configs``.
CONFIG_FILES: dict[str, str] = {
    "Salesforce/blip2-itm-vit-g": "blip2-itm-vit-g.json",
    "microsoft/xclip-base-patch16": "xclip-base-patch16.json",
    "google/owlv2-base-patch16-ensemble": "owlv2-base-patch16-ensemble.json",
    "llava-hf/LLaVA-NeXT-Video-7B-hf": "llava-next-video-7b.json",
}


def is_random(spec: str | None) -> bool:
    """True for ``weights = "random"`` (checked before any path or hub lookup)."""
    return isinstance(spec, str) and spec.strip().lower() == RANDOM_WEIGHTS


def configs_dir() -> Path:
    return Path(__file__).resolve().parent / "configs"


@lru_cache(maxsize=None)
def config_record(hub_id: str) -> dict[str, Any]:
    """The stored record of ``hub_id``: ``hub_id``, ``class``, ``source`` and ``config``."""
    name = CONFIG_FILES.get(hub_id)
    if name is None:
        raise WeightsUnavailable(
            f"weights='random' has no stored config for {hub_id!r}; stored: {', '.join(sorted(CONFIG_FILES))} "
            f"(add adapters/configs/<name>.json from the checkpoint's published config.json)")
    path = configs_dir() / name
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise WeightsUnavailable(f"weights='random': config file {path} for {hub_id!r} is missing") from None
    except json.JSONDecodeError as exc:
        raise WeightsUnavailable(f"weights='random': config file {path} is not valid JSON ({exc})") from exc
    for key in ("hub_id", "class", "source", "config"):
        if key not in record:
            raise WeightsUnavailable(f"weights='random': config file {path} lacks the key {key!r}")
    return record


def paper_config(hub_id: str) -> Any:
    """The transformers config of ``hub_id`` built from the stored record (no network)."""
    from transformers import AutoConfig

    values = dict(config_record(hub_id)["config"])
    return AutoConfig.for_model(values.pop("model_type"), **values)


def random_hf_model(cls: Any, hub_id: str, adapter: str) -> Any:
    """``cls(config)`` for the stored config of ``hub_id``: the real architecture, random weights."""
    expected = config_record(hub_id)["class"]
    if cls.__name__ != expected:
        raise WeightsUnavailable(f"{adapter}: the stored config of {hub_id!r} is for {expected}, not {cls.__name__}")
    return cls(paper_config(hub_id))


__all__ = ["RANDOM_WEIGHTS", "CONFIG_FILES", "is_random", "configs_dir", "config_record", "paper_config",
           "random_hf_model"]
