"""A chat through the router to the real gemma3 270M on llama.cpp."""

from __future__ import annotations

from typing import Any

import ollama
import openai
import pytest

pytestmark = pytest.mark.e2e


def test_openai_chat_reaches_real_llamacpp(fleet: Any) -> None:
    client = openai.OpenAI(base_url=f"{fleet.endpoint}/v1", api_key="x", max_retries=0)
    try:
        raw = client.chat.completions.with_raw_response.create(
            model="gemma3:270m",
            messages=[{"role": "user", "content": "Name a colour."}],
            max_tokens=12,
        )
    finally:
        client.close()
    completion = raw.parse()
    assert raw.headers["x-herd-node"] == "gemma"
    assert completion.choices[0].message.content.strip()
    assert completion.usage.prompt_tokens > 0
    assert 0 < completion.usage.completion_tokens <= 12


def test_ollama_stream_reaches_real_llamacpp(fleet: Any) -> None:
    client = ollama.Client(host=fleet.endpoint)
    try:
        parts = list(
            client.chat(
                model="gemma3:270m",
                messages=[{"role": "user", "content": "Count to three."}],
                options={"num_predict": 10},
                stream=True,
            )
        )
    finally:
        client._client.close()
    text = "".join(p.message.content or "" for p in parts)
    assert text.strip()
    assert parts[-1].done and parts[-1].eval_count and parts[-1].eval_count > 0
    assert parts[-1].done_reason in ("stop", "length")
