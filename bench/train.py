"""The one training / evaluation loop used by every adapter.

Defaults follow the official RefAtomNet recipe (ravar-spec §5.5–5.6): AdamW-style optimisation with
weight decay 0.2 except biases and norms, lr 1e-4, warm-up-cosine schedule with 30 % warm-up,
gradient-norm clipping at 1.0, loss = MSE(box) + 5 · BCE(actions). Evaluation covers the full split
in one process, in split order, with no padding and no dropped samples. Model selection uses the
validation split; test numbers come from the selected state.

When a model's encoder is frozen (``RavarModel.frozen_encoder``), ``encode`` runs once per instance
and the heads train on the cached features, which is what makes frozen-backbone baselines cheap.

``paraphrases`` (off by default, as the official recipe reads ``v[0]`` only): each training
epoch, every instance reads one of its descriptions drawn uniformly from the run's seed; a frozen
encoder then runs once per description index. Evaluation always reads ``v[0]``.
"""
from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import distributed
from .data.batches import BatchLoader, Controls, FrameTransform
from .data.prepared import PreparedSplit
from .protocol import Batch, ModelOutput, Predictions, RavarModel
from .store import fault_point

Progress = Callable[[str, int, int], None]  # (phase, done, total)
log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Optimisation and evaluation settings; every field can be set from a baseline file."""

    epochs: int = 10
    batch_size: int = 32
    eval_batch_size: int = 128
    lr: float = 1e-4
    weight_decay: float = 0.2
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    warmup: float = 0.3  # fraction of all steps
    schedule: str = "warmup_cosine"  # or "constant"
    grad_clip: float = 1.0
    encoder_lr_scale: float = 1.0  # lr multiplier of model.encoder_parameters() (official coef_lr 1e-3)
    cls_weight: float = 5.0
    box_weight: float = 1.0
    seed: int = 0
    select_metric: str = "paper_v1.mAP"  # validation metric for model selection ("" = last epoch)
    eval_every: int = 1
    cache_features: bool = True
    device: str = "cpu"
    paraphrases: bool = False  # train on all descriptions, one drawn per instance and epoch

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "") -> "TrainConfig":
        """Build from a TOML/JSON table; unknown keys, wrong types and bad values name the key."""
        known = {f.name: f for f in cls.__dataclass_fields__.values()}
        prefix = f"{where}: " if where else ""
        defaults = cls()
        for key, value in values.items():
            if key not in known:
                raise ValueError(f"{prefix}unknown training option {key!r}; known: {', '.join(sorted(known))}")
            default = getattr(defaults, key)
            if isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, float):
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            elif isinstance(default, int):
                ok = isinstance(value, int) and not isinstance(value, bool)
            elif isinstance(default, tuple):
                ok = (isinstance(value, (list, tuple)) and len(value) == len(default)
                      and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value))
            else:
                ok = isinstance(value, type(default))
            if not ok:
                raise ValueError(f"{prefix}training option {key!r} must be {type(default).__name__}"
                                 f"{f' of length {len(default)}' if isinstance(default, tuple) else ''}, got {value!r}")
        vals = {k: (tuple(float(x) for x in v) if isinstance(v, (list, tuple)) else v) for k, v in values.items()}
        cfg = cls(**vals)
        problems = []
        if cfg.epochs < 0:
            problems.append(("epochs", "must be >= 0"))
        if cfg.batch_size < 1:
            problems.append(("batch_size", "must be >= 1"))
        if cfg.eval_batch_size < 1:
            problems.append(("eval_batch_size", "must be >= 1"))
        if cfg.lr <= 0:
            problems.append(("lr", "must be > 0"))
        if not 0 <= cfg.warmup < 1:
            problems.append(("warmup", "must be in [0, 1)"))
        if cfg.schedule not in SCHEDULES:
            problems.append(("schedule", f"must be one of {', '.join(SCHEDULES)}"))
        if cfg.eval_every < 1:
            problems.append(("eval_every", "must be >= 1"))
        if cfg.select_metric and cfg.select_metric.count(".") != 1:
            problems.append(("select_metric", "must look like profile.metric (e.g. paper_v1.mAP) or be empty"))
        for key, msg in problems:
            raise ValueError(f"{prefix}training option {key!r} {msg}, got {getattr(cfg, key)!r}")
        return cfg


SCHEDULES = ("warmup_cosine", "constant")


@dataclass
class FitResult:
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0
    steps: int = 0
    #: the validation split's frozen-encoder features, encoded once for model selection; the
    #: runner evaluates that split (no control, no perturbation) on them instead of re-encoding
    val_cache: FeatureCache | None = field(default=None, repr=False, compare=False)


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch; CPU runs with the same seed give identical metrics."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def ravar_loss(out: ModelOutput, batch: Batch, cfg: TrainConfig) -> torch.Tensor:
    """Official loss: box_weight · MSE(box) + cls_weight · BCE-with-logits(actions), both means."""
    box = F.mse_loss(out.box, batch.gt_box)
    cls = F.binary_cross_entropy_with_logits(out.scores, batch.labels)
    return cfg.box_weight * box + cfg.cls_weight * cls


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with no weight decay on biases and normalisation weights; frozen params skipped.

    Encoder parameters (``RavarModel.encoder_parameters``) train at ``lr · encoder_lr_scale``, the
    official ``coef_lr`` for pretrained backbones. (The official BertAdam differs from AdamW only in
    skipping bias correction.)"""
    encoder = {id(p) for p in getattr(model, "encoder_parameters", lambda: [])()}
    buckets: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim <= 1 or name.endswith(".bias")
        buckets.setdefault((id(p) in encoder, no_decay), []).append(p)
    groups = [{"params": params, "weight_decay": 0.0 if no_decay else cfg.weight_decay,
               "lr": cfg.lr * (cfg.encoder_lr_scale if is_encoder else 1.0)}
              for (is_encoder, no_decay), params in sorted(buckets.items())]
    if not groups:  # nothing to train (e.g. the prior control): an optimizer over a dummy
        return torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=cfg.lr)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)


def lr_multiplier(step: int, total: int, warmup: float, schedule: str = "warmup_cosine") -> float:
    """BertAdam's warmup_cosine: linear warm-up over ``warmup``·total, then half-cosine to 0."""
    if schedule == "constant" or total <= 0:
        return 1.0
    x = step / total
    if x < warmup:
        return x / warmup
    return 0.5 * (1.0 + math.cos(math.pi * x))


class FeatureCache:
    """Encoder outputs of a frozen encoder for every instance of a split, in split order.

    Under torchrun each rank encodes its own block of rows and the blocks are gathered, so the
    encoder runs once per instance in total and every rank ends up with the whole table."""

    def __init__(self, model: RavarModel, loader: BatchLoader, device: str) -> None:
        n = len(loader.split)
        rows = distributed.shard_rows(n)
        chunks: dict[str, list[torch.Tensor]] = {}
        model.eval()
        with torch.no_grad():
            for start in range(0, len(rows), loader.batch_size):
                batch = loader.make_batch(rows[start:start + loader.batch_size])
                for k, v in model.encode(batch.to(device)).items():
                    chunks.setdefault(k, []).append(v.detach())
        features = {k: torch.cat(v) for k, v in chunks.items()}
        if len(rows) == 0 and n > 0:  # this rank's shard is empty: learn the shapes from one row
            with torch.no_grad():
                probe = model.encode(loader.make_batch(np.arange(1)).to(device))
            features = {k: v[:0] for k, v in probe.items()}
        # sorted: every rank must run the same collectives in the same order
        self.features = {k: distributed.gather_rows(v, rows, n) for k, v in sorted(features.items())}

    def lookup(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: v[index.to(v.device)] for k, v in self.features.items()}


class ParaphraseCache:
    """Frozen-encoder features of a training split once per description index: slot ``j`` holds
    every instance encoded with its description ``j`` (its last one where it has fewer), so a
    paraphrase drawn in any epoch is a lookup, never a re-encode."""

    def __init__(self, model: RavarModel, split: PreparedSplit, inputs: frozenset[str],
                 batch_size: int, seed: int, device: str) -> None:
        slots = int(split.paraphrase_counts().max(initial=1))
        caches = [FeatureCache(model, BatchLoader(split, inputs, batch_size, seed=seed, text=j), device)
                  for j in range(slots)]
        self.features = {k: torch.stack([c.features[k] for c in caches]) for k in caches[0].features}

    def lookup(self, index: torch.Tensor, slots: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: v[slots.to(v.device), index.to(v.device)] for k, v in self.features.items()}


def _uses_cache(model: RavarModel, cfg: TrainConfig) -> bool:
    return cfg.cache_features and model.frozen_encoder


def _head_inputs(model: RavarModel) -> frozenset[str]:
    return frozenset(getattr(model, "head_inputs", frozenset()))


def predict(
    model: RavarModel,
    split: PreparedSplit,
    cfg: TrainConfig,
    controls: Controls = Controls(),
    perturb: FrameTransform | None = None,
    cache: FeatureCache | None = None,
) -> Predictions:
    """Scores and boxes for every instance of ``split``, in split order (no drop, no padding).

    Under torchrun each rank predicts a disjoint block and every rank gets the gathered whole."""
    device = distributed.resolve_device(cfg.device)
    model.to(device).eval()
    inputs = _head_inputs(model) if cache is not None else model.inputs
    loader = BatchLoader(split, inputs, cfg.eval_batch_size, shuffle=False, seed=cfg.seed,
                         controls=controls, perturb=perturb)
    n = len(split)
    rows = distributed.shard_rows(n)
    scores, boxes = [torch.zeros(0, 80)], [torch.zeros(0, 4)]
    with torch.no_grad():
        for start in range(0, len(rows), cfg.eval_batch_size):
            batch = loader.make_batch(rows[start:start + cfg.eval_batch_size]).to(device)
            out = model.head(cache.lookup(batch.index), batch) if cache is not None else model(batch)
            scores.append(out.scores.float().cpu())
            boxes.append(out.box.float().cpu())
    all_scores = distributed.gather_rows(torch.cat(scores), rows, n)
    all_boxes = distributed.gather_rows(torch.cat(boxes), rows, n)
    return Predictions(keys=list(split.keys), scores=all_scores.numpy(), boxes=all_boxes.numpy())


def score_split(preds: Predictions, split: PreparedSplit) -> dict[str, dict[str, float]]:
    """All metric profiles of ``preds`` against ``split``'s ground truth."""
    from .metrics import score_all

    return score_all(preds.scores, np.asarray(split.labels), preds.boxes, np.asarray(split.boxes))


def _metric(metrics: dict[str, dict[str, float]], name: str) -> float:
    profile, key = name.split(".", 1)
    try:
        return float(metrics[profile][key])
    except KeyError:
        known = [f"{p}.{k}" for p, vals in metrics.items() for k in vals]
        raise ValueError(f"training option 'select_metric': unknown metric {name!r}; known: "
                         f"{', '.join(known)}") from None


class _Step(nn.Module):
    """One forward of the trained part, shaped for DistributedDataParallel (tensors out)."""

    def __init__(self, model: RavarModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Batch, features: dict[str, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model.head(features, batch) if features is not None else self.model(batch)
        return out.scores, out.box


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of what training can change: trainable parameters and buffers, not frozen backbones
    (copying a frozen 7B model each time validation improves would cost gigabytes)."""
    return {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()
            if not isinstance(v, nn.Parameter) or v.requires_grad}


def _samples_paraphrases(model: RavarModel, train: PreparedSplit, cfg: TrainConfig) -> bool:
    """Whether training draws paraphrases: asked for, and the model reads the sentence. Refuses
    (naming the folder) a split prepared without paraphrases."""
    if not cfg.paraphrases or "text" not in model.inputs:
        return False
    if int(train.paraphrase_counts().max(initial=1)) < 2:
        log.warning("training option 'paraphrases' is on but no instance of %s has more than one "
                    "description: training reads v[0] only", train.folder or train.meta.source)
    return True


def _train_features(cache: FeatureCache | ParaphraseCache | None, batch: Batch,
                    loader: BatchLoader) -> dict[str, torch.Tensor] | None:
    """Cached encoder features of a training batch, at the description each instance reads."""
    if cache is None:
        return None
    if isinstance(cache, ParaphraseCache):
        slots = loader.text_slots()
        assert slots is not None  # a ParaphraseCache goes with a sampling loader
        return cache.lookup(batch.index, torch.as_tensor(slots)[batch.index.cpu()])
    return cache.lookup(batch.index)


def fit(
    model: RavarModel,
    train: PreparedSplit,
    val: PreparedSplit | None,
    cfg: TrainConfig,
    progress: Progress | None = None,
) -> FitResult:
    """Train ``model`` in place; on return it holds the state selected on ``val``."""
    set_seed(cfg.seed)
    device = distributed.resolve_device(cfg.device)
    dist = distributed.current()
    model.to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    use_cache = _uses_cache(model, cfg)
    sample = _samples_paraphrases(model, train, cfg)
    train_cache: FeatureCache | ParaphraseCache | None = None
    val_cache = None
    if use_cache and trainable:  # nothing to train: no features to encode either
        if sample:
            train_cache = ParaphraseCache(model, train, model.inputs, cfg.eval_batch_size, cfg.seed, device)
        else:
            enc_loader = BatchLoader(train, model.inputs, cfg.eval_batch_size, seed=cfg.seed)
            train_cache = FeatureCache(model, enc_loader, device)
        if val is not None:
            val_cache = FeatureCache(model, BatchLoader(val, model.inputs, cfg.eval_batch_size, seed=cfg.seed), device)
    loader = BatchLoader(train, _head_inputs(model) if use_cache else model.inputs, cfg.batch_size,
                         shuffle=True, seed=cfg.seed, text="sample" if sample else None)
    optimizer = build_optimizer(model, cfg)
    epochs = cfg.epochs if trainable else 0  # nothing to train
    step_fn: nn.Module = _Step(model)
    if dist.distributed and epochs:
        from torch.nn.parallel import DistributedDataParallel

        step_fn = DistributedDataParallel(
            step_fn, device_ids=[torch.device(device).index] if device.startswith("cuda") else None,
            find_unused_parameters=True)
    total = max(1, epochs * len(loader))
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    result, step, best = FitResult(best_epoch=max(epochs - 1, 0)), 0, -math.inf
    best_state: dict[str, torch.Tensor] | None = None
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        losses = []
        loader.epoch = epoch
        order = loader.order()
        for first in range(0, len(order), cfg.batch_size):
            rows, weight = distributed.train_rows(order[first:first + cfg.batch_size])
            batch = loader.make_batch(rows).to(device)
            mult = lr_multiplier(step, total, cfg.warmup, cfg.schedule)
            for g, lr in zip(optimizer.param_groups, base_lrs):
                g["lr"] = lr * mult
            if step == 0:
                fault_point("mid_train")
            scores, box = step_fn(batch, _train_features(train_cache, batch, loader))
            loss = ravar_loss(ModelOutput(scores, box), batch, cfg)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss at epoch {epoch}, step {step}")
            optimizer.zero_grad(set_to_none=True)
            (loss * weight if weight != 1.0 else loss).backward()
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
            optimizer.step()
            losses.append(float(loss.detach()))
            step += 1
            if progress:
                progress("train", step, total)
        record = {"epoch": float(epoch), "loss": float(np.mean(losses)) if losses else float("nan")}
        last = epoch == epochs - 1
        if val is not None and cfg.select_metric and ((epoch + 1) % cfg.eval_every == 0 or last):
            metrics = score_split(predict(model, val, cfg, cache=val_cache), val)
            value = _metric(metrics, cfg.select_metric)
            record[f"val.{cfg.select_metric}"] = value
            if value > best:
                best, result.best_epoch = value, epoch
                best_state = trainable_state(model)
        result.history.append(record)
    if best_state is not None:
        model.load_state_dict(best_state, strict=False)
    result.train_seconds = time.perf_counter() - start
    result.steps = step
    result.val_cache = val_cache
    return result


def evaluate(
    model: RavarModel,
    split: PreparedSplit,
    cfg: TrainConfig,
    controls: Controls = Controls(),
    perturb: FrameTransform | None = None,
    cache: FeatureCache | None = None,
) -> tuple[Predictions, dict[str, dict[str, float]]]:
    """Predictions and metrics on a whole split (features re-encoded under the given controls,
    or taken from ``cache``: the same split's features encoded without controls, e.g. by fit)."""
    if cache is not None and (controls != Controls() or perturb is not None):
        raise ValueError("evaluate: a feature cache holds clean features; controls or a perturbation "
                         "need the split re-encoded (pass cache=None)")
    if cache is None and _uses_cache(model, cfg):
        loader = BatchLoader(split, model.inputs, cfg.eval_batch_size, seed=cfg.seed,
                             controls=controls, perturb=perturb)
        cache = FeatureCache(model, loader, distributed.resolve_device(cfg.device))
    preds = predict(model, split, cfg, controls, perturb, cache)
    return preds, score_split(preds, split)


def save_checkpoint(model: nn.Module, path: str) -> None:
    torch.save(model.state_dict(), path)


def load_checkpoint(model: nn.Module, path: str) -> None:
    """Load a state dict saved by :func:`save_checkpoint` (tensors only: ``weights_only=True``)."""
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))


#: Options that enter a job's identity only when they differ from their default: they were added
#: after results were published, and an option left off must not change existing job ids.
OPT_IN_OPTIONS = ("paraphrases",)


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The config as plain data, opt-in options omitted at their default (job identity)."""
    out = asdict(cfg)
    for name in OPT_IN_OPTIONS:
        if out[name] == TrainConfig.__dataclass_fields__[name].default:
            del out[name]
    return out
