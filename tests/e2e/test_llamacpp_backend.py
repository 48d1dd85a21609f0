"""The real engine: llama.cpp's server (xllamacpp) with the packaged models, supervised.

smollm2:135m (the default, instruction-tuned) answers chats; gemma3:270m (a base model)
continues text."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from herd.backends.llamacpp_models import SMOLLM2
from herd.backends.llamacpp_server import LlamaCppSupervisor
from herd.backends.openai_compat import OpenAICompatBackend
from herd.errors import BackendError, BackendTimeout

pytestmark = pytest.mark.e2e
MODEL = SMOLLM2.name
OPTIONS = {"num_predict": 16, "temperature": 0, "seed": 7}
CHAT = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "Name three colours."}],
    "options": OPTIONS,
}
METRICS = ("total_duration", "prompt_eval_duration", "eval_duration")


@pytest.fixture
async def backend(llamacpp: LlamaCppSupervisor) -> AsyncIterator[OpenAICompatBackend]:
    sizes = {MODEL: llamacpp.model_path.stat().st_size}
    b = OpenAICompatBackend(llamacpp.url, "llamacpp", read_timeout=30, model_sizes=sizes)
    yield b
    await b.close()


def assert_final(final: dict[str, Any], max_tokens: int = 16) -> None:
    assert final["done"] is True and final["done_reason"] in ("stop", "length")
    assert 0 < final["eval_count"] <= max_tokens
    assert final["prompt_eval_count"] > 0
    assert all(isinstance(final[k], int) and final[k] > 0 for k in METRICS)
    assert final["total_duration"] >= final["prompt_eval_duration"] + final["eval_duration"]


async def test_stream_chat(backend: OpenAICompatBackend):
    chunks = [c async for c in backend.stream("chat", CHAT)]
    *pieces, final = chunks
    text = "".join(c["message"]["content"] for c in pieces)
    assert text.strip() and len(pieces) >= 2
    assert all(c["model"] == MODEL and c["done"] is False for c in pieces)
    assert final["message"] == {"role": "assistant", "content": ""}
    assert_final(final)
    speed = final["eval_count"] / final["eval_duration"] * 1e9
    print(f"chat: {final['eval_count']} tokens at {speed:.0f} tok/s: {text!r}")


async def test_stream_generate(backend: OpenAICompatBackend):
    body = {"model": MODEL, "prompt": "The sky is", "system": "Be brief.", "options": OPTIONS}
    *pieces, final = [c async for c in backend.stream("generate", body)]
    assert "".join(c["response"] for c in pieces).strip()
    assert final["response"] == "" and "message" not in final
    assert_final(final)


async def test_num_predict_limits_and_reports_length(backend: OpenAICompatBackend):
    body = {"model": MODEL, "prompt": "Once upon a time", "raw": True}
    final = await backend.complete("generate", body | {"options": {"num_predict": 4}})
    assert final["eval_count"] == 4 and final["done_reason"] == "length"
    assert final["response"].strip()


async def test_complete_chat(backend: OpenAICompatBackend):
    result = await backend.complete("chat", CHAT)
    assert result["message"]["role"] == "assistant" and result["message"]["content"].strip()
    assert_final(result)


async def test_parallel_streams_share_the_server(backend: OpenAICompatBackend):
    bodies = [CHAT | {"messages": [{"role": "user", "content": q}]} for q in ("Hi", "Count.")]
    results = await asyncio.gather(*(backend.complete("chat", b) for b in bodies))
    for result in results:
        assert_final(result)


async def test_probe_reports_the_loaded_model(
    backend: OpenAICompatBackend, llamacpp: LlamaCppSupervisor
):
    state = await backend.probe()
    assert state.ok and state.kind == "llamacpp" and state.error is None
    (disk,) = state.models
    assert disk.name == MODEL and disk.size == llamacpp.model_path.stat().st_size
    assert disk.quantization_level == "Q4_1"
    (loaded,) = state.loaded
    assert loaded.name == MODEL and loaded.context_length == 1024


def gone(pid: int) -> bool:
    """No process and no zombie: the supervisor reaped it."""
    return not Path(f"/proc/{pid}").exists()


async def test_killed_server_is_restarted_and_stop_leaves_nothing(
    make_supervisor: Callable[[], LlamaCppSupervisor],
):
    supervisor = make_supervisor()
    try:
        began = time.monotonic()
        await supervisor.start(timeout=60.0)
        print(f"server start: {time.monotonic() - began:.2f}s")
        first = supervisor.pid
        assert first is not None and supervisor.running
        assert await supervisor.ensure_running() is False  # healthy: nothing to do

        os.kill(first, signal.SIGKILL)
        for _ in range(100):
            if not supervisor.running:
                break
            await asyncio.sleep(0.02)
        assert not supervisor.running and supervisor.pid is None
        assert await supervisor.ensure_running(timeout=60.0) is True
        second = supervisor.pid
        assert second not in (None, first) and gone(first)
        assert supervisor.restarts == 1

        b = OpenAICompatBackend(supervisor.url, read_timeout=30)
        try:
            final = await b.complete(
                "generate", {"model": MODEL, "prompt": "Hello", "options": OPTIONS}
            )
            assert_final(final)
        finally:
            await b.close()
    finally:
        await supervisor.stop()
    assert not supervisor.running and second is not None and gone(second)


async def test_start_failure_carries_the_server_output(tmp_path: Path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    supervisor = LlamaCppSupervisor(bad, "broken:latest")
    with pytest.raises(BackendError, match="exited with code") as info:
        await supervisor.start(timeout=30.0)
    assert "failed to load model" in str(info.value)
    await supervisor.stop()


async def test_start_timeout_kills_the_process(
    make_supervisor: Callable[[], LlamaCppSupervisor],
):
    supervisor = make_supervisor()
    with pytest.raises(BackendTimeout, match="not healthy"):
        await supervisor.start(timeout=0.05)
    assert not supervisor.running
    await supervisor.stop()


# "Short": the README's "Hello!" took 21 tokens at the median and 55 at most over 400
# tries (the model's sampling defaults, no seed); a base model runs to the context limit.
SHORT = 256


async def test_hello_gets_a_short_answer_that_ends_by_itself(backend: OpenAICompatBackend):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hello!"}]}  # no limit
    result = await backend.complete("chat", body)
    text = result["message"]["content"]
    print(f"Hello! -> {result['eval_count']} tokens: {text!r}")
    assert text.strip() and result["done_reason"] == "stop"
    assert 0 < result["eval_count"] <= SHORT


def test_server_runs_the_models_template_and_sampling_defaults(llamacpp: LlamaCppSupervisor):
    props = httpx.get(f"{llamacpp.url}/props", timeout=10).json()
    assert "<|im_start|>" in props["chat_template"]  # the GGUF's own ChatML template
    params = props["default_generation_settings"]["params"]
    for option, value in SMOLLM2.sampling.items():
        assert params[option] == pytest.approx(value)


async def test_gemma_base_model_continues_raw_text(gemma_model: Path):
    supervisor = LlamaCppSupervisor.for_file(gemma_model, ctx=512)
    assert (supervisor.alias, supervisor.chat_template) == ("gemma3:270m", "gemma")
    await supervisor.start(timeout=60.0)
    b = OpenAICompatBackend(supervisor.url, read_timeout=30)
    try:
        body = {"model": "gemma3:270m", "prompt": "The capital of France is", "raw": True}
        final = await b.complete("generate", body | {"options": {"num_predict": 6}})
        assert final["response"].strip() and final["done_reason"] == "length"
        (disk,) = (await b.probe()).models
        assert disk.name == "gemma3:270m" and disk.quantization_level == "Q4_K_M"
    finally:
        await b.close()
        await supervisor.stop()
