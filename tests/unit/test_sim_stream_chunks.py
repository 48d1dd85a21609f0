"""The emulator's ``stream_chunk_tokens``: fewer, larger chunks, the same answer and metrics."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from herd.sim import start_emulator
from herd.sim.testing import fast_profile

BODY = {
    "model": "tiny:1b",
    "messages": [{"role": "user", "content": "Tell me about herds."}],
    "think": False,
}


async def stream_chat(chunk_tokens: int, **body: Any) -> list[dict[str, Any]]:
    profile = fast_profile(response_tokens=12, stream_chunk_tokens=chunk_tokens)
    emulator = await start_emulator(profile)
    try:
        async with httpx.AsyncClient(base_url=emulator.url, timeout=10) as http:
            r = await http.post("/api/chat", json={**BODY, **body})
            assert r.status_code == 200
            return [json.loads(line) for line in r.text.splitlines() if line.strip()]
    finally:
        await emulator.stop()


def content(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["message"]["content"] for c in chunks)


@pytest.mark.parametrize(("size", "chunks"), [(1, 12), (4, 4), (11, 2), (50, 2)])
async def test_first_token_alone_then_groups_of_size(size: int, chunks: int) -> None:
    one = await stream_chat(1)
    grouped = await stream_chat(size)
    assert len(grouped) == chunks + 1  # plus the final done chunk
    assert content(grouped) == content(one)
    assert grouped[0]["message"]["content"] == one[0]["message"]["content"]
    final, final_one = grouped[-1], one[-1]
    assert final["done"] and final["eval_count"] == final_one["eval_count"] == 12


async def test_thinking_and_content_are_grouped_separately() -> None:
    chunks = await stream_chat(8, model="thinker:1b", think=True)
    kinds = [
        "thinking" if c["message"].get("thinking") else "content" for c in chunks if not c["done"]
    ]
    assert kinds[0] == "thinking" and kinds[-1] == "content"
    switch = kinds.index("content")
    assert set(kinds[:switch]) == {"thinking"} and set(kinds[switch:]) == {"content"}
    assert all(c["message"]["content"] == "" for c in chunks if c["message"].get("thinking"))
