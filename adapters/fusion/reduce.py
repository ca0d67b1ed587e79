"""V7: token reduction before fusion (fusion.md §2 MCTF, §3 ToMe, §4 PiToMe, §6.2 V7).

A :class:`Reducer` shrinks one stream (the video tokens, optionally the location tokens) before a
fusion variant runs, so the fusion is paid at N' < N tokens:

* V7a ``tome``   — ToMe bipartite soft matching: valid tokens split alternately into A/B, each a ∈ A
                   takes its most cosine-similar b ∈ B, the r best edges merge (size-weighted mean).
* V7b ``mctf``   — MCTF's multi-criteria score W = sim · info^(1/20) · size^(1/40) with
                   bidirectional matching (⌊r/2⌋ A→B, then the rest B→A); informativeness comes from
                   **text→video cross-attention** (mean attention a video token receives from the
                   valid words), not self-attention, so tokens the sentence ignores merge first;
                   groups pool with attention×size weights.
* V7c ``pitome`` — PiToMe: energy E_i = mean_j ELU_m(cos_ij) over valid tokens; the 2r most
                   redundant (highest energy) are mergeable, split alternately, and every one of
                   their A half merges into its best B partner; low-energy (unique) tokens are kept.
* V7d ``topk``   — text-guided top-k keep (a control without merging): keep the tokens most
                   cosine-similar to any valid word, drop the rest.

Rules (fusion.md §6.1, 3–4): matching never selects a padded token (its score is −∞, it is never in
A, B or the energy mean); a batch keeps one token count: each sample removes r_b of its own L_b
valid tokens (r_b from ``keep``, so padding never changes a sample's result) and the output has
N − min_b r_b slots, padded where a sample removed more. Surviving tokens keep their relative
order, so order-dependent consumers (chunked agent pooling) see the same sequence. Merge decisions
are made under no_grad; the merged values are differentiable. Before fusion there are no attention
keys, so the matching metric is the token itself (MCTF's choice; ToMe uses keys inside a ViT).

:func:`target_tokens` and :func:`target_survival` measure whether the referred person's tokens
(those whose position lies in the GT box) survived: a target token survives when the output token
it ended in is made mostly (``purity``) of target tokens, by size.
"""
from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .base import (
    Fusion, FusionError, FusionOutput, StreamTokens, attention_probs, build_fusion, fusion_spec,
    linear_macs, pool_macs, register_fusion,
)
from .zoo_agent import split_heads, valid_rank

ReducerName = Literal["tome", "mctf", "pitome", "topk"]


@dataclass
class Reduced:
    """A reduced stream and where every input token went.

    dest  long (B, N_in): output slot that input token i was merged into (or kept as);
          −1 for padded and dropped tokens."""

    stream: StreamTokens
    dest: torch.Tensor


# ------------------------------------------------------------------------------- helpers
def members(sel: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (B, width) of the tokens where ``sel`` is True, in their original order, padded with
    other (unselected) indices; and the validity of each slot (B, width)."""
    n = sel.shape[1]
    ar = torch.arange(n, device=sel.device).expand_as(sel)
    idx = torch.argsort(torch.where(sel, ar, ar + n), dim=1, stable=True)[:, :width]
    return idx, sel.gather(1, idx)


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity matrix (B, Na, Nb) between token sets (B, Na, d) and (B, Nb, d)."""
    return F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).transpose(1, 2)


def gather_tokens(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return x.gather(1, idx[..., None].expand(-1, -1, x.shape[-1]))


def assign(dest: torch.Tensor, idx: torch.Tensor, targets: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """dest[b, idx[b, j]] = targets[b, j] where ``chosen``; other entries unchanged. ``idx`` must hold
    distinct indices per row (members() guarantees it)."""
    return dest.scatter(1, idx, torch.where(chosen, targets, dest.gather(1, idx)))


def merge_by_dest(s: StreamTokens, dest: torch.Tensor, weights: torch.Tensor, n_out: int) -> Reduced:
    """Apply a resolved merge/drop map. ``dest`` (B, N): the input index each token merges into
    (itself for survivors, −1 to drop; roots must map to themselves). Values are ``weights``-weighted
    means of their group, sizes add, positions are size-weighted centroids; survivors are packed
    in their original order into ``n_out`` slots."""
    b, n, d = s.x.shape
    ar = torch.arange(n, device=s.x.device).expand(b, n)
    alive = s.mask & (dest >= 0)
    to = torch.where(alive, dest, ar)  # padded/dropped tokens scatter zero weight onto themselves
    size = s.size[..., 0] if s.size is not None else s.x.new_ones(b, n)
    w = torch.where(alive, weights.to(s.x.dtype), torch.zeros_like(size))
    sz = torch.where(alive, size, torch.zeros_like(size))
    num = torch.zeros_like(s.x).scatter_add(1, to[..., None].expand(-1, -1, d), s.x * w[..., None])
    den = w.new_zeros(b, n).scatter_add(1, to, w)
    new_size = sz.new_zeros(b, n).scatter_add(1, to, sz)
    keep = alive & (dest == ar)
    order = torch.argsort(torch.where(keep, ar, ar + n), dim=1, stable=True)[:, :n_out]
    out_mask = keep.gather(1, order)
    x = gather_tokens(num, order) / den.gather(1, order).clamp_min(1e-12)[..., None]
    x = x * out_mask[..., None].to(x.dtype)
    out_size = torch.where(out_mask, new_size.gather(1, order), torch.ones_like(den[:, :n_out]))
    pos = None
    if s.pos is not None:
        p = s.pos.shape[-1]
        pnum = torch.zeros_like(s.pos).scatter_add(1, to[..., None].expand(-1, -1, p), s.pos * sz[..., None].to(s.pos.dtype))
        pos = gather_tokens(pnum, order) / new_size.gather(1, order).clamp_min(1e-12)[..., None].to(s.pos.dtype)
        pos = pos * out_mask[..., None].to(pos.dtype)
    slot = torch.full_like(dest, -1).scatter(1, order, torch.arange(n_out, device=dest.device).expand(b, n_out))
    slot = torch.where(out_mask.new_zeros(b, n).scatter(1, order, out_mask), slot, torch.full_like(slot, -1))
    final = torch.where(alive, slot.gather(1, to), torch.full_like(dest, -1))
    return Reduced(StreamTokens(x, out_mask, out_size[..., None], pos, s.kind), final)


# ------------------------------------------------------------------------------- reducers
class Reducer(nn.Module, metaclass=abc.ABCMeta):
    """Reduces a stream to about ``keep`` of its valid tokens (per sample: r_b = L_b − ⌈keep·L_b⌉
    removed). Bipartite methods remove at most half of the valid tokens in one step."""

    name: ClassVar[str] = ""
    max_removed: ClassVar[float] = 0.5  # ToMe/MCTF/PiToMe cap r at 50% per step
    needs_guide: ClassVar[bool] = False

    def __init__(self, d: int, keep: float = 0.5) -> None:
        super().__init__()
        lo = 1.0 - self.max_removed
        if not (lo <= keep <= 1.0) or keep <= 0:
            raise FusionError(f"reducer {self.name}: keep must be in [{lo}, 1] (one step removes at most "
                              f"{self.max_removed:.0%} of the valid tokens) and > 0, got {keep}")
        self.d, self.keep = d, keep

    def removals(self, mask: torch.Tensor) -> torch.Tensor:
        """Tokens r_b (B,) each sample removes, from its own valid count only."""
        count = mask.sum(1)
        kept = torch.ceil(count.double() * self.keep).long()
        return (count - kept).clamp(min=0, max=None).minimum(torch.floor(count.double() * self.max_removed).long())

    def out_tokens(self, n: int) -> int:
        """Output length for an all-valid stream of ``n`` tokens."""
        return n - min(n - math.ceil(n * self.keep), math.floor(n * self.max_removed))

    def forward(self, s: StreamTokens, guide: StreamTokens | None = None) -> Reduced:
        if self.needs_guide and guide is None:
            raise FusionError(f"reducer {self.name}: needs a guide stream (the text) to score the {s.kind!r} tokens")
        r = self.removals(s.mask)
        n_out = s.num_tokens - int(r.min()) if r.numel() else s.num_tokens
        return self.reduce(s, guide, r, n_out)

    @abc.abstractmethod
    def reduce(self, s: StreamTokens, guide: StreamTokens | None, r: torch.Tensor, n_out: int) -> Reduced:
        """Reduce with per-sample removal counts ``r`` into ``n_out`` slots."""

    @abc.abstractmethod
    def macs(self, n: int, n_guide: int = 0) -> int:
        """Matching + merging MACs per sample for an all-valid stream of ``n`` tokens."""


def _bipartite(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Alternate split of the valid tokens by rank: A = even ranks, B = odd ranks (ToMe Tab. 1e)."""
    rank, _ = valid_rank(mask)
    n = mask.shape[1]
    a_idx, a_ok = members(mask & (rank % 2 == 0), (n + 1) // 2)
    b_idx, b_ok = members(mask & (rank % 2 == 1), max(n // 2, 1))
    return a_idx, a_ok, b_idx, b_ok


def _top_edges(score: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """For rows' best scores (B, Na), mark the r_b highest (stable, ties by position)."""
    order = torch.argsort(score, dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(score.shape[1], device=score.device).expand_as(order))
    return (rank < r[:, None]) & torch.isfinite(score)


class ToMe(Reducer):
    """V7a: ToMe bipartite soft matching + size-weighted merge (Bolya et al., ICLR 2023)."""

    name = "tome"

    def reduce(self, s, guide, r, n_out):
        a_idx, a_ok, b_idx, b_ok = _bipartite(s.mask)
        with torch.no_grad():
            sim = cosine(gather_tokens(s.x, a_idx), gather_tokens(s.x, b_idx))
            sim = sim.masked_fill(~(a_ok[:, :, None] & b_ok[:, None, :]), float("-inf"))
            best, j = sim.max(-1)
            merged = _top_edges(best, r) & a_ok
            ar = torch.arange(s.num_tokens, device=s.x.device).expand_as(s.mask)
            dest = assign(ar.clone(), a_idx, b_idx.gather(1, j), merged)
        size = s.size[..., 0] if s.size is not None else s.x.new_ones(s.mask.shape)
        return merge_by_dest(s, dest, size, n_out)

    def macs(self, n, n_guide=0):
        return ((n + 1) // 2) * (n // 2) * self.d + pool_macs(n, self.d)


class MCTF(Reducer):
    """V7b: multi-criteria token fusion (Lee et al., CVPR 2024) with text→video informativeness.

    ā_k = mean over heads and valid words of softmax_video(q_w·k_kᵀ/√d_h) (learned LN+Linear
    projections, trained through the attention-weighted pooling); ι = min ā / ā, ς = min s / s over
    valid tokens; W = ((cos+1)/2)^(1/τ_sim) · (ι_i ι_j)^(1/τ_info) · (ς_i ς_j)^(1/τ_size)."""

    name = "mctf"
    needs_guide = True

    def __init__(self, d: int, keep: float = 0.5, heads: int = 1, tau_sim: float = 1.0, tau_info: float = 20.0,
                 tau_size: float = 40.0) -> None:
        super().__init__(d, keep)
        if heads < 1 or d % heads:
            raise FusionError(f"reducer mctf: d={d} must be divisible by heads={heads}")
        self.h, self.tau = heads, (tau_sim, tau_info, tau_size)
        self.q = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d))
        self.k = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d))

    def informativeness(self, s: StreamTokens, guide: StreamTokens) -> torch.Tensor:
        """ā (B, N): attention each video token receives from the valid words (0 on padding)."""
        q = split_heads(self.q(guide.valid_x()), self.h)
        k = split_heads(self.k(s.valid_x()), self.h)
        probs = attention_probs(q, k, s.mask).mean(1)  # (B, N_t, N): explicit weights are the point
        words = guide.mask.to(probs.dtype)
        got = (probs * words[..., None]).sum(1) / words.sum(1, keepdim=True).clamp_min(1.0)
        uniform = s.mask.to(got.dtype) / s.mask.sum(1, keepdim=True).clamp_min(1)
        return torch.where(guide.mask.any(1, keepdim=True), got, uniform)

    def reduce(self, s, guide, r, n_out):
        t_sim, t_info, t_size = self.tau
        attn = self.informativeness(s, guide)
        size = s.size[..., 0] if s.size is not None else s.x.new_ones(s.mask.shape)
        a_idx, a_ok, b_idx, b_ok = _bipartite(s.mask)
        with torch.no_grad():
            inf = float("-inf")
            ok = a_ok[:, :, None] & b_ok[:, None, :]
            sim = ((cosine(gather_tokens(s.x, a_idx), gather_tokens(s.x, b_idx)) + 1) / 2).clamp_min(0) ** (1 / t_sim)
            a_bar = attn.detach().float().clamp_min(1e-12)
            iota = _relative_inverse(a_bar, s.mask)
            info = (iota.gather(1, a_idx)[:, :, None] * iota.gather(1, b_idx)[:, None, :]) ** (1 / t_info)

            def size_term(sz: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
                sg = _relative_inverse(sz.float(), valid)
                return (sg.gather(1, a_idx)[:, :, None] * sg.gather(1, b_idx)[:, None, :]) ** (1 / t_size)

            w = (sim * info * size_term(size, s.mask)).masked_fill(~ok, inf)
            # step 1: ⌊r/2⌋ edges A → B
            best, j = w.max(-1)
            merged_a = _top_edges(best, torch.div(r, 2, rounding_mode="floor")) & a_ok
            # step 2: the remaining edges B → still-unmerged A, sizes of B updated by step 1
            ar = torch.arange(s.num_tokens, device=s.x.device).expand_as(s.mask)
            dest = assign(ar.clone(), a_idx, b_idx.gather(1, j), merged_a)
            grown = size.float().new_zeros(size.shape).scatter_add(1, torch.where(s.mask, dest, ar),
                                                                   torch.where(s.mask, size.float(), 0.0))
            alive = s.mask & (dest == ar)
            w2 = (sim * info * size_term(grown, alive)).masked_fill(~ok | merged_a[:, :, None], inf).transpose(1, 2)
            best2, i = w2.max(-1)
            merged_b = _top_edges(best2, r - torch.div(r, 2, rounding_mode="floor")) & b_ok
            dest = assign(dest, b_idx, a_idx.gather(1, i), merged_b)
            dest = dest.gather(1, dest)  # a → b → a': two hops reach the root (a' never moves)
        return merge_by_dest(s, dest, attn * size, n_out)

    def macs(self, n, n_guide=0):
        d = self.d
        attn = linear_macs(n_guide, d, d) + linear_macs(n, d, d) + n_guide * n * d  # scores only
        return attn + ((n + 1) // 2) * (n // 2) * d + pool_macs(n, d)


class PiToMe(Reducer):
    """V7c: spectrum-preserving merging (Tran et al., NeurIPS 2024): energy
    E_i = mean_{j valid} f_m(cos_ij), f_m(x) = x − m if x > m else α(e^{x−m} − 1); the 2r highest-energy
    tokens are mergeable, alternately A/B, and every A token merges into its most similar B token.
    The N×N similarity is computed in row blocks (``block`` rows) to bound memory at 8k tokens."""

    name = "pitome"

    def __init__(self, d: int, keep: float = 0.5, margin: float = 0.75, alpha: float = 1.0, block: int = 1024) -> None:
        super().__init__(d, keep)
        if block < 1:
            raise FusionError(f"reducer pitome: block must be >= 1, got {block}")
        self.margin, self.alpha, self.block = margin, alpha, block

    def energy(self, s: StreamTokens) -> torch.Tensor:
        xn = F.normalize(s.x.float(), dim=-1)
        valid = s.mask.to(xn.dtype)
        parts = []
        for start in range(0, s.num_tokens, self.block):
            sim = xn[:, start:start + self.block] @ xn.transpose(1, 2)  # (B, blk, N)
            f = torch.where(sim > self.margin, sim - self.margin, self.alpha * torch.expm1(sim - self.margin))
            parts.append((f * valid[:, None, :]).sum(-1))
        return torch.cat(parts, 1) / valid.sum(1, keepdim=True).clamp_min(1.0)

    def reduce(self, s, guide, r, n_out):
        with torch.no_grad():
            e = self.energy(s)
            n = s.num_tokens
            ar = torch.arange(n, device=s.x.device).expand_as(s.mask)
            order = torch.argsort(torch.where(s.mask, -e, torch.full_like(e, float("inf"))), dim=1, stable=True)
            width = max(int(r.max()), 1) if r.numel() else 1
            a_idx = order[:, 0:2 * width:2]
            b_idx = order[:, 1:2 * width:2]
            k = torch.arange(a_idx.shape[1], device=s.x.device)
            a_ok = k[None, : a_idx.shape[1]] < r[:, None]
            b_ok = k[None, : b_idx.shape[1]] < r[:, None]
            sim = cosine(gather_tokens(s.x, a_idx), gather_tokens(s.x, b_idx))
            sim = sim.masked_fill(~(a_ok[:, :, None] & b_ok[:, None, :]), float("-inf"))
            j = sim.argmax(-1)
            dest = assign(ar.clone(), a_idx, b_idx.gather(1, j), a_ok)
        size = s.size[..., 0] if s.size is not None else s.x.new_ones(s.mask.shape)
        return merge_by_dest(s, dest, size, n_out)

    def macs(self, n, n_guide=0):
        r = n - self.out_tokens(n)
        return n * n * self.d + r * r * self.d + pool_macs(n, self.d)


class TextTopK(Reducer):
    """V7d (control): keep the ⌈keep·L⌉ tokens with the highest max-cosine to any valid word,
    drop the others (no merging; sizes unchanged). Without words the first tokens are kept."""

    name = "topk"
    max_removed = 1.0
    needs_guide = True

    def reduce(self, s, guide, r, n_out):
        with torch.no_grad():
            sim = cosine(s.x, guide.x).masked_fill(~guide.mask[:, None, :], float("-inf"))
            score = sim.max(-1).values
            score = torch.where(torch.isfinite(score), score, torch.zeros_like(score))
            score = score.masked_fill(~s.mask, float("-inf"))
            kept = _top_edges(score, s.mask.sum(1) - r) & s.mask
            ar = torch.arange(s.num_tokens, device=s.x.device).expand_as(s.mask)
            dest = torch.where(kept, ar, torch.full_like(ar, -1))
        size = s.size[..., 0] if s.size is not None else s.x.new_ones(s.mask.shape)
        return merge_by_dest(s, dest, size, n_out)

    def macs(self, n, n_guide=0):
        return n * n_guide * self.d


def _relative_inverse(v: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(1/v) / max_valid(1/v) = min_valid(v) / v on valid entries (1 elsewhere)."""
    big = torch.finfo(v.dtype).max
    vmin = torch.where(valid, v, torch.full_like(v, big)).min(1, keepdim=True).values
    return torch.where(valid, vmin / v.clamp_min(1e-12), torch.ones_like(v))


REDUCERS: dict[str, type[Reducer]] = {"tome": ToMe, "mctf": MCTF, "pitome": PiToMe, "topk": TextTopK}


def build_reducer(name: str, d: int, keep: float = 0.5, **kwargs: Any) -> Reducer:
    if name not in REDUCERS:
        raise FusionError(f"unknown reducer {name!r}; known: {', '.join(REDUCERS)}")
    return REDUCERS[name](d, keep, **kwargs)


# ------------------------------------------------------------------------- target survival
def target_tokens(pos: torch.Tensor, mask: torch.Tensor, box: torch.Tensor, order: Literal["yx", "xy"] = "yx"
                  ) -> torch.Tensor:
    """Valid tokens (B, N) whose position lies inside the GT box (B, 4, normalised xyxy).

    ``pos`` (B, N, ≥2) holds the token centre; ``order="yx"`` (the adapters' grid positions are
    (y, x)) or ``"xy"``. A (t, y, x) position uses its last two coordinates."""
    y, x = (pos[..., -2], pos[..., -1]) if order == "yx" else (pos[..., -1], pos[..., -2])
    x1, y1, x2, y2 = (box[:, i, None] for i in range(4))
    return mask & (x >= x1) & (x <= x2) & (y >= y1) & (y <= y2)


def target_survival(dest: torch.Tensor, mask: torch.Tensor, target: torch.Tensor, size: torch.Tensor | None = None,
                    purity: float = 0.5) -> dict[str, torch.Tensor]:
    """How the referred person's tokens fared in a reduction (all (B,) floats; NaN without targets).

    survival   share of target tokens whose output token is ≥ ``purity`` target by size (not dropped)
    untouched  share of target tokens kept alone (their output token holds nothing else)
    dropped    share of target tokens with no output token (top-k drop)"""
    b, n = dest.shape
    sz = size[..., 0] if size is not None else torch.ones(b, n, device=dest.device)
    alive = mask & (dest >= 0)
    to = torch.where(alive, dest, torch.zeros_like(dest))
    w = torch.where(alive, sz.float(), torch.zeros_like(sz, dtype=torch.float))
    width = n + 1
    total = w.new_zeros(b, width).scatter_add(1, to, w)
    tmass = w.new_zeros(b, width).scatter_add(1, to, w * target.float())
    share = (tmass / total.clamp_min(1e-12)).gather(1, to)
    alone = (total.gather(1, to) - w).abs() < 1e-6
    tgt = (target & mask).float()
    count = tgt.sum(1)
    nan = torch.full_like(count, float("nan"))

    def frac(hit: torch.Tensor) -> torch.Tensor:
        return torch.where(count > 0, (hit.float() * tgt).sum(1) / count.clamp_min(1), nan)

    return {"survival": frac(alive & (share >= purity)), "untouched": frac(alive & alone),
            "dropped": frac(mask & (dest < 0))}


# ------------------------------------------------------------------------------ V7 fusion
@register_fusion("v7", "reduce_fuse", aliases=("token_reduction", "reduced"))
class ReducedFusion(Fusion):
    """V7: reduce the video (and optionally loc) tokens, then run an inner fusion on the shorter
    streams. ``reducer``: tome (V7a) | mctf (V7b, text-guided) | pitome (V7c) | topk (V7d).

    keep            fraction of each sample's valid tokens kept (≥ 0.5 for the merging reducers)
    reduce_streams  streams to reduce (not the guide stream, which scores them)
    prop_attn       pass token sizes on (proportional attention: log-size key bias, size-weighted
                    pooling); False drops them so merged tokens count once
    inner           the fusion that runs after reduction (v1, v2, v6b, …; not V5, whose token-axis
                    layers need fixed lengths) with ``inner_params``
    mctf_heads, margin  the MCTF attention heads and the PiToMe energy margin
    aux["reduce"][stream] holds ``dest``, the input mask and positions for target_survival()."""

    def __init__(self, d: int, streams: tuple[str, ...] = ("video", "text", "loc"),
                 query_stream: str = "video", reducer: ReducerName = "mctf", keep: float = 0.5,
                 reduce_streams: tuple[str, ...] = ("video",), guide_stream: str = "text",
                 prop_attn: bool = True, mctf_heads: int = 1, margin: float = 0.75, inner: str = "v1",
                 inner_params: dict[str, Any] | None = None) -> None:
        super().__init__(d, streams, query_stream)
        where = f"fusion {self.variant_id}"
        if reducer not in REDUCERS:
            raise FusionError(f"{where}: reducer must be one of {', '.join(REDUCERS)}, got {reducer!r}")
        reduce_streams = tuple(reduce_streams)
        bad = [s for s in reduce_streams if s not in self.streams]
        if bad or not reduce_streams:
            raise FusionError(f"{where}: reduce_streams {reduce_streams} must name streams among {self.streams}")
        extra: dict[str, Any] = {"heads": mctf_heads} if reducer == "mctf" else {"margin": margin} if reducer == "pitome" else {}
        try:
            proto = build_reducer(reducer, d, keep, **extra)
        except FusionError as exc:
            raise FusionError(f"{where}: {exc}") from exc
        if proto.needs_guide:
            if guide_stream not in self.streams:
                raise FusionError(f"{where}: reducer {reducer!r} needs guide_stream {guide_stream!r} among {self.streams}")
            if guide_stream in reduce_streams:
                raise FusionError(f"{where}: the guide stream {guide_stream!r} cannot also be reduced")
        spec = fusion_spec(inner)
        if spec.cls is type(self) or spec.cls.needs_max_tokens:
            raise FusionError(f"{where}: inner fusion {inner!r} cannot run on reduced streams "
                              f"(it is V7 itself or needs fixed stream lengths)")
        params = dict(inner_params or {})
        for reserved in ("streams", "query_stream"):
            if reserved in params:
                raise FusionError(f"{where}: inner_params may not set {reserved!r}; it follows this fusion's")
        self.reducer_name, self.guide_stream, self.prop_attn = reducer, guide_stream, prop_attn
        self.reducers = nn.ModuleDict({s: proto if i == 0 else build_reducer(reducer, d, keep, **extra)
                                       for i, s in enumerate(reduce_streams)})
        self.inner = build_fusion(spec.id, d, streams=self.streams, query_stream=query_stream, **params)

    def forward(self, streams: dict[str, StreamTokens]) -> FusionOutput:
        self.check(streams)
        guide = streams.get(self.guide_stream)
        reduced, info = dict(streams), {}
        for name, reducer in self.reducers.items():
            s = streams[name]
            out = reducer(s, guide)
            info[name] = {"dest": out.dest, "mask": s.mask, "pos": s.pos, "size": s.size,
                          "tokens_in": s.num_tokens, "tokens_out": out.stream.num_tokens}
            r = out.stream
            reduced[name] = r if self.prop_attn else StreamTokens(r.x, r.mask, None, r.pos, r.kind)
        result = self.inner(reduced)
        result.aux["reduce"] = info
        return result

    def macs(self, shapes: dict[str, int]) -> int:
        n = self.check_shapes(shapes)
        total, after = 0, dict(n)
        for name, reducer in self.reducers.items():
            total += reducer.macs(n[name], n.get(self.guide_stream, 0))
            after[name] = reducer.out_tokens(n[name])
        return total + self.inner.macs(after)


__all__ = [
    "Reduced", "Reducer", "ToMe", "MCTF", "PiToMe", "TextTopK", "REDUCERS", "build_reducer", "members",
    "merge_by_dest", "target_tokens", "target_survival", "ReducedFusion",
]
