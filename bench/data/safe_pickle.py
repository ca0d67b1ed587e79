"""Load annotation pickles without letting them run code.

RefAVA ships its annotations as Python pickles from a Google Drive folder. A plain ``pickle.load``
executes whatever callable the file names (``os.system`` included), so every pickle the harness
reads goes through :class:`SafeUnpickler`: it resolves only an allow-list of globals that build
containers, numbers, strings and numpy arrays/scalars, and refuses everything else by name.

Why each allowed global is harmless: the builtins are plain constructors; numpy's
``_reconstruct``/``ndarray``/``dtype``/``scalar``/``_frombuffer`` only build arrays from data
already in the stream (an object array's items are unpickled by this same class); ``_codecs.encode``
(used by protocol 0-2 for ``bytes``) is wrapped so it accepts the latin-1 codec only.
"""
from __future__ import annotations

import collections
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SafeUnpickler", "UnsafePickleError", "PickleReadError", "safe_load", "safe_loads"]


class PickleReadError(ValueError):
    """A pickle file is missing, truncated or otherwise unreadable; the message names the file."""


class UnsafePickleError(PickleReadError):
    """A pickle asked for a global outside the allow-list (``global_name`` says which)."""

    def __init__(self, message: str, global_name: str = "") -> None:
        super().__init__(message)
        self.global_name = global_name


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """Stand-in for ``_codecs.encode`` restricted to what pickle protocols 0-2 use for bytes."""
    if encoding.lower().replace("_", "-") not in ("latin1", "latin-1", "iso-8859-1"):
        raise UnsafePickleError(f"refused codec {encoding!r} in _codecs.encode", "_codecs.encode")
    return text.encode("latin-1", errors)


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """numpy's pickle helpers under both the numpy 1.x (``numpy.core``) and 2.x (``numpy._core``)
    module names; resolved from the installed numpy without importing the deprecated shim."""
    try:
        from numpy._core import multiarray, numeric  # numpy >= 2
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]

    table: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    for pkg in ("numpy.core", "numpy._core"):
        table[(f"{pkg}.multiarray", "_reconstruct")] = multiarray._reconstruct
        table[(f"{pkg}.multiarray", "scalar")] = multiarray.scalar
        table[(f"{pkg}.numeric", "_frombuffer")] = numeric._frombuffer
    return table


_BUILTINS = (
    dict, list, tuple, set, frozenset, str, bytes, bytearray, int, float, complex, bool, slice, range,
)
_ALLOWED: dict[tuple[str, str], Any] = {("builtins", t.__name__): t for t in _BUILTINS}
_ALLOWED.update({
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): collections.defaultdict,
    ("_codecs", "encode"): _latin1_encode,
})
_ALLOWED.update(_numpy_globals())
#: Python 2 module names that pickle would normally translate (we override ``find_class``).
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only allow-listed globals (see the module docstring)."""

    def find_class(self, module: str, name: str) -> Any:
        module = _PY2_MODULES.get(module, module)
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refused global {module}.{name} (only containers, numbers, strings and numpy "
                "arrays may be unpickled)", f"{module}.{name}") from None


def safe_loads(data: bytes, source: str = "<bytes>") -> Any:
    """Unpickle ``data`` with :class:`SafeUnpickler`; errors name ``source``."""
    last: Exception | None = None
    # Python-2 era pickles hold numpy buffers as 8-bit str: retry those with latin-1.
    for encoding in ("ASCII", "latin1"):
        try:
            return SafeUnpickler(io.BytesIO(data), encoding=encoding).load()
        except UnsafePickleError as exc:
            raise UnsafePickleError(f"{source}: {exc}", exc.global_name) from None
        except UnicodeDecodeError as exc:
            last = exc
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
                IndexError, KeyError, OverflowError, MemoryError) as exc:
            raise PickleReadError(f"{source}: not a readable pickle ({type(exc).__name__}: {exc})") from None
    raise PickleReadError(f"{source}: not a readable pickle (text decoding failed: {last})")


def safe_load(path: str | Path) -> Any:
    """Read and unpickle a file with :class:`SafeUnpickler`.

    Raises :class:`UnsafePickleError` naming the file and the refused global, or
    :class:`PickleReadError` if the file is missing or is not a valid pickle.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PickleReadError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return safe_loads(data, source=str(path))
