"""Videos -> ACAR-style frame folders, the layout the RefAVA loader reads (``ravar-bench data frames``).

``frames/<video_id>/image_%06d.jpg``: 30 fps from second ``start`` (AVA: 900) to ``end`` (AVA: 1800)
or the end of the video, height 340 with the aspect ratio kept, numbered from 1, so file ``n`` is
the frame shown at ``start + (n - 1) / 30`` s (see :mod:`ravar_bench.video` for which source
frame that is). This is what ACAR-Net's ``ffmpeg -ss 900 … -vf scale=-1:340,fps=30`` produces.

Why the care: a RefAVA folder is only checked for the files it needs, so a video cut off halfway
through extraction must never look complete. Each video is written into a hidden temporary
folder next to its final one and renamed into place when its last frame is on disk; a run that is
killed leaves only hidden folders, which the next run removes (when their process is gone) before
redoing those videos. Finished videos are kept, so a run resumes where it stopped. A
``.extract.json`` inside each folder says how it was made, so a later run with other settings
stops instead of mixing frames.
"""
from __future__ import annotations

import concurrent.futures as cf
import io
import json
import math
import multiprocessing as mp
import os
import shutil
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..video import ACAR_FPS, ACAR_HEIGHT, VIDEO_EXTENSIONS, VideoError, VideoFile, acar_size

AVA_START, AVA_END = 900.0, 1800.0
KEY_SEP = "___"  # protocol.KEY_SEP, not imported from there: it would pull torch into every worker
JPEG_QUALITY = 90
META_FILE = ".extract.json"
_PARTIAL = ".partial-"
_REPORT_EVERY = 30  # frames between progress messages from a worker


@dataclass(frozen=True)
class ExtractSettings:
    """Everything that changes the written frames (recorded in ``.extract.json``)."""

    start: float = AVA_START
    end: float = AVA_END
    height: int = ACAR_HEIGHT
    fps: int = ACAR_FPS
    quality: int = JPEG_QUALITY

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", float(self.start))
        object.__setattr__(self, "end", float(self.end))
        if not (math.isfinite(self.start) and self.start >= 0):
            raise ValueError(f"--start must be a number of seconds >= 0, got {self.start}")
        if not (math.isfinite(self.end) and self.end > self.start):
            raise ValueError(f"--end must be greater than --start ({self.start}), got {self.end}")
        if self.height < 16 or self.fps < 1 or not 1 <= self.quality <= 100:
            raise ValueError(f"bad extraction settings {self}")


@dataclass(frozen=True)
class VideoPlan:
    """One video to extract: where from, where to, how many frames."""

    video: str
    video_id: str
    frames: int  # frames that will be written
    duration: float
    size: tuple[int, int]  # (W, H) of the written frames


@dataclass
class ExtractResult:
    video_id: str
    status: str  # "done" | "kept"
    frames: int
    seconds: float = 0.0


def video_id_of(path: Path) -> str:
    """The video id a file stands for: its name without the extension (AVA's convention)."""
    return path.stem


def list_videos(folder: str | Path) -> list[Path]:
    """Video files directly in ``folder`` (by extension), sorted; raises if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VideoError(f"{folder}: not a folder of videos")
    videos = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
                    and not p.name.startswith("."))
    if not videos:
        raise VideoError(f"{folder}: no video files ({', '.join(VIDEO_EXTENSIONS)})")
    ids: dict[str, Path] = {}
    for v in videos:
        vid = video_id_of(v)
        if vid in ids:
            raise VideoError(f"{v}: video id {vid!r} is also the id of {ids[vid].name}; rename one")
        ids[vid] = v
    return videos


def plan_video(path: Path, settings: ExtractSettings) -> VideoPlan:
    """Open ``path`` (raising :class:`VideoError` if it is unusable) and count the frames to write."""
    vid = video_id_of(path)
    if KEY_SEP in vid or not vid.strip():
        raise VideoError(f"{path}: video id {vid!r} may not be empty or contain {KEY_SEP!r}")
    info = VideoFile(path).info
    if settings.start >= info.duration:
        raise VideoError(f"{path}: --start {settings.start:g} s is past the end of the video "
                         f"({info.duration:.2f} s); short clips need --start 0")
    span = min(settings.end, info.duration) - settings.start
    return VideoPlan(str(path), vid, max(1, math.ceil(span * settings.fps - 1e-6)), info.duration,
                     acar_size(info.width, info.height, settings.height))


def frame_name(number: int) -> str:
    return f"image_{number:06d}.jpg"


def _owner() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def remove_stale_partials(frames_root: Path) -> int:
    """Delete hidden partial folders whose writer process (on this host) is gone."""
    from ..store import owner_is_dead  # noqa: PLC0415

    removed = 0
    if not frames_root.is_dir():
        return 0
    for p in frames_root.iterdir():
        if not (p.is_dir() and p.name.startswith(".") and _PARTIAL in p.name):
            continue
        try:
            owner = json.loads((p / ".owner.json").read_text())
        except (OSError, json.JSONDecodeError):
            owner = {"host": socket.gethostname(), "pid": None}  # killed before it wrote its owner
        if owner_is_dead(owner):
            shutil.rmtree(p, ignore_errors=True)
            removed += 1
    return removed


def _existing(final: Path, plan: VideoPlan, settings: ExtractSettings) -> ExtractResult | None:
    """A finished folder is kept if it was made with the same settings (else an error)."""
    if not final.is_dir():
        return None
    meta_path = final / META_FILE
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        made = {k: meta.get(k) for k in ("start", "height", "fps")}
        want = {"start": settings.start, "height": settings.height, "fps": settings.fps}
        if made != want:
            raise VideoError(f"{final}: was extracted with {made}, this run asks for {want}; "
                             "delete the folder or use the same settings")
        return ExtractResult(plan.video_id, "kept", int(meta.get("frames", 0)))
    return ExtractResult(plan.video_id, "kept", sum(1 for _ in final.glob("image_*.jpg")))


def extract_video(plan: VideoPlan, frames_root: str | Path, settings: ExtractSettings,
                  progress: Callable[[int], None] | None = None, threads: int = 0) -> ExtractResult:
    """Write one video's frames into ``frames_root/<video_id>`` (atomically, see module doc)."""
    from PIL import Image  # noqa: PLC0415

    frames_root = Path(frames_root)
    final = frames_root / plan.video_id
    kept = _existing(final, plan, settings)
    if kept is not None:
        if progress:
            progress(plan.frames)
        return kept
    started = time.perf_counter()
    frames_root.mkdir(parents=True, exist_ok=True)
    tmp = frames_root / f".{plan.video_id}{_PARTIAL}{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        (tmp / ".owner.json").write_text(json.dumps(_owner()))
        times = [settings.start + k / settings.fps for k in range(plan.frames)]
        encoded: tuple[int, bytes] | None = None
        pending = 0
        for i, number, rgb in VideoFile(plan.video, threads).frames_at(times, settings.height):
            if encoded is None or encoded[0] != number:  # a repeated source frame is encoded once
                buf = io.BytesIO()
                Image.fromarray(rgb).save(buf, format="JPEG", quality=settings.quality)
                encoded = (number, buf.getvalue())
            (tmp / frame_name(i + 1)).write_bytes(encoded[1])
            pending += 1
            if progress and pending >= _REPORT_EVERY:
                progress(pending)
                pending = 0
        if progress and pending:
            progress(pending)
        meta = {**asdict(settings), "video": str(Path(plan.video).resolve()), "frames": plan.frames,
                "width": plan.size[0], "first_second": settings.start,
                "last_second": settings.start + (plan.frames - 1) / settings.fps}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1))
        (tmp / ".owner.json").unlink()
        try:
            os.rename(tmp, final)
        except OSError:  # another runner finished the same video first: keep theirs
            if not final.is_dir():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
            return ExtractResult(plan.video_id, "kept", plan.frames)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExtractResult(plan.video_id, "done", plan.frames, time.perf_counter() - started)


# ------------------------------------------------------------------------------ many videos
_queue: Any = None  # a worker's progress queue (set by the pool initializer)


def _init_worker(queue: Any) -> None:
    global _queue
    _queue = queue
    try:  # one process per video already fills the cores: no thread pools inside
        import cv2  # noqa: PLC0415

        cv2.setNumThreads(1)
    except ImportError:
        pass


def _worker(plan: VideoPlan, frames_root: str, settings: ExtractSettings) -> ExtractResult:
    return extract_video(plan, frames_root, settings, progress=_queue.put if _queue else None, threads=1)


def extract_videos(videos: Sequence[Path], out: str | Path, settings: ExtractSettings = ExtractSettings(),
                   jobs: int = 1, progress: bool = True) -> list[ExtractResult]:
    """Extract every video into ``out/frames`` with ``jobs`` processes and one progress bar.

    Every video is opened and checked first, so an unreadable file stops the run before anything
    is written. A video that fails while decoding (e.g. truncated data) leaves no folder; the
    videos finished before it are kept, and the error names its file."""
    from tqdm.auto import tqdm  # noqa: PLC0415

    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    plans = [plan_video(Path(v), settings) for v in videos]
    frames_root = Path(out) / "frames"
    for plan in plans:  # settings clash with finished folders: refuse before writing anything
        _existing(frames_root / plan.video_id, plan, settings)
    remove_stale_partials(frames_root)
    bar = tqdm(total=sum(p.frames for p in plans), desc="frames", unit="frame", disable=not progress,
               smoothing=0.1)
    results: list[ExtractResult] = []
    with bar:
        if jobs == 1 or len(plans) == 1:
            for plan in plans:
                results.append(extract_video(plan, frames_root, settings, bar.update))
            return results
        ctx = mp.get_context("spawn")
        queue = ctx.Manager().Queue()
        with cf.ProcessPoolExecutor(min(jobs, len(plans)), mp_context=ctx, initializer=_init_worker,
                                    initargs=(queue,)) as pool:
            pending = {pool.submit(_worker, p, str(frames_root), settings) for p in plans}
            try:
                while pending:
                    done, pending = cf.wait(pending, timeout=0.2)
                    while not queue.empty():
                        bar.update(queue.get())
                    for fut in done:
                        results.append(fut.result())
            except BaseException:
                for fut in pending:  # videos not started stay undone; running ones finish or clean up
                    fut.cancel()
                raise
            while not queue.empty():
                bar.update(queue.get())
    order = {p.video_id: i for i, p in enumerate(plans)}
    return sorted(results, key=lambda r: order[r.video_id])


__all__ = ["AVA_START", "AVA_END", "JPEG_QUALITY", "META_FILE", "ExtractSettings", "VideoPlan",
           "ExtractResult", "video_id_of", "list_videos", "plan_video", "frame_name",
           "remove_stale_partials", "extract_video", "extract_videos"]
