"""Bring your own referring annotations: a CSV plus videos -> a RefAVA folder (``ravar-bench data import``).

CSV, one row per referred person at one key-frame second (a header row names the columns; without
one the columns are taken in this order)::

    video,timestamp,person_id,x1,y1,x2,y2,sentence,actions[,split]
    vtest,12,0,0.10,0.32,0.21,0.80,the man in the dark coat on the left,14 80

* ``video``: a video file in ``--videos`` (with or without its extension);
* ``timestamp``: the key frame, in whole seconds of the video; the 3 s window around it must lie
  inside ``[--start, --end]`` and the video. RefAVA keys count seconds from AVA's 900 s origin,
  so second ``t`` becomes key timestamp ``t - start + 900`` (with AVA's default ``--start 900``
  they are equal);
* ``x1, y1, x2, y2``: the person's box on the key frame, normalised to [0, 1] (AVA convention);
* ``actions``: AVA action ids 1..80 separated by spaces or ``;``. AVA-style files with one row per
  action are accepted too: rows of the same (video, timestamp, person_id) with the same box and
  sentence are merged;
* ``split`` (optional): ``train``, ``val`` or ``test``. Without it, each *video* goes wholly to one
  split by a hash of its id (about 70/15/15), so no clip of a test video is ever trained on.

Output: the three official pickles per split, our candidates pickle per split (person boxes from
the harness's HOG detector on each key frame, as ``data prepare --detector hog`` would find them;
``--detector none`` leaves them out), and the frames (``frames/<video>/image_%06d.jpg``, extracted
as ``data frames`` does and reused if already there). Every row is checked before anything is
written; problems name the CSV row (its line number) and column.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import pickle
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..video import VIDEO_EXTENSIONS, VideoError
from .extract import AVA_START, ExtractSettings, VideoPlan, extract_videos, frame_name, plan_video
from .frames import FIRST_SECOND, FPS, KEY_INDEX, WINDOW, clip_frame_numbers
from .refava import NUM_CLASSES, SPLITS, candidates_name, pickle_name

COLUMNS: tuple[str, ...] = ("video", "timestamp", "person_id", "x1", "y1", "x2", "y2", "sentence", "actions")
ALIASES = {"person": "person_id", "person id": "person_id", "personid": "person_id", "action_ids": "actions",
           "action ids": "actions", "labels": "actions", "text": "sentence", "description": "sentence",
           "ts": "timestamp", "time": "timestamp", "video_id": "video"}
SPLIT_SHARES = (("train", 0.70), ("val", 0.85), ("test", 1.0))  # cumulative, by hash of the video id
DETECTORS = ("hog", "none")
#: HOG runs on the 340-px key frame enlarged 2x: its 128-px window misses the persons of a wide
#: shot otherwise (on vtest.avi: 0-1 persons per frame at 1x, 2-8 at 2x). ``predict`` repeats it.
HOG_UPSCALE = 2.0
SUMMARY_FILE = "ravar-import.json"


class AnnotationError(ValueError):
    """The CSV (or a video it names) cannot be imported; one line per problem, naming row and column."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        shown = self.problems[:30]
        more = [f"... and {len(self.problems) - 30} more"] if len(self.problems) > 30 else []
        super().__init__("\n".join(shown + more))


@dataclass
class Row:
    """One referred person (rows of an AVA-style file merged)."""

    line: int
    video: str
    timestamp: int
    person: str
    box: tuple[float, float, float, float]
    sentence: str
    actions: set[int] = field(default_factory=set)
    split: str | None = None
    key_ts: int = 0  # the timestamp in the RefAVA key: timestamp - start + 900

    @property
    def key(self) -> str:
        return f"{self.video}___{self.key_ts}___{self.person}"

    @property
    def clip_key(self) -> str:
        return f"{self.video}___{self.key_ts}"


def default_split(video_id: str) -> str:
    """The split a video goes to without a ``split`` column: stable, independent of other videos."""
    u = int(hashlib.sha256(video_id.encode()).hexdigest()[:8], 16) / 16**8
    return next(name for name, edge in SPLIT_SHARES if u < edge)


# ------------------------------------------------------------------------------------ parsing
def _header(first: list[str]) -> dict[str, int] | None:
    names = [ALIASES.get(c.strip().lower(), c.strip().lower()) for c in first]
    if "video" not in names:
        return None
    return {n: i for i, n in enumerate(names)}


def read_rows(csv_path: Path) -> tuple[list[Row], list[str], bool]:
    """Parsed rows, problems, and whether the file has a ``split`` column."""
    where = str(csv_path)
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise AnnotationError([f"{where}: unreadable ({exc})"]) from None
    records = [(i + 1, r) for i, r in enumerate(csv.reader(text.splitlines()))]
    records = [(n, r) for n, r in records if any(c.strip() for c in r) and not r[0].lstrip().startswith("#")]
    if not records:
        raise AnnotationError([f"{where}: no rows"])
    cols = _header(records[0][1])
    if cols is None:  # no header: the documented order, with a split column if rows have one
        names = (*COLUMNS, "split") if any(len(r) > len(COLUMNS) for _, r in records) else COLUMNS
        cols = {name: i for i, name in enumerate(names)}
    else:
        records = records[1:]
        missing = [c for c in COLUMNS if c not in cols]
        if missing:
            raise AnnotationError([f"{where}: header lacks column(s) {', '.join(missing)} "
                                   f"(expected {','.join(COLUMNS)}[,split])"])
    rows: list[Row] = []
    problems: list[str] = []
    for line, rec in records:
        row, msgs = _parse_row({name: rec[i].strip() if i < len(rec) else "" for name, i in cols.items()},
                               f"{where} row {line}", line)
        problems += msgs
        if row is not None:
            rows.append(row)
    return rows, problems, "split" in cols


def _parse_row(cell: dict[str, str], where: str, line: int) -> tuple[Row | None, list[str]]:
    """One CSV row (cells by column name); problems start with ``where`` and name the column."""
    msgs: list[str] = []

    def bad(name: str, msg: str) -> None:
        msgs.append(f"{where}, column {name!r}: {msg}")

    video, person, sentence = cell["video"], cell["person_id"], cell["sentence"]
    if not video:
        bad("video", "empty")
    elif "___" in video:
        bad("video", f"{video!r} contains '___' (the RefAVA key separator)")
    if not person or "___" in person:
        bad("person_id", f"{person!r} must be non-empty and may not contain '___'")
    if not sentence:
        bad("sentence", "empty sentence")
    ts = None
    try:
        value = float(cell["timestamp"])
        if not value.is_integer():
            raise ValueError
        ts = int(value)
    except ValueError:
        bad("timestamp", f"{cell['timestamp']!r} is not a whole number of seconds")
    box = []
    for name in ("x1", "y1", "x2", "y2"):
        try:
            v = float(cell[name])
            if not np.isfinite(v) or not 0.0 <= v <= 1.0:
                raise ValueError
            box.append(v)
        except ValueError:
            bad(name, f"{cell[name]!r} is not a number in [0, 1] (boxes are normalised x1, y1, x2, y2)")
    if len(box) == 4 and (box[2] <= box[0] or box[3] <= box[1]):
        bad("x2" if box[2] <= box[0] else "y2", f"box {box} is empty or inverted (needs x1 < x2 and y1 < y2)")
    actions: set[int] = set()
    tokens = [t for t in re.split(r"[\s;|,]+", cell["actions"]) if t]
    if not tokens:
        bad("actions", "no action id (every referred person needs at least one AVA action id)")
    for tok in tokens:
        if not tok.isdigit() or not 1 <= int(tok) <= NUM_CLASSES:
            bad("actions", f"unknown action id {tok!r} (AVA action ids are 1..{NUM_CLASSES})")
        else:
            actions.add(int(tok))
    split = cell.get("split", "").lower()
    if split and split not in SPLITS:
        bad("split", f"{split!r} is not one of {', '.join(SPLITS)}")
    if msgs or ts is None:
        return None, msgs
    return Row(line, video, ts, person, (box[0], box[1], box[2], box[3]), sentence, actions, split or None), []


def merge_rows(rows: list[Row], csv_path: Path) -> tuple[list[Row], list[str]]:
    """One row per (video, timestamp, person): AVA-style action rows merged, conflicts reported."""
    seen: dict[tuple[str, int, str], Row] = {}
    problems = []
    for row in rows:
        ident = (row.video, row.timestamp, row.person)
        first = seen.get(ident)
        if first is None:
            seen[ident] = row
            continue
        for name, a, b in (("x1..y2", first.box, row.box), ("sentence", first.sentence, row.sentence),
                           ("split", first.split, row.split)):
            if a != b:
                problems.append(f"{csv_path} row {row.line}, column {name.split('..')[0]!r}: same video, "
                                f"timestamp and person_id as row {first.line} but a different {name}")
                break
        else:
            first.actions |= row.actions
    return list(seen.values()), problems


def find_video(videos_dir: Path, name: str) -> Path | None:
    """``name`` itself if it is a video file in the folder, else ``name`` + a video extension."""
    direct = videos_dir / name
    if direct.suffix.lower() in VIDEO_EXTENSIONS and direct.is_file():
        return direct
    for ext in VIDEO_EXTENSIONS:
        if (videos_dir / f"{name}{ext}").is_file():
            return videos_dir / f"{name}{ext}"
    return None


# ---------------------------------------------------------------------------------- importing
@dataclass
class ImportResult:
    out: Path
    instances: dict[str, int]
    clips: dict[str, int]
    videos: list[str]
    candidates: str
    notes: list[str]


def resolve_videos(rows: list[Row], csv_path: Path, videos_dir: Path) -> tuple[list[Row], dict[str, Path],
                                                                                 list[str]]:
    """Rows whose video file exists, with ``video`` set to the file's id (name without extension)."""
    found: dict[str, Path | None] = {}
    kept, problems = [], []
    for row in rows:
        if row.video not in found:
            found[row.video] = find_video(videos_dir, row.video)
            if found[row.video] is None:
                problems.append(f"{csv_path} row {row.line}, column 'video': no video {row.video!r} in "
                                f"{videos_dir} (looked for it with {', '.join(VIDEO_EXTENSIONS)})")
        path = found[row.video]
        if path is not None:
            row.video = path.stem
            kept.append(row)
    return kept, {p.stem: p for p in found.values() if p is not None}, problems


def _check(rows: list[Row], files: dict[str, Path], csv_path: Path, settings: ExtractSettings
           ) -> tuple[dict[str, VideoPlan], list[str]]:
    """Open every video and check every key frame's 3 s window fits its extracted frames."""
    problems: list[str] = []
    plans: dict[str, VideoPlan] = {}
    first_row = {}
    for row in rows:
        first_row.setdefault(row.video, row.line)
    for video, path in sorted(files.items()):
        try:
            plans[video] = plan_video(path, settings)
        except VideoError as exc:
            problems.append(f"{exc} (video of row {first_row.get(video)} of {csv_path})")
    start = int(settings.start)
    for row in rows:
        if row.video not in plans:
            continue
        row.key_ts = row.timestamp - start + int(FIRST_SECOND)
        key_number = (row.timestamp - start) * FPS + 1
        first, last = key_number - KEY_INDEX, key_number - KEY_INDEX + WINDOW - 1
        if first < 1 or last > plans[row.video].frames:
            span = (plans[row.video].frames - 1) / FPS
            problems.append(f"{csv_path} row {row.line}, column 'timestamp': second {row.timestamp} needs "
                            f"1.5 s of video either side inside the extracted span [{start}, "
                            f"{start + span:.2f}] s (use whole seconds in [{start + 2}, "
                            f"{int(start + span - 1.5)}])")
    return plans, problems


def import_annotations(csv_path: str | Path, videos_dir: str | Path, out: str | Path, *,
                       start: float = AVA_START, end: float = 1800.0, detector: str = "hog",
                       jobs: int = 1, progress: bool = True) -> ImportResult:
    """Check the CSV and its videos, then write a RefAVA folder into ``out`` (see module doc)."""
    csv_path, videos_dir, out = Path(csv_path), Path(videos_dir), Path(out)
    if detector not in DETECTORS:
        raise ValueError(f"--detector must be one of {', '.join(DETECTORS)}, got {detector!r}")
    if not float(start).is_integer():
        raise ValueError(f"--start must be a whole number of seconds for data import, got {start}")
    if not csv_path.is_file():
        raise AnnotationError([f"{csv_path}: no such CSV file"])
    if not videos_dir.is_dir():
        raise AnnotationError([f"--videos {videos_dir}: not a folder"])
    settings = ExtractSettings(start=start, end=end)
    rows, problems, has_split = read_rows(csv_path)
    rows, files, video_problems = resolve_videos(rows, csv_path, videos_dir)
    rows, dup_problems = merge_rows(rows, csv_path)
    plans, check_problems = _check(rows, files, csv_path, settings)
    problems += video_problems + dup_problems + check_problems
    if problems:
        raise AnnotationError(problems)
    if detector == "hog":
        from . import detect  # noqa: PLC0415

        detect.check_available()

    for row in rows:
        row.split = row.split or default_split(row.video)
    notes = []
    if not has_split:
        notes.append("no split column: each video went wholly to one split by a hash of its id")
    counts = {s: sum(r.split == s for r in rows) for s in SPLITS}
    notes += [f"split {s!r} is empty (add a split column to choose)" for s, n in counts.items() if n == 0]

    extract_videos([Path(p.video) for p in plans.values()], out, settings, jobs=jobs, progress=progress)
    candidates = _candidates(rows, out, jobs, progress) if detector == "hog" else None
    _write_pickles(rows, candidates, out)
    summary = {"csv": str(csv_path.resolve()),
               "csv_sha256": hashlib.sha256(csv_path.read_bytes()).hexdigest(),
               "videos": {v: p.video for v, p in plans.items()}, "start": start, "end": end,
               "detector": detector, "instances": counts,
               "clips": {s: len({r.clip_key for r in rows if r.split == s}) for s in SPLITS}}
    _write_atomic(out / SUMMARY_FILE, json.dumps(summary, indent=1).encode())
    return ImportResult(out, counts, summary["clips"], sorted(plans), detector, notes)


def _candidates(rows: list[Row], out: Path, jobs: int, progress: bool) -> dict[str, dict]:
    """HOG person boxes on every clip's key frame, read back from the written JPEG."""
    import concurrent.futures as cf  # noqa: PLC0415

    from PIL import Image  # noqa: PLC0415
    from tqdm.auto import tqdm  # noqa: PLC0415

    from .detect import hog_person_boxes  # noqa: PLC0415
    from .prepare import HOG_MAX_BOXES  # noqa: PLC0415

    clips = sorted({r.clip_key: r for r in rows}.items())

    def detect_clip(item: tuple[str, Row]) -> tuple[str, dict]:
        key, row = item
        key_number = clip_frame_numbers(row.key_ts, 1, "correct")[1]
        with Image.open(out / "frames" / row.video / frame_name(key_number)) as im:
            rgb = np.asarray(im.convert("RGB"))
        boxes, scores = hog_person_boxes(rgb, max_boxes=HOG_MAX_BOXES, upscale=HOG_UPSCALE)
        return key, {"boxes": boxes.astype(float).tolist(), "labels": ["person"] * len(boxes),
                     "scores": scores.astype(float).tolist()}

    found: dict[str, dict] = {}
    with cf.ThreadPoolExecutor(max(1, jobs)) as pool, \
            tqdm(total=len(clips), desc="detect persons", unit="clip", disable=not progress) as bar:
        for key, value in pool.map(detect_clip, clips):
            found[key] = value
            bar.update(1)
    return found


def _write_atomic(path: Path, data: bytes) -> None:
    """Write a hidden sibling (the umask applies), then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_pickles(rows: list[Row], candidates: dict[str, dict] | None, out: Path) -> None:
    """The official three dicts per split (plus candidates), keyed ``video___ts___person``."""
    for split in SPLITS:
        mine = [r for r in rows if r.split == split]
        label = {r.key: sorted(r.actions) for r in mine}
        keyframe = {r.key: np.array([list(r.box)], dtype=np.float64) for r in mine}
        description = {r.key: [r.sentence] for r in mine}
        for kind, value in (("label", label), ("keyframe", keyframe), ("description", description)):
            _write_atomic(out / pickle_name(split, kind), pickle.dumps(value, protocol=4))
        if candidates is not None:
            cands = {r.clip_key: candidates[r.clip_key] for r in mine}
            _write_atomic(out / candidates_name(split), pickle.dumps(cands, protocol=4))
        else:  # --detector none: a candidates file left by an earlier import would be read
            (out / candidates_name(split)).unlink(missing_ok=True)


__all__ = ["COLUMNS", "DETECTORS", "HOG_UPSCALE", "AnnotationError", "Row", "ImportResult", "default_split",
           "read_rows", "merge_rows", "find_video", "resolve_videos", "import_annotations"]
