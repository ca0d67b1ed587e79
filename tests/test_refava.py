"""RefAVA reading: the safe unpickler, joining by key, and validation that names file, key, field."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from ravar_bench.data.frames import clip_frame_numbers, frame_file
from ravar_bench.data.refava import (
    RefAVAError, RefAVAFolder, candidates_name, load_annotations, pickle_name, validate_folder,
)
from ravar_bench.data.safe_pickle import PickleReadError, UnsafePickleError, safe_load, safe_loads
from refava_fixtures import default_candidates, default_instances, write_pickle, write_refava


class _Exploit:
    """Unpickling this runs ``touch <marker>`` under plain pickle."""

    def __init__(self, marker: Path | str = "/dev/null") -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvalExploit:
    def __reduce__(self):
        return (eval, ("1 + 1",))


# ------------------------------------------------------------------------------ safe unpickler
def test_safe_pickle_refuses_code(tmp_path: Path) -> None:
    path = tmp_path / "evil.pkl"
    write_pickle(path, {"k": [_Exploit(tmp_path / "pwned")]})
    with pytest.raises(UnsafePickleError) as err:
        safe_load(path)
    assert str(path) in str(err.value) and "system" in err.value.global_name
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(UnsafePickleError, match="eval"):
        safe_loads(pickle.dumps(_EvalExploit()))


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_safe_pickle_loads_data(tmp_path: Path, protocol: int) -> None:
    data = {"a": [1, 2.5, "x", None, True], "b": np.arange(6, dtype=np.float32).reshape(2, 3),
            "c": (np.int64(3), np.float64(0.5)), "d": {1, 2}, "e": b"raw",
            "f": np.array(["s", "t"]), "g": np.array([[1, "o"]], dtype=object)}
    path = tmp_path / "ok.pkl"
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    out = safe_load(path)
    assert out["a"] == data["a"] and out["c"] == data["c"] and out["d"] == data["d"]
    assert out["e"] == b"raw"
    for k in "bfg":
        np.testing.assert_array_equal(out[k], data[k])
        assert out[k].dtype == data[k].dtype


def test_safe_pickle_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "cut.pkl"
    path.write_bytes(pickle.dumps({"a": list(range(100))})[:20])
    with pytest.raises(PickleReadError, match="cut.pkl"):
        safe_load(path)
    with pytest.raises(PickleReadError, match="missing.pkl"):
        safe_load(tmp_path / "missing.pkl")


# ------------------------------------------------------------------------------------ loading
def test_load_joins_by_key_not_order(tmp_path: Path) -> None:
    spec = write_refava(tmp_path)
    anns = load_annotations(tmp_path, "train")
    assert [a.key for a in anns] == [i.key for i in spec.instances]  # label-dict order
    for ann, inst in zip(anns, spec.instances):
        assert ann.text == inst.text
        assert ann.box == pytest.approx(tuple(inst.box))
        assert ann.label_ids == tuple(sorted(inst.labels))
    a = anns[3]
    assert (a.video_id, a.timestamp, a.person_id, a.clip_key) == ("vidB", 1000, "3", "vidB___1000")
    assert validate_folder(tmp_path, splits=("train",)) == []


def test_candidates_read(tmp_path: Path) -> None:
    write_refava(tmp_path, candidates=default_candidates())
    cands = RefAVAFolder(tmp_path).candidates("train")
    assert cands is not None and cands["vidA___902"].labels == ("person", "person", "cup")
    assert RefAVAFolder(tmp_path).candidates("val") is None


# --------------------------------------------------------------------------------- validation
K = "vidA___902___1"  # the instance the malformed cases damage
LABEL, BOXES = pickle_name("train", "label"), pickle_name("train", "keyframe")
TEXT = pickle_name("train", "description")


def _patch(root: Path, kind: str, key: str, value: object, delete: bool = False) -> None:
    path = root / pickle_name("train", kind)
    d = safe_load(path)
    if delete:
        del d[key]
    else:
        d[key] = value
    write_pickle(path, d)


CASES = {
    # name: (kind, value, expected file, expected field, message fragment)
    "box_three_numbers": ("keyframe", np.array([[0.1, 0.2, 0.3]]), BOXES, "box", "shape"),
    "box_flat": ("keyframe", [0.1, 0.2, 0.3, 0.4], BOXES, "box", "flat"),
    "box_outside": ("keyframe", [[0.1, 0.2, 1.5, 0.9]], BOXES, "box", "outside [0, 1]"),
    "box_swapped": ("keyframe", [[0.6, 0.2, 0.3, 0.9]], BOXES, "box", "x2 < x1"),
    "box_nan": ("keyframe", [[0.1, np.nan, 0.3, 0.9]], BOXES, "box", "non-finite"),
    "box_text": ("keyframe", "0.1 0.2 0.3 0.4", BOXES, "box", "array-like"),
    "box_ragged": ("keyframe", [[0.1, 0.2, 0.3, 0.4], [0.1]], BOXES, "box", "array-like"),
    "label_zero": ("label", [0, 5], LABEL, "labels", "outside 1..80"),
    "label_81": ("label", [81], LABEL, "labels", "outside 1..80"),
    "label_float": ("label", [2.0], LABEL, "labels", "must be ints"),
    "label_str": ("label", ["3"], LABEL, "labels", "must be ints"),
    "label_empty": ("label", [], LABEL, "labels", "empty label list"),
    "label_dict": ("label", {"a": 1}, LABEL, "labels", "expected a list"),
    "text_empty": ("description", ["  "], TEXT, "text", "empty"),
    "text_list_empty": ("description", [], TEXT, "text", "empty description"),
    "text_not_str": ("description", [42], TEXT, "text", "must be a string"),
    "text_bare_str": ("description", "a man", TEXT, "text", "bare string"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_values(tmp_path: Path, case: str) -> None:
    kind, value, file, field, fragment = CASES[case]
    write_refava(tmp_path)
    _patch(tmp_path, kind, K, value)
    problems = validate_folder(tmp_path, splits=("train",))
    assert len(problems) == 1, problems
    p = problems[0]
    assert Path(p.file).name == file and p.key == K and p.field == field
    assert fragment in p.message
    with pytest.raises(RefAVAError) as err:  # loading refuses too, naming file and key
        load_annotations(tmp_path, "train")
    assert file in str(err.value) and K in str(err.value)


def test_key_missing_from_one_dict(tmp_path: Path) -> None:
    write_refava(tmp_path)
    _patch(tmp_path, "description", K, None, delete=True)
    _patch(tmp_path, "keyframe", "vidZ___950___0", [[0.1, 0.1, 0.2, 0.2]])  # extra key
    problems = validate_folder(tmp_path, splits=("train",))
    by_key = {(Path(p.file).name, p.key): p for p in problems}
    p = by_key[(TEXT, K)]
    assert p.field == "key" and LABEL in p.message and BOXES in p.message
    assert (LABEL, "vidZ___950___0") in by_key and (TEXT, "vidZ___950___0") in by_key
    assert BOXES in by_key[(LABEL, "vidZ___950___0")].message


@pytest.mark.parametrize("bad_key", ["vidA__902__9", "vidA___t902___9", "vidA___902", "___902___1"])
def test_malformed_key(tmp_path: Path, bad_key: str) -> None:
    write_refava(tmp_path)
    for kind, value in (("label", [3]), ("keyframe", [[0.1, 0.1, 0.2, 0.2]]), ("description", ["x"])):
        _patch(tmp_path, kind, bad_key, value)
    problems = validate_folder(tmp_path, splits=("train",))
    assert [(Path(p.file).name, p.key, p.field) for p in problems] == [(LABEL, bad_key, "key")]


def test_missing_and_refused_pickles(tmp_path: Path) -> None:
    write_refava(tmp_path)
    (tmp_path / TEXT).unlink()
    write_pickle(tmp_path / LABEL, {K: [_Exploit(tmp_path / "pwned")]})
    (tmp_path / BOXES).write_bytes(pickle.dumps([1, 2, 3]))  # not a dict
    problems = validate_folder(tmp_path, splits=("train",))
    got = {(Path(p.file).name, p.field) for p in problems}
    assert got == {(TEXT, "file"), (LABEL, "pickle"), (BOXES, "file")}
    refused = next(p for p in problems if p.field == "pickle")
    assert "system" in refused.message
    assert not (tmp_path / "pwned").exists()


def test_truncated_pickle(tmp_path: Path) -> None:
    write_refava(tmp_path)
    (tmp_path / LABEL).write_bytes((tmp_path / LABEL).read_bytes()[:30])
    problems = validate_folder(tmp_path, splits=("train",))
    assert [(Path(p.file).name, p.field) for p in problems] == [(LABEL, "pickle")]


def test_missing_frames_and_timestamps(tmp_path: Path) -> None:
    write_refava(tmp_path)
    numbers, key = clip_frame_numbers(1000, 8)
    (tmp_path / frame_file("vidB", key)).unlink()
    (tmp_path / frame_file("vidB", numbers[0])).unlink()
    for kind, value in (("label", [3]), ("keyframe", [[0.1, 0.1, 0.2, 0.2]]), ("description", ["x"])):
        _patch(tmp_path, kind, "vidA___901___0", value)  # clip starts before frame 1
        _patch(tmp_path, kind, "vidC___950___0", value)  # no frame folder at all
    problems = validate_folder(tmp_path, splits=("train",))
    by_key = {p.key: p for p in problems}
    assert set(by_key) == {"vidB___1000", "vidA___901", "vidC___950"}
    p = by_key["vidB___1000"]
    assert p.field == "frames" and p.file == str(tmp_path / frame_file("vidB", numbers[0]))
    assert "2 of 9" in p.message and "vidB___1000___3" in p.message
    assert by_key["vidA___901"].field == "timestamp"
    assert by_key["vidC___950"].file.endswith("frames/vidC")


def test_frame_policy_official_repeat_needs_one_still(tmp_path: Path) -> None:
    spec = write_refava(tmp_path, policies=("official_repeat",))
    assert spec.frame_numbers["vidB"] == {(1000 - 900) * 30 - 45}
    assert validate_folder(tmp_path, splits=("train",), policy="official_repeat") == []
    assert validate_folder(tmp_path, splits=("train",), policy="correct")  # other frames missing


def test_reports_every_problem_across_splits(tmp_path: Path) -> None:
    write_refava(tmp_path)
    _patch(tmp_path, "label", K, [99])
    _patch(tmp_path, "keyframe", "vidA___905___0", [[0.9, 0.1, 0.2, 0.2]])
    _patch(tmp_path, "description", "vidB___1000___4", [""])
    problems = validate_folder(tmp_path)  # val and test are missing entirely
    assert {p.key for p in problems if p.key} == {K, "vidA___905___0", "vidB___1000___4"}
    missing = [p for p in problems if p.field == "file"]
    assert len(missing) == 6  # three pickles for each of val and test


def test_malformed_candidates(tmp_path: Path) -> None:
    cands = default_candidates()
    cands["vidA___902"]["scores"] = [0.9]  # length mismatch
    cands["vidB___1000"]["boxes"] = [[0.2, 0.3, 1.7, 1.0]]
    cands["vidB"] = {"boxes": [], "labels": [], "scores": []}  # malformed clip key
    write_refava(tmp_path, candidates=cands)
    problems = validate_folder(tmp_path, splits=("train",))
    got = {(p.key, p.field) for p in problems}
    assert got == {("vidA___902", "candidates"), ("vidB___1000", "candidates"), ("vidB", "key")}
    assert all(Path(p.file).name == candidates_name("train") for p in problems)


def test_empty_candidates_entry_is_fine(tmp_path: Path) -> None:
    write_refava(tmp_path, candidates={"vidA___902": {"boxes": [], "labels": [], "scores": []}})
    assert validate_folder(tmp_path, splits=("train",)) == []


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_frames"):
        validate_folder("/nonexistent", num_frames=0)
    with pytest.raises(ValueError, match="policy"):
        validate_folder("/nonexistent", policy="nope")  # type: ignore[arg-type]


def test_nonexistent_root_is_reported_not_raised(tmp_path: Path) -> None:
    problems = validate_folder(tmp_path / "nope", splits=("val",))
    assert [p.field for p in problems] == ["file"] * 3


def test_default_instances_are_valid() -> None:
    # guard for the fixture itself: every default instance is well formed
    assert len({i.key for i in default_instances()}) == 5
