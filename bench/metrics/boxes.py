"""Box overlap exactly as the official RefAtomNet ``get_iou`` (test.py / train_file.py)."""
from __future__ import annotations

import numpy as np

from .validation import check_boxes


def box_iou(pred_boxes, gt_boxes) -> np.ndarray:
    """Row-wise IoU of normalised ``[x1, y1, x2, y2]`` boxes, shape (N,) float64.

    Mirrors the official ``get_iou``: the intersection rectangle is
    ``max(x1), max(y1), min(x2), min(y2)``; if ``x_right < x_left or y_bottom < y_top`` the IoU
    is 0; otherwise ``inter / (area_pred + area_gt - inter)``. The predicted box is neither
    clamped to [0, 1] nor sorted, as in the official code.

    Degenerate and inverted boxes (why this never needs clamping):

    * A box inverted on an axis (``x2 < x1`` or ``y2 < y1``), predicted *or* GT, always hits the
      early return (e.g. ``x_right <= pred.x2 < pred.x1 <= x_left``), so it scores 0 like the
      official code.
    * A zero-area box touching a box of positive area gives ``0 / area > 0 = 0``, also as official.
    * The only divergence: when *both* boxes have zero area and touch, the official formula is
      ``0 / 0 = nan`` and its ``assert iou >= 0.0`` aborts the evaluation. We return 0 instead
      (a box without area localises nothing). Touching boxes (``x_right == x_left``) score 0.

    Computed in float64; the official code mixes float32 predictions with float64 GT, which can
    move an IoU by ~1e-7 (relevant only for the ``IoU >= 0.5`` gate exactly at the border).
    """
    p = check_boxes(pred_boxes, None, "pred_boxes")
    g = check_boxes(gt_boxes, p.shape[0], "gt_boxes")
    return iou_unchecked(p, g)


def iou_unchecked(p: np.ndarray, g: np.ndarray) -> np.ndarray:
    x_left = np.maximum(p[:, 0], g[:, 0])
    y_top = np.maximum(p[:, 1], g[:, 1])
    x_right = np.minimum(p[:, 2], g[:, 2])
    y_bottom = np.minimum(p[:, 3], g[:, 3])
    overlap = (x_right >= x_left) & (y_bottom >= y_top)
    inter = (x_right - x_left) * (y_bottom - y_top)
    union = ((p[:, 2] - p[:, 0]) * (p[:, 3] - p[:, 1])
             + (g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1]) - inter)
    ok = overlap & (union > 0)
    iou = np.zeros(p.shape[0], dtype=np.float64)
    np.divide(inter, union, out=iou, where=ok)
    return iou
