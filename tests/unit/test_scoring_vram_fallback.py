"""VRAM-aware fallback (herd/scoring/vram_fallback.py) and model categories."""

from __future__ import annotations

from typing import Any

import pytest
from test_scoring import GIB, node, snap

from herd.domain import LoadedModel, ModelOnDisk
from herd.scoring.model_size import parameter_count, size_distance
from herd.scoring.vram_fallback import requested_in_body, vram_fallback
from herd.taxonomy import standin_group


@pytest.mark.parametrize(
    ("name", "family", "category", "expected"),
    [
        ("llama3.3:70b", "llama", "llm", "chat"),
        ("qwen3:8b", "", "llm", "chat"),
        ("nomic-embed-text:latest", "nomic-bert", "llm", "embedding"),
        ("mxbai-embed-large", "", "llm", "embedding"),  # by name
        ("all-minilm", "bert", "llm", "embedding"),
        ("qwen2.5-coder:7b", "qwen2", "llm", "coder"),
        ("codellama:13b", "llama", "llm", "coder"),
        ("starcoder2:3b", "", "llm", "coder"),
        ("hf.co/someone/CodeGemma:7b", "", "llm", "coder"),
        ("llava:13b", "llama", "llm", "vision"),
        ("llama3.2-vision:11b", "", "llm", "vision"),
        ("qwen2.5vl-x:7b", "", "llm", "chat"),  # "-vl" needs the dash
        ("flux-schnell", "", "image", "image"),  # the node's own classification wins
        ("whisper-tiny", "", "asr", "asr"),
        ("qwen3-embedding:4b", "qwen3", "embedding", "embedding"),
    ],
)
def test_standin_group(name: str, family: str, category: str, expected: str) -> None:
    assert standin_group(name, family, category) == expected


@pytest.mark.parametrize(
    ("name", "parameter_size", "expected"),
    [
        ("llama3.3:70b", "70.6B", 70.6e9),  # parameter_size first
        ("llama3.3:70b", "", 70e9),  # else the tag
        ("qwen3:1.7b", "", 1.7e9),
        ("smollm2:135m", "", 135e6),
        ("nomic-embed-text:latest", "137M", 137e6),
        ("mixtral:8x7b", "", 56e9),
        ("qwen3:8b-q4_K_M", "", 8e9),
        ("gemma3", "", None),
        ("model:latest", "", None),
        ("model:v2", "weird", None),
    ],
)
def test_parameter_count(name: str, parameter_size: str, expected: float | None) -> None:
    got = parameter_count(name, parameter_size)
    assert got == (pytest.approx(expected) if expected is not None else None)


def test_size_distance() -> None:
    assert size_distance(8e9, 8e9) == 0.0
    assert size_distance(4e9, 8e9) == size_distance(16e9, 8e9)
    assert size_distance(None, 8e9) == float("inf") and size_distance(0, 8e9) == float("inf")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"vram_fallback": True}, True),
        ({"metadata": {"vram_fallback": True, "tags": ["x"]}}, True),
        ({"vram_fallback": "yes"}, False),  # only a JSON true opts in
        ({"metadata": "x"}, False),
        ({}, False),
    ],
)
def test_requested_in_body(body: dict[str, Any], expected: bool) -> None:
    assert requested_in_body(body) is expected


DISK = (
    ModelOnDisk("llama3.3:70b", 42 * GIB, "llama", "70.6B"),
    ModelOnDisk("qwen3:32b", 20 * GIB, "qwen3", "32.8B"),
    ModelOnDisk("qwen3:8b", 5 * GIB, "qwen3", "8.2B"),
    ModelOnDisk("llama3.2:3b", 2 * GIB, "llama", "3.2B"),
    ModelOnDisk("qwen2.5-coder:7b", 5 * GIB, "qwen2", "7.6B"),
    ModelOnDisk("nomic-embed-text:latest", GIB // 4, "nomic-bert", "137M"),
    ModelOnDisk("mxbai-embed-large:latest", GIB // 2, "bert", "334M"),
)


def box(node_id: str, *loaded: str, **kw: Any) -> Any:
    return node(node_id, models=DISK, loaded=tuple(LoadedModel(m) for m in loaded), **kw)


@pytest.mark.parametrize(
    ("requested", "nodes", "expected"),
    [
        # The closest chat model in size, wherever it is loaded.
        ("qwen3:32b", (box("a", "llama3.3:70b"), box("b", "llama3.2:3b")), "llama3.3:70b"),
        ("qwen3:8b", (box("a", "llama3.3:70b"), box("b", "llama3.2:3b")), "llama3.2:3b"),
        # Same size distance: the same family wins.
        ("qwen3:8b", (box("a", "qwen3:32b", "llama3.3:70b"),), "qwen3:32b"),
        # Only the same category: a coder is no stand-in for chat, nor the reverse.
        ("qwen3:8b", (box("a", "qwen2.5-coder:7b", "nomic-embed-text:latest"),), None),
        ("qwen2.5-coder:7b", (box("a", "qwen3:8b"),), None),
        (
            "mxbai-embed-large",
            (box("a", "qwen3:8b", "nomic-embed-text"),),
            "nomic-embed-text",  # named as the node reports it loaded
        ),
        # The requested model is loaded on a live node: route it normally.
        ("qwen3:8b", (box("a", "qwen3:8b"), box("b", "llama3.2:3b")), None),
        # ... but loaded only on nodes that cannot take requests does not count.
        ("qwen3:8b", (box("a", "qwen3:8b", draining=True), box("b", "llama3.2:3b")), "llama3.2:3b"),
        # Stand-ins on dead, draining, paused or down nodes are no stand-ins.
        ("qwen3:8b", (box("a", "llama3.2:3b", status="offline"),), None),
        ("qwen3:8b", (box("a", "llama3.2:3b", paused=True),), None),
        ("qwen3:8b", (box("a", "llama3.2:3b", backend_ok=False),), None),
        ("qwen3:8b", (), None),
    ],
)
def test_vram_fallback_choice(requested: str, nodes: tuple[Any, ...], expected: str | None) -> None:
    got = vram_fallback(snap(*nodes), requested, enabled=True)
    assert (got.model if got else None) == expected


def test_vram_fallback_is_off_unless_enabled() -> None:
    s = snap(box("a", "llama3.2:3b"))
    assert vram_fallback(s, "qwen3:8b", enabled=False) is None
    got = vram_fallback(s, "qwen3:8b", enabled=True)
    assert got is not None
    assert (got.requested, got.model, got.category, got.nodes) == (
        "qwen3:8b",
        "llama3.2:3b",
        "chat",
        ("a",),
    )
    assert "qwen3:8b" in got.note and "llama3.2:3b" in got.note


def test_vram_fallback_lists_every_node_and_honours_exclusions() -> None:
    s = snap(box("b", "llama3.2:3b"), box("a", "llama3.2:3b"), box("c", "llama3.3:70b"))
    got = vram_fallback(s, "qwen3:8b", enabled=True)
    assert got is not None and (got.model, got.nodes) == ("llama3.2:3b", ("a", "b"))
    got = vram_fallback(s, "qwen3:8b", enabled=True, exclude=frozenset({"a", "b"}))
    assert got is not None and (got.model, got.nodes) == ("llama3.3:70b", ("c",))


def test_vram_fallback_uses_sizes_when_parameters_are_unknown() -> None:
    disk = (
        ModelOnDisk("mystery:latest", 6 * GIB),
        ModelOnDisk("big:latest", 40 * GIB),
        ModelOnDisk("close:latest", 5 * GIB),
    )
    s = snap(node("a", models=disk, loaded=(LoadedModel("big"), LoadedModel("close"))))
    got = vram_fallback(s, "mystery", enabled=True)
    assert got is not None and got.model == "close"
