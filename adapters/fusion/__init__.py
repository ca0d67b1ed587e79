"""The fusion zoo: one interface (base.py), many variants, built by name.

    from ravar_bench.adapters.fusion import StreamTokens, build_fusion
    fusion = build_fusion("v2", d=256, layers=2)          # id, name or alias
    out = fusion({"video": StreamTokens(...), "text": ..., "loc": ...})
    out.pooled                                            # (B, d) -> the RAVAR heads

Variants: basic.py (V0 late sum / Addition, Concatenation, V1 concat + self-attention, V2 cross-
attention, V2b co-attention, MBT attention bottleneck), agent.py (V5, RefAtomNet's agent blocks
with CAAF/CATF in ``as_released`` / ``corrected`` / ``rescale_only`` / ``log_guided`` modes),
zoo_agent.py (V3, V4, V6, V6b; V3 with Han et al.'s DWC and agent biases from grid.py),
reduce.py (V7 token reduction) and linear.py (V8 linear attention, V9 learned latents).

Variants live in :data:`FUSIONS`, the same :class:`~ravar_bench.registry.Registry` class as the
adapters: a new variant is a ``@register_fusion`` class in any module of this package (no list to
edit), or an entry point of the group ``ravar_bench.fusions`` in another package.
"""
from .base import (
    ENTRY_POINT_GROUP, FUSIONS, STREAM_KINDS, Fusion, FusionError, FusionOutput, FusionSpec, StreamTokens,
    build_fusion, fusion_spec, list_fusions, register_fusion,
)

__all__ = [
    "ENTRY_POINT_GROUP", "FUSIONS", "STREAM_KINDS", "Fusion", "FusionError", "FusionOutput", "FusionSpec",
    "StreamTokens", "build_fusion", "fusion_spec", "list_fusions", "register_fusion",
]
