"""Elimination stage: each rule returns a reason string when the node cannot serve.

A rule is a pure function ``(node, model, now) -> str | None``. ``None`` keeps the
node; a string removes it and is recorded in the decision as the reason.
"""

from __future__ import annotations

from collections.abc import Callable

from herd.models import NodeView

Eliminator = Callable[[NodeView, str, float], str | None]


def offline(node: NodeView, model: str, now: float) -> str | None:
    """Remove nodes the router has marked offline (heartbeats stopped or Ray node dead)."""
    return "offline" if node.status == "offline" else None


def draining(node: NodeView, model: str, now: float) -> str | None:
    """Remove nodes that are shutting down: they finish in-flight work but take no new."""
    return "draining" if node.heartbeat.draining else None


def backend_down(node: NodeView, model: str, now: float) -> str | None:
    """Remove nodes whose local backend did not answer its last probe."""
    return "backend down" if not node.heartbeat.backend_ok else None


def missing_model(node: NodeView, model: str, now: float) -> str | None:
    """Remove nodes that have the model neither loaded nor on disk."""
    return None if node.heartbeat.has_model(model) else "model not on node"


def critical_memory(node: NodeView, model: str, now: float) -> str | None:
    """Remove nodes under critical memory pressure, but only for cold loads: a model that
    is already resident needs no new memory."""
    if node.heartbeat.memory_pressure == "critical" and not node.heartbeat.is_loaded(model):
        return "critical memory pressure"
    return None


DEFAULT_ELIMINATORS: tuple[Eliminator, ...] = (
    offline,
    draining,
    backend_down,
    missing_model,
    critical_memory,
)


def eliminate(
    nodes: tuple[NodeView, ...],
    model: str,
    now: float,
    exclude: frozenset[str] = frozenset(),
    rules: tuple[Eliminator, ...] = DEFAULT_ELIMINATORS,
) -> tuple[list[NodeView], dict[str, str]]:
    """Split nodes into survivors and ``{node_id: reason}`` for the eliminated."""
    survivors: list[NodeView] = []
    reasons: dict[str, str] = {}
    for node in nodes:
        if node.node_id in exclude:
            reasons[node.node_id] = "excluded after failure"
            continue
        for rule in rules:
            reason = rule(node, model, now)
            if reason is not None:
                reasons[node.node_id] = reason
                break
        else:
            survivors.append(node)
    return survivors, reasons
