"""The house's import rules, checked on the source: the package's imports form a DAG (function-local
imports included, since a local import only hides a cycle) and no underscored name - function,
class, constant or module - is imported from another module."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"bench": "ravar_bench", "adapters": "ravar_bench.adapters"}


def package_modules() -> dict[str, Path]:
    """Dotted module name -> source file, as pyproject's package-dir installs them."""
    modules = {}
    for folder, package in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = [p for p in path.relative_to(ROOT / folder).with_suffix("").parts if p != "__init__"]
            modules[".".join([package, *parts])] = path
    return modules


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, str]]:
    """(imported module, imported name or "") for every import of ours anywhere in the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("ravar_bench"):
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    found.append((sub, "") if sub in modules else (target, alias.name))
        elif isinstance(node, ast.Import):
            found += [(a.name, "") for a in node.names if a.name.startswith("ravar_bench")]
    return found


def owning_module(target: str, modules: dict[str, Path]) -> str | None:
    while target not in modules and "." in target:
        target = target.rpartition(".")[0]
    return target if target in modules else None


def import_graph(modules: dict[str, Path]) -> tuple[dict[str, set[str]], list[str]]:
    graph: dict[str, set[str]] = {m: set() for m in modules}
    private = []
    for name, path in modules.items():
        for target, imported in imports_of(name, path, modules):
            owner = owning_module(target, modules)
            if owner is None or owner == name:
                continue
            graph[name].add(owner)
            hidden = [p for p in owner.split(".") + [imported] if p.startswith("_") and not p.startswith("__")]
            if hidden:
                private.append(f"{name} imports {'.'.join(hidden)} from {owner}")
    return graph, private


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, or None (iterative depth-first search with colours)."""
    state: dict[str, int] = {}
    for start in sorted(graph):
        if state.get(start):
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(child) == 1:
                return path[path.index(child):] + [child]
            elif not state.get(child):
                state[child] = 1
                path.append(child)
                stack.append((child, iter(sorted(graph.get(child, ())))))
    return None


def test_the_package_imports_form_no_cycle():
    graph, _ = import_graph(package_modules())
    assert len(graph) > 50  # the walk found the package
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_underscored_name_crosses_a_module():
    _, private = import_graph(package_modules())
    assert private == []


def test_the_checks_can_fail(tmp_path):
    files = {"a": "def f():\n    from . import b\n", "b": "from .c import g\n",
             "c": "from .a import f\nfrom ._hidden import h\n", "_hidden": "from .b import _k\n"}
    modules = {}
    for name, text in files.items():
        (tmp_path / f"{name}.py").write_text(text)
        modules[f"ravar_bench.{name}"] = tmp_path / f"{name}.py"
    graph, private = import_graph(modules)
    assert find_cycle(graph) is not None
    assert sorted(private) == ["ravar_bench._hidden imports _k from ravar_bench.b",
                               "ravar_bench.c imports _hidden from ravar_bench._hidden"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
