"""bench/efficiency.measure on models whose cost is known by construction."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from ravar_bench.efficiency import measure
from ravar_bench.protocol import Batch, ModelOutput, RavarModel


def make_batch(n: int = 4) -> Batch:
    return Batch(keys=[str(i) for i in range(n)], index=torch.arange(n), gt_box=torch.zeros(n, 4),
                 labels=torch.zeros(n, 80), frames=torch.rand(n, 2, 3, 8, 8))


class Linear(RavarModel):
    """frames -> flatten -> Linear(384, 80): 2*384*80 FLOPs per sample, one frozen Linear."""

    inputs = frozenset({"frames"})

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2 * 3 * 8 * 8, 80)
        self.frozen = nn.Linear(3, 3)
        self.frozen.requires_grad_(False)
        self.drop = nn.Dropout(0.5)

    def head(self, features, batch: Batch) -> ModelOutput:
        x = self.drop(batch.frames.flatten(1))
        return ModelOutput(self.fc(x), torch.zeros(len(batch), 4))


class Allocates(RavarModel):
    """Creates a known 8 MiB temporary per forward (plus small outputs)."""

    def head(self, features, batch: Batch) -> ModelOutput:
        big = torch.ones(2 * 2**20)  # 8 MiB float32
        s = big.sum()
        return ModelOutput(torch.zeros(len(batch), 80) + s, torch.zeros(len(batch), 4))


class Untraceable(RavarModel):
    """Fails only under a dispatch mode (as some custom ops do), works otherwise."""

    def head(self, features, batch: Batch) -> ModelOutput:
        from torch.utils._python_dispatch import _get_current_dispatch_mode

        if _get_current_dispatch_mode() is not None:
            raise RuntimeError("custom op not traceable")
        return ModelOutput(torch.zeros(len(batch), 80), torch.zeros(len(batch), 4))


def test_counts_parameters_flops_and_latency():
    model = Linear().train()
    stats = measure(model, make_batch(4), repeats=3)
    assert stats["params_total"] == 384 * 80 + 80 + 3 * 3 + 3
    assert stats["params_trainable"] == 384 * 80 + 80
    assert stats["flops_per_sample"] == 2 * 384 * 80
    assert stats["latency_ms"] > 0 and stats["latency_ms_per_sample"] == pytest.approx(stats["latency_ms"] / 4)
    assert stats["batch_size"] == 4 and stats["latency_repeats"] == 3
    assert stats["device"].startswith("cpu") and stats["frames_shape"] == [4, 2, 3, 8, 8]


def test_restores_mode_and_leaves_the_model_untouched():
    model = Linear().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    measure(model, make_batch(), repeats=1)
    assert model.training and model.drop.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    model.eval()
    measure(model, make_batch(), repeats=1)
    assert not model.training


def test_peak_memory_sees_temporaries():
    stats = measure(Allocates(), make_batch(), repeats=1)
    assert 8.0 <= stats["peak_memory_mib"] < 9.0, stats["memory_note"]


def test_flops_unsupported_is_recorded_not_raised():
    stats = measure(Untraceable(), make_batch(), repeats=1)
    assert stats["flops_per_sample"] == "unsupported" and "custom op not traceable" in stats["flops_note"]
    assert stats["latency_ms"] > 0
    assert stats["peak_memory_mib"] is None and "not measured" in stats["memory_note"]


def test_repeats_must_be_positive():
    with pytest.raises(ValueError, match="repeats"):
        measure(Linear(), make_batch(), repeats=0)
