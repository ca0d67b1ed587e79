"""Shared fixtures: small random prepared splits that need no generator and no files."""
from __future__ import annotations

import numpy as np
import pytest

from ravar_bench.data.prepared import PreparedMeta, PreparedSplit


def make_random_split(n_clips: int = 6, per_clip: int = 2, frames: int = 4, size: int = 32,
                      k: int = 4, seed: int = 0, split: str = "train") -> PreparedSplit:
    """A prepared split with random pixels and labels whose boxes/labels follow the candidates,
    so a model that reads the candidates can learn something."""
    rng = np.random.default_rng(seed)
    n = n_clips * per_clip
    keys = [f"vid{c // 2}___{902 + c}___{p}" for c in range(n_clips) for p in range(per_clip)]
    x1 = rng.uniform(0, 0.5, (n_clips, k))
    y1 = rng.uniform(0, 0.5, (n_clips, k))
    cand = np.stack([x1, y1, x1 + 0.3, y1 + 0.4], -1).astype(np.float32)
    clip_index = np.repeat(np.arange(n_clips), per_clip).astype(np.int32)
    person = np.tile(np.arange(per_clip), n_clips)
    labels = (rng.random((n, 80)) < 0.1).astype(np.uint8)
    labels[:, 11] = 1  # everyone stands, as in AVA
    labels[person == 0, 10] = 1
    return PreparedSplit(
        meta=PreparedMeta(source="random", split=split, fingerprint=f"random-{seed}",
                          object_classes=["person", "chair"]),
        keys=keys, texts=[f"the person number {p} on the {'left' if p == 0 else 'right'}" for p in person],
        clip_index=clip_index, boxes=cand[clip_index, person],
        labels=labels,
        frames=rng.integers(0, 255, (n_clips, frames, size, size, 3), dtype=np.uint8),
        key_frames=rng.integers(0, 255, (n_clips, size, size, 3), dtype=np.uint8),
        cand_boxes=cand, cand_labels=np.zeros((n_clips, k), np.int16),
        cand_scores=np.ones((n_clips, k), np.float32), cand_mask=np.ones((n_clips, k), bool),
    )


@pytest.fixture
def random_splits():
    return {s: make_random_split(seed=i, split=s) for i, s in enumerate(("train", "val", "test"))}


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny models are faster on one thread, and CI has two cores for everything."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def control_baseline(name: str, adapter: str, tiny: str = "", title: str | None = None) -> str:
    """A minimal baseline TOML file (domain "control"); ``tiny`` is the [params_tiny] body."""
    return (f'[baseline]\nname = "{name}"\nadapter = "{adapter}"\ndomain = "control"\n'
            f'title = "{title if title is not None else name.title()}"\n'
            + (f"[params_tiny]\n{tiny}\n" if tiny else ""))


def write_baseline_tree(root, baselines: dict[str, str], suites: dict[str, str]):
    """``root/baselines/<name>.toml`` and ``root/baselines/suites/<name>.toml``; returns the folder."""
    base = root / "baselines"
    (base / "suites").mkdir(parents=True)
    for name, text in baselines.items():
        (base / f"{name}.toml").write_text(text)
    for name, text in suites.items():
        (base / "suites" / f"{name}.toml").write_text(text)
    return base


def write_random_data(folder, n_clips: int = 5):
    """Prepared train/val/test splits of random data (seeds 0, 1, 2) under ``folder``; returns it."""
    for i, split in enumerate(("train", "val", "test")):
        make_random_split(n_clips=n_clips, seed=i, split=split).save(folder / split)
    return folder
