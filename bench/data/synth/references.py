"""Known reference scores shipped with every generated dataset (``references.json``).

Three anchors, each scored with ``paper_v1`` on val and test, bracket what a model can reach:

* ``prior_only``  - the train class prevalence as scores for every instance, the mean train box.
* ``text_blind``  - the best we know without reading the sentence: scores = the mean label vector
  of *all* people in the clip (the referred person is one of them), box = one clip-level box
  rule, picked on train among several (see :data:`BOX_RULES`). It uses every person's true box
  and labels, so it upper-bounds a model that sees the clip perfectly but ignores the text.
* ``oracle``      - the true labels and the true box (100 / 100 / 100 by construction).

``text_blind`` needs perfect perception of every person, so it is an upper bound for text-blind
models, not a level a learned text-blind model should reach; the learned references on the CPU
protocol's own features (``baselines/text_blind_persons.toml``, ``oracle_grounding.toml``) are the
reachable levels.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from .writer import label_matrix, read_sidecar



def _area(b: np.ndarray) -> np.ndarray:
    return np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x1, y1 = np.maximum(a[..., 0], b[..., 0]), np.maximum(a[..., 1], b[..., 1])
    x2, y2 = np.minimum(a[..., 2], b[..., 2]), np.minimum(a[..., 3], b[..., 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    return inter / np.maximum(_area(a) + _area(b) - inter, 1e-12)


def _union(boxes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.array([boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max()])


def _central(boxes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    c = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], 1)
    return boxes[int(np.argmin(((c - 0.5) ** 2).sum(1)))]


def _largest(boxes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return boxes[int(np.argmax(_area(boxes)))]


def _mean(boxes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return boxes.mean(0)


def _random(boxes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return boxes[int(rng.integers(len(boxes)))]


def _medoid(boxes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The person box with the highest summed IoU to everyone's boxes (itself included)."""
    iou = _iou(boxes[:, None, :], boxes[None, :, :]).sum(1)
    return boxes[int(np.argmax(iou + 1e-6 * _area(boxes)))]


#: Clip-level box rules a text-blind model could apply (one box for every instance of a clip).
BOX_RULES: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "union": _union, "central": _central, "largest": _largest, "mean": _mean,
    "random": _random, "medoid": _medoid,
}


def _instances(records: list[dict]) -> tuple[list[list[int]], np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Labels, boxes, clip mean label vector and clip person boxes of every referred instance."""
    labels, boxes, clip_scores, clip_boxes = [], [], [], []
    for rec in records:
        people = rec["people"]
        mean = label_matrix([p["labels"] for p in people]).astype(np.float64).mean(0)
        pboxes = np.array([p["box"] for p in people], np.float64)
        for p in people:
            if p["referred"]:
                labels.append(p["labels"])
                boxes.append(p["box"])
                clip_scores.append(mean)
                clip_boxes.append(pboxes)
    return labels, np.array(boxes, np.float64).reshape(-1, 4), clip_scores, clip_boxes


def _score(scores: np.ndarray, labels: np.ndarray, pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    from ...metrics import paper_v1  # noqa: PLC0415  (imported only when scoring)

    return {k: round(float(v), 3) for k, v in paper_v1(scores, labels, pred, gt).items()}


def compute_references(root: str | Path, seed: int = 0, eval_splits: tuple[str, ...] = ("val", "test")) -> dict:
    """Reference scores from the sidecars in a RefAVA-layout ``root`` (train must exist)."""
    tr_labels, tr_boxes, tr_scores, tr_clip_boxes = _instances(read_sidecar(root, "train"))
    prior = label_matrix(tr_labels).astype(np.float64).mean(0)
    mean_box = tr_boxes.mean(0)
    rule_train = {}
    for name, rule in BOX_RULES.items():
        rng = np.random.default_rng([seed, 1])
        pred = np.stack([rule(b, rng) for b in tr_clip_boxes])
        rule_train[name] = float(_iou(pred, tr_boxes).mean() * 100)
    best_rule = max(rule_train, key=lambda k: (rule_train[k], k))
    out: dict = {
        "metric": "paper_v1",
        "definitions": {
            "prior_only": "scores = train class prevalence, box = mean train box",
            "text_blind": "scores = mean label vector of all people in the clip, box = "
                          f"'{best_rule}' rule over all people's boxes (best train mIoU among "
                          f"{sorted(BOX_RULES)})",
            "oracle": "true labels, true box",
        },
        "text_blind_box_rule": best_rule,
        "box_rules_train_mIoU": {k: round(v, 3) for k, v in sorted(rule_train.items())},
    }
    for split in eval_splits:
        labels, boxes, clip_scores, clip_boxes = _instances(read_sidecar(root, split))
        y = label_matrix(labels)
        n = len(labels)
        rng = np.random.default_rng([seed, 1])
        blind_box = np.stack([BOX_RULES[best_rule](b, rng) for b in clip_boxes])
        out[split] = {
            "instances": n,
            "prior_only": _score(np.tile(prior, (n, 1)), y, np.tile(mean_box, (n, 1)), boxes),
            "text_blind": _score(np.stack(clip_scores), y, blind_box, boxes),
            "oracle": _score(y.astype(np.float64), y, boxes, boxes),
        }
        rules = {}
        for name, rule in BOX_RULES.items():
            rng = np.random.default_rng([seed, 1])
            pred = np.stack([rule(b, rng) for b in clip_boxes])
            rules[name] = round(float(_iou(pred, boxes).mean() * 100), 3)
        out[split]["text_blind_box_rules_mIoU"] = rules
    return out
