"""Write small RefAVA-format folders for tests: three pickles per split plus ACAR-layout JPEGs.

Each frame file is a solid colour that encodes its frame number (:func:`frame_colour`), so a test
can tell which file a prepared frame came from.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ravar_bench.data.frames import clip_frame_numbers, frame_file
from ravar_bench.data.refava import candidates_name, pickle_name


@dataclass
class Inst:
    key: str
    box: list[float]
    labels: list[int]
    text: str


def default_instances() -> list[Inst]:
    """Five persons in three clips of two videos."""
    return [
        Inst("vidA___902___0", [0.10, 0.20, 0.40, 0.90], [12, 80], "the man in the red shirt on the left"),
        Inst("vidA___902___1", [0.50, 0.10, 0.90, 0.95], [14], "the woman with glasses on the right"),
        Inst("vidA___905___0", [0.05, 0.05, 0.30, 0.60], [1, 17, 79], "the child near the door"),
        Inst("vidB___1000___3", [0.20, 0.30, 0.70, 1.00], [11], "the person in a blue coat"),
        Inst("vidB___1000___4", [0.00, 0.00, 1.00, 1.00], [2, 3], "the old man sitting down"),
    ]


def default_candidates() -> dict[str, dict]:
    return {
        "vidA___902": {"boxes": [[0.1, 0.2, 0.4, 0.9], [0.5, 0.1, 0.9, 0.95], [0.6, 0.6, 0.7, 0.7]],
                       "labels": ["person", "person", "cup"], "scores": [0.9, 0.8, 0.4]},
        "vidB___1000": {"boxes": [[0.2, 0.3, 0.7, 1.0]], "labels": ["chair"], "scores": [0.7]},
        # vidA___905 deliberately absent: no candidates for that clip
    }


def frame_colour(number: int) -> tuple[int, int, int]:
    """A colour per frame number, spaced widely enough to survive JPEG compression."""
    return ((number * 7) % 250, (number * 13) % 250, (number * 29) % 250)


@dataclass
class FolderSpec:
    root: Path
    split: str
    instances: list[Inst]
    frame_numbers: dict[str, set[int]] = field(default_factory=dict)  # video -> numbers written


def write_pickle(path: Path, obj: object) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def write_refava(
    root: Path,
    split: str = "train",
    instances: list[Inst] | None = None,
    num_frames: int = 8,
    policies: tuple[str, ...] = ("correct",),
    frame_hw: tuple[int, int] = (48, 64),
    candidates: dict | None = None,
    frames: bool = True,
) -> FolderSpec:
    """Write one split. The three dicts get *different* insertion orders on purpose."""
    root.mkdir(parents=True, exist_ok=True)
    insts = list(instances if instances is not None else default_instances())
    label = {i.key: list(i.labels) for i in insts}
    # AVA-style rows: box plus (action, person) columns, repeated; the loader reads row 0 [:4].
    keyframe = {i.key: np.array([i.box + [i.labels[0] if i.labels else 0, 0]] * 2, np.float64)
                for i in reversed(insts)}
    rot = insts[2:] + insts[:2]
    description = {i.key: [i.text, "a second, unused description"] for i in rot}
    write_pickle(root / pickle_name(split, "label"), label)
    write_pickle(root / pickle_name(split, "keyframe"), keyframe)
    write_pickle(root / pickle_name(split, "description"), description)
    if candidates is not None:
        write_pickle(root / candidates_name(split), candidates)
    spec = FolderSpec(root, split, insts)
    if frames:
        h, w = frame_hw
        for inst in insts:
            vid, ts = inst.key.split("___")[:2]
            for policy in policies:
                numbers, key = clip_frame_numbers(int(ts), num_frames, policy)  # type: ignore[arg-type]
                spec.frame_numbers.setdefault(vid, set()).update(numbers + [key])
        for vid, numbers in spec.frame_numbers.items():
            for n in numbers:
                path = root / frame_file(vid, n)
                if not path.exists():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    Image.new("RGB", (w, h), frame_colour(n)).save(path, quality=95)
    return spec
