"""Text-video retrieval (VTR) baselines of the RAVAR paper, wrapped as adapters: CLIP4Clip on
open_clip, X-CLIP and BLIP-2 on transformers. They read the sentence, unlike the AAL baselines.

Every adapter is encoder (``vtr_encoders``) + RAVAR head (``vtr_heads``):

* ``vtr_clip4clip``  CLIP frame embeddings + CLIP text; ``sim_header`` meanP / seqTransf / cross.
  With ``sim_header="cross", cross_text="sentence", heads="linear"`` it is the released RAVAR
  adaptation (ravar-spec §6), which is also what the released RAVAR "X-CLIP" (Ma et al.) runs:
  its forward uses the same CLIP4Clip cross path and leaves X-CLIP's multi-grained similarity
  unused — see ``baselines/xclip_vitb16.toml``.
* ``vtr_xclip``      transformers ``XCLIPModel`` (Ni et al., ECCV'22; a different model that shares
  the name): MIT frame tokens + prompt-conditioned sentence.
* ``vtr_blip2``      BLIP-2 Q-Former image tokens averaged over frames (B, 32, d) + Q-Former text.

Common parameters: ``size`` (tiny random CPU model or paper-scale), ``weights`` (tag / hub id /
local path, overrides the default of ``size``), ``freeze`` (frozen encoder: ``encode`` output is
cached by the training loop), ``text_encoder`` (``native`` tower or the real pretrained ``minilm``
shipped in a package, projected to the model width in the head), ``heads`` (``mlp`` =
harness-standard heads, ``linear`` = the released VTR heads), ``max_words``.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..protocol import Batch, DatasetInfo, ModelOutput, RavarModel
from .common import MiniLMTextEncoder, masked_mean
from .registry import register_adapter
from .vtr_encoders import Blip2Encoder, ClipBackbone, ClipEncoder, Size, VideoTextEncoder, XClipEncoder
from .vtr_heads import CrossText, HeadKind, SimHeader, VtrHead

TextChoice = Literal["native", "minilm"]

#: Head sizes per ``size``: (cross/temporal layers, attention heads, MLP-head hidden). The base
#: cross model is CLIP4Clip's ``cross-base`` config: 4 layers, 8 heads (width = encoder width).
_HEAD_SIZES = {"tiny": (1, 2, 128), "base": (4, 8, 512)}


class _VtrModel(RavarModel):
    """Shared plumbing: text-encoder choice, feature dict, head call. Subclasses supply video features."""

    inputs = frozenset({"frames", "text"})
    head_inputs: frozenset[str] = frozenset()  # the head reads cached features only
    encoder: VideoTextEncoder

    def _setup(self, info: DatasetInfo, *, size: Size, freeze: bool, text_encoder: TextChoice,
               sim_header: SimHeader, cross_text: CrossText, heads: HeadKind, video_dim: int, width: int,
               max_words: int) -> None:
        if text_encoder not in ("native", "minilm"):
            raise ValueError(f"parameter 'text_encoder' must be 'native' or 'minilm', got {text_encoder!r}")
        if size not in _HEAD_SIZES:
            raise ValueError(f"parameter 'size' must be 'tiny' or 'base', got {size!r}")
        self.max_words = max_words
        self.minilm = MiniLMTextEncoder(max_len=max_words) if text_encoder == "minilm" else None
        text_dim = self.minilm.dim if self.minilm is not None else self.encoder.dim
        layers, attn_heads, hidden = _HEAD_SIZES[size]
        self.vtr_head = VtrHead(info, video_dim=video_dim, text_dim=text_dim, width=width, sim_header=sim_header,
                                cross_text=cross_text, heads=heads, hidden=hidden, layers=layers,
                                attn_heads=attn_heads)
        self.frozen_encoder = freeze

    # -- text
    def _text(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Word tokens padded to ``max_words``, mask, and the sentence feature."""
        if self.minilm is not None:
            tokens, mask = self.minilm(texts)
            pad = self.max_words - tokens.shape[1]
            tokens, mask = F.pad(tokens, (0, 0, 0, pad)), F.pad(mask, (0, pad))
            return tokens, mask, masked_mean(tokens, mask)  # sentence-transformers' mean pooling
        tokens, mask = self.encoder.text_tokens(texts)
        return tokens, mask, self.encoder.pool_text(tokens, mask)

    def _features(self, video: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor,
                  sentence: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = {"video": video, "sentence": sentence}
        if self.vtr_head.needs_tokens:
            feats.update(text_tokens=tokens, text_mask=mask)
        return feats

    def head(self, features: dict[str, torch.Tensor], batch: Batch) -> ModelOutput:
        scores, box = self.vtr_head(features["video"], features["sentence"], features.get("text_tokens"),
                                    features.get("text_mask"))
        return ModelOutput(scores, box)

    def encoder_parameters(self) -> list[nn.Parameter]:
        params = list(self.encoder.parameters())
        return params + (list(self.minilm.parameters()) if self.minilm is not None else [])


@register_adapter("vtr_clip4clip", domain="VTR")
class Clip4Clip(_VtrModel):
    """CLIP4Clip (Luo et al. 2021) on open_clip CLIP; RAVAR cross-model adaptation by default."""

    def __init__(self, info: DatasetInfo, *, size: Size = "tiny", backbone: ClipBackbone = "ViT-B-16",
                 weights: str | None = None, freeze: bool = False, sim_header: SimHeader = "cross",
                 cross_text: CrossText = "tokens", text_encoder: TextChoice = "native", heads: HeadKind = "mlp",
                 max_words: int = 32, quick_gelu: bool = True) -> None:
        super().__init__()
        self.encoder = ClipEncoder(size, backbone, weights, freeze, max_words, quick_gelu,
                                   use_text=text_encoder == "native", adapter="vtr_clip4clip")
        d = self.encoder.dim
        self._setup(info, size=size, freeze=freeze, text_encoder=text_encoder, sim_header=sim_header,
                    cross_text=cross_text, heads=heads, video_dim=d, width=d, max_words=max_words)

    def encode(self, batch: Batch) -> dict[str, torch.Tensor]:
        frames = self.encoder.frame_features(batch.frames)  # (B, T, D)
        return self._features(frames, *self._text(batch.text))


@register_adapter("vtr_xclip", domain="VTR")
class XClip(_VtrModel):
    """X-CLIP (Ni et al., ECCV'22) via transformers XCLIPModel: MIT frame tokens + prompted text.

    ``sim_header``: ``cross`` (RAVAR cross model over [text; MIT frame tokens]) or ``meanP``
    (X-CLIP's own video embedding, the mean of MIT tokens, fused with the sentence). The video
    prompts condition the sentence (EOT) feature on the clip; they need the native text tower, so
    ``text_encoder="minilm"`` uses the plain MiniLM sentence instead.
    """

    def __init__(self, info: DatasetInfo, *, size: Size = "tiny", weights: str | None = None, freeze: bool = False,
                 sim_header: Literal["meanP", "cross"] = "cross", cross_text: CrossText = "tokens",
                 text_encoder: TextChoice = "native", heads: HeadKind = "mlp", max_words: int = 32) -> None:
        super().__init__()
        if sim_header not in ("meanP", "cross"):
            raise ValueError(f"vtr_xclip: parameter 'sim_header' must be 'meanP' or 'cross', got {sim_header!r}")
        self.encoder = XClipEncoder(size, weights, freeze, max_words, use_text=text_encoder == "native",
                                    adapter="vtr_xclip")
        d = self.encoder.dim
        self._setup(info, size=size, freeze=freeze, text_encoder=text_encoder, sim_header=sim_header,
                    cross_text=cross_text, heads=heads, video_dim=d, width=d, max_words=max_words)

    def encode(self, batch: Batch) -> dict[str, torch.Tensor]:
        mit, patches = self.encoder.video(batch.frames)
        tokens, mask, sentence = self._text(batch.text)
        if self.minilm is None:  # the prompted sentence replaces the EOT token, so both cross modes see it
            sentence = self.encoder.prompt(sentence, patches)
            last = mask.long().sum(1) - 1
            tokens = tokens.index_put((torch.arange(len(last), device=last.device), last), sentence)
        return self._features(mit, tokens, mask, sentence)


@register_adapter("vtr_blip2", domain="VTR")
class Blip2(_VtrModel):
    """BLIP-2 (Li et al., ICML'23): Q-Former image tokens averaged over frames + Q-Former text.

    ``sim_header``: ``cross`` (RAVAR cross model over [text; 32 query tokens]) or ``meanP``
    (mean of the query tokens fused with the [CLS] sentence feature). The base cross model runs
    at 512-d like CLIP4Clip's, with 768→512 projections.
    """

    def __init__(self, info: DatasetInfo, *, size: Size = "tiny", weights: str | None = None, freeze: bool = False,
                 sim_header: Literal["meanP", "cross"] = "cross", cross_text: CrossText = "tokens",
                 text_encoder: TextChoice = "native", heads: HeadKind = "mlp", max_words: int = 32) -> None:
        super().__init__()
        if sim_header not in ("meanP", "cross"):
            raise ValueError(f"vtr_blip2: parameter 'sim_header' must be 'meanP' or 'cross', got {sim_header!r}")
        self.encoder = Blip2Encoder(size, weights, freeze, max_words, use_text=text_encoder == "native",
                                    adapter="vtr_blip2")
        d = self.encoder.dim
        width = 512 if size == "base" else d
        self._setup(info, size=size, freeze=freeze, text_encoder=text_encoder, sim_header=sim_header,
                    cross_text=cross_text, heads=heads, video_dim=d, width=width, max_words=max_words)

    def encode(self, batch: Batch) -> dict[str, torch.Tensor]:
        queries = self.encoder.image_tokens(batch.frames).mean(1)  # (B, Q, d), RefAtomNet's VT stream
        return self._features(queries, *self._text(batch.text))


# The encoders are re-exported here: RefAtomNet imports ``Blip2Encoder`` from this module.
__all__ = ["Clip4Clip", "XClip", "Blip2", "Blip2Encoder", "ClipEncoder", "XClipEncoder"]
