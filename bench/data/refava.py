"""Read and validate a RefAVA folder: three annotation pickles per split plus ACAR-layout frames.

On-disk format (spec §2.4). Per split (``train``, ``val``, ``test``) the folder holds
``{split}_set_keyframe_crr_final.pkl``, ``{split}_set_label_crr_final.pkl`` and
``{split}_set_description_crr_final.pkl``; each is a dict keyed ``video___timestamp___person``:

* keyframe:    an array-like of box rows; the box is ``np.array(v)[0][:4]`` (normalised xyxy).
* label:       a list of AVA action ids (ints 1..80).
* description: a list of strings (paraphrases of one referring expression); the official loader
                 reads ``v[0]`` only. All are kept (``Annotation.paraphrases``) for optional
                 paraphrase training; ``Annotation.text`` is ``v[0]``.

Frames live under ``frames/<video_id>/image_%06d.jpg`` (see :mod:`.frames`).

Optional extension of ours, ``{split}_set_candidates.pkl``: a dict keyed ``video___timestamp``
mapping to ``{"boxes": [[x1, y1, x2, y2], ...], "labels": [str, ...], "scores": [float, ...]}``,
detector-like candidate boxes on the key frame (label ``"person"`` for persons).

Deliberate differences from the released loader:

* the three dicts are **joined by key**; the released loader pairs ``list(d.values())`` by
  insertion order, which silently mislabels data if the dicts were written in different orders;
* instances keep the label dict's order (the released loader takes its keys from it);
* an empty label list is an error: every AVA person box carries at least one action, so an empty
  list means a broken export, and it would be an all-negative row that no metric can score;
* a description that is a bare string (not a list) is an error: ``v[0]`` would be its first
  character;
* every description, not only ``v[0]``, must be a non-empty string (the error names its index).

Nothing here raises from deep inside numpy or pickle on bad input: problems are collected as
:class:`Problem` records naming the file, key and field, and :func:`validate_folder` reports all
of them rather than the first.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..protocol import KEY_SEP
from .frames import FRAME_POLICIES, WINDOW, FramePolicy, clip_frame_numbers, frame_file
from .safe_pickle import PickleReadError, safe_load

SPLITS: tuple[str, ...] = ("train", "val", "test")
KINDS: tuple[str, ...] = ("keyframe", "label", "description")
NUM_CLASSES = 80
_BOX_EPS = 1e-6  # tolerance on the [0, 1] range, for float round-off in exported boxes
_MAX_LISTED = 30  # problems spelled out in a RefAVAError message


def pickle_name(split: str, kind: str) -> str:
    """File name of one of the three official pickles of a split."""
    return f"{split}_set_{kind}_crr_final.pkl"


def candidates_name(split: str) -> str:
    """File name of our optional candidate-box pickle of a split."""
    return f"{split}_set_candidates.pkl"


@dataclass(frozen=True)
class Problem:
    """One defect found in a RefAVA folder.

    ``key`` is the instance key (``video___ts___person``), the clip key (``video___ts``) for
    clip-level problems (frames, candidates), or ``""`` for file-level problems.
    """

    file: str
    key: str
    field: str
    message: str

    def __str__(self) -> str:
        where = f"key {self.key!r}, " if self.key else ""
        return f"{self.file}: {where}field {self.field!r}: {self.message}"


class RefAVAError(ValueError):
    """RefAVA data failed validation; ``problems`` holds every problem found."""

    def __init__(self, problems: Sequence[Problem], header: str = "invalid RefAVA data") -> None:
        self.problems = list(problems)
        lines = [f"{header}: {len(self.problems)} problem(s)"]
        lines += [f"  - {p}" for p in self.problems[:_MAX_LISTED]]
        if len(self.problems) > _MAX_LISTED:
            lines.append(f"  ... and {len(self.problems) - _MAX_LISTED} more")
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class Annotation:
    """One referred person at one key frame."""

    key: str
    video_id: str
    timestamp: int
    person_id: str
    text: str
    box: tuple[float, float, float, float]
    label_ids: tuple[int, ...]  # sorted, unique AVA ids in 1..80
    #: every description of the person in file order, ``text`` first (paraphrase training samples
    #: among them; evaluation reads ``text`` only, as the official protocol)
    paraphrases: tuple[str, ...] = ()

    @property
    def clip_key(self) -> str:
        """``video___timestamp``: instances sharing it share one clip."""
        return self.key.rsplit(KEY_SEP, 1)[0]


@dataclass(frozen=True)
class Candidates:
    """Candidate boxes on one clip's key frame."""

    boxes: tuple[tuple[float, float, float, float], ...]
    labels: tuple[str, ...]
    scores: tuple[float, ...]


@dataclass
class SplitContents:
    """What :meth:`RefAVAFolder.read` found: the valid instances and every problem."""

    split: str
    annotations: list[Annotation]
    candidates: dict[str, Candidates] | None  # None when the split has no candidates file
    problems: list[Problem]


# --------------------------------------------------------------------------------- value parsers
# Each returns (parsed value or None, list of messages); an empty list means the value is fine.

def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def parse_key(key: Any, parts: int = 3) -> tuple[tuple[str, ...] | None, str]:
    """Split an instance key (``parts=3``) or clip key (``parts=2``); ts must be an integer."""
    shape = "video___timestamp___person" if parts == 3 else "video___timestamp"
    if not isinstance(key, str):
        return None, f"key must be a string {shape}, got {type(key).__name__}"
    fields = key.split(KEY_SEP)
    if len(fields) != parts or not all(f.strip() for f in fields):
        return None, f"key is not of the form {shape}"
    try:
        int(fields[1])
    except ValueError:
        return None, f"timestamp {fields[1]!r} in the key is not an integer"
    return tuple(fields), ""


def _box_messages(box: np.ndarray, what: str = "box") -> list[str]:
    msgs = []
    if not np.isfinite(box).all():
        return [f"{what} {box.tolist()} has non-finite coordinates"]
    if (box < -_BOX_EPS).any() or (box > 1 + _BOX_EPS).any():
        msgs.append(f"{what} {box.tolist()} is outside [0, 1] (boxes are normalised xyxy)")
    if box[2] < box[0] or box[3] < box[1]:
        msgs.append(f"{what} {box.tolist()} has x2 < x1 or y2 < y1 (expected x1, y1, x2, y2)")
    return msgs


def _numeric_array(value: Any) -> np.ndarray | None:
    """``value`` as a real-number array, or None if it is ragged, textual or not array-like."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError):
        return None
    return arr if arr.dtype.kind in "iuf" else None


def parse_box(value: Any) -> tuple[tuple[float, float, float, float] | None, list[str]]:
    """The GT box ``np.array(v)[0][:4]`` of a keyframe-dict value."""
    arr = _numeric_array(value)
    if arr is None:
        return None, [f"expected an array-like of box rows of numbers, got {type(value).__name__}"]
    if arr.ndim == 1:
        return None, [f"expected a list of box rows, got a flat array of shape {arr.shape} "
                      "(the box is read as np.array(v)[0][:4])"]
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 4:
        return None, [f"expected box rows of shape (n>=1, >=4), got shape {arr.shape}"]
    box = arr[0, :4].astype(np.float64)
    msgs = _box_messages(box)
    return (None if msgs else tuple(float(x) for x in box)), msgs  # type: ignore[return-value]


def parse_labels(value: Any) -> tuple[tuple[int, ...] | None, list[str]]:
    """AVA action ids of a label-dict value: a non-empty list of ints in 1..80."""
    if isinstance(value, np.ndarray) and value.ndim == 1:
        items = list(value)
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        return None, [f"expected a list of AVA action ids, got {type(value).__name__}"]
    if not items:
        return None, ["empty label list (every AVA person has at least one action)"]
    msgs = []
    not_int = [x for x in items if not _is_int(x)]
    if not_int:
        msgs.append(f"label ids must be ints, got {not_int[:5]!r}")
    bad = [int(x) for x in items if _is_int(x) and not 1 <= int(x) <= NUM_CLASSES]
    if bad:
        msgs.append(f"label ids {bad[:5]} outside 1..{NUM_CLASSES}")
    return (None if msgs else tuple(sorted({int(x) for x in items}))), msgs


def parse_descriptions(value: Any) -> tuple[tuple[str, ...] | None, list[str]]:
    """Every description of a description-dict value: a non-empty list of non-empty strings."""
    if isinstance(value, (str, bytes)):
        return None, ["expected a list of strings, got a bare string (v[0] would be one character)"]
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = list(value)
    if not isinstance(value, (list, tuple)):
        return None, [f"expected a list of strings, got {type(value).__name__}"]
    if not value:
        return None, ["empty description list"]
    msgs = []
    for i, text in enumerate(value):
        if not isinstance(text, str):
            msgs.append(f"description v[{i}] must be a string, got {type(text).__name__}")
        elif not text.strip():
            msgs.append(f"description v[{i}] is empty")
    return (None if msgs else tuple(str(t) for t in value)), msgs


def parse_text(value: Any) -> tuple[str | None, list[str]]:
    """The referring expression ``v[0]`` of a description-dict value (all of it validated)."""
    texts, msgs = parse_descriptions(value)
    return (texts[0] if texts else None), msgs


def parse_candidates(value: Any) -> tuple[Candidates | None, list[str]]:
    """One candidates-dict value: ``{"boxes", "labels", "scores"}`` of equal length."""
    if not isinstance(value, Mapping):
        return None, [f"expected a dict with boxes/labels/scores, got {type(value).__name__}"]
    missing = [k for k in ("boxes", "labels", "scores") if k not in value]
    if missing:
        return None, [f"missing entries {missing}"]
    msgs: list[str] = []
    boxes = _numeric_array(value["boxes"])
    if boxes is not None and boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes is None or boxes.ndim != 2 or boxes.shape[1] != 4:
        msgs.append("boxes must be a list of [x1, y1, x2, y2] rows of numbers")
        boxes = None
    else:
        for i, row in enumerate(boxes.astype(np.float64)):
            msgs += _box_messages(row, what=f"boxes[{i}]")
    labels = value["labels"]
    if not isinstance(labels, (list, tuple)) or not all(isinstance(s, str) and s for s in labels):
        msgs.append("labels must be a list of non-empty class-name strings")
        labels = None
    scores = _numeric_array(value["scores"])
    if scores is None or scores.ndim != 1 or not np.isfinite(scores).all():
        msgs.append("scores must be a list of finite numbers")
        scores = None
    if boxes is not None and labels is not None and scores is not None:
        if not len(boxes) == len(labels) == len(scores):
            msgs.append(f"boxes/labels/scores have different lengths "
                        f"({len(boxes)}, {len(labels)}, {len(scores)})")
    if msgs:
        return None, msgs
    assert boxes is not None and labels is not None and scores is not None
    return Candidates(
        boxes=tuple(tuple(float(x) for x in row) for row in boxes.astype(np.float64)),  # type: ignore[misc]
        labels=tuple(str(s) for s in labels),
        scores=tuple(float(s) for s in scores),
    ), []


# ------------------------------------------------------------------------------------- folder
class RefAVAFolder:
    """A RefAVA folder: pickles in ``root``, frames under ``frames_root/frames`` (default root)."""

    def __init__(self, root: str | Path, frames_root: str | Path | None = None) -> None:
        self.root = Path(root)
        self.frames_root = Path(frames_root) if frames_root is not None else self.root

    def __repr__(self) -> str:
        return f"RefAVAFolder({str(self.root)!r}, frames_root={str(self.frames_root)!r})"

    def pickle_path(self, split: str, kind: str) -> Path:
        if kind not in KINDS:
            raise ValueError(f"unknown pickle kind {kind!r}; choose one of {KINDS}")
        return self.root / pickle_name(split, kind)

    def candidates_path(self, split: str) -> Path:
        return self.root / candidates_name(split)

    def frame_path(self, video_id: str, number: int) -> Path:
        return self.frames_root / frame_file(video_id, number)

    # ------------------------------------------------------------------------------- reading
    def _load_dict(self, path: Path, problems: list[Problem]) -> dict | None:
        """A pickle that must hold a dict, or None after recording why not."""
        if not path.is_file():
            problems.append(Problem(str(path), "", "file", "missing file"))
            return None
        try:
            data = safe_load(path)
        except PickleReadError as exc:
            problems.append(Problem(str(path), "", "pickle", str(exc).removeprefix(f"{path}: ")))
            return None
        if not isinstance(data, dict):
            problems.append(Problem(str(path), "", "file",
                                    f"expected a dict keyed by instance key, got {type(data).__name__}"))
            return None
        return data

    def read(self, split: str, candidates: bool = True) -> SplitContents:
        """Read, join by key and check the pickles of a split; never raises on bad data."""
        problems: list[Problem] = []
        paths = {kind: self.pickle_path(split, kind) for kind in KINDS}
        dicts = {kind: self._load_dict(path, problems) for kind, path in paths.items()}
        annotations: list[Annotation] = []
        if all(d is not None for d in dicts.values()):
            annotations = self._join(dicts, paths, problems)  # type: ignore[arg-type]
        cands = self._read_candidates(split, problems) if candidates else None
        return SplitContents(split, annotations, cands, problems)

    @staticmethod
    def _join(dicts: dict[str, dict], paths: dict[str, Path], problems: list[Problem]) -> list[Annotation]:
        """Instances in label-dict order, each built from the three dicts by key lookup."""
        order = ("label", "keyframe", "description")
        keys: dict[Any, None] = {}
        for kind in order:
            keys.update(dict.fromkeys(dicts[kind]))
        out = []
        for key in keys:
            shown = key if isinstance(key, str) else repr(key)
            holders = [kind for kind in order if key in dicts[kind]]
            bad = False
            parts, msg = parse_key(key)
            if parts is None:
                problems.append(Problem(str(paths[holders[0]]), shown, "key", msg))
                bad = True
            for kind in order:
                if kind not in holders:
                    others = ", ".join(paths[h].name for h in holders)
                    problems.append(Problem(str(paths[kind]), shown, "key",
                                            f"missing here but present in {others}"))
                    bad = True
            values: dict[str, Any] = {}
            for kind, parser, field in (("keyframe", parse_box, "box"), ("label", parse_labels, "labels"),
                                        ("description", parse_descriptions, "text")):
                if kind not in holders:
                    continue
                values[kind], msgs = parser(dicts[kind][key])
                problems.extend(Problem(str(paths[kind]), shown, field, m) for m in msgs)
                bad = bad or bool(msgs)
            if bad or parts is None:
                continue
            out.append(Annotation(
                key=str(key), video_id=str(parts[0]), timestamp=int(parts[1]), person_id=str(parts[2]),
                text=values["description"][0], box=values["keyframe"], label_ids=values["label"],
                paraphrases=values["description"],
            ))
        return out

    def _read_candidates(self, split: str, problems: list[Problem]) -> dict[str, Candidates] | None:
        path = self.candidates_path(split)
        if not path.exists():
            return None
        data = self._load_dict(path, problems)
        if data is None:
            return {}
        out: dict[str, Candidates] = {}
        for key, value in data.items():
            shown = key if isinstance(key, str) else repr(key)
            parts, msg = parse_key(key, parts=2)
            if parts is None:
                problems.append(Problem(str(path), shown, "key", msg))
                continue
            cand, msgs = parse_candidates(value)
            problems.extend(Problem(str(path), shown, "candidates", m) for m in msgs)
            if cand is not None:
                out[str(key)] = cand
        return out

    def annotations(self, split: str) -> list[Annotation]:
        """Valid instances of a split joined by key; raises :class:`RefAVAError` on any problem."""
        contents = self.read(split, candidates=False)
        if contents.problems:
            raise RefAVAError(contents.problems, f"RefAVA split {split!r} in {self.root}")
        return contents.annotations

    def candidates(self, split: str) -> dict[str, Candidates] | None:
        """Candidate boxes by clip key, or None if the split has no candidates file."""
        problems: list[Problem] = []
        cands = self._read_candidates(split, problems)
        if problems:
            raise RefAVAError(problems, f"RefAVA candidates of split {split!r} in {self.root}")
        return cands

    # -------------------------------------------------------------------------------- frames
    def check_frames(self, annotations: Iterable[Annotation], num_frames: int = 8,
                     policy: FramePolicy = "correct") -> list[Problem]:
        """Frame files the preparation would read (clip frames and key frame) that are missing.

        One problem per clip, naming the first missing file and counting the rest.
        """
        clips: dict[str, list[Annotation]] = {}
        for ann in annotations:
            clips.setdefault(ann.clip_key, []).append(ann)
        listing: dict[str, set[str] | None] = {}
        problems = []
        for clip_key, anns in clips.items():
            vid, ts = anns[0].video_id, anns[0].timestamp
            numbers, key_number = clip_frame_numbers(ts, num_frames, policy)
            needed = sorted(set(numbers) | {key_number})
            who = f"needed by {len(anns)} instance(s), e.g. {anns[0].key!r}"
            if needed[0] < 1:
                problems.append(Problem(str(self.frame_path(vid, needed[0])), clip_key, "timestamp",
                                        f"timestamp {ts} needs frame number {needed[0]} < 1 (frames are "
                                        f"numbered from 1 at second 900); {who}"))
                continue
            if vid not in listing:
                folder = self.frames_root / Path(frame_file(vid, 1)).parent
                try:
                    listing[vid] = set(os.listdir(folder))
                except OSError:
                    listing[vid] = None
            names = listing[vid]
            if names is None:
                folder = self.frames_root / Path(frame_file(vid, 1)).parent
                problems.append(Problem(str(folder), clip_key, "frames",
                                        f"frame folder missing or unreadable; {who}"))
                continue
            missing = [n for n in needed if Path(frame_file(vid, n)).name not in names]
            if missing:
                shown = ", ".join(Path(frame_file(vid, n)).name for n in missing[:4])
                more = f" and {len(missing) - 4} more" if len(missing) > 4 else ""
                problems.append(Problem(str(self.frame_path(vid, missing[0])), clip_key, "frames",
                                        f"{len(missing)} of {len(needed)} frame files missing: "
                                        f"{shown}{more}; {who}"))
        return problems

    def validate(self, splits: Sequence[str] = SPLITS, num_frames: int = 8,
                 policy: FramePolicy = "correct", candidates: bool = True) -> list[Problem]:
        """Every problem in the given splits (pickles, candidates file if present, frames)."""
        _check_frame_args(num_frames, policy)
        problems: list[Problem] = []
        for split in splits:
            contents = self.read(split, candidates=candidates)
            problems += contents.problems
            problems += self.check_frames(contents.annotations, num_frames, policy)
        return problems


def _check_frame_args(num_frames: int, policy: str) -> None:
    if not _is_int(num_frames) or not 1 <= num_frames <= WINDOW:
        raise ValueError(f"num_frames must be an int in 1..{WINDOW}, got {num_frames!r}")
    if policy not in FRAME_POLICIES:
        raise ValueError(f"unknown frame policy {policy!r}; choose one of {FRAME_POLICIES}")


def load_annotations(root: str | Path, split: str) -> list[Annotation]:
    """Instances of one split, joined by key, in label-dict order (raises :class:`RefAVAError`)."""
    return RefAVAFolder(root).annotations(split)


def validate_folder(root: str | Path, splits: Sequence[str] = SPLITS, num_frames: int = 8,
                    policy: FramePolicy = "correct") -> list[Problem]:
    """Every problem of a RefAVA folder for the given splits; an empty list means it is usable."""
    return RefAVAFolder(root).validate(splits, num_frames, policy)


__all__ = [
    "SPLITS", "KINDS", "NUM_CLASSES", "Problem", "RefAVAError", "Annotation", "Candidates",
    "SplitContents", "RefAVAFolder", "load_annotations", "validate_folder", "pickle_name",
    "candidates_name", "parse_key", "parse_box", "parse_labels", "parse_text", "parse_descriptions",
    "parse_candidates",
]
