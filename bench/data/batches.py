"""Turn a prepared split into :class:`~ravar_bench.protocol.Batch` es.

Only the inputs a model declares are materialised. Test-time perturbations (``perturb``) and the
two controls (text-swap, location-drop) are applied here, at batch time, so every adapter sees
them identically and no cache has to be rebuilt for them.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..protocol import INPUT_FIELDS, Batch, DatasetInfo
from .prepared import FrameTransform, PreparedSplit, train_statistics

if TYPE_CHECKING:
    from .person_features import PersonFeatures


CONTROLS = ("none", "text_swap", "location_drop")


@dataclass(frozen=True)
class Controls:
    """Evaluation-time controls. ``text_swap``: each instance gets the sentence of another person
    of the same clip (instances alone in their clip keep theirs, and are counted).
    ``location_drop``: all candidate boxes are removed."""

    text_swap: bool = False
    location_drop: bool = False

    @classmethod
    def parse(cls, name: str) -> "Controls":
        if name not in CONTROLS:
            raise ValueError(f"unknown control {name!r}; choose one of {', '.join(CONTROLS)}")
        return cls(text_swap=name == "text_swap", location_drop=name == "location_drop")


def dataset_info(train: PreparedSplit, name: str = "unknown") -> DatasetInfo:
    """What models may know before training: shapes, object vocabulary, train prior, mean box."""
    prior, mean_box = train_statistics(train)
    _, t, h, w, _ = train.frames.shape
    return DatasetInfo(
        num_frames=int(t), frame_size=(int(h), int(w)),
        key_frame_size=(int(train.key_frames.shape[1]), int(train.key_frames.shape[2])),
        max_candidates=int(train.cand_boxes.shape[1]),
        object_classes=tuple(train.meta.object_classes), train_prior=prior, mean_box=mean_box,
        name=name,
    )


def text_swap_partner(split: PreparedSplit) -> np.ndarray:
    """For each instance, the row of another instance in the same clip (itself if alone).

    Deterministic: the next instance of the same clip in split order, cyclically.
    """
    partner = np.arange(len(split))
    by_clip: dict[int, list[int]] = {}
    for row, clip in enumerate(split.clip_index.tolist()):
        by_clip.setdefault(clip, []).append(row)
    for rows in by_clip.values():
        for i, row in enumerate(rows):
            partner[row] = rows[(i + 1) % len(rows)]
    return partner


#: Stream tag of the paraphrase draw, so it never shares random numbers with the shuffle.
_PARAPHRASE_STREAM = 4099

#: How a loader picks each instance's sentence: ``None`` = ``texts`` (``v[0]``, the official
#: protocol); an int ``j`` = description ``j`` (the last one where an instance has fewer);
#: ``"sample"`` = one description drawn per instance and epoch (paraphrase training).
TextChoice = int | str | None


def paraphrase_slots(split: PreparedSplit, seed: int, epoch: int) -> np.ndarray:
    """Which description every instance reads in one training epoch: uniform among its own,
    drawn from ``(seed, epoch)`` only, so the draw does not depend on batch size, thread count
    or which rows a process sees."""
    counts = split.paraphrase_counts()
    return np.random.default_rng([seed, _PARAPHRASE_STREAM, epoch]).integers(counts)


class BatchLoader:
    """Iterate over a split in batches. No sample is dropped or padded.

    ``shuffle`` uses a generator seeded from ``seed`` and the epoch, so runs are reproducible.
    ``perturb`` (optional) transforms each clip's frames; its randomness is seeded per instance,
    so perturbed evaluation does not depend on batch size. ``text`` picks the sentences (see
    :data:`TextChoice`); only training asks for ``"sample"``, evaluation always reads ``v[0]``.
    """

    def __init__(
        self,
        split: PreparedSplit,
        inputs: frozenset[str],
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        controls: Controls = Controls(),
        perturb: FrameTransform | None = None,
        text: TextChoice = None,
    ) -> None:
        unknown = set(inputs) - INPUT_FIELDS
        if unknown:
            raise ValueError(f"unknown batch inputs {sorted(unknown)}; known: {sorted(INPUT_FIELDS)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.split, self.inputs, self.batch_size = split, frozenset(inputs), batch_size
        self.shuffle, self.seed, self.controls, self.perturb = shuffle, seed, controls, perturb
        if not (text is None or text == "sample" or (isinstance(text, int) and not isinstance(text, bool)
                                                       and text >= 0)):
            raise ValueError(f"text must be None, 'sample' or a description index >= 0, got {text!r}")
        if text is not None:
            split.paraphrase_counts()  # refuse now, naming the folder, if there are no paraphrases
        self.text = text
        self.epoch = 0
        self._slots: tuple[int, np.ndarray] | None = None
        self._partner = text_swap_partner(split) if controls.text_swap else None
        self._person: PersonFeatures | None = None

    def __len__(self) -> int:
        return (len(self.split) + self.batch_size - 1) // self.batch_size

    def order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.split))
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.split))

    def __iter__(self) -> Iterator[Batch]:
        order, epoch = self.order(), self.epoch
        self.epoch += 1
        for start in range(0, len(order), self.batch_size):
            yield self.make_batch(order[start:start + self.batch_size], epoch)

    def text_slots(self, epoch: int | None = None) -> np.ndarray | None:
        """The description index every instance reads in ``epoch`` (default: the current one);
        None when the loader reads ``texts``."""
        if self.text is None:
            return None
        if isinstance(self.text, int):
            return np.minimum(self.text, self.split.paraphrase_counts() - 1)
        epoch = self.epoch if epoch is None else epoch
        if self._slots is None or self._slots[0] != epoch:
            self._slots = (epoch, paraphrase_slots(self.split, self.seed, epoch))
        return self._slots[1]

    def make_batch(self, rows: np.ndarray, epoch: int | None = None) -> Batch:
        s = self.split
        clips = s.clip_index[rows]
        batch = Batch(
            keys=[s.keys[i] for i in rows],
            index=torch.as_tensor(rows, dtype=torch.long),
            gt_box=torch.as_tensor(np.asarray(s.boxes[rows]), dtype=torch.float32),
            labels=torch.as_tensor(np.asarray(s.labels[rows]), dtype=torch.float32),
        )
        if "frames" in self.inputs:
            clips_u8 = np.stack([self._frames(int(r), int(c)) for r, c in zip(rows, clips)])
            batch.frames = torch.from_numpy(clips_u8).permute(0, 1, 4, 2, 3).float().div_(255.0)
        if "key_frame" in self.inputs:
            kf = np.stack([self._key_frame(int(r), int(c)) for r, c in zip(rows, clips)])
            batch.key_frame = torch.from_numpy(kf).permute(0, 3, 1, 2).float().div_(255.0)
        if "text" in self.inputs:
            src = rows if self._partner is None else self._partner[rows]
            slots = self.text_slots(epoch)
            if slots is None:
                batch.text = [s.texts[i] for i in src]
            else:
                assert s.paraphrases is not None  # text_slots checked it
                batch.text = [s.paraphrases[i][slots[i]] for i in src]
        if "candidates" in self.inputs or "person_features" in self.inputs:
            mask = np.asarray(s.cand_mask[clips]).copy()
            if self.controls.location_drop:
                mask[:] = False
        if "person_features" in self.inputs:
            batch.person_feats, batch.clip_feats = self.person_features().gather(clips, mask)
        if "candidates" in self.inputs:
            batch.cand_boxes = torch.as_tensor(np.asarray(s.cand_boxes[clips]), dtype=torch.float32)
            batch.cand_labels = torch.as_tensor(np.asarray(s.cand_labels[clips]), dtype=torch.long)
            batch.cand_scores = torch.as_tensor(np.asarray(s.cand_scores[clips]), dtype=torch.float32)
            batch.cand_mask = torch.as_tensor(mask)
            batch.cand_boxes[~batch.cand_mask] = 0.0
            batch.cand_scores[~batch.cand_mask] = 0.0
        return batch

    def person_features(self) -> "PersonFeatures":
        """The split's person-stage features (cached on disk; under a perturbation, computed from
        the perturbed frames once per loader)."""
        if self._person is None:
            from .person_features import features_for

            self._person = features_for(self.split, perturb=self.perturb, seed=self.seed)
        return self._person

    def _rng(self, row: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, 7919, row])

    def _frames(self, row: int, clip: int) -> np.ndarray:
        frames = np.asarray(self.split.frames[clip])
        return frames if self.perturb is None else self.perturb(frames, self._rng(row))

    def _key_frame(self, row: int, clip: int) -> np.ndarray:
        kf = np.asarray(self.split.key_frames[clip])
        if self.perturb is None:
            return kf
        return self.perturb(kf[None], self._rng(row))[0]
