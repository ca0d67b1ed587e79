"""CPU-scale adapters on the frozen person stage (``ravar_bench.data.person_features``).

At paper scale every family brings its own pretrained video backbone; on a CPU those backbones are
random-init and cannot see a person who fills 5 % of a 96-px frame, so every model sat at the prior.
At CPU scale all families therefore read the same frozen features of real ImageNet weights: one
1280-d vector per (candidate box, frame) and per whole frame. What differs between families is what
their paper-scale design does with persons and the sentence, rebuilt here on those features:

* ``person_aal``   (AAL, text-blind): RoI features per person, as SlowFast-RoI / AVA detectors,
  pooled over time by ``temporal`` (I3D: mean; X3D/SlowFast: mean + motion; MViT/VideoMAE: learned
  attention over frames). It never reads the sentence, so it must decide whom to report without it.
  **Rule:** the action scores are the mean over the clip's person candidates of each person's action
  probabilities (a text-blind model's best guess of "someone here"), and the box is the person
  candidate with the highest detector confidence, which is what an AVA detector's top detection is.
* ``person_video`` (control): whole-frame features only, no persons, no sentence.
* ``person_blind_mean`` (learned text-blind reference): the mean of all person tokens.
* ``person_oracle`` (learned ceiling): the person candidate that best overlaps the *target* box.
  It reads the ground truth at test time, so it is a reference, never a method.
* ``person_vtr``   (VTR): the sentence and each person are embedded apart and matched, CLIP-style
  (``scorer="cosine"``: CLIP4Clip, X-CLIP) or by a matching head over the pair (``"cross"``: BLIP-2's
  ITM); the softmax over persons picks the person whose features the heads read.
* ``person_vqa``   (VQA): the question token, the frames and the persons go through one
  transformer (a video LLM's joint attention); the answer is read at the question token and the
  box is the person the question attends to.
* ``person_grounding`` (referring grounding): a matching head picks one person; at evaluation the
  pick is hard (the argmax person's features and box), as a grounding model outputs one box.

Text-aware models train the choice of person through the official loss only (box MSE + action BCE):
no model gets a grounding label. The sentence is MiniLM's mean token (frozen, so it is cached by the
loop), and at evaluation a text-aware model reports the box of its most likely person.
"""
from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..protocol import Batch, DatasetInfo, ModelOutput, RavarModel
from .common import ActionBoxHeads, TextEncoderKind, box_features, build_text_encoder, masked_mean
from .registry import register_adapter

Temporal = Literal["mean", "motion", "attention"]
#: The stage is always frozen; suites may state it (``freeze = true``), ``false`` is an error.
Frozen = Literal[True]
Scorer = Literal["cosine", "cross"]

#: Feature width of the person stage's default backbone (MobileNetV2's last 1×1 conv).
STAGE_DIM = 1280


class TemporalPool(nn.Module):
    """Frozen per-frame features (…, F, D) -> one trainable ``dim`` token, pooled over time.

    ``mean``: the frames' mean. ``motion``: the mean and the mean absolute frame-to-frame change
    (a fast pathway's job). ``attention``: per-frame tokens with a learned time embedding, pooled by
    a learned query. Inputs are layer-normalised: the frozen features' scale varies per dimension.
    """

    def __init__(self, d_in: int, dim: int, temporal: Temporal, frames: int = 8, dropout: float = 0.3) -> None:
        super().__init__()
        self.temporal = temporal
        width = 2 * d_in if temporal == "motion" else d_in
        self.norm, self.proj = nn.LayerNorm(width), nn.Linear(width, dim)
        self.drop = nn.Dropout(dropout)
        if temporal == "attention":
            self.time = nn.Parameter(torch.zeros(frames, dim))
            self.query = nn.Parameter(torch.randn(dim) / math.sqrt(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.temporal == "mean":
            h = self.proj(self.norm(x.mean(-2)))
        elif self.temporal == "motion":
            diff = (x[..., 1:, :] - x[..., :-1, :]).abs().mean(-2) if x.shape[-2] > 1 else torch.zeros_like(x[..., 0, :])
            h = self.proj(self.norm(torch.cat([x.mean(-2), diff], -1)))
        else:
            t = self.proj(self.norm(x)) + self.time[: x.shape[-2]]
            w = torch.softmax(t @ self.query / math.sqrt(t.shape[-1]), -1)
            h = (w[..., None] * t).sum(-2)
        return self.drop(F.gelu(h))


class PersonLevelModel(RavarModel):
    """Shared parts: person tokens (features + box geometry + object class), clip context, heads."""

    head_inputs: ClassVar[frozenset[str]] = frozenset({"person_features", "candidates"})
    reads_text: ClassVar[bool] = False

    def __init__(self, info: DatasetInfo, *, dim: int = 128, hidden: int = 256, temporal: Temporal = "motion",
                 text_encoder: TextEncoderKind = "minilm", dropout: float = 0.3, freeze: Frozen = True) -> None:
        super().__init__()
        self.persons = TemporalPool(STAGE_DIM, dim, temporal, info.num_frames, dropout)
        self.context = TemporalPool(STAGE_DIM, dim, temporal, info.num_frames, dropout)
        self.geometry = nn.Linear(8, dim)
        self.kind = nn.Embedding(max(1, len(info.object_classes)), dim)
        self.text = build_text_encoder(text_encoder, dim) if self.reads_text else None
        self.query = nn.Sequential(nn.LayerNorm(self.text.dim), nn.Linear(self.text.dim, dim)) if self.text else None
        self.heads = ActionBoxHeads((2 + int(self.reads_text)) * dim, info, hidden)
        self.inputs = self.head_inputs | ({"text"} if self.reads_text else set())
        self.frozen_encoder = self.text is None or not self.text.trainable

    def encode(self, batch: Batch) -> dict[str, torch.Tensor]:
        if self.text is None:
            return {}
        tokens, mask = self.text(batch.text)
        return {"sentence": masked_mean(tokens.float(), mask)}

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self.text.parameters()) if self.text is not None else []

    def candidates(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Person tokens (B, K, d), their boxes (B, K, 4) and which slots are present persons (B, K)."""
        boxes = batch.cand_boxes.float()
        tokens = self.persons(batch.person_feats) + self.geometry(box_features(boxes)) + self.kind(batch.cand_labels.long())
        valid = batch.cand_mask.bool() & (batch.cand_labels == 0)
        return tokens, boxes, valid

    def clip_context(self, batch: Batch) -> torch.Tensor:
        return self.context(batch.clip_feats)


def person_softmax(logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Softmax over present persons; a clip without any gives all-zero weights."""
    return torch.softmax(logits.masked_fill(~valid, -torch.inf), -1).nan_to_num(0.0)


def weighted(weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Σ_k weights[b, k] · x[b, k, …]."""
    return (weights[..., None] * x).sum(1)


def pick_box(weights: torch.Tensor, boxes: torch.Tensor, valid: torch.Tensor, fallback: torch.Tensor,
             hard: bool) -> torch.Tensor:
    """The reported box: the weighted candidate box (soft, for training) or the most likely person's
    box (hard); the regressed ``fallback`` where the clip has no person candidate."""
    if hard:
        picked = boxes.gather(1, weights.argmax(1)[:, None, None].expand(-1, 1, 4))[:, 0]
    else:
        picked = weighted(weights, boxes)
    return torch.where(valid.any(1, keepdim=True), picked, fallback)


def iou_with(boxes: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of candidate boxes (B, K, 4) with one box per row (B, 4), xyxy."""
    t = target[:, None]
    wh = (torch.minimum(boxes[..., 2:], t[..., 2:]) - torch.maximum(boxes[..., :2], t[..., :2])).clamp_min(0)
    inter = wh[..., 0] * wh[..., 1]
    area = lambda b: (b[..., 2] - b[..., 0]).clamp_min(0) * (b[..., 3] - b[..., 1]).clamp_min(0)  # noqa: E731
    return inter / (area(boxes) + area(t) - inter).clamp_min(1e-9)


def one_hot_pick(weights: torch.Tensor) -> torch.Tensor:
    return F.one_hot(weights.argmax(1), weights.shape[1]).to(weights.dtype) * (weights.sum(1, keepdim=True) > 0)


# ------------------------------------------------------------------------------ text-blind
class TextBlind(PersonLevelModel):
    """Rows that never read the sentence: no text encoder parameter."""

    def __init__(self, info: DatasetInfo, *, dim: int = 128, hidden: int = 256, temporal: Temporal = "motion",
                 dropout: float = 0.3, freeze: Frozen = True) -> None:
        super().__init__(info, dim=dim, hidden=hidden, temporal=temporal, dropout=dropout)


@register_adapter("person_aal", domain="AAL",
                  summary="text-blind per-person RoI action model on the person stage (CPU scale of the AAL rows)")
class PersonAAL(TextBlind):
    """Per-person action probabilities, averaged over the clip's persons; top-confidence person's box."""

    def head(self, features: dict[str, torch.Tensor], batch: Batch) -> ModelOutput:
        tokens, boxes, valid = self.candidates(batch)
        ctx = self.clip_context(batch)
        per_person, box = self.heads(torch.cat([tokens, ctx[:, None].expand_as(tokens)], -1))  # (B,K,80)
        alone, alone_box = self.heads(torch.cat([torch.zeros_like(ctx), ctx], -1))
        w = valid.float() / valid.sum(1, keepdim=True).clamp_min(1)
        prob = (w[..., None] * torch.sigmoid(per_person)).sum(1).clamp(1e-6, 1 - 1e-6)
        has = valid.any(1, keepdim=True)
        scores = torch.where(has, torch.log(prob) - torch.log1p(-prob), alone)
        confidence = batch.cand_scores.float().masked_fill(~valid, -torch.inf)
        top = F.one_hot(confidence.argmax(1), valid.shape[1]).float()
        return ModelOutput(scores, pick_box(top, boxes, valid, alone_box, hard=True))


@register_adapter("person_video", domain="control",
                  summary="whole-frame person-stage features only: no persons, no sentence")
class PersonVideoOnly(TextBlind):
    """The text-blind floor: the clip's whole frames, pooled over time, into the heads."""

    head_inputs = frozenset({"person_features"})

    def head(self, features: dict[str, torch.Tensor], batch: Batch) -> ModelOutput:
        ctx = self.clip_context(batch)
        scores, box = self.heads(torch.cat([torch.zeros_like(ctx), ctx], -1))
        return ModelOutput(scores, box)


@register_adapter("person_blind_mean", domain="control",
                  summary="learned text-blind reference: the mean of every person's features")
class PersonBlindMean(TextBlind):
    """Every person of the clip at once (mean token): what persons tell without knowing which one."""

    def head(self, features: dict[str, torch.Tensor], batch: Batch) -> ModelOutput:
        tokens, _, valid = self.candidates(batch)
        mean = weighted(valid.float() / valid.sum(1, keepdim=True).clamp_min(1), tokens)
        scores, box = self.heads(torch.cat([mean, self.clip_context(batch)], -1))
        return ModelOutput(scores, box)


@register_adapter("person_oracle", domain="control",
                  summary="learned ceiling: the person candidate that best overlaps the target box (reads the GT)")
class PersonOracle(TextBlind):
    """Perfect grounding: features and box of the person candidate with the highest IoU with the
    ground-truth box. Reads ``batch.gt_box`` at test time: a reference, never a method."""

    def head(self, features: dict[str, torch.Tensor], batch: Batch) -> ModelOutput:
        tokens, boxes, valid = self.candidates(batch)
        iou = iou_with(boxes, batch.gt_box.float())
        best = one_hot_pick(torch.where(valid, iou + 1.0, torch.zeros_like(iou)))
        scores, box = self.heads(torch.cat([weighted(best, tokens), self.clip_context(batch)], -1))
        return ModelOutput(scores, pick_box(best, boxes, valid, box, hard=True))


# ------------------------------------------------------------------------------ text-aware
class SentencePick(PersonLevelModel):
    """Score every person against the sentence, read the picked person (soft in training)."""

    reads_text = True
    hard_features: ClassVar[bool] = False  # grounding: the argmax person's features at evaluation

    def __init__(self, info: DatasetInfo, *, scorer: Scorer = "cosine", dim: int = 128, hidden: int = 256,
                 temporal: Temporal = "motion", text_encoder: TextEncoderKind = "minilm", dropout: float = 0.3,
                 freeze: Frozen = True) -> None:
        super().__init__(info, dim=dim, hidden=hidden, temporal=temporal, text_encoder=text_encoder, dropout=dropout)
        self.scorer = scorer
        if scorer == "cosine":
            self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        else:
            self.match = nn.Sequential(nn.Linear(3 * dim, dim), nn.GELU(), nn.Linear(dim, 1))

    def match_logits(self, tokens: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        if self.scorer == "cosine":
            sim = F.normalize(tokens, dim=-1) @ F.normalize(q, dim=-1)[..., None]
            return self.logit_scale.exp().clamp(max=100.0) * sim.squeeze(-1)
        qk = q[:, None].expand_as(tokens)
        return self.match(torch.cat([tokens, qk, tokens * qk], -1)).squeeze(-1)

    def head(self, features: dict[str, torch.Tensor], batch: Batch) -> ModelOutput:
        tokens, boxes, valid = self.candidates(batch)
        q = self.query(features["sentence"])
        weights = person_softmax(self.match_logits(tokens, q), valid)
        read = one_hot_pick(weights) if self.hard_features and not self.training else weights
        scores, box = self.heads(torch.cat([weighted(read, tokens), self.clip_context(batch), q], -1))
        return ModelOutput(scores, pick_box(weights, boxes, valid, box, hard=not self.training),
                           aux={"weights": weights})


@register_adapter("person_vtr", domain="VTR",
                  summary="text-video retrieval on the person stage: sentence-person matching (cosine or ITM-style)")
class PersonVTR(SentencePick):
    """Dual-encoder matching of the sentence against every person (CLIP4Clip / X-CLIP / BLIP-2 ITM)."""


@register_adapter("person_grounding", domain="VOS",
                  summary="referring grounding on the person stage: one person picked by the sentence")
class PersonGrounding(SentencePick):
    """A matching head picks one person; evaluation reads only that person (hard pick)."""

    hard_features = True

    def __init__(self, info: DatasetInfo, *, scorer: Scorer = "cross", dim: int = 128, hidden: int = 256,
                 temporal: Temporal = "motion", text_encoder: TextEncoderKind = "minilm", dropout: float = 0.3,
                 freeze: Frozen = True) -> None:
        super().__init__(info, scorer=scorer, dim=dim, hidden=hidden, temporal=temporal,
                         text_encoder=text_encoder, dropout=dropout)


@register_adapter("person_vqa", domain="VQA",
                  summary="video QA on the person stage: question, frames and persons in one transformer")
class PersonVQA(PersonLevelModel):
    """Joint attention over [question; frames; persons]; answer at the question token, box at the
    person the answer points to."""

    reads_text = True

    def __init__(self, info: DatasetInfo, *, dim: int = 128, hidden: int = 256, layers: int = 2, heads: int = 4,
                 temporal: Temporal = "mean", text_encoder: TextEncoderKind = "minilm", dropout: float = 0.3,
                 freeze: Frozen = True) -> None:
        super().__init__(info, dim=dim, hidden=hidden, temporal=temporal, text_encoder=text_encoder,
                         dropout=dropout)
        self.frames = nn.Sequential(nn.LayerNorm(STAGE_DIM), nn.Linear(STAGE_DIM, dim))
        self.segment = nn.Parameter(torch.zeros(3, dim))  # question / frame / person
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.pointer = nn.Linear(dim, dim)

    def head(self, features: dict[str, torch.Tensor], batch: Batch) -> ModelOutput:
        tokens, boxes, valid = self.candidates(batch)
        q = self.query(features["sentence"])[:, None] + self.segment[0]
        frames = self.frames(batch.clip_feats) + self.segment[1]
        seq = torch.cat([q, frames, tokens + self.segment[2]], 1)
        keep = torch.cat([torch.ones(valid.shape[0], 1 + frames.shape[1], dtype=torch.bool, device=valid.device),
                          valid], 1)
        out = self.encoder(seq, src_key_padding_mask=~keep)
        answer, persons = out[:, 0], out[:, 1 + frames.shape[1]:]
        logits = (persons @ self.pointer(answer)[..., None]).squeeze(-1) / math.sqrt(answer.shape[-1])
        weights = person_softmax(logits, valid)
        scores, box = self.heads(torch.cat([weighted(weights, tokens), out[:, 1:1 + frames.shape[1]].mean(1),
                                            answer], -1))
        return ModelOutput(scores, pick_box(weights, boxes, valid, box, hard=not self.training),
                           aux={"weights": weights})


__all__ = ["STAGE_DIM", "TemporalPool", "PersonLevelModel", "TextBlind", "PersonAAL", "PersonVideoOnly", "PersonBlindMean",
           "PersonOracle", "SentencePick", "PersonVTR", "PersonGrounding", "PersonVQA", "person_softmax",
           "weighted", "pick_box", "iou_with", "one_hot_pick"]
