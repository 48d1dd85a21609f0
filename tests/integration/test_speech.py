"""Text to speech on the shared fleet (the ``gemma`` node runs Piper with the packaged
voice and espeak-ng), judged by the official openai client: create and the streaming
response, each format decoded, errors in OpenAI's shape, and round trips: speech made by
each engine, transcribed by the same fleet's faster-whisper, says what was asked."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import av
import openai
import pytest

pytestmark = pytest.mark.integration

ASR_MODEL = "whisper:tiny.en"


@pytest.fixture
def oai(endpoint: str) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=f"{endpoint}/v1", api_key="not-needed", max_retries=0)
    yield client
    client.close()


def seconds(data: bytes) -> float:
    with av.open(io.BytesIO(data), mode="r") as box:
        stream = box.streams.audio[0]
        samples = sum(int(f.samples) for packet in box.demux(stream) for f in packet.decode())
        return samples / stream.rate


def words(text: str) -> set[str]:
    return {w.strip(".,!?").lower() for w in text.split()}


@pytest.mark.parametrize("model", ["tts-1", "espeak-ng"])
def test_round_trip_through_whisper(oai: openai.OpenAI, model: str) -> None:
    raw = oai.audio.speech.with_raw_response.create(
        model=model, input="Hello world.", voice="alloy", response_format="wav"
    )
    assert raw.headers["x-herd-node"] == "gemma"
    assert raw.headers["content-type"] == "audio/wav"
    audio = raw.parse().content
    text = oai.audio.transcriptions.create(
        model=ASR_MODEL, file=("hello.wav", audio), language="en"
    ).text
    assert {"hello", "world"} <= words(text), (model, text)


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "pcm"])
def test_formats_on_the_fleet(oai: openai.OpenAI, fmt: Any) -> None:
    speech = oai.audio.speech.create(
        model="piper:en_US-joe-medium", input="One two three.", voice="echo", response_format=fmt
    )
    data = speech.content
    length = len(data) / 2 / 24000 if fmt == "pcm" else seconds(data)
    assert 0.5 < length < 5, fmt
    assert speech.response.headers["x-herd-voice"] == "joe"


def test_streaming_response_on_the_fleet(oai: openai.OpenAI) -> None:
    with oai.audio.speech.with_streaming_response.create(
        model="espeak-ng", input="The fleet speaks.", voice="fable", speed=1.5
    ) as response:
        assert response.headers["content-type"] == "audio/mpeg"
        assert response.headers["x-herd-voice"] == "en-gb+m1"
        data = b"".join(response.iter_bytes(1024))
    assert seconds(data) > 0.3


def test_python_client_speaks(fleet: Any) -> None:
    from actors.client import connect_client

    client = connect_client(fleet.cluster.address, settings=fleet.settings)
    try:
        result = client.speech(
            "espeak-ng", "Hello from Python.", voice="cedar", response_format="flac"
        )
        assert result["herd"]["node"] == "gemma" and result["voice"] == "en-us+m5"
        assert result["media_type"] == "audio/flac" and seconds(result["audio"]) > 0.5
    finally:
        client.close()


def test_errors_on_the_fleet(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as bad_voice:
        oai.audio.speech.create(model="tts-1", input="hi", voice="darth")
    assert "voice 'darth' is not available" in bad_voice.value.message
    with pytest.raises(openai.BadRequestError) as too_long:
        oai.audio.speech.create(model="espeak-ng", input="a" * 4097, voice="alloy")
    assert "FLEET_MAX_SPEECH_CHARS" in too_long.value.message
    with pytest.raises(openai.BadRequestError) as llm:
        oai.audio.speech.create(model="smollm2:135m", input="hi", voice="alloy")
    assert "does not support text-to-speech" in llm.value.message
    with pytest.raises(openai.NotFoundError):
        oai.audio.speech.create(model="tts-7", input="hi", voice="alloy")
