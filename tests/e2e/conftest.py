"""Shared fixtures for tests against real engines (``-m e2e``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from herd.backends.llamacpp_server import (
    GEMMA_ALIAS,
    GEMMA_CHAT_TEMPLATE,
    LlamaCppSupervisor,
    ensure_gemma_model,
)


@pytest.fixture(scope="session")
def gemma_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packaged Gemma 3 270M GGUF, assembled once per session (~1 s, 253 MB)."""
    return ensure_gemma_model(tmp_path_factory.mktemp("models"))


def gemma_supervisor(model: Path) -> LlamaCppSupervisor:
    """A supervisor for ``gemma3:270m`` with a small context and two request slots."""
    return LlamaCppSupervisor(
        model, GEMMA_ALIAS, ctx=1024, parallel=2, chat_template=GEMMA_CHAT_TEMPLATE
    )


@pytest.fixture
def make_supervisor(gemma_model: Path) -> Callable[[], LlamaCppSupervisor]:
    """A factory of private supervisors, for tests that kill or fail servers."""
    return lambda: gemma_supervisor(gemma_model)


@pytest.fixture(scope="session")
def llamacpp(gemma_model: Path) -> Iterator[LlamaCppSupervisor]:
    """One llama.cpp server for the session. The supervisor is loop-agnostic, so a
    private loop starts and stops it while each test runs on its own loop."""
    supervisor = gemma_supervisor(gemma_model)
    asyncio.run(supervisor.start(timeout=60.0))
    yield supervisor
    asyncio.run(supervisor.stop())
