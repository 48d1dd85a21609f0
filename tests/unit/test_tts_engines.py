"""The text-to-speech engines for real: espeak-ng (the Debian package's binary) and Piper
with herd's packaged voice (en_US-joe-medium, put in place by ``make setup``), through
the interface the node uses; every output format decoded back with PyAV; voices, speeds
and the bad inputs the engines refuse."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest

from herd.backends.audio_encode import MEDIA_TYPES, OUTPUT_RATE, encode_speech, read_wav
from herd.backends.media import MediaEngines, TtsEngine
from herd.backends.media_detect import detect_media_engines
from herd.backends.tts_common import OPENAI_TTS_MODELS, OPENAI_VOICES
from herd.backends.tts_espeak import OPENAI_TO_ESPEAK
from herd.backends.tts_piper import find_piper_voices
from herd.backends.tts_voices import JOE, ensure_voice, shared_voices_dir
from herd.errors import BackendError, BadRequest, ModelNotFound
from herd.node.media import NodeMedia
from herd.settings import load_settings
from herd.taxonomy import model_category

PIPER = "piper:en_US-joe-medium"
SETUP = "run `make setup` (piper-tts from the media extra, the voice in <venv>/share/herd)"


@pytest.fixture(scope="module")
def engines() -> Iterator[MediaEngines]:
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed: `make system-deps` (apt-get install espeak-ng)")
    found = detect_media_engines(load_settings(node={"engines": "piper,espeak-ng"}))
    if [e.kind for e in found.tts] != ["piper", "espeak-ng"]:
        pytest.fail(f"tts engines found: {found.kinds()}; {SETUP}")
    yield found
    asyncio.run(found.close())


def engine(engines: MediaEngines, model: str) -> TtsEngine:
    found = engines.tts_for(model)
    assert found is not None, model
    return found


def decoded(data: bytes) -> tuple[str, int, float]:
    """(codec, sample rate, seconds) of an audio file, by decoding every frame."""
    with av.open(io.BytesIO(data), mode="r") as box:
        stream = box.streams.audio[0]
        samples = sum(int(f.samples) for packet in box.demux(stream) for f in packet.decode())
        return stream.codec_context.name, stream.rate, samples / stream.rate


def test_detected_models_and_categories(engines: MediaEngines) -> None:
    names = [m.name for m in engines.models()]
    assert names == [PIPER, *OPENAI_TTS_MODELS, "espeak-ng"]
    assert set(engines.categories().values()) == {"tts"}
    assert all(model_category(n) == "tts" for n in names)  # the name rules agree
    media = NodeMedia(engines)
    assert media.handles("speech", "tts-1") and media.engine_for("espeak-ng") is not None
    with pytest.raises(BadRequest, match="does not support chat"):
        media.refuse_mismatch("chat", "tts-1")


CODECS = {
    "mp3": ("mp3float", OUTPUT_RATE),  # FFmpeg's mp3 decoder
    "opus": ("opus", 48_000),  # Opus always decodes at 48 kHz (the file says 24 kHz input)
    "aac": ("aac", OUTPUT_RATE),
    "flac": ("flac", OUTPUT_RATE),
    "wav": ("pcm_s16le", OUTPUT_RATE),
}


@pytest.mark.parametrize("model", [PIPER, "espeak-ng"])
@pytest.mark.parametrize("fmt", [*CODECS, "pcm"])
async def test_every_format_decodes_to_speech(engines: MediaEngines, model: str, fmt: str) -> None:
    result = await engine(engines, model).synthesize(
        model, "Hello world.", voice="alloy", speed=1.0, response_format=fmt
    )
    assert result.format == fmt and result.media_type == MEDIA_TYPES[fmt]
    assert result.sample_rate == OUTPUT_RATE and result.model == model
    assert 0.3 < result.duration_s < 5.0
    if fmt == "pcm":  # raw 16-bit mono samples at 24 kHz, no header
        assert len(result.audio) % 2 == 0 and result.audio[:4] != b"RIFF"
        assert result.duration_s == pytest.approx(len(result.audio) / 2 / OUTPUT_RATE, abs=1e-3)
        return
    codec, rate, seconds = decoded(result.audio)
    assert (codec, rate) == CODECS[fmt]
    assert seconds == pytest.approx(result.duration_s, abs=0.1)  # aac/opus pad a frame


async def test_openai_model_names_speak_with_the_neural_voice(engines: MediaEngines) -> None:
    for model in OPENAI_TTS_MODELS:
        result = await engine(engines, model).synthesize(
            model, "Good morning.", voice="nova", speed=1.0, response_format="wav"
        )
        assert result.model == PIPER and result.voice == "joe"


async def test_espeak_voices_map_deterministically(engines: MediaEngines) -> None:
    espeak = engine(engines, "espeak-ng")
    assert tuple(OPENAI_TO_ESPEAK) == OPENAI_VOICES
    spoken = {}
    for voice in ("alloy", "onyx", "NOVA", "en-gb+f3", "de", "fr"):
        result = await espeak.synthesize(
            "espeak-ng", "one two three", voice=voice, speed=1.0, response_format="pcm"
        )
        spoken[voice] = result
    assert spoken["alloy"].voice == "en-us" and spoken["onyx"].voice == "en-us+m7"
    assert spoken["NOVA"].voice == "en-us+f3" and spoken["en-gb+f3"].voice == "en-gb+f3"
    assert spoken["alloy"].audio != spoken["onyx"].audio  # a different voice, other audio
    again = await espeak.synthesize(
        "espeak-ng", "one two three", voice="alloy", speed=1.0, response_format="pcm"
    )
    assert again.audio == spoken["alloy"].audio  # formant synthesis is deterministic


async def test_speed_changes_the_length(engines: MediaEngines) -> None:
    text = "The quick brown fox jumps over the lazy dog."
    for model in ("espeak-ng", PIPER):
        tts = engine(engines, model)
        lengths = {}
        for speed in (0.25, 1.0, 4.0):
            result = await tts.synthesize(
                model, text, voice="echo", speed=speed, response_format="wav"
            )
            lengths[speed] = decoded(result.audio)[2]
        # espeak-ng stops at 80 words a minute: 0.25 is reached by stretching the audio
        assert lengths[0.25] > 2.5 * lengths[1.0], (model, lengths)
        assert lengths[1.0] > 2.5 * lengths[4.0], (model, lengths)


BAD = {
    "unknown voice": ({"voice": "darth"}, "voice 'darth' is not available"),
    "unknown variant": ({"voice": "en-us+nobody"}, "not available"),  # not Piper's either
    "speed too low": ({"speed": 0.1}, "speed must be between 0.25 and 4.0"),
    "speed too high": ({"speed": 4.5}, "speed must be between"),
    "speed not a number": ({"speed": "fast"}, "speed must be a number"),
    "format": ({"response_format": "ogg"}, "response_format must be one of"),
    "empty text": ({"text": "   "}, "input must be a non-empty string"),
}


@pytest.mark.parametrize("model", [PIPER, "espeak-ng"])
@pytest.mark.parametrize("case", BAD.values(), ids=BAD.keys())
async def test_bad_requests(
    engines: MediaEngines, model: str, case: tuple[dict[str, object], str]
) -> None:
    over, message = case
    args: dict[str, Any] = {
        "text": "hello",
        "voice": "alloy",
        "speed": 1.0,
        "response_format": "mp3",
        **over,
    }
    text = args.pop("text")
    with pytest.raises(BadRequest, match=message):
        await engine(engines, model).synthesize(model, text, **args)


async def test_text_without_words_is_a_bad_request(engines: MediaEngines) -> None:
    with pytest.raises(BadRequest, match="nothing to speak"):
        await engine(engines, PIPER).synthesize(
            PIPER, "\u200b -", voice="alloy", speed=1.0, response_format="mp3"
        )


async def test_unknown_model(engines: MediaEngines) -> None:
    with pytest.raises(ModelNotFound, match="not found on this node's espeak-ng"):
        await engine(engines, "espeak-ng").synthesize(
            "espeak-ng:other", "hi", voice="alloy", speed=1.0, response_format="mp3"
        )


def test_voice_files_and_multi_speaker_configs(tmp_path: Path) -> None:
    """A voice directory: a multi-speaker voice maps OpenAI's voices onto its speakers in
    order; a model without a (valid) config is not listed."""
    config = {
        "audio": {"sample_rate": 16000},
        "num_speakers": 3,
        "speaker_id_map": {"p3": 7, "p1": 2, "p2": 5},
        "language": {"code": "en_GB"},
    }
    (tmp_path / "en_GB-trio-low.onnx").write_bytes(b"onnx")
    (tmp_path / "en_GB-trio-low.onnx.json").write_text(json.dumps(config))
    (tmp_path / "lonely.onnx").write_bytes(b"onnx")  # no config
    (tmp_path / "broken.onnx").write_bytes(b"onnx")
    (tmp_path / "broken.onnx.json").write_text("{not json")
    [voice] = find_piper_voices([tmp_path, None, tmp_path / "missing"])
    assert voice.names == ("piper:en_GB-trio-low",) and voice.sample_rate == 16000
    assert voice.speakers == ("p1", "p2", "p3") and voice.speaker_ids == (2, 5, 7)
    from herd.backends.tts_piper import PiperEngine

    piper = PiperEngine([voice])
    picks = [piper.voice_for(voice, v) for v in OPENAI_VOICES[:4]]
    assert picks == ["p1", "p2", "p3", "p1"]
    assert piper.voice_for(voice, "P2") == "p2"
    with pytest.raises(BadRequest, match="p1, p2, p3"):
        piper.voice_for(voice, "joe")
    [model] = piper.models()
    assert (model.category, model.family, model.size) == ("tts", "piper", 4)


def test_packaged_voice_is_in_place_and_kept() -> None:
    """``make setup`` fetched it (sha256-checked); asking again fetches nothing."""
    directory = shared_voices_dir()
    onnx = directory / f"{JOE.name}.onnx"
    if not onnx.is_file():
        pytest.fail(f"{onnx} missing; {SETUP}")
    before = onnx.stat().st_mtime_ns
    assert ensure_voice(JOE.name, directory) == onnx
    assert onnx.stat().st_mtime_ns == before and onnx.stat().st_size == JOE.onnx_size
    [found] = find_piper_voices([directory])
    assert found.names == (PIPER, *OPENAI_TTS_MODELS) and found.speakers == ("joe",)


def test_wav_reader_and_encoder_refuse_what_they_cannot_use() -> None:
    with pytest.raises(BackendError, match="not a WAV"):
        read_wav(b"OggS" + bytes(40))
    stereo = b"RIFF\xff\xff\xff\xffWAVEfmt \x10\x00\x00\x00\x01\x00\x02\x00" + bytes(20)
    with pytest.raises(BackendError, match="16-bit mono"):
        read_wav(stereo)
    with pytest.raises(BackendError, match="no audio"):
        encode_speech(b"", 22050, "mp3")
    with pytest.raises(BadRequest, match="response_format"):
        encode_speech(b"\x00\x00", 22050, "webm")
