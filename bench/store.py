"""The results store: one folder per finished job, written atomically, safe to share.

A results directory (``--out``) is the unit the runner, ``score`` and the reports read. The layout
and the record schema are documented in ``docs/store.md``; that document is the contract, this
module its implementation. In short::

    <out>/store.json                    {"format": "ravar-bench-store", "version": 1}
    <out>/jobs/<job_id>/record.json     metrics, CIs, efficiency, provenance, config (a job exists
                                        iff this file exists)
    <out>/jobs/<job_id>/predictions/<split>.<condition>.parquet   per-sample scores and boxes
    <out>/suites/<suite>.json           the latest expansion of a suite: entries -> job ids
    <out>/failures/<job_id>.json        the last error of a job that failed (no record)
    <out>/events.jsonl                  append-only log: start / done / skip / fail per job
    <out>/.locks/<job_id>.lock          a runner is working on the job (host, pid)
    <out>/.tmp/  <out>/.trash/          in-progress writes and replaced records

Why this shape: a crash (``kill -9`` included) at any instant leaves either the old state or the
new one, because a job folder is built under ``.tmp/`` (every file fsync'ed) and renamed into
``jobs/`` in one ``rename(2)``; a half-written folder never has the final name. Per-job lock files
(``O_EXCL``) keep concurrent runners, Ray workers included, from doing a job twice.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .protocol import Predictions, split_key

log = logging.getLogger(__name__)

STORE_FORMAT = "ravar-bench-store"
STORE_VERSION = 1
RECORD_FORMAT = "ravar-bench-record"
RECORD_VERSION = 1
PREDICTIONS_FORMAT = "ravar-bench-predictions"
PREDICTIONS_VERSION = 1
#: Parquet schema-metadata key that holds the JSON metadata of a prediction file.
META_KEY = b"ravar_bench"


class StoreError(RuntimeError):
    """The results directory or one of its files is unusable; the message names the path."""


# ------------------------------------------------------------------------------ fault injection
_fault_counts: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Test hook: ``RAVAR_FAULT="name:N"`` kills the process (exit 137, no cleanup) the N-th time
    this process reaches the point ``name``. Several specs may be given, comma-separated.

    Points: ``after_job`` (a record was committed), ``mid_write`` (a record's files are half
    written in ``.tmp``), ``before_rename`` (all files written, not yet renamed), ``after_rename``
    (record in place, lock not yet released), ``mid_train`` (first training step of a job)."""
    spec = os.environ.get("RAVAR_FAULT", "")
    if not spec:
        return
    _fault_counts[name] = _fault_counts.get(name, 0) + 1
    for item in spec.split(","):
        point, _, count = item.strip().partition(":")
        if point == name and count.strip().isdigit() and int(count) == _fault_counts[name]:
            os._exit(137)


# ------------------------------------------------------------------------------------ helpers
def _jsonable(value: Any) -> Any:
    """Make numpy scalars/arrays, tuples and non-finite floats JSON-safe (NaN/inf -> None)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems refuse directory fsync; rename still holds
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_json_atomic(path: Path, value: Any) -> None:
    """Write JSON to a temporary sibling, fsync, rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(_jsonable(value), indent=1, allow_nan=False))
    _fsync_file(tmp)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def condition_file_name(split: str, condition: str) -> str:
    """``predictions/<split>.<condition>.parquet``; conditions look like ``none``, ``fog@3``,
    ``text_swap+fog@3`` (no path separators)."""
    for part, what in ((split, "split"), (condition, "condition")):
        if not part or "/" in part or part.startswith("."):
            raise StoreError(f"invalid {what} name {part!r} for a prediction file")
    return f"predictions/{split}.{condition}.parquet"


# ------------------------------------------------------------------------------- predictions
def write_predictions(path: str | Path, preds: Predictions, meta: Mapping[str, Any]) -> None:
    """Write per-sample predictions as Parquet: columns ``key``, ``video_id``, ``row`` (split
    order), ``scores`` (80 x float32), ``box`` (4 x float32); ``meta`` goes into the schema
    metadata (key ``ravar_bench``) so the file says what it is without its record."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = len(preds.keys)
    scores = pa.FixedSizeListArray.from_arrays(pa.array(preds.scores.reshape(-1), pa.float32()), 80)
    boxes = pa.FixedSizeListArray.from_arrays(pa.array(preds.boxes.reshape(-1), pa.float32()), 4)
    full_meta = {"format": PREDICTIONS_FORMAT, "version": PREDICTIONS_VERSION, **dict(meta)}
    table = pa.table(
        {"key": pa.array(preds.keys, pa.string()),
         "video_id": pa.array([split_key(k)[0] for k in preds.keys], pa.string()),
         "row": pa.array(np.arange(n, dtype=np.int32)),
         "scores": scores, "box": boxes},
        metadata={META_KEY: json.dumps(_jsonable(full_meta)).encode()},
    )
    pq.write_table(table, str(path))


def read_predictions(path: str | Path) -> tuple[Predictions, dict[str, Any]]:
    """Read a prediction file written by :func:`write_predictions`: (predictions, metadata)."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise StoreError(f"{path}: prediction file does not exist")
    try:
        table = pq.read_table(str(path))
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise StoreError(f"{path}: not a readable Parquet file ({exc})") from exc
    raw = (table.schema.metadata or {}).get(META_KEY)
    meta = json.loads(raw) if raw else {}
    if meta.get("format") != PREDICTIONS_FORMAT:
        raise StoreError(f"{path}: not a ravar-bench prediction file (schema metadata "
                         f"{META_KEY.decode()!r} missing or of another format)")
    for col in ("key", "scores", "box"):
        if col not in table.column_names:
            raise StoreError(f"{path}: column {col!r} missing")
    n = table.num_rows
    scores = np.asarray(table.column("scores").combine_chunks().flatten(), np.float32).reshape(n, -1)
    boxes = np.asarray(table.column("box").combine_chunks().flatten(), np.float32).reshape(n, -1)
    try:
        preds = Predictions(keys=table.column("key").to_pylist(), scores=scores, boxes=boxes)
    except ValueError as exc:
        raise StoreError(f"{path}: {exc}") from exc
    return preds, meta


# ------------------------------------------------------------------------------------- locks
def _proc_start_time(pid: int) -> str | None:
    """Start time of a process (Linux /proc), to tell a live owner from a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _host_tag() -> str:
    """A short, dot-free tag of this host for temporary names (host names may contain dots)."""
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def _private_name(job_id: str) -> str:
    """``<job_id>.<host tag>.<pid>.<random>``: whose it is, so recovery knows if it is orphaned."""
    return f"{job_id}.{_host_tag()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"


def _orphaned(name: str) -> bool:
    """True for a private name created on this host by a process that is gone."""
    parts = name.split(".")
    if len(parts) != 4 or parts[1] != _host_tag() or not parts[2].isdigit():
        return False
    return not _pid_alive(int(parts[2]))


def _owner() -> dict[str, Any]:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start": _proc_start_time(pid),
            "since": time.time()}


def owner_is_dead(owner: Mapping[str, Any]) -> bool:
    """True when ``owner`` (a lock's content) names a process on this host that no longer runs
    (or whose pid was reused). Owners on other hosts are never presumed dead."""
    if owner.get("host") != socket.gethostname():
        return False
    pid = owner.get("pid")
    if not isinstance(pid, int):
        return True
    if not _pid_alive(pid):
        return True
    start = owner.get("start")
    return start is not None and _proc_start_time(pid) not in (None, start)


@dataclass
class JobLock:
    """A held per-job lock; release it (or use as a context manager) when the job is written."""

    path: Path
    owner: dict[str, Any]

    def release(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            current = json.loads(self.path.read_text())
            if current.get("pid") == self.owner["pid"] and current.get("host") == self.owner["host"]:
                self.path.unlink()

    def __enter__(self) -> "JobLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# ------------------------------------------------------------------------------------- store
class Store:
    """A results directory. Cheap to construct; every method is safe under concurrent runners."""

    def __init__(self, root: str | Path, create: bool = True) -> None:
        self.root = Path(root)
        marker = self.root / "store.json"
        if marker.is_file():
            try:
                info = json.loads(marker.read_text())
            except json.JSONDecodeError as exc:
                raise StoreError(f"{marker}: unreadable ({exc})") from exc
            if info.get("format") != STORE_FORMAT:
                raise StoreError(f"{marker}: not a ravar-bench results directory")
            if int(info.get("version", 0)) > STORE_VERSION:
                raise StoreError(f"{marker}: store version {info.get('version')} is newer than this "
                                 f"ravar-bench understands ({STORE_VERSION}); upgrade ravar-bench")
        elif create:
            # hidden names are ignored: another runner may be creating this store right now
            if self.root.exists() and any(not p.name.startswith(".") for p in self.root.iterdir()):
                if not (self.root / "jobs").is_dir():
                    raise StoreError(f"{self.root}: exists, is not empty and is not a ravar-bench "
                                     "results directory; choose another --out")
            self._make_dirs()  # "jobs" first, so a concurrent creator never sees a foreign folder
            write_json_atomic(marker, {"format": STORE_FORMAT, "version": STORE_VERSION})
        else:
            raise StoreError(f"{self.root}: not a ravar-bench results directory (no store.json)")
        self._make_dirs()

    def _make_dirs(self) -> None:
        for sub in ("jobs", "suites", "failures", ".locks", ".tmp", ".trash"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    # --------------------------------------------------------------------------- reading
    def job_dir(self, job_id: str) -> Path:
        return self.root / "jobs" / job_id

    def has(self, job_id: str) -> bool:
        """A job is done iff its final folder holds ``record.json``."""
        return (self.job_dir(job_id) / "record.json").is_file()

    def job_ids(self) -> list[str]:
        jobs = self.root / "jobs"
        return sorted(p.name for p in jobs.iterdir() if (p / "record.json").is_file())

    def record(self, job_id: str) -> dict[str, Any]:
        path = self.job_dir(job_id) / "record.json"
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise StoreError(f"{path}: no record for job {job_id}") from None
        except json.JSONDecodeError as exc:
            raise StoreError(f"{path}: corrupt record ({exc})") from exc

    def records(self, job_ids: list[str] | None = None) -> Iterator[dict[str, Any]]:
        for job_id in (self.job_ids() if job_ids is None else job_ids):
            if self.has(job_id):
                yield self.record(job_id)

    def predictions(self, job_id: str, split: str, condition: str = "none") -> tuple[Predictions, dict]:
        return read_predictions(self.job_dir(job_id) / condition_file_name(split, condition))

    def verify(self, job_id: str) -> list[str]:
        """Problems of a stored job (missing or altered prediction files); empty when sound."""
        try:
            rec = self.record(job_id)
        except StoreError as exc:
            return [str(exc)]
        problems = []
        for rel, digest in rec.get("files", {}).items():
            path = self.job_dir(job_id) / rel
            if not path.is_file():
                problems.append(f"{path}: missing")
            elif sha256_file(path) != digest:
                problems.append(f"{path}: checksum differs from record.json")
        return problems

    def suite_manifest(self, name: str) -> dict[str, Any]:
        path = self.root / "suites" / f"{name}.json"
        if not path.is_file():
            known = sorted(p.stem for p in (self.root / "suites").glob("*.json"))
            raise StoreError(f"{path}: suite {name!r} was never run into this results directory "
                             f"(suites here: {', '.join(known) or 'none'})")
        return json.loads(path.read_text())

    def write_suite_manifest(self, name: str, manifest: Mapping[str, Any]) -> Path:
        path = self.root / "suites" / f"{name}.json"
        write_json_atomic(path, manifest)
        return path

    # --------------------------------------------------------------------------- locking
    def lock_path(self, job_id: str) -> Path:
        return self.root / ".locks" / f"{job_id}.lock"

    def lock_owner(self, job_id: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.lock_path(job_id).read_text())
        except FileNotFoundError:
            return None
        except json.JSONDecodeError:
            return {}  # being written right now (O_EXCL create, then write): treat as held

    def try_lock(self, job_id: str) -> JobLock | None:
        """Take the job's lock, or return None if a live process holds it. A lock whose owner
        died on this host is taken over (serialised through an flock so two takers cannot both
        win)."""
        path, owner = self.lock_path(job_id), _owner()
        for _ in range(3):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._remove_stale_lock(path):
                    return None
                continue
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(owner))
                f.flush()
                os.fsync(f.fileno())
            return JobLock(path, owner)
        return None

    def _remove_stale_lock(self, path: Path) -> bool:
        """Remove ``path`` if its owner is dead; True if the lock is gone afterwards."""
        with open(self.root / ".locks" / ".takeover", "a+") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            try:
                try:
                    text = path.read_text()
                except FileNotFoundError:
                    return True
                try:
                    owner = json.loads(text)
                except json.JSONDecodeError:
                    # Half-written by a live creator, or left empty by a creator killed between
                    # O_EXCL and write: only trust the file's age.
                    if time.time() - path.stat().st_mtime < 60:
                        return False
                    owner = {}
                if owner and not owner_is_dead(owner):
                    return False
                path.unlink()
                self.log_event("stale_lock_removed", path.stem, previous_owner=owner)
                return True
            finally:
                fcntl.flock(guard, fcntl.LOCK_UN)

    # --------------------------------------------------------------------------- writing
    def commit(self, job_id: str, record: Mapping[str, Any],
               predictions: Mapping[tuple[str, str], tuple[Predictions, Mapping[str, Any]]],
               replace: bool = False,
               extra_files: Mapping[str, Callable[[Path], None]] | None = None) -> Path:
        """Write a job atomically: predictions + record.json into ``.tmp/``, fsync, rename into
        ``jobs/<job_id>``. ``predictions`` maps (split, condition) to (predictions, file metadata).
        ``extra_files`` maps a file name in the job folder (e.g. ``checkpoint.pt``) to a function
        that writes it; its sha256 is listed in ``files`` like the predictions'.
        With ``replace`` an existing record is moved to ``.trash`` first (and restored by
        :meth:`recover` if the process dies in between)."""
        final = self.job_dir(job_id)
        tmp = self.root / ".tmp" / _private_name(job_id)
        (tmp / "predictions").mkdir(parents=True)
        try:
            files: dict[str, str] = {}
            for i, ((split, condition), (preds, meta)) in enumerate(sorted(predictions.items())):
                rel = condition_file_name(split, condition)
                write_predictions(tmp / rel, preds, {**dict(meta), "job_id": job_id,
                                                     "split": split, "condition": condition})
                _fsync_file(tmp / rel)
                files[rel] = sha256_file(tmp / rel)
                if i == len(predictions) // 2:
                    fault_point("mid_write")
            for rel, writer in sorted((extra_files or {}).items()):
                if "/" in rel or rel.startswith(".") or rel in ("record.json", "predictions"):
                    raise StoreError(f"invalid extra file name {rel!r} for job {job_id}")
                writer(tmp / rel)
                _fsync_file(tmp / rel)
                files[rel] = sha256_file(tmp / rel)
            full = {"format": RECORD_FORMAT, "version": RECORD_VERSION, **dict(record),
                    "job_id": job_id, "files": files}
            (tmp / "record.json").write_text(json.dumps(_jsonable(full), indent=1, allow_nan=False))
            _fsync_file(tmp / "record.json")
            _fsync_dir(tmp / "predictions")
            _fsync_dir(tmp)
            fault_point("before_rename")
            if final.exists():
                if not replace and self.has(job_id):
                    raise StoreError(f"{final}: a record for job {job_id} already exists")
                trash = self.root / ".trash" / _private_name(job_id)
                os.rename(final, trash)
                os.rename(tmp, final)
                _fsync_dir(final.parent)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.rename(tmp, final)
                _fsync_dir(final.parent)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fault_point("after_rename")
        with contextlib.suppress(FileNotFoundError):
            (self.root / "failures" / f"{job_id}.json").unlink()
        return final

    def write_failure(self, job_id: str, info: Mapping[str, Any]) -> None:
        write_json_atomic(self.root / "failures" / f"{job_id}.json", info)

    def failures(self) -> dict[str, dict[str, Any]]:
        out = {}
        for path in sorted((self.root / "failures").glob("*.json")):
            with contextlib.suppress(json.JSONDecodeError, OSError):
                out[path.stem] = json.loads(path.read_text())
        return out

    def log_event(self, event: str, job_id: str, **fields: Any) -> None:
        """Append one line to ``events.jsonl`` (a single O_APPEND write: lines never interleave)."""
        line = json.dumps(_jsonable({"t": time.time(), "event": event, "job_id": job_id,
                                     "host": socket.gethostname(), "pid": os.getpid(), **fields}))
        fd = os.open(self.root / "events.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    def events(self) -> list[dict[str, Any]]:
        path = self.root / "events.jsonl"
        if not path.is_file():
            return []
        out = []
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                # A writer killed mid-line leaves a fragment that the next event is appended to;
                # every event starts with '{"t": ', so keep what follows the last such start.
                start = line.rfind('{"t": ')
                with contextlib.suppress(json.JSONDecodeError):
                    if start > 0:
                        out.append(json.loads(line[start:]))
        return out

    # --------------------------------------------------------------------------- recovery
    def recover(self) -> dict[str, int]:
        """Clean up after crashed writers on this host: restore a record moved to ``.trash`` whose
        replacement never arrived, delete orphaned ``.tmp``/``.trash`` folders and dead owners'
        locks. Safe to call while other runners work (it only touches what dead processes left)."""
        restored = removed_tmp = removed_locks = 0
        for trash in sorted((self.root / ".trash").iterdir()):
            if not _orphaned(trash.name):
                continue
            job_id = trash.name.split(".", 1)[0]
            if not self.has(job_id) and (trash / "record.json").is_file():
                with contextlib.suppress(OSError):
                    os.rename(trash, self.job_dir(job_id))
                    restored += 1
                    continue
            shutil.rmtree(trash, ignore_errors=True)
        for tmp in sorted((self.root / ".tmp").iterdir()):
            if _orphaned(tmp.name):
                shutil.rmtree(tmp, ignore_errors=True)
                removed_tmp += 1
        for lock in sorted((self.root / ".locks").glob("*.lock")):
            owner = self.lock_owner(lock.stem)
            if owner and owner_is_dead(owner) and self._remove_stale_lock(lock):
                removed_locks += 1
        if restored or removed_tmp or removed_locks:
            log.warning("%s: recovered after a crash: %d record(s) restored, %d unfinished write(s) and "
                        "%d dead lock(s) removed", self.root, restored, removed_tmp, removed_locks)
        return {"restored": restored, "removed_tmp": removed_tmp, "removed_locks": removed_locks}


# ------------------------------------------------------------------------------ tabular views
def load_results(root: str | Path, suite: str | None = None):
    """All stored metrics as a long pandas DataFrame, one row per
    (job, split, condition, profile, metric), with the CI where one was computed.

    Columns: job_id, suite, entry, label, baseline, title, domain, adapter, paper_row, seed,
    split, condition, profile, metric, value, ci_low, ci_high, n. With ``suite``, only that
    suite's jobs (from ``suites/<suite>.json``), labelled as in the suite."""
    import pandas as pd

    store = Store(root, create=False)
    labels: dict[str, tuple[int, str]] = {}
    ids: list[str] | None = None
    if suite is not None:
        manifest = store.suite_manifest(suite)
        ids = []
        for entry in manifest["entries"]:
            for job in entry["jobs"]:
                labels[job["job_id"]] = (entry["index"], entry["label"])
                ids.append(job["job_id"])
    rows = []
    for rec in store.records(ids):
        base = rec.get("baseline", {})
        entry, label = labels.get(rec["job_id"], (None, base.get("title", base.get("name"))))
        for split, by_cond in rec.get("results", {}).items():
            for condition, res in by_cond.items():
                for profile, values in res.get("metrics", {}).items():
                    for metric, value in values.items():
                        ci = res.get("ci", {}).get(f"{profile}.{metric}", {})
                        rows.append({
                            "job_id": rec["job_id"], "suite": suite, "entry": entry, "label": label,
                            "baseline": base.get("name"), "title": base.get("title"),
                            "domain": base.get("domain"), "adapter": rec.get("adapter"),
                            "paper_row": base.get("paper_row"), "seed": rec.get("seed"),
                            "split": split, "condition": condition, "profile": profile,
                            "metric": metric, "value": value, "ci_low": ci.get("low"),
                            "ci_high": ci.get("high"), "n": res.get("n"),
                        })
    return pd.DataFrame(rows)


def missing_jobs(root: str | Path, suite: str) -> list[dict[str, Any]]:
    """Jobs a suite manifest lists that have no record yet (to show gaps in reports)."""
    store = Store(root, create=False)
    manifest = store.suite_manifest(suite)
    return [{"entry": e["index"], "label": e["label"], **job}
            for e in manifest["entries"] for job in e["jobs"] if not store.has(job["job_id"])]


__all__ = [
    "Store", "StoreError", "JobLock", "load_results", "missing_jobs", "read_predictions",
    "write_predictions", "condition_file_name", "fault_point", "sha256_file",
    "write_json_atomic", "owner_is_dead",
]
