"""Logging and progress bars for the command line and its worker processes.

Library modules log to ``logging.getLogger(__name__)`` (under ``ravar_bench``) and never configure
logging themselves; the CLI calls :func:`configure` once. Program output (tables, summaries) is
printed to stdout by the CLI; diagnostics (what is being built, waited for, skipped) go to stderr
through the logger, at the level ``--verbosity`` sets, and to ``--log-file`` at debug level with
timestamps. Worker processes (``run --jobs N``) call :func:`configure_from_env`, so their messages
reach the same places.
"""
from __future__ import annotations

import logging
import os
import sys

LEVELS = {"quiet": logging.WARNING, "info": logging.INFO, "debug": logging.DEBUG}
ENV_VERBOSITY, ENV_LOG_FILE, ENV_NO_PROGRESS = "RAVAR_VERBOSITY", "RAVAR_LOG_FILE", "RAVAR_NO_PROGRESS"
FILE_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"

#: Environment switches that silence third-party progress bars (Hugging Face downloads and weight
#: loading; tqdm >= 4.66 reads TQDM_DISABLE), inherited by worker processes.
THIRD_PARTY_QUIET = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1"}


def configure(verbosity: str = "info", log_file: str | None = None, progress: bool = True) -> None:
    """Set up the ``ravar_bench`` logger (stderr at ``verbosity``, the file at debug) and export
    the choice to the environment for worker processes."""
    if verbosity not in LEVELS:
        raise ValueError(f"--verbosity {verbosity!r}: choose one of {', '.join(LEVELS)}")
    root = logging.getLogger("ravar_bench")
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(logging.DEBUG)
    root.propagate = False
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(LEVELS[verbosity])
    console.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(console)
    if log_file:
        try:
            handler = logging.FileHandler(log_file, mode="a", encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"--log-file {log_file}: cannot open it for writing ({exc.strerror})") from exc
        handler.setLevel(logging.DEBUG)
        handler.setFormatter(logging.Formatter(FILE_FORMAT))
        root.addHandler(handler)
    os.environ[ENV_VERBOSITY] = verbosity
    if log_file:
        os.environ[ENV_LOG_FILE] = os.path.abspath(log_file)
    else:
        os.environ.pop(ENV_LOG_FILE, None)
    if progress:
        os.environ.pop(ENV_NO_PROGRESS, None)
    else:
        os.environ[ENV_NO_PROGRESS] = "1"
        os.environ.update(THIRD_PARTY_QUIET)


def configure_from_env() -> None:
    """In a worker process: the configuration the parent's :func:`configure` exported."""
    verbosity = os.environ.get(ENV_VERBOSITY)
    if verbosity in LEVELS:
        configure(verbosity, os.environ.get(ENV_LOG_FILE),
                  progress=os.environ.get(ENV_NO_PROGRESS) != "1")


def progress_wanted(requested: bool = True) -> bool:
    """Progress bars only when asked for and stderr is a terminal (not in CI logs or pipes)."""
    return requested and sys.stderr.isatty()


__all__ = ["LEVELS", "THIRD_PARTY_QUIET", "configure", "configure_from_env", "progress_wanted"]
