"""A job's trained model in the store: ``jobs/<job_id>/checkpoint.pt``, and rebuilding it.

Why it holds what it holds: a model is rebuilt the way the runner built it (same adapter,
parameters, :class:`~ravar_bench.protocol.DatasetInfo` and seed, so random-init frozen parts come
out identical and pretrained ones are loaded again from their weights ids), then the stored
tensors are loaded into it. Only what training can change is stored
(:func:`ravar_bench.train.trainable_state`): a frozen backbone is referenced, not copied, and a
fingerprint of its tensors proves at load time that the rebuilt one is the one trained with.

The file is a ``torch.save`` of plain containers and tensors, so it loads with
``torch.load(..., weights_only=True)``; the store writes it with the record (atomically, in the
same folder rename) and lists its sha256 in ``record.json`` ``files``, which :func:`load_job`
checks before unpickling anything.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .protocol import PROTOCOL_VERSION, DatasetInfo, RavarModel

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_FORMAT = "ravar-bench-checkpoint"
CHECKPOINT_VERSION = 1
_SAMPLES = 1024  # values per frozen tensor that enter its fingerprint


class CheckpointError(ValueError):
    """A job folder has no usable checkpoint; the message names the file and what to do."""


def frozen_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters training cannot change (the complement of ``trainable_state``)."""
    return {k: v for k, v in model.state_dict(keep_vars=True).items()
            if isinstance(v, nn.Parameter) and not v.requires_grad}


def frozen_fingerprint(model: nn.Module) -> str:
    """sha256 over every frozen tensor's name, shape, dtype and an evenly strided sample of its
    values: cheap for a 7B backbone, and different for other weights or another initialisation."""
    h = hashlib.sha256()
    for name, tensor in sorted(frozen_tensors(model).items()):
        flat = tensor.detach().reshape(-1)
        step = max(1, flat.numel() // _SAMPLES)
        sample = flat[::step][:_SAMPLES].to("cpu", torch.float64).numpy()
        h.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}|".encode())
        h.update(np.ascontiguousarray(sample).tobytes())
    return h.hexdigest()


def weight_references(params: dict[str, Any]) -> dict[str, str]:
    """The adapter parameters that name weights (hub ids, paths, encoder kinds): how a frozen
    backbone is found again. Every string parameter counts; it is a reference, not a copy."""
    return {k: v for k, v in sorted(params.items()) if isinstance(v, str)}


def payload(model: RavarModel, *, job_id: str, config_hash: str, protocol: str, adapter: str,
            params: dict[str, Any], seed: int, train: dict[str, Any], info: DatasetInfo,
            data: dict[str, Any]) -> dict[str, Any]:
    """What ``checkpoint.pt`` holds: plain containers and CPU tensors only (weights_only-safe)."""
    from .train import trainable_state  # noqa: PLC0415

    state = {k: v.detach().to("cpu").contiguous() for k, v in trainable_state(model).items()}
    frozen = frozen_tensors(model)
    return {
        "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "protocol": protocol,
        "job_id": job_id, "config_hash": config_hash, "adapter": adapter,
        "params": json.loads(json.dumps(params)), "seed": int(seed),
        "train": json.loads(json.dumps(train)), "info": json.loads(json.dumps(asdict(info))),
        "data": json.loads(json.dumps(data)),
        "frozen": {"tensors": len(frozen), "values": int(sum(v.numel() for v in frozen.values())),
                   "fingerprint": frozen_fingerprint(model), "weights": weight_references(params)},
        "state": state,
    }


def data_summary(spec: str, meta: Any) -> dict[str, Any]:
    """How the training data was prepared (a :class:`~ravar_bench.data.prepared.PreparedMeta`):
    frame policy, sizes and candidate source, which ``predict`` repeats on a new clip."""
    extra = dict(getattr(meta, "extra", {}) or {})
    keys = ("num_frames", "frame_size", "key_frame_size", "policy", "detector", "candidates_source")
    return {"spec": spec, "source": getattr(meta, "source", ""),
            "frame_policy": getattr(meta, "frame_policy", "correct"),
            "prepare": {k: extra[k] for k in keys if k in extra}}


def summary(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The record's ``checkpoint`` entry (its sha256 is in the record's ``files``)."""
    state = ckpt["state"]
    return {"file": CHECKPOINT_FILE, "format": ckpt["format"], "version": ckpt["version"],
            "protocol": ckpt["protocol"], "tensors": len(state),
            "values": int(sum(v.numel() for v in state.values())), "frozen": ckpt["frozen"]}


def write(ckpt: dict[str, Any], path: Path) -> None:
    """Write ``ckpt`` to ``path`` (the store calls this inside its temporary job folder)."""
    torch.save(ckpt, path)


@dataclass
class LoadedJob:
    """A rebuilt model with what predicting needs to know about how it was trained."""

    model: RavarModel
    info: DatasetInfo
    train: dict[str, Any]
    record: dict[str, Any]
    checkpoint: dict[str, Any]  # the payload without "state"
    job_dir: Path


def read(job_dir: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(record, checkpoint payload) of a job folder, after checking presence, sha256, format and
    protocol version; raises :class:`CheckpointError` naming the file otherwise."""
    from .store import sha256_file  # noqa: PLC0415

    job_dir = Path(job_dir)
    rec_path = job_dir / "record.json"
    if not rec_path.is_file():
        raise CheckpointError(f"{job_dir}: not a finished job folder (no record.json)")
    try:
        record = json.loads(rec_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{rec_path}: unreadable record ({exc})") from None
    path = job_dir / CHECKPOINT_FILE
    want = record.get("files", {}).get(CHECKPOINT_FILE)
    if not path.is_file() or want is None:
        why = "is missing" if want is not None else "was not stored (the job predates stored checkpoints)"
        raise CheckpointError(f"{path}: the job's checkpoint {why}; rerun the job with "
                              f"`ravar-bench run <suite> --out <results> --overwrite always`")
    if sha256_file(path) != want:
        raise CheckpointError(f"{path}: sha256 differs from the one in {rec_path.name} (the file was "
                              "altered or damaged); rerun the job")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (torch raises several types for a bad file)
        raise CheckpointError(f"{path}: cannot be loaded with weights_only=True ({exc})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a ravar-bench checkpoint")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {ckpt.get('version')!r}, this "
                              f"ravar-bench reads {CHECKPOINT_VERSION}")
    if str(ckpt.get("protocol")) != PROTOCOL_VERSION:
        raise CheckpointError(f"{path}: made under protocol version {ckpt.get('protocol')!r}, this "
                              f"ravar-bench speaks {PROTOCOL_VERSION!r}; retrain the job")
    return record, ckpt


def load_job(job_dir: str | Path) -> LoadedJob:
    """Rebuild a job's trained model from its folder (see the module docstring)."""
    from .adapters.registry import get_adapter  # noqa: PLC0415
    from .train import set_seed  # noqa: PLC0415

    record, ckpt = read(job_dir)
    path = Path(job_dir) / CHECKPOINT_FILE
    raw = dict(ckpt["info"])
    for key in ("frame_size", "key_frame_size", "mean_box", "object_classes", "train_prior"):
        raw[key] = tuple(raw[key])
    info = DatasetInfo(**raw)
    set_seed(int(ckpt["seed"]))  # as the runner does before building: same random-init parts
    model = get_adapter(ckpt["adapter"]).build(info, dict(ckpt["params"]), where=str(path))
    if frozen_fingerprint(model) != ckpt["frozen"]["fingerprint"]:
        refs = ", ".join(f"{k}={v}" for k, v in ckpt["frozen"]["weights"].items()) or "none"
        raise CheckpointError(f"{path}: the rebuilt model's frozen weights differ from those it was "
                              f"trained with (weights: {refs}); install the same weights/versions")
    result = model.load_state_dict(ckpt["state"], strict=False)
    frozen = set(frozen_tensors(model))
    missing = [k for k in result.missing_keys if k not in frozen]
    if result.unexpected_keys or missing:
        raise CheckpointError(f"{path}: does not fit adapter {ckpt['adapter']!r} as installed "
                              f"(unexpected {result.unexpected_keys[:3]}, missing {missing[:3]})")
    model.eval()
    meta = {k: v for k, v in ckpt.items() if k != "state"}
    return LoadedJob(model, info, dict(ckpt["train"]), record, meta, Path(job_dir))


__all__ = ["CHECKPOINT_FILE", "CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "CheckpointError", "LoadedJob",
           "frozen_tensors", "frozen_fingerprint", "weight_references", "payload", "data_summary", "summary",
           "write", "read", "load_job"]
