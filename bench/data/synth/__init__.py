"""RAVAR-Synth: an embedded, procedurally generated RefAVA-format benchmark that runs on CPU.

``generate(size="small", seed=0, out=DIR)`` renders multi-person clips of articulated figures
performing AVA atomic actions, writes referring expressions that single out one person by
appearance and position, saves everything in the official RefAVA layout, prepares the cache the
harness loads, and scores known references. See ``docs/synth.md``.
"""
from .generate import (
    DIFFICULTY_LEVELS,
    GENERATOR_VERSION,
    SIZES,
    SPLITS,
    SynthConfig,
    difficulty_value,
    generate,
)

__all__ = ["DIFFICULTY_LEVELS", "GENERATOR_VERSION", "SIZES", "SPLITS", "SynthConfig",
           "difficulty_value", "generate"]
