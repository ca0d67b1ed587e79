"""The uniform fusion interface (fusion.md §6.1): streams in, fused tokens and a pooled vector out.

Every fusion variant of the zoo takes the same input, a dict of :class:`StreamTokens` keyed by stream
name ("video", "text", "loc"), and returns a :class:`FusionOutput` whose ``pooled`` vector feeds the
shared RAVAR heads. That is what lets any variant be plugged into RefAtomNet or a retrieval baseline
by configuration (``build_fusion(name, d, **hparams)``).

Rules every variant follows (tests/test_fusion_core.py checks them):

1. Masks are honoured in every softmax (masked keys get −∞) and in every pooling, agent pooling
   included. ``x`` at masked positions is *undefined*: a variant must give the same output whatever
   is stored there. (RefAtomNet's ``as_released`` mode is the one documented exception.)
2. Padded query tokens output zeros and are excluded from ``pooled``.
3. Softmax attention goes through ``torch.nn.functional.scaled_dot_product_attention``; explicit
   probabilities are computed only where a method needs them (e.g. RefAtomNet's map fusion).
4. ``macs(shapes)`` is analytic, per sample, with one convention for all variants (fusion.md §0):
   a multiply-accumulate counts 1; linear layers ``n·d_in·d_out``; attention ``2·N_q·N_k·d``
   (scores + weighted sum); weighted sums and means (pooling) count one MAC per element summed.
   Softmax, normalisation, activations and other elementwise work are not counted.
"""
from __future__ import annotations

import abc
import inspect
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import Registry

#: Stream kinds a fusion may receive; the dict key of a stream is its kind.
STREAM_KINDS = ("video", "text", "loc")

#: Entry-point group of out-of-tree variants (name = variant id, object = the Fusion subclass).
ENTRY_POINT_GROUP = "ravar_bench.fusions"


class FusionError(ValueError):
    """A fusion was built or called with bad arguments; the message names the variant and input."""


# ------------------------------------------------------------------------------ data types
@dataclass
class StreamTokens:
    """One token stream, already projected to the common width ``d``.

    x     float (B, N, d)
    mask  bool  (B, N); True = valid token (text padding, absent candidates, … are False)
    size  float (B, N, 1) or None: token multiplicity after merging (None = all ones)
    pos   float (B, N, p) or None: grid coordinates or box corners, for variants that need them
    kind  "video" | "text" | "loc"
    """

    x: torch.Tensor
    mask: torch.Tensor
    size: torch.Tensor | None = None
    pos: torch.Tensor | None = None
    kind: str = ""

    def __post_init__(self) -> None:
        if self.kind not in STREAM_KINDS:
            raise FusionError(f"StreamTokens.kind must be one of {', '.join(STREAM_KINDS)}, got {self.kind!r}")
        if self.x.ndim != 3:
            raise FusionError(f"{self.kind} stream: x must be (B, N, d), got shape {tuple(self.x.shape)}")
        b, n, _ = self.x.shape
        if self.mask.dtype != torch.bool or tuple(self.mask.shape) != (b, n):
            raise FusionError(f"{self.kind} stream: mask must be bool ({b}, {n}), got "
                              f"{self.mask.dtype} {tuple(self.mask.shape)}")
        if self.size is not None and tuple(self.size.shape) != (b, n, 1):
            raise FusionError(f"{self.kind} stream: size must be ({b}, {n}, 1), got {tuple(self.size.shape)}")
        if self.pos is not None and tuple(self.pos.shape[:2]) != (b, n):
            raise FusionError(f"{self.kind} stream: pos must be ({b}, {n}, p), got {tuple(self.pos.shape)}")

    @classmethod
    def dense(cls, x: torch.Tensor, kind: str) -> "StreamTokens":
        """A stream whose tokens are all valid."""
        return cls(x, torch.ones(x.shape[:2], dtype=torch.bool, device=x.device), kind=kind)

    @property
    def num_tokens(self) -> int:
        return int(self.x.shape[1])

    def weights(self) -> torch.Tensor:
        """Pooling weights (B, N): mask times size."""
        w = self.mask.to(self.x.dtype)
        return w if self.size is None else w * self.size[..., 0].to(self.x.dtype)

    def valid_x(self) -> torch.Tensor:
        """``x`` with padded tokens set to zero (so garbage there cannot leak)."""
        return zero_padded(self.x, self.mask)

    def pad_to(self, n: int, fill: float = 0.0) -> "StreamTokens":
        """Append masked tokens (value ``fill``) up to ``n`` tokens; used for fixed-length caches."""
        extra = n - self.num_tokens
        if extra < 0:
            raise FusionError(f"{self.kind} stream has {self.num_tokens} tokens, cannot pad to {n}")
        if extra == 0:
            return self
        b, _, d = self.x.shape

        def cat(t: torch.Tensor | None, value: float) -> torch.Tensor | None:
            if t is None:
                return None
            pad = t.new_full((b, extra, *t.shape[2:]), value)
            return torch.cat([t, pad], 1)

        mask = torch.cat([self.mask, self.mask.new_zeros(b, extra)], 1)
        return StreamTokens(cat(self.x, fill), mask, cat(self.size, 1.0), cat(self.pos, 0.0), self.kind)


@dataclass
class FusionOutput:
    """tokens (B, N_out, d), mask (B, N_out), pooled (B, d) for the heads, aux for analysis
    (attention/agent maps, agent tokens, per-stream outputs; never needed by the loss)."""

    tokens: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor
    aux: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------- helpers
def zero_padded(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Set tokens where ``mask`` is False to zero (x: (B, N, …), mask: (B, N))."""
    return x * mask.reshape(*mask.shape, *([1] * (x.ndim - 2))).to(x.dtype)


def masked_pool(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted mean over tokens (x (B, N, d), weights (B, N)); rows with no weight give 0."""
    w = weights.to(x.dtype).unsqueeze(-1)
    return (x * w).sum(1) / w.sum(1).clamp_min(1e-12)


def pool_by_index(x: torch.Tensor, idx: torch.Tensor, weights: torch.Tensor, n: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean of ``x`` (B, N, d) into ``n`` buckets given by ``idx`` (B, N; value n = drop).

    Returns agents (B, n, d) and their mask (B, n): False where a bucket received no weight. A
    scatter-add, so it costs N·d adds (the MAC convention's pooling), not an N×n one-hot matmul."""
    b, _, d = x.shape
    w = weights.to(x.dtype)
    num = x.new_zeros(b, n + 1, d).scatter_add(1, idx[..., None].expand(-1, -1, d), x * w[..., None])
    den = x.new_zeros(b, n + 1).scatter_add(1, idx, w)
    num, den = num[:, :n], den[:, :n]
    return num / den.clamp_min(1e-12)[..., None], den > 0


def pool_stream(s: StreamTokens, x: torch.Tensor | None = None) -> torch.Tensor:
    """Masked, size-weighted mean of a stream (or of ``x`` laid out like it)."""
    return masked_pool(s.x if x is None else x, s.weights())


def key_bias(mask: torch.Tensor, size: torch.Tensor | None = None) -> torch.Tensor:
    """SDPA ``attn_mask`` (B, 1, 1, M) for keys: bool when no sizes, else a float bias of
    log(size) on valid keys and −∞ on padded ones (proportional attention for merged tokens)."""
    if size is None:
        return mask[:, None, None, :]
    bias = torch.log(size[..., 0].clamp_min(1e-12))
    return bias.masked_fill(~mask, float("-inf"))[:, None, None, :]


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None = None,
           key_size: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-head SDPA (q (B, h, Nq, dh), k/v (B, h, Nk, dh)) with a key-padding mask (B, Nk) and
    an optional additive logit bias broadcastable to (B, h, Nq, Nk) (agent position biases).

    A query whose keys are all masked (e.g. the location stream under the location-drop control)
    outputs zeros instead of NaN, on every backend."""
    if key_mask is None:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=None if bias is None else bias.to(q.dtype))
    empty = ~key_mask.any(1)  # (B,)
    safe = key_mask | empty[:, None]  # give empty rows some keys, then zero their output
    mask = key_bias(safe, key_size)
    if bias is not None:
        if mask.dtype == torch.bool:
            mask = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill(~mask, float("-inf"))
        mask = mask.to(q.dtype) + bias.to(q.dtype)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    # unconditional: asking bool(empty.any()) would sync a GPU and cannot be answered by fake tensors
    return out.masked_fill(empty[:, None, None, None], 0.0)


def attention_probs(q: torch.Tensor, k: torch.Tensor, key_mask: torch.Tensor | None = None,
                    bias: torch.Tensor | None = None) -> torch.Tensor:
    """Explicit softmax(q kᵀ/√dh + bias) over keys (B, h, Nq, Nk); masked keys get 0, empty rows
    all 0. Used only where a method needs the probabilities themselves (rule 3)."""
    logits = q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5
    if bias is not None:
        logits = logits + bias
    return masked_softmax(logits, None if key_mask is None else key_mask[:, None, None, :])


def masked_softmax(logits: torch.Tensor, mask: torch.Tensor | None, dim: int = -1) -> torch.Tensor:
    """Softmax along ``dim`` with masked entries at −∞; an all-masked slice gives zeros (not NaN)."""
    if mask is None:
        return torch.softmax(logits, dim)
    mask = mask.expand_as(logits)
    safe = mask | ~mask.any(dim, keepdim=True)  # no NaN, not even in the backward pass
    probs = torch.softmax(logits.masked_fill(~safe, float("-inf")), dim)
    return probs * mask.to(probs.dtype)


# ----------------------------------------------------------------------------- MAC formulas
def linear_macs(n: int, d_in: int, d_out: int) -> int:
    return int(n) * int(d_in) * int(d_out)


def attention_core_macs(n_q: int, n_k: int, d: int) -> int:
    """Scores plus weighted sum of one softmax-attention step (all heads together)."""
    return 2 * int(n_q) * int(n_k) * int(d)


def ffn_macs(n: int, d: int, ratio: float) -> int:
    hidden = int(round(d * ratio))
    return 2 * int(n) * int(d) * hidden


def pool_macs(n: int, d: int) -> int:
    return int(n) * int(d)


# ------------------------------------------------------------------------------- the class
class Fusion(nn.Module, metaclass=abc.ABCMeta):
    """Base class of every fusion variant.

    ``streams`` names the streams the variant expects (a subset of :data:`STREAM_KINDS`, in a fixed
    order), ``query_stream`` the one that is updated by query-conditioned variants. Variants add
    their own keyword hyper-parameters; :func:`build_fusion` validates them by name.
    """

    #: Catalogue id ("v0", "v1", …) and name; filled in by :func:`register_fusion`.
    variant_id: ClassVar[str] = ""
    variant_name: ClassVar[str] = ""
    #: True for variants with token-axis parameters: they need each stream's maximum length as
    #: the ``max_tokens`` hyper-parameter (a dict stream -> int) at construction.
    needs_max_tokens: ClassVar[bool] = False
    #: True for variants with a ``video_grid`` hyper-parameter (grid-bound terms such as DWC);
    #: adapters whose video encoder has a grid pass it in.
    accepts_video_grid: ClassVar[bool] = False

    def __init__(self, d: int, streams: tuple[str, ...] = STREAM_KINDS, query_stream: str = "video") -> None:
        super().__init__()
        where = self.variant_id or type(self).__name__
        if not isinstance(d, int) or d < 1:
            raise FusionError(f"fusion {where}: d must be a positive int, got {d!r}")
        streams = tuple(streams)
        bad = [s for s in streams if s not in STREAM_KINDS]
        if bad or not streams or len(set(streams)) != len(streams):
            raise FusionError(f"fusion {where}: streams must be distinct names from {STREAM_KINDS}, got {streams}")
        if query_stream not in streams:
            raise FusionError(f"fusion {where}: query_stream {query_stream!r} is not among streams {streams}")
        self.d, self.streams, self.query_stream = d, streams, query_stream

    @property
    def context_streams(self) -> tuple[str, ...]:
        return tuple(s for s in self.streams if s != self.query_stream)

    def check(self, streams: dict[str, StreamTokens]) -> list[StreamTokens]:
        """The expected streams in ``self.streams`` order; errors name the stream and the problem."""
        where = self.variant_id or type(self).__name__
        missing = [s for s in self.streams if s not in streams]
        if missing:
            raise FusionError(f"fusion {where}: missing stream(s) {missing}; got {sorted(streams)}")
        out, batch = [], None
        for name in self.streams:
            s = streams[name]
            if s.kind != name:
                raise FusionError(f"fusion {where}: stream {name!r} has kind {s.kind!r}")
            if s.x.shape[-1] != self.d:
                raise FusionError(f"fusion {where}: stream {name!r} has width {s.x.shape[-1]}, expected d={self.d}")
            if batch is not None and s.x.shape[0] != batch:
                raise FusionError(f"fusion {where}: stream {name!r} has batch {s.x.shape[0]}, others {batch}")
            batch = s.x.shape[0]
            out.append(s)
        return out

    def check_shapes(self, shapes: dict[str, int]) -> dict[str, int]:
        missing = [s for s in self.streams if s not in shapes]
        if missing:
            raise FusionError(f"fusion {self.variant_id}: macs() needs token counts for {missing}")
        return {s: int(shapes[s]) for s in self.streams}

    @abc.abstractmethod
    def forward(self, streams: dict[str, StreamTokens]) -> FusionOutput:
        """Fuse the streams."""

    @abc.abstractmethod
    def macs(self, shapes: dict[str, int]) -> int:
        """Analytic multiply-accumulates per sample for streams of the given token counts."""


# -------------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class FusionSpec:
    id: str
    name: str
    cls: type[Fusion]
    aliases: tuple[str, ...]
    summary: str = field(compare=False)

    def parameters(self) -> dict[str, inspect.Parameter]:
        """Keyword hyper-parameters of the variant (everything after ``d``)."""
        params = list(inspect.signature(self.cls.__init__).parameters.values())[2:]
        return {p.name: p for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


C = TypeVar("C", bound=type[Fusion])


def make_spec(variant_id: str, cls: Any, origin: str, /, *, name: str | None = None,
              aliases: tuple[str, ...] = ()) -> FusionSpec:
    """The registry's entry for ``cls``. The id of an entry point's class is the entry-point name;
    it may give its name and aliases as the class attributes ``variant_name`` and ``aliases``."""
    if not (isinstance(cls, type) and issubclass(cls, Fusion)):
        raise FusionError(f"fusion {variant_id!r} ({origin}): {cls!r} is not a Fusion subclass")
    if name is None:  # an entry point
        name, aliases = cls.variant_name or variant_id, tuple(getattr(cls, "aliases", ()))
    first = (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " ")
    doc = first.split(". ")[0].rstrip(".") + "." if first else ""  # the first sentence
    return FusionSpec(variant_id, name, cls, aliases, doc)


#: Every variant: the modules of this package and the ``ravar_bench.fusions`` entry points. Keys are
#: the id, the name and the aliases, case-insensitively.
FUSIONS: Registry[FusionSpec] = Registry(
    "fusion variant", package=__name__.rpartition(".")[0], group=ENTRY_POINT_GROUP, error=FusionError,
    make=make_spec, aliases=lambda s: (s.name, *s.aliases), label=lambda vid, s: f"{vid} ({s.name})",
    order=lambda vid: (not vid.startswith("v"), vid), fold_case=True)


def register_fusion(variant_id: str, name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[C], C]:
    """Class decorator: register a :class:`Fusion` subclass under an id, a name and aliases."""
    register = FUSIONS.register(variant_id, name=name, aliases=tuple(aliases))

    def deco(cls: C) -> C:
        register(cls)
        cls.variant_id, cls.variant_name = variant_id, name
        return cls

    return deco


def fusion_spec(key: str) -> FusionSpec:
    """Look a variant up by id ("v1"), name ("concat_sa") or alias, case-insensitively."""
    return FUSIONS.get(key)


def list_fusions() -> list[FusionSpec]:
    return FUSIONS.all()


def build_fusion(key: str, d: int, **hparams: Any) -> Fusion:
    """Build a registered variant; unknown or mistyped hyper-parameters name the variant and key."""
    from ..registry import describe_hint, matches_hint  # one type checker for adapter and fusion params

    spec = fusion_spec(key)
    known = spec.parameters()
    hints = typing.get_type_hints(spec.cls.__init__)
    for name, value in hparams.items():
        if name not in known:
            raise FusionError(f"fusion {spec.id} ({spec.name}): unknown hyper-parameter {name!r}; "
                              f"known: {', '.join(sorted(known))}")
        hint = hints.get(name)
        if hint is not None and not matches_hint(value, hint):
            raise FusionError(f"fusion {spec.id} ({spec.name}): hyper-parameter {name!r} must be "
                              f"{describe_hint(hint)}, got {value!r}")
        if isinstance(value, list) and typing.get_origin(hint) is tuple:
            hparams[name] = tuple(value)
    return spec.cls(d, **hparams)


__all__ = [
    "STREAM_KINDS", "ENTRY_POINT_GROUP", "FUSIONS", "FusionError", "StreamTokens", "FusionOutput", "Fusion",
    "FusionSpec", "register_fusion", "fusion_spec", "list_fusions", "build_fusion", "zero_padded",
    "masked_pool", "pool_by_index", "pool_stream", "key_bias", "attend", "attention_probs", "masked_softmax",
    "linear_macs", "attention_core_macs", "ffn_macs", "pool_macs",
]
