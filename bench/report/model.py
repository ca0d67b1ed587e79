"""The report's table model: rows of seed-aggregated cells, independent of any output format.

The store loader (:mod:`.collect`) fills it; the formatters (:mod:`.text`, :mod:`.html`) and the
plots only read it. Keeping it plain data is what lets the formatters be tested without a store.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .columns import HEADLINE, PAPER_METRICS, STRICT_HEADLINE
from .stats import Significance

#: Row kinds, in the order tables show them: the suite's models, then the controls that frame
#: them (blind baselines), then analytic references of the synthetic data.
KINDS = ("entry", "control", "reference")


@dataclass
class Cell:
    """One metric of one row on one split and condition, aggregated over seeds."""

    mean: float
    std: float | None = None  # over seeds (ddof=1); None with one seed
    values: tuple[float, ...] = ()  # per seed
    low: float | None = None  # 95 % CI of the seed mean
    high: float | None = None
    ci: str = "none"  # "bootstrap" (from predictions) | "pooled" (stored CIs) | "none"

    @property
    def n(self) -> int:
        return len(self.values)

    @classmethod
    def of(cls, values: list[float], low: float | None = None, high: float | None = None,
           ci: str = "none") -> "Cell":
        vals = tuple(float(v) for v in values if v is not None and math.isfinite(float(v)))
        mean = float(np.mean(vals)) if vals else float("nan")
        std = float(np.std(vals, ddof=1)) if len(vals) > 1 else None
        if low is not None and not math.isfinite(low):
            low = high = None
            ci = "none"
        return cls(mean, std, vals, low, high, ci if low is not None else "none")


@dataclass
class PaperRef:
    """The paper's numbers for a row (x100) and where they come from."""

    values: dict[str, dict[str, float]]  # split -> {"mIoU", "mAP", "AUROC"}
    verified: bool
    source: str
    origin: str  # the baseline file they were read from, or "record" (the copy stored in the job)
    paper_row: str | None = None

    @property
    def tag(self) -> str:
        return "paper" if self.verified else "paper (unverified)"

    def value(self, split: str, key: str) -> float | None:
        """Paper value of ``key`` ("paper_v1.mAP") on ``split``; None if the paper has none."""
        profile, _, name = key.partition(".")
        if profile != "paper_v1":
            return None
        v = (self.values.get(split) or {}).get(name)
        return None if v is None else float(v)


@dataclass
class Row:
    """One leaderboard row: a suite entry (all its seeds), a control, or a reference."""

    id: str
    label: str
    kind: str = "entry"
    baseline: str | None = None
    title: str | None = None
    domain: str | None = None
    adapter: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    seeds: tuple[int, ...] = ()
    job_ids: tuple[str, ...] = ()
    cells: dict[tuple[str, str, str], Cell] = field(default_factory=dict)  # (split, condition, key)
    efficiency: dict[str, Any] = field(default_factory=dict)  # params_m, gflops, latency_ms, device
    paper: PaperRef | None = None
    letters: str = ""
    differs_from_best: bool | None = None
    is_best: bool = False
    note: str = ""
    #: "did it learn?": headline above the prior row's (paired bootstrap); None = not tested
    above_prior: bool | None = None
    vs_prior: tuple[float, float] | None = None  # CI of (row − prior) on the headline
    group: str | None = None  # the suite entry's ``group`` (read from the suite file as it is now)

    def cell(self, split: str, key: str, condition: str = "none") -> Cell | None:
        return self.cells.get((split, condition, key))

    def headline(self, split: str) -> float:
        c = self.cell(split, HEADLINE)
        return c.mean if c is not None else float("nan")

    def paper_diff(self, split: str, key: str) -> float | None:
        """Measured seed mean minus the paper's value (None without both)."""
        if self.paper is None:
            return None
        ref, c = self.paper.value(split, key), self.cell(split, key)
        if ref is None or c is None or not math.isfinite(c.mean):
            return None
        return c.mean - ref


@dataclass
class Evidence:
    """One comparison behind an expectation's verdict: a pair of rows ("above") or one row
    against a threshold or its own clean CI. ``holds`` None = undecidable (a cell or CI missing);
    ``margin`` = how far the numbers are on the right side of the requirement (negative: wrong
    side), in metric units."""

    holds: bool | None
    text: str
    margin: float | None = None
    p_holm: float | None = None  # "above" on the significance matrix's metric and split


@dataclass
class ExpectationResult:
    """A suite's ``[[expect]]`` evaluated on the report's numbers: every comparison it implies."""

    index: int
    kind: str
    statement: str
    evidence: list[Evidence] = field(default_factory=list)
    note: str | None = None  # the suite's own note, shown as the suite's words
    reason: str = ""  # why there is no evidence at all (e.g. no row of a group in the report)
    short: str = ""  # the statement in a few words, for the end-of-run line

    @property
    def status(self) -> str:
        """"holds" (every comparison holds), "does not hold" (one fails) or "undecided"."""
        if any(e.holds is False for e in self.evidence):
            return "does not hold"
        if not self.evidence or any(e.holds is None for e in self.evidence):
            return "undecided"
        return "holds"

    @property
    def failing(self) -> list[Evidence]:
        return [e for e in self.evidence if e.holds is False]

    @property
    def undecided(self) -> list[Evidence]:
        return [e for e in self.evidence if e.holds is None]

    @property
    def verdict(self) -> str:
        """``holds (18 pairs)``, ``DOES NOT HOLD (2 of 18 pairs fail)``, ``undecided (...)``."""
        unit = "pairs" if self.kind == "above" else "rows"
        n = len(self.evidence)
        if self.status == "does not hold":
            return f"DOES NOT HOLD ({len(self.failing)} of {n} {unit} fail)"
        if self.status == "undecided":
            return f"undecided ({self.reason or f'{len(self.undecided)} of {n} {unit} cannot be decided'})"
        return f"holds ({n} {unit})"

    def shown(self) -> list[Evidence]:
        """What a report lists under the expectation: every failing and undecided comparison,
        or, when it holds, the closest one (the comparison nearest to failing)."""
        return self.evidence[:1] if self.status == "holds" else self.failing + self.undecided


@dataclass
class Leaderboard:
    """Everything one report shows."""

    title: str
    suite: str | None
    results_dir: str
    rows: list[Row]
    splits: tuple[str, ...] = ("val", "test")
    paper_split: str = "test"
    conditions: tuple[str, ...] = ("none",)
    paper_metrics: tuple[str, ...] = PAPER_METRICS
    strict_metrics: tuple[str, ...] = STRICT_HEADLINE
    notes: list[str] = field(default_factory=list)  # warnings shown at the top
    missing: list[dict[str, Any]] = field(default_factory=list)  # jobs without a record
    significance: Significance | None = None
    per_class: dict[str, Any] | None = None  # {"label": ..., "rows": per_class_ap_table rows}
    sweep: dict[str, Any] | None = None  # {"param": name, "points": [(x, Cell, label)]}
    data_specs: tuple[str, ...] = ()
    generated: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    n_resamples: int = 0
    expectations: list[ExpectationResult] = field(default_factory=list)  # the suite's [[expect]]

    def not_learned(self) -> list[Row]:
        """Learned rows whose headline is not above the prior's (see ``Row.above_prior``)."""
        return [r for r in self.rows if r.above_prior is False]

    def learning_summary(self) -> str | None:
        """One line for the end of a run: None when no row was tested against the prior."""
        tested = [r for r in self.rows if r.above_prior is not None]
        if not tested:
            return None
        flat = self.not_learned()
        if len(flat) == len(tested):
            return (f"did it learn? NO learned model is above the prior ({self.paper_split} "
                    f"{HEADLINE}, paired bootstrap): check the features and the training curves")
        if flat:
            return (f"did it learn? {len(tested) - len(flat)}/{len(tested)} learned rows are above the "
                    f"prior; not above it: {', '.join(r.label for r in flat)}")
        return f"did it learn? all {len(tested)} learned rows are above the prior (paired bootstrap)"

    def of_kind(self, kind: str) -> list[Row]:
        return [r for r in self.rows if r.kind == kind]

    def ordered(self) -> list[Row]:
        """Rows as tables show them: entries ranked by the headline metric on the paper split,
        then controls, then references (each group ranked the same way)."""
        def rank(r: Row) -> tuple[float, str]:
            v = r.headline(self.paper_split)
            return (-v if math.isfinite(v) else math.inf, r.label)

        return [r for kind in KINDS for r in sorted(self.of_kind(kind), key=rank)]

    def has_paper(self) -> bool:
        return any(r.paper is not None for r in self.rows)

    def extra_conditions(self) -> list[str]:
        """Evaluation controls other than "none" that carry no perturbation (text_swap, ...)."""
        return [c for c in self.conditions if c != "none" and "@" not in c]

    def perturbations(self) -> dict[str, list[tuple[int, str]]]:
        """Perturbation name -> [(severity, condition)] for conditions without a data control."""
        out: dict[str, list[tuple[int, str]]] = {}
        for c in self.conditions:
            if "@" in c and "+" not in c:
                name, _, sev = c.partition("@")
                if sev.isdigit():
                    out.setdefault(name, []).append((int(sev), c))
        return {k: sorted(v) for k, v in out.items()}
