""""Did it learn?" on real trained models (the report tests use demo systems): on RAVAR-Synth small,
the perfect-grounding reference learns and is not flagged; the same model trained with its encoder
output zeroed (person and clip features replaced by zeros before the heads) can only learn a
constant, and is flagged, as is the prior."""
from __future__ import annotations

import pytest
import torch

from conftest import control_baseline, write_baseline_tree
from ravar_bench.adapters.person_level import PersonOracle
from ravar_bench.adapters.registry import register_adapter
from ravar_bench.baselines import load_suite
from ravar_bench.data.specs import resolve_data
from ravar_bench.protocol import Batch
from ravar_bench.report import write_report
from ravar_bench.report.collect import CollectOptions, collect
from ravar_bench.runner import run_suite


@register_adapter("test_oracle_encoder_zeroed", domain="control",
                  summary="test only: person_oracle with its encoder output (person and clip features) zeroed")
class OracleEncoderZeroed(PersonOracle):
    def candidates(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        tokens, boxes, valid = super().candidates(batch)
        return torch.zeros_like(tokens), boxes, valid

    def clip_context(self, batch: Batch) -> torch.Tensor:
        return torch.zeros_like(super().clip_context(batch))


SUITE = """
[suite]
name = "learn"
title = "did it learn, on trained models"
data = "synth:small"
seeds = 1
scale = "tiny"
controls = ["none"]
bootstrap = 200
efficiency = false
[train]
epochs = 6
batch_size = 16
lr = 3e-3
[[entries]]
baseline = "prior"
[[entries]]
baseline = "oracle"
[[entries]]
baseline = "zeroed"
"""


@pytest.mark.slow
def test_a_trained_learner_passes_and_a_zeroed_encoder_is_flagged(tmp_path, monkeypatch):
    base = write_baseline_tree(tmp_path, {
        "prior": control_baseline("prior", "prior", title="Prior"),
        "oracle": control_baseline("oracle", "person_oracle", title="Oracle"),
        "zeroed": control_baseline("zeroed", "test_oracle_encoder_zeroed", title="Encoder zeroed"),
    }, {"learn": SUITE})
    monkeypatch.setenv("RAVAR_BASELINES", str(base))
    suite = load_suite("learn")
    summary = run_suite(suite, resolve_data(suite.data, progress=False), tmp_path / "out", progress=False)
    assert summary.count("done") == 3 and not summary.failed
    lb = collect(tmp_path / "out", "learn", CollectOptions(n_resamples=200))
    flag = {r.label: r.above_prior for r in lb.rows if r.kind != "reference"}
    assert flag == {"Prior": None, "Oracle": True, "Encoder zeroed": False}, lb.learning_summary()
    written = write_report(lb, tmp_path / "report", ("md",))
    assert written["txt:learning"].read_text().startswith("did it learn? 1/2")
    assert "Encoder zeroed" in written["txt:learning"].read_text()
