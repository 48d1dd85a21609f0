"""``POST /v1/audio/speech`` over the real app (guard, route, dispatcher, trace) with the
official ``openai`` client; the fake nodes answer speech jobs with a real
:class:`~herd.node.media.NodeMedia` over the real engines (Piper with the packaged voice
and espeak-ng on ``alpha``, espeak-ng alone on ``beta``). Every format decoded back;
streaming; the fallback of OpenAI's names to espeak-ng; every bad input in OpenAI's error
shape."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import av
import httpx
import httpx2
import openai
import pytest
from dispatch_fakes import Fleet, Reply, heartbeat, running

from herd.backends.media import MediaEngines
from herd.backends.media_detect import detect_media_engines
from herd.domain import InferenceRequest, NodeHeartbeat
from herd.node.media import NodeMedia
from herd.settings import load_settings
from serve_app.routes import build_app
from serve_app.service import HerdService

BASE = "http://127.0.0.1:11435"
PIPER = "piper:en_US-joe-medium"
MEDIA_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}


@pytest.fixture(scope="module")
def engines() -> Iterator[MediaEngines]:
    found = detect_media_engines(load_settings(node={"engines": "piper,espeak-ng"}))
    assert [e.kind for e in found.tts] == ["piper", "espeak-ng"], "run `make setup`"
    yield found
    asyncio.run(found.close())


@dataclass
class Herd:
    openai: openai.AsyncOpenAI
    http: httpx.AsyncClient
    fleet: Fleet


def beat(name: str, media: NodeMedia) -> NodeHeartbeat:
    hb = heartbeat(name, models=["tiny:1b"])
    return replace(hb, models=(*hb.models, *media.models()))


@asynccontextmanager
async def herd(engines: MediaEngines, *names: str, **over: Any) -> AsyncIterator[Herd]:
    """A fleet of ``names`` (alpha: both engines, beta: espeak-ng only) whose speech jobs
    run on real engines; settings ``over``."""
    medias = {
        "alpha": NodeMedia(engines),
        "beta": NodeMedia(MediaEngines(tts=[e for e in engines.tts if e.kind == "espeak-ng"])),
    }
    chosen = names or ("alpha",)
    async with running(*(beat(n, medias[n]) for n in chosen), **over) as fleet:
        scripted = fleet.nodes.open

        async def open_node(node_id: str, req: InferenceRequest, model: str, url: str) -> Any:
            if req.kind == "speech":  # what the NodeAgent does: the node's media engines
                result = await medias[node_id].run(req.kind, model, req.body, None)
                fleet.nodes.script(node_id, Reply(first=[result]))
            return await scripted(node_id, req, model, url)

        fleet.nodes.open = open_node  # type: ignore[method-assign,assignment]
        app = build_app(HerdService(fleet.d.settings, fleet.d))
        sdk = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=BASE)
        plain = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)
        async with sdk, plain:
            client = openai.AsyncOpenAI(
                base_url=BASE + "/v1", api_key="sk-x", http_client=sdk, max_retries=0
            )
            yield Herd(client, plain, fleet)


def decoded(data: bytes) -> tuple[int, float]:
    """(sample rate, seconds) of an audio file, from its decoded samples."""
    with av.open(io.BytesIO(data), mode="r") as box:
        stream = box.streams.audio[0]
        samples = sum(int(f.samples) for packet in box.demux(stream) for f in packet.decode())
        return stream.rate, samples / stream.rate


@pytest.mark.parametrize("fmt", list(MEDIA_TYPES))
async def test_openai_client_gets_each_format(engines: MediaEngines, fmt: str) -> None:
    async with herd(engines) as h:
        speech = await h.openai.audio.speech.create(
            model="tts-1",
            input="Hello world.",
            voice="alloy",
            response_format=fmt,  # type: ignore[arg-type]
        )
        headers = speech.response.headers
        assert headers["content-type"] == MEDIA_TYPES[fmt]
        assert headers["x-herd-node"] == "alpha" and headers["x-herd-model"] == "tts-1:latest"
        assert headers["x-herd-voice"] == "joe" and headers["x-herd-sample-rate"] == "24000"
        data = speech.content
        if fmt == "pcm":
            seconds = len(data) / 2 / 24000
        else:
            rate, seconds = decoded(data)
            assert rate == (48000 if fmt == "opus" else 24000)
        assert 0.3 < seconds < 5 and float(headers["x-herd-audio-seconds"]) > 0.3
        [record] = await h.fleet.records()
        assert (record.dialect, record.kind, record.status) == ("openai", "speech", "ok")
        assert record.requested_model == "tts-1" and record.node_id == "alpha"


async def test_streaming_response_and_the_default_mp3(engines: MediaEngines) -> None:
    async with herd(engines) as h:
        async with h.openai.audio.speech.with_streaming_response.create(
            model="espeak-ng", input="Streaming speech from the fleet.", voice="onyx"
        ) as response:
            assert response.headers["content-type"] == "audio/mpeg"
            assert response.headers["x-herd-voice"] == "en-us+m7"
            data = b"".join([chunk async for chunk in response.iter_bytes(4096)])
        rate, seconds = decoded(data)
        assert rate == 24000 and seconds > 1.0
        opened = h.fleet.nodes.opened[-1]
        assert opened.req.kind == "speech" and opened.req.body == {
            "input": "Streaming speech from the fleet.",
            "voice": "onyx",
            "speed": 1.0,
            "response_format": "mp3",
        }


async def test_speed_voice_object_and_ignored_instructions(engines: MediaEngines) -> None:
    async with herd(engines) as h:
        lengths = {}
        for speed in (0.5, 2.0):
            speech = await h.openai.audio.speech.create(
                model=PIPER,
                input="The quick brown fox jumps over the lazy dog.",
                voice={"id": "nova"},
                response_format="wav",
                speed=speed,
                instructions="Speak in a cheerful and positive tone.",
            )
            lengths[speed] = decoded(speech.content)[1]
            assert speech.response.headers["x-herd-voice"] == "joe"
        assert lengths[0.5] > 2 * lengths[2.0]


async def test_openai_names_fall_back_to_espeak_where_piper_is_missing(
    engines: MediaEngines,
) -> None:
    async with herd(engines, "beta") as h:
        speech = await h.openai.audio.speech.create(
            model="tts-1-hd", input="Hello from the fallback.", voice="shimmer"
        )
        headers = speech.response.headers
        assert (
            headers["x-herd-model"] == "espeak-ng:latest" and headers["x-herd-fallback"] == "true"
        )
        assert headers["x-herd-voice"] == "en-us+f5"
        assert decoded(speech.content)[1] > 0.5


BAD: dict[str, tuple[dict[str, Any], int, str]] = {
    "unknown voice": ({"voice": "darth"}, 400, "voice 'darth' is not available"),
    "empty voice": ({"voice": " "}, 400, "voice must not be empty"),
    "voice object without id": ({"voice": {"name": "x"}}, 400, "object with a string 'id'"),
    "speed too high": ({"speed": 4.5}, 400, "speed must be between 0.25 and 4.0"),
    "speed too low": ({"speed": 0.1}, 400, "speed must be between"),
    "speed a string": ({"speed": "fast"}, 400, "speed"),
    "format": ({"response_format": "ogg"}, 400, "response_format 'ogg' is not supported"),
    "sse": ({"stream_format": "sse"}, 400, "stream_format must be 'audio'"),
    "empty input": ({"input": "  "}, 400, "input must not be empty"),
    "input too long": ({"input": "a" * 41}, 400, "at most 40 (FLEET_MAX_SPEECH_CHARS)"),
    "instructions too long": ({"instructions": "b" * 41}, 400, "instructions is 41"),
    "input a number": ({"input": 7}, 400, "input"),
    "no voice": ({"voice": None}, 400, "voice"),
    "unknown model": ({"model": "tts-9"}, 404, "tts-9"),
    "llm asked to speak": ({"model": "tiny:1b"}, 400, "does not support text-to-speech"),
}


@pytest.mark.parametrize("case", BAD.values(), ids=BAD.keys())
async def test_bad_input_gets_openai_errors(
    engines: MediaEngines, case: tuple[dict[str, Any], int, str]
) -> None:
    over, status, message = case
    body = {"model": "espeak-ng", "input": "hello", "voice": "alloy", **over}
    body = {k: v for k, v in body.items() if v is not None}
    async with herd(engines, max_speech_chars=40) as h:
        with pytest.raises(openai.APIStatusError) as caught:
            await h.openai.post("/audio/speech", body=body, cast_to=httpx2.Response)
        error = caught.value
        assert error.status_code == status
        assert isinstance(error.body, dict) and message in error.body["message"]
        assert error.body["type"] in ("invalid_request_error", "not_found_error")


async def test_malformed_bodies_are_400s(engines: MediaEngines) -> None:
    async with herd(engines) as h:
        for content in (b"{not json", b"", b"[]", b'{"model": "espeak-ng"}'):
            r = await h.http.post(
                "/v1/audio/speech", content=content, headers={"content-type": "application/json"}
            )
            assert r.status_code == 400, content
            assert r.json()["error"]["type"] == "invalid_request_error"
