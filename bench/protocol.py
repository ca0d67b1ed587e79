"""The RAVAR evaluation protocol: the types every other module speaks.

Data flows one way: a prepared split (``ravar_bench.data.prepared``) yields :class:`Batch` es, an
adapter model maps a batch to a :class:`ModelOutput`, the loop gathers :class:`Predictions`, and
metrics score predictions against the split's ground truth. This module imports nothing of ours.

Conventions
-----------
* An instance key is ``f"{video_id}___{timestamp}___{person_id}"`` (triple underscore), as in the
  official RefAVA pickles.
* Boxes are normalised ``[x1, y1, x2, y2]`` in [0, 1] on the key frame.
* Labels are an 80-d multi-hot vector; index ``i`` is AVA action id ``i + 1``.
* Scores are raw logits (rank-based metrics do not care; the loss applies the sigmoid).
"""
from __future__ import annotations

import abc
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

KEY_SEP = "___"

#: Bump when the meaning of a job changes (what a job computes or how it is scored), so that old
#: records and checkpoints are not mistaken for new ones.
PROTOCOL_VERSION = "1"

#: Inputs an adapter may ask the loop to put into a batch.
INPUT_FIELDS = frozenset({"frames", "key_frame", "text", "candidates", "person_features"})


def canonical_json(value: Any) -> str:
    """The JSON text hashed for job and data identity: sorted keys, no whitespace, ASCII, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def make_key(video_id: str, timestamp: int | str, person_id: int | str) -> str:
    """Build an instance key; video ids may not contain the separator."""
    if KEY_SEP in str(video_id):
        raise ValueError(f"video id {video_id!r} contains the key separator {KEY_SEP!r}")
    return f"{video_id}{KEY_SEP}{timestamp}{KEY_SEP}{person_id}"


def split_key(key: str) -> tuple[str, str, str]:
    """Split ``video___timestamp___person`` into its three parts (strings)."""
    parts = key.split(KEY_SEP)
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"instance key {key!r} is not of the form video___timestamp___person")
    return parts[0], parts[1], parts[2]


@dataclass
class Batch:
    """One mini-batch. Fields an adapter did not ask for are ``None``.

    frames      float (B, T, 3, H, W) in [0, 1], RGB, the clip at model resolution.
    key_frame   float (B, 3, Hk, Wk) in [0, 1], RGB, the annotated key frame.
    text        list[str] of length B, the referring expressions.
    cand_boxes  float (B, K, 4) candidate boxes (detector output), normalised xyxy.
    cand_labels long (B, K) index into ``DatasetInfo.object_classes`` (0 = person).
    cand_scores float (B, K) detector confidence.
    cand_mask   bool (B, K) True where a candidate exists (rows are padded to K).
    gt_box      float (B, 4) and labels float (B, 80): targets, used by the loss only.
    index       long (B,) row of each instance in its split, so cached features can be looked up.
    person_feats float (B, K, F, D) frozen person-stage features of every candidate on F frames
                (``ravar_bench.data.person_features``), zeros where ``cand_mask`` is False.
    clip_feats  float (B, F, D) the same backbone on the whole frames (clip-level context).
    """

    keys: list[str]
    index: torch.Tensor
    gt_box: torch.Tensor
    labels: torch.Tensor
    frames: torch.Tensor | None = None
    key_frame: torch.Tensor | None = None
    text: list[str] | None = None
    cand_boxes: torch.Tensor | None = None
    cand_labels: torch.Tensor | None = None
    cand_scores: torch.Tensor | None = None
    cand_mask: torch.Tensor | None = None
    person_feats: torch.Tensor | None = None
    clip_feats: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.keys)

    def to(self, device: torch.device | str) -> "Batch":
        """Move every tensor field to ``device``."""
        moved = {
            name: (value.to(device) if isinstance(value, torch.Tensor) else value)
            for name, value in self.__dict__.items()
        }
        return Batch(**moved)


@dataclass
class ModelOutput:
    """What an adapter model returns for a batch: 80 action logits and one box per instance."""

    scores: torch.Tensor  # (B, 80) logits
    box: torch.Tensor  # (B, 4) normalised xyxy (unconstrained regression is allowed)
    aux: dict[str, Any] = field(default_factory=dict)


@dataclass
class Predictions:
    """Per-instance predictions for a whole split, in split order. Re-scorable offline."""

    keys: list[str]
    scores: np.ndarray  # (N, 80) float32 logits
    boxes: np.ndarray  # (N, 4) float32

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=np.float32)
        self.boxes = np.asarray(self.boxes, dtype=np.float32)
        n = len(self.keys)
        if self.scores.shape != (n, 80):
            raise ValueError(f"scores must have shape ({n}, 80), got {self.scores.shape}")
        if self.boxes.shape != (n, 4):
            raise ValueError(f"boxes must have shape ({n}, 4), got {self.boxes.shape}")
        if len(set(self.keys)) != n:
            raise ValueError("prediction keys must be unique")


@dataclass(frozen=True)
class DatasetInfo:
    """What a model may know about the data before training (never the eval labels)."""

    num_frames: int
    frame_size: tuple[int, int]  # (H, W) of ``Batch.frames``
    key_frame_size: tuple[int, int]  # (H, W) of ``Batch.key_frame``
    max_candidates: int
    object_classes: tuple[str, ...]  # candidate label vocabulary; index 0 is "person"
    train_prior: tuple[float, ...]  # per-class positive rate on the training split (80)
    mean_box: tuple[float, float, float, float]  # mean training GT box
    name: str = "unknown"


class RavarModel(nn.Module, metaclass=abc.ABCMeta):
    """Base class of every adapter model.

    A model is split into an ``encode`` part (backbones) and a ``head`` part so that the one
    training loop can cache features when the encoder is frozen: it then calls ``encode`` once per
    instance and trains ``head`` on the cache. Models that fine-tune end to end simply leave
    ``frozen_encoder = False``; ``forward`` is always ``head(encode(batch), batch)``.

    Subclasses declare ``inputs`` (a subset of :data:`INPUT_FIELDS`) so the loader builds only
    what is used.
    """

    inputs: ClassVar[frozenset[str]] = frozenset()
    #: True when ``encode`` has no trainable parameters and is deterministic, so its outputs
    #: may be computed once and cached. Set per instance from the adapter's ``freeze`` option.
    frozen_encoder: bool = False

    def encode(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Backbone features of a batch, as a dict of tensors whose first axis is the batch."""
        return {}

    @abc.abstractmethod
    def head(self, features: dict[str, torch.Tensor], batch: Batch) -> ModelOutput:
        """Map features (and, if needed, non-cached batch fields) to logits and a box."""

    def forward(self, batch: Batch) -> ModelOutput:
        return self.head(self.encode(batch), batch)

    def encoder_parameters(self) -> list[nn.Parameter]:
        """Parameters that belong to ``encode`` (frozen ones are skipped by the optimizer)."""
        return []
