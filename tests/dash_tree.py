"""Walking Dash component trees in the dashboard's unit tests: find elements by
``data-testid`` and read their text."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from dash.development.base_component import Component


def walk(node: Any) -> Iterator[Any]:
    if isinstance(node, list | tuple):
        for item in node:
            yield from walk(item)
    elif isinstance(node, Component):
        yield node
        yield from walk(getattr(node, "children", None))


def text(node: Any) -> str:
    if isinstance(node, str | int | float):
        return str(node)
    if isinstance(node, list | tuple):
        return "".join(text(n) for n in node)
    if isinstance(node, Component):
        return text(getattr(node, "children", None))
    return ""


def by_testid(tree: Any, test_id: str) -> Any:
    found = [c for c in walk(tree) if getattr(c, "data-testid", None) == test_id]
    assert len(found) == 1, f"{len(found)} elements with data-testid={test_id!r}"
    return found[0]


def cell(tree: Any, test_id: str) -> str:
    return text(by_testid(tree, test_id))


def rows(tree: Any, table: str) -> list[str]:
    """Row keys of a ``dashboard.views.common.table`` named ``table``."""
    prefix = f"{table}-"
    return [
        tid[len(prefix) :]
        for c in walk(tree)
        if type(c).__name__ == "Tr"
        and (tid := getattr(c, "data-testid", None))
        and tid.startswith(prefix)
    ]
