"""V8 linear attention and V9 learned latents (fusion.md §6.2): the two references that bracket
agent attention. Agent attention is a generalized linear attention whose feature maps are softmax
similarities to *pooled* agents; V8 is the plain kernel form (no agents at all) and V9 uses
*learned* agents that only aggregate (no broadcast back to the tokens).

* V8 ``linear_attn``  O = φ(Q)(φ(K)ᵀV) / (φ(Q)·Σ_k φ(K)), φ = elu + 1 (Katharopoulos et al.,
                      ICML 2020), on the concatenation (``form="concat"``, like V1) or as video ←
                      text+loc cross-attention (``form="cross"``, like V2). Masked keys are removed
                      from both sums (and size-weighted when tokens were merged); no softmax, so
                      nothing here goes through SDPA.
* V9 ``latents``      n learned latent queries cross-attend (SDPA) to the concatenation of all
                      streams, Perceiver / Q-Former style; the n latents are the output tokens and
                      their mean is ``pooled``. ``self_attn`` adds latent self-attention per layer.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .base import (
    Fusion, FusionError, FusionOutput, StreamTokens, linear_macs, masked_pool, pool_macs, pool_stream,
    register_fusion, zero_padded,
)
from .basic import Block, concat_streams
from .zoo_agent import FFN, check_common, merge_heads, split_heads, type_embedding


def elu_feature(x: torch.Tensor) -> torch.Tensor:
    """φ(x) = elu(x) + 1 > 0."""
    return F.elu(x) + 1.0


class LinearAttention(nn.Module):
    """Multi-head kernel attention. Cost per head is linear in tokens: φ(K)ᵀV is d_h × d_h."""

    def __init__(self, d: int, heads: int = 4, eps: float = 1e-6) -> None:
        super().__init__()
        self.d, self.h, self.eps = d, heads, eps
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.out = nn.Linear(d, d)

    def forward(self, xq: torch.Tensor, xk: torch.Tensor, key_mask: torch.Tensor,
                key_size: torch.Tensor | None = None) -> torch.Tensor:
        h = self.h
        q = elu_feature(split_heads(self.q(xq), h))  # (B, h, Nq, dh)
        k, v = self.kv(xk).chunk(2, -1)
        w = key_mask.to(q.dtype) if key_size is None else key_mask.to(q.dtype) * key_size[..., 0].to(q.dtype)
        k = elu_feature(split_heads(k, h)) * w[:, None, :, None]  # padded keys contribute nothing
        v = split_heads(v, h)
        kv = k.transpose(-1, -2) @ v  # (B, h, dh, dh)
        z = k.sum(2)  # (B, h, dh)
        num = q @ kv
        den = (q * z[:, :, None, :]).sum(-1, keepdim=True)
        return self.out(merge_heads(num / den.clamp_min(self.eps)))

    def macs(self, n_q: int, n_k: int) -> int:
        d, dh = self.d, self.d // self.h
        proj = linear_macs(n_q, d, d) + linear_macs(n_k, d, 2 * d) + linear_macs(n_q, d, d)
        core = n_k * dh * d + n_q * dh * d  # φ(K)ᵀV and φ(Q)(φ(K)ᵀV): h · N · d_h² each
        return proj + core + n_k * d + n_q * d  # Σφ(K) and the normaliser


class LinearBlock(nn.Module):
    """Pre-norm block x + LinAttn(LN x → LN ctx) (self when ctx is None), then the FFN."""

    def __init__(self, d: int, heads: int, mlp_ratio: float, cross: bool) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(d)
        self.norm_kv = nn.LayerNorm(d) if cross else None
        self.attn = LinearAttention(d, heads)
        self.ffn = FFN(d, mlp_ratio)
        self.d = d

    def forward(self, x: torch.Tensor, mask: torch.Tensor, size: torch.Tensor | None = None,
                ctx: torch.Tensor | None = None, ctx_mask: torch.Tensor | None = None,
                ctx_size: torch.Tensor | None = None) -> torch.Tensor:
        hq = self.norm_q(x)
        if ctx is None:
            y = self.attn(hq, hq, mask, size)
        else:
            y = self.attn(hq, self.norm_kv(ctx), ctx_mask, ctx_size)
        return self.ffn(x + y, mask)

    def macs(self, n_q: int, n_k: int) -> int:
        return self.attn.macs(n_q, n_k) + self.ffn.macs(n_q, self.d)


@register_fusion("v8", "linear_attn", aliases=("linear_attention",))
class LinearAttentionFusion(Fusion):
    """V8: elu+1 linear attention over [video; text; loc] (``form="concat"``, pooled over all
    tokens) or video ← text+loc (``form="cross"``, pooled over video), type embeddings as V1/V2."""

    def __init__(self, d: int, streams: tuple[str, ...] = ("video", "text", "loc"),
                 query_stream: str = "video", form: Literal["concat", "cross"] = "concat", layers: int = 1,
                 heads: int = 4, mlp_ratio: float = 4.0) -> None:
        super().__init__(d, streams, query_stream)
        check_common(self.variant_id, d, layers, heads)
        if form not in ("concat", "cross"):
            raise FusionError(f"fusion {self.variant_id}: form must be 'concat' or 'cross', got {form!r}")
        if form == "cross" and not self.context_streams:
            raise FusionError(f"fusion {self.variant_id}: form='cross' needs a context stream besides {query_stream!r}")
        self.form = form
        self.type_embed = type_embedding(len(self.streams), d)
        self.blocks = nn.ModuleList(LinearBlock(d, heads, mlp_ratio, cross=form == "cross") for _ in range(layers))

    def forward(self, streams: dict[str, StreamTokens]) -> FusionOutput:
        parts = self.check(streams)
        if self.form == "concat":
            x, mask, size = concat_streams(parts, self.type_embed)
            for block in self.blocks:
                x = block(x, mask, size)
            w = mask.to(x.dtype) if size is None else mask.to(x.dtype) * size[..., 0]
            return FusionOutput(x, mask, masked_pool(x, w), {})
        q = streams[self.query_stream]
        types = torch.stack([self.type_embed[self.streams.index(s)] for s in self.context_streams])
        c, c_mask, c_size = concat_streams([streams[s] for s in self.context_streams], types)
        x = zero_padded(q.x + self.type_embed[self.streams.index(self.query_stream)], q.mask)
        for block in self.blocks:
            x = block(x, q.mask, ctx=c, ctx_mask=c_mask, ctx_size=c_size)
        return FusionOutput(x, q.mask, pool_stream(q, x), {})

    def macs(self, shapes: dict[str, int]) -> int:
        n = self.check_shapes(shapes)
        if self.form == "concat":
            total = sum(n.values())
            return sum(b.macs(total, total) for b in self.blocks) + pool_macs(total, self.d)
        nq, nc = n[self.query_stream], sum(n[s] for s in self.context_streams)
        return sum(b.macs(nq, nc) for b in self.blocks) + pool_macs(nq, self.d)


@register_fusion("v9", "latents", aliases=("perceiver", "qformer", "learned_latents"))
class LatentFusion(Fusion):
    """V9: ``latents`` learned queries cross-attend to the type-embedded concatenation of every
    stream (key-padding mask, log-size bias for merged tokens), then an FFN; ``self_attn`` adds a
    latent self-attention block per layer (Perceiver). Output tokens = the latents (never padded);
    pooled = their mean. Aggregation only: the stream tokens themselves are not updated."""

    def __init__(self, d: int, streams: tuple[str, ...] = ("video", "text", "loc"),
                 query_stream: str = "video", latents: int = 16, layers: int = 1, heads: int = 4,
                 self_attn: bool = False, mlp_ratio: float = 4.0) -> None:
        super().__init__(d, streams, query_stream)
        check_common(self.variant_id, d, layers, heads, latents)
        self.n_latents, self.mlp_ratio = latents, mlp_ratio
        self.latents = nn.Parameter(torch.zeros(latents, d))
        nn.init.trunc_normal_(self.latents, std=0.02)
        self.type_embed = type_embedding(len(self.streams), d)
        self.cross = nn.ModuleList(Block(d, heads, mlp_ratio, cross=True) for _ in range(layers))
        self.selfs = nn.ModuleList(Block(d, heads, mlp_ratio) for _ in range(layers)) if self_attn else None

    def forward(self, streams: dict[str, StreamTokens]) -> FusionOutput:
        parts = self.check(streams)
        c, c_mask, c_size = concat_streams(parts, self.type_embed)
        b = c.shape[0]
        # a copy, not an expand view: a view of a parameter made under no_grad breaks
        # FlopCounterMode's module hooks ("Expected gradient function to be set")
        z = self.latents.unsqueeze(0).repeat(b, 1, 1)
        z_mask = torch.ones(b, self.n_latents, dtype=torch.bool, device=c.device)
        for i, block in enumerate(self.cross):
            z = block(z, z_mask, c, c_mask, ctx_size=c_size)
            if self.selfs is not None:
                z = self.selfs[i](z, z_mask)
        return FusionOutput(z, z_mask, z.mean(1), {"latents": z})

    def macs(self, shapes: dict[str, int]) -> int:
        n = sum(self.check_shapes(shapes).values())
        per = Block.macs(self.n_latents, n, self.d, self.mlp_ratio)
        if self.selfs is not None:
            per += Block.macs(self.n_latents, self.n_latents, self.d, self.mlp_ratio)
        return len(self.cross) * per + pool_macs(self.n_latents, self.d)


__all__ = ["elu_feature", "LinearAttention", "LinearBlock", "LinearAttentionFusion", "LatentFusion"]
