"""RefAtomNet (Peng et al., "Referring Atomic Video Action Recognition", ECCV 2024) and the generic
stream-fusion model that plugs any fusion variant of the zoo into the same three streams.

Both adapters share one pipeline (ravar-spec §5):

    video  frames → video encoder → per-frame tokens averaged over frames → (B, N_v, d)
           tiny: TinyVideoEncoder grid tokens (+ learned position); base: BLIP-2 Q-Former tokens
    text   sentence → word tokens with a mask, zero-padded to TEXT_LEN → (B, TEXT_LEN, d)
    loc    candidates → [box xyxy (4) ; class-name embedding (e)] → Linear(4+e → d); rows that are
           not a present "person" are multiplied by 0 (as released) and masked out
    fusion build_fusion(...)(streams).pooled → ActionBoxHeads (80 logits + box); the loop's
           default loss is the official MSE + 5·BCE

``refatomnet`` (domain "ours") exposes the paper's switches (mode, agents, CAAF, CATF, location,
fusion); ``fusion_model`` (domain "fusion") takes any registered variant by name with hparams.
Two released details are deliberately not reproduced. The candidate boxes arrive from data
preparation (DETR-R50 in the paper setting) already in xyxy, so the released cxcywh→xyxy conversion,
which swaps w and h, does not occur. And the released text mean runs over the batch's padded length
with BERT's (non-zero) pad-token states; here padded slots are zeros up to TEXT_LEN, so a sentence's
features do not depend on the other sentences of its batch (they must not, for feature caching).
The as-released mean still counts the padding, which is the quirk that matters.
"""
from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from ..data.person_features import DEFAULT_STAGE
from ..protocol import Batch, DatasetInfo, ModelOutput, RavarModel
from .common import (ActionBoxHeads, TextEncoder, TinyVideoEncoder, build_text_encoder, fixed_candidates,
                     masked_mean)
from .fusion import Fusion, StreamTokens, build_fusion, fusion_spec
from .fusion.agent import Mode
from .fusion.base import zero_padded
from .paper_configs import is_random
from .person_level import STAGE_DIM, TemporalPool
from .registry import AdapterError, register_adapter
from .weights import WeightsUnavailable

#: Text tokens are padded (or truncated) to this length so cached features have a fixed shape.
TEXT_LEN = 32
#: BLIP-2 stage-1 model (ViT-g + Q-Former with its text path), the transformers counterpart of the
#: LAVIS ``blip2_feature_extractor``/``pretrain`` model the released code loads.
BLIP2_HUB_ID = "Salesforce/blip2-itm-vit-g"
#: Number of Q-Former query tokens, i.e. video tokens in the paper setting.
QFORMER_TOKENS = 32

Size = Literal["tiny", "person", "base"]
TextKind = Literal["tiny", "minilm", "blip2"]
ClassEmbed = Literal["learned", "text"]


def _blip2_encoder(adapter: str, weights: str | None, freeze: bool) -> nn.Module:
    """The shared BLIP-2 encoder of the VTR family, imported only when size='base' is asked for."""
    try:
        from .vtr_encoders import Blip2Encoder  # noqa: PLC0415  (heavy; shared with the VTR family)
    except ImportError as exc:
        raise WeightsUnavailable(
            f"{adapter}: size='base' needs ravar_bench.adapters.vtr_encoders.Blip2Encoder (BLIP-2 ViT-g + "
            f"Q-Former), which this installation does not provide ({exc})") from exc
    return Blip2Encoder(size="base", weights=weights or BLIP2_HUB_ID, freeze=freeze, max_words=TEXT_LEN,
                        adapter=adapter)


class _Blip2Text(TextEncoder):
    """The Q-Former text path of a shared Blip2Encoder, as a TextEncoder (RefAtomNet's text)."""

    trainable = False

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder  # shared with the video side; registered there too
        self.dim = int(getattr(encoder, "dim", 768))

    def forward(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder.text_tokens(texts)


class RavarStreams(nn.Module):
    """Encoders (cacheable when frozen) and the projections that build the three streams."""

    def __init__(self, info: DatasetInfo, *, adapter: str, size: Size, dim: int, text_encoder: TextKind,
                 location: bool, class_embed: ClassEmbed, freeze: bool, weights: str | None) -> None:
        super().__init__()
        if dim < 2:
            raise AdapterError(f"{adapter}: parameter 'dim' must be >= 2, got {dim}")
        if size != "base" and weights is not None and not is_random(weights):
            raise AdapterError(f"{adapter}: parameter 'weights' only applies to size='base'")
        if text_encoder == "blip2" and size != "base":
            raise AdapterError(f"{adapter}: text_encoder='blip2' needs size='base' (it is BLIP-2's Q-Former)")
        if location and (not info.object_classes or info.object_classes[0] != "person"):
            raise AdapterError(f"{adapter}: the location stream needs object class 0 to be 'person', "
                               f"got object_classes={info.object_classes[:3]}")
        self.location = location
        self.person = size == "person"
        if size == "person":  # frozen person stage: one whole-frame token per sampled frame (grid F×1)
            self.video = nn.Identity()
            grid = (len(DEFAULT_STAGE.frame_indices(info.num_frames)), 1)
            video_dim = STAGE_DIM
            self.video_pos = nn.Parameter(torch.zeros(grid[0], dim))
            nn.init.normal_(self.video_pos, std=0.02)
            self.register_buffer("grid_pos", torch.stack([(torch.arange(grid[0]) + 0.5) / grid[0],
                                                          torch.full((grid[0],), 0.5)], -1), persistent=False)
        elif size == "tiny":
            self.video: nn.Module = TinyVideoEncoder(dim)
            with torch.no_grad():
                probe = self.video(torch.zeros(1, 1, 3, *info.frame_size))
            grid = tuple(probe.shape[2:4])
            video_dim = dim
            self.video_pos = nn.Parameter(torch.zeros(grid[0] * grid[1], dim))
            nn.init.normal_(self.video_pos, std=0.02)
            ys, xs = torch.meshgrid((torch.arange(grid[0]) + 0.5) / grid[0],
                                    (torch.arange(grid[1]) + 0.5) / grid[1], indexing="ij")
            self.register_buffer("grid_pos", torch.stack([ys, xs], -1).reshape(-1, 2), persistent=False)
        else:
            self.video = _blip2_encoder(adapter, weights, freeze)
            grid = None
            video_dim = int(getattr(self.video, "dim", 768))
            self.video_pos = None
            self.grid_pos = None
        self.grid: tuple[int, int] | None = grid  # the video tokens' (H, W) grid; None for Q-Former tokens
        self.n_video = grid[0] * grid[1] if grid is not None else int(getattr(self.video, "num_query_tokens", QFORMER_TOKENS))
        self.text: TextEncoder = _Blip2Text(self.video) if text_encoder == "blip2" else build_text_encoder(text_encoder, dim)
        self.video_proj = (nn.Sequential(nn.LayerNorm(video_dim), nn.Linear(video_dim, dim)) if self.person
                           else nn.Identity() if video_dim == dim else nn.Linear(video_dim, dim))
        self.text_proj = nn.Identity() if self.text.dim == dim else nn.Linear(self.text.dim, dim)
        self.n_loc = info.max_candidates
        if location:
            if class_embed == "learned":
                self.class_table: nn.Module | None = nn.Embedding(len(info.object_classes), dim)
                e = dim
            else:  # a fixed table of class-name embeddings, like the released XLM-R pickle
                with torch.no_grad():
                    tokens, mask = self.text(list(info.object_classes))
                    self.register_buffer("class_names", masked_mean(tokens.float(), mask).cpu())
                self.class_table = None
                e = self.class_names.shape[1]
            self.loc_proj = nn.Linear(4 + e, dim)
            # person scale: the LS token also carries the candidate's own features (box + class + look)
            self.loc_visual = TemporalPool(STAGE_DIM, dim, "motion", info.num_frames) if self.person else None
        if freeze:
            self.video.requires_grad_(False)
            self.text.requires_grad_(False)
        self.frozen = freeze or not any(p.requires_grad for p in self.encoder_parameters())

    def encoder_parameters(self) -> list[nn.Parameter]:
        seen, out = set(), []
        for p in [*self.video.parameters(), *self.text.parameters()]:
            if id(p) not in seen:
                seen.add(id(p))
                out.append(p)
        return out

    @property
    def lengths(self) -> dict[str, int]:
        """Maximum token count of each stream (sizes token-axis layers such as V5's)."""
        out = {"video": self.n_video, "text": TEXT_LEN}
        if self.location:
            out["loc"] = self.n_loc
        return out

    def encode(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Backbone features: video (B, N_v, d_v), text (B, TEXT_LEN, d_t), text_mask."""
        if self.person:
            video = batch.clip_feats.float()  # (B, F, 1280): whole-frame stage features per frame
        elif self.video_pos is not None:
            grid = self.video(batch.frames)  # (B, T, h, w, d)
            video = grid.mean(1).flatten(1, 2)  # as released: tokens averaged over frames
        else:
            video = self.video.image_tokens(batch.frames).mean(1)  # (B, T, 32, d) → (B, 32, d)
        tokens, mask = self.text(batch.text)
        tokens, mask = tokens[:, :TEXT_LEN], mask[:, :TEXT_LEN]
        pad = TEXT_LEN - tokens.shape[1]
        if pad:
            tokens = torch.cat([tokens, tokens.new_zeros(tokens.shape[0], pad, tokens.shape[2])], 1)
            mask = torch.cat([mask, mask.new_zeros(mask.shape[0], pad)], 1)
        return {"video": video, "text": zero_padded(tokens, mask), "text_mask": mask}

    def forward(self, features: dict[str, torch.Tensor], batch: Batch) -> dict[str, StreamTokens]:
        """The three streams at width ``dim`` from (possibly cached) features and the batch."""
        video = self.video_proj(features["video"])
        pos = None
        if self.video_pos is not None:
            video = video + self.video_pos
            pos = self.grid_pos.expand(video.shape[0], -1, -1)
        out = {"video": StreamTokens(video, torch.ones(video.shape[:2], dtype=torch.bool, device=video.device),
                                     pos=pos, kind="video")}
        text_mask = features["text_mask"].bool()
        # padded slots hold zeros: the as-released sentence mean then counts them as zeros
        text = zero_padded(self.text_proj(features["text"]), text_mask)
        out["text"] = StreamTokens(text, text_mask, kind="text")
        if self.location:
            out["loc"] = self._loc_tokens(batch)
        return out

    def _loc_tokens(self, batch: Batch) -> StreamTokens:
        if batch.cand_boxes is None:
            raise AdapterError("the location stream needs batch candidates (inputs must include 'candidates')")
        boxes = batch.cand_boxes.float()
        if self.loc_visual is not None:  # carried along so that cutting to n_loc keeps rows aligned
            if batch.person_feats is None:
                raise AdapterError("size='person' needs batch person features (inputs must include 'person_features')")
            boxes = torch.cat([boxes, self.loc_visual(batch.person_feats.float())], -1)
        boxes, labels, _, cand_mask = fixed_candidates(boxes, batch.cand_labels.long(), batch.cand_scores,
                                                       batch.cand_mask.bool(), self.n_loc)
        boxes, visual = boxes[..., :4], boxes[..., 4:]
        emb = self.class_table(labels) if self.class_table is not None else self.class_names[labels]
        tokens = self.loc_proj(torch.cat([boxes, emb.to(boxes.dtype)], -1))
        if self.loc_visual is not None:
            tokens = tokens + visual
        valid = cand_mask & (labels == 0)
        # as released: rows whose class is not "person" are multiplied by 0 after the projection
        return StreamTokens(zero_padded(tokens, valid), valid, pos=boxes, kind="loc")


class _StreamFusionModel(RavarModel):
    """Streams → fusion → the official heads; encoders are cached when frozen."""

    def _setup(self, info: DatasetInfo, streams: RavarStreams, fusion: Fusion, hidden: int) -> None:
        self.streams = streams
        self.fusion = fusion
        self.heads = ActionBoxHeads(fusion.d, info, hidden)
        person = {"person_features"} if streams.person else set()
        self.inputs = frozenset({"text"} | (person or {"frames"}) | ({"candidates"} if streams.location else set()))
        self.head_inputs = frozenset(({"candidates"} | person) if streams.location else set())
        self.frozen_encoder = streams.frozen

    def encode(self, batch: Batch) -> dict[str, torch.Tensor]:
        return self.streams.encode(batch)

    def head(self, features: dict[str, torch.Tensor], batch: Batch) -> ModelOutput:
        fused = self.fusion(self.streams(features, batch))
        scores, box = self.heads(fused.pooled)
        return ModelOutput(scores, box)

    def encoder_parameters(self) -> list[nn.Parameter]:
        return self.streams.encoder_parameters()


def _stream_names(location: bool) -> tuple[str, ...]:
    return ("video", "text", "loc") if location else ("video", "text")


@register_adapter("refatomnet", domain="ours")
class RefAtomNet(_StreamFusionModel):
    """RefAtomNet: per-stream agent attention with cross-stream map (CAAF) and token (CATF) fusion.

    mode      as_released (paper row, quirks kept) | corrected | rescale_only (control)
    agents    number of agent tokens n (released 4; ablation 1/4/16/64)
    location  False = "w/o LSAS" (no location-semantic stream)
    caaf/catf False = "w/o CAAF" / "w/o CATF"
    fusion    agent (RefAtomNet) | addition ("w/o ALSAF" / "Addition") | concat | bottleneck (MBT);
              mode/agents/caaf/catf/tokens apply to fusion='agent' only
    tokens    common stream length N of the agent fusion (released 32)
    """

    def __init__(self, info: DatasetInfo, *, size: Size = "tiny", dim: int = 64, agents: int = 4,
                 heads: int = 1, mode: Mode = "as_released", location: bool = True, caaf: bool = True,
                 catf: bool = True, fusion: Literal["agent", "addition", "concat", "bottleneck"] = "agent",
                 tokens: int = 32, text_encoder: TextKind = "tiny", class_embed: ClassEmbed = "learned",
                 freeze: bool = False, weights: str | None = None, hidden: int = 512) -> None:
        super().__init__()
        if fusion != "agent":
            agent_only = {"mode": (mode, "as_released"), "agents": (agents, 4), "caaf": (caaf, True),
                          "catf": (catf, True), "tokens": (tokens, 32)}
            for name, (value, default) in agent_only.items():
                if value != default:
                    raise AdapterError(f"refatomnet: parameter {name!r} only applies to fusion='agent' "
                                       f"(got fusion={fusion!r}, {name}={value!r})")
        streams = RavarStreams(info, adapter="refatomnet", size=size, dim=dim, text_encoder=text_encoder,
                               location=location, class_embed=class_embed, freeze=freeze, weights=weights)
        names = _stream_names(location)
        if fusion == "agent":
            fuse = build_fusion("v5", dim, streams=names, mode=mode, agents=agents, heads=heads, caaf=caaf,
                                catf=catf, tokens=tokens, max_tokens=streams.lengths)
        elif fusion == "bottleneck":
            fuse = build_fusion("bottleneck", dim, streams=names, heads=heads)
        else:
            fuse = build_fusion(fusion, dim, streams=names)
        self._setup(info, streams, fuse, hidden)


@register_adapter("fusion_model", domain="fusion")
class FusionModel(_StreamFusionModel):
    """Any registered fusion variant (``fusion`` = id/name, ``fusion_params`` = its hyper-parameters)
    on RefAtomNet's three streams with the official heads."""

    def __init__(self, info: DatasetInfo, *, fusion: str = "v1", fusion_params: dict[str, Any] | None = None,
                 size: Size = "tiny", dim: int = 64, location: bool = True, text_encoder: TextKind = "tiny",
                 class_embed: ClassEmbed = "learned", freeze: bool = False, weights: str | None = None,
                 hidden: int = 512) -> None:
        super().__init__()
        spec = fusion_spec(fusion)
        params = dict(fusion_params or {})
        for reserved in ("d", "streams"):
            if reserved in params:
                raise AdapterError(f"fusion_model: fusion_params may not set {reserved!r}; it follows "
                                   f"'dim' and 'location'")
        streams = RavarStreams(info, adapter="fusion_model", size=size, dim=dim, text_encoder=text_encoder,
                               location=location, class_embed=class_embed, freeze=freeze, weights=weights)
        if spec.cls.needs_max_tokens:
            params.setdefault("max_tokens", streams.lengths)
        if spec.cls.accepts_video_grid and streams.grid is not None:
            params.setdefault("video_grid", streams.grid)
        self._setup(info, streams, build_fusion(spec.id, dim, streams=_stream_names(location), **params), hidden)


__all__ = ["TEXT_LEN", "BLIP2_HUB_ID", "RavarStreams", "RefAtomNet", "FusionModel"]
