"""The results store: prediction files, atomic commits, integrity, locks, recovery, tables."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow.parquet as pq
import pytest

from ravar_bench.protocol import Predictions, canonical_json
from ravar_bench.store import (
    Store, StoreError, load_results, missing_jobs, read_predictions, write_predictions,
)


def preds(n: int = 5, seed: int = 0) -> Predictions:
    rng = np.random.default_rng(seed)
    keys = [f"vid{i // 2}___{902 + i}___{i % 2}" for i in range(n)]
    return Predictions(keys, rng.normal(size=(n, 80)), rng.random((n, 4)))


def record(metric: float = 40.0) -> dict:
    return {"created": 1.0, "seed": 0, "adapter": "prior",
            "baseline": {"name": "prior", "title": "Prior", "domain": "control", "paper_row": None},
            "results": {"test": {"none": {"n": 5, "metrics": {"paper_v1": {"mAP": metric, "mIoU": 1.0}},
                                          "ci": {"paper_v1.mAP": {"low": metric - 1, "high": metric + 1}}}}}}


def commit(store: Store, job_id: str = "a" * 16, metric: float = 40.0, replace: bool = False):
    p = preds()
    return store.commit(job_id, record(metric), {("test", "none"): (p, {"data_spec": "x"}),
                                                 ("val", "fog@3"): (p, {"data_spec": "x"})}, replace=replace)


def test_prediction_files_round_trip_with_their_metadata(tmp_path):
    p = preds(7)
    write_predictions(tmp_path / "p.parquet", p, {"split": "test", "data_spec": "synth:tiny@0"})
    back, meta = read_predictions(tmp_path / "p.parquet")
    assert back.keys == p.keys
    np.testing.assert_array_equal(back.scores, p.scores)
    np.testing.assert_array_equal(back.boxes, p.boxes)
    assert meta["split"] == "test" and meta["format"] == "ravar-bench-predictions"
    table = pq.read_table(tmp_path / "p.parquet")
    assert table.column_names == ["key", "video_id", "row", "scores", "box"]
    assert table.column("video_id").to_pylist()[:3] == ["vid0", "vid0", "vid1"]
    import pyarrow as pa

    for name, width in (("scores", 80), ("box", 4)):
        kind = table.schema.field(name).type
        assert pa.types.is_fixed_size_list(kind) and kind.list_size == width
        assert kind.value_type == pa.float32()


def test_reading_a_foreign_or_missing_file_names_it(tmp_path):
    import pyarrow as pa

    pq.write_table(pa.table({"a": [1]}), tmp_path / "other.parquet")
    with pytest.raises(StoreError, match="other.parquet"):
        read_predictions(tmp_path / "other.parquet")
    with pytest.raises(StoreError, match="nothing.parquet"):
        read_predictions(tmp_path / "nothing.parquet")


def test_commit_writes_a_complete_record_with_checksums(tmp_path):
    store = Store(tmp_path / "out")
    assert not store.has("a" * 16)
    final = commit(store)
    rec = store.record("a" * 16)
    assert final.name == "a" * 16 and store.has("a" * 16) and store.job_ids() == ["a" * 16]
    assert set(rec["files"]) == {"predictions/test.none.parquet", "predictions/val.fog@3.parquet"}
    assert rec["format"] == "ravar-bench-record" and rec["job_id"] == "a" * 16
    back, meta = store.predictions("a" * 16, "val", "fog@3")
    assert meta["condition"] == "fog@3" and meta["job_id"] == "a" * 16 and len(back.keys) == 5
    assert store.verify("a" * 16) == []
    assert list((store.root / ".tmp").iterdir()) == []


def test_verify_detects_missing_and_altered_files(tmp_path):
    store = Store(tmp_path / "out")
    commit(store)
    folder = store.job_dir("a" * 16)
    (folder / "predictions/val.fog@3.parquet").unlink()
    write_predictions(folder / "predictions/test.none.parquet", preds(seed=1), {})
    problems = store.verify("a" * 16)
    assert any("val.fog@3.parquet: missing" in p for p in problems)
    assert any("test.none.parquet: checksum" in p for p in problems)


def test_commit_refuses_to_overwrite_unless_replacing(tmp_path):
    store = Store(tmp_path / "out")
    commit(store, metric=40.0)
    with pytest.raises(StoreError, match="already exists"):
        commit(store, metric=50.0)
    commit(store, metric=50.0, replace=True)
    assert store.record("a" * 16)["results"]["test"]["none"]["metrics"]["paper_v1"]["mAP"] == 50.0
    assert list((store.root / ".trash").iterdir()) == []


def test_store_refuses_a_foreign_nonempty_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("hello")
    with pytest.raises(StoreError, match="not a ravar-bench results directory"):
        Store(tmp_path)
    with pytest.raises(StoreError, match="no store.json"):
        Store(tmp_path / "absent", create=False)


def test_canonical_json_is_order_free_and_rejects_nan():
    assert canonical_json({"b": 1, "a": [1, 2]}) == canonical_json({"a": [1, 2], "b": 1}) == '{"a":[1,2],"b":1}'
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


# --------------------------------------------------------------------------------------- locks
def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_lock_is_exclusive_and_released(tmp_path):
    store = Store(tmp_path / "out")
    lock = store.try_lock("j1")
    assert lock is not None and store.try_lock("j1") is None  # we are alive: it is held
    owner = store.lock_owner("j1")
    assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
    lock.release()
    assert store.lock_owner("j1") is None
    with store.try_lock("j1") as again:
        assert again is not None
    assert store.lock_owner("j1") is None


@pytest.mark.parametrize("owner", [
    {"pid": "dead", "start": None},          # pid of a finished process (filled in below)
    {"pid": "self", "start": "not-my-start-time"},  # our pid, but reused: start time differs
])
def test_stale_lock_of_a_dead_owner_on_this_host_is_taken_over(tmp_path, owner):
    store = Store(tmp_path / "out")
    pid = dead_pid() if owner["pid"] == "dead" else os.getpid()
    store.lock_path("j1").write_text(json.dumps({"host": socket.gethostname(), "pid": pid,
                                                  "start": owner["start"], "since": 0}))
    lock = store.try_lock("j1")
    assert lock is not None and store.lock_owner("j1")["pid"] == os.getpid()
    assert any(e["event"] == "stale_lock_removed" for e in store.events())


def test_lock_of_another_host_is_never_broken(tmp_path):
    store = Store(tmp_path / "out")
    store.lock_path("j1").write_text(json.dumps({"host": "elsewhere.example", "pid": dead_pid()}))
    assert store.try_lock("j1") is None
    assert store.recover()["removed_locks"] == 0


# ------------------------------------------------------------------------------------ recovery
WRITER = textwrap.dedent("""
    import os, sys
    import ravar_bench.store as S
    from ravar_bench.protocol import Predictions
    import numpy as np
    if sys.argv[3] == "die_in_replace":  # die after the old record went to .trash, before the new
        real_rename = os.rename          # one is renamed into place
        def rename(a, b):
            real_rename(a, b)
            if ".trash" in str(b):
                os._exit(137)
        S.os.rename = rename
    store = S.Store(sys.argv[1])
    p = Predictions(["v___1___0", "v___1___1"], np.zeros((2, 80)), np.zeros((2, 4)))
    lock = store.try_lock("b" * 16)
    store.commit("b" * 16, {"x": int(sys.argv[2])},
                 {("test", c): (p, {}) for c in ("none", "fog@1", "fog@2", "fog@3")}, replace=True)
    lock.release()
""")


def run_writer(tmp_path, value: int, fault: str | None, mode: str = "new") -> int:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = {**os.environ, "RAVAR_FAULT": fault or ""}
    return subprocess.run([sys.executable, str(script), str(tmp_path / "out"), str(value), mode],
                          env=env).returncode


def write_in_process(store: Store, value: int) -> None:
    p = Predictions(["v___1___0", "v___1___1"], np.zeros((2, 80)), np.zeros((2, 4)))
    with store.try_lock("b" * 16):
        store.commit("b" * 16, {"x": value}, {("test", "none"): (p, {})}, replace=True)


def test_a_writer_killed_mid_write_leaves_no_record_and_is_cleaned_up(tmp_path):
    assert run_writer(tmp_path, 1, "mid_write:1") == 137
    store = Store(tmp_path / "out")
    assert not store.has("b" * 16) and not store.job_dir("b" * 16).exists()
    assert len(list((store.root / ".tmp").iterdir())) == 1
    assert store.lock_owner("b" * 16) is not None  # the dead writer's lock
    assert store.recover() == {"restored": 0, "removed_tmp": 1, "removed_locks": 1}
    write_in_process(store, 2)
    assert store.record("b" * 16)["x"] == 2 and store.verify("b" * 16) == []


def test_a_writer_killed_while_replacing_gets_the_old_record_back(tmp_path):
    store = Store(tmp_path / "out")
    write_in_process(store, 1)
    assert run_writer(tmp_path, 2, None, "die_in_replace") == 137
    assert not store.has("b" * 16)
    assert store.recover()["restored"] == 1
    assert store.record("b" * 16)["x"] == 1 and store.verify("b" * 16) == []


def test_events_are_appended_and_cut_lines_skipped(tmp_path):
    store = Store(tmp_path / "out")
    store.log_event("start", "j1", label="x")
    with open(store.root / "events.jsonl", "a") as f:
        f.write('{"event": "do')  # a line cut by a crash
    store.log_event("done", "j1")
    assert [e["event"] for e in store.events()] == ["start", "done"]


# ------------------------------------------------------------------------------------- tables
def test_load_results_and_missing_jobs(tmp_path):
    store = Store(tmp_path / "out")
    commit(store, "a" * 16, metric=40.0)
    store.write_suite_manifest("s", {"suite": "s", "entries": [
        {"index": 0, "label": "Row A", "jobs": [{"seed": 0, "job_id": "a" * 16}, {"seed": 1, "job_id": "c" * 16}]}]})
    df = load_results(store.root, suite="s")
    row = df[(df.metric == "mAP")].iloc[0]
    assert (row.label, row.value, row.ci_low, row.ci_high, row.split, row.condition) == \
        ("Row A", 40.0, 39.0, 41.0, "test", "none")
    assert set(df.metric) == {"mAP", "mIoU"}
    assert missing_jobs(store.root, "s") == [{"entry": 0, "label": "Row A", "seed": 1, "job_id": "c" * 16}]
    with pytest.raises(StoreError, match="never run"):
        load_results(store.root, suite="other")
