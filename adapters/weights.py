"""Pretrained-weight resolution shared by every adapter: hub ids, local paths, and offline mode.

Nothing here downloads by itself. A weight spec is either a local path (file or folder) or a hub
id / URL. In offline mode (``RAVAR_OFFLINE=1``, ``HF_HUB_OFFLINE=1`` or ``TRANSFORMERS_OFFLINE=1``)
a hub id that is not already in the local cache fails fast with one sentence that names the
weights and where to put them, instead of a long network traceback.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any


class WeightsUnavailable(RuntimeError):
    """The requested pretrained weights cannot be loaded here; the message says what to do."""


def offline() -> bool:
    """True when the user (or CI) asked for no network access."""
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes")
               for v in ("RAVAR_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def weights_dir() -> Path:
    """Where users may place downloaded checkpoints: ``$RAVAR_WEIGHTS`` or ``~/.cache/ravar-bench/weights``."""
    return Path(os.environ.get("RAVAR_WEIGHTS", Path.home() / ".cache" / "ravar-bench" / "weights"))


def is_local(spec: str) -> bool:
    return spec.startswith(("/", "./", "../", "~")) or Path(spec).expanduser().exists()


def local_file_for_url(url: str) -> Path:
    """The file name a URL checkpoint is expected under in :func:`weights_dir`."""
    return weights_dir() / url.rstrip("/").rsplit("/", 1)[-1]


def resolve_checkpoint(spec: str, adapter: str) -> Path:
    """Resolve a checkpoint file given as a local path or URL (mmaction2 model-zoo style).

    A URL is looked up in :func:`weights_dir` under its file name; downloading is left to the user
    (and to ``torch.hub`` when online), so an offline run never hangs on the network.
    """
    if is_local(spec):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise WeightsUnavailable(f"{adapter}: checkpoint file {path} does not exist")
        return path
    cached = local_file_for_url(spec)
    if cached.is_file():
        return cached
    if offline():
        raise WeightsUnavailable(
            f"{adapter}: weights {spec} are not available offline; download that file and place it "
            f"at {cached} (or pass weights=<local path>)")
    import torch.hub  # online: fetch once into weights_dir

    cached.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(spec, str(cached), progress=True)
    except Exception as exc:  # network errors come in many types; turn them into one sentence
        raise WeightsUnavailable(
            f"{adapter}: could not download {spec} ({exc.__class__.__name__}: {exc}); download it "
            f"by hand and place it at {cached} (or pass weights=<local path>)") from exc
    return cached


def hub_unavailable_message(adapter: str, hub_id: str, cache_hint: str) -> str:
    """The one-sentence error for a hub id that cannot be loaded offline."""
    return (f"{adapter}: pretrained weights {hub_id!r} are not in the local cache and the network is "
            f"off; download them on a connected machine (e.g. `huggingface-cli download {hub_id}`) "
            f"into {cache_hint}, or pass weights=<local folder> to the adapter")


# ---------------------------------------------------------------------- Hugging Face hub
def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment at call time (not import time)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def hub_file_cached(repo_id: str, filename: str, cache_dir: Path) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, filename, cache_dir=str(cache_dir)), str)


def load_hf_pretrained(cls: Any, spec: str, adapter: str, **kwargs: Any) -> Any:
    """``cls.from_pretrained`` for a hub id or local folder, failing fast and clearly offline."""
    if is_local(spec):
        path = Path(spec).expanduser()
        if not path.is_dir():
            raise WeightsUnavailable(f"{adapter}: weights folder {path} does not exist (parameter 'weights')")
        if not (path / "config.json").is_file():
            raise WeightsUnavailable(
                f"{adapter}: weights folder {path} has no config.json (expected a transformers "
                f"save_pretrained folder)")
        return cls.from_pretrained(str(path), local_files_only=True, **kwargs)
    cache = hf_cache_dir()
    if offline() and not hub_file_cached(spec, "config.json", cache):
        raise WeightsUnavailable(hub_unavailable_message(adapter, spec, str(cache)))
    try:
        return cls.from_pretrained(spec, cache_dir=str(cache), local_files_only=offline(), **kwargs)
    except OSError as exc:  # missing files / no network: one sentence instead of a traceback
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise WeightsUnavailable(
            f"{adapter}: could not load pretrained weights {spec!r} ({first}); download them into "
            f"{cache} or pass weights=<local folder>") from exc
