"""Synthesised speech (16-bit mono PCM) -> the file OpenAI's ``/v1/audio/speech`` returns.

:func:`encode_speech` resamples to 24 kHz mono (what OpenAI's speech models put out, and
what its ``pcm`` format promises: "24kHz, 16-bit signed, little-endian, mono, no header"),
optionally stretches time first (``tempo``: an engine that cannot reach a speed itself),
and encodes with PyAV (FFmpeg; ``av`` comes with the ``[media]`` extra):

=========  ==================  ====================  ==============
format     container           codec                 Content-Type
=========  ==================  ====================  ==============
``mp3``    MP3                 libmp3lame, 64 kb/s   ``audio/mpeg``
``opus``   Ogg                 libopus, 32 kb/s      ``audio/opus``
``aac``    ADTS                FFmpeg's aac, 64 kb/s ``audio/aac``
``flac``   FLAC                flac                  ``audio/flac``
``wav``    RIFF WAVE           pcm_s16le             ``audio/wav``
``pcm``    none (raw samples)  s16le                 ``audio/pcm``
=========  ==================  ====================  ==============

CPU work: the node runs it in its engine thread, next to the synthesis.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise
from typing import Any, Literal, get_args

from herd.errors import BackendError, BadRequest

SpeechFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]
SPEECH_FORMATS: tuple[SpeechFormat, ...] = get_args(SpeechFormat)
OUTPUT_RATE = 24_000

MEDIA_TYPES: dict[str, str] = {
    "mp3": "audio/mpeg",
    "opus": "audio/opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}

# format -> (muxer, codec, sample format the codec takes, bit rate or 0)
_CODECS: dict[str, tuple[str, str, str, int]] = {
    "mp3": ("mp3", "libmp3lame", "s16p", 64_000),
    "opus": ("ogg", "libopus", "s16", 32_000),
    "aac": ("adts", "aac", "fltp", 64_000),
    "flac": ("flac", "flac", "s16", 0),
    "wav": ("wav", "pcm_s16le", "s16", 0),
}
_ATEMPO_MIN, _ATEMPO_MAX = 0.5, 2.0  # one atempo filter's range; chained beyond it


@dataclass(frozen=True, slots=True)
class EncodedSpeech:
    data: bytes
    format: SpeechFormat
    media_type: str
    sample_rate: int
    seconds: float  # length of the audio


def media_type(fmt: str) -> str:
    return MEDIA_TYPES.get(fmt, "application/octet-stream")


def read_wav(data: bytes) -> tuple[bytes, int]:
    """(16-bit mono PCM, sample rate) of a RIFF WAVE file such as ``espeak-ng --stdout``
    writes (whose sizes say "unknown": the data runs to the end of the file)."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise BackendError("the engine's output is not a WAV file", retryable=False)
    pos, rate = 12, 0
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if chunk == b"fmt ":
            tag, channels, rate = struct.unpack_from("<HHI", data, body)
            bits = struct.unpack_from("<H", data, body + 14)[0]
            if (tag, channels, bits) != (1, 1, 16):
                raise BackendError(
                    f"the engine's WAV is not 16-bit mono PCM ({tag}, {channels}, {bits})",
                    retryable=False,
                )
        elif chunk == b"data":
            if not rate:
                raise BackendError("the engine's WAV has no format chunk", retryable=False)
            end = min(len(data), body + size)
            return data[body : end - (end - body) % 2], rate
        pos = body + size + (size & 1)
    raise BackendError("the engine's WAV has no data chunk", retryable=False)


def _tempo_chain(tempo: float) -> list[float]:
    """atempo factors whose product is ``tempo``, each within one filter's range."""
    factors: list[float] = []
    while tempo < _ATEMPO_MIN or tempo > _ATEMPO_MAX:
        step = _ATEMPO_MIN if tempo < _ATEMPO_MIN else _ATEMPO_MAX
        factors.append(step)
        tempo /= step
    if abs(tempo - 1.0) > 1e-6:
        factors.append(tempo)
    return factors


def _frames(pcm: bytes, rate: int, tempo: float) -> list[Any]:
    """The PCM as PyAV frames, time-stretched by ``tempo`` (pitch kept) when it is not 1."""
    import av
    import numpy as np

    samples = np.frombuffer(pcm, dtype="<i2").reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
    frame.sample_rate = rate
    frame.pts = 0
    frame.time_base = Fraction(1, rate)
    chain = _tempo_chain(tempo)
    if not chain:
        return [frame]
    graph = av.filter.Graph()
    nodes = [
        graph.add_abuffer(format="s16", sample_rate=rate, layout="mono", time_base=frame.time_base)
    ]
    nodes += [graph.add("atempo", f"{factor:.6f}") for factor in chain]
    nodes.append(graph.add("abuffersink"))
    for here, there in pairwise(nodes):
        here.link_to(there)
    graph.configure()
    graph.push(frame)
    graph.push(None)
    out: list[Any] = []
    while True:
        try:
            out.append(graph.pull())
        except (av.BlockingIOError, av.EOFError):
            return out


def _resampled(frames: list[Any], fmt: str) -> list[Any]:
    import av

    resampler = av.AudioResampler(format=fmt, layout="mono", rate=OUTPUT_RATE)
    out = [r for frame in frames for r in resampler.resample(frame)]
    out.extend(resampler.resample(None))
    return out


def encode_speech(pcm: bytes, rate: int, fmt: str, *, tempo: float = 1.0) -> EncodedSpeech:
    """16-bit mono PCM at ``rate`` -> a ``fmt`` file at 24 kHz (see the module's table)."""
    if fmt not in SPEECH_FORMATS:
        raise BadRequest(f"response_format must be one of {', '.join(SPEECH_FORMATS)}")
    if not pcm:
        raise BackendError("the engine made no audio", retryable=False)
    import av

    try:
        frames = _frames(pcm, rate, tempo)
        if fmt == "pcm":
            out = _resampled(frames, "s16")
            data = b"".join(bytes(f.planes[0])[: f.samples * 2] for f in out)
            return EncodedSpeech(
                data, "pcm", media_type(fmt), OUTPUT_RATE, len(data) / 2 / OUTPUT_RATE
            )
        muxer, codec, sample_fmt, bit_rate = _CODECS[fmt]
        buffer = io.BytesIO()
        total = 0
        with av.open(buffer, mode="w", format=muxer) as box:
            stream: Any = box.add_stream(codec, rate=OUTPUT_RATE)
            stream.layout = "mono"
            stream.format = sample_fmt
            if bit_rate:
                stream.bit_rate = bit_rate
            for frame in _resampled(frames, sample_fmt):
                total += frame.samples
                frame.pts = None
                box.mux(stream.encode(frame))
            box.mux(stream.encode(None))
    except av.FFmpegError as exc:
        raise BackendError(f"encoding speech as {fmt} failed: {exc}", retryable=False) from None
    return EncodedSpeech(buffer.getvalue(), fmt, media_type(fmt), OUTPUT_RATE, total / OUTPUT_RATE)
