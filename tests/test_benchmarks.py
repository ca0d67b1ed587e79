"""Smoke tests of benchmarks/bench_metrics.py at a tiny size. No timed asserts: the ratios are for
people reading them, and a loaded CI machine would make any time limit flaky."""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_metrics.py"


def test_bench_metrics_checks_then_prints_the_three_comparisons_as_ratios():
    cmd = [sys.executable, "-m", "ravar_bench.cli", "bench", "metrics", "--n", "400", "--repeats", "1",
           "--resamples", "20", "--no-full-bootstrap"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    out = proc.stdout
    assert "check before timing: ours vs sklearn" in out and "min of 1 runs" in out, out
    lines = {name: next((ln for ln in out.splitlines() if ln.strip().startswith(name)), "")
             for name in ("scikit-learn", "torchmetrics", "argsort floor")}
    ratio = re.compile(r"\d+\.\d+ s \(cpu \d+\.\d+ s\) +\d+\.\d+x ours")
    assert ratio.search(lines["scikit-learn"]) and ratio.search(lines["argsort floor"]), out
    has_torchmetrics = importlib.util.find_spec("torchmetrics") is not None
    if has_torchmetrics:
        assert ratio.search(lines["torchmetrics"]), out
    else:
        assert "not installed" in lines["torchmetrics"], out


def test_bench_metrics_refuses_fewer_than_one_repeat(capsys):
    spec = importlib.util.spec_from_file_location("bench_metrics", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    with pytest.raises(SystemExit) as exc:
        bench.main(["--repeats", "0"])
    assert exc.value.code == 2 and "--repeats: must be at least 1" in capsys.readouterr().err
