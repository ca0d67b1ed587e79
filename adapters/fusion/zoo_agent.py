"""Agent-attention fusion variants of the zoo: V3, V4a/V4b, V6, V6b (fusion.md §1, §6.2).

Agent attention (Han et al., ECCV 2024) replaces one N×N softmax by two thin ones through n ≪ N
agent tokens A: aggregation V_A = σ(A Kᵀ/√d_h) V, then broadcast O = σ(Q Aᵀ/√d_h) V_A. Both steps
are plain SDPA calls (base.attend), so every variant here is timed with the same kernels as V1/V2.

* V3  ``agent_self``    per-stream agent self-attention, no cross-stream link (RefAtomNet ``m_3``).
* V4  ``agent_cross``   agent cross-attention, video ← text+loc through agents taken from the video
                        queries (V4a, ``agent_source="video"``) or from the text tokens (V4b,
                        ``agent_source="text"``: text-conditioned agents, the AgentSD pattern).
* V6  ``agent_exchange`` each stream aggregates its own agents; the video queries (or every
                        stream, ``exchange="all"``) broadcast over the union of all streams' agents.
* V6b ``shared_agents`` one agent set pooled from all streams aggregates the concatenation and
                        broadcasts back to every token; the n agents are the only mixing channel.

Agents are *pooled queries* with masks honoured (fusion.md §6.1 rule 1): ``chunk`` cuts the valid
tokens (in order) into n contiguous chunks, so appended or interleaved padding never moves a chunk
boundary; ``grid`` assigns tokens to n = gᵖ cells by their ``pos`` (p = 2 for (y, x), 3 for
(t, y, x), coordinates in [0, 1]), the 1-D analogue of Han et al.'s 2-D adaptive pooling that also
works after a reducer reordered tokens; ``learned`` uses n parameter tokens (lucidrains' port).
An agent whose chunk/cell holds no valid token is masked out of the broadcast softmax.
V3 also carries Han et al.'s depthwise-conv term (``dwc``) and agent position biases
(``agent_bias``) on the video stream, rebuilt on ``video_grid`` from the tokens' positions
(grid.py); RefAtomNet's released blocks have neither, and text/location have no grid.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from .base import (
    Fusion, FusionError, FusionOutput, StreamTokens, attend, attention_core_macs, ffn_macs,
    linear_macs, masked_pool, pool_by_index, pool_macs, pool_stream, register_fusion, zero_padded,
)
from .basic import average_present, concat_streams
from .grid import GridAgentBias, GridDWC, check_grid, grid_cells

Pooling = Literal["auto", "chunk", "grid", "learned"]
POOLINGS = ("auto", "chunk", "grid", "learned")


# ------------------------------------------------------------------------------ helpers
def type_embedding(n: int, d: int) -> nn.Parameter:
    """A learned per-stream type embedding table (n, d), trunc-normal std 0.02 like V1/V2."""
    table = nn.Parameter(torch.zeros(n, d))
    nn.init.trunc_normal_(table, std=0.02)
    return table


def check_common(where: str, d: int, layers: int, heads: int, agents: int | None = None) -> None:
    if layers < 1:
        raise FusionError(f"fusion {where}: layers must be >= 1, got {layers}")
    if heads < 1 or d % heads:
        raise FusionError(f"fusion {where}: d={d} must be divisible by heads={heads}")
    if agents is not None and agents < 1:
        raise FusionError(f"fusion {where}: agents must be >= 1, got {agents}")


def split_heads(t: torch.Tensor, h: int) -> torch.Tensor:
    """(B, N, d) -> (B, h, N, d/h)."""
    b, n, d = t.shape
    return t.view(b, n, h, d // h).transpose(1, 2)


def merge_heads(t: torch.Tensor) -> torch.Tensor:
    """(B, h, N, d_h) -> (B, N, h·d_h)."""
    b, h, n, dh = t.shape
    return t.transpose(1, 2).reshape(b, n, h * dh)


def valid_rank(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank of every token among the valid tokens of its row (B, N) and the valid count (B,).

    Ranks, not positions, define chunks and bipartite splits, so padding (appended or interleaved)
    never changes which valid tokens go together."""
    count = mask.sum(1)
    rank = torch.cumsum(mask.long(), 1) - 1
    return rank.clamp_min(0), count


def chunk_index(mask: torch.Tensor, n: int) -> torch.Tensor:
    """Agent index (B, N) of each valid token when its row's valid tokens are cut into ``n``
    contiguous chunks of (almost) equal length; padded tokens get index ``n`` (a dropped bucket)."""
    rank, count = valid_rank(mask)
    idx = torch.div(rank * n, count.clamp_min(1)[:, None], rounding_mode="floor")
    return torch.where(mask, idx, torch.full_like(idx, n))


def grid_index(pos: torch.Tensor, mask: torch.Tensor, n: int, where: str) -> torch.Tensor:
    """Agent index (B, N) from positions in [0, 1]: ``n = g^p`` cells, g per axis (p = pos dims)."""
    p = pos.shape[-1]
    g = round(n ** (1.0 / p))
    if g ** p != n:
        raise FusionError(f"{where}: pooling='grid' on {p}-D positions needs agents = g^{p} for an integer g, "
                          f"got agents={n} (use pooling='chunk' or 'auto')")
    return grid_cells(pos, mask, (g,) * p, where)  # g^p = n, so padded tokens get index n


class AgentPool(nn.Module):
    """Builds the n agents (B, n, d) and their mask from query-space tokens of one stream."""

    def __init__(self, d: int, agents: int, pooling: Pooling, where: str) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise FusionError(f"{where}: pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        self.n, self.pooling, self.where = agents, pooling, where
        self.learned = None
        if pooling == "learned":
            self.learned = nn.Parameter(torch.zeros(agents, d))
            nn.init.trunc_normal_(self.learned, std=0.02)

    def mode(self, s: StreamTokens) -> str:
        """The pooling actually used for stream ``s`` ("auto": grid for a video stream with 2-D/3-D
        positions and a perfect-power agent count, chunks otherwise; "grid" grids the video stream
        and chunks the others, which have no grid)."""
        if self.pooling == "grid" and s.kind != "video":
            return "chunk"
        if self.pooling != "auto":
            return self.pooling
        if s.kind == "video" and s.pos is not None and s.pos.shape[-1] in (2, 3):
            p = s.pos.shape[-1]
            if round(self.n ** (1.0 / p)) ** p == self.n:
                return "grid"
        return "chunk"

    def forward(self, q: torch.Tensor, s: StreamTokens) -> tuple[torch.Tensor, torch.Tensor]:
        b = q.shape[0]
        mode = self.mode(s)
        if mode == "learned":
            # a copy, not an expand view (a parameter view made under no_grad breaks FlopCounterMode)
            return self.learned.unsqueeze(0).repeat(b, 1, 1), torch.ones(b, self.n, dtype=torch.bool, device=q.device)
        if mode == "grid":
            if s.pos is None:
                raise FusionError(f"{self.where}: pooling='grid' needs positions on the {s.kind!r} stream (pos is None)")
            idx = grid_index(s.pos, s.mask, self.n, self.where)
        else:
            idx = chunk_index(s.mask, self.n)
        return pool_by_index(q, idx, s.weights(), self.n)

    def macs(self, n_tok: int, d: int) -> int:
        return 0 if self.pooling == "learned" else pool_macs(n_tok, d)


def agent_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, agents: torch.Tensor,
                    agent_mask: torch.Tensor, key_mask: torch.Tensor, key_size: torch.Tensor | None = None,
                    broadcast_scale: float = 1.0, biases: tuple[torch.Tensor, torch.Tensor] | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The two SDPA steps (all (B, h, ·, d_h)): V_A = σ(A Kᵀ + B₁)V over valid keys (log-size bias
    for merged keys), then O = σ(Q Aᵀ·broadcast_scale + B₂)V_A over valid agents. Returns (O, V_A).

    ``broadcast_scale`` multiplies the broadcast logits (AgentSD's k_scale2 temperature: < 1 flattens
    the broadcast); an empty agent's V_A is zero and it is masked out of the broadcast. ``biases``
    are the agent position biases (B₁, B₂) of a grid stream, or None."""
    agg_bias, bcast_bias = biases if biases is not None else (None, None)
    values = attend(agents, k, v, key_mask, key_size, agg_bias)
    keys = agents if broadcast_scale == 1.0 else agents * broadcast_scale
    return attend(q, keys, values, agent_mask, bias=bcast_bias), values


def agent_core_macs(n_q: int, n_k: int, n_agents: int, d: int) -> int:
    """Aggregation (n × N_k) plus broadcast (N_q × n), scores and weighted sums."""
    return attention_core_macs(n_agents, n_k, d) + attention_core_macs(n_q, n_agents, d)


class FFN(nn.Module):
    """Pre-norm residual MLP (GELU); ``mlp_ratio=0`` disables it. Padded tokens stay zero."""

    def __init__(self, d: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(round(d * mlp_ratio))
        self.mlp_ratio = mlp_ratio
        self.net = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d)) if hidden else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.net is not None:
            x = x + self.net(x)
        return zero_padded(x, mask)

    def macs(self, n: int, d: int) -> int:
        return ffn_macs(n, d, self.mlp_ratio) if self.net is not None else 0


# ------------------------------------------------------------------------------ blocks
class AgentSelfBlock(nn.Module):
    """Pre-norm agent self-attention block over one token set (a stream or a concatenation):
    x + W_o·(AgentAttn(LN x) + DWC(V)) with agents pooled from the queries; then the FFN.

    With a ``grid`` the block can add Han et al.'s DWC term and agent position biases (grid.py);
    the tokens' ``pos`` places them on it."""

    def __init__(self, d: int, heads: int, agents: int, pooling: Pooling, mlp_ratio: float, where: str,
                 grid: tuple[int, ...] | None = None, dwc: bool = False, agent_bias: bool = False) -> None:
        super().__init__()
        self.d, self.h, self.n, self.where = d, heads, agents, where
        self.norm = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.pool = AgentPool(d, agents, pooling, where)
        self.grid = check_grid(grid, where) if (dwc or agent_bias) else None
        self.dwc = GridDWC(d, self.grid) if dwc else None
        self.bias = GridAgentBias(heads, agents, self.grid) if agent_bias else None
        self.out = nn.Linear(d, d)
        self.ffn = FFN(d, mlp_ratio)

    def forward(self, s: StreamTokens) -> tuple[StreamTokens, dict[str, torch.Tensor]]:
        x = zero_padded(s.x, s.mask)
        q, k, v = self.qkv(self.norm(x)).chunk(3, -1)
        agents, agent_mask = self.pool(q, s)
        cells = grid_cells(s.pos, s.mask, self.grid, self.where) if self.grid is not None else None
        biases = self.bias(cells) if self.bias is not None else None
        o, values = agent_attention(split_heads(q, self.h), split_heads(k, self.h), split_heads(v, self.h),
                                    split_heads(agents, self.h), agent_mask, s.mask, s.size, biases=biases)
        o = merge_heads(o)
        if self.dwc is not None:
            o = o + self.dwc(v, cells, s.mask)
        x = self.ffn(x + self.out(o), s.mask)
        return StreamTokens(x, s.mask, s.size, s.pos, s.kind), {"agents": agents, "agent_mask": agent_mask,
                                                                 "agent_values": merge_heads(values)}

    def macs(self, n_tok: int) -> int:
        d = self.d
        return (linear_macs(n_tok, d, 3 * d) + self.pool.macs(n_tok, d) + agent_core_macs(n_tok, n_tok, self.n, d)
                + (self.dwc.macs() if self.dwc is not None else 0) + linear_macs(n_tok, d, d) + self.ffn.macs(n_tok, d))


# ---------------------------------------------------------------------------- variants
@register_fusion("v3", "agent_self", aliases=("per_stream_agent",))
class PerStreamAgentAttention(Fusion):
    """V3: one agent self-attention block stack per stream, no cross-stream link (RefAtomNet's
    ``m_3``); pooled = mean over the present streams of their masked means. Isolates the agent
    bottleneck from fusion: the video tokens never see text or location.

    dwc, agent_bias  Han et al.'s depthwise-conv term and agent position biases on the video
                     stream (text and location have no grid); they need ``video_grid``, which the
                     fusion_model adapter fills in from its video encoder."""

    accepts_video_grid = True

    def __init__(self, d: int, streams: tuple[str, ...] = ("video", "text", "loc"),
                 query_stream: str = "video", layers: int = 1, heads: int = 4, agents: int = 16,
                 pooling: Pooling = "auto", mlp_ratio: float = 4.0, dwc: bool = False,
                 agent_bias: bool = False, video_grid: tuple[int, ...] | None = None) -> None:
        super().__init__(d, streams, query_stream)
        check_common(self.variant_id, d, layers, heads, agents)
        where = f"fusion {self.variant_id}"
        if (dwc or agent_bias) and "video" not in self.streams:
            raise FusionError(f"{where}: dwc/agent_bias apply to the video stream, which is not among {self.streams}")
        self.blocks = nn.ModuleDict({
            s: nn.ModuleList(AgentSelfBlock(d, heads, agents, pooling, mlp_ratio, where, video_grid,
                                            dwc and s == "video", agent_bias and s == "video")
                             for _ in range(layers)) for s in self.streams})

    def forward(self, streams: dict[str, StreamTokens]) -> FusionOutput:
        parts = self.check(streams)
        outs, aux = [], {}
        for s in parts:
            for block in self.blocks[s.kind]:
                s, aux[s.kind] = block(s)
            outs.append(s)
        pooled = average_present([pool_stream(s) for s in outs], [s.mask.any(1) for s in outs])
        return FusionOutput(torch.cat([s.x for s in outs], 1), torch.cat([s.mask for s in outs], 1), pooled,
                            {"agents": {k: a["agents"] for k, a in aux.items()},
                             "agent_mask": {k: a["agent_mask"] for k, a in aux.items()}})

    def macs(self, shapes: dict[str, int]) -> int:
        n = self.check_shapes(shapes)
        return sum(sum(b.macs(v) for b in self.blocks[s]) + pool_macs(v, self.d) for s, v in n.items())


class AgentCrossBlock(nn.Module):
    """x_q + W_o·σ(Q Aᵀ)σ(A K_cᵀ)V_c, then the FFN: query tokens read the context through agents
    pooled from the queries (``source="query"``) or from a separate guide stream (``"guide"``)."""

    def __init__(self, d: int, heads: int, agents: int, pooling: Pooling, mlp_ratio: float,
                 source: Literal["query", "guide"], broadcast_scale: float, where: str) -> None:
        super().__init__()
        self.d, self.h, self.n, self.source, self.scale = d, heads, agents, source, broadcast_scale
        self.norm_q = nn.LayerNorm(d)
        self.norm_kv = nn.LayerNorm(d)
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        # guide tokens (text) live in another space than the video queries: their own projection
        self.agent_proj = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d)) if source == "guide" else None
        self.pool = AgentPool(d, agents, pooling, where)
        self.out = nn.Linear(d, d)
        self.ffn = FFN(d, mlp_ratio)

    def forward(self, x: StreamTokens, ctx: torch.Tensor, ctx_mask: torch.Tensor, ctx_size: torch.Tensor | None,
                guide: StreamTokens | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        xq = zero_padded(x.x, x.mask)
        q = self.q(self.norm_q(xq))
        k, v = self.kv(self.norm_kv(ctx)).chunk(2, -1)
        if self.agent_proj is not None:
            agents, agent_mask = self.pool(self.agent_proj(guide.valid_x()), guide)
        else:
            agents, agent_mask = self.pool(q, x)
        o, values = agent_attention(split_heads(q, self.h), split_heads(k, self.h), split_heads(v, self.h),
                                    split_heads(agents, self.h), agent_mask, ctx_mask, ctx_size, self.scale)
        y = self.ffn(xq + self.out(merge_heads(o)), x.mask)
        return y, {"agents": agents, "agent_mask": agent_mask}

    def macs(self, n_q: int, n_k: int, n_guide: int) -> int:
        d = self.d
        src = n_guide if self.agent_proj is not None else n_q
        total = linear_macs(n_q, d, d) + linear_macs(n_k, d, 2 * d) + self.pool.macs(src, d)
        if self.agent_proj is not None:
            total += linear_macs(n_guide, d, d)
        return total + agent_core_macs(n_q, n_k, self.n, d) + linear_macs(n_q, d, d) + self.ffn.macs(n_q, d)


@register_fusion("v4", "agent_cross", aliases=("agent_cross_attention",))
class AgentCrossAttention(Fusion):
    """V4: the query stream (video) reads the concatenated context (text + loc, type-embedded)
    through n agents: V4a takes the agents from the video queries, V4b (``agent_source="text"``)
    pools them from the text tokens, so the sentence decides what is gathered from the context.
    Only the query stream is updated and pooled, as in V2; cost is linear in N_v and N_c.

    broadcast_scale  multiplies the broadcast logits (AgentSD's k_scale2 idea; 1 = plain softmax)
    """

    def __init__(self, d: int, streams: tuple[str, ...] = ("video", "text", "loc"),
                 query_stream: str = "video", layers: int = 1, heads: int = 4, agents: int = 16,
                 agent_source: Literal["video", "text"] = "video", pooling: Pooling = "auto",
                 broadcast_scale: float = 1.0, mlp_ratio: float = 4.0) -> None:
        super().__init__(d, streams, query_stream)
        check_common(self.variant_id, d, layers, heads, agents)
        where = f"fusion {self.variant_id}"
        if not self.context_streams:
            raise FusionError(f"{where}: needs at least one context stream besides {query_stream!r}")
        if agent_source not in ("video", "text"):
            raise FusionError(f"{where}: agent_source must be 'video' or 'text', got {agent_source!r}")
        if agent_source == "text" and "text" not in self.context_streams:
            raise FusionError(f"{where}: agent_source='text' needs a 'text' context stream; streams={self.streams}")
        if agent_source == "video" and query_stream != "video":
            raise FusionError(f"{where}: agent_source='video' needs query_stream='video' (got {query_stream!r})")
        if broadcast_scale <= 0:
            raise FusionError(f"{where}: broadcast_scale must be > 0, got {broadcast_scale}")
        self.agent_source = agent_source
        self.type_embed = type_embedding(len(self.streams), d)
        source = "guide" if agent_source == "text" else "query"
        self.blocks = nn.ModuleList(AgentCrossBlock(d, heads, agents, pooling, mlp_ratio, source, broadcast_scale, where)
                                    for _ in range(layers))

    def forward(self, streams: dict[str, StreamTokens]) -> FusionOutput:
        self.check(streams)
        q = streams[self.query_stream]
        ctx = [streams[s] for s in self.context_streams]
        types = torch.stack([self.type_embed[self.streams.index(s)] for s in self.context_streams])
        c, c_mask, c_size = concat_streams(ctx, types)
        guide = streams["text"] if self.agent_source == "text" else None
        x = StreamTokens(zero_padded(q.x + self.type_embed[self.streams.index(self.query_stream)], q.mask),
                         q.mask, q.size, q.pos, q.kind)
        aux = {}
        for block in self.blocks:
            y, aux = block(x, c, c_mask, c_size, guide)
            x = StreamTokens(y, x.mask, x.size, x.pos, x.kind)
        return FusionOutput(x.x, x.mask, pool_stream(x), aux)

    def macs(self, shapes: dict[str, int]) -> int:
        n = self.check_shapes(shapes)
        nq, nc = n[self.query_stream], sum(n[s] for s in self.context_streams)
        return sum(b.macs(nq, nc, n.get("text", 0)) for b in self.blocks) + pool_macs(nq, self.d)


class AgentExchangeLayer(nn.Module):
    """One V6 layer: per stream qkv + own agents + V_A; readers broadcast over the agent union."""

    def __init__(self, d: int, streams: tuple[str, ...], heads: int, agents: int, pooling: Pooling,
                 mlp_ratio: float, readers: tuple[str, ...], where: str) -> None:
        super().__init__()
        self.d, self.h, self.n, self.streams, self.readers = d, heads, agents, streams, readers
        self.norm = nn.ModuleDict({s: nn.LayerNorm(d) for s in streams})
        self.qkv = nn.ModuleDict({s: nn.Linear(d, 3 * d) for s in streams})
        self.pool = nn.ModuleDict({s: AgentPool(d, agents, pooling, where) for s in streams})
        self.out = nn.ModuleDict({s: nn.Linear(d, d) for s in streams})
        self.ffn = nn.ModuleDict({s: FFN(d, mlp_ratio) for s in streams})

    def forward(self, parts: list[StreamTokens]) -> tuple[list[StreamTokens], dict[str, torch.Tensor]]:
        h = self.h
        qs, own = {}, {}
        for s in parts:
            q, k, v = self.qkv[s.kind](self.norm[s.kind](zero_padded(s.x, s.mask))).chunk(3, -1)
            agents, a_mask = self.pool[s.kind](q, s)
            a = split_heads(agents, h)
            own[s.kind] = (a, a_mask, attend(a, split_heads(k, h), split_heads(v, h), s.mask, s.size))
            qs[s.kind] = split_heads(q, h)
        union = (torch.cat([own[s][0] for s in self.streams], 2), torch.cat([own[s][1] for s in self.streams], 1),
                 torch.cat([own[s][2] for s in self.streams], 2))
        outs = []
        for s in parts:
            a, a_mask, values = union if s.kind in self.readers else own[s.kind]
            o = attend(qs[s.kind], a, values, a_mask)
            x = self.ffn[s.kind](zero_padded(s.x, s.mask) + self.out[s.kind](merge_heads(o)), s.mask)
            outs.append(StreamTokens(x, s.mask, s.size, s.pos, s.kind))
        return outs, {"agents": {k: merge_heads(v[0]) for k, v in own.items()},
                      "agent_mask": {k: v[1] for k, v in own.items()}}

    def macs(self, n: dict[str, int]) -> int:
        d, total = self.d, 0
        n_union = self.n * len(self.streams)
        for s, v in n.items():
            n_read = n_union if s in self.readers else self.n
            total += (linear_macs(v, d, 3 * d) + self.pool[s].macs(v, d) + attention_core_macs(self.n, v, d)
                      + attention_core_macs(v, n_read, d) + linear_macs(v, d, d) + self.ffn[s].macs(v, d))
        return total


@register_fusion("v6", "agent_exchange", aliases=("agent_union",))
class AgentExchange(Fusion):
    """V6: every stream aggregates its own agents (A_s, V_A,s); the query stream's tokens
    (``exchange="video"``) or every stream's (``"all"``) broadcast over the union [A_v; A_t; A_l]
    with values [V_A,v; V_A,t; V_A,l] (empty agents masked); the other streams broadcast over their
    own agents (as V3), so they are updated too. An explicit, cheap cross-stream path: cost
    Σ_s(4N_s d² + 2nN_s d) + 2·S·n·N_v·d + 2·n·N_s·d per non-reader stream (+ FFN).
    pooled = mean of the per-stream masked means."""

    def __init__(self, d: int, streams: tuple[str, ...] = ("video", "text", "loc"),
                 query_stream: str = "video", layers: int = 1, heads: int = 4, agents: int = 16,
                 pooling: Pooling = "auto", exchange: Literal["video", "all"] = "video",
                 mlp_ratio: float = 4.0) -> None:
        super().__init__(d, streams, query_stream)
        check_common(self.variant_id, d, layers, heads, agents)
        if exchange not in ("video", "all"):
            raise FusionError(f"fusion {self.variant_id}: exchange must be 'video' or 'all', got {exchange!r}")
        readers = self.streams if exchange == "all" else (self.query_stream,)
        where = f"fusion {self.variant_id}"
        self.layers = nn.ModuleList(AgentExchangeLayer(d, self.streams, heads, agents, pooling, mlp_ratio, readers, where)
                                    for _ in range(layers))

    def forward(self, streams: dict[str, StreamTokens]) -> FusionOutput:
        parts = self.check(streams)
        aux = {}
        for layer in self.layers:
            parts, aux = layer(parts)
        pooled = average_present([pool_stream(s) for s in parts], [s.mask.any(1) for s in parts])
        return FusionOutput(torch.cat([s.x for s in parts], 1), torch.cat([s.mask for s in parts], 1), pooled, aux)

    def macs(self, shapes: dict[str, int]) -> int:
        n = self.check_shapes(shapes)
        return sum(layer.macs(n) for layer in self.layers) + sum(pool_macs(v, self.d) for v in n.values())


@register_fusion("v6b", "shared_agents", aliases=("agent_bottleneck",))
class SharedAgents(Fusion):
    """V6b: one agent set for all streams (MBT-style bottleneck at linear cost). Agents are pooled
    (masked, ``chunk``) from the type-embedded concatenation of every stream's queries, or
    ``learned``; they aggregate all keys and broadcast back to every token, so the n agents are the
    only channel between tokens. pooled = masked (size-weighted) mean of all output tokens."""

    def __init__(self, d: int, streams: tuple[str, ...] = ("video", "text", "loc"),
                 query_stream: str = "video", layers: int = 1, heads: int = 4, agents: int = 16,
                 pooling: Literal["chunk", "learned"] = "chunk", mlp_ratio: float = 4.0) -> None:
        super().__init__(d, streams, query_stream)
        check_common(self.variant_id, d, layers, heads, agents)
        if pooling not in ("chunk", "learned"):
            raise FusionError(f"fusion {self.variant_id}: pooling must be 'chunk' or 'learned' (the concatenation "
                              f"has no common grid), got {pooling!r}")
        self.type_embed = type_embedding(len(self.streams), d)
        where = f"fusion {self.variant_id}"
        self.blocks = nn.ModuleList(AgentSelfBlock(d, heads, agents, pooling, mlp_ratio, where) for _ in range(layers))

    def forward(self, streams: dict[str, StreamTokens]) -> FusionOutput:
        parts = self.check(streams)
        x, mask, size = concat_streams(parts, self.type_embed)
        s = StreamTokens(x, mask, size, None, self.query_stream)
        aux = {}
        for block in self.blocks:
            s, aux = block(s)
        return FusionOutput(s.x, s.mask, masked_pool(s.x, s.weights()), aux)

    def macs(self, shapes: dict[str, int]) -> int:
        n = sum(self.check_shapes(shapes).values())
        return sum(b.macs(n) for b in self.blocks) + pool_macs(n, self.d)


__all__ = [
    "POOLINGS", "type_embedding", "check_common", "split_heads", "merge_heads", "valid_rank", "chunk_index",
    "grid_index", "pool_by_index", "AgentPool", "agent_attention", "agent_core_macs", "FFN", "AgentSelfBlock",
    "AgentCrossBlock", "AgentExchangeLayer", "PerStreamAgentAttention", "AgentCrossAttention",
    "AgentExchange", "SharedAgents",
]
