"""One registry class for every pluggable kind chosen by name (adapters, fusion variants, ...).

A :class:`Registry` is found in two ways, both read on the first lookup:

* **In-tree**: every module of the kind's package is imported (``pkgutil.iter_modules``), and its
  ``@registry.register(name)`` decorators run. Adding an in-tree entry is therefore one file in that
  package and no list to edit. Modules whose name starts with ``_`` are skipped; module-level
  imports must stay light (optional dependencies are imported inside functions), since listing
  the kind imports them all. ``package`` may instead name a single module that registers its
  built-ins at import (perturbations, executors, backbones): scanning ``ravar_bench.data`` would
  import every heavy data module for a name.
* **Other packages**: an entry point in the kind's group (``ravar_bench.adapters``,
  ``ravar_bench.fusions``, ``ravar_bench.perturbations``, ``ravar_bench.executors``,
  ``ravar_bench.backbones``); the entry-point name is the registered name.

A name that is not found triggers one more scan (a module or plug-in added since the first
lookup), then the kind's error with a "did you mean" for the closest known name.

This module imports nothing of the harness: any ``ravar_bench`` module may use it.
"""
from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from importlib import metadata
from typing import Any, Generic, TypeVar

E = TypeVar("E")
T = TypeVar("T")


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x3d'?)`` for the closest known name, or "" when none is close."""
    close = difflib.get_close_matches(str(name), list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def keep_object(name: str, obj: Any, origin: str, **meta: Any) -> Any:
    """The default entry: the registered object itself (kinds without a spec type)."""
    return obj


class Registry(Generic[E]):
    """Named entries of one kind. ``make(name, obj, origin, **meta)`` turns a registered object
    into the kind's entry (e.g. an AdapterSpec) and raises ``error`` when the object is unfit;
    two entries are the same registration when they compare equal (a module imported again).
    ``aliases(entry)`` gives further lookup keys, ``label`` and ``order`` shape listings.

    A registry also reads like the tuple or dict of names it replaces (``in``, iteration over
    the registered names in ``order``, ``len``, ``registry[name]``), so code that validated a
    name against a constant accepts plug-ins without a change."""

    def __init__(self, kind: str, *, package: str, group: str, error: type[Exception] = LookupError,
                 make: Callable[..., E] = keep_object, aliases: Callable[[E], Iterable[str]] = lambda e: (),
                 label: Callable[[str, E], str] = lambda name, e: name,
                 order: Callable[[str], Any] = lambda name: name, fold_case: bool = False) -> None:
        self.kind, self.package, self.group, self.error = kind, package, group, error
        self.make, self.aliases, self.label, self.order, self.fold_case = make, aliases, label, order, fold_case
        self.entries: dict[str, E] = {}  # registered name -> entry
        self.keys: dict[str, str] = {}  # name or alias (case-folded if asked) -> registered name
        self.places: dict[str, str] = {}  # registered name -> where it was defined, for clashes
        self.loaded = False

    # -- registration ---------------------------------------------------------------------
    def register(self, name: str, /, **meta: Any) -> Callable[[T], T]:
        """Decorator for in-tree code: register the decorated object under ``name``."""

        def deco(obj: T) -> T:
            module = getattr(obj, "__module__", "")
            origin = "builtin" if module == self.package or module.startswith(self.package + ".") else module
            place = f"{module}:{getattr(obj, '__qualname__', obj)}"
            self.add(name, self.make(name, obj, origin, **meta), place)
            return obj

        return deco

    def add(self, name: str, entry: E, place: str) -> E:
        """Register ``entry`` under ``name`` and its aliases; the same entry again is a no-op, a
        different one under a taken name or alias an error that names both places."""
        keys = [self.fold(k) for k in (name, *self.aliases(entry))]
        for key in keys:
            owner = self.keys.get(key)
            if owner is not None and self.entries[owner] != entry:
                raise self.error(f"{self.kind} name {key!r} is registered twice: "
                                 f"{self.places[owner]} and {place}")
        if name in self.entries:  # the same registration: keep the first
            return self.entries[name]
        self.entries[name], self.places[name] = entry, place
        self.keys.update(dict.fromkeys(keys, name))
        return entry

    def fold(self, key: str) -> str:
        return str(key).lower() if self.fold_case else str(key)

    # -- discovery ------------------------------------------------------------------------
    def load(self) -> None:
        """Scan the in-tree package and the entry points, once."""
        if not self.loaded:
            self.loaded = True
            self.discover()

    def discover(self) -> None:
        """Import every module of the in-tree package, then every entry point of the group."""
        package = importlib.import_module(self.package)
        for module in pkgutil.iter_modules(getattr(package, "__path__", ()), package.__name__ + "."):
            if not module.name.rsplit(".", 1)[-1].startswith("_"):
                importlib.import_module(module.name)
        for ep in metadata.entry_points(group=self.group):
            dist = getattr(ep.dist, "name", "?")
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plug-in must be named, not hide behind a traceback
                raise self.error(f"entry point {ep.name!r} = {ep.value!r} of package {dist!r} "
                                 f"failed to load: {exc}") from exc
            self.add(ep.name, self.make(ep.name, obj, f"entry point ({dist})"), f"entry point {ep.value} ({dist})")

    # -- lookup ---------------------------------------------------------------------------
    def get(self, name: str) -> E:
        """The entry registered under ``name`` (or an alias); unknown names get a "did you mean"."""
        self.load()
        owner = self.keys.get(self.fold(name))
        if owner is None:
            importlib.invalidate_caches()  # a module written since the first scan
            self.discover()
            owner = self.keys.get(self.fold(name))
        if owner is None:
            known = ", ".join(self.label(n, self.entries[n]) for n in sorted(self.entries, key=self.order))
            raise self.error(f"unknown {self.kind} {name!r}{did_you_mean(self.fold(name), self.keys)}; "
                             f"known: {known}")
        return self.entries[owner]

    def all(self) -> list[E]:
        """Every entry, in ``order`` of the registered names."""
        self.load()
        return [self.entries[n] for n in sorted(self.entries, key=self.order)]

    def __contains__(self, name: object) -> bool:
        self.load()
        return isinstance(name, str) and self.fold(name) in self.keys

    def __iter__(self) -> Iterator[str]:
        """The registered names (not aliases), in ``order``."""
        self.load()
        return iter(sorted(self.entries, key=self.order))

    def __len__(self) -> int:
        self.load()
        return len(self.entries)

    def __getitem__(self, name: str) -> E:
        return self.get(name)

    @contextmanager
    def isolated(self) -> Iterator[Registry[E]]:
        """Undo every registration made inside the block (tests register toy entries)."""
        self.load()
        saved = dict(self.entries), dict(self.keys), dict(self.places)
        try:
            yield self
        finally:
            self.entries, self.keys, self.places = saved


__all__ = ["Registry", "did_you_mean", "keep_object"]
