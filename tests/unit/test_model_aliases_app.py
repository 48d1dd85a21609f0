"""Model aliases over the real app (routes, guard, dispatcher, traces) and fake nodes, with
the official ``openai``, ``anthropic`` and ``ollama`` clients: every dialect resolves an
alias before routing, the node is asked for the fleet model, the answer and
``X-Herd-Model`` name the model that served (as OpenAI and Anthropic answer their own
aliases with the concrete model), the trace keeps requested (the alias) vs served, and
``/v1/models`` lists an alias whose target is served."""

from __future__ import annotations

import io
import json
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import httpx2
import ollama
import openai
import pytest
from dispatch_fakes import Fleet, Reply, heartbeat, running

from herd.traces.records import TraceRecord
from serve_app.routes import build_app
from serve_app.service import HerdService

BASE = "http://127.0.0.1:11435"
SMOL, MINILM, SD, WHISPER = "smollm2:135m", "all-minilm:l6-v2", "tiny-sd:random", "whisper:tiny.en"
ALIASES = {
    "gpt-4o-mini": SMOL,
    "claude-sonnet-4-5": "claude",  # a chain: claude-sonnet-4-5 -> claude -> smollm2
    "claude": SMOL,
    "text-embedding-3-small": MINILM,
    "dall-e-2": SD,
    "whisper-1": WHISPER,
    "ghost": "nobody:1b",  # its target is served nowhere
}
HI: Any = [{"role": "user", "content": "hi"}]


@dataclass
class Clients:
    openai: openai.AsyncOpenAI
    anthropic: anthropic.AsyncAnthropic
    ollama: ollama.AsyncClient
    http: httpx.AsyncClient
    fleet: Fleet

    async def traced(self) -> list[tuple[str, str | None, str]]:
        """(requested, served, status) of every trace so far."""
        records: list[TraceRecord] = await self.fleet.records()
        return [(r.requested_model, r.served_model, r.status) for r in records]


@asynccontextmanager
async def herd() -> AsyncIterator[Clients]:
    beat = heartbeat("alpha", loaded=[SMOL], models=[MINILM, SD, WHISPER])
    async with running(beat, model_aliases=json.dumps(ALIASES)) as fleet:
        app = build_app(HerdService(fleet.d.settings, fleet.d))
        sdk = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=BASE)
        plain = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)
        async with sdk, plain:
            yield Clients(
                openai.AsyncOpenAI(
                    base_url=BASE + "/v1", api_key="sk-x", http_client=sdk, max_retries=0
                ),
                anthropic.AsyncAnthropic(
                    api_key="sk-ant-x", base_url=BASE, http_client=sdk, max_retries=0
                ),
                ollama.AsyncClient(host=BASE, transport=httpx.ASGITransport(app=app)),
                plain,
                fleet,
            )


def asked(c: Clients) -> list[str]:
    """The model each node open was for."""
    return [o.model for o in c.fleet.nodes.opened]


# --- OpenAI ---------------------------------------------------------------------------------
async def test_openai_chat_completions_create_and_stream() -> None:
    async with herd() as c:
        raw = await c.openai.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=HI
        )
        completion = raw.parse()
        assert completion.model == SMOL
        assert completion.choices[0].message.content == "Hello world"
        assert raw.headers["x-herd-model"] == SMOL
        assert raw.headers["x-herd-fallback"] == "false"  # an alias is not a fallback
        stream = await c.openai.chat.completions.create(
            model="GPT-4o-mini", messages=HI, stream=True
        )
        chunks = [chunk async for chunk in stream]
        assert {chunk.model for chunk in chunks} == {SMOL}
        assert asked(c) == [SMOL, SMOL]
        assert await c.traced() == [("gpt-4o-mini", SMOL, "ok"), ("GPT-4o-mini", SMOL, "ok")]


async def test_openai_completions_and_embeddings() -> None:
    async with herd() as c:
        completion = await c.openai.completions.create(model="gpt-4o-mini", prompt="hi")
        assert completion.model == SMOL
        vectors = await c.openai.embeddings.create(model="text-embedding-3-small", input="hi")
        assert vectors.model == MINILM and len(vectors.data) == 1
        assert asked(c) == [SMOL, MINILM]
        assert await c.traced() == [
            ("gpt-4o-mini", SMOL, "ok"),
            ("text-embedding-3-small", MINILM, "ok"),
        ]


async def test_openai_responses_create_and_stream() -> None:
    async with herd() as c:
        response = await c.openai.responses.create(model="gpt-4o-mini", input="hi")
        assert response.model == SMOL and response.output_text == "Hello world"
        async with c.openai.responses.stream(model="claude-sonnet-4-5", input="hi") as stream:
            events = [event async for event in stream]
            final = await stream.get_final_response()
        assert events[0].type == "response.created" and final.model == SMOL
        assert asked(c) == [SMOL, SMOL]
        assert await c.traced() == [
            ("gpt-4o-mini", SMOL, "ok"),
            ("claude-sonnet-4-5", SMOL, "ok"),
        ]


async def test_openai_images_and_transcriptions() -> None:
    async with herd() as c:
        png = b"\x89PNG\r\n\x1a\n" + b"\0" * 16
        c.fleet.nodes.script("alpha", Reply(first=[{"model": SD, "image": png}]))
        images = await c.openai.images.generate(model="dall-e-2", prompt="a llama", size="256x256")
        assert images.data is not None and images.data[0].b64_json
        said = {"model": WHISPER, "text": "hello", "language": "en", "duration": 0.1}
        c.fleet.nodes.script("alpha", Reply(first=[said]))
        text = await c.openai.audio.transcriptions.create(
            model="whisper-1", file=("a.wav", silence_wav(), "audio/wav")
        )
        assert text.text == "hello"
        assert asked(c) == [SD, WHISPER]
        assert await c.traced() == [("dall-e-2", SD, "ok"), ("whisper-1", WHISPER, "ok")]


def silence_wav(seconds: float = 0.1, rate: int = 16000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\0\0" * int(seconds * rate))
    return out.getvalue()


async def test_models_list_and_retrieve_aliases_whose_target_is_served() -> None:
    async with herd() as c:
        ids = [m.id async for m in c.openai.models.list()]
        assert {SMOL, MINILM, SD, WHISPER} <= set(ids)
        aliases = [i for i in ids if i in ALIASES]
        assert aliases == [a for a in ALIASES if a != "ghost"]  # in the order configured
        found = await c.openai.models.retrieve("gpt-4o-mini")
        assert (found.id, found.object) == ("gpt-4o-mini", "model")
        with pytest.raises(openai.NotFoundError):
            await c.openai.models.retrieve("ghost")


async def test_an_alias_of_a_model_nobody_serves_is_a_404_traced_with_the_alias() -> None:
    async with herd() as c:
        with pytest.raises(openai.NotFoundError) as info:
            await c.openai.chat.completions.create(model="ghost", messages=HI)
        assert "nobody:1b" in info.value.message
        assert await c.traced() == [("ghost", None, "rejected")]


async def test_fallback_models_resolve_too() -> None:
    async with herd() as c:
        raw = await c.openai.chat.completions.with_raw_response.create(
            model="nobody:1b", messages=HI, extra_body={"fallback_models": ["gpt-4o-mini"]}
        )
        assert raw.parse().model == SMOL
        assert raw.headers["x-herd-fallback"] == "true"  # a fallback served, by its alias
        assert await c.traced() == [("nobody:1b", SMOL, "ok")]


# --- Anthropic ------------------------------------------------------------------------------
async def test_anthropic_messages_create_stream_and_count_tokens() -> None:
    async with herd() as c:
        message = await c.anthropic.messages.create(
            model="claude-sonnet-4-5", max_tokens=16, messages=HI
        )
        assert message.model == SMOL
        async with c.anthropic.messages.stream(
            model="claude-sonnet-4-5", max_tokens=16, messages=HI
        ) as stream:
            texts = [text async for text in stream.text_stream]
            final = await stream.get_final_message()
        assert "".join(texts) == "Hello world" and final.model == SMOL
        counted = await c.anthropic.messages.count_tokens(model="claude-sonnet-4-5", messages=HI)
        assert counted.input_tokens == 1  # the estimate needs no node, alias or not
        assert asked(c) == [SMOL, SMOL]
        assert await c.traced() == [
            ("claude-sonnet-4-5", SMOL, "ok"),
            ("claude-sonnet-4-5", SMOL, "ok"),
        ]


# --- Ollama ---------------------------------------------------------------------------------
async def test_ollama_chat_generate_embed_embeddings() -> None:
    async with herd() as c:
        reply = await c.ollama.chat(model="gpt-4o-mini", messages=HI, stream=False)
        assert reply.model == SMOL and reply.message.content == "Hello world"
        parts = [part async for part in await c.ollama.chat("claude", messages=HI, stream=True)]
        assert {p.model for p in parts} == {SMOL}
        done = {"model": SMOL, "response": "hey", "done": True, "done_reason": "stop"}
        c.fleet.nodes.script("alpha", Reply(first=[done]))
        generated = await c.ollama.generate(model="gpt-4o-mini", prompt="hi")
        assert generated.model == SMOL and generated.response == "hey"
        embedded = await c.ollama.embed(model="text-embedding-3-small", input="hi")
        assert embedded.model == MINILM and embedded.embeddings == [[0.1, 0.2]]
        legacy = await c.ollama.embeddings(model="text-embedding-3-small", prompt="hi")
        assert list(legacy.embedding) == [0.1, 0.2]
        assert asked(c) == [SMOL, SMOL, SMOL, MINILM, MINILM]
        assert [r for r, _, _ in await c.traced()] == [
            "gpt-4o-mini",
            "claude",
            "gpt-4o-mini",
            "text-embedding-3-small",
            "text-embedding-3-small",
        ]


async def test_ollama_show_resolves_and_tags_stay_the_inventory() -> None:
    async with herd() as c:
        body = {"modelfile": f"FROM {SMOL}", "model_info": {"general.architecture": "llama"}}
        c.fleet.nodes.call_results[("alpha", "show")] = body
        shown = await c.ollama.show("gpt-4o-mini")
        assert shown.modelfile == f"FROM {SMOL}"
        assert c.fleet.nodes.calls[-1][1:] == ("show", (SMOL, False))  # the node was asked
        listed = [m.model for m in (await c.ollama.list()).models]
        assert SMOL in listed and not set(listed) & set(ALIASES)
        with pytest.raises(ollama.ResponseError) as info:
            await c.ollama.show("ghost")
        assert info.value.status_code == 404
