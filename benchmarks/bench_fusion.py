"""Cost curves of every fusion variant as the video stream grows (fusion.md §6.3–6.4).

    /work/venv/bin/python benchmarks/bench_fusion.py [--quick] [--d 256] [--batch 1] [--out DIR]

For each variant and N_v ∈ {32, 256, 2056, 4112, 8224} (text and location streams fixed, all tokens
valid) it records, next to each other:

* ``macs``      the analytic ``Fusion.macs()`` (per sample, MAC convention of fusion.md §0);
* ``fc_macs``   torch.utils.flop_counter's count / 2 / batch (forward only). The CPU flash-SDPA op is
                registered with torch's own SDPA formula, which the counter otherwise skips;
* ``latency``   median (and p90) of timed runs after warm-up: CUDA events on a GPU, perf_counter on
                the CPU (with the process CPU time, which contention inflates less);
* ``peak_mib``  CUDA: max_memory_allocated during one run minus what was allocated before; CPU:
                peak bytes of tensors created during one run (dispatch-mode count, as
                ravar_bench.efficiency does: peak RSS reads ~0 once glibc has cached the memory).

The OOM / too-slow boundary is recorded instead of crashing: RuntimeError / MemoryError (CUDA OOM
included) give ``oom``; a warm-up run longer than ``--budget`` seconds gives ``timeout``; a size
whose run is predicted (quadratic extrapolation from the previous size) to exceed twice the budget
or ``--mem-limit-gb`` is skipped as ``timeout (predicted)`` / ``oom (predicted)``, as are larger
sizes of a variant that already failed. ``V1-eager`` is V1 with SDPA forced onto the math backend
(explicit N×N attention), the "eager vs SDPA" row of fusion.md §6.4.

It then prints the latency and peak-memory ratios of concat self-attention (V1, and V1-eager)
over agent attention (V3, V4a, V4b) at N_v = ``--ratio-nv`` (4096), and writes curve.csv,
curve.json (with the device, settings and ratios) and curve.png to ``--out``.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ravar_bench.adapters.fusion import StreamTokens, build_fusion

FULL_NV = (32, 256, 2056, 4112, 8224)
QUICK_NV = (32, 256, 2056)
RATIO_LABELS = ("V1", "V1-eager", "V3", "V4a", "V4b")


def variant_table(heads: int, agents: int, mlp_ratio: float) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, registry id, hparams) of every benchmarked configuration."""
    att = {"heads": heads, "mlp_ratio": mlp_ratio}
    inner = {"inner": "v1", "inner_params": att}
    return [
        ("V0", "v0", {}),
        ("Concat", "concat", {}),
        ("V1", "v1", att),
        ("V1-eager", "v1", att),  # same module, SDPA forced onto the math backend
        ("V2", "v2", att),
        ("V2b", "v2b", att),
        ("MBT", "bottleneck", att),
        ("V3", "v3", {**att, "agents": agents}),
        ("V4a", "v4", {**att, "agents": agents}),
        ("V4b", "v4", {**att, "agents": agents, "agent_source": "text"}),
        ("V5", "v5", {"mode": "corrected", "heads": 1, "agents": 4, "tokens": 32, "mlp_ratio": mlp_ratio}),
        ("V6", "v6", {**att, "agents": agents}),
        ("V6b", "v6b", {**att, "agents": agents}),
        ("V7a", "v7", {"reducer": "tome", **inner}),
        ("V7b", "v7", {"reducer": "mctf", **inner}),
        ("V7c", "v7", {"reducer": "pitome", **inner}),
        ("V7d", "v7", {"reducer": "topk", **inner}),
        ("V8", "v8", att),
        ("V8-cross", "v8", {**att, "form": "cross"}),
        ("V9", "v9", {**att, "latents": agents}),
    ]


@dataclass
class Point:
    label: str
    variant: str
    n_video: int
    status: str = "ok"  # ok | oom | timeout | oom (predicted) | timeout (predicted) | error: …
    latency_ms: float | None = None
    latency_p90_ms: float | None = None
    cpu_ms: float | None = None
    repeats: int = 0
    peak_mib: float | None = None
    macs: int | None = None
    fc_macs: float | None = None
    note: str = ""
    hparams: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------ measuring
def make_streams(n: dict[str, int], batch: int, d: int, device: torch.device, dtype: torch.dtype,
                 grad: bool) -> dict[str, StreamTokens]:
    g = torch.Generator().manual_seed(0)
    out = {}
    for kind, length in n.items():
        x = torch.randn(batch, length, d, generator=g).to(device=device, dtype=dtype)
        out[kind] = StreamTokens(x.requires_grad_(grad), torch.ones(batch, length, dtype=torch.bool, device=device),
                                 kind=kind)
    return out


def backend(label: str):
    if label.endswith("-eager"):
        from torch.nn.attention import SDPBackend, sdpa_kernel
        return sdpa_kernel([SDPBackend.MATH])
    return contextlib.nullcontext()


class Runner:
    """One forward (inference) or forward + backward (``train``) of a fusion on fixed streams."""

    def __init__(self, fusion, streams, label: str, train: bool, amp: torch.dtype | None, device: torch.device):
        self.fusion, self.streams, self.label, self.train, self.amp, self.device = fusion, streams, label, train, amp, device

    def __call__(self) -> None:
        autocast = torch.autocast(self.device.type, dtype=self.amp) if self.amp else contextlib.nullcontext()
        grad = torch.enable_grad() if self.train else torch.no_grad()
        with grad, autocast, backend(self.label):
            out = self.fusion(self.streams)
            if self.train:
                out.pooled.float().square().sum().backward()
        if self.train:
            self.fusion.zero_grad(set_to_none=True)
            for s in self.streams.values():
                s.x.grad = None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_once(run: Runner, device: torch.device) -> tuple[float, float]:
    """Wall milliseconds (CUDA events on a GPU) and process CPU milliseconds of one run."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        c0 = time.process_time()
        start.record()
        run()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end), (time.process_time() - c0) * 1e3
    c0, t0 = time.process_time(), time.perf_counter()
    run()
    return (time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3


def peak_memory(run: Runner, device: torch.device) -> float:
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        run()
        sync(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    from ravar_bench.efficiency import TensorMemoryPeak  # the harness's CPU tensor-peak counter

    tracker = TensorMemoryPeak()
    with tracker:
        run()
    return tracker.peak / 2**20


def flop_counter_macs(run: Runner, batch: int) -> float | str:
    from ravar_bench.efficiency import flop_counter  # counts CPU flash attention too

    try:
        counter = flop_counter()
        inference = Runner(run.fusion, run.streams, run.label, False, run.amp, run.device)
        with counter:
            inference()
        return counter.get_total_flops() / 2 / batch
    except Exception as exc:  # the counter cannot trace everything; record, don't crash
        return f"unsupported ({exc.__class__.__name__})"


def is_oom(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or "out of memory" in text or "can't allocate memory" in text \
        or "not enough memory" in text or isinstance(exc, getattr(torch.cuda, "OutOfMemoryError", ()))


def measure(label: str, variant: str, hparams: dict[str, Any], n: dict[str, int], args, device: torch.device,
            previous: Point | None) -> Point:
    pt = Point(label, variant, n["video"], hparams=hparams)
    if previous is not None and previous.status != "ok":
        pt.status = previous.status if "predicted" in previous.status else f"{previous.status} (predicted)"
        pt.note = f"skipped: failed at N_v={previous.n_video}"
        return pt
    grow = (n["video"] + n["text"] + n["loc"]) / (previous.n_video + n["text"] + n["loc"]) if previous else 1.0
    kw = dict(hparams)
    if variant == "v5":
        kw["max_tokens"] = dict(n)
    torch.manual_seed(0)
    try:
        fusion = build_fusion(variant, args.d, **kw).to(device)
        pt.macs = fusion.macs(n)
    except Exception as exc:  # a bad configuration is a result too
        pt.status, pt.note = f"error: {exc.__class__.__name__}", str(exc)[:200]
        return pt
    if previous is not None and previous.latency_ms is not None and previous.latency_ms / 1e3 * grow ** 2 > 2 * args.budget:
        pt.status = "timeout (predicted)"
        pt.note = f"{previous.latency_ms / 1e3 * grow ** 2:.0f} s predicted from N_v={previous.n_video}"
        return pt
    if previous is not None and previous.peak_mib is not None and previous.peak_mib * grow ** 2 / 1024 > args.mem_limit_gb:
        pt.status = "oom (predicted)"
        pt.note = f"{previous.peak_mib * grow ** 2 / 1024:.1f} GiB predicted from N_v={previous.n_video}"
        return pt
    fusion.train(args.mode == "train")
    dtype = torch.float32
    amp = torch.bfloat16 if args.dtype == "bf16" else None
    streams = make_streams(n, args.batch, args.d, device, dtype, grad=args.mode == "train")
    run = Runner(fusion, streams, label, args.mode == "train", amp, device)
    try:
        t0 = time.perf_counter()
        for _ in range(max(1, args.warmup)):
            run()
            sync(device)
            if time.perf_counter() - t0 > args.budget:
                break
        first = time.perf_counter() - t0
        if first > args.budget:
            pt.status, pt.note = "timeout", f"warm-up took {first:.1f} s > budget {args.budget} s"
            pt.latency_ms = first * 1e3  # lower bound, used only to skip larger sizes
            return pt
        walls, cpus = [], []
        spent = 0.0
        for _ in range(args.repeats):
            wall, cpu = time_once(run, device)
            walls.append(wall)
            cpus.append(cpu)
            spent += wall / 1e3
            if spent > args.budget:
                break
        pt.repeats = len(walls)
        pt.latency_ms = statistics.median(walls)
        pt.latency_p90_ms = sorted(walls)[min(len(walls) - 1, math.ceil(0.9 * len(walls)) - 1)]
        pt.cpu_ms = statistics.median(cpus)
        pt.peak_mib = peak_memory(run, device)
        if args.flops:
            fc_val = flop_counter_macs(run, args.batch)
            if isinstance(fc_val, str):
                pt.note = fc_val
            else:
                pt.fc_macs = fc_val
    except (RuntimeError, MemoryError) as exc:
        pt.status = "oom" if is_oom(exc) else f"error: {exc.__class__.__name__}"
        pt.note = str(exc).splitlines()[0][:200]
    finally:
        del run, streams, fusion
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return pt


# --------------------------------------------------------------------------------- output
def fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def print_table(points: list[Point]) -> None:
    print(f"{'variant':<9} {'N_v':>5} {'status':<20} {'lat ms':>9} {'p90 ms':>9} {'cpu ms':>9} {'peak MiB':>9} "
          f"{'GMACs':>8} {'fc GMACs':>8}")
    for p in points:
        print(f"{p.label:<9} {p.n_video:>5} {p.status:<20.20} {fmt(p.latency_ms if p.status == 'ok' else None, '9.2f')} "
              f"{fmt(p.latency_p90_ms, '9.2f')} {fmt(p.cpu_ms, '9.1f')} {fmt(p.peak_mib, '9.2f')} "
              f"{fmt(None if p.macs is None else p.macs / 1e9, '8.3f')} "
              f"{fmt(None if p.fc_macs is None else p.fc_macs / 1e9, '8.3f')}")


def ratios(points: list[Point], n_v: int) -> dict[str, dict[str, float | None]]:
    """V1 (and V1-eager) over each agent variant at ``n_v``: latency and peak-memory ratios."""
    at = {p.label: p for p in points if p.n_video == n_v and p.status == "ok"}
    out = {}
    for base in ("V1", "V1-eager"):
        for agent in ("V3", "V4a", "V4b"):
            if base in at and agent in at:
                b, a = at[base], at[agent]
                out[f"{base}/{agent}"] = {"latency": b.latency_ms / a.latency_ms,
                                          "cpu_time": b.cpu_ms / a.cpu_ms if a.cpu_ms else None,
                                          "peak_memory": b.peak_mib / a.peak_mib if a.peak_mib else None,
                                          f"{base}_ms": b.latency_ms, f"{agent}_ms": a.latency_ms,
                                          f"{base}_mib": b.peak_mib, f"{agent}_mib": a.peak_mib}
    return out


def print_ratios(rs: dict[str, dict[str, float | None]], n_v: int, device: str, goal: float = 4.0) -> None:
    print(f"\nRatios at N_v = {n_v} ({device}); goal >= {goal:.0f}x on both:")
    if not rs:
        print("  (not measured: V1 or the agent variants did not run at this size)")
    for key, r in rs.items():
        base, agent = key.split("/")
        mem = r["peak_memory"]
        ok = "meets" if r["latency"] >= goal and mem is not None and mem >= goal else "misses"
        print(f"  {base:>8} / {agent:<4} latency {r['latency']:6.2f}x ({r[f'{base}_ms']:.1f} vs {r[f'{agent}_ms']:.1f} ms; "
              f"CPU time {fmt(r['cpu_time'], '.2f')}x)   peak memory {fmt(mem, '6.2f')}x "
              f"({r[f'{base}_mib']:.1f} vs {r[f'{agent}_mib']:.1f} MiB)   {ok} the goal")


def write_outputs(points: list[Point], meta: dict[str, Any], out: Path, plot: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows = [asdict(p) for p in points]
    with open(out / "curve.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[k for k in rows[0] if k != "hparams"] + ["hparams"])
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "hparams": json.dumps(r["hparams"])})
    (out / "curve.json").write_text(json.dumps({"meta": meta, "points": rows}, indent=1))
    if plot:
        try:
            plot_curves(points, meta, out / "curve.png")
        except ImportError as exc:
            print(f"no plot: {exc}", file=sys.stderr)


def plot_curves(points: list[Point], meta: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(18, 5.5))
    labels = list(dict.fromkeys(p.label for p in points))
    cmap = plt.get_cmap("tab20")
    for i, label in enumerate(labels):
        pts = sorted((p for p in points if p.label == label), key=lambda p: p.n_video)
        ok = [p for p in pts if p.status == "ok"]
        style = dict(color=cmap(i % 20), marker="o", ms=3, lw=1.2, ls="--" if "V7" in label or "eager" in label else "-")
        for ax, key in zip(axes, ("latency_ms", "peak_mib", "macs")):
            series = ok if key != "macs" else [p for p in pts if p.macs is not None]
            if series:
                ax.plot([p.n_video for p in series], [getattr(p, key) for p in series], label=label, **style)
        fails = [p for p in pts if p.status != "ok" and not p.status.startswith("error")]
        if fails and ok:
            axes[0].plot([fails[0].n_video], [ok[-1].latency_ms], marker="x", color=cmap(i % 20), ms=8)
    for ax, title in zip(axes, ("latency (ms, median)", "peak memory (MiB)", "analytic MACs per sample")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("video tokens N_v")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle(f"fusion cost curves: {meta['device']}, d={meta['d']}, batch={meta['batch']}, "
                 f"N_t={meta['n_text']}, N_l={meta['n_loc']}, {meta['mode']} (x = first failed size)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------------- main
def device_name(device: torch.device) -> str:
    from ravar_bench.efficiency import device_name as name

    return name(device)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help=f"N_v in {QUICK_NV} (and the ratio size), fewer repeats")
    p.add_argument("--nv", type=int, nargs="+", help=f"video token counts (default {FULL_NV})")
    p.add_argument("--ratio-nv", type=int, default=4096, help="N_v of the V1 vs agent ratios (0 = skip)")
    p.add_argument("--d", type=int, default=256)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--agents", type=int, default=16)
    p.add_argument("--text", type=int, default=32, help="text tokens")
    p.add_argument("--loc", type=int, default=32, help="location tokens")
    p.add_argument("--mlp-ratio", type=float, default=4.0, help="FFN width of every block (0 = attention only)")
    p.add_argument("--variants", nargs="+", help="labels to run (default all), e.g. V1 V3 V4a")
    p.add_argument("--mode", choices=("infer", "train"), default="infer", help="forward, or forward + backward")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="bf16 = autocast")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    p.add_argument("--threads", type=int, default=1, help="CPU intra-op threads (0 = torch default)")
    p.add_argument("--repeats", type=int, help="timed runs (default 100 on a GPU, 5 on CPU, 3 with --quick)")
    p.add_argument("--warmup", type=int, help="warm-up runs (default 20 on a GPU, 1 on CPU)")
    p.add_argument("--budget", type=float, default=20.0, help="seconds allowed per configuration's warm-up / timing")
    p.add_argument("--mem-limit-gb", type=float, help="skip sizes predicted to need more (default: 1/4 of RAM on CPU)")
    p.add_argument("--no-flops", dest="flops", action="store_false", help="skip the flop-counter cross-check")
    p.add_argument("--no-plot", dest="plot", action="store_false")
    p.add_argument("--out", type=Path, default=Path("runs/bench_fusion"))
    args = p.parse_args(argv)
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    if device.type == "cpu" and args.threads > 0:
        torch.set_num_threads(args.threads)
    gpu = device.type == "cuda"
    args.repeats = args.repeats or (100 if gpu else (3 if args.quick else 5))
    args.warmup = args.warmup if args.warmup is not None else (20 if gpu else 1)
    if args.mem_limit_gb is None:
        if gpu:
            args.mem_limit_gb = torch.cuda.get_device_properties(device).total_memory / 2**30
        else:
            try:
                import os
                args.mem_limit_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30 / 4
            except (ValueError, OSError, AttributeError):
                args.mem_limit_gb = 4.0
    sizes = sorted(set(args.nv or (QUICK_NV if args.quick else FULL_NV)))
    table = variant_table(args.heads, args.agents, args.mlp_ratio)
    if args.variants:
        unknown = set(args.variants) - {t[0] for t in table}
        if unknown:
            raise SystemExit(f"bench_fusion: unknown --variants {sorted(unknown)}; known: {[t[0] for t in table]}")
        table = [t for t in table if t[0] in args.variants]
    meta = {"device": device_name(device), "torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "d": args.d, "batch": args.batch, "heads": args.heads,
            "agents": args.agents, "n_text": args.text, "n_loc": args.loc, "mlp_ratio": args.mlp_ratio,
            "mode": args.mode, "dtype": args.dtype, "repeats": args.repeats, "warmup": args.warmup,
            "budget_s": args.budget, "mem_limit_gb": args.mem_limit_gb, "ratio_nv": args.ratio_nv,
            "memory": "CUDA max_memory_allocated minus baseline" if gpu else
                      "CPU: peak bytes of tensors created in one run (dispatch-mode count; kernel-internal "
                      "scratch such as the flash-SDPA blocks is not seen)"}
    print(f"bench_fusion on {meta['device']} (torch {torch.__version__}, {meta['threads']} threads), d={args.d}, "
          f"batch={args.batch}, heads={args.heads}, agents={args.agents}, N_t={args.text}, N_l={args.loc}, "
          f"mlp_ratio={args.mlp_ratio}, {args.mode}, {args.dtype}", flush=True)
    points: list[Point] = []
    for label, variant, hparams in table:
        extra = (args.ratio_nv,) if args.ratio_nv and label in RATIO_LABELS else ()
        previous = None
        for nv in sorted(set(sizes) | set(extra)):
            pt = measure(label, variant, hparams, {"video": nv, "text": args.text, "loc": args.loc}, args, device,
                         previous)
            points.append(pt)
            previous = pt
            print(f"  {label:<9} N_v={nv:<5} {pt.status:<20} "
                  f"{fmt(pt.latency_ms if pt.status == 'ok' else None, '.2f')} ms  {fmt(pt.peak_mib, '.1f')} MiB",
                  flush=True)
    print()
    print_table(points)
    rs = ratios(points, args.ratio_nv) if args.ratio_nv else {}
    if args.ratio_nv:
        print_ratios(rs, args.ratio_nv, meta["device"])
    meta["ratios"] = rs
    write_outputs(points, meta, args.out, args.plot)
    print(f"\nwrote {args.out / 'curve.csv'}, curve.json" + (", curve.png" if args.plot else ""))
    return {"meta": meta, "points": points}


if __name__ == "__main__":
    main()
