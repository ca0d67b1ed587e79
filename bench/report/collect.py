"""From a results directory (docs/store.md) to the report's table model.

Point values come from the records (through :func:`ravar_bench.store.load_results`), so a table
shows exactly the stored numbers. Intervals and tests are recomputed from the stored per-sample
predictions against the ground truth of the prepared split named in each record: one shared set
of cluster resamples for every row makes all rows paired (see :mod:`.stats`). Where the ground
truth cannot be read (results copied without the data), cells fall back to the stored per-job CIs
and the report says so.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ravar_bench.protocol import canonical_json
from ravar_bench.store import Store, StoreError, load_results, missing_jobs

from .columns import HEADLINE, PAPER_METRICS, STRICT_HEADLINE, metric
from .expectations import attach_suite_file
from .model import Cell, Leaderboard, PaperRef, Row
from .stats import (above_reference, percentile_interval, pooled_ci, quiet_bootstrap, seed_mean_replicates,
                    significance_matrix)

SPLIT_ORDER = ("train", "val", "test")


class ReportError(ValueError):
    """A report cannot be built; the message names the results directory, suite, parameter or
    file. (A ValueError, so the CLI prints it as a one-line error.)"""


@dataclass
class Truth:
    """Ground truth of one prepared split, aligned to prediction files by key."""

    keys: list[str]
    labels: np.ndarray
    boxes: np.ndarray
    clusters: list[str]
    index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index = {k: i for i, k in enumerate(self.keys)}

    def align(self, keys: list[str], where: str) -> np.ndarray:
        """Row order that puts predictions with ``keys`` into ground-truth order."""
        if len(keys) != len(self.keys) or set(keys) != set(self.index):
            raise ReportError(f"{where}: prediction keys do not cover the split exactly "
                              f"({len(keys)} predictions, {len(self.keys)} ground-truth instances)")
        pos = {k: i for i, k in enumerate(keys)}
        return np.array([pos[k] for k in self.keys], dtype=np.int64)


class TruthCache:
    """Loads each prepared split once, checked against the fingerprint the record stored.

    ``data_dir`` (optional) is searched when a record's path no longer exists: a folder holding
    ``<split>/meta.json`` or a ``ravar-data.json`` index, as written by the runner."""

    def __init__(self, data_dir: str | Path | None = None) -> None:
        self.data_dir = Path(data_dir).expanduser() if data_dir else None
        self._cache: dict[tuple[str, str], Truth | None] = {}
        self.problems: list[str] = []

    def _candidates(self, split: str, path: str | None) -> list[Path]:
        out = [Path(path)] if path else []
        if self.data_dir is not None:
            index = self.data_dir / "ravar-data.json"
            if index.is_file():
                try:
                    rel = json.loads(index.read_text())["splits"].get(split)
                    if rel:
                        out.append(self.data_dir / rel)
                except (json.JSONDecodeError, KeyError, AttributeError):
                    pass
            out.append(self.data_dir / split)
        return out

    def get(self, record: Mapping[str, Any], split: str) -> Truth | None:
        info = ((record.get("data") or {}).get("splits") or {}).get(split) or {}
        fp = info.get("fingerprint")
        key = (str(fp), split)
        if key in self._cache:
            return self._cache[key]
        from ravar_bench.data.prepared import PreparedDataError, PreparedSplit

        truth = None
        tried = []
        for folder in self._candidates(split, info.get("path")):
            tried.append(str(folder))
            if not (folder / "meta.json").is_file():
                continue
            try:
                ps = PreparedSplit.load(folder)
            except PreparedDataError as exc:
                self.problems.append(str(exc))
                continue
            if fp and ps.fingerprint() != fp:
                self.problems.append(f"{folder}: split fingerprint {ps.fingerprint()} differs from "
                                     f"the record's {fp}; not used as ground truth")
                continue
            truth = Truth(list(ps.keys), np.asarray(ps.labels), np.asarray(ps.boxes),
                          ps.video_ids)
            break
        if truth is None:
            self.problems.append(f"ground truth of split {split!r} (fingerprint {fp}) not found "
                                 f"(tried {', '.join(tried) or 'no path'}); CIs fall back to the "
                                 "stored per-job intervals and significance is skipped")
        self._cache[key] = truth
        return truth


# ------------------------------------------------------------------------------- entries
@dataclass
class Entry:
    """One suite entry (or, without a suite, one baseline + params) and its job records."""

    id: str
    label: str
    baseline: dict[str, Any]
    params: dict[str, Any]
    job_ids: list[str]
    records: list[dict[str, Any]] = field(default_factory=list)


def _entries(store: Store, suite: str | None) -> tuple[list[Entry], dict[str, Any] | None]:
    if suite is not None:
        try:
            manifest = store.suite_manifest(suite)
        except StoreError as exc:
            raise ReportError(str(exc)) from exc
        out = []
        for e in manifest.get("entries", []):
            ids = [j["job_id"] for j in e.get("jobs", [])]
            out.append(Entry(str(e["index"]), e.get("label") or e["baseline"].get("title"),
                             e.get("baseline") or {}, e.get("params") or {}, ids,
                             [_record(store, i) for i in ids if store.has(i)]))
        return out, manifest
    groups: dict[str, Entry] = {}
    for job_id in store.job_ids():
        rec = _record(store, job_id)
        base = rec.get("baseline") or {}
        params = rec.get("params") or {}
        gid = f"{base.get('name')}:{canonical_json(params)}"
        if gid not in groups:
            groups[gid] = Entry(gid, base.get("title") or base.get("name") or rec["job_id"], base,
                                params, [])
        groups[gid].job_ids.append(rec["job_id"])
        groups[gid].records.append(rec)
    entries = list(groups.values())
    _disambiguate(entries)
    return entries, None


def _record(store: Store, job_id: str) -> dict[str, Any]:
    """A record plus ``_dir`` (its job folder), so prediction paths can be resolved."""
    rec = dict(store.record(job_id))
    rec["_dir"] = str(store.job_dir(job_id))
    return rec


def _disambiguate(entries: list[Entry]) -> None:
    """Without a suite, two variants of one baseline would share a title: add what differs."""
    by_label: dict[str, list[Entry]] = defaultdict(list)
    for e in entries:
        by_label[e.label].append(e)
    for same in by_label.values():
        if len(same) < 2:
            continue
        keys = sorted({k for e in same for k in e.params})
        varying = [k for k in keys if len({canonical_json(e.params.get(k)) for e in same}) > 1]
        for e in same:
            e.label += " (" + ", ".join(f"{k}={e.params.get(k)}" for k in varying) + ")"


# --------------------------------------------------------------------------------- paper
def paper_ref(baseline: Mapping[str, Any]) -> PaperRef | None:
    """The paper's numbers for a baseline. Source of truth: the ``[paper]`` table of
    ``baselines/<name>.toml`` as it is now (so a corrected number shows without re-running);
    the copy stored in the record at run time is used only when the file is gone."""
    name = baseline.get("name")
    paper, origin = None, "record"
    if name:
        try:
            from ravar_bench.baselines import BaselineError, baseline_path, load_baseline

            path = baseline_path(name)
            if path.is_file():
                b = load_baseline(name, check_adapter=False)
                paper = b.paper.as_dict() if b.paper else None
                origin = str(path)
                if paper is None:
                    return None
        except (BaselineError, ValueError, OSError):
            paper = None
    if paper is None:
        paper = baseline.get("paper")
        origin = "record"
    if not paper:
        return None
    values = {s: dict(paper[s]) for s in ("val", "test") if paper.get(s)}
    if not values:
        return None
    return PaperRef(values, bool(paper.get("verified")), str(paper.get("source", "")), origin,
                    baseline.get("paper_row"))


# ---------------------------------------------------------------------------- efficiency
def efficiency(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Median over seeds of params (M), GFLOPs per query and latency (ms per query)."""
    vals: dict[str, list[float]] = defaultdict(list)
    notes: list[str] = []
    device = ""
    for rec in records:
        eff = rec.get("efficiency") or {}
        if "error" in eff:
            notes.append(str(eff["error"]))
            continue
        device = eff.get("device") or device
        if isinstance(eff.get("params_total"), (int, float)):
            vals["params_m"].append(eff["params_total"] / 1e6)
        flops = eff.get("flops_per_sample")
        if isinstance(flops, (int, float)):
            vals["gflops"].append(flops / 1e9)
        elif isinstance(flops, str):
            notes.append(f"FLOPs: {flops}")
        if isinstance(eff.get("latency_ms_per_sample"), (int, float)):
            vals["latency_ms"].append(eff["latency_ms_per_sample"])
    out: dict[str, Any] = {k: float(np.median(v)) for k, v in vals.items() if v}
    if "gflops" not in out and any(n.startswith("FLOPs") for n in notes):
        out["gflops"] = "unsupported"
    out["device"] = device
    out["notes"] = notes
    return out


# ----------------------------------------------------------------------------- references
REFERENCE_LABELS = {"prior_only": "prior-only (analytic)", "text_blind": "text-blind, perfect perception (analytic upper bound)",
                    "oracle": "oracle (analytic)"}


def load_references(data_paths: list[str]) -> list[Row]:
    """Reference rows of RAVAR-Synth: ``references.json`` in the folder above the split folders
    (written by ``ravar_bench.data.synth.generate``: ``{"metric": "paper_v1", "definitions":
    {name: text}, "<split>": {name: {"mIoU", "mAP", "AUROC"}, ...}}``)."""
    seen: set[Path] = set()
    rows: dict[str, Row] = {}
    for p in data_paths:
        f = Path(p).parent / "references.json"
        if f in seen or not f.is_file():
            continue
        seen.add(f)
        try:
            raw = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(raw, dict):
            for row in _reference_rows(raw, f):
                rows.setdefault(row.id, row)
    return list(rows.values())


def _reference_rows(raw: Mapping[str, Any], source: Path) -> list[Row]:
    profile = str(raw.get("metric", "paper_v1"))
    defs = raw.get("definitions") if isinstance(raw.get("definitions"), dict) else {}
    rows: dict[str, Row] = {}
    for split in SPLIT_ORDER:
        body = raw.get(split)
        if not isinstance(body, dict):
            continue
        for name, values in body.items():
            if not isinstance(values, dict) or not values or \
                    not set(values) <= {k.split(".", 1)[1] for k in PAPER_METRICS}:
                continue  # e.g. the per-rule box table, not a reference
            row = rows.setdefault(name, Row(
                id=f"ref:{name}", label=REFERENCE_LABELS.get(name, f"{name} (analytic)"),
                kind="reference", domain="reference",
                note=f"{defs.get(name, name)} ({source})"))
            for key, value in values.items():
                if isinstance(value, (int, float)) and math.isfinite(float(value)):
                    row.cells[(split, "none", f"{profile}.{key}")] = Cell.of([float(value)])
    return [r for r in rows.values() if r.cells]


# ------------------------------------------------------------------------------- builder
@dataclass
class CollectOptions:
    paper_split: str | None = None
    n_resamples: int | None = None  # None: the suite's bootstrap setting (else 1000)
    alpha: float = 0.05
    bootstrap_seed: int = 0
    data_dir: str | Path | None = None
    significance: bool = True


def collect(results_dir: str | Path, suite: str | None,
            options: CollectOptions | None = None) -> Leaderboard:
    """Read the store and build the :class:`Leaderboard` of ``suite`` (None: every job)."""
    opt = options or CollectOptions()
    root = Path(results_dir)
    try:
        store = Store(root, create=False)
    except StoreError as exc:
        raise ReportError(str(exc)) from exc
    entries, manifest = _entries(store, suite)
    df = load_results(root, suite)
    if not any(e.records for e in entries):
        where = f"suite {suite!r}" if suite else "any job"
        raise ReportError(f"{root}: no finished job of {where} yet; run the suite first")
    paper_split = opt.paper_split or (manifest or {}).get("paper_split") or "test"
    n_res = opt.n_resamples if opt.n_resamples is not None else int(
        (manifest or {}).get("bootstrap", 1000) or 0)
    splits = tuple(s for s in SPLIT_ORDER if not df.empty and s in set(df["split"]))
    if paper_split not in splits:
        raise ReportError(f"{root}: paper split {paper_split!r} was not evaluated "
                          f"(splits in the store: {', '.join(splits) or 'none'})")
    conditions = tuple(dict.fromkeys(["none"] + sorted(set(df["condition"]) - {"none"},
                                                        key=_condition_order)))
    truth = TruthCache(opt.data_dir)
    lb = Leaderboard(
        title=(manifest or {}).get("title") or (f"Suite {suite}" if suite else "All jobs"),
        suite=suite, results_dir=str(root), rows=[], splits=splits, paper_split=paper_split,
        conditions=conditions, generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        n_resamples=n_res)
    by_job = {job: g for job, g in df.groupby("job_id")} if not df.empty else {}
    replicates: dict[str, np.ndarray] = {}
    for e in entries:
        if not e.records:
            continue
        row, reps = _row(e, by_job, truth, lb, n_res, opt)
        lb.rows.append(row)
        if reps is not None:
            replicates[row.id] = reps
    _finish(lb, store, entries, manifest, truth, replicates, opt)
    if suite is not None:
        attach_suite_file(lb, suite)
    return lb


def _condition_order(c: str) -> tuple[int, str, int]:
    if "@" not in c:
        return (0, c, 0)
    name, _, sev = c.partition("@")
    return (1, name, int(sev) if sev.isdigit() else 0)


def _row_stream(job_ids: tuple[str, ...]) -> int:
    """A random stream per row from its jobs, so a row's CIs do not move when rows are added to
    or reordered in its suite."""
    return int(hashlib.sha256(",".join(sorted(job_ids)).encode()).hexdigest()[:12], 16)


def _row(e: Entry, by_job, truth: TruthCache, lb: Leaderboard, n_res: int,
         opt: CollectOptions) -> tuple[Row, np.ndarray | None]:
    base = e.baseline
    recs = sorted(e.records, key=lambda r: r.get("seed", 0))
    row = Row(id=e.id, label=e.label, kind="control" if base.get("domain") == "control" else "entry",
              baseline=base.get("name"), title=base.get("title"), domain=base.get("domain"),
              adapter=recs[0].get("adapter"), params=e.params,
              seeds=tuple(int(r.get("seed", 0)) for r in recs),
              job_ids=tuple(r["job_id"] for r in recs), efficiency=efficiency(recs),
              paper=paper_ref(base))
    # stored values (and stored CIs) per (split, condition, metric key): one entry per seed
    stored: dict[tuple[str, str, str], list[tuple[float, tuple[float, float] | None]]] = \
        defaultdict(list)
    for rec in recs:
        g = by_job.get(rec["job_id"])
        if g is None:
            continue
        for t in g.itertuples(index=False):
            if t.value is None or (isinstance(t.value, float) and math.isnan(t.value)):
                continue
            ci = None if t.ci_low is None or _nan(t.ci_low) else (float(t.ci_low), float(t.ci_high))
            stored[(t.split, t.condition, f"{t.profile}.{t.metric}")].append((float(t.value), ci))
    for key, items in stored.items():
        values = [v for v, _ in items]
        cis = [c for _, c in items]
        if len(items) == 1 and cis[0] is not None:
            row.cells[key] = Cell.of(values, *cis[0], ci="stored")
        elif any(c is not None for c in cis):
            row.cells[key] = Cell.of(values, *pooled_ci(values, cis, opt.alpha), ci="pooled")
        else:
            row.cells[key] = Cell.of(values)
    headline_reps = None
    if n_res > 0:
        rng = np.random.default_rng([opt.bootstrap_seed, _row_stream(row.job_ids)])
        for split in lb.splits:
            keys = list(PAPER_METRICS) + list(STRICT_HEADLINE)
            per_seed = _replicates(recs, split, keys, truth, n_res, opt.bootstrap_seed)
            if per_seed is None:
                continue
            for k in keys:
                reps = seed_mean_replicates(per_seed[k], rng)
                cell = row.cells.get((split, "none", k))
                if cell is None:
                    continue
                low, high = percentile_interval(reps, opt.alpha, float(np.mean(cell.values)))
                row.cells[(split, "none", k)] = Cell.of(list(cell.values), low, high, "bootstrap")
                if split == lb.paper_split and k == HEADLINE:
                    headline_reps = reps
    return row, headline_reps


def _nan(x: Any) -> bool:
    try:
        return math.isnan(float(x))
    except (TypeError, ValueError):
        return True


def _replicates(recs: list[dict[str, Any]], split: str, keys: list[str], truth: TruthCache,
                n_res: int, seed: int) -> dict[str, np.ndarray] | None:
    """(S, R) replicates per metric from each seed's predictions, or None without ground truth."""
    from ravar_bench.metrics import bootstrap_replicates
    from ravar_bench.store import read_predictions

    out: dict[str, list[np.ndarray]] = defaultdict(list)
    for rec in recs:
        t = truth.get(rec, split)
        if t is None:
            return None
        entry = ((rec.get("results") or {}).get(split) or {}).get("none")
        if not entry:
            return None
        store_root = rec.get("_dir")
        path = Path(store_root) / entry.get("predictions", f"predictions/{split}.none.parquet")
        preds, _ = read_predictions(path)
        order = t.align(list(preds.keys), str(path))
        reps = quiet_bootstrap(bootstrap_replicates, preds.scores[order], t.labels,
                               preds.boxes[order], t.boxes, t.clusters, metrics=keys,
                               n_resamples=n_res, seed=seed)
        for k in keys:
            out[k].append(reps[k])
    return {k: np.stack(v) for k, v in out.items()}


def _finish(lb: Leaderboard, store: Store, entries: list[Entry], manifest: dict | None,
            truth: TruthCache, replicates: dict[str, np.ndarray], opt: CollectOptions) -> None:
    """Significance, per-class AP, sweep, references, notes and gaps."""
    records = [r for e in entries for r in e.records]
    specs = sorted({(r.get("data") or {}).get("spec") for r in records} - {None})
    lb.data_specs = tuple(specs)
    versions = sorted({((r.get("provenance") or {}).get("metrics") or {}).get("version")
                       for r in records} - {None})
    if versions:
        lb.versions["metrics"] = ", ".join(versions)
    # significance over the rows whose headline replicates exist (paired by construction)
    rows = [r for r in lb.rows if r.id in replicates]
    fps = {(((rec.get("data") or {}).get("splits") or {}).get(lb.paper_split) or {}).get("fingerprint")
           for e in entries if e.id in replicates for rec in e.records}
    if len(fps) > 1:
        lb.notes.append(f"rows were evaluated on {len(fps)} different {lb.paper_split} splits: no "
                        "pairwise significance (it needs the same queries)")
        rows = []
    if opt.significance and len(rows) >= 2:
        pts = [r.headline(lb.paper_split) for r in rows]
        sig = significance_matrix([r.label for r in rows], [replicates[r.id] for r in rows], pts,
                                  metric=HEADLINE, split=lb.paper_split, alpha=opt.alpha,
                                  higher_is_better=metric(HEADLINE).higher_is_better)
        lb.significance = sig
        for i, r in enumerate(rows):
            r.letters = sig.letters[i]
            r.differs_from_best = sig.differs_from_best[i]
            r.is_best = i == sig.best
    elif lb.rows:
        best = max(lb.of_kind("entry") or lb.rows, key=lambda r: _finite(r.headline(lb.paper_split)))
        best.is_best = True
    _check_learning(lb, replicates, opt.alpha)
    _per_class(lb, entries, truth)
    _sweep(lb, entries)
    paths = sorted({(((r.get("data") or {}).get("splits") or {}).get(s) or {}).get("path")
                    for r in records for s in lb.splits} - {None})
    lb.rows += load_references(paths)
    # notes
    for p in dict.fromkeys(truth.problems):
        lb.notes.append(p)
    for r in lb.rows:
        errs = [n for n in r.efficiency.get("notes", []) if not n.startswith("FLOPs")]
        if errs:
            lb.notes.append(f"efficiency of {r.label} not measured: {errs[0]}")
    if any(s.startswith("synth:") for s in specs) and lb.has_paper():
        lb.notes.append("These runs use RAVAR-Synth, not RefAVA: the paper's numbers are shown for "
                        "orientation only and are not expected to match.")
    if any(r.paper is not None and not r.paper.verified for r in lb.rows):
        lb.notes.append("'paper (unverified)': numbers from a third-party note, not checked against "
                        "the paper PDF (ravar-spec.md §4).")
    lb.notes.append("paper_v1 reproduces RefAtomNet's official evaluation: support-weighted mAP and "
                    "AUROC are dominated by the few frequent classes; strict_v1 mAP (macro) weighs "
                    "every class equally.")
    if manifest is not None:
        lb.missing = missing_jobs(lb.results_dir, lb.suite)
        failed = store.failures()
        for m in lb.missing:
            f = failed.get(m.get("job_id"))
            if f:
                lb.notes.append(f"failed: {m.get('label')} seed {m.get('seed')}: {f.get('error')}")
        if manifest.get("missing_baselines"):
            lb.notes.append("suite entries skipped (no baseline file): "
                            + ", ".join(manifest["missing_baselines"]))


def _check_learning(lb: Leaderboard, replicates: dict[str, np.ndarray], alpha: float) -> None:
    """"Did it learn?": every learned row with replicates against the prior row (adapter
    ``prior``) of the same report, on the paired headline replicates."""
    priors = [r for r in lb.rows if r.adapter == "prior" and r.id in replicates]
    if not priors:
        return
    prior = priors[0]
    tested = [r for r in lb.rows if r.id in replicates and r.adapter != "prior"]
    for r, (above, lo, hi) in zip(tested, above_reference([replicates[r.id] for r in tested],
                                                          replicates[prior.id], alpha)):
        r.above_prior, r.vs_prior = above, (lo, hi)
    flat = lb.not_learned()
    if flat:
        lb.notes.append(f"not above the prior ({lb.paper_split} {HEADLINE}, paired bootstrap, "
                        f"α = {alpha}): " + ", ".join(r.label for r in flat)
                        + ". A learned model at the prior shows nothing: see 'did it learn?'.")


def _finite(v: float) -> float:
    return v if math.isfinite(v) else -math.inf


def _per_class(lb: Leaderboard, entries: list[Entry], truth: TruthCache) -> None:
    """strict_v1 per-class AP of the best entry row, mean over its seeds."""
    from ravar_bench.metrics import per_class_ap_table
    from ravar_bench.store import read_predictions

    cands = [r for r in lb.rows if r.kind == "entry" and math.isfinite(r.headline(lb.paper_split))]
    if not cands:
        return
    best = max(cands, key=lambda r: r.headline(lb.paper_split))
    entry = next(e for e in entries if e.id == best.id)
    tables = []
    for rec in entry.records:
        t = truth.get(rec, lb.paper_split)
        res = ((rec.get("results") or {}).get(lb.paper_split) or {}).get("none")
        if t is None or not res:
            return
        path = Path(rec["_dir"]) / res.get("predictions", f"predictions/{lb.paper_split}.none.parquet")
        preds, _ = read_predictions(path)
        order = t.align(list(preds.keys), str(path))
        tables.append(quiet_bootstrap(per_class_ap_table, preds.scores[order], t.labels))
    rows = []
    for c, first in enumerate(tables[0]):
        aps = [tab[c]["AP"] for tab in tables if math.isfinite(tab[c]["AP"])]
        rows.append({**first, "AP": float(np.mean(aps)) if aps else float("nan"),
                     "AP_std": float(np.std(aps, ddof=1)) if len(aps) > 1 else float("nan"),
                     "n_seeds": len(aps)})
    lb.per_class = {"label": best.label, "split": lb.paper_split, "rows": rows}


def _sweep(lb: Leaderboard, entries: list[Entry]) -> None:
    """Entries of one adapter whose parameters differ in exactly one numeric key form a sweep
    (e.g. the agents suite: n in {1, 4, 16, 64})."""
    rows = {r.id: r for r in lb.rows if r.kind == "entry"}
    ents = [e for e in entries if e.id in rows]
    if len(ents) < 2 or len({rows[e.id].adapter for e in ents}) != 1:
        return
    keys = sorted({k for e in ents for k in e.params})
    varying = [k for k in keys if len({canonical_json(e.params.get(k)) for e in ents}) > 1]
    if len(varying) != 1:
        return
    k = varying[0]
    values = [e.params.get(k) for e in ents]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return
    points = []
    for e, v in zip(ents, values):
        c = rows[e.id].cell(lb.paper_split, HEADLINE)
        if c is not None and math.isfinite(c.mean):
            points.append((float(v), c, rows[e.id].label))
    if len(points) >= 2:
        lb.sweep = {"param": k, "points": points}
