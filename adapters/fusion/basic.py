"""The standard fusion baselines of the zoo (fusion.md §6.2) and the paper's fusion-comparison rows.

* V0  ``late_sum``   — sum (or average) of masked stream means; also the paper's "Addition" /
  "w/o ALSAF" row (RefAtomNet's ``m_1.py``: z = sum of stream means, no agent blocks).
* ``concat``         — the paper's "Concatenation" row: stream means concatenated channel-wise,
  then Linear(S·d → d).
* V1  ``concat_sa``  — one joint transformer over [video; text; loc] with modality-type embeddings
  and a key-padding mask: the standard "attention fusion" RefAtomNet claims to beat.
* V2  ``cross_attn`` — the query stream (video) cross-attends to the others (text + loc).
* V2b ``co_attn``    — both directions: video ← context and context ← video, in parallel.
* ``bottleneck``     — attention bottleneck (Nagrani et al., "Attention Bottlenecks for Multimodal
  Fusion", NeurIPS 2021, MBT): each stream has its own transformer layers over [its tokens; B shared
  fusion tokens]; the fusion tokens are averaged over streams after each layer, so they are the only
  cross-stream channel. The paper's "AttentionBottleneck" row.

All attention runs through SDPA with key-padding masks (base.attend); padded queries output zeros.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import (
    Fusion, FusionError, FusionOutput, StreamTokens, attend, attention_core_macs, ffn_macs,
    linear_macs, masked_pool, pool_macs, pool_stream, register_fusion, zero_padded,
)


# ----------------------------------------------------------------------------- layers
class Attention(nn.Module):
    """Multi-head (cross- or self-) attention through SDPA with a key-padding mask."""

    def __init__(self, d: int, heads: int = 4, qkv_bias: bool = True) -> None:
        super().__init__()
        if heads < 1 or d % heads:
            raise FusionError(f"attention: d={d} must be divisible by heads={heads}")
        self.heads = heads
        self.q = nn.Linear(d, d, bias=qkv_bias)
        self.kv = nn.Linear(d, 2 * d, bias=qkv_bias)
        self.out = nn.Linear(d, d)

    def forward(self, xq: torch.Tensor, xk: torch.Tensor, key_mask: torch.Tensor,
                key_size: torch.Tensor | None = None) -> torch.Tensor:
        b, nq, d = xq.shape
        h, dh = self.heads, d // self.heads
        q = self.q(xq).view(b, nq, h, dh).transpose(1, 2)
        k, v = self.kv(xk).view(b, xk.shape[1], 2, h, dh).permute(2, 0, 3, 1, 4)
        o = attend(q, k, v, key_mask, key_size)
        return self.out(o.transpose(1, 2).reshape(b, nq, d))

    @staticmethod
    def macs(n_q: int, n_k: int, d: int) -> int:
        return 2 * linear_macs(n_q, d, d) + linear_macs(n_k, d, 2 * d) + attention_core_macs(n_q, n_k, d)


class Block(nn.Module):
    """Pre-norm transformer block: x + Attn(LN x → LN ctx); x + FFN(LN x). Self-attention when no
    context is given. Padded queries leave as zeros. ``mlp_ratio=0`` drops the FFN."""

    def __init__(self, d: int, heads: int = 4, mlp_ratio: float = 4.0, cross: bool = False) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(d)
        self.norm_kv = nn.LayerNorm(d) if cross else None
        self.attn = Attention(d, heads)
        self.mlp_ratio = mlp_ratio
        hidden = int(round(d * mlp_ratio))
        self.norm_ffn = nn.LayerNorm(d) if hidden else None
        self.ffn = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d)) if hidden else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor, ctx: torch.Tensor | None = None,
                ctx_mask: torch.Tensor | None = None, size: torch.Tensor | None = None,
                ctx_size: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm_q(x)
        if ctx is None:
            x = x + self.attn(h, h, mask, size)
        else:
            if self.norm_kv is None:
                raise FusionError("Block was built for self-attention but received a context")
            x = x + self.attn(h, self.norm_kv(ctx), ctx_mask, ctx_size)
        if self.ffn is not None:
            x = x + self.ffn(self.norm_ffn(x))
        return zero_padded(x, mask)

    @staticmethod
    def macs(n_q: int, n_k: int, d: int, mlp_ratio: float) -> int:
        return Attention.macs(n_q, n_k, d) + ffn_macs(n_q, d, mlp_ratio)


def concat_streams(parts: list[StreamTokens], type_embed: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Concatenate streams along tokens (padding zeroed, optional per-stream type embedding
    added to valid tokens). Returns x, mask and sizes (None if no stream carries sizes)."""
    xs = []
    for i, s in enumerate(parts):
        x = s.x if type_embed is None else s.x + type_embed[i]
        xs.append(zero_padded(x, s.mask))
    mask = torch.cat([s.mask for s in parts], 1)
    size = None
    if any(s.size is not None for s in parts):
        size = torch.cat([s.size if s.size is not None else s.x.new_ones(*s.x.shape[:2], 1) for s in parts], 1)
    return torch.cat(xs, 1), mask, size


def average_present(pools: list[torch.Tensor], present: list[torch.Tensor]) -> torch.Tensor:
    """Mean of per-stream pooled vectors over the streams that have a valid token (per sample)."""
    w = torch.stack([p.to(pools[0].dtype) for p in present], 0).unsqueeze(-1)  # (S, B, 1)
    return (torch.stack(pools, 0) * w).sum(0) / w.sum(0).clamp_min(1.0)


def _type_embedding(n: int, d: int) -> nn.Parameter:
    table = nn.Parameter(torch.zeros(n, d))
    nn.init.trunc_normal_(table, std=0.02)
    return table


def _check_layers(where: str, layers: int, heads: int, d: int) -> None:
    if layers < 1:
        raise FusionError(f"fusion {where}: layers must be >= 1, got {layers}")
    if heads < 1 or d % heads:
        raise FusionError(f"fusion {where}: d={d} must be divisible by heads={heads}")


# ---------------------------------------------------------------------------- variants
@register_fusion("v0", "late_sum", aliases=("addition", "add"))
class LateSum(Fusion):
    """V0 / "Addition": z = Σ_s masked-mean(x_s) (``average=True``: divided by the present streams).

    For index-aligned streams of equal length this equals the mean of the token-wise sum, so it
    is also the paper's "Addition" row; RefAtomNet's final aggregator is this same sum."""

    def __init__(self, d: int, streams: tuple[str, ...] = ("video", "text", "loc"),
                 query_stream: str = "video", average: bool = False) -> None:
        super().__init__(d, streams, query_stream)
        self.average = average

    def forward(self, streams: dict[str, StreamTokens]) -> FusionOutput:
        parts = self.check(streams)
        pools = [pool_stream(s, s.valid_x()) for s in parts]
        if self.average:
            pooled = average_present(pools, [s.mask.any(1) for s in parts])
        else:
            pooled = torch.stack(pools, 0).sum(0)
        x, mask, _ = concat_streams(parts)
        return FusionOutput(x, mask, pooled, {"stream_pooled": dict(zip(self.streams, pools))})

    def macs(self, shapes: dict[str, int]) -> int:
        return sum(pool_macs(n, self.d) for n in self.check_shapes(shapes).values())


@register_fusion("concat", "concat_channels", aliases=("concatenation",))
class ConcatChannels(Fusion):
    """"Concatenation": stream means concatenated channel-wise, then Linear(S·d → d)."""

    def __init__(self, d: int, streams: tuple[str, ...] = ("video", "text", "loc"),
                 query_stream: str = "video") -> None:
        super().__init__(d, streams, query_stream)
        self.proj = nn.Linear(len(self.streams) * d, d)

    def forward(self, streams: dict[str, StreamTokens]) -> FusionOutput:
        parts = self.check(streams)
        pools = [pool_stream(s, s.valid_x()) for s in parts]
        x, mask, _ = concat_streams(parts)
        return FusionOutput(x, mask, self.proj(torch.cat(pools, -1)), {})

    def macs(self, shapes: dict[str, int]) -> int:
        n = self.check_shapes(shapes)
        return sum(pool_macs(v, self.d) for v in n.values()) + linear_macs(1, len(n) * self.d, self.d)


@register_fusion("v1", "concat_sa", aliases=("self_attention", "joint"))
class ConcatSelfAttention(Fusion):
    """V1: a joint transformer over [video; text; loc] with modality-type embeddings and a
    key-padding mask; pooled = masked mean of all output tokens."""

    def __init__(self, d: int, streams: tuple[str, ...] = ("video", "text", "loc"),
                 query_stream: str = "video", layers: int = 1, heads: int = 4,
                 mlp_ratio: float = 4.0) -> None:
        super().__init__(d, streams, query_stream)
        _check_layers(self.variant_id, layers, heads, d)
        self.mlp_ratio = mlp_ratio
        self.type_embed = _type_embedding(len(self.streams), d)
        self.blocks = nn.ModuleList(Block(d, heads, mlp_ratio) for _ in range(layers))

    def forward(self, streams: dict[str, StreamTokens]) -> FusionOutput:
        parts = self.check(streams)
        x, mask, size = concat_streams(parts, self.type_embed)
        for block in self.blocks:
            x = block(x, mask, size=size)
        weights = mask.to(x.dtype) if size is None else mask.to(x.dtype) * size[..., 0]
        return FusionOutput(x, mask, masked_pool(x, weights), {})

    def macs(self, shapes: dict[str, int]) -> int:
        n = sum(self.check_shapes(shapes).values())
        return len(self.blocks) * Block.macs(n, n, self.d, self.mlp_ratio) + pool_macs(n, self.d)


@register_fusion("v2", "cross_attn", aliases=("cross_attention",))
class CrossAttention(Fusion):
    """V2: the query stream (video) cross-attends to the concatenated context streams (text +
    loc, with type embeddings); only the query stream is updated and pooled."""

    def __init__(self, d: int, streams: tuple[str, ...] = ("video", "text", "loc"),
                 query_stream: str = "video", layers: int = 1, heads: int = 4,
                 mlp_ratio: float = 4.0) -> None:
        super().__init__(d, streams, query_stream)
        _check_layers(self.variant_id, layers, heads, d)
        if not self.context_streams:
            raise FusionError(f"fusion {self.variant_id}: needs at least one context stream besides {query_stream!r}")
        self.mlp_ratio = mlp_ratio
        self.type_embed = _type_embedding(len(self.streams), d)
        self.blocks = nn.ModuleList(Block(d, heads, mlp_ratio, cross=True) for _ in range(layers))

    def _split(self, streams: dict[str, StreamTokens]) -> tuple[StreamTokens, list[StreamTokens], torch.Tensor]:
        self.check(streams)
        q = streams[self.query_stream]
        ctx = [streams[s] for s in self.context_streams]
        types = torch.stack([self.type_embed[self.streams.index(s)] for s in self.context_streams])
        return q, ctx, types

    def forward(self, streams: dict[str, StreamTokens]) -> FusionOutput:
        q, ctx, types = self._split(streams)
        c, c_mask, c_size = concat_streams(ctx, types)
        x = zero_padded(q.x + self.type_embed[self.streams.index(self.query_stream)], q.mask)
        for block in self.blocks:
            x = block(x, q.mask, c, c_mask, ctx_size=c_size)
        return FusionOutput(x, q.mask, pool_stream(q, x), {})

    def macs(self, shapes: dict[str, int]) -> int:
        n = self.check_shapes(shapes)
        nq, nc = n[self.query_stream], sum(n[s] for s in self.context_streams)
        return len(self.blocks) * Block.macs(nq, nc, self.d, self.mlp_ratio) + pool_macs(nq, self.d)


@register_fusion("v2b", "co_attn", aliases=("co_attention",))
class CoAttention(CrossAttention):
    """V2b: co-attention — per layer, video ← context and context ← video in parallel (each
    direction its own block); pooled = mean of the two sides' masked means."""

    def __init__(self, d: int, streams: tuple[str, ...] = ("video", "text", "loc"),
                 query_stream: str = "video", layers: int = 1, heads: int = 4,
                 mlp_ratio: float = 4.0) -> None:
        super().__init__(d, streams, query_stream, layers, heads, mlp_ratio)
        self.back = nn.ModuleList(Block(d, heads, mlp_ratio, cross=True) for _ in range(layers))

    def forward(self, streams: dict[str, StreamTokens]) -> FusionOutput:
        q, ctx, types = self._split(streams)
        c, c_mask, c_size = concat_streams(ctx, types)
        x = zero_padded(q.x + self.type_embed[self.streams.index(self.query_stream)], q.mask)
        for fwd, back in zip(self.blocks, self.back):
            x, c = fwd(x, q.mask, c, c_mask, ctx_size=c_size), back(c, c_mask, x, q.mask, ctx_size=q.size)
        c_weights = c_mask.to(c.dtype) if c_size is None else c_mask.to(c.dtype) * c_size[..., 0]
        pooled = average_present([pool_stream(q, x), masked_pool(c, c_weights)], [q.mask.any(1), c_mask.any(1)])
        return FusionOutput(torch.cat([x, c], 1), torch.cat([q.mask, c_mask], 1), pooled, {})

    def macs(self, shapes: dict[str, int]) -> int:
        n = self.check_shapes(shapes)
        nq, nc = n[self.query_stream], sum(n[s] for s in self.context_streams)
        per_layer = Block.macs(nq, nc, self.d, self.mlp_ratio) + Block.macs(nc, nq, self.d, self.mlp_ratio)
        return len(self.blocks) * per_layer + pool_macs(nq + nc, self.d)


@register_fusion("bottleneck", "attention_bottleneck", aliases=("mbt",))
class AttentionBottleneck(Fusion):
    """MBT attention bottleneck: per-stream transformer layers over [x_s; z] with ``bottleneck``
    shared fusion tokens z, averaged across streams after every layer.

    Stream tokens see other streams only through z, and only from the second layer on, hence
    ``layers=2`` by default. pooled = mean of the per-stream masked means (MBT averages the
    per-modality outputs)."""

    def __init__(self, d: int, streams: tuple[str, ...] = ("video", "text", "loc"),
                 query_stream: str = "video", layers: int = 2, heads: int = 4,
                 mlp_ratio: float = 4.0, bottleneck: int = 4) -> None:
        super().__init__(d, streams, query_stream)
        _check_layers(self.variant_id, layers, heads, d)
        if bottleneck < 1:
            raise FusionError(f"fusion {self.variant_id}: bottleneck must be >= 1, got {bottleneck}")
        self.mlp_ratio, self.n_fusion = mlp_ratio, bottleneck
        self.fusion_tokens = nn.Parameter(torch.zeros(bottleneck, d))
        nn.init.trunc_normal_(self.fusion_tokens, std=0.02)
        self.layers = nn.ModuleList(
            nn.ModuleDict({s: Block(d, heads, mlp_ratio) for s in self.streams}) for _ in range(layers))

    def forward(self, streams: dict[str, StreamTokens]) -> FusionOutput:
        parts = self.check(streams)
        b = parts[0].x.shape[0]
        xs = [s.valid_x() for s in parts]
        z = self.fusion_tokens.expand(b, -1, -1)
        z_mask = torch.ones(b, self.n_fusion, dtype=torch.bool, device=z.device)
        for layer in self.layers:
            zs = []
            for i, s in enumerate(parts):
                size = None if s.size is None else torch.cat([s.size, s.size.new_ones(b, self.n_fusion, 1)], 1)
                out = layer[s.kind](torch.cat([xs[i], z], 1), torch.cat([s.mask, z_mask], 1), size=size)
                xs[i], z_s = out[:, : s.num_tokens], out[:, s.num_tokens:]
                zs.append(z_s)
            z = torch.stack(zs, 0).mean(0)
        pools = [pool_stream(s, x) for s, x in zip(parts, xs)]
        pooled = average_present(pools, [s.mask.any(1) for s in parts])
        return FusionOutput(torch.cat(xs, 1), torch.cat([s.mask for s in parts], 1), pooled,
                            {"fusion_tokens": z})

    def macs(self, shapes: dict[str, int]) -> int:
        n = self.check_shapes(shapes)
        per_layer = sum(Block.macs(v + self.n_fusion, v + self.n_fusion, self.d, self.mlp_ratio) for v in n.values())
        return len(self.layers) * per_layer + sum(pool_macs(v, self.d) for v in n.values())


__all__ = [
    "Attention", "Block", "concat_streams", "average_present", "LateSum", "ConcatChannels",
    "ConcatSelfAttention", "CrossAttention", "CoAttention", "AttentionBottleneck",
]
