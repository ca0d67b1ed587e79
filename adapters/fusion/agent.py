"""RefAtomNet's agent attention and its cross-stream fusion, CAAF + CATF (fusion.md §5, V5).

The released model (KPeng9510/RAVAR ``modules/our_best_model.py``, read not run; ravar-spec §5.3)
runs one agent-attention block per stream. Per block (pre-norm, d, h heads, n agents, no DWC, no
agent bias, scale d_h^-1/2):

    q, k, v = Linear(d → 3d, no bias)(LN x)
    A   = mean_tokens(MLP(q)) reshaped (h, n, d_h)     MLP = Linear(d, d/2)-GELU-Linear(d/2, n·d)
    M   = softmax_tokens(A kᵀ/√d_h)                    aggregation map (h, n, N), returned
    V_A = M' v            with M' = CAAF(M) on the query (video) block, else M
    O   = softmax_agents(q A'ᵀ/√d_h) V_A               with A' = CATF(A) on the query block, else A
    x   = x + Linear(O);  x = x + MLP(LN x)

CAAF: M' = (M⊙σ_tokens(S) + M⊙σ_?(S) + M)/3, S = Σ donor maps.
CATF: A' = (A⊙σ_channels(U) + A⊙σ_?(U) + A)/3, U = Σ donor agent tokens.
``mode`` picks σ_?:

* ``as_released`` — σ over dim 1, the size-1 head axis, which is identically 1 (a released quirk);
  no masks anywhere; sum aggregation with the *pre-agent* location tokens; the text stream is one
  sentence vector (mean over all tokens, padding included) copied to N tokens by Linear(1 → N).
* ``corrected``   — σ over the agent axis (the probable intent; fusion.md §5.4); masks honoured in
  every softmax and in agent pooling; averaged aggregation of the agent outputs (the location
  block's output is used); text keeps its word tokens (zero-padded, token-axis Linear).
* ``rescale_only`` — a control: the as-released pipeline, but CAAF/CATF replaced by their scale
  with a uniform gate and *no* cross-stream input: M' = M·(2 + 1/N)/3 and A' = A·(2 + 1/d_h)/3.
  A gain of ``as_released`` over this control is then attributable to cross-stream information.
* ``log_guided``  — a *strong* CAAF (fusion.md §5.4 (d)): the ``corrected`` pipeline, but the donor
  maps guide the aggregation in log space, M' = σ_tokens(A kᵀ/√d_h + λ·log σ_tokens(S)), a
  renormalised map that can move the agents' attention by orders of magnitude (λ learned, init
  ``guide_scale``). CATF is the corrected gate.

Both CAAF and CATF multiply elementwise across streams, so the streams must be of equal length and
index-aligned; the released code forces that with token-axis Linears (100 DETR slots → 32, one
sentence → 32). The fusion does the same, sized by ``max_tokens``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Union

import torch
from torch import nn

from .base import (
    Fusion, FusionError, FusionOutput, StreamTokens, attend, attention_core_macs, attention_probs,
    ffn_macs, linear_macs, masked_pool, masked_softmax, pool_macs, register_fusion, zero_padded,
)
from .basic import average_present

Mode = Literal["as_released", "corrected", "rescale_only", "log_guided"]
MODES = ("as_released", "corrected", "rescale_only", "log_guided")
Gate = Union[Callable[[torch.Tensor], torch.Tensor], float, None]


@dataclass
class AgentState:
    """What a block exposes to the other streams and to analysis.

    agg_map    (B, h, n, N) own aggregation weights before CAAF (None when SDPA computed them)
    fused_map  (B, h, n, N) weights actually used for V_A (None when not explicit)
    agents     (B, h, n, d_h) agent tokens used in the broadcast step (after CATF)
    agents_pre (B, h, n, d_h) agent tokens used in the aggregation step (before CATF)
    values     (B, h, n, d_h) V_A
    """

    agg_map: torch.Tensor | None
    fused_map: torch.Tensor | None
    agents: torch.Tensor
    agents_pre: torch.Tensor
    values: torch.Tensor


class AgentAttention(nn.Module):
    """RefAtomNet's agent attention: MLP-pooled agents, two softmax steps (SDPA unless the
    aggregation map itself is needed). ``masked=False`` reproduces the released code (no masks)."""

    def __init__(self, d: int, agents: int = 4, heads: int = 1, qkv_bias: bool = False,
                 masked: bool = True) -> None:
        super().__init__()
        if agents < 1:
            raise FusionError(f"agent attention: agents must be >= 1, got {agents}")
        if heads < 1 or d % heads:
            raise FusionError(f"agent attention: d={d} must be divisible by heads={heads}")
        self.d, self.n, self.h, self.masked = d, agents, heads, masked
        self.qkv = nn.Linear(d, 3 * d, bias=qkv_bias)
        self.pool = nn.Sequential(nn.Linear(d, d // 2), nn.GELU(), nn.Linear(d // 2, agents * d))
        self.proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, *, map_gate: Gate = None,
                agent_gate: Gate = None, map_bias: torch.Tensor | None = None,
                need_map: bool = False) -> tuple[torch.Tensor, AgentState]:
        """``map_gate`` rescales the aggregation map after the softmax (CAAF), ``map_bias``
        (B, h, n, N) is added to its logits before it (log-space guidance)."""
        b, n_tok, d = x.shape
        h, dh = self.h, d // self.h
        q, k, v = self.qkv(x).chunk(3, -1)
        pooled = self.pool(q)  # (B, N, n·d): the MLP runs per token, then tokens are averaged
        pooled = masked_pool(pooled, mask) if self.masked else pooled.mean(1)
        # n·d values per sample laid out (n, h, d_h); for h = 1 this is the released (1, n, d) reshape
        agents = pooled.view(b, self.n, h, dh).transpose(1, 2)
        q, k, v = (t.view(b, n_tok, h, dh).transpose(1, 2) for t in (q, k, v))
        key_mask = mask if self.masked else None

        agg_map = fused_map = None
        if need_map or callable(map_gate):
            agg_map = attention_probs(agents, k, key_mask)  # (B, h, n, N)
            fused_map = agg_map
            if map_bias is not None:
                fused_map = attention_probs(agents, k, key_mask, map_bias)
            if callable(map_gate):
                fused_map = map_gate(fused_map)
            values = fused_map @ v
        else:
            values = attend(agents, k, v, key_mask, bias=map_bias)  # SDPA: agents aggregate the keys/values
        if isinstance(map_gate, float):  # a constant gate commutes with the weighted sum
            values = values * map_gate
            fused_map = None if fused_map is None else fused_map * map_gate

        if callable(agent_gate):
            broadcast = agent_gate(agents)
        elif isinstance(agent_gate, float):
            broadcast = agents * agent_gate
        else:
            broadcast = agents
        out = attend(q, broadcast, values)  # SDPA: queries read the agents (agents are never padded)
        out = self.proj(out.transpose(1, 2).reshape(b, n_tok, d))
        return out, AgentState(agg_map, fused_map, broadcast, agents, values)

    def macs(self, n_tok: int) -> int:
        d, n = self.d, self.n
        return (linear_macs(n_tok, d, 3 * d) + linear_macs(n_tok, d, d // 2)
                + linear_macs(n_tok, d // 2, n * d) + pool_macs(n_tok, n * d)
                + attention_core_macs(n, n_tok, d) + attention_core_macs(n_tok, n, d)
                + linear_macs(n_tok, d, d))


class AgentBlock(nn.Module):
    """Pre-norm block: x + AgentAttention(LN x); x + MLP(LN x) (GELU, hidden mlp_ratio·d).
    With ``masked=True`` padded tokens leave as zeros."""

    def __init__(self, d: int, agents: int = 4, heads: int = 1, mlp_ratio: float = 4.0,
                 qkv_bias: bool = False, masked: bool = True) -> None:
        super().__init__()
        self.masked, self.mlp_ratio = masked, mlp_ratio
        self.norm1 = nn.LayerNorm(d)
        self.attn = AgentAttention(d, agents, heads, qkv_bias, masked)
        self.norm2 = nn.LayerNorm(d)
        hidden = int(round(d * mlp_ratio))
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, **gates) -> tuple[torch.Tensor, AgentState]:
        if self.masked:
            x = zero_padded(x, mask)
        y, state = self.attn(self.norm1(x), mask, **gates)
        x = x + y
        x = x + self.mlp(self.norm2(x))
        return (zero_padded(x, mask) if self.masked else x), state

    def macs(self, n_tok: int) -> int:
        return self.attn.macs(n_tok) + ffn_macs(n_tok, self.attn.d, self.mlp_ratio)


@register_fusion("v5", "refatomnet", aliases=("agent", "caaf", "agent_fusion"))
class RefAtomNetFusion(Fusion):
    """V5: RefAtomNet's per-stream agent blocks with CAAF + CATF into the query (video) block.

    tokens      common stream length after the token-axis Linears (the released N = 32); None
                skips alignment (then all streams must already have equal length)
    max_tokens  each stream's maximum input length (sizes the token-axis Linears; streams are
                zero-padded up to it, so padding never changes the output in ``corrected`` mode)
    keep_maps   compute every aggregation map explicitly and return it in ``aux`` (analysis)
    """

    needs_max_tokens = True

    def __init__(self, d: int, streams: tuple[str, ...] = ("video", "text", "loc"),
                 query_stream: str = "video", mode: Mode = "corrected", agents: int = 4,
                 heads: int = 1, caaf: bool = True, catf: bool = True, tokens: int | None = 32,
                 max_tokens: dict[str, int] | None = None, mlp_ratio: float = 4.0,
                 qkv_bias: bool = False, keep_maps: bool = False, guide_scale: float = 1.0) -> None:
        super().__init__(d, streams, query_stream)
        where = f"fusion {self.variant_id}"
        if mode not in MODES:
            raise FusionError(f"{where}: mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.released = mode in ("as_released", "rescale_only")
        if self.released and heads != 1:
            raise FusionError(f"{where}: mode {mode!r} needs heads=1 (the released agent MLP output is "
                              f"reshaped as if h = 1); use mode='corrected' for heads={heads}")
        if tokens is not None and tokens < 1:
            raise FusionError(f"{where}: tokens must be >= 1 or None, got {tokens}")
        if guide_scale != 1.0 and mode != "log_guided":
            raise FusionError(f"{where}: guide_scale applies to mode='log_guided' only (got mode={mode!r})")
        if tokens is None and self.released:
            raise FusionError(f"{where}: mode {mode!r} needs tokens (the released text stream is one "
                              "sentence vector projected to N tokens)")
        self.mode, self.caaf, self.catf, self.tokens = mode, caaf, catf, tokens
        self.keep_maps, self.n_agents, self.heads = keep_maps, agents, heads
        # λ of log_guided: learned, so training decides how strongly the donors steer the video agents
        self.guide_scale = nn.Parameter(torch.tensor(float(guide_scale))) if mode == "log_guided" else None
        self.blocks = nn.ModuleDict({s: AgentBlock(d, agents, heads, mlp_ratio, qkv_bias, masked=not self.released)
                                     for s in self.streams})
        self.align = nn.ModuleDict()
        self.max_tokens: dict[str, int] = {}
        if tokens is not None:
            for s in self.streams:
                if s == "text" and self.released:
                    # quirk: the released text stream is ONE sentence vector; Linear(1 → N) along
                    # the token axis makes N affine copies of it so the maps can be combined
                    self.align[s] = nn.Linear(1, tokens)
                    continue
                n_in = (max_tokens or {}).get(s)
                if not isinstance(n_in, int) or n_in < 1:
                    raise FusionError(f"{where}: max_tokens[{s!r}] (the stream's maximum length) is required "
                                      f"to size its token-axis Linear; got max_tokens={max_tokens!r}")
                self.max_tokens[s] = n_in
                if not (s == "video" and n_in == tokens):  # Q-Former video tokens are used as they are
                    self.align[s] = nn.Linear(n_in, tokens)

    # ------------------------------------------------------------------------- alignment
    def _align(self, s: StreamTokens) -> tuple[torch.Tensor, torch.Tensor]:
        """Bring a stream to ``tokens`` index-aligned tokens; returns x (B, N, d) and mask (B, N)."""
        name, b = s.kind, s.x.shape[0]
        if self.tokens is None:  # corrected / log_guided only
            return s.valid_x(), s.mask
        if name == "text" and self.released:
            # quirk: mean over ALL token slots, padding included, no mask (as released)
            sentence = s.x.mean(1, keepdim=True)
            x = _token_linear(self.align[name], sentence)
            return x, torch.ones(b, self.tokens, dtype=torch.bool, device=x.device)
        n_in = self.max_tokens[name]
        x, mask = (s.x, s.mask) if self.released else (s.valid_x(), s.mask)  # released: no masks
        if x.shape[1] > n_in:
            if bool(mask[:, n_in:].any()):
                raise FusionError(f"fusion {self.variant_id}: stream {name!r} has valid tokens beyond "
                                  f"max_tokens[{name!r}]={n_in}")
            x, mask = x[:, :n_in], mask[:, :n_in]
        elif x.shape[1] < n_in:
            x = torch.cat([x, x.new_zeros(b, n_in - x.shape[1], x.shape[2])], 1)
            mask = torch.cat([mask, mask.new_zeros(b, n_in - mask.shape[1])], 1)
        if name in self.align:
            x = _token_linear(self.align[name], x)
            # each aligned slot mixes all input tokens: it is valid iff the stream has any token
            mask = mask.any(1, keepdim=True).expand(b, self.tokens)
        if self.released:
            mask = torch.ones_like(mask)  # quirk: no masks anywhere in the released model
        return x, mask

    # --------------------------------------------------------------------------- gates
    def _map_gate(self, donors: list[AgentState], key_mask: torch.Tensor, n_keys: int) -> Gate:
        if not (self.caaf and donors) or self.mode == "log_guided":
            return None
        if self.mode == "rescale_only":
            return (2.0 + 1.0 / n_keys) / 3.0  # σ_tokens of a uniform S is 1/N; no donor input
        s = torch.stack([st.agg_map for st in donors]).sum(0)  # (B, h, n, N)
        if self.released:
            g_tok = torch.softmax(s, -1)
            g_other = torch.softmax(s, 1)  # quirk: dim 1 is the size-1 head axis, so this is ≡ 1
        else:
            g_tok = masked_softmax(s, key_mask[:, None, None, :], -1)
            g_other = torch.softmax(s, -2)  # the agent axis (n = 1 makes this ≡ 1 too)
        return lambda m: (m * g_tok + m * g_other + m) / 3.0  # not renormalised, as released

    def _map_bias(self, donors: list[AgentState], key_mask: torch.Tensor) -> torch.Tensor | None:
        """log_guided: λ·log σ_tokens(S) added to the video block's aggregation logits."""
        if not (self.caaf and donors) or self.mode != "log_guided":
            return None
        s = torch.stack([st.agg_map for st in donors]).sum(0)  # (B, h, n, N)
        g = masked_softmax(s, key_mask[:, None, None, :], -1)
        return self.guide_scale * torch.log(g.clamp_min(1e-12))  # padded keys are masked anyway

    def _agent_gate(self, donors: list[AgentState], dh: int) -> Gate:
        if not (self.catf and donors):
            return None
        if self.mode == "rescale_only":
            return (2.0 + 1.0 / dh) / 3.0  # σ_channels of a uniform U is 1/d_h; no donor input
        u = torch.stack([st.agents for st in donors]).sum(0)  # (B, h, n, d_h)
        g_ch = torch.softmax(u, -1)
        g_other = torch.softmax(u, 1) if self.released else torch.softmax(u, -2)  # released: ≡ 1
        return lambda a: (a * g_ch + a * g_other + a) / 3.0

    # ------------------------------------------------------------------------- forward
    def forward(self, streams: dict[str, StreamTokens]) -> FusionOutput:
        parts = {s.kind: s for s in self.check(streams)}
        aligned = {name: self._align(s) for name, s in parts.items()}
        lengths = {name: x.shape[1] for name, (x, _) in aligned.items()}
        if len(set(lengths.values())) != 1:
            raise FusionError(f"fusion {self.variant_id}: CAAF/CATF need streams of equal length; got "
                              f"{lengths} (set tokens= to align them)")
        donor_maps = self.keep_maps or (self.caaf and self.mode != "rescale_only")
        outs: dict[str, torch.Tensor] = {}
        states: dict[str, AgentState] = {}
        for name in self.context_streams:  # the donors (loc, text) run first, as released
            x, m = aligned[name]
            outs[name], states[name] = self.blocks[name](x, m, need_map=donor_maps)
        q = self.query_stream
        xq, mq = aligned[q]
        donors = [states[s] for s in self.context_streams]
        outs[q], states[q] = self.blocks[q](
            xq, mq, map_gate=self._map_gate(donors, mq, xq.shape[1]), map_bias=self._map_bias(donors, mq),
            agent_gate=self._agent_gate(donors, self.d // self.heads), need_map=self.keep_maps)

        if self.released:
            # quirk: SUM (not average) of stream means; the location term uses the PRE-agent
            # tokens (input rows, zeroed non-person rows counted), the location block's output
            # is discarded (it only donates its map and agents)
            terms = [parts[s].x.mean(1) if s == "loc" else outs[s].mean(1) for s in self.streams]
            pooled = torch.stack(terms, 0).sum(0)
        else:
            pools = [masked_pool(outs[s], aligned[s][1]) for s in self.streams]
            pooled = average_present(pools, [aligned[s][1].any(1) for s in self.streams])
        tokens = torch.cat([outs[s] for s in self.streams], 1)
        mask = torch.cat([aligned[s][1] for s in self.streams], 1)
        aux = {
            "maps": {s: st.agg_map for s, st in states.items()},
            "fused_map": states[q].fused_map,
            "agents": {s: st.agents for s, st in states.items()},
            "agents_pre": {s: st.agents_pre for s, st in states.items()},
            "agent_values": {s: st.values for s, st in states.items()},
            "outputs": outs,
            "aligned": {s: x for s, (x, _) in aligned.items()},
        }
        return FusionOutput(tokens, mask, pooled, aux)

    def macs(self, shapes: dict[str, int]) -> int:
        n = self.check_shapes(shapes)
        total = 0
        for s, n_in in n.items():
            n_tok = self.tokens if self.tokens is not None else n_in
            if self.tokens is not None:
                if s == "text" and self.released:
                    total += pool_macs(n_in, self.d) + linear_macs(self.d, 1, n_tok)
                elif not (s == "video" and n_in == n_tok):
                    total += linear_macs(self.d, n_in, n_tok)
            total += self.blocks[s].macs(n_tok)
            total += pool_macs(n_in if (self.released and s == "loc") else n_tok, self.d)
        return total


def _token_linear(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """Apply a Linear along the token axis: (B, N_in, d) -> (B, N_out, d)."""
    return torch.einsum("bnd,mn->bmd", x, layer.weight) + layer.bias[None, :, None]


__all__ = ["Mode", "MODES", "AgentState", "AgentAttention", "AgentBlock", "RefAtomNetFusion"]
