"""``ravar-bench doctor``: build every baseline of some suites at paper scale with random weights
and run one forward (and one training step where anything trains) at paper input shapes.

Why: the paper-scale ``[params]`` name checkpoints of several gigabytes that CI cannot fetch. The
doctor proves the rest without them: that each row builds at its real size (``weights="random"``,
see ``adapters/paper_configs.py``), that its tensors have the shapes the heads expect, and what it
costs (parameters, FLOPs, memory). Nothing here touches the network: every build runs with
``socket.connect`` refused.

Where a row runs: models up to ``cpu_max_params`` parameters are built for real and run on the CPU
(finite outputs and gradients are checked); larger ones (BLIP-2 ViT-g, LLaVA-NeXT-Video-7B) are
built and run under ``torch._subclasses.fake_tensor.FakeTensorMode``, which gives every tensor its
true shape, dtype and size without allocating or computing it, so FLOPs and memory can still be
counted (shapes are checked, values are not). Every row is first built under fake tensors to count
its parameters, which decides where it runs.

Counting conventions (the same for every row): parameters are counted once per tensor, trainable =
``requires_grad`` in the harness (frozen encoders are not trainable); GFLOPs are
``torch.utils.flop_counter`` FLOPs of one eval forward of one instance (a multiply-add counts 2;
matmul, convolution and attention only); memory is the bytes of parameters and buffers plus the
largest live set of tensors created during the eval forward or the training step (forward, loss,
backward; heads only on a frozen encoder's features, as the loop trains them), counted by a
dispatch mode, i.e. an estimate of the peak a GPU would need at batch 1.
"""
from __future__ import annotations

import contextlib
import csv
import math
import os
import socket
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import torch

from .baselines import Baseline, load_baseline, load_suite
from .efficiency import TensorMemoryPeak, count_parameters, flop_counter
from .protocol import Batch, DatasetInfo, RavarModel

#: The suites the issue asks the doctor to cover by default.
DEFAULT_SUITES = ("main", "ablation", "fusion", "agents")
#: Above this many parameters a row runs under fake tensors instead of on the CPU.
CPU_MAX_PARAMS = 500_000_000
DEVICES = ("auto", "cpu", "fake")

#: The 80 COCO category names (DETR-R50's label space without its N/A slots), "person" first as
#: the harness requires; the location stream's candidate classes at paper scale.
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
)
#: A referring expression of typical RefAVA length (about 20 words).
PAPER_SENTENCE = ("the man in the grey coat on the left of the frame who is standing next to the woman "
                  "and talking to her while holding a cup")


class NetworkBlocked(OSError):
    """Something tried to open a connection while the doctor was building with random weights."""


@dataclass(frozen=True)
class PaperShapes:
    """RefAtomNet's input geometry (ravar-spec §5.6): 8 frames at 224², the DETR key frame at
    340×465 (H×W) and DETR's 100 queries as candidates. Adapters resample clips to their own
    paper geometry from here (e.g. I3D to 32 frames at 256², OWLv2 to 960²)."""

    num_frames: int = 8
    frame_size: tuple[int, int] = (224, 224)
    key_frame_size: tuple[int, int] = (340, 465)
    candidates: int = 100
    persons: int = 5  # candidates labelled "person"; the others get other COCO classes


def paper_info(shapes: PaperShapes = PaperShapes()) -> DatasetInfo:
    prior = tuple(0.05 for _ in range(80))
    return DatasetInfo(num_frames=shapes.num_frames, frame_size=shapes.frame_size,
                       key_frame_size=shapes.key_frame_size, max_candidates=shapes.candidates,
                       object_classes=COCO_CLASSES, train_prior=prior, mean_box=(0.3, 0.2, 0.6, 0.9),
                       name="paper-shapes")


def synthetic_batch(info: DatasetInfo, shapes: PaperShapes = PaperShapes(), batch_size: int = 1,
                    seed: int = 0) -> Batch:
    """A random batch at ``info``'s geometry, every input field filled (CPU tensors)."""
    g = torch.Generator().manual_seed(seed)
    b, k = batch_size, info.max_candidates
    xy = torch.rand(b, k, 2, generator=g) * 0.6
    wh = 0.1 + torch.rand(b, k, 2, generator=g) * 0.3
    labels = torch.randint(1, len(info.object_classes), (b, k), generator=g)
    labels[:, : shapes.persons] = 0
    return Batch(
        keys=[f"doctor___{902 + i}___0" for i in range(b)], index=torch.arange(b),
        gt_box=torch.tensor([[0.3, 0.2, 0.6, 0.9]]).expand(b, 4).clone(),
        labels=(torch.rand(b, 80, generator=g) < 0.05).float(),
        frames=torch.rand(b, info.num_frames, 3, *info.frame_size, generator=g),
        key_frame=torch.rand(b, 3, *info.key_frame_size, generator=g),
        text=[PAPER_SENTENCE] * b, cand_boxes=torch.cat([xy, xy + wh], -1),
        cand_labels=labels, cand_scores=torch.rand(b, k, generator=g), cand_mask=torch.ones(b, k, dtype=torch.bool),
    )


# ------------------------------------------------------------------------------ environment
@contextlib.contextmanager
def no_network() -> Iterator[None]:
    """Refuse every socket connection and name lookup inside the block."""
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise NetworkBlocked(f"doctor: a network access was attempted ({args[1:] or kwargs}) while building "
                             "with weights='random', which must never touch the network")

    with mock.patch.object(socket.socket, "connect", refuse), mock.patch.object(socket.socket, "connect_ex", refuse), \
            mock.patch.object(socket, "getaddrinfo", refuse):
        yield


def _init_trunc_normal(tensor: torch.Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0,
                       b: float = 2.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """torch's trunc_normal_ rejection-samples (it asks ``mask.any()``, a question about values fake
    tensors do not have); under fake tensors values are never used, so normal + clamp will do."""
    with torch.no_grad():
        return tensor.normal_(mean, std, generator=generator).clamp_(a, b)


def _module_to(module: torch.nn.Module, *args: Any, **kwargs: Any) -> torch.nn.Module:
    """``Module.to`` for fake parameters: torch swaps a fake parameter in place, which it refuses
    while the fake mode holds a weak reference to it (always). Here a dtype change replaces the
    parameter (tied parameters stay tied) and a device move is a no-op (fake tensors live on a
    fake CPU)."""
    dtype = torch._C._nn._parse_to(*args, **kwargs)[1]
    if dtype is None:
        return module
    memo: dict[int, torch.Tensor] = {}

    def convert(t: torch.Tensor) -> torch.Tensor:
        if id(t) not in memo:
            moved = t.to(dtype) if t.is_floating_point() else t
            memo[id(t)] = torch.nn.Parameter(moved, t.requires_grad) if isinstance(t, torch.nn.Parameter) else moved
        return memo[id(t)]

    with torch.no_grad():
        for m in module.modules():
            for table in (m._parameters, m._buffers):
                for key, t in table.items():
                    if t is not None:
                        table[key] = convert(t)
    return module


@contextlib.contextmanager
def fake_tensors() -> Iterator[Any]:
    """``FakeTensorMode``: build and run a model with true shapes, dtypes and sizes, no memory, no compute.

    Inside the block transformers' weight initialisation is skipped (``no_init_weights``: fake
    tensors hold no values), torch's ``trunc_normal_`` and ``Module.to`` are replaced as above, and
    transformers' data-dependent consistency checks (``TRANSFORMERS_DISABLE_TORCH_CHECK``) are off,
    because a fake tensor cannot say how many of its entries equal a token id. (The ``meta`` device
    would need none of the replacements but fails earlier: transformers' attention-mask helpers ask
    meta tensors for values, and they know to skip that question for fake ones.)"""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # transformers missing: nothing of it to skip
        no_init_weights = contextlib.nullcontext
    previous = os.environ.get("TRANSFORMERS_DISABLE_TORCH_CHECK")
    os.environ["TRANSFORMERS_DISABLE_TORCH_CHECK"] = "1"
    try:
        with FakeTensorMode(allow_non_fake_inputs=True, shape_env=ShapeEnv()) as mode, no_init_weights(), \
                mock.patch.object(torch.nn.init, "trunc_normal_", _init_trunc_normal), \
                mock.patch.object(torch.nn.Module, "to", _module_to), warnings.catch_warnings():
            # deep copies of fake layers (nn.TransformerEncoder clones its layer) read a data pointer
            warnings.filterwarnings("ignore", message="Accessing the data pointer of FakeTensor")
            yield mode
    finally:
        if previous is None:
            os.environ.pop("TRANSFORMERS_DISABLE_TORCH_CHECK", None)
        else:
            os.environ["TRANSFORMERS_DISABLE_TORCH_CHECK"] = previous


# ------------------------------------------------------------------------------ targets
@dataclass(frozen=True)
class Target:
    """One row to check: a baseline with its resolved parameters and the suites that list it."""

    baseline: Baseline
    params: dict[str, Any]
    suites: tuple[str, ...]
    label: str
    scale: str = "paper"

    @property
    def adapter(self) -> str:
        return self.baseline.adapter_for(self.scale)


def targets(suites: list[str] | tuple[str, ...] = DEFAULT_SUITES, scale: str = "paper",
            baselines: list[str] | None = None) -> list[Target]:
    """Every distinct (baseline, parameters) of ``suites`` in suite order, or the named ``baselines``."""
    rows: dict[str, Target] = {}
    if baselines:
        for name in baselines:
            b = load_baseline(name)
            rows[name] = Target(b, b.params_for(scale), (), b.title, scale)
        return list(rows.values())
    for suite_name in suites:
        suite = load_suite(suite_name)
        for entry in suite.entries:
            params = entry.baseline.params_for(scale, entry.params)
            key = f"{entry.baseline_name}|{sorted(params.items())!r}"
            if key in rows:
                old = rows[key]
                if suite_name not in old.suites:
                    rows[key] = Target(old.baseline, old.params, (*old.suites, suite_name), old.label, scale)
                continue
            rows[key] = Target(entry.baseline, params, (suite_name,), entry.label, scale)
    return list(rows.values())


def random_params(target: Target, scale: str) -> dict[str, Any]:
    """The target's parameters with ``weights="random"`` wherever the adapter takes weights (paper scale)."""
    from .adapters.registry import get_adapter

    params = dict(target.params)
    if scale == "paper" and "weights" in get_adapter(target.adapter).parameters():
        params["weights"] = "random"
    return params


def would_load(target: Target) -> str:
    """The weights the real paper-scale build would load (the spec in ``[params]``)."""
    spec = target.params.get("weights")
    return str(spec) if spec else "-"


# ------------------------------------------------------------------------------ one row
@dataclass
class DoctorRow:
    baseline: str
    label: str
    suites: str
    adapter: str
    paper_row: str
    status: str  # "forward ok" | "forward ok, training step failed" | "built, forward failed" | "not built"
    ran_on: str = "-"  # "cpu" | "fake"
    params_total: int | None = None
    params_trainable: int | None = None
    params_outside_vision: int | None = None  # everything but vision towers (LAVIS freeze_vit counting)
    gflops: float | None = None
    peak_gib: float | None = None
    backward: str = "-"
    seconds: float = 0.0
    weights: str = "-"
    note: str = ""
    paper: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "forward ok"


def one_line(exc: BaseException, limit: int = 220) -> str:
    text = str(exc).strip().splitlines()
    msg = f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
    return msg if len(msg) <= limit else msg[: limit - 1] + "…"


def tensor_bytes(model: torch.nn.Module) -> int:
    seen, total = set(), 0
    for t in [*model.parameters(), *model.buffers()]:
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


#: Module names of pretrained vision towers (transformers BLIP-2/X-CLIP/OWLv2, LLaVA, open_clip).
VISION_TOWERS = (".vision_model.", ".vision_tower.", ".visual.")


def params_outside_vision(model: torch.nn.Module) -> int:
    """Parameters outside the pretrained vision tower: what LAVIS counts as trainable with
    ``freeze_vit=True``, the release's "214 M trainable" convention (ravar-spec §5.6)."""
    seen, total = set(), 0
    for name, p in model.named_parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        if not any(tower in f".{name}" for tower in VISION_TOWERS):
            total += p.numel()
    return total


def concrete(x: Any) -> float | None:
    """A number, or None when it is symbolic (a size that depends on tensor values)."""
    try:
        return float(x)
    except Exception:  # torch's symbolic-shape errors have no common public base class
        return None


def _build(target: Target, params: dict[str, Any], info: DatasetInfo) -> RavarModel:
    from .adapters.registry import get_adapter

    return get_adapter(target.adapter).build(info, params, where=f"{target.baseline.path}: [params]")


def _check_outputs(out: Any, batch: Batch, real: bool) -> None:
    n = len(batch)
    if tuple(out.scores.shape) != (n, 80) or tuple(out.box.shape) != (n, 4):
        raise ValueError(f"outputs have shapes scores {tuple(out.scores.shape)}, box {tuple(out.box.shape)}; "
                         f"expected ({n}, 80) and ({n}, 4)")
    if real and not (torch.isfinite(out.scores).all() and torch.isfinite(out.box).all()):
        raise ValueError("outputs are not finite")


def _forward_cost(model: RavarModel, batch: Batch, real: bool) -> tuple[Any, int, dict[str, torch.Tensor]]:
    """One eval forward (``encode`` then ``head``), its outputs checked: (FLOPs, peak bytes of the
    tensors it creates, the encoder features)."""
    model.eval()
    counter, tracker = flop_counter(), TensorMemoryPeak()
    with torch.no_grad(), counter, tracker:
        features = model.encode(batch)
        out = model.head(features, batch)
    _check_outputs(out, batch, real)
    return counter.get_total_flops(), tracker.peak, features


def _train_step(model: RavarModel, batch: Batch, features: dict[str, torch.Tensor], real: bool) -> tuple[str, int]:
    """One training step as the loop runs it: forward, loss, backward in train mode; a frozen encoder's
    features come from the eval forward, as from the loop's feature cache. (status, peak bytes)."""
    from .train import TrainConfig, ravar_loss

    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        return "n/a (nothing trains)", 0
    model.train()
    tracker = TensorMemoryPeak()
    with tracker:
        out = model.head(features, batch) if model.frozen_encoder else model(batch)
        loss = ravar_loss(out, batch, TrainConfig())
        loss.backward()
    got = sum(p.grad is not None for p in trainable)
    if got == 0:
        raise RuntimeError("backward gave no trainable parameter a gradient")
    if real and not all(torch.isfinite(p.grad).all() for p in trainable if p.grad is not None):
        raise RuntimeError("backward gave non-finite gradients")
    return f"ok ({got}/{len(trainable)} tensors)", tracker.peak


def check(target: Target, *, scale: str = "paper", device: str = "auto", cpu_max_params: int = CPU_MAX_PARAMS,
          shapes: PaperShapes = PaperShapes()) -> DoctorRow:
    """Build ``target`` with random weights and run one forward (+ one training step) at batch 1."""
    if device not in DEVICES:
        raise ValueError(f"doctor: --device must be one of {', '.join(DEVICES)}, got {device!r}")
    b = target.baseline
    row = DoctorRow(baseline=b.name, label=target.label, suites=",".join(target.suites), adapter=target.adapter,
                    paper_row=b.paper_row or "", status="not built", weights=would_load(target),
                    paper=b.paper.as_dict() if b.paper else {})
    start = time.perf_counter()
    info = paper_info(shapes)
    try:
        params = random_params(target, scale)
        with no_network():
            with fake_tensors():  # one mode for the probe build and, if it stays fake, the run
                probe = _build(target, params, info)
                total, _ = count_parameters(probe)
                on_cpu = device == "cpu" or (device == "auto" and total <= cpu_max_params)
                row.ran_on = "cpu" if on_cpu else "fake"
                if not on_cpu:
                    _run_checks(row, probe, info, shapes, real=False)
            del probe
            if on_cpu:
                torch.manual_seed(0)
                _run_checks(row, _build(target, params, info), info, shapes, real=True)
    except Exception as exc:  # one line per row, whatever went wrong
        if row.status == "forward ok":
            row.status = "forward ok, training step failed"
        elif row.params_total is not None:
            row.status = "built, forward failed"
        else:
            row.status = "not built"
        row.note = one_line(exc)
    row.seconds = time.perf_counter() - start
    return row


def _run_checks(row: DoctorRow, model: RavarModel, info: DatasetInfo, shapes: PaperShapes, real: bool) -> None:
    row.params_total, row.params_trainable = count_parameters(model)
    row.params_outside_vision = params_outside_vision(model)
    weights_bytes = tensor_bytes(model)
    batch = synthetic_batch(info, shapes)
    flops, fwd_peak, features = _forward_cost(model, batch, real)
    row.status = "forward ok"
    row.backward, train_peak = _train_step(model, batch, features, real)
    notes = [] if real else ["fake tensors: shapes, FLOPs and memory checked, values not computed"]
    # shapes that depend on values (e.g. how many candidates are persons) stay symbolic under fake tensors
    gflops, peak = concrete(flops), concrete(max(fwd_peak, train_peak))
    row.gflops = None if gflops is None else gflops / len(batch) / 1e9
    row.peak_gib = None if peak is None else (weights_bytes + peak) / 2**30
    if gflops is None or peak is None:
        notes.append("FLOPs/memory depend on data-dependent shapes: run on the CPU (--device cpu) to count them")
    row.note = "; ".join(notes)


def run(suites: list[str] | tuple[str, ...] = DEFAULT_SUITES, *, scale: str = "paper", device: str = "auto",
        cpu_max_params: int = CPU_MAX_PARAMS, baselines: list[str] | None = None,
        progress: Any = None) -> list[DoctorRow]:
    """Check every row of ``suites`` (or the named ``baselines``); ``progress(row)`` after each."""
    rows = []
    for target in targets(suites, scale, baselines):
        row = check(target, scale=scale, device=device, cpu_max_params=cpu_max_params)
        rows.append(row)
        if progress is not None:
            progress(row)
    return rows


# ------------------------------------------------------------------------------ output
COLUMNS = ("baseline", "suites", "status", "ran_on", "params_total_M", "params_trainable_M",
           "params_outside_vision_M", "gflops", "peak_gib", "backward", "seconds", "weights", "note")


def _millions(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.1f}"


def _num(x: float | None, fmt: str) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def row_cells(row: DoctorRow) -> dict[str, str]:
    return {"baseline": row.baseline, "suites": row.suites, "status": row.status, "ran_on": row.ran_on,
            "params_total_M": _millions(row.params_total), "params_trainable_M": _millions(row.params_trainable),
            "params_outside_vision_M": _millions(row.params_outside_vision),
            "gflops": _num(row.gflops, ".1f"), "peak_gib": _num(row.peak_gib, ".2f"), "backward": row.backward,
            "seconds": f"{row.seconds:.1f}", "weights": row.weights, "note": row.note}


def table(rows: list[DoctorRow]) -> str:
    """A Markdown table (readable in a terminal, pastable into docs)."""
    heads = ("baseline", "status", "on", "params (M)", "trainable (M)", "GFLOPs/inst", "peak GiB (est.)",
             "backward", "s", "note")
    keys = ("baseline", "status", "ran_on", "params_total_M", "params_trainable_M", "gflops", "peak_gib",
            "backward", "seconds", "note")
    lines = ["| " + " | ".join(heads) + " |", "|" + "|".join(":--" if i in (0, 1, 2, 7, 9) else "--:"
                                                            for i in range(len(heads))) + "|"]
    for row in rows:
        cells = row_cells(row)
        lines.append("| " + " | ".join(cells[k].replace("|", "/") for k in keys) + " |")
    return "\n".join(lines)


def progress_line(row: DoctorRow) -> str:
    """One line per checked row, printed as the doctor goes."""
    cost = "" if row.gflops is None else f", {row.gflops:.1f} GFLOPs, {_num(row.peak_gib, '.2f')} GiB"
    note = f"  ({row.note})" if row.note and not row.ok else ""
    return f"  {row.baseline:<30} {row.status:<22} {row.ran_on:<4} {row.seconds:6.1f} s{cost}{note}"


def summary_line(rows: list[DoctorRow], seconds: float) -> str:
    bad = [r.baseline for r in rows if not r.ok]
    head = f"{len(rows) - len(bad)}/{len(rows)} rows forward ok in {seconds:.0f} s"
    return head + (f"; failed: {', '.join(bad)}" if bad else "")


def write_csv(rows: list[DoctorRow], path: str | Path) -> Path:
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=(*COLUMNS, "label", "adapter", "paper_row"))
        w.writeheader()
        for row in rows:
            w.writerow({**row_cells(row), "label": row.label, "adapter": row.adapter, "paper_row": row.paper_row})
    return path


def as_dicts(rows: list[DoctorRow]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]


__all__ = ["DEFAULT_SUITES", "CPU_MAX_PARAMS", "COCO_CLASSES", "PaperShapes", "Target", "DoctorRow",
           "NetworkBlocked", "paper_info", "synthetic_batch", "no_network", "fake_tensors", "targets",
           "random_params", "check", "run", "table", "progress_line", "summary_line", "write_csv", "as_dicts",
           "one_line"]
