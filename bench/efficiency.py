"""Efficiency of a model on one batch: parameters, FLOPs, latency, peak memory, device.

Recorded next to every result so accuracy can be read against cost. Pure measurement: the model's
train/eval mode is restored and nothing is trained. FLOPs come from
``torch.utils.flop_counter.FlopCounterMode``, which counts matmuls, convolutions and attention
(the ops that dominate video models) and silently skips everything else; a model whose forward
the counter cannot trace is recorded as ``"unsupported"`` instead of failing the run.
"""
from __future__ import annotations

import platform
import statistics
import time
import weakref
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from .protocol import Batch, RavarModel


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model with neither)."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"cpu: {line.split(':', 1)[1].strip()}"
    except OSError:
        pass
    return f"cpu: {platform.processor() or platform.machine()}"


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, trainable); shared parameters are counted once."""
    params = list(model.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def flop_counter() -> Any:
    """A ``FlopCounterMode`` that also counts CPU scaled-dot-product attention.

    torch has no formula for the CPU flash-attention kernel, so SDPA on CPU would count 0; we map
    it to torch's own SDPA formula (the one it uses for the CUDA kernels).
    """
    from torch.utils import flop_counter as fc

    def cpu_flash(query, key, value, *args, out_shape=None, **kwargs) -> int:  # noqa: ANN001
        return fc.sdpa_flop_count(query, key, value)

    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    return fc.FlopCounterMode(display=False, custom_mapping={op: cpu_flash} if op is not None else {})


def count_flops(model: RavarModel, batch: Batch) -> tuple[float | str, str]:
    """FLOPs of one forward pass over ``batch`` (total, not per sample), and a note."""
    try:
        counter = flop_counter()
        with torch.no_grad(), counter:
            model(batch)
        total = counter.get_total_flops()
    except Exception as exc:  # tracing failures come in many types; record, don't crash
        return "unsupported", f"FlopCounterMode failed: {exc.__class__.__name__}: {exc}"
    if total == 0:
        return "unsupported", "FlopCounterMode saw no countable op (matmul/conv/attention)"
    return float(total), "FlopCounterMode: matmul, conv and attention only"


class TensorMemoryPeak(TorchDispatchMode):
    """Track the bytes of tensor storages created inside the mode and their peak.

    Why not peak RSS (VmHWM after ``clear_refs``): after the warm-up, glibc keeps freed activation
    memory resident and serves the next forward from it, so the RSS increase reads ~0. Counting
    storages as ops create them, and releasing them when they die, measures the forward itself."""

    def __init__(self) -> None:
        super().__init__()
        self.current = 0
        self.peak = 0
        self._live: dict[int, int] = {}

    def _release(self, key: int) -> None:
        self.current -= self._live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 (torch API)
        out = func(*args, **(kwargs or {}))
        schema = getattr(func, "_schema", None)
        if schema is not None and any(r.alias_info is not None for r in schema.returns):
            return out  # a view or in-place result allocates nothing (e.g. a weight's transpose in linear)
        for item in tree_flatten(out)[0]:
            if isinstance(item, torch.Tensor) and item.device.type != "meta":
                storage = item.untyped_storage()
                key = id(storage)
                if key in self._live:  # a view or an in-place result: already counted
                    continue
                self._live[key] = storage.nbytes()
                self.current += self._live[key]
                self.peak = max(self.peak, self.current)
                weakref.finalize(storage, self._release, key)
        return out


def _cpu_peak(model: RavarModel, batch: Batch) -> tuple[float | None, str]:
    tracker = TensorMemoryPeak()
    try:
        with torch.no_grad(), tracker:
            model(batch)
    except Exception as exc:  # same policy as FLOPs: record, don't crash
        return None, f"peak memory not measured: the forward failed under a dispatch mode ({exc})"
    return tracker.peak / 2**20, "CPU: peak bytes of tensors created during one forward (dispatch-mode count)"


def _cuda_peak(model: RavarModel, batch: Batch, device: torch.device) -> tuple[float, str]:
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    with torch.no_grad():
        model(batch)
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    return (peak - base) / 2**20, "CUDA: max_memory_allocated during one forward, minus what was allocated before"


def measure(model: RavarModel, batch: Batch, repeats: int = 5, warmup: int = 1) -> dict[str, Any]:
    """Parameters, FLOPs, latency (median of ``repeats`` timed forwards after ``warmup``) and peak
    memory of ``model`` on ``batch``, on the model's device. The batch is moved there first."""
    if repeats < 1:
        raise ValueError(f"efficiency.measure: repeats must be >= 1, got {repeats}")
    device = model_device(model)
    batch = batch.to(device)
    n = len(batch)
    was_training = model.training
    model.eval()
    try:
        total, trainable = count_parameters(model)
        flops, flops_note = count_flops(model, batch)

        def sync() -> None:
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        times = []
        with torch.no_grad():
            for _ in range(max(0, warmup)):
                model(batch)
            for _ in range(repeats):
                sync()
                start = time.perf_counter()
                model(batch)
                sync()
                times.append((time.perf_counter() - start) * 1000.0)
        if device.type == "cuda":
            peak, memory_note = _cuda_peak(model, batch, device)
        else:
            peak, memory_note = _cpu_peak(model, batch)
    finally:
        model.train(was_training)
    latency = statistics.median(times)
    return {
        "params_total": total,
        "params_trainable": trainable,
        "flops_per_sample": flops / n if isinstance(flops, float) else flops,
        "flops_note": flops_note,
        "latency_ms": latency,
        "latency_ms_per_sample": latency / n,
        "latency_repeats": repeats,
        "peak_memory_mib": peak,
        "memory_note": memory_note,
        "batch_size": n,
        "frames_shape": list(batch.frames.shape) if batch.frames is not None else None,
        "device": device_name(device),
        "torch_threads": torch.get_num_threads(),
    }


__all__ = ["measure", "count_parameters", "count_flops", "device_name", "model_device"]
