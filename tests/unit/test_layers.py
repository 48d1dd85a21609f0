"""The import rules of ARCHITECTURE.md: no import circle, no import from a lower layer
into a higher one. Every import counts, lazy ones inside functions included.

A module belongs to a *room*: a top-level package, or a subpackage or module of ``herd``
(``herd.routing``, ``herd.errors``, ...). A room may import itself and any room of a
lower layer; rooms of the same layer do not import each other.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("herd", "actors", "dashboard", "serve_app", "launch")

# Lowest first. Keep in step with "What may import what" in ARCHITECTURE.md.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset(
        {"herd.errors", "herd.model_names", "herd.env_file", "herd.node_settings", "herd.api_keys"}
    ),
    frozenset({"herd", "herd.settings", "herd.domain", "herd.deadlines", "herd.json_codec"}),
    frozenset({"herd.taxonomy", "herd.settings_doc"}),
    frozenset(
        {
            "herd.logs",
            "herd.capacity",
            "herd.wire",
            "herd.scoring",
            "herd.sim",
            "herd.backends",
            "herd.traces",
            "herd.guard",
            "herd.discovery",
        }
    ),
    frozenset({"herd.convert"}),
    frozenset({"herd.node", "herd.routing"}),
    frozenset({"herd.dispatch", "herd.metrics"}),
    frozenset({"actors", "dashboard"}),
    frozenset({"serve_app"}),
    frozenset({"launch"}),
)


def module_files() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imported(path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The project modules ``path`` imports. ``from pkg import name`` names ``pkg`` (its
    ``__init__`` runs) and, when ``name`` is a submodule, that submodule too."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PACKAGES:
                    yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] not in PACKAGES:
                continue
            yield node.module
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if full in known:
                    yield full


def room(module: str) -> str:
    parts = module.split(".")
    return parts[0] if parts[0] != "herd" or len(parts) == 1 else f"herd.{parts[1]}"


def layer_of(module: str) -> int:
    name = room(module)
    for index, rooms in enumerate(LAYERS):
        if name in rooms:
            return index
    raise AssertionError(f"{module}: room {name} is in no layer (add it to LAYERS)")


def graph() -> dict[str, set[str]]:
    known = module_files()
    return {m: {d for d in imported(p, known) if d != m} for m, p in known.items()}


def test_every_room_has_a_layer() -> None:
    for module in graph():
        layer_of(module)


def test_no_import_runs_up_a_layer_or_across_one() -> None:
    wrong = []
    for module, deps in graph().items():
        for dep in deps:
            if room(dep) == room(module):
                continue
            if layer_of(dep) >= layer_of(module):
                wrong.append(f"{module} -> {dep}")
    assert not wrong, "imports against the layer order:\n" + "\n".join(sorted(wrong))


def strongly_connected(g: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components with more than one module (iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for start in g:
        if start in index:
            continue
        work = [(start, iter(sorted(g[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            advanced = False
            for dep in edges:
                if dep not in g:
                    continue
                if dep not in index:
                    index[dep] = low[dep] = counter
                    counter += 1
                    stack.append(dep)
                    on_stack.add(dep)
                    work.append((dep, iter(sorted(g[dep]))))
                    advanced = True
                    break
                if dep in on_stack:
                    low[node] = min(low[node], index[dep])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def test_no_import_circle() -> None:
    circles = strongly_connected(graph())
    assert not circles, "import circles: " + "; ".join(" <-> ".join(c) for c in circles)


def test_the_checks_catch_a_circle_and_an_upward_import() -> None:
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert strongly_connected(g) == [["a", "b", "c"]]
    assert layer_of("herd.dispatch.dispatcher") > layer_of("herd.routing.core")
    assert layer_of("launch.cli") > layer_of("serve_app.app") > layer_of("actors.node")
    assert room("herd.node.agent") == "herd.node" and room("serve_app.routes") == "serve_app"
