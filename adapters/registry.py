"""The adapter registry: a decorator for in-tree adapters and entry points for everyone else.

An adapter is a :class:`~ravar_bench.protocol.RavarModel` subclass whose ``__init__`` takes the
:class:`~ravar_bench.protocol.DatasetInfo` first and its parameters as keyword-only arguments with
type hints and defaults. The hints are the parameter schema: baseline files and the CLI are
validated against them, so a typo names the file and the key instead of failing deep in torch.

Third-party packages register adapters without forking, through the entry-point group
``ravar_bench.adapters``::

    [project.entry-points."ravar_bench.adapters"]
    my_model = "my_package.my_module:MyModel"

The entry-point name is the adapter name; the object is the RavarModel subclass.
"""
from __future__ import annotations

import importlib
import inspect
import types
import typing
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Callable, Literal, TypeVar

from ..protocol import DatasetInfo, RavarModel

ENTRY_POINT_GROUP = "ravar_bench.adapters"
DOMAINS = ("AAL", "VTR", "VQA", "VOS", "ours", "fusion", "control", "external")

#: In-tree modules, imported lazily on the first lookup so ``ravar-bench --help`` stays fast.
BUILTIN_MODULES = (
    "ravar_bench.adapters.controls",
    "ravar_bench.adapters.reference",
    "ravar_bench.adapters.person_level",
    "ravar_bench.adapters.aal",
    "ravar_bench.adapters.vtr",
    "ravar_bench.adapters.vqa",
    "ravar_bench.adapters.grounding",
    "ravar_bench.adapters.refatomnet",
)

M = TypeVar("M", bound=type[RavarModel])


class AdapterError(ValueError):
    """Unknown adapter, bad parameters, or a broken plug-in; the message says which and where."""


@dataclass(frozen=True)
class AdapterSpec:
    name: str
    cls: type[RavarModel]
    domain: str
    summary: str
    origin: str  # "builtin" or "entry point <dist>"

    def parameters(self) -> dict[str, inspect.Parameter]:
        """The keyword parameters of the adapter (everything after ``info``)."""
        sig = inspect.signature(self.cls.__init__)
        return {n: p for n, p in list(sig.parameters.items())[2:]
                if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}

    def validate(self, params: dict[str, Any], where: str = "") -> dict[str, Any]:
        """Check names and types of ``params``; return them. ``where`` prefixes error messages."""
        prefix = f"{where}: " if where else ""
        known = self.parameters()
        hints = typing.get_type_hints(self.cls.__init__)
        for key, value in params.items():
            if key not in known:
                raise AdapterError(
                    f"{prefix}unknown parameter {key!r} for adapter {self.name!r}; "
                    f"known: {', '.join(sorted(known)) or '(none)'}")
            hint = hints.get(key)
            if hint is not None and not matches_hint(value, hint):
                raise AdapterError(
                    f"{prefix}parameter {key!r} of adapter {self.name!r} must be "
                    f"{describe_hint(hint)}, got {value!r} ({type(value).__name__})")
        missing = [n for n, p in known.items() if p.default is inspect.Parameter.empty and n not in params]
        if missing:
            raise AdapterError(f"{prefix}adapter {self.name!r} needs parameter(s) {', '.join(missing)}")
        return dict(params)

    def build(self, info: DatasetInfo, params: dict[str, Any] | None = None, where: str = "") -> RavarModel:
        params = self.validate(params or {}, where)
        return self.cls(info, **_coerce(params, typing.get_type_hints(self.cls.__init__)))


_REGISTRY: dict[str, AdapterSpec] = {}
_loaded = False


def register_adapter(name: str, *, domain: str, summary: str | None = None) -> Callable[[M], M]:
    """Class decorator: register a RavarModel subclass under ``name``."""
    if domain not in DOMAINS:
        raise AdapterError(f"adapter {name!r}: domain must be one of {', '.join(DOMAINS)}, got {domain!r}")

    def deco(cls: M) -> M:
        _add(name, cls, domain, summary, "builtin" if cls.__module__.startswith("ravar_bench.") else cls.__module__)
        return cls

    return deco


def _add(name: str, cls: type, domain: str, summary: str | None, origin: str) -> None:
    if not (isinstance(cls, type) and issubclass(cls, RavarModel)):
        raise AdapterError(f"adapter {name!r} ({origin}) is not a RavarModel subclass: {cls!r}")
    existing = _REGISTRY.get(name)
    if existing is not None and existing.cls is not cls:
        raise AdapterError(f"adapter name {name!r} is registered twice: {existing.origin} and {origin}")
    doc = summary or (inspect.getdoc(cls) or "").split("\n")[0]
    _REGISTRY[name] = AdapterSpec(name, cls, domain, doc, origin)


def load_all() -> None:
    """Import the in-tree adapter modules and the entry-point plug-ins (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep.dist, "name", "?")
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plug-in must not hide the others: report it clearly
            raise AdapterError(f"entry point {ep.name!r} = {ep.value!r} of package {dist!r} failed to load: {exc}") from exc
        if ep.name in _REGISTRY and _REGISTRY[ep.name].cls is obj:
            continue
        _add(ep.name, obj, getattr(obj, "domain", "external"), None, f"entry point ({dist})")


def get_adapter(name: str) -> AdapterSpec:
    load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise AdapterError(f"unknown adapter {name!r}{did_you_mean(name, list(_REGISTRY))}; known: {', '.join(sorted(_REGISTRY))}") from None


def did_you_mean(name: str, known: list[str]) -> str:
    """`` (did you mean 'x3d'?)`` for the closest known name, or "" when none is close."""
    import difflib

    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def list_adapters() -> list[AdapterSpec]:
    load_all()
    return [_REGISTRY[n] for n in sorted(_REGISTRY)]


# ---------------------------------------------------------------------------- type checking
def matches_hint(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(matches_hint(value, h) for h in typing.get_args(hint))
    if origin is Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (tuple, list):
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(matches_hint(v, a) for v, a in zip(value, args))
        return all(matches_hint(v, args[0]) for v in value) if args else True
    if origin is dict:
        return isinstance(value, dict)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def describe_hint(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe_hint(h) for h in typing.get_args(hint))
    if hint is type(None):
        return "None"
    return getattr(hint, "__name__", str(hint))


def _coerce(params: dict[str, Any], hints: dict[str, Any]) -> dict[str, Any]:
    """TOML has no tuples: turn lists into tuples where the hint asks for a tuple."""
    out = {}
    for k, v in params.items():
        hint = hints.get(k)
        wants_tuple = typing.get_origin(hint) is tuple or any(
            typing.get_origin(a) is tuple for a in typing.get_args(hint) or ())
        out[k] = tuple(v) if wants_tuple and isinstance(v, list) else v
    return out
