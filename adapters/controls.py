"""Control adapters that frame every leaderboard: what a score is worth without the full task.

* ``prior``      — class prevalence of the training split and the mean training box; no input.
* ``text_only``  — the sentence alone (no pixels): how much the description leaks the actions.
* ``video_only`` — the whole clip, no sentence and no box cue: the text-blind video baseline.
"""
from __future__ import annotations

import torch
from torch import nn

from ..protocol import Batch, DatasetInfo, ModelOutput, RavarModel
from .common import ActionBoxHeads, TextEncoderKind, TinyVideoEncoder, build_text_encoder, masked_mean
from .registry import register_adapter


@register_adapter("prior", domain="control")
class PriorOnly(RavarModel):
    """Training-set class prevalence as scores and the mean training box, for every instance."""

    inputs = frozenset()

    def __init__(self, info: DatasetInfo) -> None:
        super().__init__()
        prior = torch.tensor(info.train_prior, dtype=torch.float32).clamp(1e-4, 1 - 1e-4)
        self.register_buffer("logits", torch.log(prior / (1 - prior)))
        self.register_buffer("mean_box", torch.tensor(info.mean_box, dtype=torch.float32))
        self.frozen_encoder = True

    def head(self, features: dict[str, torch.Tensor], batch: Batch) -> ModelOutput:
        n = len(batch)
        return ModelOutput(self.logits.expand(n, -1).clone(), self.mean_box.expand(n, -1).clone())


@register_adapter("text_only", domain="control")
class TextOnly(RavarModel):
    """Sentence embedding (masked mean of word tokens) -> the standard heads; sees no pixels."""

    inputs = frozenset({"text"})

    def __init__(self, info: DatasetInfo, *, text_encoder: TextEncoderKind = "tiny", dim: int = 128,
                 hidden: int = 256) -> None:
        super().__init__()
        self.text = build_text_encoder(text_encoder, dim)
        self.heads = ActionBoxHeads(self.text.dim, info, hidden)
        self.frozen_encoder = not self.text.trainable

    def encode(self, batch: Batch) -> dict[str, torch.Tensor]:
        tokens, mask = self.text(batch.text)
        return {"sentence": masked_mean(tokens, mask)}

    def head(self, features: dict[str, torch.Tensor], batch: Batch) -> ModelOutput:
        scores, box = self.heads(features["sentence"])
        return ModelOutput(scores, box)

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self.text.parameters())


@register_adapter("video_only", domain="control")
class VideoOnly(RavarModel):
    """Whole-clip features from a tiny CPU video encoder -> heads; no sentence, no box cue."""

    inputs = frozenset({"frames"})

    def __init__(self, info: DatasetInfo, *, dim: int = 128, hidden: int = 256, freeze: bool = False) -> None:
        super().__init__()
        self.video = TinyVideoEncoder(dim)
        self.temporal = nn.Linear(dim, dim)
        self.heads = ActionBoxHeads(dim, info, hidden)
        if freeze:
            self.video.requires_grad_(False)
        self.frozen_encoder = freeze

    def encode(self, batch: Batch) -> dict[str, torch.Tensor]:
        tokens = self.video(batch.frames)  # (B, T, h, w, d)
        return {"clip": tokens.mean((2, 3))}  # (B, T, d)

    def head(self, features: dict[str, torch.Tensor], batch: Batch) -> ModelOutput:
        pooled = torch.relu(self.temporal(features["clip"])).mean(1)
        scores, box = self.heads(pooled)
        return ModelOutput(scores, box)

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self.video.parameters())
