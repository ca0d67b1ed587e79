"""Provenance stamps: what produced a stored number, so two numbers can be told apart later.

Everything here is cheap (no heavy imports: package versions come from installed metadata) and
never raises: a field that cannot be determined is recorded as ``None``.
"""
from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

#: Distributions whose versions change numbers (import name in parentheses where it differs).
PACKAGES = ("ravar-bench", "torch", "torchvision", "numpy", "transformers", "mmaction2", "mmengine",
            "mmcv-lite", "open_clip_torch", "sentence-transformers", "scikit-learn", "pyarrow", "ray")


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed versions from distribution metadata (``None`` when not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def source_root() -> Path:
    """The folder holding the ``bench`` package source (the repository root for a checkout)."""
    return Path(__file__).resolve().parent.parent


def git_state(root: Path | None = None) -> dict[str, Any]:
    """Commit and dirty flag of the source checkout (read-only git commands), or Nones."""
    root = root or source_root()
    state: dict[str, Any] = {"commit": None, "dirty": None, "root": str(root)}
    if not (root / ".git").exists():
        return state
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}  # never take the index lock of a live checkout
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10, env=env)
        if commit.returncode == 0:
            state["commit"] = commit.stdout.strip()
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=20, env=env)
        if status.returncode == 0:
            state["dirty"] = bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return state


_git_cache: dict[str, Any] | None = None


def cached_git_state() -> dict[str, Any]:
    """:func:`git_state` computed once per process (a run stamps many jobs)."""
    global _git_cache
    if _git_cache is None:
        _git_cache = git_state()
    return _git_cache


def device_info(device: str) -> dict[str, Any]:
    """What the job ran on: the torch device string, its name, and the CPU."""
    info: dict[str, Any] = {"device": device, "name": None, "cpu": platform.processor() or platform.machine(),
                            "cpu_count": os.cpu_count(), "torch_threads": None}
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if device.startswith("cuda") and torch.cuda.is_available():
            idx = torch.device(device).index or 0
            info["name"] = torch.cuda.get_device_name(idx)
            info["cuda"] = torch.version.cuda
            info["cudnn"] = torch.backends.cudnn.version()
        else:
            info["name"] = info["cpu"]
    except Exception:  # provenance must never break a run
        pass
    return info


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="seconds")


def stamp(*, job_id: str, config_hash: str, seed: int, data_fingerprint: str, device: str,
          started: float, ended: float | None = None, world_size: int = 1,
          extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The provenance block of a job record (see docs/store.md, ``provenance``)."""
    ended = time.time() if ended is None else ended
    metrics: dict[str, Any] = {"version": None, "fingerprint": None, "profiles": None}
    try:
        from . import metrics as m

        metrics = {"version": m.METRICS_VERSION, "fingerprint": m.metrics_fingerprint(),
                   "profiles": sorted(m.PROFILES)}
    except Exception:  # recorded as unknown rather than failing a finished job
        pass
    return {
        "job_id": job_id,
        "config_hash": config_hash,
        "seed": seed,
        "data_fingerprint": data_fingerprint,
        "metrics": metrics,
        "packages": package_versions(),
        "git": cached_git_state(),
        "device": device_info(device),
        "world_size": world_size,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "platform": platform.platform(),
        "argv": list(sys.argv),
        "start": iso(started),
        "end": iso(ended),
        "duration_s": round(ended - started, 3),
        **(extra or {}),
    }
