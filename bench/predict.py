"""``ravar-bench predict``: a stored job's model on your own clip and sentences.

Why it is built this way: the clip goes through the same steps as training data and the same
inference loop. The 3 s window around ``--time`` is decoded (:mod:`ravar_bench.video`), sampled
as the job's data was prepared (frame policy, number of frames, frame and key-frame sizes from its
checkpoint), candidate persons come from the harness's HOG detector on the 340-px key frame, and
an in-memory :class:`~ravar_bench.data.prepared.PreparedSplit` with one instance per sentence is
scored by :func:`ravar_bench.train.predict`, the one loop every adapter is evaluated with.

Everything is checked before anything is written (video readable and long enough, ``--time``
inside it, sentences not empty, checkpoint present, intact and of this protocol); outputs are
written to temporary names and renamed, JSON last.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoint import LoadedJob
from .video import ACAR_HEIGHT, FrameSource, VideoError

WINDOW_S = 3.0
TOP_K = 5
PREDICTION_FORMAT = "ravar-bench-clip-prediction"
PREDICTION_VERSION = 1


class PredictError(ValueError):
    """A predict argument is unusable; the message names the flag or file."""


# ----------------------------------------------------------------------------- choosing the job
def resolve_job(path: str | Path, baseline: str | None = None, seed: int | None = None) -> Path:
    """A job folder: ``path`` itself, or the job of ``baseline`` (lowest seed unless ``seed``) in
    the results directory ``path``."""
    path = Path(path)
    if (path / "record.json").is_file() or (path.parent.name == "jobs" and path.is_dir()):
        if baseline is not None or seed is not None:
            raise PredictError(f"{path} is a job folder; --baseline/--seed choose a job in a results "
                               "directory (pass RUNS_DIR instead)")
        return path
    if not (path / "store.json").is_file():
        raise PredictError(f"{path}: neither a job folder (RUNS/jobs/<id>) nor a results directory")
    from .store import Store  # noqa: PLC0415

    store = Store(path, create=False)
    records = list(store.records())
    names = sorted({r.get("baseline", {}).get("name", "?") for r in records})
    if baseline is None:
        raise PredictError(f"{path} is a results directory; pass --baseline NAME "
                           f"(baselines here: {', '.join(names) or 'none'})")
    mine = [r for r in records if r.get("baseline", {}).get("name") == baseline]
    if not mine:
        raise PredictError(f"--baseline {baseline}: no finished job in {path} (baselines here: "
                           f"{', '.join(names) or 'none'})")
    seeds = sorted({int(r["seed"]) for r in mine})
    want = seeds[0] if seed is None else seed
    chosen = [r for r in mine if int(r["seed"]) == want]
    if not chosen:
        raise PredictError(f"--seed {seed}: baseline {baseline} has seeds {seeds} in {path}")
    if len(chosen) > 1:
        ids = ", ".join(f"{r['job_id']} ({r.get('data', {}).get('spec')}, suite {r.get('suite')})"
                        for r in chosen)
        raise PredictError(f"--baseline {baseline} --seed {want}: several jobs match in {path}: {ids}; "
                           f"pass the job folder {path}/jobs/<id>")
    return store.job_dir(chosen[0]["job_id"])


# ------------------------------------------------------------------------------- the clip
@dataclass
class Clip:
    """A decoded window: sampled frames and key frame at model size, the 340-px key frame, boxes."""

    source: str
    time: float
    times: list[float]  # of the sampled frames
    frames: np.ndarray  # (T, H, W, 3) uint8
    key_frame: np.ndarray  # (Hk, Wk, 3) uint8
    key_frame_full: np.ndarray  # (340, W, 3) uint8, what the detector saw and the picture shows
    cand_boxes: np.ndarray  # (n, 4) float32 normalised
    cand_scores: np.ndarray  # (n,) float32
    detector: str
    timing_ms: dict[str, float] = field(default_factory=dict)


def check_texts(texts: list[str]) -> list[str]:
    """Sentences stripped; an empty one is an error naming which ``--text`` it is."""
    if not texts:
        raise PredictError("--text: give at least one sentence")
    out = []
    for i, text in enumerate(texts, 1):
        if not text or not text.strip():
            raise PredictError(f"--text #{i}: empty sentence")
        out.append(" ".join(text.split()))
    return out


def window_time(duration: float, when: float | None, what: str) -> float:
    """``--time`` (default: the middle), checked so that the 3 s window lies inside the clip."""
    half = WINDOW_S / 2
    if duration < WINDOW_S:
        raise PredictError(f"{what}: {duration:.2f} s long, shorter than the {WINDOW_S:g} s window a "
                           "prediction needs")
    t = duration / 2 if when is None else float(when)
    if not (math.isfinite(t) and half <= t <= duration - half):
        raise PredictError(f"--time {when}: the {WINDOW_S:g} s window around it is not inside {what} "
                           f"({duration:.2f} s long); use a time in [{half:.2f}, {duration - half:.2f}]")
    return t


def sample_offsets(num_frames: int, policy: str) -> tuple[list[float], float]:
    """Offsets (s) from the key time of the sampled frames and of the key frame, exactly as the
    prepared data picks frame files (:func:`ravar_bench.data.frames.clip_frame_numbers`)."""
    from .data.frames import FIRST_SECOND, FPS, clip_frame_numbers  # noqa: PLC0415

    ref_ts = int(FIRST_SECOND) + 100
    key_file = (ref_ts - int(FIRST_SECOND)) * FPS + 1
    numbers, key = clip_frame_numbers(ref_ts, num_frames, policy)  # type: ignore[arg-type]
    return [(n - key_file) / FPS for n in numbers], (key - key_file) / FPS


def candidate_detector(ckpt: dict[str, Any]) -> tuple[str, float | None]:
    """How to find candidate persons so that they resemble the job's training candidates:
    prepare's HOG (1x) for ``hog``, none for ``none``, else (a candidates file: RAVAR-Synth's
    generator or ``data import``'s HOG) the import's HOG setting."""
    from .data.importer import HOG_UPSCALE  # noqa: PLC0415

    prep = ckpt.get("data", {}).get("prepare", {})
    detector = prep.get("detector", "file")
    if detector == "none":
        return "none", None
    if detector == "hog":
        return "hog (as the training data: 1x)", 1.0
    return f"hog ({HOG_UPSCALE:g}x upscale, as data import)", HOG_UPSCALE


def decode_clip(source: FrameSource, when: float | None, job: LoadedJob) -> Clip:
    """Decode, sample, resize and detect for one window (see the module docstring)."""
    from PIL import Image  # noqa: PLC0415

    from .data.detect import hog_person_boxes  # noqa: PLC0415
    from .data.prepare import HOG_MAX_BOXES  # noqa: PLC0415

    info = job.info
    policy = job.checkpoint.get("data", {}).get("frame_policy", "correct")
    t = window_time(source.info.duration, when, str(source.info.path))
    offsets, key_offset = sample_offsets(info.num_frames, policy)
    times = sorted({t + o for o in offsets} | {t + key_offset})
    start = time.perf_counter()
    decoded = {times[i]: rgb for i, _, rgb in source.frames_at(times, ACAR_HEIGHT)}
    decode_ms = (time.perf_counter() - start) * 1000

    def resized(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        if rgb.shape[:2] == tuple(size):
            return rgb
        return np.asarray(Image.fromarray(rgb).resize((size[1], size[0]), Image.BICUBIC), dtype=np.uint8)

    frames = np.stack([resized(decoded[t + o], info.frame_size) for o in offsets])
    full = decoded[t + key_offset]
    detector, upscale = candidate_detector(job.checkpoint)
    start = time.perf_counter()
    if upscale is None:
        boxes, scores = np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    else:
        boxes, scores = hog_person_boxes(full, max_boxes=HOG_MAX_BOXES, upscale=upscale)
    detect_ms = (time.perf_counter() - start) * 1000
    return Clip(str(source.info.path), t, [t + o for o in offsets], frames,
                resized(full, info.key_frame_size), full, boxes, scores, detector,
                {"decode": round(decode_ms, 1), "detect": round(detect_ms, 1)})


def clip_split(clip: Clip, texts: list[str], job: LoadedJob):
    """The clip as a one-clip :class:`PreparedSplit`, one instance per sentence (no ground truth:
    zero boxes and labels, which ``train.predict`` does not read)."""
    from .data.prepared import PreparedMeta, PreparedSplit  # noqa: PLC0415

    n, k = len(texts), max(1, len(clip.cand_boxes))
    cand_boxes = np.zeros((1, k, 4), np.float32)
    cand_scores = np.zeros((1, k), np.float32)
    cand_mask = np.zeros((1, k), bool)
    m = len(clip.cand_boxes)
    cand_boxes[0, :m], cand_scores[0, :m], cand_mask[0, :m] = clip.cand_boxes, clip.cand_scores, True
    h = hashlib.sha256()  # content address: caches keyed by split fingerprint never mix two clips
    for part in (clip.frames, clip.key_frame, cand_boxes, cand_scores):
        h.update(np.ascontiguousarray(part).tobytes())
    h.update("\n".join(texts).encode())
    video_id = "clip"
    ts = int(round(clip.time))
    meta = PreparedMeta(source=f"predict:{clip.source}@{clip.time:.3f}", split="predict",
                        fingerprint=h.hexdigest(), object_classes=list(job.info.object_classes),
                        frame_policy=job.checkpoint.get("data", {}).get("frame_policy", "correct"),
                        extra={"detector": clip.detector, "time": clip.time})
    return PreparedSplit(
        meta=meta, keys=[f"{video_id}___{ts}___{i}" for i in range(n)], texts=list(texts),
        clip_index=np.zeros(n, np.int32), boxes=np.zeros((n, 4), np.float32),
        labels=np.zeros((n, 80), np.uint8), frames=clip.frames[None], key_frames=clip.key_frame[None],
        cand_boxes=cand_boxes, cand_labels=np.zeros((1, k), np.int16), cand_scores=cand_scores,
        cand_mask=cand_mask)


# ----------------------------------------------------------------------------------- running
def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of one box ``a`` (4,) with boxes ``b`` (n, 4), normalised xyxy."""
    if len(b) == 0:
        return np.zeros(0)
    ix = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0, None)
    iy = np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0, None)
    inter = ix * iy
    def area(x: np.ndarray) -> np.ndarray:
        return np.clip(x[..., 2] - x[..., 0], 0, None) * np.clip(x[..., 3] - x[..., 1], 0, None)

    return inter / np.maximum(area(a) + area(b) - inter, 1e-12)


@dataclass
class ClipPrediction:
    """The JSON-ready result and the 340-px key frame it was drawn on."""

    result: dict[str, Any]
    key_frame: np.ndarray


def predict_clip(job: LoadedJob, source: FrameSource, texts: list[str], when: float | None = None,
                 device: str = "cpu", top_k: int = TOP_K) -> ClipPrediction:
    """Score ``texts`` on the window of ``source`` around ``when``."""
    from .classes import AVA_ACTIONS  # noqa: PLC0415
    from .train import TrainConfig, predict  # noqa: PLC0415

    texts = check_texts(texts)
    clip = decode_clip(source, when, job)
    split = clip_split(clip, texts, job)
    cfg = TrainConfig.from_dict({**job.train, "device": device})
    start = time.perf_counter()
    preds = predict(job.model, split, cfg)
    model_ms = (time.perf_counter() - start) * 1000
    h, w = clip.key_frame_full.shape[:2]
    results = []
    for i, text in enumerate(texts):
        probs = 1.0 / (1.0 + np.exp(-preds.scores[i].astype(np.float64)))
        order = np.argsort(-probs, kind="stable")
        box = np.clip(preds.boxes[i].astype(np.float64), 0.0, 1.0)
        overlaps = iou(box, clip.cand_boxes.astype(np.float64))
        results.append({
            "text": text,
            "box": [round(float(v), 4) for v in box],
            "box_pixels": [round(float(v)) for v in box * [w, h, w, h]],
            "top": [{"id": int(j) + 1, "name": AVA_ACTIONS[j], "score": round(float(probs[j]), 4)}
                    for j in order[:top_k]],
            "scores": [round(float(p), 5) for p in probs],
            "best_candidate": (None if len(overlaps) == 0 else
                               {"index": int(overlaps.argmax()), "iou": round(float(overlaps.max()), 4)}),
        })
    rec = job.record
    result = {
        "format": PREDICTION_FORMAT, "version": PREDICTION_VERSION,
        "job": {"job_id": rec.get("job_id"), "folder": str(job.job_dir),
                "baseline": rec.get("baseline", {}).get("name"),
                "adapter": job.checkpoint.get("adapter"), "seed": job.checkpoint.get("seed"),
                "data": job.checkpoint.get("data", {}).get("spec")},
        "source": clip.source, "time": round(clip.time, 4),
        "window": [round(clip.time - WINDOW_S / 2, 4), round(clip.time + WINDOW_S / 2, 4)],
        "frame_times": [round(t, 4) for t in clip.times], "key_frame_size": [h, w],
        "detector": clip.detector,
        "candidates": [{"box": [round(float(v), 4) for v in b], "score": round(float(s), 4)}
                       for b, s in zip(clip.cand_boxes, clip.cand_scores)],
        "results": results,
        "timing_ms": {**clip.timing_ms, "model": round(model_ms, 1)},
    }
    return ClipPrediction(result, clip.key_frame_full)


# ----------------------------------------------------------------------------------- outputs
def draw(result: dict[str, Any], key_frame: np.ndarray, index: int) -> Any:
    """The key frame with the predicted box, the detector's candidates and the top actions."""
    from PIL import Image, ImageDraw, ImageFont  # noqa: PLC0415

    res = result["results"][index]
    h, w = key_frame.shape[:2]
    scale = 2 if h < 400 else 1  # a 340-px frame is small on a screen: draw it at 680 px
    frame = Image.fromarray(key_frame).resize((w * scale, h * scale), Image.BICUBIC)
    w, h = frame.size
    try:
        font = ImageFont.load_default(size=15)
    except TypeError:  # Pillow < 10.1: the bitmap font only
        font = ImageFont.load_default()
    lines = [f'"{res["text"]}"'] + [f"{a['score']:.2f}  {a['name']}" for a in res["top"]]
    pad, line_h = 8, 20
    canvas = Image.new("RGB", (w, h + pad * 2 + line_h * len(lines)), (255, 255, 255))
    canvas.paste(frame, (0, 0))
    d = ImageDraw.Draw(canvas)
    for cand in result["candidates"]:
        x1, y1, x2, y2 = (v * s for v, s in zip(cand["box"], (w, h, w, h)))
        d.rectangle([x1, y1, x2, y2], outline=(255, 255, 255), width=1)
    x1, y1, x2, y2 = (v * s for v, s in zip(res["box"], (w, h, w, h)))
    for off, colour in ((2, (0, 0, 0)), (0, (40, 220, 40))):
        d.rectangle([x1 - off, y1 - off, x2 + off, y2 + off], outline=colour, width=3)
    label = res["top"][0]["name"] if res["top"] else ""
    tw = d.textlength(label, font=font)
    ty = max(0, y1 - line_h)
    d.rectangle([x1, ty, x1 + tw + 6, ty + line_h - 2], fill=(40, 220, 40))
    d.text((x1 + 3, ty + 1), label, fill=(0, 0, 0), font=font)
    for i, line in enumerate(lines):
        d.text((pad, h + pad + i * line_h), line, fill=(0, 0, 0) if i else (0, 70, 160), font=font)
    return canvas


def _replace_into(path: Path, write: Any) -> None:
    """``write`` a hidden sibling (created normally, so the umask applies), then rename it over."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_outputs(pred: ClipPrediction, out: str | Path) -> dict[str, Any]:
    """``<stem>_t<time>.json`` plus one ``<stem>_t<time>_<i>.png`` per sentence in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result, key_frame = pred.result, pred.key_frame
    stem = f"{Path(result['source']).stem}_t{result['time']:g}"
    pictures = []
    for i in range(len(result["results"])):
        path = out / f"{stem}_{i}.png"
        _replace_into(path, lambda p, i=i: draw(result, key_frame, i).save(p, format="PNG"))
        result["results"][i]["picture"] = path.name
        pictures.append(path)
    json_path = out / f"{stem}.json"
    _replace_into(json_path, lambda p: p.write_text(json.dumps(result, indent=1)))
    return {"json": json_path, "pictures": pictures}


def format_result(result: dict[str, Any]) -> str:
    """What ``predict`` prints: per sentence the box and the top actions."""
    lines = [f"{result['source']} @ {result['time']:g} s (window {result['window'][0]:g}-"
             f"{result['window'][1]:g} s), {len(result['candidates'])} candidate person(s) from "
             f"{result['detector']}; job {result['job']['job_id']} ({result['job']['baseline']}, "
             f"seed {result['job']['seed']})"]
    for res in result["results"]:
        bx = ", ".join(f"{v:.3f}" for v in res["box"])
        px = ", ".join(str(v) for v in res["box_pixels"])
        lines.append(f'"{res["text"]}"')
        lines.append(f"  box [{bx}] (normalised x1, y1, x2, y2; {px} px on the key frame)")
        lines += [f"  {a['score']:.3f}  {a['name']} ({a['id']})" for a in res["top"]]
    t = result["timing_ms"]
    load = f"load model {t['load_model']:.0f} ms, " if "load_model" in t else ""
    lines.append(f"timing: {load}decode {t['decode']:.0f} ms, detect {t['detect']:.0f} ms, "
                 f"model {t['model']:.0f} ms")
    return "\n".join(lines)


__all__ = ["PredictError", "VideoError", "Clip", "ClipPrediction", "resolve_job", "check_texts", "window_time",
           "sample_offsets", "candidate_detector", "decode_clip", "clip_split", "predict_clip", "draw", "write_outputs",
           "format_result", "iou"]
