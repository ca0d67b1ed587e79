"""Input checks shared by every metric: fail early with a message that names the argument."""
from __future__ import annotations

import numpy as np


def check_scores_labels(scores, labels, *, n_classes: int | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(scores, labels)`` as float arrays of shape (N, C).

    Scores keep float32 when given float32 (sorting is exact either way and faster); anything
    else becomes float64. Labels must be 0/1 (bool, int or float). Non-finite scores are rejected
    because sklearn rejects them too and a NaN silently breaks every ranking.
    """
    s = np.asarray(scores)
    if s.ndim != 2:
        raise ValueError(f"scores must be a 2-D array of shape (n_samples, n_classes), "
                         f"got shape {s.shape}")
    if s.shape[0] < 1 or s.shape[1] < 1:
        raise ValueError(f"scores must have at least one sample and one class, got shape {s.shape}")
    if n_classes is not None and s.shape[1] != n_classes:
        raise ValueError(f"scores must have {n_classes} columns (AVA action classes), "
                         f"got shape {s.shape}")
    if not (np.issubdtype(s.dtype, np.number) or s.dtype == bool):
        raise ValueError(f"scores must be numeric, got dtype {s.dtype}")
    if s.dtype != np.float32:
        s = s.astype(np.float64)
    if np.isnan(s).any():
        raise ValueError(f"scores contains NaN at {np.argwhere(np.isnan(s))[0].tolist()} "
                         "(row, class)")
    if not np.isfinite(s).all():
        raise ValueError("scores contains infinite values; use large finite logits instead")

    y = np.asarray(labels)
    if y.shape != s.shape:
        raise ValueError(f"labels must have the same shape as scores {s.shape}, got {y.shape}")
    if not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
        raise ValueError(f"labels must be numeric 0/1, got dtype {y.dtype}")
    y = y.astype(np.float64)
    if not np.isin(y, (0.0, 1.0)).all():
        bad = y[~np.isin(y, (0.0, 1.0))]
        raise ValueError(f"labels must contain only 0 and 1, found {bad.flat[0]!r}")
    return s, y


def check_boxes(boxes, n: int | None, name: str) -> np.ndarray:
    """Return ``boxes`` as float64 (n, 4) (any n when ``n`` is None); finite values only."""
    b = np.asarray(boxes)
    if b.ndim != 2 or b.shape[1] != 4 or (n is not None and b.shape[0] != n):
        want = "N" if n is None else str(n)
        raise ValueError(f"{name} must have shape ({want}, 4) (normalised x1, y1, x2, y2), "
                         f"got {b.shape}")
    if not np.issubdtype(b.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {b.dtype}")
    b = b.astype(np.float64)
    if not np.isfinite(b).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return b


def check_all(scores, labels, pred_boxes, gt_boxes, *, n_classes: int | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validate the four arrays every profile takes."""
    s, y = check_scores_labels(scores, labels, n_classes=n_classes)
    n = s.shape[0]
    return s, y, check_boxes(pred_boxes, n, "pred_boxes"), check_boxes(gt_boxes, n, "gt_boxes")


def check_batch_size(value, name: str) -> int | None:
    """``None`` or a positive int."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
    return int(value)

