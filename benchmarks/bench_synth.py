"""Benchmark RAVAR-Synth generation: wall time per phase, CPU time, clips per second.

    python benchmarks/bench_synth.py --size small --workers 2

Generates into a temporary folder (or ``--out``) with the same code path as
``ravar-bench data synth`` and prints one JSON object. On a shared machine the wall time depends
on what else runs; ``cpu_s`` (this process plus its workers) and the load average printed next to
it say how much of the machine the run actually had.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="small", choices=("tiny", "small", "full"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--difficulty", default="medium")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="keep the dataset here (default: temporary)")
    args = ap.parse_args(argv)

    from ravar_bench.data.synth import GENERATOR_VERSION, generate

    with tempfile.TemporaryDirectory(prefix="bench-synth-") as tmp:
        out = args.out or Path(tmp) / "synth"
        timings: dict[str, float] = {}
        load_before = os.getloadavg()[0]
        cpu0, t0 = _cpu_seconds(), time.perf_counter()
        generate(size=args.size, seed=args.seed, out=out, difficulty=args.difficulty, progress=False,
                 workers=args.workers, force=True, timings=timings)
        wall, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
        manifest = json.loads((out / "synth.json").read_text())
        refs = json.loads((out / "references.json").read_text())
        clips = sum(s["clips"] for s in manifest["splits"].values())
        instances = sum(s["instances"] for s in manifest["splits"].values())
        size_mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
    result = {
        "size": args.size, "seed": args.seed, "generator_version": GENERATOR_VERSION,
        "workers": args.workers, "cpu_count": os.cpu_count(), "clips": clips, "instances": instances,
        "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "phases_wall_s": timings,
        "clips_per_s": round(clips / wall, 1), "clips_per_cpu_s": round(clips / cpu, 1),
        "render_clips_per_s": round(clips / timings["render"], 1),
        "loadavg_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "disk_mb": round(size_mb, 1),
        "references": {s: refs[s] for s in ("val", "test")},
    }
    json.dump(result, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
