"""A simple text-aware reference model: pick the candidate person the sentence describes.

RAVAR is "find the person, then read their actions". ``cand_pool`` does exactly that with almost
nothing learned from pixels: each candidate person box is described by RoI-pooled raw colours of
the clip (mean, temporal spread and frame-to-frame change in a 6×4 grid, so clothing colours, pose
and motion survive) plus its geometry; the sentence by a text encoder. A small scorer rates every
candidate against the sentence; the softmax over candidates gives the box (weighted mean of the
candidate boxes) and the person feature that the standard heads read. Encoding has no trainable
parameters when the text encoder is frozen, so features are cached and training takes seconds.

It is the floor any real text-aware model should clear, and on RAVAR-Synth the yardstick that
shows the gap the text opens (compare its ``text_swap`` control).
"""
from __future__ import annotations

import torch
from torch import nn

from ..protocol import Batch, DatasetInfo, ModelOutput, RavarModel
from .common import ActionBoxHeads, TextEncoderKind, box_features, build_text_encoder, fixed_candidates, masked_mean
from .registry import register_adapter

_GRID = (6, 4)  # RoI bins (rows, columns): persons are taller than wide


def candidate_pixels(frames: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Raw-colour descriptors of boxes in a clip: frames (B,T,3,H,W), boxes (B,K,4) -> (B,K,3·3·24).

    Per box: the RoI-aligned 6×4 colour grid averaged over time, its standard deviation over time,
    and the mean absolute frame-to-frame change (motion).
    """
    from torchvision.ops import roi_align

    b, t, _, h, w = frames.shape
    k = boxes.shape[1]
    scale = torch.tensor([w, h, w, h], dtype=frames.dtype, device=frames.device)
    frame_idx = torch.arange(b * t, device=frames.device, dtype=frames.dtype).view(b, t, 1).expand(b, t, k)
    rois = torch.cat([frame_idx.reshape(-1, 1), (boxes[:, None].expand(b, t, k, 4) * scale).reshape(-1, 4)], 1)
    grid = roi_align(frames.flatten(0, 1), rois, _GRID, spatial_scale=1.0, sampling_ratio=2, aligned=True)
    grid = grid.view(b, t, k, -1)  # (B, T, K, 3·6·4)
    motion = (grid[:, 1:] - grid[:, :-1]).abs().mean(1) if t > 1 else torch.zeros_like(grid[:, 0])
    return torch.cat([grid.mean(1), grid.std(1, unbiased=False) if t > 1 else torch.zeros_like(motion), motion], -1)


@register_adapter("cand_pool", domain="control",
                  summary="simple text-aware reference: sentence-scored candidate persons, raw RoI colours")
class CandidatePool(RavarModel):
    """Score candidate persons against the sentence; heads read the chosen person's features."""

    inputs = frozenset({"frames", "text", "candidates"})

    def __init__(self, info: DatasetInfo, *, text_encoder: TextEncoderKind = "minilm", dim: int = 128,
                 hidden: int = 256, max_candidates: int = 16) -> None:
        super().__init__()
        self.text = build_text_encoder(text_encoder, dim)
        self.k = max_candidates
        pix = 3 * 3 * _GRID[0] * _GRID[1]
        self.person = nn.Sequential(nn.LayerNorm(pix + 8), nn.Linear(pix + 8, dim), nn.GELU(), nn.Linear(dim, dim))
        self.query = nn.Sequential(nn.LayerNorm(self.text.dim), nn.Linear(self.text.dim, dim))
        self.scorer = nn.Sequential(nn.Linear(3 * dim, dim), nn.GELU(), nn.Linear(dim, 1))
        self.heads = ActionBoxHeads(2 * dim, info, hidden)
        self.frozen_encoder = not self.text.trainable

    def encode(self, batch: Batch) -> dict[str, torch.Tensor]:
        boxes, labels, _, mask = fixed_candidates(batch.cand_boxes, batch.cand_labels, batch.cand_scores,
                                                  batch.cand_mask.bool(), self.k)
        tokens, tmask = self.text(batch.text)
        return {"pixels": candidate_pixels(batch.frames, boxes), "boxes": boxes,
                "persons": mask & (labels == 0), "sentence": masked_mean(tokens.float(), tmask)}

    def head(self, features: dict[str, torch.Tensor], batch: Batch) -> ModelOutput:
        boxes, persons = features["boxes"], features["persons"]
        people = self.person(torch.cat([features["pixels"], box_features(boxes)], -1))  # (B,K,d)
        q = self.query(features["sentence"])[:, None].expand_as(people)
        logits = self.scorer(torch.cat([people, q, people * q], -1)).squeeze(-1)
        logits = logits.masked_fill(~persons, -torch.inf)
        weights = torch.softmax(logits, -1).nan_to_num(0.0)  # no person candidate: all-zero weights
        chosen = (weights[..., None] * people).sum(1)
        scores, box = self.heads(torch.cat([chosen, q[:, 0]], -1))
        has_person = persons.any(1, keepdim=True)
        picked = (weights[..., None] * boxes).sum(1)
        return ModelOutput(scores, torch.where(has_person, picked, box), aux={"weights": weights})
