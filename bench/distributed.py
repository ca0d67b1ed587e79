"""torchrun / DistributedDataParallel helpers for training one job on several processes.

Launch: ``torchrun --nproc_per_node N -m ravar_bench.cli run SUITE ...`` (or any script that calls
:func:`init_from_env`). Rules this module enforces, because the released RefAtomNet evaluation
broke them (spec §3.6: DistributedSampler padding, ``drop_last`` and scoring only rank 0's share):

* evaluation shards are contiguous, disjoint and cover the split: no padding, nothing dropped;
* every rank gets the full, gathered predictions back in split order, and the gather checks that
  each instance index arrived exactly once (it raises otherwise);
* collectives move tensors only (no pickled objects), padded to equal length for transport and
  trimmed by the true counts.

Outside torchrun everything degrades to a single process (rank 0 of 1) at no cost.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def env_info() -> DistInfo:
    """What torchrun put in the environment (rank 0 of 1 when not launched by it)."""
    return DistInfo(rank=int(os.environ.get("RANK", 0)), world_size=int(os.environ.get("WORLD_SIZE", 1)),
                    local_rank=int(os.environ.get("LOCAL_RANK", 0)))


def _initialized() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def current() -> DistInfo:
    """The live process group's rank and size, or rank 0 of 1 when none is initialised."""
    if not _initialized():
        return DistInfo()
    return DistInfo(rank=torch.distributed.get_rank(), world_size=torch.distributed.get_world_size(),
                    local_rank=int(os.environ.get("LOCAL_RANK", 0)))


def init_from_env(device: str = "cpu") -> DistInfo:
    """Initialise the default process group when launched with WORLD_SIZE > 1 (gloo for CPU,
    nccl for CUDA); a no-op otherwise. Returns the process's DistInfo."""
    info = env_info()
    if info.world_size <= 1 or _initialized():
        return current() if _initialized() else info
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(info.local_rank)
    torch.distributed.init_process_group(backend=backend)
    return current()


def shutdown() -> None:
    """Tear the process group down only after every rank has arrived: a rank that destroys
    gloo while a peer still has the connection open aborts that peer ("terminate called
    without an active exception")."""
    if _initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def resolve_device(device: str) -> str:
    """``"cuda"`` means this rank's GPU under torchrun (``cuda:<local_rank>``)."""
    if device == "cuda" and current().distributed:
        return f"cuda:{current().local_rank}"
    return device


def shard_rows(n: int, rank: int | None = None, world_size: int | None = None) -> np.ndarray:
    """This rank's contiguous block of ``range(n)``; blocks are disjoint and cover all rows (sizes
    differ by at most one; a rank may get none). No padding, nothing dropped."""
    info = current()
    rank = info.rank if rank is None else rank
    world_size = info.world_size if world_size is None else world_size
    return np.array_split(np.arange(n, dtype=np.int64), world_size)[rank]


def train_rows(rows: np.ndarray, rank: int | None = None, world_size: int | None = None
               ) -> tuple[np.ndarray, float]:
    """This rank's part of one global training batch and its loss weight.

    The weight ``world_size * n_rank / n_global`` makes DDP's gradient average equal the gradient
    of the loss over the whole global batch (losses are per-sample means), so N processes train
    the same model as one. A rank with no rows (last, small batch) still must take part in the
    all-reduce: it gets one row with weight 0."""
    info = current()
    rank = info.rank if rank is None else rank
    world_size = info.world_size if world_size is None else world_size
    if world_size <= 1:
        return rows, 1.0
    mine = np.array_split(rows, world_size)[rank]
    if len(mine) == 0:
        return rows[:1], 0.0
    return mine, world_size * len(mine) / len(rows)


def _comm_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if torch.distributed.get_backend() == "nccl" \
        else torch.device("cpu")


def gather_rows(local: torch.Tensor, rows: np.ndarray, n: int) -> torch.Tensor:
    """All-gather per-row values computed on each rank's shard into an ``(n, ...)`` tensor in row
    order, on every rank. Raises if any row is missing or arrives twice."""
    info = current()
    if not info.distributed:
        if len(rows) != n or not np.array_equal(np.sort(rows), np.arange(n)):
            raise RuntimeError(f"gather_rows: single process holds {len(rows)} rows of {n}")
        if np.array_equal(rows, np.arange(n)):
            return local
        out = torch.empty((n, *local.shape[1:]), dtype=local.dtype, device=local.device)
        out[torch.as_tensor(rows, device=local.device)] = local
        return out
    dev = _comm_device()
    dtype = local.dtype
    payload = local.detach().to(dev)
    if dtype == torch.bool:  # gloo/nccl reduce bools awkwardly; ship as uint8
        payload = payload.to(torch.uint8)
    count = torch.tensor([len(rows)], dtype=torch.int64, device=dev)
    counts = [torch.zeros_like(count) for _ in range(info.world_size)]
    torch.distributed.all_gather(counts, count)
    sizes = [int(c.item()) for c in counts]
    width = max(max(sizes), 1)
    padded = torch.zeros((width, *payload.shape[1:]), dtype=payload.dtype, device=dev)
    padded[: len(rows)] = payload
    index = torch.full((width,), -1, dtype=torch.int64, device=dev)
    index[: len(rows)] = torch.as_tensor(rows, dtype=torch.int64, device=dev)
    all_vals = [torch.zeros_like(padded) for _ in range(info.world_size)]
    all_idx = [torch.zeros_like(index) for _ in range(info.world_size)]
    torch.distributed.all_gather(all_vals, padded)
    torch.distributed.all_gather(all_idx, index)
    vals = torch.cat([v[:s] for v, s in zip(all_vals, sizes)])
    idx = torch.cat([i[:s] for i, s in zip(all_idx, sizes)]).cpu().numpy()
    counts_per_row = np.bincount(idx[(idx >= 0) & (idx < n)], minlength=n)
    if len(idx) != n or (counts_per_row != 1).any() or ((idx < 0) | (idx >= n)).any():
        missing = int((counts_per_row == 0).sum())
        dup = int((counts_per_row > 1).sum())
        raise RuntimeError(f"distributed gather: {n} rows expected, got {len(idx)} "
                           f"({missing} missing, {dup} duplicated); refusing to score a partial split")
    out = torch.empty_like(vals)
    out[torch.as_tensor(idx, device=vals.device)] = vals
    out = out.to(local.device)
    return out.to(torch.bool) if dtype == torch.bool else out


def broadcast_int(value: int, src: int = 0) -> int:
    """Rank ``src``'s integer on every rank (the runner's run/skip decisions)."""
    if not current().distributed:
        return int(value)
    t = torch.tensor([int(value)], dtype=torch.int64, device=_comm_device())
    torch.distributed.broadcast(t, src)
    return int(t.item())


def barrier() -> None:
    if current().distributed:
        torch.distributed.barrier()
