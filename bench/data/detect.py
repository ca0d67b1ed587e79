"""A CPU person detector for candidate boxes when a source ships none: OpenCV's HOG + linear SVM.

RefAtomNet feeds DETR boxes to its location stream; without weights or a GPU the harness still
needs *some* detector-like candidates, and OpenCV's built-in Dalal-Triggs people detector needs no
download. It is weak (upright, whole-body pedestrians) but deterministic and fast enough
(~0.1 s per 340-px frame). ``cv2`` is imported lazily so the harness runs without it.
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np

_local = threading.local()  # one HOGDescriptor per thread: detectMultiScale is not re-entrant


class DetectorUnavailableError(RuntimeError):
    """OpenCV (with HOGDescriptor) is not installed."""


def _cv2() -> Any:
    try:
        import cv2  # noqa: PLC0415  (heavy, optional)
    except ImportError as exc:
        raise DetectorUnavailableError(
            "the 'hog' detector needs OpenCV: pip install 'ravar-bench[detect]' "
            "(opencv-python-headless<5)") from exc
    if not hasattr(cv2, "HOGDescriptor"):
        raise DetectorUnavailableError(
            f"OpenCV {getattr(cv2, '__version__', '?')} has no HOGDescriptor; install "
            "opencv-python-headless<5 or an opencv-contrib build that has it")
    return cv2


def check_available() -> None:
    """Raise :class:`DetectorUnavailableError` now rather than halfway through a preparation."""
    _cv2()


def _hog() -> Any:
    hog = getattr(_local, "hog", None)
    if hog is None:
        cv2 = _cv2()
        hog = cv2.HOGDescriptor()
        hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        _local.hog = hog
    return hog


def hog_person_boxes(
    image_rgb_uint8: np.ndarray,
    max_boxes: int | None = None,
    win_stride: tuple[int, int] = (8, 8),
    padding: tuple[int, int] = (8, 8),
    scale: float = 1.05,
    upscale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Person boxes on one RGB uint8 image (H, W, 3).

    Returns ``boxes`` float32 (n, 4) normalised xyxy clipped to [0, 1] and ``scores`` float32 (n,)
    in (0, 1): the SVM margin through a logistic, highest first. Images smaller than the 64x128
    detection window give no boxes. ``upscale`` > 1 enlarges the image first, so persons shorter
    than the 128-px window are found too (2 finds 64-px persons; 3.5x the time on a 340-px frame).
    """
    img = np.asarray(image_rgb_uint8)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {img.dtype} {img.shape}")
    if not upscale > 0:
        raise ValueError(f"upscale must be > 0, got {upscale}")
    bgr = np.ascontiguousarray(img[..., ::-1])
    if upscale != 1.0:
        size = (max(1, round(img.shape[1] * upscale)), max(1, round(img.shape[0] * upscale)))
        bgr = _cv2().resize(bgr, size, interpolation=_cv2().INTER_LINEAR)
    h, w = bgr.shape[:2]
    empty = np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
    if h < 128 or w < 64:
        return empty
    rects, weights = _hog().detectMultiScale(bgr, winStride=win_stride, padding=padding, scale=scale)
    if len(rects) == 0:
        return empty
    rects = np.asarray(rects, np.float64).reshape(-1, 4)
    margins = np.asarray(weights, np.float64).reshape(-1)
    boxes = np.stack([rects[:, 0] / w, rects[:, 1] / h,
                      (rects[:, 0] + rects[:, 2]) / w, (rects[:, 1] + rects[:, 3]) / h], axis=1)
    boxes = np.clip(boxes, 0.0, 1.0)
    scores = 1.0 / (1.0 + np.exp(-margins))
    order = np.argsort(-scores, kind="stable")[: max_boxes if max_boxes is not None else None]
    return boxes[order].astype(np.float32), scores[order].astype(np.float32)
