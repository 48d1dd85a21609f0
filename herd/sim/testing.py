"""Helpers for tests and demos: a fast profile with tiny models, and condition polling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from herd.sim.profile import MIB, SimModel, SimProfile


def tiny_models() -> list[SimModel]:
    """Five tiny models covering every capability (100 MiB each, the embedder 50 MiB)."""

    def m(name: str, size: int, *caps: str, **extra: Any) -> SimModel:
        return SimModel.model_validate(
            {"name": name, "size": size, "capabilities": caps, "parameter_size": "1B", **extra}
        )

    return [
        m("tiny:1b", 100 * MIB, "completion", "tools"),
        m("thinker:1b", 100 * MIB, "completion", "tools", "thinking", family="qwen3"),
        m("eyes:1b", 100 * MIB, "completion", "vision", family="gemma3"),
        m("coder:1b", 100 * MIB, "completion", "insert", family="qwen2"),
        m(
            "embedder:latest",
            50 * MIB,
            "embedding",
            embedding_length=32,
            context_length=64,
            family="bert",
        ),
    ]


def fast_profile(**overrides: Any) -> SimProfile:
    """A quick node for tests: 2000 tokens/s, 100 MiB models loading in ~50 ms."""
    fresh = SimModel(name="fresh:1b", size=80 * MIB)
    data: dict[str, Any] = {
        "name": "test-node",
        "memory_bytes": 1024 * MIB,
        "tokens_per_s": 2000.0,
        "prompt_tokens_per_s": 100_000.0,
        "load_bytes_per_s": 2e9,
        "response_tokens": 12,
        "models": tiny_models(),
        # fresh:1b for /api/pull tests, spare:1b for auto-pull (nobody else pulls it),
        # cli-pull:1b for the terminal's `herd pull` (tests/integration/test_cli_models.py).
        "registry": [
            fresh,
            SimModel(name="spare:1b", size=80 * MIB),
            SimModel(name="cli-pull:1b", size=60 * MIB),
            *tiny_models(),
        ],
    }
    data.update(overrides)
    return SimProfile.model_validate(data)


async def wait_for(
    predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.002
) -> None:
    """Poll ``predicate`` until it is true; ``TimeoutError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(interval)
