"""Context protection (herd/scoring/context.py): what to do with options.num_ctx."""

from __future__ import annotations

from typing import Any

import pytest

from herd.domain import LoadedModel, ModelOnDisk, NodeHeartbeat
from herd.scoring.context import ContextMode, find_upgrade, protect_context


def box(
    node_id: str = "n",
    loaded: dict[str, int] | None = None,
    disk: tuple[ModelOnDisk, ...] = (),
) -> NodeHeartbeat:
    """A node with ``loaded`` {model: loaded context window}."""
    return NodeHeartbeat(
        node_id=node_id,
        hostname=node_id,
        models=disk,
        loaded=tuple(LoadedModel(m, context_length=c) for m, c in (loaded or {}).items()),
    )


QWEN = (
    ModelOnDisk("qwen3:8b", family="qwen3", parameter_size="8.2B"),
    ModelOnDisk("qwen3:32b", family="qwen3", parameter_size="32.8B"),
    ModelOnDisk("llama3.3:70b", family="llama", parameter_size="70.6B"),
    ModelOnDisk("nomic-embed-text", family="nomic-bert", parameter_size="137M"),
)


@pytest.mark.parametrize(
    ("options", "tokens", "mode", "action", "sent"),
    [
        # The loaded window (4096) holds the request: num_ctx would only force a reload.
        ({"num_ctx": 8192, "temperature": 0}, 1000, "strip", "stripped", {"temperature": 0}),
        ({"num_ctx": 2048}, 1000, "strip", "stripped", {}),  # smaller also reloads
        ({"num_ctx": 8192}, 1000, "warn", "warned", {"num_ctx": 8192}),
        ({"num_ctx": 8192}, 1000, "passthrough", "none", {"num_ctx": 8192}),
        # Nothing to strip.
        ({"num_ctx": 4096}, 1000, "strip", "none", {"num_ctx": 4096}),  # same as loaded
        ({"temperature": 0}, 1000, "strip", "none", {"temperature": 0}),
        (None, 1000, "strip", "none", {}),
        ({"num_ctx": -1}, 1000, "strip", "none", {"num_ctx": -1}),  # not a window
        # The answer counts: 3000 prompt + 2000 to predict > 4096, and no bigger model.
        ({"num_ctx": 8192, "num_predict": 2000}, 3000, "strip", "kept", None),
        ({"num_ctx": 8192, "num_predict": 500}, 3000, "strip", "stripped", {"num_predict": 500}),
        # Truly needs more and nothing larger is loaded: keep num_ctx (reload is needed).
        ({"num_ctx": 16384}, 10000, "strip", "kept", {"num_ctx": 16384}),
        ({"num_ctx": 16384}, 10000, "warn", "warned", {"num_ctx": 16384}),
        # Needs more but asked for nothing: nothing to keep.
        ({}, 10000, "strip", "none", {}),
    ],
)
def test_protect_context_on_the_loaded_model(
    options: dict[str, Any] | None,
    tokens: int,
    mode: ContextMode,
    action: str,
    sent: dict[str, Any] | None,
) -> None:
    got = protect_context(options, "qwen3:8b", box(loaded={"qwen3:8b": 4096}), tokens, mode)
    assert got.action == action
    if sent is not None:
        assert dict(got.options) == sent
    assert got.upgrade_model is None
    if action != "none":
        assert got.note  # every change (or warning) says why


def test_protect_context_never_changes_the_callers_options() -> None:
    options = {"num_ctx": 8192}
    got = protect_context(options, "qwen3:8b", box(loaded={"qwen3:8b": 4096}), 100)
    assert got.action == "stripped" and options == {"num_ctx": 8192}
    assert "reload" in got.note and "4096" in got.note


def test_cold_model_loads_with_the_requested_window() -> None:
    got = protect_context({"num_ctx": 8192}, "qwen3:8b", box(disk=QWEN), 100)
    assert (got.action, dict(got.options)) == ("none", {"num_ctx": 8192})
    # A loaded model whose window the node did not report: nothing to compare with.
    got = protect_context({"num_ctx": 8192}, "qwen3:8b", box(loaded={"qwen3:8b": 0}), 100)
    assert got.action == "none"


@pytest.mark.parametrize(
    ("loaded", "need", "upgrade"),
    [
        # A larger window of the same family wins ...
        ({"qwen3:8b": 4096, "qwen3:32b": 32768, "llama3.3:70b": 131072}, 20000, "qwen3:32b"),
        # ... when it holds the request; else another chat model of any family.
        ({"qwen3:8b": 4096, "qwen3:32b": 8192, "llama3.3:70b": 131072}, 20000, "llama3.3:70b"),
        # Never a model of another category (an embedder), never one too small.
        ({"qwen3:8b": 4096, "nomic-embed-text": 65536}, 20000, None),
        ({"qwen3:8b": 4096, "qwen3:32b": 16384}, 20000, None),
    ],
)
def test_upgrade_to_a_larger_loaded_model(
    loaded: dict[str, int], need: int, upgrade: str | None
) -> None:
    node = box(loaded=loaded, disk=QWEN)
    got = protect_context({"num_ctx": 32768}, "qwen3:8b", node, need)
    if upgrade is None:
        assert (got.action, got.upgrade_model) == ("kept", None)
    else:
        assert (got.action, got.upgrade_model, got.upgrade_node) == ("upgraded", upgrade, "n")
        assert "num_ctx" not in got.options and upgrade in got.note
        # warn names the upgrade but applies nothing.
        warned = protect_context({"num_ctx": 32768}, "qwen3:8b", node, need, "warn")
        assert (warned.action, warned.upgrade_model) == ("warned", upgrade)
        assert dict(warned.options) == {"num_ctx": 32768}


def test_upgrade_prefers_the_chosen_node_then_other_nodes_by_id() -> None:
    chosen = box("chosen", loaded={"qwen3:8b": 4096}, disk=QWEN)
    far = box("z-far", loaded={"qwen3:32b": 65536}, disk=QWEN)
    near = box("a-near", loaded={"qwen3:32b": 65536}, disk=QWEN)
    up = find_upgrade("qwen3:8b", 20000, chosen, [far, near])
    assert up is not None and (up.model, up.node) == ("qwen3:32b", "a-near")
    chosen_too = box("chosen", loaded={"qwen3:8b": 4096, "llama3.3:70b": 131072}, disk=QWEN)
    up = find_upgrade("qwen3:8b", 20000, chosen_too, [near])
    assert up is not None and (up.model, up.node) == ("llama3.3:70b", "chosen")
    got = protect_context({}, "qwen3:8b", chosen, 20000, others=[far, near])
    assert (got.action, got.upgrade_model, got.upgrade_node) == ("upgraded", "qwen3:32b", "a-near")
