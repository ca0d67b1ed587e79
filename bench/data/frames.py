"""Which frame files a RefAVA instance reads, in the ACAR-Net layout ``frames/<vid>/image_%06d.jpg``.

Frames are extracted at 30 fps starting at second 900 of each AVA movie and numbered from 1, so the
annotated key frame of timestamp ``ts`` is file ``(ts - 900) * 30 + 1``. A RefAVA clip is the 90
frames (3 s) centred on it: window index ``i`` in 0..89 is file ``(ts - 900) * 30 + 1 - 45 + i``,
and the key frame is window index 45.

The released loader never increments its frame counter, so it reads the single file
``(ts - 900) * 30 - 45`` ninety times (1.5 s before the key frame) and uses it as key frame too.
That defect is reproducible as the ``official_repeat`` policy, off by default.
"""
from __future__ import annotations

from typing import Literal

import numpy as np

FPS = 30
WINDOW = 90
KEY_INDEX = 45
FIRST_SECOND = 900
FramePolicy = Literal["correct", "official_repeat"]
FRAME_POLICIES: tuple[str, ...] = ("correct", "official_repeat")


def frame_file(video_id: str, number: int) -> str:
    """Relative path of a frame file."""
    return f"frames/{video_id}/image_{number:06d}.jpg"


def window_indices(num_frames: int) -> np.ndarray:
    """The window indices (0..89) sampled for a clip of ``num_frames`` frames, evenly spaced."""
    if not 1 <= num_frames <= WINDOW:
        raise ValueError(f"num_frames must be in 1..{WINDOW}, got {num_frames}")
    return np.round(np.linspace(0, WINDOW - 1, num_frames)).astype(int)


def clip_frame_numbers(timestamp: int, num_frames: int, policy: FramePolicy = "correct") -> tuple[list[int], int]:
    """File numbers of the sampled clip frames and of the key frame for one timestamp."""
    if policy not in FRAME_POLICIES:
        raise ValueError(f"unknown frame policy {policy!r}; choose one of {FRAME_POLICIES}")
    ts = int(timestamp)
    if policy == "official_repeat":
        still = (ts - FIRST_SECOND) * FPS - KEY_INDEX
        return [still] * num_frames, still
    key = (ts - FIRST_SECOND) * FPS + 1
    start = key - KEY_INDEX
    return [start + int(i) for i in window_indices(num_frames)], key
