"""The adapter registry: a decorator for in-tree adapters and entry points for everyone else.

An adapter is a :class:`~ravar_bench.protocol.RavarModel` subclass whose ``__init__`` takes the
:class:`~ravar_bench.protocol.DatasetInfo` first and its parameters as keyword-only arguments with
type hints and defaults. The hints are the parameter schema: baseline files and the CLI are
validated against them, so a typo names the file and the key instead of failing deep in torch.

In-tree adapters are found without a list: every module of ``ravar_bench.adapters`` is imported on
the first lookup (:class:`~ravar_bench.registry.Registry`), so a new adapter is one module with a
``@register_adapter`` class. One class may be registered under several names, one per variant
row, with ``bind`` (constructor arguments the name fixes) and ``defaults`` (parameter defaults
of that name); see ``adapters/aal.py``.

Third-party packages register adapters without forking, through the entry-point group
``ravar_bench.adapters``::

    [project.entry-points."ravar_bench.adapters"]
    my_model = "my_package.my_module:MyModel"

The entry-point name is the adapter name; the object is the RavarModel subclass.
"""
from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, TypeVar

from ..protocol import DatasetInfo, RavarModel
from ..registry import Registry

ENTRY_POINT_GROUP = "ravar_bench.adapters"
DOMAINS = ("AAL", "VTR", "VQA", "VOS", "ours", "fusion", "control", "external")

M = TypeVar("M", bound=type[RavarModel])


class AdapterError(ValueError):
    """Unknown adapter, bad parameters, or a broken plug-in; the message says which and where."""


@dataclass(frozen=True)
class AdapterSpec:
    """A registered name: the class, the constructor arguments the name fixes (``bind``) and the
    parameter defaults that differ from the signature's (``defaults``). Two specs are the same
    registration when they build the same thing; the descriptive fields do not count."""

    name: str
    cls: type[RavarModel]
    domain: str = field(compare=False)
    summary: str = field(compare=False)
    origin: str = field(compare=False)  # "builtin", "entry point (<dist>)" or the defining module
    bind: Mapping[str, Any] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def parameters(self) -> dict[str, inspect.Parameter]:
        """The keyword parameters of the adapter (everything after ``info`` that ``bind`` leaves),
        with this name's defaults."""
        sig = inspect.signature(self.cls.__init__)
        params = {n: p for n, p in list(sig.parameters.items())[2:]
                  if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and n not in self.bind}
        return {n: p.replace(default=self.defaults[n]) if n in self.defaults else p for n, p in params.items()}

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
        params = {**self.defaults, **self.validate(params or {}, where)}
        return self.cls(info, **self.bind, **coerce_params(params, typing.get_type_hints(self.cls.__init__)))


def make_spec(name: str, cls: Any, origin: str, *, domain: str | None = None, summary: str | None = None,
              bind: Mapping[str, Any] | None = None, defaults: Mapping[str, Any] | None = None) -> AdapterSpec:
    """The registry's entry for ``cls``; refuses non-models and bind/defaults the signature lacks.
    An entry point's class gives its domain as the ``domain`` attribute (default ``external``)."""
    if not (isinstance(cls, type) and issubclass(cls, RavarModel)):
        raise AdapterError(f"adapter {name!r} ({origin}) is not a RavarModel subclass: {cls!r}")
    bind, defaults = dict(bind or {}), dict(defaults or {})
    signature = inspect.signature(cls.__init__).parameters
    hints = typing.get_type_hints(cls.__init__)
    bad = [k for k in bind if k not in signature]
    bad += [k for k, v in defaults.items()
            if k not in signature or k in bind or (k in hints and not matches_hint(v, hints[k]))]
    if bad:
        raise AdapterError(f"adapter {name!r}: bind/defaults {', '.join(bad)} do not fit {cls.__qualname__}.__init__")
    doc = summary or (inspect.getdoc(cls) or "").split("\n")[0]
    return AdapterSpec(name, cls, domain or getattr(cls, "domain", "external"), doc, origin, bind, defaults)


#: Every adapter: the in-tree modules of this package and the ``ravar_bench.adapters`` entry points.
ADAPTERS: Registry[AdapterSpec] = Registry(
    "adapter", package=__name__.rpartition(".")[0], group=ENTRY_POINT_GROUP, error=AdapterError, make=make_spec)


def register_adapter(name: str, *, domain: str, summary: str | None = None,
                     bind: Mapping[str, Any] | None = None,
                     defaults: Mapping[str, Any] | None = None) -> Callable[[M], M]:
    """Class decorator: register a RavarModel subclass under ``name``. ``bind`` and ``defaults``
    make one class serve several names (variant rows): the first fixes constructor arguments
    that are not parameters, the second changes parameter defaults for this name."""
    if domain not in DOMAINS:
        raise AdapterError(f"adapter {name!r}: domain must be one of {', '.join(DOMAINS)}, got {domain!r}")
    return ADAPTERS.register(name, domain=domain, summary=summary, bind=bind, defaults=defaults)


def get_adapter(name: str) -> AdapterSpec:
    return ADAPTERS.get(name)


def list_adapters() -> list[AdapterSpec]:
    return ADAPTERS.all()


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


def coerce_params(params: dict[str, Any], hints: dict[str, Any]) -> dict[str, Any]:
    """TOML has no tuples: turn lists into tuples where the hint asks for a tuple."""
    out = {}
    for k, v in params.items():
        hint = hints.get(k)
        wants_tuple = typing.get_origin(hint) is tuple or any(
            typing.get_origin(a) is tuple for a in typing.get_args(hint) or ())
        out[k] = tuple(v) if wants_tuple and isinstance(v, list) else v
    return out


__all__ = ["ADAPTERS", "DOMAINS", "ENTRY_POINT_GROUP", "AdapterError", "AdapterSpec", "coerce_params",
           "describe_hint", "get_adapter", "list_adapters", "make_spec", "matches_hint",
           "register_adapter"]
