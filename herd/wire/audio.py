"""How long an uploaded audio file is, measured by decoding it (not from its size or its
header: an 8 KB FLAC of silence decodes to ten minutes).

:func:`audio_seconds` picks the demuxer from the file's first bytes (only the containers
OpenAI's transcription API takes: WAV, FLAC, MP3, Ogg, MP4/M4A, WebM/Matroska, plus ADTS
AAC, AIFF and CAF), so no playlist or concat demuxer ever opens another file or URL. It
decodes the first audio stream, counting samples, and stops as soon as the total passes
the cap: CPU is bounded by the cap and by the body's size. PyAV (``av``, FFmpeg) is a
core dependency; the decode is CPU work, so the ingress runs it in a thread.
"""

from __future__ import annotations

import io

from herd.errors import BadRequest, PayloadTooLarge


def sniff_format(data: bytes) -> str | None:
    """The FFmpeg demuxer for ``data``'s magic bytes, or None when it is no audio
    container herd accepts."""
    head = data[:16]
    if head[:4] == b"RIFF" and head[8:12] in (b"WAVE", b"RF64"):
        return "wav"
    if head[:4] in (b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[4:8] == b"ftyp":
        return "mov"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head[:4] == b"caff":
        return "caf"
    if head[:3] == b"ID3":
        return "mp3"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "aac" if head[1] & 0x06 == 0 else "mp3"  # ADTS has layer bits 00
    return None


def audio_seconds(data: bytes, cap: float, filename: str = "audio") -> float:
    """Seconds of audio in ``data``, counted from the decoded samples of its first audio
    stream. :class:`PayloadTooLarge` as soon as they pass ``cap`` (decoding stops there);
    :class:`BadRequest` when it is not an accepted container or does not decode."""
    fmt = sniff_format(data)
    if fmt is None:
        raise BadRequest(
            f"could not decode audio file {filename!r}: send WAV, FLAC, MP3, Ogg, M4A/MP4 "
            "or WebM audio"
        )
    import av  # FFmpeg's libraries load on first use, not on every import of herd.wire

    total = 0.0
    try:
        with av.open(io.BytesIO(data), mode="r", format=fmt, metadata_errors="ignore") as box:
            stream = box.streams.audio[0] if box.streams.audio else None
            if stream is None:
                raise BadRequest(f"audio file {filename!r} has no audio stream")
            for packet in box.demux(stream):
                for frame in packet.decode():
                    if not isinstance(frame, av.AudioFrame):
                        continue
                    rate = frame.sample_rate or stream.rate
                    if not rate:
                        raise BadRequest(f"audio file {filename!r} has no sample rate")
                    total += frame.samples / rate
                    if total > cap:
                        raise PayloadTooLarge(
                            f"audio is longer than {cap:g} seconds (FLEET_MAX_AUDIO_SECONDS)"
                        )
    except (av.FFmpegError, ValueError, EOFError, OSError) as exc:
        raise BadRequest(f"could not decode audio file {filename!r}: {exc}") from None
    if total <= 0:
        raise BadRequest(f"audio file {filename!r} holds no audio")
    return total
