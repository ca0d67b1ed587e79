"""Prepared splits: the compact clip cache every source (RefAVA or RAVAR-Synth) is turned into.

Decoding JPEGs every epoch is a cost real users pay too, so both sources are prepared once into a
folder of ``.npy`` arrays (memory-mapped on load) plus ``meta.json``. Frames are stored once per
clip; instances point at their clip, since a clip carries several referred persons.

Layout of a prepared split folder::

    meta.json           PreparedMeta (source, fingerprint, sizes, object classes, format version)
    instances.json      {"keys": [...], "texts": [...], "paraphrases": [[...], ...]}
    clip_index.npy      int32  (N,)   instance -> clip row
    boxes.npy           float32 (N, 4) ground-truth box, normalised xyxy
    labels.npy          uint8  (N, 80) multi-hot
    frames.npy          uint8  (C, T, H, W, 3) RGB clip at prepared resolution
    key_frames.npy      uint8  (C, Hk, Wk, 3)  RGB key frame
    cand_boxes.npy      float32 (C, K, 4)  candidate boxes (detector-like), normalised xyxy
    cand_labels.npy     int16  (C, K)  index into meta.object_classes (0 = person)
    cand_scores.npy     float32 (C, K)
    cand_mask.npy       bool   (C, K)

``paraphrases`` holds every description of each instance, ``texts[i]`` first; folders prepared
before it existed lack it and load with ``paraphrases=None`` (the format version is unchanged, so
their fingerprints, and the job identities built on them, stay the same).

Writes are atomic: a split is written to a temporary sibling folder and renamed into place.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..protocol import split_key

FORMAT_VERSION = 1
_ARRAYS = (
    "clip_index", "boxes", "labels", "frames", "key_frames",
    "cand_boxes", "cand_labels", "cand_scores", "cand_mask",
)
_DTYPES = {
    "clip_index": np.int32, "boxes": np.float32, "labels": np.uint8, "frames": np.uint8,
    "key_frames": np.uint8, "cand_boxes": np.float32, "cand_labels": np.int16,
    "cand_scores": np.float32, "cand_mask": np.bool_,
}


#: A frame transform: uint8 (T, H, W, 3) RGB clip and a numpy Generator -> uint8 clip.
FrameTransform = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def cache_root() -> Path:
    """``$RAVAR_CACHE`` or ``~/.cache/ravar-bench``: generated and prepared data and feature caches."""
    return Path(os.environ.get("RAVAR_CACHE", Path.home() / ".cache" / "ravar-bench")).expanduser()


class PreparedDataError(ValueError):
    """A prepared split is missing, corrupt or inconsistent; the message names file and field."""


@dataclass
class PreparedMeta:
    source: str  # e.g. "synth:small@v1 seed=0" or "refava:/path"
    split: str  # train / val / test
    fingerprint: str  # sha256 over the source files or generator parameters
    object_classes: list[str]  # candidate label vocabulary; index 0 is "person"
    frame_policy: str = "correct"  # "correct" or "official_repeat" (the released loader's defect)
    format_version: int = FORMAT_VERSION
    extra: dict = field(default_factory=dict)


@dataclass
class PreparedSplit:
    """One split in memory (arrays may be memory-mapped). See the module docstring for shapes."""

    meta: PreparedMeta
    keys: list[str]
    texts: list[str]
    clip_index: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    frames: np.ndarray
    key_frames: np.ndarray
    cand_boxes: np.ndarray
    cand_labels: np.ndarray
    cand_scores: np.ndarray
    cand_mask: np.ndarray
    #: every description per instance, ``texts[i]`` first; None for folders prepared before they
    #: were stored (paraphrase training then refuses, naming ``folder``)
    paraphrases: list[list[str]] | None = None
    #: the folder it was loaded from (error messages only)
    folder: Path | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.validate()

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def num_clips(self) -> int:
        return int(self.frames.shape[0])

    @property
    def video_ids(self) -> list[str]:
        """Video id of every instance: the cluster unit for bootstrap resampling."""
        return [split_key(k)[0] for k in self.keys]

    @property
    def clip_ids(self) -> list[str]:
        """``video___timestamp`` of every instance (instances of one clip share it)."""
        return [k.rsplit("___", 1)[0] for k in self.keys]

    def validate(self) -> None:
        """Check shapes, dtypes and ranges; raise PreparedDataError naming the field."""
        n, c = len(self.keys), self.frames.shape[0] if self.frames.ndim else -1

        def need(cond: bool, name: str, msg: str) -> None:
            if not cond:
                raise PreparedDataError(f"prepared split {self.meta.split!r}: field {name!r}: {msg}")

        need(len(self.texts) == n, "texts", f"has {len(self.texts)} entries for {n} keys")
        if self.paraphrases is not None:
            need(len(self.paraphrases) == n, "paraphrases",
                 f"has {len(self.paraphrases)} entries for {n} keys")
            for i, (text, para) in enumerate(zip(self.texts, self.paraphrases)):
                need(isinstance(para, list) and bool(para) and all(isinstance(t, str) and t for t in para),
                     "paraphrases", f"entry {i} must be a non-empty list of non-empty strings")
                need(para[0] == text, "paraphrases", f"entry {i} does not start with texts[{i}]")
        need(len(set(self.keys)) == n, "keys", "keys are not unique")
        need(self.clip_index.shape == (n,), "clip_index", f"shape {self.clip_index.shape} != ({n},)")
        need(self.boxes.shape == (n, 4), "boxes", f"shape {self.boxes.shape} != ({n}, 4)")
        need(self.labels.shape == (n, 80), "labels", f"shape {self.labels.shape} != ({n}, 80)")
        need(self.frames.ndim == 5 and self.frames.shape[-1] == 3, "frames",
             f"shape {self.frames.shape} is not (C, T, H, W, 3)")
        need(self.key_frames.ndim == 4 and self.key_frames.shape[0] == c, "key_frames",
             f"shape {self.key_frames.shape} is not ({c}, H, W, 3)")
        k = self.cand_boxes.shape[1] if self.cand_boxes.ndim == 3 else -1
        need(self.cand_boxes.shape == (c, k, 4), "cand_boxes", f"shape {self.cand_boxes.shape}")
        for name in ("cand_labels", "cand_scores", "cand_mask"):
            need(getattr(self, name).shape == (c, k), name,
                 f"shape {getattr(self, name).shape} != ({c}, {k})")
        if n:
            need(int(self.clip_index.min()) >= 0 and int(self.clip_index.max()) < c, "clip_index",
                 f"values must lie in 0..{c - 1}")
        need(bool(np.isin(self.labels, (0, 1)).all()), "labels", "values must be 0 or 1")
        if k > 0 and bool(self.cand_mask.any()):
            ncls = len(self.meta.object_classes)
            used = self.cand_labels[self.cand_mask]
            need(int(used.min()) >= 0 and int(used.max()) < ncls, "cand_labels",
                 f"values must index meta.object_classes (0..{ncls - 1})")

    def fingerprint(self) -> str:
        """Identity of the split content: the source fingerprint plus split name and policy."""
        h = hashlib.sha256()
        for part in (self.meta.fingerprint, self.meta.split, self.meta.frame_policy,
                     str(FORMAT_VERSION), str(self.frames.shape), str(self.key_frames.shape)):
            h.update(part.encode())
            h.update(b"\0")
        return h.hexdigest()[:16]

    def subset(self, rows: np.ndarray | list[int]) -> "PreparedSplit":
        """A split restricted to some instances (clips are kept whole; cheap, no copy of frames)."""
        rows = np.asarray(rows, dtype=np.int64)
        return PreparedSplit(
            meta=self.meta, keys=[self.keys[i] for i in rows], texts=[self.texts[i] for i in rows],
            clip_index=self.clip_index[rows], boxes=self.boxes[rows], labels=self.labels[rows],
            frames=self.frames, key_frames=self.key_frames, cand_boxes=self.cand_boxes,
            cand_labels=self.cand_labels, cand_scores=self.cand_scores, cand_mask=self.cand_mask,
            paraphrases=None if self.paraphrases is None else [self.paraphrases[i] for i in rows],
            folder=self.folder,
        )

    def paraphrase_counts(self) -> np.ndarray:
        """Number of descriptions of every instance (int64, (N,)); refuses a folder without them."""
        if self.paraphrases is None:
            where = str(self.folder) if self.folder is not None else f"{self.meta.source} ({self.meta.split})"
            raise PreparedDataError(
                f"prepared split {where} stores no paraphrases (it was prepared before they were "
                "kept), so paraphrase training cannot run on it: prepare it again (`ravar-bench data "
                "prepare` rebuilds it with the same fingerprint, as does the next run on refava:<folder>; "
                "delete a synth:* data folder to regenerate it identically)")
        return np.array([len(p) for p in self.paraphrases], np.int64)

    # ----------------------------------------------------------------------------- persistence
    def save(self, folder: str | Path) -> Path:
        """Write atomically: to a temporary sibling, then rename over ``folder``."""
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            for name in _ARRAYS:
                np.save(tmp / f"{name}.npy", np.ascontiguousarray(getattr(self, name), _DTYPES[name]))
            inst: dict = {"keys": self.keys, "texts": self.texts}
            if self.paraphrases is not None:
                inst["paraphrases"] = self.paraphrases
            (tmp / "instances.json").write_text(json.dumps(inst))
            (tmp / "meta.json").write_text(json.dumps(asdict(self.meta), indent=1))
            if folder.exists():
                old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
                folder.rename(old)
                tmp.rename(folder)
                shutil.rmtree(old, ignore_errors=True)
            else:
                tmp.rename(folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return folder

    @classmethod
    def load(cls, folder: str | Path, mmap: bool = True) -> "PreparedSplit":
        """Load a prepared split; arrays are memory-mapped unless ``mmap=False``."""
        folder = Path(folder)
        meta_path = folder / "meta.json"
        if not meta_path.is_file():
            raise PreparedDataError(f"{meta_path}: missing; not a prepared split folder")
        try:
            meta_raw = json.loads(meta_path.read_text())
            meta = PreparedMeta(**meta_raw)
        except (json.JSONDecodeError, TypeError) as exc:
            raise PreparedDataError(f"{meta_path}: unreadable prepared-split metadata ({exc})") from exc
        if meta.format_version != FORMAT_VERSION:
            raise PreparedDataError(
                f"{meta_path}: format_version {meta.format_version} != {FORMAT_VERSION}; "
                "prepare the data again")
        try:
            inst = json.loads((folder / "instances.json").read_text())
            keys, texts = list(inst["keys"]), list(inst["texts"])
            paraphrases = inst.get("paraphrases")  # absent in folders prepared before it was stored
        except (OSError, json.JSONDecodeError, KeyError) as exc:
            raise PreparedDataError(f"{folder / 'instances.json'}: unreadable ({exc})") from exc
        if paraphrases is not None and not isinstance(paraphrases, list):
            raise PreparedDataError(f"{folder / 'instances.json'}: 'paraphrases' must be a list")
        arrays = {}
        for name in _ARRAYS:
            path = folder / f"{name}.npy"
            try:
                arrays[name] = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise PreparedDataError(f"{path}: unreadable array ({exc})") from exc
            if arrays[name].dtype != _DTYPES[name]:
                raise PreparedDataError(f"{path}: dtype {arrays[name].dtype} != {np.dtype(_DTYPES[name])}")
        return cls(meta=meta, keys=keys, texts=texts, paraphrases=paraphrases, folder=folder, **arrays)


def train_statistics(split: PreparedSplit) -> tuple[tuple[float, ...], tuple[float, float, float, float]]:
    """Class prior (positive rate per class) and mean GT box of a training split."""
    prior = split.labels.astype(np.float64).mean(axis=0) if len(split) else np.zeros(80)
    mean_box = split.boxes.astype(np.float64).mean(axis=0) if len(split) else np.array([0.25, 0.25, 0.75, 0.75])
    return tuple(float(x) for x in prior), tuple(float(x) for x in mean_box)  # type: ignore[return-value]
