"""The RAVAR adaptation of text-video retrieval models: similarity headers, the cross model and
the action/box heads, shared by every VTR adapter (``vtr.py``).

What the released RAVAR code does (``modules/modeling.py`` and ``modeling_xclip.py``, ravar-spec
§6): CLIP sentence feature (EOT) and per-frame CLIP features are concatenated, position-embedded
and run through CLIP4Clip's ``CrossModel`` (4 layers, 512-d, 8 heads); the pooled first token
(LayerNorm → Linear → QuickGELU) feeds ``Linear(512, 80)`` and ``Linear(512, 32) + Sigmoid``
(8 per-frame boxes of an older data version; here one key-frame box). The ``sim_header`` flag of
the run scripts is ignored by that forward. Two departures, both deliberate: the released
CrossModel discards its attention mask and has its token-type embeddings commented out; here
masks are honoured and text/video type embeddings are added (identical when no token is padded).

``sim_header``:
* ``cross``      the RAVAR adaptation above (text tokens or the sentence feature, see ``cross_text``).
* ``meanP``      CLIP4Clip's parameter-free mean of frame features.
* ``seqTransf``  CLIP4Clip's temporal transformer: frame position embeddings, transformer,
                 residual, then the mean.
For ``meanP``/``seqTransf`` (no cross model) video ``v`` and sentence ``t`` are fused as
``[LN(v), LN(t), LN(v)·LN(t)]``: the elementwise product is the cosine-similarity term a
retrieval model scores with, and the concatenation keeps each modality's own evidence.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ..protocol import DatasetInfo
from .common import ActionBoxHeads, masked_mean

SimHeader = Literal["meanP", "seqTransf", "cross"]
CrossText = Literal["sentence", "tokens"]
HeadKind = Literal["mlp", "linear"]


class QuickGELU(nn.Module):
    """CLIP's activation, x·σ(1.702x)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def _encoder(width: int, layers: int, heads: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class CrossModel(nn.Module):
    """CLIP4Clip's cross encoder over [text; video] with position and type embeddings.

    Pooling takes the first token (the sentence feature, or [CLS]/SOT when word tokens are used):
    LayerNorm → Linear → QuickGELU, as CLIP4Clip's ``CrossPooler``.
    """

    def __init__(self, width: int, layers: int, heads: int, max_positions: int = 128, dropout: float = 0.1) -> None:
        super().__init__()
        self.position = nn.Embedding(max_positions, width)
        self.token_type = nn.Embedding(2, width)
        nn.init.normal_(self.position.weight, std=0.01)
        nn.init.normal_(self.token_type.weight, std=0.01)
        self.dropout = nn.Dropout(dropout)
        self.encoder = _encoder(width, layers, heads)
        self.pool = nn.Sequential(nn.LayerNorm(width), _First(), nn.Linear(width, width), QuickGELU())

    def forward(self, text: torch.Tensor, text_mask: torch.Tensor, video: torch.Tensor,
                video_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, lt, lv = text.shape[0], text.shape[1], video.shape[1]
        if lt + lv > self.position.num_embeddings:
            raise ValueError(f"cross model: {lt} text + {lv} video tokens exceed "
                             f"{self.position.num_embeddings} positions")
        if video_mask is None:
            video_mask = torch.ones(b, lv, dtype=torch.bool, device=video.device)
        x = torch.cat([text, video], 1)
        mask = torch.cat([text_mask.bool(), video_mask.bool()], 1)
        types = torch.cat([torch.zeros(lt, dtype=torch.long), torch.ones(lv, dtype=torch.long)]).to(x.device)
        x = x + self.position.weight[: lt + lv] + self.token_type(types)
        x = self.encoder(self.dropout(x), src_key_padding_mask=~mask)
        return self.pool(x)


class _First(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0]


class TemporalTransformer(nn.Module):
    """CLIP4Clip ``seqTransf``: frame position embeddings → transformer → + input (residual)."""

    def __init__(self, width: int, layers: int, heads: int, max_frames: int = 128) -> None:
        super().__init__()
        self.position = nn.Embedding(max_frames, width)
        nn.init.normal_(self.position.weight, std=0.01)
        self.encoder = _encoder(width, layers, heads)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        t = frames.shape[1]
        if t > self.position.num_embeddings:
            raise ValueError(f"seqTransf: {t} frames exceed {self.position.num_embeddings} positions")
        return self.encoder(frames + self.position.weight[:t]) + frames


class LinearHeads(nn.Module):
    """The released RAVAR CLIP4Clip/X-CLIP heads: Linear(d,80) and Linear(d,4)+Sigmoid.

    (The release regresses 8 per-frame boxes, ``Linear(d,32)``, for an older data version; the
    protocol has one key-frame box.) Biases start at the training prior and the mean box, like
    :class:`~ravar_bench.adapters.common.ActionBoxHeads`.
    """

    def __init__(self, dim: int, info: DatasetInfo) -> None:
        super().__init__()
        self.cls = nn.Linear(dim, 80)
        self.box = nn.Linear(dim, 4)
        prior = torch.tensor(info.train_prior, dtype=torch.float32).clamp(1e-4, 1 - 1e-4)
        mean_box = torch.tensor(info.mean_box, dtype=torch.float32).clamp(1e-3, 1 - 1e-3)
        with torch.no_grad():
            self.cls.bias.copy_(torch.log(prior / (1 - prior)))
            self.cls.weight.mul_(0.1)
            self.box.bias.copy_(torch.log(mean_box / (1 - mean_box)))
            self.box.weight.mul_(0.1)

    def forward(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cls(pooled), torch.sigmoid(self.box(pooled))


class VtrHead(nn.Module):
    """Projections + similarity header + fusion + action/box heads: everything after the encoders.

    Inputs: visual tokens (B, N, Dv) — frames, or Q-Former queries — sentence (B, Dt) and, for
    ``cross`` with ``cross_text="tokens"``, word tokens (B, L, Dt) with their mask.
    """

    def __init__(self, info: DatasetInfo, *, video_dim: int, text_dim: int, width: int, sim_header: SimHeader,
                 cross_text: CrossText, heads: HeadKind, hidden: int, layers: int, attn_heads: int) -> None:
        super().__init__()
        if sim_header not in ("meanP", "seqTransf", "cross"):
            raise ValueError(f"parameter 'sim_header' must be 'meanP', 'seqTransf' or 'cross', got {sim_header!r}")
        if cross_text not in ("sentence", "tokens"):
            raise ValueError(f"parameter 'cross_text' must be 'sentence' or 'tokens', got {cross_text!r}")
        self.sim_header, self.cross_text = sim_header, cross_text
        self.video_proj = nn.Linear(video_dim, width) if video_dim != width else nn.Identity()
        self.text_proj = nn.Linear(text_dim, width) if text_dim != width else nn.Identity()
        self.temporal = TemporalTransformer(width, layers, attn_heads) if sim_header == "seqTransf" else None
        if sim_header == "cross":
            self.cross = CrossModel(width, layers, attn_heads)
            head_dim = width
        else:
            self.norm_v, self.norm_t = nn.LayerNorm(width), nn.LayerNorm(width)
            head_dim = 3 * width
        if heads == "mlp":
            self.heads: nn.Module = ActionBoxHeads(head_dim, info, hidden)
        elif heads == "linear":
            self.heads = LinearHeads(head_dim, info)
        else:
            raise ValueError(f"parameter 'heads' must be 'mlp' or 'linear', got {heads!r}")

    @property
    def needs_tokens(self) -> bool:
        return self.sim_header == "cross" and self.cross_text == "tokens"

    def forward(self, video: torch.Tensor, sentence: torch.Tensor, text_tokens: torch.Tensor | None = None,
                text_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        v = self.video_proj(video)
        if self.sim_header == "cross":
            if self.needs_tokens:
                if text_tokens is None or text_mask is None:
                    raise ValueError("cross_text='tokens' needs text_tokens and text_mask features")
                text, mask = self.text_proj(text_tokens), text_mask
            else:
                text = self.text_proj(sentence)[:, None]
                mask = torch.ones(text.shape[:2], dtype=torch.bool, device=text.device)
            pooled = self.cross(text, mask, v)
        else:
            if self.temporal is not None:
                v = self.temporal(v)
            v = self.norm_v(masked_mean(v, None))
            t = self.norm_t(self.text_proj(sentence))
            pooled = torch.cat([v, t, v * t], -1)
        return self.heads(pooled)


__all__ = ["CrossModel", "TemporalTransformer", "LinearHeads", "VtrHead", "QuickGELU",
           "SimHeader", "CrossText", "HeadKind"]
