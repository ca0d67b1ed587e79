"""GPU check of paper scale (issue 12), ready for the day a GPU machine is lent.

    python benchmarks/bench_gpu.py [--out DIR] [--device cuda] [--dtype bfloat16] [--quick]
    ravar-bench bench gpu -- --out DIR          (the same, through the CLI)
    bash benchmarks/gpu_check.sh                 (offline env vars, writes to $OUT)

Three stages; each writes its results to ``--out`` as soon as it ends, so a run cut short by a time
limit still leaves the stages it finished:

1. ``forward``: every row of the paper suites (``--suites``) built at paper scale with random
   weights directly on the device, one forward at batch 1 at paper shapes under autocast
   (``--dtype``; rows with their own dtype, LLaVA's bfloat16, keep it): forward ok / one-line
   error, parameters, median latency of ``--repeats`` runs, peak memory (max_memory_allocated minus
   what was allocated before the build) and whether the outputs are finite.
2. ``throughput``: the harness's own evaluation (``train.predict``) of ``--throughput`` rows on a
   synthetic split of RefAVA test size (3,056 instances, 2 per clip, 8 frames at 224², key frame
   340×465, 100 candidates): instances/s and harness overhead, the share of wall time spent outside
   the model's forward (batch assembly from uint8 arrays, host→device copies, gathering), timed
   with a device synchronisation at each forward's entry and exit.
3. ``ddp``: a 2-process evaluation (torchrun) of ``--ddp-row`` on that split that checks every
   instance is scored exactly once (the shards are disjoint and cover the split, the gather saw
   each index once) and that the result equals a single-process evaluation. NCCL needs one GPU
   per process: with one GPU the same check runs over gloo on that GPU and says so.

``--device cpu --dtype float32 --quick`` runs every stage on a CPU (small split) to check the
script itself.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ravar_bench import distributed, doctor
from ravar_bench.adapters.registry import get_adapter
from ravar_bench.data.prepared import PreparedMeta, PreparedSplit
from ravar_bench.train import TrainConfig, predict

REFAVA_TEST = 3056  # instances in RefAVA's test split (ravar-spec §2.1)
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="gpu-check", help="output folder (default gpu-check)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="bfloat16", choices=tuple(DTYPES))
    p.add_argument("--suites", default=",".join(doctor.DEFAULT_SUITES))
    p.add_argument("--rows", help="comma-separated baselines for the forward stage (default: every row of --suites)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--throughput", default="refatomnet,clip4clip_vitb16,i3d",
                   help="comma-separated baselines for the throughput stage ('' skips it)")
    p.add_argument("--instances", type=int, default=REFAVA_TEST)
    p.add_argument("--eval-batch", type=int, default=32)
    p.add_argument("--ddp-row", default="x3d", help="baseline for the DDP stage ('' skips it)")
    p.add_argument("--stages", default="forward,throughput,ddp")
    p.add_argument("--quick", action="store_true", help="128 instances, 2 repeats (a smoke test)")
    p.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.instances, args.repeats = min(args.instances, 128), min(args.repeats, 2)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is visible (use --device cpu --dtype float32 to test the script)")
    return args


# ------------------------------------------------------------------------------ helpers
def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def autocast(device: str, dtype: str) -> Any:
    if dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.split(":")[0], dtype=DTYPES[dtype])


def allocated(device: str) -> int:
    return torch.cuda.memory_allocated() if device.startswith("cuda") else 0


def build(name: str, device: str, seed: int = 0) -> torch.nn.Module:
    """The baseline at paper scale with random weights, materialised on ``device``, no network."""
    (target,) = doctor.targets(baselines=[name])
    params = doctor.random_params(target, "paper")
    torch.manual_seed(seed)
    with doctor.no_network(), torch.device(device):
        model = get_adapter(target.baseline.adapter).build(doctor.paper_info(), params)
    return model.to(device).eval()


def free(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def synthetic_split(n: int, seed: int = 0, per_clip: int = 2, shapes: doctor.PaperShapes = doctor.PaperShapes()
                    ) -> PreparedSplit:
    """Random RefAVA-shaped data: ``n`` instances, ``per_clip`` persons per clip, paper geometry."""
    rng = np.random.default_rng(seed)
    clips = (n + per_clip - 1) // per_clip
    k, (h, w), (hk, wk) = shapes.candidates, shapes.frame_size, shapes.key_frame_size
    xy = rng.uniform(0, 0.6, (clips, k, 2))
    cand = np.concatenate([xy, xy + rng.uniform(0.1, 0.4, (clips, k, 2))], -1).astype(np.float32)
    labels = rng.integers(1, len(doctor.COCO_CLASSES), (clips, k)).astype(np.int16)
    labels[:, : shapes.persons] = 0
    clip_index = (np.arange(n) // per_clip).astype(np.int32)
    person = np.arange(n) % per_clip
    return PreparedSplit(
        meta=PreparedMeta(source="bench_gpu synthetic", split="test", fingerprint=f"gpu-{seed}-{n}",
                          object_classes=list(doctor.COCO_CLASSES)),
        keys=[f"vid{c // 4}___{902 + c}___{p}" for c, p in zip(clip_index, person)],
        texts=[doctor.PAPER_SENTENCE] * n, clip_index=clip_index, boxes=cand[clip_index, person],
        labels=(rng.random((n, 80)) < 0.05).astype(np.uint8),
        frames=rng.integers(0, 256, (clips, shapes.num_frames, h, w, 3), dtype=np.uint8),
        key_frames=rng.integers(0, 256, (clips, hk, wk, 3), dtype=np.uint8),
        cand_boxes=cand, cand_labels=labels, cand_scores=rng.random((clips, k)).astype(np.float32),
        cand_mask=np.ones((clips, k), bool))


class ForwardTimer:
    """Wall time spent inside a module's forward, synchronised at entry and exit."""

    def __init__(self, model: torch.nn.Module, device: str) -> None:
        self.device, self.total, self.calls, self._start = device, 0.0, 0, 0.0
        self._hooks = [model.register_forward_pre_hook(self._enter), model.register_forward_hook(self._exit)]

    def _enter(self, *args: Any) -> None:
        sync(self.device)
        self._start = time.perf_counter()

    def _exit(self, *args: Any) -> None:
        sync(self.device)
        self.total += time.perf_counter() - self._start
        self.calls += 1

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()


def save(out: Path, name: str, payload: Any) -> None:
    """Keep every stage in one ``results.json`` (the device tool brings back few files)."""
    path = out / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    results[name] = payload
    path.write_text(json.dumps(results, indent=2, default=str))


# ------------------------------------------------------------------------------ stages
def stage_forward(args: argparse.Namespace, out: Path) -> list[dict[str, Any]]:
    names = ([s for s in args.rows.split(",") if s] if args.rows else
             [t.baseline.name for t in doctor.targets([s for s in args.suites.split(",") if s])])
    batch0 = doctor.synthetic_batch(doctor.paper_info())
    rows = []
    for name in names:
        row: dict[str, Any] = {"baseline": name, "status": "not built"}
        start = time.perf_counter()
        try:
            free(args.device)
            if args.device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            base = allocated(args.device)
            model = build(name, args.device)
            row["params"] = sum(p.numel() for p in model.parameters())
            row["weights_gib"] = (allocated(args.device) - base) / 2**30
            row["build_s"] = time.perf_counter() - start
            row["status"] = "built, forward failed"
            batch = batch0.to(args.device)
            times = []
            with torch.no_grad(), autocast(args.device, args.dtype):
                for i in range(args.repeats + 1):  # the first run warms up
                    sync(args.device)
                    t0 = time.perf_counter()
                    result = model(batch)
                    sync(args.device)
                    if i:
                        times.append((time.perf_counter() - t0) * 1000)
            row["status"] = "forward ok"
            row["latency_ms"] = statistics.median(times) if times else None
            row["finite"] = bool(torch.isfinite(result.scores).all() and torch.isfinite(result.box).all())
            if args.device.startswith("cuda"):
                row["peak_gib"] = (torch.cuda.max_memory_allocated() - base) / 2**30
            del model, result
        except Exception as exc:  # one line per row, whatever went wrong (OOM included)
            row["error"] = doctor.one_line(exc)
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
        print(f"  forward {name:<30} {row['status']:<22} {row.get('latency_ms') or 0:8.1f} ms  "
              f"{row.get('peak_gib') or 0:6.2f} GiB  {row.get('error', '')}", flush=True)
        save(out, "forward", rows)
    return rows


def stage_throughput(args: argparse.Namespace, out: Path, split: PreparedSplit) -> list[dict[str, Any]]:
    rows = []
    for name in [s for s in args.throughput.split(",") if s]:
        row: dict[str, Any] = {"baseline": name, "instances": len(split), "eval_batch": args.eval_batch}
        try:
            free(args.device)
            model = build(name, args.device)
            cfg = TrainConfig(device=args.device, eval_batch_size=args.eval_batch)
            with autocast(args.device, args.dtype):
                predict(model, split.subset(np.arange(min(len(split), args.eval_batch))), cfg)  # warm-up
                timer = ForwardTimer(model, args.device)
                sync(args.device)
                start = time.perf_counter()
                preds = predict(model, split, cfg)
                sync(args.device)
                wall = time.perf_counter() - start
            timer.remove()
            if preds.keys != list(split.keys):
                raise RuntimeError("predictions do not cover the split in order")
            row.update(wall_s=wall, instances_per_s=len(split) / wall, model_s=timer.total, forwards=timer.calls,
                       harness_overhead=1.0 - timer.total / wall, finite=bool(np.isfinite(preds.scores).all()))
            del model
        except Exception as exc:
            row["error"] = doctor.one_line(exc)
        rows.append(row)
        print(f"  throughput {name:<27} {row.get('instances_per_s', 0):8.1f} inst/s  overhead "
              f"{100 * row.get('harness_overhead', 0):5.1f} %  {row.get('error', '')}", flush=True)
        save(out, "throughput", rows)
    return rows


def stage_ddp(args: argparse.Namespace, out: Path, split: PreparedSplit) -> dict[str, Any]:
    gpus = torch.cuda.device_count() if args.device.startswith("cuda") else 0
    backend = "nccl" if gpus >= 2 else "gloo"
    result: dict[str, Any] = {"baseline": args.ddp_row, "backend": backend, "gpus": gpus, "instances": len(split)}
    if args.device.startswith("cuda") and gpus < 2:
        result["note"] = (f"NCCL needs one GPU per process and this machine has {gpus}: the 2-process check "
                          "ran over gloo on the single GPU instead")
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        result["error"] = "torchrun not found next to the Python interpreter"
        save(out, "ddp", result)
        return result
    work = Path(tempfile.mkdtemp(prefix="bench_gpu_ddp."))  # per-rank files stay out of --out
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", __file__, "--ddp-worker", "--out", str(work),
           "--device", args.device, "--instances", str(len(split)), "--eval-batch", str(args.eval_batch),
           "--ddp-row", args.ddp_row, "--dtype", "float32"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800,
                          env={**os.environ, "RAVAR_DDP_BACKEND": backend})
    result["wall_s"] = time.perf_counter() - start
    if proc.returncode != 0:
        result["error"] = f"torchrun exited {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"
        result["stderr_tail"] = proc.stderr[-4000:]
        save(out, "ddp", result)
        return result
    shards = [np.load(work / f"rows_{r}.npy") for r in range(2)]
    gathered = [np.load(work / f"pred_{r}.npz") for r in range(2)]
    rows = np.concatenate(shards)
    result["shard_sizes"] = [len(s) for s in shards]
    result["every_instance_once"] = bool(len(rows) == len(split)
                                         and np.array_equal(np.sort(rows), np.arange(len(split))))
    result["ranks_agree"] = bool(np.array_equal(gathered[0]["scores"], gathered[1]["scores"]))
    free(args.device)
    model = build(args.ddp_row, args.device)
    single = predict(model, split, TrainConfig(device=args.device, eval_batch_size=args.eval_batch))
    diff = float(np.abs(single.scores - gathered[0]["scores"]).max())
    result["max_abs_diff_vs_single_process"] = diff
    result["equals_single_process"] = bool(diff < 1e-3)
    result["ok"] = result["every_instance_once"] and result["ranks_agree"] and result["equals_single_process"]
    save(out, "ddp", result)
    print(f"  ddp ({backend}, {gpus} GPU): every instance once {result['every_instance_once']}, ranks agree "
          f"{result['ranks_agree']}, max |DDP - single| {diff:.2e}", flush=True)
    return result


def ddp_worker(args: argparse.Namespace) -> None:
    """One torchrun rank: shard, predict, gather (``gather_rows`` refuses duplicates and gaps)."""
    backend = os.environ.get("RAVAR_DDP_BACKEND", "gloo")
    info = distributed.init_from_env(args.device if backend == "nccl" else "cpu")
    device = args.device if backend == "nccl" or not args.device.startswith("cuda") else "cuda:0"
    try:
        split = synthetic_split(args.instances)
        model = build(args.ddp_row, distributed.resolve_device(device))
        preds = predict(model, split, TrainConfig(device=device, eval_batch_size=args.eval_batch))
        out = Path(args.out)
        np.save(out / f"rows_{info.rank}.npy", distributed.shard_rows(len(split)))
        np.savez(out / f"pred_{info.rank}.npz", scores=preds.scores, boxes=preds.boxes)
    finally:
        distributed.shutdown()


def environment(args: argparse.Namespace) -> dict[str, Any]:
    cuda = args.device.startswith("cuda")
    return {"device": torch.cuda.get_device_name() if cuda else platform.processor() or platform.machine(),
            "gpus": torch.cuda.device_count() if cuda else 0, "torch": torch.__version__,
            "cuda": torch.version.cuda, "dtype": args.dtype, "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.ddp_worker:
        ddp_worker(args)
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stages = {s.strip() for s in args.stages.split(",") if s.strip()}
    (out / "results.json").unlink(missing_ok=True)
    save(out, "environment", environment(args))
    print(f"bench_gpu on {environment(args)['device']} ({args.dtype}) -> {out}", flush=True)
    failed = False
    if "forward" in stages:
        failed |= any(r["status"] != "forward ok" for r in stage_forward(args, out))
    split = None
    if {"throughput", "ddp"} & stages:
        start = time.perf_counter()
        split = synthetic_split(args.instances)
        print(f"synthetic split: {len(split)} instances, {split.num_clips} clips in "
              f"{time.perf_counter() - start:.1f} s", flush=True)
    if "throughput" in stages and args.throughput:
        failed |= any("error" in r for r in stage_throughput(args, out, split))
    if "ddp" in stages and args.ddp_row:
        failed |= not stage_ddp(args, out, split).get("ok", False)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
