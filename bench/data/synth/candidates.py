"""Detector-like candidate boxes for a key frame: what a model may use instead of ground truth.

Every person's true box is perturbed (coordinate jitter proportional to the box size), some are
missed (more often when occluded), false positives appear, and props and held objects are listed
with their class names. Candidates are sorted by score, as a detector returns them, so their
order says nothing about who is referred.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .render import KeyFrameGeometry

#: Class names a candidate may carry (besides "person").
OBJECT_KINDS = ("ball", "book", "box", "chair", "cup", "phone", "table")


@dataclass(frozen=True)
class DetectorNoise:
    jitter: float  # std of each coordinate, as a fraction of the box width / height
    miss: float  # probability a fully visible person is missed
    false_pos: float  # expected false-positive person boxes per key frame
    object_miss: float  # probability an object is missed

    @classmethod
    def for_difficulty(cls, d: float) -> "DetectorNoise":
        return cls(jitter=0.03 + 0.07 * d, miss=0.01 + 0.08 * d, false_pos=0.2 + 1.0 * d,
                   object_miss=0.05 + 0.15 * d)


def _norm(box: tuple[float, ...], w: int, h: int) -> list[float]:
    x1, y1, x2, y2 = box
    out = [min(max(x1 / w, 0.0), 1.0), min(max(y1 / h, 0.0), 1.0),
           min(max(x2 / w, 0.0), 1.0), min(max(y2 / h, 0.0), 1.0)]
    out[2], out[3] = max(out[2], out[0]), max(out[3], out[1])
    return [round(float(v), 5) for v in out]


def _jitter(rng: np.random.Generator, box: tuple[float, ...], s: float) -> tuple[float, ...]:
    x1, y1, x2, y2 = box
    bw, bh = x2 - x1, y2 - y1
    d = rng.normal(0.0, s, 4) * np.array([bw, bh, bw, bh])
    nx1, ny1, nx2, ny2 = x1 + d[0], y1 + d[1], x2 + d[2], y2 + d[3]
    return (min(nx1, nx2 - 1), min(ny1, ny2 - 1), max(nx2, nx1 + 1), max(ny2, ny1 + 1))


def simulate_detections(geo: KeyFrameGeometry, width: int, height: int, noise: DetectorNoise,
                        rng: np.random.Generator) -> dict[str, list]:
    """``{"boxes", "labels", "scores"}`` for one key frame (normalised xyxy, sorted by score)."""
    dets: list[tuple[float, str, list[float]]] = []
    for box, occ in zip(geo.person_boxes, geo.occlusion):
        occ = min(max(occ, 0.0), 1.0)
        if rng.random() < noise.miss + 0.6 * occ ** 2:
            continue
        score = float(np.clip(rng.normal(0.88 - 0.35 * occ, 0.06), 0.3, 0.995))
        dets.append((score, "person", _norm(_jitter(rng, box, noise.jitter), width, height)))
    for _ in range(int(rng.poisson(noise.false_pos))):
        bh = rng.uniform(20, 50)
        bw = bh * rng.uniform(0.3, 0.6)
        x, y2 = rng.uniform(0, width - bw), rng.uniform(0.7 * height, height)
        dets.append((float(rng.uniform(0.3, 0.7)), "person", _norm((x, y2 - bh, x + bw, y2), width, height)))
    for kind, box in geo.objects:
        if box[2] <= 0 or box[0] >= width or rng.random() < noise.object_miss:
            continue
        score = float(np.clip(rng.normal(0.75, 0.1), 0.3, 0.99))
        dets.append((score, kind, _norm(_jitter(rng, box, noise.jitter * 0.7), width, height)))
    dets.sort(key=lambda d: -d[0])
    return {"boxes": [d[2] for d in dets], "labels": [d[1] for d in dets],
            "scores": [round(d[0], 5) for d in dets]}
