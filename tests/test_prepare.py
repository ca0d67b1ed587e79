"""prepare_refava: round trip into PreparedSplit, frame policies, candidates, cache reuse, errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ravar_bench.data import prepare as prep
from ravar_bench.data.batches import BatchLoader
from ravar_bench.data.frames import clip_frame_numbers, frame_file
from ravar_bench.data.perturb import get_perturbation
from ravar_bench.data.prepare import PrepareParams, prepare_refava, prepared_path
from ravar_bench.data.prepared import PreparedSplit
from ravar_bench.data.refava import RefAVAError, candidates_name, pickle_name
from ravar_bench.data.safe_pickle import safe_load
from refava_fixtures import default_candidates, frame_colour, write_pickle, write_refava

FS = (24, 32)  # small prepared sizes keep the tests fast


def _prepare(root: Path, out: Path, **kw) -> PreparedSplit:
    kw.setdefault("frame_size", FS)
    kw.setdefault("key_frame_size", (20, 28))
    return prepare_refava(root, "train", out, progress=False, workers=kw.pop("workers", 2), **kw)


def _colour(img: np.ndarray) -> np.ndarray:
    return img.reshape(-1, 3).astype(float).mean(axis=0)


def test_round_trip(tmp_path: Path) -> None:
    spec = write_refava(tmp_path / "src", candidates=default_candidates())
    out = tmp_path / "cache" / "train"
    split = _prepare(tmp_path / "src", out)
    loaded = PreparedSplit.load(out)
    for s in (split, loaded):
        assert s.keys == [i.key for i in spec.instances]
        assert s.texts == [i.text for i in spec.instances]
        np.testing.assert_allclose(s.boxes, [i.box for i in spec.instances], atol=1e-6)
        for row, inst in enumerate(spec.instances):
            assert sorted(np.flatnonzero(s.labels[row]) + 1) == sorted(inst.labels)
    assert loaded.num_clips == 3 and list(loaded.clip_index) == [0, 0, 1, 2, 2]
    assert loaded.frames.shape == (3, 8, *FS, 3) and loaded.key_frames.shape == (3, 20, 28, 3)
    assert loaded.meta.object_classes == ["person", "chair", "cup"]
    assert loaded.meta.split == "train" and loaded.meta.frame_policy == "correct"
    assert len(loaded.meta.fingerprint) == 64
    # candidates: K = 3 (largest clip), vidA___905 has none, labels index the vocabulary
    assert loaded.cand_boxes.shape == (3, 3, 4)
    assert loaded.cand_mask.tolist() == [[True] * 3, [False] * 3, [True, False, False]]
    assert loaded.cand_labels[0].tolist() == [0, 0, 2] and loaded.cand_labels[2, 0] == 1
    np.testing.assert_allclose(loaded.cand_scores[0], [0.9, 0.8, 0.4], atol=1e-6)
    # correct policy: frame t is file clip_frame_numbers(ts)[t]; key frame is the key file
    numbers, key = clip_frame_numbers(1000, 8)
    for t, n in enumerate(numbers):
        np.testing.assert_allclose(_colour(loaded.frames[2, t]), frame_colour(n), atol=4)
    np.testing.assert_allclose(_colour(loaded.key_frames[2]), frame_colour(key), atol=4)


def test_official_repeat_reads_one_still(tmp_path: Path) -> None:
    write_refava(tmp_path / "src", policies=("official_repeat",))
    split = _prepare(tmp_path / "src", tmp_path / "out", policy="official_repeat")
    still = (1000 - 900) * 30 - 45
    clip = np.asarray(split.frames[2])
    assert (clip == clip[0]).all()
    np.testing.assert_allclose(_colour(clip[0]), frame_colour(still), atol=4)
    np.testing.assert_allclose(_colour(split.key_frames[2]), frame_colour(still), atol=4)
    assert split.meta.frame_policy == "official_repeat"


def test_bad_data_writes_nothing(tmp_path: Path) -> None:
    write_refava(tmp_path / "src")
    lab = tmp_path / "src" / pickle_name("train", "label")
    d = safe_load(lab)
    d["vidA___902___1"] = [0]
    write_pickle(lab, d)
    (tmp_path / "src" / frame_file("vidB", clip_frame_numbers(1000, 8)[1])).unlink()
    out = tmp_path / "cache" / "deep" / "train"
    with pytest.raises(RefAVAError) as err:
        _prepare(tmp_path / "src", out)
    msg = str(err.value)
    assert "vidA___902___1" in msg and pickle_name("train", "label") in msg and "vidB___1000" in msg
    assert len(err.value.problems) == 2
    assert not (tmp_path / "cache").exists()


def test_skip_invalid_drops_bad_instances(tmp_path: Path) -> None:
    write_refava(tmp_path / "src")
    (tmp_path / "src" / frame_file("vidB", clip_frame_numbers(1000, 8)[1])).unlink()
    split = _prepare(tmp_path / "src", tmp_path / "out", skip_invalid=True)
    assert split.keys == ["vidA___902___0", "vidA___902___1", "vidA___905___0"]
    assert split.meta.extra["skipped_instances"] == 2


def test_corrupt_jpeg_names_file_and_cleans_up(tmp_path: Path) -> None:
    write_refava(tmp_path / "src")
    bad = tmp_path / "src" / frame_file("vidA", clip_frame_numbers(905, 8)[0][3])
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(RefAVAError, match=str(bad)):
        _prepare(tmp_path / "src", tmp_path / "cache" / "train")
    assert not (tmp_path / "cache").exists()


def test_cache_reuse_and_invalidation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    write_refava(src, candidates=default_candidates())
    params = PrepareParams(frame_size=FS, key_frame_size=(20, 28))
    out = prepared_path(tmp_path / "cache", src, "train", params)
    assert out == prepared_path(tmp_path / "cache", src, "train", params.as_dict())
    assert out != prepared_path(tmp_path / "cache", src, "train", PrepareParams(num_frames=4))
    assert out != prepared_path(tmp_path / "cache", src, "val", params)
    first = _prepare(src, out)

    def boom(*a, **k):
        raise AssertionError("decoded again")

    monkeypatch.setattr(prep, "_decode_clip", boom)
    again = _prepare(src, out)  # same params and files: a no-op
    assert again.meta.fingerprint == first.meta.fingerprint
    with pytest.raises(AssertionError, match="decoded again"):
        _prepare(src, out, force=True)
    with pytest.raises(AssertionError, match="decoded again"):
        _prepare(src, out, key_frame_size=(16, 16))  # other params: rebuild
    cand = src / candidates_name("train")
    cand.write_bytes(cand.read_bytes() + b"")  # same bytes: still a no-op
    _prepare(src, out)
    write_pickle(cand, {"vidA___902": {"boxes": [], "labels": [], "scores": []}})
    with pytest.raises(AssertionError, match="decoded again"):
        _prepare(src, out)  # candidates changed: rebuild
    assert json.loads((out / "meta.json").read_text())["fingerprint"] == first.meta.fingerprint


def test_no_candidates(tmp_path: Path) -> None:
    write_refava(tmp_path / "src", candidates=default_candidates())
    split = _prepare(tmp_path / "src", tmp_path / "out", detector="none")
    assert split.cand_boxes.shape == (3, 1, 4) and not split.cand_mask.any()
    assert split.meta.object_classes == ["person"]
    write_refava(tmp_path / "src2")  # "file" without a candidates file: none, with a warning
    split = _prepare(tmp_path / "src2", tmp_path / "out2")
    assert not split.cand_mask.any() and split.meta.extra["candidates_source"].startswith("none")


def test_vocabulary_spans_splits(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_refava(src, candidates=default_candidates())
    write_pickle(src / candidates_name("val"),
                 {"vidA___902": {"boxes": [[0, 0, 1, 1]], "labels": ["bicycle"], "scores": [1.0]}})
    split = _prepare(src, tmp_path / "out")
    assert split.meta.object_classes == ["person", "bicycle", "chair", "cup"]
    pinned = _prepare(src, tmp_path / "out2", object_classes=["person", "cup", "chair", "bicycle", "dog"])
    assert pinned.cand_labels[0].tolist() == [0, 0, 1]
    with pytest.raises(RefAVAError, match="not in object_classes"):
        _prepare(src, tmp_path / "out3", object_classes=["person", "cup"])


def test_hog_detector_wiring(tmp_path: Path) -> None:
    pytest.importorskip("cv2")
    from ravar_bench.data.detect import hog_person_boxes

    write_refava(tmp_path / "src", frame_hw=(160, 96))
    split = _prepare(tmp_path / "src", tmp_path / "out", detector="hog")
    assert split.meta.object_classes == ["person"] and split.cand_boxes.shape[0] == 3
    assert split.meta.extra["candidates_source"] == "hog"
    boxes, scores = hog_person_boxes(np.zeros((200, 120, 3), np.uint8))
    assert boxes.shape == (len(scores), 4) and boxes.dtype == np.float32


def test_bad_parameters(tmp_path: Path) -> None:
    write_refava(tmp_path / "src")
    for kw, match in (({"detector": "detr"}, "detector"), ({"policy": "x"}, "policy"),
                      ({"num_frames": 91}, "num_frames"), ({"frame_size": (0, 4)}, "frame_size")):
        with pytest.raises(ValueError, match=match):
            _prepare(tmp_path / "src", tmp_path / "out", **kw)
    assert not (tmp_path / "out").exists()


def test_batches_with_perturbation(tmp_path: Path) -> None:
    write_refava(tmp_path / "src", candidates=default_candidates())
    split = _prepare(tmp_path / "src", tmp_path / "out")
    inputs = frozenset({"frames", "key_frame", "text", "candidates"})
    clean = next(iter(BatchLoader(split, inputs, batch_size=5)))
    loader = BatchLoader(split, inputs, batch_size=5, perturb=get_perturbation("shot_noise", 3))
    noisy, noisy2 = next(iter(loader)), next(iter(loader))
    assert noisy.frames.shape == clean.frames.shape == (5, 8, 3, *FS)
    assert noisy.key_frame.shape == (5, 3, 20, 28)
    assert not np.allclose(noisy.frames.numpy(), clean.frames.numpy())
    np.testing.assert_array_equal(noisy.frames.numpy(), noisy2.frames.numpy())
