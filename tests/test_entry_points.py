"""Out-of-tree adapters: the example of docs/adding-an-adapter.md, installed as a real package
with entry-point metadata (into a temporary folder, never into the shared venv), is listed,
validated, built, trained and predicted through the harness in a fresh interpreter."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "adding-an-adapter.md"
BLOCK = re.compile(r"^```(\w+) title=(\S+)\n(.*?)^```$", re.S | re.M)


def doc_files() -> dict[str, str]:
    """The code blocks of the guide that carry a ``title=<path>`` in their info string."""
    return {title: body for _, title, body in BLOCK.findall(DOC.read_text())}


def test_guide_has_every_file_of_the_walkthrough():
    assert set(doc_files()) == {"my_pkg/model.py", "pyproject.toml", "my_baselines/my_model.toml",
                                "my_baselines/suites/my_suite.toml", "tests/test_my_model.py"}


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """Write the guide's package to disk and pip-install it into a private target folder."""
    root = tmp_path_factory.mktemp("plugin")
    src = root / "src"
    for rel, body in doc_files().items():
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
    (src / "my_pkg" / "__init__.py").write_text("")
    target = root / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
         "--quiet", "--target", str(target), str(src)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(target.glob("my_pkg-*.dist-info/entry_points.txt")), "no entry-point metadata written"
    return src, target


def run_python(code: str, target: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(target), str(REPO / "tests")]), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


SCRIPT = r"""
import json
from pathlib import Path
import torch
from conftest import make_random_split
from ravar_bench.adapters.registry import get_adapter, list_adapters
from ravar_bench.baselines import load_baseline, load_suite
from ravar_bench.data.batches import dataset_info
from ravar_bench.train import TrainConfig, fit, predict

spec = {s.name: s for s in list_adapters()}["my_adapter"]
train = make_random_split(frames=4, size=32)
torch.manual_seed(0)
model = get_adapter("my_adapter").build(dataset_info(train), {"width": 8})
cfg = TrainConfig(epochs=6, batch_size=4, lr=1e-2, schedule="constant", select_metric="")
history = fit(model, train, None, cfg).history
preds = predict(model, train, cfg)
baseline = load_baseline("my_model", root=Path("my_baselines"))
suite = load_suite("my_suite", root=Path("my_baselines"))
print(json.dumps({"origin": spec.origin, "domain": spec.domain, "params": sorted(spec.parameters()),
                  "losses": [h["loss"] for h in history], "shape": list(preds.scores.shape),
                  "n": len(train), "baseline_adapter": baseline.adapter,
                  "suite_entries": len(suite.entries)}))
"""


def test_plugin_is_listed_built_trained_and_predicted(plugin):
    src, target = plugin
    proc = run_python(SCRIPT, target, src)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["origin"] == "entry point (my-pkg)" and out["domain"] == "external"
    assert out["params"] == ["freeze", "hidden", "width"]
    assert out["losses"][-1] < out["losses"][0], out["losses"]  # seeded: deterministic
    assert out["shape"] == [out["n"], 80]
    assert out["baseline_adapter"] == "my_adapter" and out["suite_entries"] == 1


def test_plugin_is_invisible_without_its_path():
    """The shared interpreter must not have been modified by the install."""
    from ravar_bench.adapters.registry import list_adapters

    assert "my_adapter" not in {s.name for s in list_adapters()}


def test_the_guides_own_test_passes(plugin):
    src, target = plugin
    env = dict(os.environ, PYTHONPATH=str(target), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--rootdir", str(src), str(src / "tests" / "test_my_model.py")],
                          capture_output=True, text=True, env=env, cwd=src, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 passed" in proc.stdout
