"""Turn a RefAVA-format folder into a :class:`~ravar_bench.data.prepared.PreparedSplit` cache.

Why a cache: decoding 8 JPEGs per instance every epoch costs more than a small model's step. The
split is validated first (every problem is listed, nothing is written on error), then each
``video___timestamp`` clip is decoded once and shared by its instances.

Candidates (detector-like boxes on the key frame), by ``detector``:

* ``"file"`` - our ``{split}_set_candidates.pkl``; if the split has none, no candidates (K=1, all
  masked) and a warning;
* ``"hog"``  - OpenCV's HOG people detector on the full-resolution key frame;
* ``"none"`` - no candidates even if a file exists (location-free ablation).

The object vocabulary is ``["person"] + sorted(other class names)`` collected from the candidates
files of *all* splits present, so ``cand_labels`` index the same classes in train, val and test.

The fingerprint is a sha256 over the pickles' bytes (and the candidates files used), the split and
the parameters. Frame files are not hashed (too costly; AVA frames do not change): pass
``force=True`` after replacing frames.
"""
from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .frames import FRAME_POLICIES, WINDOW, clip_frame_numbers
from .prepared import PreparedDataError, PreparedMeta, PreparedSplit
from .refava import (
    KINDS, NUM_CLASSES, SPLITS, Annotation, Candidates, Problem, RefAVAError, RefAVAFolder,
)

log = logging.getLogger(__name__)

DETECTORS: tuple[str, ...] = ("file", "hog", "none")
PREPARE_VERSION = 1  # bump when the decoding changes, so old caches are rebuilt
HOG_MAX_BOXES = 16
_CHUNK = 64  # clips per thread-pool round (bounds memory held by out-of-order results)


@dataclass(frozen=True)
class PrepareParams:
    """Everything that changes the prepared arrays (besides the source files)."""

    num_frames: int = 8
    frame_size: tuple[int, int] = (112, 112)  # (H, W)
    key_frame_size: tuple[int, int] = (112, 112)  # (H, W)
    policy: str = "correct"
    detector: str = "file"

    def __post_init__(self) -> None:
        if not isinstance(self.num_frames, (int, np.integer)) or not 1 <= self.num_frames <= WINDOW:
            raise ValueError(f"num_frames must be an int in 1..{WINDOW}, got {self.num_frames!r}")
        for name in ("frame_size", "key_frame_size"):
            size = getattr(self, name)
            try:
                h, w = (int(v) for v in size)
            except (TypeError, ValueError):
                raise ValueError(f"{name} must be (height, width), got {size!r}") from None
            if h < 1 or w < 1:
                raise ValueError(f"{name} must be positive, got {size!r}")
            object.__setattr__(self, name, (h, w))
        object.__setattr__(self, "num_frames", int(self.num_frames))
        if self.policy not in FRAME_POLICIES:
            raise ValueError(f"unknown frame policy {self.policy!r}; choose one of {FRAME_POLICIES}")
        if self.detector not in DETECTORS:
            raise ValueError(f"unknown detector {self.detector!r}; choose one of {DETECTORS}")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["frame_size"], d["key_frame_size"] = list(self.frame_size), list(self.key_frame_size)
        return d


def _as_params(params: PrepareParams | Mapping | None) -> PrepareParams:
    if params is None:
        return PrepareParams()
    return params if isinstance(params, PrepareParams) else PrepareParams(**params)


def prepared_path(cache_root: str | Path, root: str | Path, split: str,
                  params: PrepareParams | Mapping | None = None) -> Path:
    """Where the cache of (source folder, split, params) lives under ``cache_root``.

    Naming only: whether the cached content is current is decided by the fingerprint in its
    ``meta.json`` (see :func:`prepare_refava`).
    """
    p = _as_params(params)
    ident = json.dumps({"root": str(Path(root).resolve()), "split": split, "v": PREPARE_VERSION,
                        **p.as_dict()}, sort_keys=True)
    return Path(cache_root) / f"refava-{split}-{hashlib.sha256(ident.encode()).hexdigest()[:12]}"


def fingerprint(folder: RefAVAFolder, split: str, params: PrepareParams,
                object_classes: Sequence[str] | None = None, skip_invalid: bool = False) -> str | None:
    """sha256 over the split's pickles (and candidates files used) plus parameters; None if a
    pickle cannot be read (validation will say why)."""
    h = hashlib.sha256()
    ident = {"v": PREPARE_VERSION, "split": split, "object_classes": list(object_classes or []),
             "skip_invalid": bool(skip_invalid), **params.as_dict()}
    h.update(json.dumps(ident, sort_keys=True).encode())
    files = [folder.pickle_path(split, kind) for kind in KINDS]
    if params.detector == "file":
        files += [p for p in _candidate_files(folder, split) if p.is_file()]
    for path in files:
        try:
            data = path.read_bytes()
        except OSError:
            return None
        h.update(b"\0" + path.name.encode() + b"\0")
        h.update(hashlib.sha256(data).digest())
    return h.hexdigest()


def _candidate_files(folder: RefAVAFolder, split: str) -> list[Path]:
    """The split's own candidates file first, then the other standard splits' (for vocabulary)."""
    return [folder.candidates_path(s) for s in (split, *[s for s in SPLITS if s != split])]


def _vocabulary(folder: RefAVAFolder, split: str, own: dict[str, Candidates] | None,
                fixed: Sequence[str] | None, problems: list[Problem]) -> list[str]:
    """``person`` first, then the other class names of every split's candidates file, sorted."""
    names: set[str] = set()
    if own:
        names.update(label for c in own.values() for label in c.labels)
    for other in SPLITS:
        if other == split or not folder.candidates_path(other).exists():
            continue
        try:
            cands = folder.candidates(other) or {}
        except RefAVAError as exc:  # the vocabulary depends on it, so its defects count here too
            problems.extend(exc.problems)
            continue
        names.update(label for c in cands.values() for label in c.labels)
    if fixed is not None:
        fixed = list(fixed)
        if not fixed or fixed[0] != "person" or len(set(fixed)) != len(fixed):
            raise ValueError("object_classes must be unique names starting with 'person'")
        unknown = sorted(names - set(fixed))
        if unknown:
            problems.append(Problem(str(folder.candidates_path(split)), "", "labels",
                                    f"candidate classes {unknown[:10]} are not in object_classes"))
        return fixed
    return ["person"] + sorted(names - {"person"})


# ----------------------------------------------------------------------------------- decoding
def _read_rgb(path: Path, sizes: list[tuple[int, int] | None]) -> list[np.ndarray]:
    """Decode one frame once and return it at each (H, W) in ``sizes`` (None = original).

    ``draft`` lets libjpeg decode at 1/2, 1/4 or 1/8 scale when every requested size is small
    enough, which is most of the decoding time saved.
    """
    with Image.open(path) as im:
        if None not in sizes:
            im.draft("RGB", (max(s[1] for s in sizes if s), max(s[0] for s in sizes if s)))
        rgb = im.convert("RGB")
        rgb.load()
    out = []
    for size in sizes:
        if size is None or (rgb.height, rgb.width) == size:
            out.append(np.asarray(rgb, dtype=np.uint8))
        else:
            out.append(np.asarray(rgb.resize((size[1], size[0]), Image.BICUBIC), dtype=np.uint8))
    return out


@dataclass
class _Clip:
    key: str  # video___ts
    first: Annotation  # first instance of the clip (for error messages)
    count: int


def _decode_clip(folder: RefAVAFolder, clip: _Clip, p: PrepareParams
                 ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """Frames (T, H, W, 3), key frame (Hk, Wk, 3) and, for ``hog``, (boxes, scores)."""
    from . import detect  # noqa: PLC0415  (cv2 only when asked for)

    ann = clip.first
    numbers, key_number = clip_frame_numbers(ann.timestamp, p.num_frames, p.policy)  # type: ignore[arg-type]
    wanted: dict[int, list[tuple[int, int] | None]] = {n: [p.frame_size] for n in numbers}
    wanted.setdefault(key_number, []).append(p.key_frame_size)
    if p.detector == "hog":
        wanted[key_number].append(None)
    decoded: dict[tuple[int, tuple[int, int] | None], np.ndarray] = {}
    for number, sizes in wanted.items():
        path = folder.frame_path(ann.video_id, number)
        try:
            images = _read_rgb(path, sizes)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise RefAVAError([Problem(str(path), clip.key, "frames", f"cannot decode frame ({exc}); "
                                       f"needed by {clip.count} instance(s), e.g. {ann.key!r}")],
                              "RefAVA frame decoding failed") from None
        decoded.update({(number, s): img for s, img in zip(sizes, images)})
    frames = np.stack([decoded[(n, p.frame_size)] for n in numbers])
    key_frame = decoded[(key_number, p.key_frame_size)]
    hog = None
    if p.detector == "hog":
        hog = detect.hog_person_boxes(decoded[(key_number, None)], max_boxes=HOG_MAX_BOXES)
    return frames, key_frame, hog


# ------------------------------------------------------------------------------------ prepare
def prepare_refava(
    root: str | Path,
    split: str,
    out: str | Path,
    num_frames: int = 8,
    frame_size: tuple[int, int] = (112, 112),
    key_frame_size: tuple[int, int] = (112, 112),
    policy: str = "correct",
    detector: str = "file",
    *,
    frames_root: str | Path | None = None,
    object_classes: Sequence[str] | None = None,
    skip_invalid: bool = False,
    force: bool = False,
    workers: int | None = None,
    progress: bool = True,
    source: str | None = None,
) -> PreparedSplit:
    """Validate a RefAVA split and write it as a prepared split in ``out``; return it (mmap'd).

    Raises :class:`RefAVAError` listing every problem (file and key) and writes nothing if the
    split is invalid. If ``out`` already holds a split with the same fingerprint it is loaded
    and returned without decoding anything (unless ``force``, or unless it was prepared before the
    paraphrases were stored: then it is rebuilt once, with the same fingerprint).

    ``frames_root``: folder holding ``frames/`` if not ``root``. ``object_classes``: pin the
    candidate vocabulary (must start with ``"person"``). ``skip_invalid``: drop instances with
    problems (a warning reports how many) instead of failing; file-level problems still fail.
    ``workers``: decoding threads (default ``min(4, cpu count)``). ``source``: the meta's source
    label (default ``refava:<absolute root>``; a generator may name itself instead).
    """
    params = PrepareParams(num_frames, tuple(frame_size), tuple(key_frame_size),  # type: ignore[arg-type]
                           policy, detector)
    folder = RefAVAFolder(root, frames_root)
    out = Path(out)
    fp = fingerprint(folder, split, params, object_classes, skip_invalid)
    if not force and fp is not None and (out / "meta.json").is_file():
        try:
            cached = PreparedSplit.load(out)
        except PreparedDataError as exc:
            log.warning("rebuilding unreadable prepared split %s (%s)", out, exc)
        else:
            if cached.meta.fingerprint == fp and cached.paraphrases is not None:
                log.info("prepared split %s is up to date", out)
                return cached
            if cached.meta.fingerprint == fp:  # same content; only the paraphrases are missing
                log.info("rebuilding prepared split %s to store the paraphrases (fingerprint "
                         "unchanged)", out)
    if params.detector == "hog":
        from . import detect  # noqa: PLC0415

        detect.check_available()

    contents = folder.read(split, candidates=params.detector == "file")
    problems = contents.problems + folder.check_frames(contents.annotations, params.num_frames,
                                                       params.policy)  # type: ignore[arg-type]
    vocab = (_vocabulary(folder, split, contents.candidates, object_classes, problems)
             if params.detector == "file" else ["person"])
    annotations = _usable(contents.annotations, problems, skip_invalid, folder, split)
    if params.detector == "file" and contents.candidates is None:
        log.warning("%s: no candidates file; preparing without candidate boxes "
                    "(use detector='hog' to detect persons)", folder.candidates_path(split))
    skipped = len(contents.annotations) - len(annotations)

    clips: dict[str, _Clip] = {}
    for ann in annotations:
        clip = clips.setdefault(ann.clip_key, _Clip(ann.clip_key, ann, 0))
        clip.count += 1
    clip_row = {key: row for row, key in enumerate(clips)}
    meta = PreparedMeta(
        source=source or f"refava:{Path(root).resolve()}", split=split, fingerprint=fp or "",
        object_classes=vocab, frame_policy=params.policy,
        extra={**params.as_dict(), "candidates_source": _candidates_source(params, contents.candidates),
               "skipped_instances": skipped, "prepare_version": PREPARE_VERSION,
               "num_instances": len(annotations), "num_clips": len(clips)},
    )
    return _write(folder, params, annotations, list(clips.values()), clip_row,
                  contents.candidates if params.detector == "file" else None, vocab, meta, out,
                  workers, progress)


def _candidates_source(p: PrepareParams, cands: dict | None) -> str:
    if p.detector == "file":
        return "file" if cands is not None else "none (no candidates file)"
    return p.detector


def _usable(annotations: list[Annotation], problems: list[Problem], skip_invalid: bool,
            folder: RefAVAFolder, split: str) -> list[Annotation]:
    """The annotations to prepare, or raise listing the problems."""
    header = f"RefAVA split {split!r} in {folder.root} is not usable"
    if problems and (not skip_invalid or any(not p.key for p in problems)):
        raise RefAVAError(problems, header)
    bad = {p.key for p in problems}
    kept = [a for a in annotations if a.key not in bad and a.clip_key not in bad]
    if problems:
        log.warning("%s: skipping instances with %d problem(s); first: %s",
                    folder.root, len(problems), problems[0])
    if not kept:
        raise RefAVAError(problems or [Problem(str(folder.pickle_path(split, "label")), "", "file",
                                               "no instances")], header)
    return kept


def _write(folder: RefAVAFolder, p: PrepareParams, annotations: list[Annotation], clips: list[_Clip],
           clip_row: dict[str, int], cands: dict[str, Candidates] | None, vocab: list[str],
           meta: PreparedMeta, out: Path, workers: int | None, progress: bool) -> PreparedSplit:
    """Decode clips into memory-mapped staging arrays, then save atomically into ``out``."""
    from tqdm.auto import tqdm  # noqa: PLC0415

    n, c, t = len(annotations), len(clips), p.num_frames
    (h, w), (hk, wk) = p.frame_size, p.key_frame_size
    created = _missing_ancestors(out.parent)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    ok = False
    try:
        frames = np.lib.format.open_memmap(staging / "frames.npy", "w+", np.uint8, (c, t, h, w, 3))
        key_frames = np.lib.format.open_memmap(staging / "key_frames.npy", "w+", np.uint8, (c, hk, wk, 3))
        detections: list[tuple[np.ndarray, np.ndarray] | None] = [None] * c
        workers = workers or min(4, os.cpu_count() or 1)
        bar = tqdm(total=c, desc=f"prepare {meta.split}", unit="clip", disable=not progress)
        with cf.ThreadPoolExecutor(max_workers=workers) as pool, bar:
            for start in range(0, c, _CHUNK):
                chunk = clips[start:start + _CHUNK]
                for i, (fr, kf, det) in enumerate(pool.map(lambda cl: _decode_clip(folder, cl, p), chunk)):
                    frames[start + i], key_frames[start + i], detections[start + i] = fr, kf, det
                    bar.update(1)
        cand = _candidate_arrays(clips, cands, detections, vocab)
        split = PreparedSplit(
            meta=meta, keys=[a.key for a in annotations], texts=[a.text for a in annotations],
            paraphrases=[list(a.paraphrases or (a.text,)) for a in annotations],
            clip_index=np.array([clip_row[a.clip_key] for a in annotations], np.int32).reshape(n),
            boxes=np.array([a.box for a in annotations], np.float32).reshape(n, 4),
            labels=_multi_hot(annotations), frames=frames, key_frames=key_frames, **cand,
        )
        split.save(out)
        del frames, key_frames, split
        ok = True
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not ok:
            for folder_made in created:  # deepest first; only if still empty
                try:
                    folder_made.rmdir()
                except OSError:
                    break
    return PreparedSplit.load(out)


def _missing_ancestors(path: Path) -> list[Path]:
    """Folders that ``mkdir(parents=True)`` would create, deepest first."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def _multi_hot(annotations: list[Annotation]) -> np.ndarray:
    labels = np.zeros((len(annotations), NUM_CLASSES), np.uint8)
    for row, ann in enumerate(annotations):
        labels[row, [i - 1 for i in ann.label_ids]] = 1
    return labels


def _candidate_arrays(clips: list[_Clip], cands: dict[str, Candidates] | None,
                      detections: list[tuple[np.ndarray, np.ndarray] | None],
                      vocab: list[str]) -> dict[str, np.ndarray]:
    """Pad per-clip candidates to K = max count (at least 1) with a mask."""
    index = {name: i for i, name in enumerate(vocab)}
    rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for clip, det in zip(clips, detections):
        if det is not None:
            boxes, scores = det
            labels = np.zeros(len(boxes), np.int16)
        elif cands is not None and clip.key in cands:
            cd = cands[clip.key]
            boxes = np.array(cd.boxes, np.float32).reshape(-1, 4)
            scores = np.array(cd.scores, np.float32)
            labels = np.array([index[name] for name in cd.labels], np.int16)
        else:
            boxes, scores = np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
            labels = np.zeros(0, np.int16)
        rows.append((boxes, labels, scores))
    c, k = len(clips), max([1] + [len(r[0]) for r in rows])
    out = {"cand_boxes": np.zeros((c, k, 4), np.float32), "cand_labels": np.zeros((c, k), np.int16),
           "cand_scores": np.zeros((c, k), np.float32), "cand_mask": np.zeros((c, k), bool)}
    for i, (boxes, labels, scores) in enumerate(rows):
        m = len(boxes)
        out["cand_boxes"][i, :m], out["cand_labels"][i, :m] = boxes, labels
        out["cand_scores"][i, :m], out["cand_mask"][i, :m] = scores, True
    return out


__all__ = ["DETECTORS", "PREPARE_VERSION", "PrepareParams", "prepared_path", "fingerprint",
           "prepare_refava"]
