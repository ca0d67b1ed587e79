"""The static HTML report: self-contained, escaped, and rendered by a real headless Chromium.

The Chromium checks skip when no browser binary is installed (the CI installs the Debian
``chromium`` package); the escaping and self-containment checks always run.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ravar_bench.report import build_report
from ravar_bench.report.demo import DemoSystem, write_demo_store

EVIL = "<script>alert(1)</script>"
EVIL_SUITE_TITLE = 'Suite "quotes" & <img src=x onerror=alert(2)>'
SYSTEMS = (
    DemoSystem("demo_prior", "Prior", "control", signal=0.0, box_noise=0.25, params_total=80,
               gflops=1e-6, latency_ms=0.01),
    DemoSystem("demo_evil", EVIL, "ours", signal=1.0, box_noise=0.05, params_total=2_000_000,
               gflops=1.0, latency_ms=3.0),
    DemoSystem("demo_mid", "Mid <b>bold</b>", "VTR", signal=0.5, box_noise=0.1,
               params_total=5_000_000, gflops=3.0, latency_ms=6.0),
)


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    """RAVAR-Synth tiny: real prepared splits plus the generator's references.json."""
    from ravar_bench.data.synth import generate

    out = tmp_path_factory.mktemp("synth") / "tiny"
    generate(size="tiny", seed=0, out=out, progress=False, workers=1)
    return out


@pytest.fixture(scope="module")
def report(tmp_path_factory, synth) -> Path:
    root = tmp_path_factory.mktemp("html")
    write_demo_store(root / "store", systems=SYSTEMS, seeds=1, suite="evil",
                     title=EVIL_SUITE_TITLE, bootstrap=0,
                     splits={s: synth / s for s in ("val", "test")})
    written = build_report(root / "store", "evil", root / "out", formats=("html",),
                           n_resamples=100)
    assert set(written) == {"html"}  # html alone: plots embedded, no PNG files left behind
    assert not (root / "out" / "plots").exists()
    return written["html"]


def test_synthetic_references_frame_the_table(report, synth):
    refs = json.loads((synth / "references.json").read_text())
    page = report.read_text(encoding="utf-8")
    assert "References (analytic values of the synthetic data)" in page
    for name, label in (("prior_only", "prior-only (analytic)"),
                        ("text_blind", "text-blind, perfect perception (analytic upper bound)"), ("oracle", "oracle (analytic)")):
        row = page.split(f">{label}<", 1)[1].split("</tr>", 1)[0]
        assert f"{refs['test'][name]['mAP']:.2f}" in row and f"{refs['val'][name]['mIoU']:.2f}" in row


def test_user_text_is_escaped(report):
    page = report.read_text(encoding="utf-8")
    assert EVIL not in page and "<b>bold</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Mid &lt;b&gt;bold&lt;/b&gt;" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page and "<img src=x" not in page
    assert "&quot;quotes&quot; &amp;" in page
    # no script element and no event handler attribute anywhere
    assert not re.search(r"<script", page, re.I)
    assert not re.search(r"<[^>]+\son\w+\s*=", page, re.I)


def test_page_is_self_contained(report):
    page = report.read_text(encoding="utf-8")
    sources = re.findall(r'\s(?:src|href)="([^"]*)"', page)
    assert sources, "the plots should be embedded as images"
    assert all(s.startswith("data:image/png;base64,") for s in sources), sources
    assert "<link" not in page and "@import" not in page and "url(" not in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert page.count("<img ") >= 3  # bars, two Pareto plots, per-class, significance


def _run_chromium(binary: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", "--enable-logging=stderr", "--v=0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def _console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines()
            if "CONSOLE" in line or "Uncaught" in line or "Refused to" in line]


@pytest.mark.skipif(_chromium() is None, reason="no chromium binary (apt-get install chromium)")
def test_chromium_renders_the_page_without_console_errors(report, tmp_path):
    binary = _chromium()
    shot = tmp_path / "shot.png"
    res = _run_chromium(binary, f"--screenshot={shot}", "--window-size=1280,2000",
                        report.resolve().as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    assert _console_lines(res.stderr) == [], _console_lines(res.stderr)
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (1280, 2000)
        gray = np.asarray(im.convert("L"), dtype=np.float64)
    assert gray.std() > 10  # text, tables and plots, not a blank page
    assert (gray < 128).mean() > 0.01  # a fair amount of dark ink
    dom = _run_chromium(binary, "--dump-dom", report.resolve().as_uri())
    assert dom.returncode == 0
    assert "<table>" in dom.stdout and "Leaderboard" in dom.stdout
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom.stdout
    assert not re.search(r"<script", dom.stdout, re.I)


@pytest.mark.skipif(_chromium() is None, reason="no chromium binary (apt-get install chromium)")
def test_console_check_can_fail(report, tmp_path):
    """Negative control: a page that loads a remote image under the report's CSP is refused,
    and the console check above sees it; so its empty result means something."""
    page = report.read_text(encoding="utf-8").replace(
        "<h1>", '<img src="http://example.invalid/x.png"><h1>', 1)
    bad = tmp_path / "bad.html"
    bad.write_text(page, encoding="utf-8")
    res = _run_chromium(binary := _chromium(), "--dump-dom", bad.resolve().as_uri())
    assert binary and res.returncode == 0
    assert _console_lines(res.stderr), res.stderr[-2000:]
