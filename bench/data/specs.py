"""Data specs -> prepared splits: ``synth:<size>[@seed]``, ``refava:<folder>`` or a folder.

A spec is resolved once per machine: RAVAR-Synth and prepared RefAVA splits are built under
``$RAVAR_CACHE`` in a temporary folder and published by one atomic rename, so concurrent runners
(local processes, Ray tasks, torchrun ranks) share one copy and never see a half-written one.
A :class:`DataRef` is plain data: it travels to workers and enters every job's identity by its
fingerprint.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..protocol import canonical_json
from .prepared import PreparedSplit, cache_root

log = logging.getLogger(__name__)


class DataSpecError(RuntimeError):
    """A data spec cannot be resolved; the message names the spec and why."""


INDEX_FILE = "ravar-data.json"  # {"spec": ..., "splits": {split: relative path}} in a data folder


@dataclass(frozen=True)
class DataRef:
    """A resolved data spec: prepared split folders (shared by every worker) and fingerprints."""

    spec: str
    paths: dict[str, str]
    fingerprint: str
    split_fingerprints: dict[str, str]
    sizes: dict[str, int]

    def load(self, split: str):
        if split not in self.paths:
            raise DataSpecError(f"data {self.spec!r} has no split {split!r} (has {', '.join(self.paths)})")
        return PreparedSplit.load(self.paths[split])

    def summary(self) -> dict[str, Any]:
        return {"spec": self.spec, "fingerprint": self.fingerprint,
                "splits": {s: {"fingerprint": self.split_fingerprints[s], "n": self.sizes[s],
                               "path": self.paths[s]} for s in self.paths}}


def ref_from_paths(spec: str, paths: dict[str, Path]) -> DataRef:
    fps, sizes = {}, {}
    for split, path in sorted(paths.items()):
        s = PreparedSplit.load(path)
        fps[split], sizes[split] = s.fingerprint(), len(s)
    joint = hashlib.sha256(canonical_json(fps).encode()).hexdigest()[:16]
    return DataRef(spec, {k: str(v) for k, v in sorted(paths.items())}, joint, fps, sizes)


def index_paths(folder: Path) -> dict[str, Path] | None:
    """Split folders of a data folder: from its index file, or ``train/ val/ test/`` children."""
    index = folder / INDEX_FILE
    if index.is_file():
        raw = json.loads(index.read_text())
        return {s: folder / rel for s, rel in raw["splits"].items()}
    found = {s: folder / s for s in ("train", "val", "test") if (folder / s / "meta.json").is_file()}
    return found or None


def _publish(tmp: Path, final: Path) -> None:
    """Move a freshly built data folder into place; if another process won the race, use its."""
    try:
        os.rename(tmp, final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if index_paths(final) is None:
            raise


def resolve_data(spec: str, progress: bool = True) -> DataRef:
    """Turn a data spec into prepared splits, building (once, cached) what is needed.

    * ``synth:<tiny|small|full>[@seed]`` - RAVAR-Synth, generated under ``$RAVAR_CACHE/synth``;
    * ``refava:<folder>`` - a RefAVA folder, prepared (8 frames, 112 px, correct frame policy)
      under ``$RAVAR_CACHE/refava``;
    * ``<folder>`` - prepared splits: ``train/ val/ test/`` sub-folders (or a ``ravar-data.json``).
    """
    if spec.startswith("synth:"):
        return _resolve_synth(spec, progress)
    if spec.startswith("refava:"):
        return _resolve_refava(spec, progress)
    folder = Path(spec).expanduser()
    if not folder.is_dir():
        raise DataSpecError(f"data {spec!r}: not a folder, and not of the form synth:<size>[@seed] or "
                       "refava:<folder>")
    paths = index_paths(folder)
    if not paths:
        raise DataSpecError(f"data {spec!r}: {folder} holds no prepared splits (expected train/, val/, "
                       f"test/ each with meta.json, or {INDEX_FILE}); prepare a RefAVA folder with "
                       "`ravar-bench data prepare` or use refava:<folder>")
    return ref_from_paths(spec, paths)


SYNTH_SIZES = ("tiny", "small", "full")


def _resolve_synth(spec: str, progress: bool) -> DataRef:
    body = spec[len("synth:"):]
    size, _, seed_text = body.partition("@")
    if size not in SYNTH_SIZES:
        raise DataSpecError(f"data {spec!r}: synthetic size must be one of {', '.join(SYNTH_SIZES)}")
    if seed_text and not seed_text.isdigit():
        raise DataSpecError(f"data {spec!r}: the seed after '@' must be a non-negative integer")
    seed = int(seed_text or 0)
    final = cache_root() / "synth" / f"{size}-seed{seed}"
    paths = index_paths(final) if final.is_dir() else None
    if paths is None:
        try:
            from .synth import generate
        except ImportError as exc:
            raise DataSpecError(f"data {spec!r}: the synthetic generator is not available ({exc})") from exc
        log.info("generating RAVAR-Synth %s (seed %d) under %s", size, seed, final)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".{final.name}.{os.getpid()}.{uuid.uuid4().hex[:6]}"
        try:
            made = generate(size=size, seed=seed, out=tmp, progress=progress)
            rel = {s: str(Path(p).resolve().relative_to(tmp.resolve())) for s, p in made.items()}
            (tmp / INDEX_FILE).write_text(json.dumps({"spec": f"synth:{size}@{seed}", "splits": rel}))
            _publish(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        paths = index_paths(final)
    return ref_from_paths(f"synth:{size}@{seed}", paths or {})


def _resolve_refava(spec: str, progress: bool) -> DataRef:
    from .prepare import prepare_refava, prepared_path

    root = Path(spec[len("refava:"):]).expanduser()
    if not root.is_dir():
        raise DataSpecError(f"data {spec!r}: {root} is not a folder")
    base = cache_root() / "refava"
    paths = {}
    for split in ("train", "val", "test"):
        out = prepared_path(base, root, split)
        prepare_refava(root, split, out, progress=progress)  # reuses an up-to-date cache
        paths[split] = out
    return ref_from_paths(f"refava:{root.resolve()}", paths)
