"""Chats through the router to the real llama.cpp nodes, with the official clients.

``smol`` serves smollm2:135m, the embedded default: the README's first example ("Hello!",
no token limit) must get a short answer that ends by itself, in both dialects.
``gemma`` serves gemma3:270m, a base model: it continues raw text.
"""

from __future__ import annotations

from typing import Any

import ollama
import openai
import pytest

pytestmark = pytest.mark.e2e
MODEL = "smollm2:135m"
HELLO = [{"role": "user", "content": "Hello!"}]
# "Short": 21 tokens at the median, 55 at most over 400 tries of "Hello!" on this model.
SHORT = 256


def test_openai_hello_is_short_and_stops(fleet: Any) -> None:
    client = openai.OpenAI(base_url=f"{fleet.endpoint}/v1", api_key="x", max_retries=0)
    try:
        raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=HELLO)
    finally:
        client.close()
    completion = raw.parse()
    assert raw.headers["x-herd-node"] == "smol"
    choice = completion.choices[0]
    tokens = completion.usage.completion_tokens
    print(f"openai Hello! -> {tokens} tokens: {choice.message.content!r}")
    assert choice.message.content.strip() and choice.finish_reason == "stop"
    assert completion.usage.prompt_tokens > 0
    assert 0 < completion.usage.completion_tokens <= SHORT


def test_openai_stream_hello_is_short_and_stops(fleet: Any) -> None:
    client = openai.OpenAI(base_url=f"{fleet.endpoint}/v1", api_key="x", max_retries=0)
    try:
        chunks = list(
            client.chat.completions.create(
                model=MODEL, messages=HELLO, stream=True, stream_options={"include_usage": True}
            )
        )
    finally:
        client.close()
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert text.strip() and reasons[-1] == "stop"
    usage = chunks[-1].usage
    assert usage is not None and 0 < usage.completion_tokens <= SHORT


def test_ollama_hello_is_short_and_stops(fleet: Any) -> None:
    client = ollama.Client(host=fleet.endpoint)
    try:
        whole = client.chat(model=MODEL, messages=HELLO, stream=False)
        parts = list(client.chat(model=MODEL, messages=HELLO, stream=True))
    finally:
        client._client.close()
    print(f"ollama Hello! -> {whole.eval_count} tokens: {whole.message.content!r}")
    assert (whole.message.content or "").strip() and whole.done_reason == "stop"
    assert whole.eval_count is not None and 0 < whole.eval_count <= SHORT
    text = "".join(p.message.content or "" for p in parts)
    final = parts[-1]
    assert text.strip() and final.done and final.done_reason == "stop"
    assert final.eval_count is not None and 0 < final.eval_count <= SHORT


def test_gemma_base_model_continues_text(fleet: Any) -> None:
    client = ollama.Client(host=fleet.endpoint)
    try:
        done = client.generate(
            model="gemma3:270m",
            prompt="The capital of France is",
            raw=True,
            options={"num_predict": 8},
        )
    finally:
        client._client.close()
    assert done.response.strip() and done.done_reason == "length" and done.eval_count == 8
