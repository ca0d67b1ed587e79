"""A regular (non-editable) install: the wheel carries every module and every baseline and suite
file, and the installed package finds those files under ``<prefix>/share/ravar-bench`` when no
repository is beside it. (The README's editable install reads ``baselines/`` in place.)"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Build the wheel from a copy of the sources, so the checkout gets no build/ folder."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("bench", "adapters", "baselines"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    isolation = [] if importlib.util.find_spec("setuptools") else ["--use-pep517"]
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(src),
           *(["--no-build-isolation"] if not isolation else isolation)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    (whl,) = out.glob("ravar_bench-*.whl")
    return whl


def test_the_wheel_carries_every_module_and_declarative_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder, package in (("bench", "ravar_bench"), ("adapters", "ravar_bench/adapters")):
        for py in (ROOT / folder).rglob("*.py"):
            rel = py.relative_to(ROOT / folder).as_posix()
            if not rel.startswith("adapters/"):  # bench/ does not hold the adapters
                assert f"{package}/{rel}" in names, f"{folder}/{rel} is missing from the wheel"
    for config in (ROOT / "adapters" / "configs").glob("*.json"):  # weights = "random" builds need them
        assert f"ravar_bench/adapters/configs/{config.name}" in names, f"adapters/configs/{config.name} is missing"
    data = next(n.split("/share/")[0] for n in names if "/share/ravar-bench/" in n)
    for toml in (ROOT / "baselines").rglob("*.toml"):
        rel = toml.relative_to(ROOT / "baselines").as_posix()
        assert f"{data}/share/ravar-bench/baselines/{rel}" in names, f"baselines/{rel} is missing from the wheel"


def test_an_installed_package_finds_its_baselines_without_the_repository(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / ("Scripts" if os.name == "nt" else "bin") / "python"
    proc = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    # baselines.py needs only the standard library, so the check runs without installing torch
    script = ("import tomllib\nfrom ravar_bench.baselines import baselines_dir, list_baselines, list_suites, suites_dir\n"
              "print(baselines_dir()); print(','.join(list_baselines())); print(','.join(list_suites()))\n"
              "print(len(tomllib.loads((suites_dir() / 'quickstart.toml').read_text())['entries']))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("RAVAR_BASELINES", "PYTHONPATH")}
    proc = subprocess.run([str(python), "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    where, baselines, suites, n_entries = proc.stdout.strip().splitlines()
    assert Path(where).resolve() == (env_dir / "share" / "ravar-bench" / "baselines").resolve()
    assert baselines.split(",") == sorted(p.stem for p in (ROOT / "baselines").glob("*.toml"))
    assert suites.split(",") == sorted(p.stem for p in (ROOT / "baselines" / "suites").glob("*.toml"))
    assert int(n_entries) > 0
