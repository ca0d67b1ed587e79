"""Referring grounding baseline (domain "VOS"): find the described person, then read their actions.

The paper's VOS row is "Su et al." (referring video object segmentation; the work and its
adaptation were not recovered, ravar-spec §6). The stand-in is a text-conditioned open-vocabulary
detector that ships in transformers, **OWLv2** (``Owlv2ForObjectDetection``,
``google/owlv2-base-patch16-ensemble``), used as the referring module:

1. *Zero-shot grounding* (frozen detector, cached). The key frame is padded to a square at the
   bottom/right, resized to the detector input and CLIP-normalised, as ``Owlv2ImageProcessor``
   does; the sentence is the text query. OWLv2's text tower reads only 16 tokens, and referring
   sentences are longer, so the sentence is split into consecutive windows of at most 14 BPE
   tokens, each one query (at most ``max_queries``), and a patch's score is the mean of its query
   logits. The best-scoring patch box is the detector's answer.
2. *Proposals.* ``proposals="candidates"``: the candidate person boxes of the harness detector,
   with the zero-shot prior IoU(detector box, candidate), i.e. the detector box snapped to the
   best-overlapping candidate; rows without a person candidate (e.g. under the location-drop
   control) fall back to the detector's own top boxes. ``proposals="detector"``: the detector's
   ``top_k`` boxes with prior sigmoid(logit).
3. *Trainable grounding head.* A small scorer re-ranks the proposals from their RoI features on the
   detector's image-feature grid, the sentence embedding and the box geometry:
   ``s_k = α·prior_k + f(features_k)`` with ``f`` zero-initialised, so an untrained model is exactly
   the zero-shot rule (with real weights) and a tiny random detector still has a path to learn
   (the scorer). Training uses the softmax-weighted (soft) box, so the loop's box MSE trains the
   scorer; evaluation takes the arg-max proposal. The output box *is* the grounded box; it is also
   in ``ModelOutput.aux["grounded_box"]``, and :func:`grounding_accuracy` reports Acc@0.5.
4. *Actions.* RoI features of the grounded box on the key-frame grid and, averaged, on
   ``clip_frames`` frames sampled from the clip (the same frozen detector backbone), plus the
   sentence embedding, feed the official action heads (``ActionBoxHeads``; its box regressor is
   unused because the box comes from grounding).

``text_encoder``: ``native`` = OWLv2's own text embedding (mean over query windows) for the
scorer and heads; ``minilm`` = the real pretrained MiniLM sentence embedding instead (the detector
still uses its own text tower for the zero-shot scores). ``freeze=False`` fine-tunes the detector
backbone end to end through the RoI features (no caching).

Tiny configuration: ``Owlv2Config`` with 1-layer 32-d towers on 64×64 inputs (patch 8, an 8×8
grid), random init, with the real CLIP BPE tokenizer that ships offline in ``open_clip_torch``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..protocol import Batch, DatasetInfo, ModelOutput, Predictions, RavarModel
from .common import ActionBoxHeads, box_features, build_text_encoder, masked_mean, roi_pool
from .paper_configs import is_random, random_hf_model
from .registry import register_adapter
from .vqa import CLIP_MEAN, CLIP_STD
from .weights import WeightsUnavailable, load_hf_pretrained

HUB_ID = "google/owlv2-base-patch16-ensemble"


# ------------------------------------------------------------------------------- detector
@dataclass
class QueryTokenizer:
    """CLIP BPE ids for OWLv2 text queries: ``encode(text) -> ids`` without specials."""

    encode: Any
    sot: int
    eot: int
    context: int  # the text tower's max_position_embeddings (16 for OWLv2)

    def queries(self, texts: list[str], max_queries: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Split each sentence into windows of ``context - 2`` tokens, one query each.

        Returns ids (B·Q, L) zero-padded, attention mask (B·Q, L) and query mask (B, Q)."""
        window = self.context - 2
        per_text = []
        for t in texts:
            tokens = list(self.encode(t.strip()))
            chunks = [tokens[i:i + window] for i in range(0, len(tokens), window)][:max_queries] or [[]]
            per_text.append([[self.sot] + c + [self.eot] for c in chunks])
        q = max(len(c) for c in per_text)
        ids = torch.zeros(len(texts), q, self.context, dtype=torch.long)
        attn = torch.zeros_like(ids)
        attn[..., 0] = 1  # a padded query attends to one token, so it cannot produce NaNs
        qmask = torch.zeros(len(texts), q, dtype=torch.bool)
        for i, chunks in enumerate(per_text):
            for j, c in enumerate(chunks):
                ids[i, j, : len(c)] = torch.tensor(c)
                attn[i, j, : len(c)] = 1
                qmask[i, j] = True
        return ids.flatten(0, 1), attn.flatten(0, 1), qmask


def tiny_owlv2_config(image_size: int = 64, patch_size: int = 8, width: int = 32) -> Any:
    """An Owlv2Config small enough for CPU tests (random init)."""
    from transformers import Owlv2Config

    tower = dict(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=1, num_attention_heads=2)
    return Owlv2Config(text_config=dict(tower, max_position_embeddings=16),
                       vision_config=dict(tower, image_size=image_size, patch_size=patch_size),
                       projection_dim=width)


def build_detector(adapter: str, size: str, weights: str | None) -> tuple[nn.Module, QueryTokenizer]:
    """Tiny random OWLv2 with the open_clip BPE tokenizer, or the pretrained detector + its tokenizer."""
    from transformers import AutoTokenizer, Owlv2ForObjectDetection

    if size == "tiny" or (size == "base" and is_random(weights)):
        if size == "tiny" and weights is not None and not is_random(weights):
            raise ValueError(f"{adapter}: parameter 'weights' needs size='base' (size='tiny' is random init)")
        try:
            from open_clip.tokenizer import SimpleTokenizer
        except ImportError as exc:
            raise WeightsUnavailable(
                f"{adapter} (size={size!r}) uses the CLIP BPE tokenizer shipped in open_clip_torch; "
                "install it with pip install 'ravar-bench[openclip]'") from exc
        bpe = SimpleTokenizer()  # OWLv2's own tokenizer is this CLIP BPE vocabulary
        model = (Owlv2ForObjectDetection(tiny_owlv2_config()) if size == "tiny"
                 else random_hf_model(Owlv2ForObjectDetection, HUB_ID, adapter))  # published config, random init
        tok = QueryTokenizer(bpe.encode, bpe.sot_token_id, bpe.eot_token_id,
                             model.config.text_config.max_position_embeddings)
    elif size == "base":
        spec = weights or HUB_ID
        hf_tok = load_hf_pretrained(AutoTokenizer, spec, adapter)
        model = load_hf_pretrained(Owlv2ForObjectDetection, spec, adapter)
        tok = QueryTokenizer(lambda t: hf_tok(t, add_special_tokens=False).input_ids, hf_tok.bos_token_id,
                             hf_tok.eos_token_id, model.config.text_config.max_position_embeddings)
    else:
        raise ValueError(f"{adapter}: parameter 'size' must be 'tiny' or 'base', got {size!r}")
    return model, tok


def letterbox(images: torch.Tensor, size: int) -> torch.Tensor:
    """(B,3,H,W) in [0,1] -> OWLv2 input: zero-pad bottom/right to a square, resize, CLIP-normalise."""
    h, w = images.shape[-2:]
    side = max(h, w)
    x = F.pad(images.float(), (0, side - w, 0, side - h), value=0.0)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def square_scale(h: int, w: int, device: torch.device) -> torch.Tensor:
    """Multiply frame-normalised xyxy by this to get letterbox-normalised xyxy."""
    side = max(h, w)
    return torch.tensor([w / side, h / side, w / side, h / side], device=device)


def cxcywh_to_xyxy(b: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = b.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def pairwise_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of boxes a (B,4) with each of b (B,K,4) -> (B,K)."""
    a = a[:, None]
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp_min(0).prod(-1)
    area = lambda x: (x[..., 2:] - x[..., :2]).clamp_min(0).prod(-1)  # noqa: E731
    return inter / (area(a) + area(b) - inter).clamp_min(1e-9)


# ------------------------------------------------------------------------------- adapter
@register_adapter("grounding", domain="VOS")
class ReferringGrounding(RavarModel):
    """OWLv2 referring grounding + a learned proposal re-ranker + RoI action heads."""

    inputs = frozenset({"key_frame", "frames", "text", "candidates"})
    head_inputs: frozenset[str] = frozenset()

    def __init__(self, info: DatasetInfo, *, size: Literal["tiny", "base"] = "tiny", weights: str | None = None,
                 freeze: bool = True, text_encoder: Literal["native", "minilm"] = "native",
                 proposals: Literal["candidates", "detector"] = "candidates", top_k: int = 8,
                 clip_frames: int = 2, max_queries: int = 4, dim: int = 128, hidden: int = 512,
                 prior_weight: float = 3.0) -> None:
        super().__init__()
        if top_k < 1 or max_queries < 1 or clip_frames < 0:
            raise ValueError("grounding: parameters 'top_k' and 'max_queries' must be >= 1, 'clip_frames' >= 0")
        self.detector, self.tokenizer = build_detector("grounding", size, weights)
        self.detector.requires_grad_(not freeze)
        self.freeze, self.proposals, self.top_k = freeze, proposals, top_k
        self.clip_frames, self.max_queries = clip_frames, max_queries
        self.num_props = max(info.max_candidates, top_k)
        self.text = build_text_encoder("minilm") if text_encoder == "minilm" else None
        vis = self.detector.config.vision_config.hidden_size
        txt = self.text.dim if self.text is not None else self.detector.config.projection_dim
        # proposal re-ranker: s_k = alpha * prior_k + f(roi_k, sentence, geometry_k, prior_k)
        self.alpha = nn.Parameter(torch.tensor(float(prior_weight)))
        self.vis_proj = nn.Sequential(nn.LayerNorm(vis), nn.Linear(vis, dim))
        self.txt_proj = nn.Sequential(nn.LayerNorm(txt), nn.Linear(txt, dim))
        self.scorer = nn.Sequential(nn.Linear(3 * dim + 9, dim), nn.ReLU(), nn.Linear(dim, 1))
        nn.init.zeros_(self.scorer[-1].weight)
        nn.init.zeros_(self.scorer[-1].bias)
        streams = 2 if clip_frames > 0 else 1
        self.heads = ActionBoxHeads(streams * vis + dim, info, hidden)
        self.frozen_encoder = freeze and (self.text is None or not self.text.trainable)

    def train(self, mode: bool = True) -> "ReferringGrounding":
        super().train(mode)
        if self.freeze:
            self.detector.eval()
        return self

    # ---------------------------------------------------------------------- encode (cached)
    def detect(self, key_frame: torch.Tensor, text: list[str]) -> dict[str, torch.Tensor]:
        """Zero-shot OWLv2 on the key frame: per-patch score (B,P), boxes (B,P,4) in frame
        coordinates, feature grid (B,D,h,w) and the sentence embedding (B,d)."""
        device = key_frame.device
        size = self.detector.config.vision_config.image_size
        ids, attn, qmask = self.tokenizer.queries(text, self.max_queries)
        out = self.detector(input_ids=ids.to(device), attention_mask=attn.to(device),
                            pixel_values=letterbox(key_frame, size))
        qm = qmask.to(device)
        logits = torch.where(qm[:, None, :], out.logits, torch.zeros_like(out.logits))
        score = logits.sum(-1) / qm.sum(-1, keepdim=True)  # mean over the sentence's query windows
        h, w = key_frame.shape[-2:]
        boxes = cxcywh_to_xyxy(out.pred_boxes) / square_scale(h, w, device)
        text_emb = torch.where(qm[..., None], out.text_embeds, torch.zeros_like(out.text_embeds))
        text_emb = text_emb.sum(1) / qm.sum(-1, keepdim=True)
        return {"score": score, "boxes": boxes.clamp(0, 1), "grid": out.image_embeds.permute(0, 3, 1, 2),
                "text": text_emb}

    def make_proposals(self, det: dict[str, torch.Tensor], batch: Batch) -> tuple[torch.Tensor, ...]:
        """Proposal boxes (B,N,4), validity (B,N) and zero-shot prior (B,N), N = num_props."""
        kc = batch.cand_boxes.shape[1] if batch.cand_boxes is not None else 0
        b, n = det["score"].shape[0], max(self.num_props, kc)
        k = min(self.top_k, det["score"].shape[1])
        top = det["score"].topk(k, dim=1)
        det_boxes = det["boxes"].gather(1, top.indices[..., None].expand(-1, -1, 4))
        props = torch.zeros(b, n, 4, device=det_boxes.device)
        valid = torch.zeros(b, n, dtype=torch.bool, device=det_boxes.device)
        prior = torch.zeros(b, n, device=det_boxes.device)
        props[:, :k], valid[:, :k], prior[:, :k] = det_boxes, True, torch.sigmoid(top.values)
        if self.proposals == "candidates" and batch.cand_boxes is not None:
            person = batch.cand_mask & (batch.cand_labels == 0)
            has = person.any(1)
            iou = pairwise_iou(det_boxes[:, 0], batch.cand_boxes)
            props[has] = 0.0
            valid[has] = False
            prior[has] = 0.0
            props[has, :kc] = batch.cand_boxes[has].to(props.dtype)
            valid[has, :kc] = person[has]
            prior[has, :kc] = iou[has].to(prior.dtype) * person[has]
        return props, valid, prior

    def clip_grid_features(self, frames: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """RoI features (B,N,D) of ``boxes`` averaged over ``clip_frames`` sampled frames."""
        t = frames.shape[1]
        idx = torch.linspace(0, t - 1, min(t, self.clip_frames)).round().long()
        size = self.detector.config.vision_config.image_size
        h, w = frames.shape[-2:]
        sel = frames[:, idx.to(frames.device)]  # (B, F, 3, H, W)
        grid, _ = self.detector.image_embedder(pixel_values=letterbox(sel.flatten(0, 1), size))
        grid = grid.permute(0, 3, 1, 2)  # (B·F, D, h, w)
        scaled = (boxes * square_scale(h, w, boxes.device)).repeat_interleave(len(idx), 0)
        return roi_pool(grid, scaled).view(len(frames), len(idx), boxes.shape[1], -1).mean(1)

    def encode(self, batch: Batch) -> dict[str, torch.Tensor]:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            det = self.detect(batch.key_frame, batch.text)
            props, valid, prior = self.make_proposals(det, batch)
            h, w = batch.key_frame.shape[-2:]
            feats = {"props": props, "valid": valid, "prior": prior,
                     "roi": roi_pool(det["grid"], props * square_scale(h, w, props.device))}
            if self.clip_frames > 0:
                feats["roi_clip"] = self.clip_grid_features(batch.frames, props)
        feats["text"] = det["text"] if self.text is None else masked_mean(*self.text(batch.text))
        return feats

    # ----------------------------------------------------------------------- head (trained)
    def head(self, features: dict[str, torch.Tensor], batch: Batch) -> ModelOutput:
        props, valid, prior = features["props"], features["valid"], features["prior"]
        text = self.txt_proj(features["text"].float())  # (B, d)
        vis = self.vis_proj(features["roi"].float())  # (B, N, d)
        t = text[:, None].expand_as(vis)
        x = torch.cat([vis, t, vis * t, box_features(props), prior[..., None]], -1)
        logits = self.alpha * prior + self.scorer(x).squeeze(-1)
        logits = logits.masked_fill(~valid, -1e4)
        hard = F.one_hot(logits.argmax(1), logits.shape[1]).to(logits.dtype)
        weights = torch.softmax(logits, 1) if self.training else hard
        box = (weights[..., None] * props).sum(1)
        streams = [features["roi"]] + ([features["roi_clip"]] if "roi_clip" in features else [])
        # the scorer learns from the box loss only: the action loss on the pooled features must
        # not pull the selection towards whichever proposal happens to predict the labels
        pooled = (weights.detach()[..., None] * torch.cat(streams, -1).float()).sum(1)
        scores, _ = self.heads(torch.cat([pooled, text], -1))
        grounded = (hard[..., None] * props).sum(1)
        return ModelOutput(scores, box, aux={"grounded_box": grounded.detach(), "proposal_logits": logits.detach()})

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self.detector.parameters()) + (list(self.text.parameters()) if self.text is not None else [])


def grounding_accuracy(preds: Predictions, split: Any, threshold: float = 0.5) -> float:
    """Acc@0.5: the fraction of instances whose predicted (= grounded) box has IoU >= threshold
    with the ground truth, in split order (``preds.keys`` must match ``split.keys``)."""
    from ..metrics.boxes import box_iou

    if list(preds.keys) != list(split.keys):
        raise ValueError("grounding_accuracy: prediction keys do not match the split's keys (order matters)")
    iou = box_iou(preds.boxes, np.asarray(split.boxes, dtype=np.float32))
    return float((iou >= threshold).mean()) if len(iou) else float("nan")


__all__ = ["ReferringGrounding", "grounding_accuracy", "build_detector", "QueryTokenizer", "letterbox",
           "tiny_owlv2_config", "HUB_ID"]
