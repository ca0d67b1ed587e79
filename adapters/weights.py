"""Pretrained-weight resolution shared by every adapter: hub ids, local paths, and offline mode.

Nothing here downloads by itself. A weight spec is either a local path (file or folder) or a hub
id / URL. In offline mode (``RAVAR_OFFLINE=1``, ``HF_HUB_OFFLINE=1`` or ``TRANSFORMERS_OFFLINE=1``)
a hub id that is not already in the local cache fails fast with one sentence that names the
weights and where to put them, instead of a long network traceback.
"""
from __future__ import annotations

import os
from pathlib import Path


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
