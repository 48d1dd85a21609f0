"""The emulator speaks the Ollama API: driven with the official ``ollama`` client."""

from __future__ import annotations

import json
import math
import re
from collections.abc import AsyncIterator
from datetime import datetime

import httpx
import ollama
import pytest
from pydantic import BaseModel

from herd.sim import RunningEmulator, start_emulator
from herd.sim.testing import fast_profile

RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z$")
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city"],
        },
    },
}


@pytest.fixture
async def emu() -> AsyncIterator[RunningEmulator]:
    emulator = await start_emulator(fast_profile())
    yield emulator
    await emulator.stop()


# --- basics ----------------------------------------------------------------------------


async def test_root_and_version(http: httpx.AsyncClient) -> None:
    r = await http.get("/")
    assert r.status_code == 200
    assert r.text == "Ollama is running"
    assert r.headers["content-type"].startswith("text/plain")
    head = await http.head("/")
    assert head.status_code == 200
    assert head.content == b""
    v = await http.get("/api/version")
    assert v.json() == {"version": "0.12.6"}
    assert v.headers["content-type"] == "application/json; charset=utf-8"
    assert (await http.head("/api/version")).status_code == 200
    assert (await http.get("/api/nope")).status_code == 404


# --- generate --------------------------------------------------------------------------


async def test_generate_not_streamed(client: ollama.AsyncClient) -> None:
    r = await client.generate(model="Tiny:1B", prompt="Tell me about routers", stream=False)
    assert r.model == "Tiny:1B"  # echoed exactly as sent
    assert r.done is True
    assert r.done_reason == "stop"
    assert RFC3339_Z.match(r.created_at or "")
    assert r.response and r.response.endswith(".")
    assert r.eval_count == 12
    assert r.prompt_eval_count == 4
    for metric in (r.total_duration, r.load_duration, r.prompt_eval_duration, r.eval_duration):
        assert isinstance(metric, int)
        assert metric > 0
    assert r.context


async def test_generate_stream_matches_whole_and_is_deterministic(
    client: ollama.AsyncClient,
) -> None:
    whole = await client.generate(model="tiny:1b", prompt="hello", stream=False)
    chunks = [c async for c in await client.generate(model="tiny:1b", prompt="hello", stream=True)]
    assert all(c.done is False for c in chunks[:-1])
    final = chunks[-1]
    assert final.done is True
    assert final.response == ""
    assert final.done_reason == "stop"
    assert final.eval_count == len(chunks) - 1
    assert "".join(c.response or "" for c in chunks) == whole.response
    seeded = await client.generate(
        model="tiny:1b", prompt="hello", stream=False, options={"seed": 7}
    )
    again = await client.generate(
        model="tiny:1b", prompt="hello", stream=False, options={"seed": 7}
    )
    assert seeded.response == again.response != whole.response


async def test_generate_num_predict_gives_length(client: ollama.AsyncClient) -> None:
    r = await client.generate(
        model="tiny:1b", prompt="hi", stream=False, options={"num_predict": 3, "temperature": 0}
    )
    assert r.done_reason == "length"
    assert r.eval_count == 3


async def test_generate_empty_prompt_loads_and_unloads(client: ollama.AsyncClient) -> None:
    r = await client.generate(model="tiny:1b")
    assert r.done_reason == "load"
    assert r.response == ""
    assert [m.model for m in (await client.ps()).models] == ["tiny:1b"]
    r = await client.generate(model="tiny:1b", keep_alive=0)
    assert r.done_reason == "unload"
    assert (await client.ps()).models == []


async def test_generate_thinking(client: ollama.AsyncClient) -> None:
    r = await client.generate(model="thinker:1b", prompt="why?", stream=False, think=True)
    assert r.thinking and r.thinking.startswith("Okay")
    assert r.response
    plain = await client.generate(model="thinker:1b", prompt="why?", stream=False, think=False)
    assert plain.thinking is None
    with pytest.raises(ollama.ResponseError) as err:
        await client.generate(model="tiny:1b", prompt="why?", think=True)
    assert err.value.status_code == 400
    assert err.value.error == '"tiny:1b" does not support thinking'


async def test_generate_capability_errors(client: ollama.AsyncClient) -> None:
    with pytest.raises(ollama.ResponseError) as err:
        await client.generate(model="embedder", prompt="x")
    assert (err.value.status_code, err.value.error) == (400, '"embedder" does not support generate')
    with pytest.raises(ollama.ResponseError) as err:
        await client.generate(model="tiny:1b", prompt="x", suffix="y")
    assert err.value.error == "registry.ollama.ai/library/tiny:1b does not support insert"
    r = await client.generate(model="coder:1b", prompt="def f(", suffix="return 1", stream=False)
    assert r.response


# --- chat ------------------------------------------------------------------------------


async def test_chat_stream_and_whole(client: ollama.AsyncClient) -> None:
    messages = [{"role": "user", "content": "Say something"}]
    whole = await client.chat(model="tiny:1b", messages=messages, stream=False)
    assert whole.message.role == "assistant"
    assert whole.message.content
    assert whole.done_reason == "stop"
    chunks = [c async for c in await client.chat(model="tiny:1b", messages=messages, stream=True)]
    assert all(c.message.role == "assistant" for c in chunks)
    assert chunks[-1].done and chunks[-1].message.content == ""
    assert "".join(c.message.content or "" for c in chunks) == whole.message.content
    assert chunks[-1].prompt_eval_count is not None


async def test_chat_tool_call(client: ollama.AsyncClient, http: httpx.AsyncClient) -> None:
    messages = [{"role": "user", "content": "What's the weather in Tokyo today?"}]
    r = await client.chat(model="tiny:1b", messages=messages, tools=[WEATHER_TOOL], stream=False)
    assert r.done_reason == "stop"
    calls = r.message.tool_calls or []
    assert len(calls) == 1
    assert calls[0].function.name == "get_weather"
    assert calls[0].function.arguments["city"] == "Tokyo"
    assert calls[0].function.arguments["unit"] in ("c", "f")
    raw = await http.post(
        "/api/chat",
        json={"model": "tiny:1b", "messages": messages, "tools": [WEATHER_TOOL], "stream": False},
    )
    call = raw.json()["message"]["tool_calls"][0]
    assert re.fullmatch(r"call_[a-z0-9]{8}", call["id"])
    assert call["function"]["index"] == 0
    assert isinstance(call["function"]["arguments"], dict)
    # streamed: the whole call arrives in one chunk
    chunks = [
        c
        async for c in await client.chat(
            model="tiny:1b", messages=messages, tools=[WEATHER_TOOL], stream=True
        )
    ]
    with_calls = [c for c in chunks if c.message.tool_calls]
    assert len(with_calls) == 1
    # a tool result last -> plain text; an unrelated question -> no call
    follow = [*messages, {"role": "tool", "content": "22C sunny", "tool_name": "get_weather"}]
    r2 = await client.chat(model="tiny:1b", messages=follow, tools=[WEATHER_TOOL], stream=False)
    assert not r2.message.tool_calls and r2.message.content
    r3 = await client.chat(
        model="tiny:1b",
        messages=[{"role": "user", "content": "hi"}],
        tools=[WEATHER_TOOL],
        stream=False,
    )
    assert not r3.message.tool_calls
    by_name = [{"role": "user", "content": "please call get weather for Paris"}]
    r4 = await client.chat(model="tiny:1b", messages=by_name, tools=[WEATHER_TOOL], stream=False)
    assert r4.message.tool_calls and r4.message.tool_calls[0].function.arguments["city"] == "Paris"


async def test_chat_tools_unsupported(client: ollama.AsyncClient) -> None:
    with pytest.raises(ollama.ResponseError) as err:
        await client.chat(
            model="eyes:1b", messages=[{"role": "user", "content": "x"}], tools=[WEATHER_TOOL]
        )
    assert err.value.status_code == 400
    assert err.value.error == "registry.ollama.ai/library/eyes:1b does not support tools"


class Pet(BaseModel):
    name: str
    age: int


class Owner(BaseModel):
    owner: str
    pets: list[Pet]
    active: bool


async def test_chat_format_json_and_schema(client: ollama.AsyncClient) -> None:
    messages = [{"role": "user", "content": "Describe a pet owner"}]
    r = await client.chat(model="tiny:1b", messages=messages, format="json", stream=False)
    assert isinstance(json.loads(r.message.content or ""), dict)
    schema = Owner.model_json_schema()
    r = await client.chat(model="tiny:1b", messages=messages, format=schema, stream=False)
    owner = Owner.model_validate_json(r.message.content or "")
    assert owner.pets
    streamed = await client.chat(model="tiny:1b", messages=messages, format=schema, stream=True)
    text = "".join([c.message.content or "" async for c in streamed])
    assert text == r.message.content


async def test_chat_thinking_and_empty_messages(client: ollama.AsyncClient) -> None:
    messages = [{"role": "user", "content": "Think first"}]
    chunks = [
        c
        async for c in await client.chat(
            model="thinker:1b", messages=messages, think="high", stream=True
        )
    ]
    thinking = "".join(c.message.thinking or "" for c in chunks)
    assert len(thinking.split()) > 20
    r = await client.chat(model="thinker:1b", messages=[])
    assert (r.done_reason, r.message.role, r.message.content) == ("load", "assistant", "")
    r = await client.chat(model="thinker:1b", messages=[], keep_alive=0)
    assert r.done_reason == "unload"


# --- embeddings ------------------------------------------------------------------------


async def test_embed(client: ollama.AsyncClient) -> None:
    one = await client.embed(model="embedder", input="hello world")
    assert len(one.embeddings) == 1
    assert len(one.embeddings[0]) == 32
    assert math.isclose(math.fsum(x * x for x in one.embeddings[0]), 1.0, rel_tol=1e-9)
    two = await client.embed(model="embedder", input=["hello world", "other text"])
    assert two.embeddings[0] == one.embeddings[0]
    assert two.embeddings[1] != one.embeddings[0]
    cut = await client.embed(model="embedder", input="hello world", dimensions=8)
    assert len(cut.embeddings[0]) == 8
    assert math.isclose(math.fsum(x * x for x in cut.embeddings[0]), 1.0, rel_tol=1e-9)
    assert one.prompt_eval_count == 2
    empty = await client.embed(model="embedder", input=[])
    assert empty.embeddings == []
    with pytest.raises(ollama.ResponseError) as err:
        await client.embed(model="tiny:1b", input="x")
    assert err.value.status_code == 400


async def test_embed_errors(http: httpx.AsyncClient) -> None:
    r = await http.post("/api/embed", json={"model": "embedder", "input": 5})
    assert (r.status_code, r.json()) == (400, {"error": "invalid input type"})
    long = " ".join(["word"] * 100)
    r = await http.post("/api/embed", json={"model": "embedder", "input": long, "truncate": False})
    assert r.json() == {"error": "the input length exceeds the context length"}
    r = await http.post("/api/embed", json={"model": "embedder", "input": long})
    assert r.status_code == 200
    assert r.json()["prompt_eval_count"] == 64


async def test_legacy_embeddings(client: ollama.AsyncClient) -> None:
    r = await client.embeddings(model="embedder", prompt="hello world")
    norm = math.sqrt(math.fsum(x * x for x in r.embedding))
    assert len(r.embedding) == 32
    assert norm > 2  # not normalised
    assert (await client.embeddings(model="embedder", prompt="")).embedding == []
    with pytest.raises(ollama.ResponseError) as err:
        await client.embeddings(model="nope", prompt="x")
    assert err.value.status_code == 404
    assert err.value.error == 'model "nope" not found, try pulling it first'


# --- management ------------------------------------------------------------------------


async def test_tags_ps_show(client: ollama.AsyncClient, http: httpx.AsyncClient) -> None:
    tags = await client.list()
    names = {m.model for m in tags.models}
    assert names == {"tiny:1b", "thinker:1b", "eyes:1b", "coder:1b", "embedder:latest"}
    tiny = next(m for m in tags.models if m.model == "tiny:1b")
    assert tiny.size == 100 * 1024**2
    assert tiny.details and tiny.details.format == "gguf"
    raw = (await http.get("/api/tags")).json()["models"][0]
    assert datetime.fromisoformat(raw["modified_at"]).utcoffset() is not None
    assert len(raw["digest"]) == 64
    assert (await client.ps()).models == []
    await client.generate(model="tiny:1b", prompt="x", stream=False)
    ps = (await client.ps()).models
    assert [m.model for m in ps] == ["tiny:1b"]
    assert ps[0].size_vram == ps[0].size == 100 * 1024**2
    assert ps[0].context_length == 4096
    show = await client.show("thinker:1b")
    assert show.modelinfo is not None
    assert show.modelinfo["general.architecture"] == "qwen3"
    assert show.capabilities == ["completion", "tools", "thinking"]
    with pytest.raises(ollama.ResponseError) as err:
        await client.show("nope")
    assert (err.value.status_code, err.value.error) == (404, "model 'nope' not found")


async def test_pull_and_delete(client: ollama.AsyncClient, http: httpx.AsyncClient) -> None:
    progress = [p async for p in await client.pull("fresh:1b", stream=True)]
    statuses = [p.status for p in progress]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    layer = progress[1]
    assert layer.status == f"pulling {(layer.digest or '')[7:19]}"
    assert layer.total and layer.completed is None
    assert any(p.completed == p.total for p in progress if p.total)
    assert "fresh:1b" in {m.model for m in (await client.list()).models}
    r = await client.generate(model="fresh:1b", prompt="hi", stream=False)
    assert r.done
    with pytest.raises(ollama.ResponseError):
        _ = [p async for p in await client.pull("unknown:9b", stream=True)]
    r2 = await http.post("/api/pull", json={"model": "unknown:9b", "stream": False})
    assert r2.status_code == 500
    assert (await client.pull("fresh:1b")).status == "success"
    d = await http.request("DELETE", "/api/delete", json={"model": "fresh:1b"})
    assert (d.status_code, d.content) == (200, b"")
    with pytest.raises(ollama.ResponseError) as err:
        await client.delete("fresh:1b")
    assert (err.value.status_code, err.value.error) == (404, "model 'fresh:1b' not found")


# --- errors and framing ----------------------------------------------------------------


async def test_error_statuses(client: ollama.AsyncClient, http: httpx.AsyncClient) -> None:
    for call in (
        client.generate(model="nope", prompt="x"),
        client.chat(model="nope", messages=[{"role": "user", "content": "x"}]),
        client.embed(model="nope", input="x"),
    ):
        with pytest.raises(ollama.ResponseError) as err:
            await call
        assert (err.value.status_code, err.value.error) == (404, "model 'nope' not found")
    r = await http.post("/api/generate", content=b"")
    assert (r.status_code, r.json()) == (400, {"error": "missing request body"})
    r = await http.post("/api/chat", content=b"{nope")
    assert r.status_code == 400 and "error" in r.json()
    r = await http.post("/api/generate", json={"prompt": "x"})
    assert (r.status_code, r.json()) == (400, {"error": "model is required"})
    r = await http.post("/api/generate", json={"model": "tiny:1b", "prompt": 5})
    assert r.status_code == 400
    assert "GenerateRequest.prompt of type string" in r.json()["error"]
    r = await http.post(
        "/api/generate", json={"model": "tiny:1b", "prompt": "x", "options": {"num_ctx": "big"}}
    )
    assert (r.status_code, r.json()) == (500, {"error": 'option "num_ctx" must be of type integer'})
    r = await http.post(
        "/api/chat", json={"model": "tiny:1b", "messages": [], "options": {"temperature": "hot"}}
    )
    assert r.json() == {"error": 'option "temperature" must be of type float32'}
    r = await http.post(
        "/api/generate", json={"model": "tiny:1b", "prompt": "x", "keep_alive": "5"}
    )
    assert r.json() == {"error": 'time: missing unit in duration "5"'}
    r = await http.post(
        "/api/generate", json={"model": "tiny:1b", "prompt": "x", "top_logprobs": 30}
    )
    assert r.json() == {"error": "top_logprobs must be between 0 and 20"}
    r = await http.post("/api/generate", json={"model": "bad name!", "prompt": "x"})
    assert (r.status_code, r.json()) == (400, {"error": "invalid model name"})


async def test_ndjson_framing(http: httpx.AsyncClient) -> None:
    body = {"model": "thinker:1b", "messages": [{"role": "user", "content": "hi"}]}
    async with http.stream("POST", "/api/chat", json=body) as r:
        assert r.headers["content-type"] == "application/x-ndjson"
        raw = await r.aread()
    assert raw.endswith(b"\n")
    lines = raw.split(b"\n")[:-1]
    assert lines and all(line.strip() for line in lines)
    objs = [json.loads(line) for line in lines]
    assert all("message" in o and o["message"]["role"] == "assistant" for o in objs)
    assert [o["done"] for o in objs].count(True) == 1 and objs[-1]["done"]
    final = objs[-1]
    for key in ("total_duration", "load_duration", "prompt_eval_count", "eval_count"):
        assert isinstance(final[key], int)
    r2 = await http.post("/api/generate", json={**body, "prompt": "x", "stream": False})
    assert r2.headers["content-type"] == "application/json; charset=utf-8"
    assert "context" in r2.json()
    r3 = await http.post(
        "/api/generate", json={"model": "tiny:1b", "prompt": "x", "raw": True, "stream": False}
    )
    assert "context" not in r3.json()


async def test_logprobs(http: httpx.AsyncClient) -> None:
    body = {"model": "tiny:1b", "prompt": "x", "stream": False, "logprobs": True, "top_logprobs": 2}
    r = (await http.post("/api/generate", json=body)).json()
    assert len(r["logprobs"]) == r["eval_count"]
    assert r["logprobs"][0]["token"] and len(r["logprobs"][0]["top_logprobs"]) == 2


async def test_stop_sequences_and_vision(client: ollama.AsyncClient) -> None:
    whole = await client.generate(model="tiny:1b", prompt="stop test", stream=False)
    words = (whole.response or "").split()
    stop = " " + words[3]
    cut = await client.generate(
        model="tiny:1b", prompt="stop test", stream=False, options={"stop": [stop]}
    )
    assert cut.done_reason == "stop"
    assert (whole.response or "").startswith(cut.response or "")
    assert stop not in (cut.response or "")
    with pytest.raises(ollama.ResponseError) as err:
        await client.generate(model="tiny:1b", prompt="what is this?", images=["aGVsbG8="])
    assert err.value.error == "registry.ollama.ai/library/tiny:1b does not support vision"
    seen = await client.generate(model="eyes:1b", prompt="what is this?", images=["aGVsbG8="])
    assert seen.done
