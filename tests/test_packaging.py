"""A regular (non-editable) install: the wheel carries every module and every baseline and suite
file, and the installed package finds those files under ``<prefix>/share/ravar-bench`` when no
repository is beside it. (The README's editable install reads ``baselines/`` in place.) And the
dependency contract: pyproject.toml declares ranges, constraints.txt pins the tested set inside them."""
from __future__ import annotations

import configparser
import importlib.util
import os
import shutil
import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

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


# ------------------------------------------------------------------ ranges and the tested set
def declared_requirements() -> list[Requirement]:
    """Every requirement of pyproject.toml (base and all extras), the project's own extras left out."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = [*project["dependencies"], *(r for extra in project["optional-dependencies"].values() for r in extra)]
    reqs = [Requirement(line) for line in lines]
    return [r for r in reqs if canonicalize_name(r.name) != canonicalize_name(project["name"])]


def constraint_pins() -> dict[str, Version]:
    """constraints.txt as {canonical name: pinned version}; anything but ``name==version`` fails."""
    pins: dict[str, Version] = {}
    for n, raw in enumerate((ROOT / "constraints.txt").read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        (spec,) = req.specifier  # exactly one specifier ...
        assert spec.operator == "==" and "*" not in spec.version and not req.marker, \
            f"constraints.txt:{n}: {raw!r} is not an exact pin (name==version)"  # ... and an exact one
        name = canonicalize_name(req.name)
        assert name not in pins, f"constraints.txt:{n}: {req.name} is pinned twice"
        pins[name] = Version(spec.version)
    return pins


def test_pyproject_declares_ranges_not_pins():
    """A library that pins (torch==...) forces a reinstall on everyone with another version."""
    pinned = [str(r) for r in declared_requirements() if any(s.operator in ("==", "===") for s in r.specifier)]
    assert not pinned, f"pyproject.toml pins {pinned}: declare a range, pin in constraints.txt"


def test_constraints_pin_every_dependency_inside_its_declared_range():
    pins = constraint_pins()
    assert "ravar-bench" not in pins, "constraints.txt must not pin the project itself"
    for req in declared_requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} (pyproject.toml: {req}) has no tested version in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"constraints.txt pins {req.name}=={pins[name]}, outside pyproject.toml's range {req}"


def test_tox_installs_through_the_constraints():
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini")
    command = tox["testenv"]["install_command"]
    assert "-c {toxinidir}/constraints.txt" in command and "{packages}" in command
    for section in tox.sections():  # the quickstart env inherits it; no env may override it away
        if section.startswith("testenv:") and "install_command" in tox[section]:
            assert "constraints.txt" in tox[section]["install_command"], section
