"""Baseline files (``baselines/<name>.toml``) and suite files (``baselines/suites/<name>.toml``).

A baseline file is one leaderboard row: which adapter, with which parameters at paper scale
(``[params]``) and at CPU scale (``[params_tiny]``), optional training overrides and the paper's
numbers with their provenance. A suite is a paper table: a list of entries (baseline + optional
overrides, optionally a ``group`` label), the evaluation conditions, defaults for data and seeds,
and optionally the orderings it expects between groups (``[[expect]]``, evaluated by the report,
:mod:`ravar_bench.report.expectations`). The formats are described
in ``docs/cli.md``; every table, key and type is checked here, and each error names the file and
the key, so a typo fails before any training starts.
"""
from __future__ import annotations

import math
import os
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Domains a baseline may declare (the adapter registry's list).
DOMAINS = ("AAL", "VTR", "VQA", "VOS", "ours", "fusion", "control", "external")
SCALES = ("tiny", "paper")
SPLITS = ("val", "test")
PAPER_METRICS = ("mIoU", "mAP", "AUROC")


class BaselineError(ValueError):
    """A baseline or suite file is missing or invalid; the message names the file and key."""


# ------------------------------------------------------------------------------------ locations
def baselines_dir() -> Path:
    """``$RAVAR_BASELINES``, else the repository's ``baselines/`` (editable install), else the copy
    a regular install puts under ``<prefix>/share/ravar-bench/baselines``."""
    env = os.environ.get("RAVAR_BASELINES")
    if env:
        return Path(env).expanduser()
    repo = Path(__file__).resolve().parent.parent / "baselines"
    installed = Path(sys.prefix) / "share" / "ravar-bench" / "baselines"
    return repo if repo.is_dir() or not installed.is_dir() else installed


def suites_dir(root: Path | None = None) -> Path:
    return (root or baselines_dir()) / "suites"


def list_baselines(root: Path | None = None) -> list[str]:
    folder = root or baselines_dir()
    return sorted(p.stem for p in folder.glob("*.toml")) if folder.is_dir() else []


def list_suites(root: Path | None = None) -> list[str]:
    folder = suites_dir(root)
    return sorted(p.stem for p in folder.glob("*.toml")) if folder.is_dir() else []


# --------------------------------------------------------------------------------- type checks
def _type_name(types: tuple[type, ...]) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "an array", dict: "a table"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def _get(table: dict, key: str, types: tuple[type, ...], where: str, *, required: bool = False,
         default: Any = None) -> Any:
    """``table[key]`` checked against ``types`` (ints are accepted as numbers, bools are not)."""
    if key not in table:
        if required:
            raise BaselineError(f"{where}: missing required key {key!r}")
        return default
    value = table[key]
    ok = any(isinstance(value, t) and not (isinstance(value, bool) and t in (int, float))
             for t in types) or (float in types and isinstance(value, int) and not isinstance(value, bool))
    if not ok:
        raise BaselineError(f"{where}: key {key!r} must be {_type_name(types)}, got {value!r}")
    return value


def _only(table: dict, allowed: tuple[str, ...], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise BaselineError(f"{where}: unknown key {key!r}; allowed: {', '.join(allowed)}")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise BaselineError(f"{path}: file does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise BaselineError(f"{path}: invalid TOML: {exc}") from exc


def _train_overrides(value: Any, where: str) -> dict[str, Any]:
    """Validate a ``[train]`` table against TrainConfig (names the key on error)."""
    from .train import TrainConfig

    if not isinstance(value, dict):
        raise BaselineError(f"{where}: must be a table")
    try:
        TrainConfig.from_dict(value, where=where)
    except ValueError as exc:
        raise BaselineError(str(exc)) from exc
    return dict(value)


# ------------------------------------------------------------------------------------ baselines
@dataclass(frozen=True)
class PaperNumbers:
    """The paper's numbers for one row (x100), with where they came from."""

    source: str
    verified: bool
    val: dict[str, float] | None = None
    test: dict[str, float] | None = None
    notes: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "verified": self.verified, "val": self.val,
                "test": self.test, "notes": self.notes}


@dataclass(frozen=True)
class Baseline:
    name: str
    adapter: str
    domain: str
    title: str
    path: Path
    citation: str | None = None
    paper_row: str | None = None
    notes: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    params_tiny: dict[str, Any] | None = None
    train: dict[str, Any] = field(default_factory=dict)
    paper: PaperNumbers | None = None
    #: the CPU-scale (person-level) adapter when it is not ``adapter`` (e.g. ``person_aal`` for the
    #: mmaction2 rows, whose paper-scale backbones cannot learn from 96-px clips on a CPU)
    adapter_tiny: str | None = None

    def adapter_for(self, scale: str) -> str:
        """The adapter that runs at ``scale``: ``adapter_tiny`` at "tiny" when set, else ``adapter``."""
        return self.adapter_tiny if scale == "tiny" and self.adapter_tiny else self.adapter

    def params_for(self, scale: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Adapter parameters at ``scale``: "paper" -> [params]; "tiny" -> [params_tiny] when the
        file has one, else [params]; then ``overrides`` on top. The tiny table replaces the paper
        table rather than merging into it, so paper-only keys (weights=...) never leak into tiny
        runs."""
        if scale not in SCALES:
            raise BaselineError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
        base = self.params_tiny if scale == "tiny" and self.params_tiny is not None else self.params
        return {**base, **(overrides or {})}

    def summary(self) -> dict[str, Any]:
        """The baseline's description as stored in job records and suite manifests."""
        return {"name": self.name, "adapter": self.adapter, "adapter_tiny": self.adapter_tiny,
                "domain": self.domain, "title": self.title,
                "citation": self.citation, "paper_row": self.paper_row,
                "paper": self.paper.as_dict() if self.paper else None}


def baseline_path(name: str, root: Path | None = None) -> Path:
    """The file of baseline ``name`` (a name, or a path to a .toml file)."""
    if name.endswith(".toml") or os.sep in name:
        return Path(name).expanduser()
    return (root or baselines_dir()) / f"{name}.toml"


def load_baseline(name: str, root: Path | None = None, check_adapter: bool = True) -> Baseline:
    """Load and validate one baseline file. ``check_adapter`` also checks that the adapter is
    registered and that ``[params]``/``[params_tiny]`` fit its signature."""
    path = baseline_path(name, root)
    if not path.is_file():
        from .registry import did_you_mean

        known = list_baselines(path.parent)
        raise BaselineError(f"{path}: no such baseline file{did_you_mean(path.stem, known)} (baselines in "
                            f"{path.parent}: {', '.join(known) or 'none'})")
    data = _read_toml(path)
    f = str(path)
    _only(data, ("baseline", "params", "params_tiny", "train", "paper"), f"{f}: top level")
    head = _get(data, "baseline", (dict,), f"{f}", required=True)
    w = f"{f}: [baseline]"
    _only(head, ("name", "adapter", "adapter_tiny", "domain", "title", "citation", "paper_row", "notes"), w)
    bname = _get(head, "name", (str,), w, required=True)
    if bname != path.stem:
        raise BaselineError(f"{w}: key 'name' must equal the file name {path.stem!r}, got {bname!r}")
    domain = _get(head, "domain", (str,), w, required=True)
    if domain not in DOMAINS:
        raise BaselineError(f"{w}: key 'domain' must be one of {', '.join(DOMAINS)}, got {domain!r}")
    params = _get(data, "params", (dict,), f, default={})
    params_tiny = _get(data, "params_tiny", (dict,), f, default=None)
    train = _train_overrides(data["train"], f"{f}: [train]") if "train" in data else {}
    baseline = Baseline(
        name=bname, adapter=_get(head, "adapter", (str,), w, required=True), domain=domain,
        title=_get(head, "title", (str,), w, required=True), path=path,
        citation=_get(head, "citation", (str,), w), paper_row=_get(head, "paper_row", (str,), w),
        notes=_get(head, "notes", (str,), w), params=dict(params),
        params_tiny=dict(params_tiny) if params_tiny is not None else None, train=train,
        paper=_paper(data["paper"], f"{f}: [paper]") if "paper" in data else None,
        adapter_tiny=_get(head, "adapter_tiny", (str,), w),
    )
    if check_adapter:
        validate_params(baseline, baseline.params, f"{f}: [params]")
        validate_params(baseline, baseline.params_for("tiny"), f"{f}: [params_tiny]", scale="tiny")
    return baseline


def validate_params(baseline: Baseline, params: dict[str, Any], where: str,
                    scale: str = "paper") -> dict[str, Any]:
    """Check ``params`` against the signature of the adapter that runs at ``scale``; errors name
    ``where`` and the key."""
    from .adapters.registry import AdapterError, get_adapter

    key = "adapter_tiny" if scale == "tiny" and baseline.adapter_tiny else "adapter"
    try:
        spec = get_adapter(baseline.adapter_for(scale))
    except AdapterError as exc:
        raise BaselineError(f"{baseline.path}: [baseline] key {key!r}: {exc}") from exc
    try:
        return spec.validate(params, where=where)
    except AdapterError as exc:
        raise BaselineError(str(exc)) from exc


def _paper(table: Any, where: str) -> PaperNumbers:
    if not isinstance(table, dict):
        raise BaselineError(f"{where}: must be a table")
    _only(table, ("source", "verified", "val", "test", "notes"), where)
    splits: dict[str, dict[str, float] | None] = {}
    for split in SPLITS:
        values = _get(table, split, (dict,), where)
        if values is not None:
            _only(values, PAPER_METRICS, f"{where} {split}")
            for metric in values:
                _get(values, metric, (float,), f"{where} {split}")
            values = {k: float(v) for k, v in values.items()}
        splits[split] = values
    return PaperNumbers(source=_get(table, "source", (str,), where, required=True),
                        verified=_get(table, "verified", (bool,), where, required=True),
                        val=splits["val"], test=splits["test"], notes=_get(table, "notes", (str,), where))


# --------------------------------------------------------------------------------------- suites
@dataclass(frozen=True)
class SuiteEntry:
    """One leaderboard row of a suite: a baseline with optional parameter/training overrides."""

    index: int
    baseline_name: str
    baseline: Baseline | None  # None only when loaded with skip_missing and the file is absent
    label: str
    params: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    #: free label ("text-aware", "prior", ...) that ``[[expect]]`` tables name; not part of any
    #: job's identity, so grouping a suite's entries never re-runs a job
    group: str | None = None


#: ``[[expect]]`` kinds -> (required keys, optional keys). Every kind also takes ``metric``
#: (default the headline), ``split`` (default the suite's paper_split) and ``note``.
EXPECT_KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "above": (("upper", "lower"), ()),  # every upper row's CI above every lower row's CI
    "drop": (("group", "condition", "at_least"), ()),  # none − condition >= at_least, each row
    "within_ci": (("group", "condition"), ()),  # the condition's value inside the clean CI
    "at_least": (("group", "value"), ("condition",)),  # the row's value >= value
}
EXPECT_COMMON = ("kind", "metric", "split", "note")
EXPECT_DEFAULT_METRIC = "paper_v1.mAP"


@dataclass(frozen=True)
class Expectation:
    """One ordering a suite expects (an ``[[expect]]`` table), stated as data so that the report
    can say whether it holds, with the numbers that decide it, instead of a hand-written claim."""

    index: int
    kind: str  # one of EXPECT_KINDS
    metric: str  # "paper_v1.mAP"
    split: str  # "test"
    group: str | None = None  # drop, within_ci, at_least
    upper: str | None = None  # above
    lower: str | None = None  # above
    condition: str = "none"  # drop, within_ci: the control compared with "none"
    at_least: float | None = None  # drop: the least drop, in metric units
    value: float | None = None  # at_least: the threshold
    note: str | None = None  # the suite's own words, printed next to the verdict

    def groups(self) -> tuple[str, ...]:
        return tuple(g for g in (self.upper, self.lower, self.group) if g is not None)


@dataclass(frozen=True)
class Suite:
    name: str
    title: str
    path: Path
    data: str
    seeds: int
    scale: str
    paper_split: str = "test"
    description: str | None = None
    controls: tuple[str, ...] = ("none",)
    perturbations: tuple[str, ...] = ()
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    splits: tuple[str, ...] = ("val", "test")
    bootstrap: int = 1000
    efficiency: bool = True
    train: dict[str, Any] = field(default_factory=dict)
    entries: tuple[SuiteEntry, ...] = ()
    missing: tuple[str, ...] = ()  # entries skipped because their baseline file is absent
    expectations: tuple[Expectation, ...] = ()  # [[expect]]: checked by the report, not the runner


# ================================================================================= conditions
@dataclass(frozen=True)
class Condition:
    """One evaluation condition: a control plus an optional perturbation at a severity."""

    control: str = "none"
    perturbation: str | None = None
    severity: int | None = None

    @property
    def name(self) -> str:
        if self.perturbation is None:
            return self.control
        pert = f"{self.perturbation}@{self.severity}"
        return pert if self.control == "none" else f"{self.control}+{pert}"

    @classmethod
    def parse(cls, name: str) -> "Condition":
        control, _, pert = name.partition("+") if "+" in name else (
            ("none", "", name) if "@" in name else (name, "", ""))
        if not pert:
            return cls(control)
        pname, _, sev = pert.partition("@")
        return cls(control, pname, int(sev))

    def build(self):
        """(Controls, FrameTransform or None) for the batch loader."""
        from .data.batches import Controls
        from .data.perturb import get_perturbation

        perturb = get_perturbation(self.perturbation, self.severity) if self.perturbation else None
        return Controls.parse(self.control), perturb


def condition_grid(controls, perturbations, severities) -> list[Condition]:
    """Every control, clean and under every perturbation x severity (controls x perturbations)."""
    return [Condition(c) for c in controls] + [Condition(c, p, s) for c in controls
                                               for p in perturbations for s in severities]


def suite_conditions(suite: Suite) -> list[Condition]:
    """The conditions every job of ``suite`` is evaluated under."""
    return condition_grid(suite.controls, suite.perturbations, suite.severities)


SUITE_KEYS = ("name", "title", "description", "paper_split", "data", "seeds", "scale", "controls",
              "perturbations", "severities", "splits", "bootstrap", "efficiency")


def suite_path(name: str, root: Path | None = None) -> Path:
    if name.endswith(".toml") or os.sep in name:
        return Path(name).expanduser()
    return suites_dir(root) / f"{name}.toml"


def load_suite(name: str, root: Path | None = None, skip_missing: bool = False,
               check_adapter: bool = True) -> Suite:
    """Load and validate a suite and every baseline it references.

    A referenced baseline without a file is an error naming the entry and the expected path;
    with ``skip_missing`` such entries are dropped and listed in ``Suite.missing`` instead."""
    from .data.batches import CONTROLS
    from .data.perturb import PERTURBATIONS, SEVERITIES

    path = suite_path(name, root)
    if not path.is_file():
        from .registry import did_you_mean

        known = list_suites(root)
        raise BaselineError(f"{path}: no such suite file{did_you_mean(path.stem, known)} "
                            f"(suites: {', '.join(known) or 'none'})")
    broot = root or (path.parent.parent if path.parent.name == "suites" else baselines_dir())
    data = _read_toml(path)
    f = str(path)
    _only(data, ("suite", "train", "entries", "expect"), f"{f}: top level")
    head = _get(data, "suite", (dict,), f, required=True)
    w = f"{f}: [suite]"
    _only(head, SUITE_KEYS, w)
    sname = _get(head, "name", (str,), w, required=True)
    if sname != path.stem:
        raise BaselineError(f"{w}: key 'name' must equal the file name {path.stem!r}, got {sname!r}")

    def str_list(key: str, allowed: tuple[str, ...], default: tuple[str, ...]) -> tuple[str, ...]:
        values = _get(head, key, (list,), w, default=list(default))
        for i, v in enumerate(values):
            if v not in allowed:
                raise BaselineError(f"{w}: {key}[{i}] = {v!r} is not one of {', '.join(allowed)}")
        if len(set(values)) != len(values):
            raise BaselineError(f"{w}: key {key!r} lists a value twice")
        return tuple(values)

    seeds = _get(head, "seeds", (int,), w, default=1)
    if seeds < 1:
        raise BaselineError(f"{w}: key 'seeds' must be >= 1, got {seeds}")
    scale = _get(head, "scale", (str,), w, default="tiny")
    if scale not in SCALES:
        raise BaselineError(f"{w}: key 'scale' must be one of {', '.join(SCALES)}, got {scale!r}")
    paper_split = _get(head, "paper_split", (str,), w, default="test")
    if paper_split not in SPLITS:
        raise BaselineError(f"{w}: key 'paper_split' must be one of {', '.join(SPLITS)}, got {paper_split!r}")
    severities = _get(head, "severities", (list,), w, default=list(SEVERITIES))
    for i, s in enumerate(severities):
        if isinstance(s, bool) or s not in SEVERITIES:
            raise BaselineError(f"{w}: severities[{i}] = {s!r} is not one of {SEVERITIES}")
    bootstrap = _get(head, "bootstrap", (int,), w, default=1000)
    if bootstrap < 0:
        raise BaselineError(f"{w}: key 'bootstrap' must be >= 0 (0 disables CIs), got {bootstrap}")
    splits = str_list("splits", SPLITS, ("val", "test"))
    if not splits:
        raise BaselineError(f"{w}: key 'splits' must list at least one of {', '.join(SPLITS)}")
    train = _train_overrides(data["train"], f"{f}: [train]") if "train" in data else {}

    raw_entries = _get(data, "entries", (list,), f, required=True)
    if not raw_entries:
        raise BaselineError(f"{f}: [[entries]] is empty; a suite needs at least one entry")
    entries, missing, groups = [], [], []
    for i, raw in enumerate(raw_entries):
        we = f"{f}: entries[{i}]"
        if not isinstance(raw, dict):
            raise BaselineError(f"{we}: must be a table")
        _only(raw, ("baseline", "label", "params", "train", "group"), we)
        bname = _get(raw, "baseline", (str,), we, required=True)
        group = _get(raw, "group", (str,), we)
        if group is not None and not group.strip():
            raise BaselineError(f"{we}: key 'group' must be a non-empty string")
        if group is not None:
            groups.append(group)
        bpath = baseline_path(bname, broot)
        if not bpath.is_file():
            if skip_missing:
                missing.append(bname)
                continue
            raise BaselineError(f"{we}: baseline {bname!r} has no file {bpath} "
                                "(not written yet? run with --skip-missing to run the other entries)")
        try:
            baseline = load_baseline(bname, broot, check_adapter=check_adapter)
        except BaselineError as exc:
            raise BaselineError(f"{we} (baseline {bname!r}): {exc}") from exc
        params = dict(_get(raw, "params", (dict,), we, default={}))
        entry_train = _train_overrides(raw["train"], f"{we}.train") if "train" in raw else {}
        if check_adapter:
            validate_params(baseline, baseline.params_for(scale, params), f"{we} ({bname}) params", scale)
        entries.append(SuiteEntry(index=i, baseline_name=bname, baseline=baseline,
                                  label=_get(raw, "label", (str,), we, default=baseline.title),
                                  params=params, train=entry_train, group=group))
    if not entries:
        raise BaselineError(f"{f}: none of the entries' baseline files exist ({', '.join(missing)})")
    controls = str_list("controls", CONTROLS, ("none",))
    perturbations = str_list("perturbations", PERTURBATIONS, ())
    conditions = [c.name for c in condition_grid(controls, perturbations, severities)]
    expectations = _expectations(_get(data, "expect", (list,), f, default=[]), f, set(groups),
                                 conditions, splits, paper_split)
    return Suite(
        name=sname, title=_get(head, "title", (str,), w, required=True), path=path,
        data=_get(head, "data", (str,), w, default="synth:small"), seeds=seeds, scale=scale,
        paper_split=paper_split, description=_get(head, "description", (str,), w),
        controls=controls, perturbations=perturbations,
        severities=tuple(severities), splits=splits, bootstrap=bootstrap,
        efficiency=_get(head, "efficiency", (bool,), w, default=True), train=train,
        entries=tuple(entries), missing=tuple(missing), expectations=expectations,
    )


def _expectations(raw: list, f: str, groups: set[str], conditions: list[str],
                  splits: tuple[str, ...], paper_split: str) -> tuple[Expectation, ...]:
    """Validate ``[[expect]]`` tables. Groups are checked against every entry's ``group``,
    including entries skipped for a missing baseline file, so --skip-missing never turns a valid
    suite invalid; metrics against the report's metric definitions."""
    from .report.columns import METRICS

    out = []
    for i, table in enumerate(raw):
        we = f"{f}: expect[{i}]"
        if not isinstance(table, dict):
            raise BaselineError(f"{we}: must be a table")
        kind = _get(table, "kind", (str,), we, required=True)
        if kind not in EXPECT_KINDS:
            raise BaselineError(f"{we}: key 'kind' must be one of {', '.join(EXPECT_KINDS)}, got {kind!r}")
        required, optional = EXPECT_KINDS[kind]
        _only(table, EXPECT_COMMON + required + optional, f"{we} (kind {kind!r})")
        for key in required:
            v = _get(table, key, (float,) if key in ("at_least", "value") else (str,), we, required=True)
            if key in ("at_least", "value") and not math.isfinite(v):
                raise BaselineError(f"{we}: key {key!r} must be a finite number, got {v!r}")
        metric = _get(table, "metric", (str,), we, default=EXPECT_DEFAULT_METRIC)
        if metric not in METRICS:
            raise BaselineError(f"{we}: key 'metric' = {metric!r} is not one of {', '.join(METRICS)}")
        split = _get(table, "split", (str,), we, default=paper_split)
        if split not in splits:
            raise BaselineError(f"{we}: key 'split' = {split!r} is not an evaluated split of this "
                                f"suite ({', '.join(splits)})")
        for key in ("upper", "lower", "group"):
            if key in table and table[key] not in groups:
                raise BaselineError(f"{we}: key {key!r} = {table[key]!r} is a group that no entry has "
                                    f"(groups: {', '.join(sorted(groups)) or 'none; add group = ... to [[entries]]'})")
        if kind == "above" and table["upper"] == table["lower"]:
            raise BaselineError(f"{we}: keys 'upper' and 'lower' name the same group {table['upper']!r}")
        condition = _get(table, "condition", (str,), we, default="none")
        compared = [c for c in conditions if c != "none"] if kind in ("drop", "within_ci") else conditions
        if condition not in compared:
            raise BaselineError(f"{we}: key 'condition' = {condition!r} is not one of this suite's "
                                f"conditions{' other than none' if kind != 'at_least' else ''} "
                                f"({', '.join(compared) or 'none; add it to [suite] controls'})")
        note = _get(table, "note", (str,), we)
        out.append(Expectation(
            index=i, kind=kind, metric=metric, split=split, group=table.get("group"),
            upper=table.get("upper"), lower=table.get("lower"), condition=condition,
            at_least=float(table["at_least"]) if "at_least" in table else None,
            value=float(table["value"]) if "value" in table else None, note=note))
    return tuple(out)


def check_all(root: Path | None = None) -> list[str]:
    """Every problem of every baseline and suite file (one line each); empty when all are valid."""
    problems = []
    for name in list_baselines(root):
        try:
            load_baseline(name, root)
        except (BaselineError, ValueError) as exc:
            problems.append(str(exc))
    for name in list_suites(root):
        try:
            load_suite(name, root)
        except (BaselineError, ValueError) as exc:
            problems.append(str(exc))
    return problems
