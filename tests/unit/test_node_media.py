"""Media engines and model management on a node (herd/node/media.py, herd/node/model_store.py,
the NodeAgent hooks and OllamaBackend's show/pull/delete/generate_image), without Ray:
fake engines, the in-process Ollama emulator, and a tiny fake Ollama for images."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from herd.backends.media import EmbedResult, ImageResult, MediaEngines, TranscriptResult
from herd.backends.ollama import OllamaBackend
from herd.domain import InferenceRequest, LoadedModel, ModelOnDisk, RequestKind
from herd.errors import BackendError, BadRequest, ModelNotFound
from herd.node.agent import NodeAgent
from herd.node.media import NodeMedia
from herd.settings import load_settings
from herd.sim import RunningEmulator, start_emulator
from herd.sim.testing import fast_profile
from herd.taxonomy import model_category

PNG = b"\x89PNG\r\n\x1a\n-fake-"


class FakeEmbedder:
    kind = "sentence-transformers"

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str], bool, int | None]] = []

    def models(self) -> tuple[ModelOnDisk, ...]:
        return (ModelOnDisk(name="mini:l6", size=90, family="bert"),)

    def loaded(self) -> tuple[LoadedModel, ...]:
        return (LoadedModel(name="mini:l6", size=90),)

    async def embed(
        self, model: str, inputs: list[str], *, truncate: bool = True, dimensions: int | None = None
    ) -> EmbedResult:
        self.calls.append((model, inputs, truncate, dimensions))
        return EmbedResult(
            [[1.0, 0.0]] * len(inputs), prompt_tokens=len(inputs), load_s=0.5, total_s=1.0
        )

    async def close(self) -> None:
        return None


class FakePainter:
    kind = "diffusers"

    def models(self) -> tuple[ModelOnDisk, ...]:
        return (ModelOnDisk(name="paint:1"),)

    def loaded(self) -> tuple[LoadedModel, ...]:
        return ()

    async def generate(self, model: str, prompt: str, **kw: Any) -> ImageResult:
        if kw["width"] == 72:
            raise BadRequest("width must be a multiple of 16")
        seed = kw["seed"] if kw["seed"] is not None else 99
        return ImageResult(PNG, kw["width"], kw["height"], seed, kw["steps"] or 4, 2.0, 0.0)

    async def close(self) -> None:
        return None


class FakeListener:
    kind = "faster-whisper"

    def models(self) -> tuple[ModelOnDisk, ...]:
        return (ModelOnDisk(name="ears:tiny"),)

    def loaded(self) -> tuple[LoadedModel, ...]:
        return ()

    async def transcribe(self, model: str, audio: bytes, **kw: Any) -> TranscriptResult:
        segments: list[dict[str, object]] = [{"id": 0, "start": 0.0, "end": 1.0, "text": "hi"}]
        return TranscriptResult(
            f"heard {len(audio)} bytes", kw["language"] or "en", 1.0, segments, 0.3, 0.1
        )

    async def close(self) -> None:
        return None


def engines() -> MediaEngines:
    return MediaEngines(embedding=[FakeEmbedder()], image=[FakePainter()], asr=[FakeListener()])  # type: ignore[list-item]


# --- NodeMedia ---------------------------------------------------------------------------


def test_models_carry_their_category() -> None:
    media = NodeMedia(engines())
    assert {m.name: m.category for m in media.models()} == {
        "mini:l6": "embedding",
        "paint:1": "image",
        "ears:tiny": "asr",
    }
    assert media.kinds() == ("sentence-transformers", "diffusers", "faster-whisper")
    assert media.handles("embed", "MINI:l6") and not media.handles("embed", "embedder")
    assert media.handles("image", "anything") and media.handles("transcribe", "x")
    assert not media.handles("chat", "mini:l6")


@pytest.mark.parametrize(
    ("kind", "model", "message"),
    [
        ("chat", "paint:1", '"paint:1" does not support chat'),
        ("generate", "ears:tiny", '"ears:tiny" does not support generate'),
        ("embed", "paint:1", '"paint:1" does not support embeddings'),
        ("embeddings", "ears:tiny", '"ears:tiny" does not support embeddings'),
    ],
)
def test_requests_a_media_model_cannot_serve_are_refused(
    kind: RequestKind, model: str, message: str
) -> None:
    with pytest.raises(BadRequest) as err:
        NodeMedia(engines()).refuse_mismatch(kind, model)
    assert err.value.message == message
    NodeMedia(engines()).refuse_mismatch("chat", "tiny:1b")  # not a media model: no error
    NodeMedia(engines()).refuse_mismatch("embed", "mini:l6")  # an embedding model: fine


async def test_embed_results_are_ollama_shaped() -> None:
    media = NodeMedia(engines())
    result = await media.run(
        "embed", "mini:l6", {"input": ["a", "b"], "truncate": False, "dimensions": 2}, None
    )
    assert result["embeddings"] == [[1.0, 0.0], [1.0, 0.0]] and result["prompt_eval_count"] == 2
    assert result["load_duration"] == 500_000_000 and result["total_duration"] == 1_000_000_000
    assert media.engines.embedding[0].calls[-1] == ("mini:l6", ["a", "b"], False, 2)  # type: ignore[attr-defined]
    assert (await media.run("embed", "mini:l6", {"input": "one"}, None))["embeddings"] == [
        [1.0, 0.0]
    ]
    assert (await media.run("embed", "mini:l6", {}, None))["embeddings"] == []
    assert await media.run("embeddings", "mini:l6", {"prompt": "x"}, None) == {
        "embedding": [1.0, 0.0]
    }
    assert await media.run("embeddings", "mini:l6", {"prompt": ""}, None) == {"embedding": []}


async def test_image_and_transcribe_results() -> None:
    media = NodeMedia(engines())
    image = await media.run("image", "paint:1", {"prompt": "p", "width": 64, "height": 32}, None)
    assert image["image"] == PNG and (image["width"], image["height"], image["seed"]) == (
        64,
        32,
        99,
    )
    assert image["total_duration"] == 2_000_000_000 and image["steps"] == 4
    heard = await media.run(
        "transcribe", "ears:tiny", {"audio": b"abcd", "filename": "a.wav", "language": "de"}, None
    )
    assert heard["text"] == "heard 4 bytes" and heard["language"] == "de"
    assert heard["duration"] == 1.0 and heard["segments"][0]["text"] == "hi"


@pytest.mark.parametrize(
    ("kind", "model", "body", "message"),
    [
        ("image", "ears:tiny", {"prompt": "p", "width": 64, "height": 64}, "image generation"),
        ("transcribe", "paint:1", {"audio": b"x"}, "speech-to-text"),
        ("image", "paint:1", {"prompt": "p", "width": 72, "height": 64}, "multiple of 16"),
    ],
)
async def test_media_requests_a_model_cannot_serve(
    kind: RequestKind, model: str, body: dict[str, Any], message: str
) -> None:
    with pytest.raises(BadRequest) as err:
        await NodeMedia(engines()).run(kind, model, body, None)
    assert message in err.value.message


def test_show_body_for_an_engine_model() -> None:
    media = NodeMedia(engines())
    body = media.show("ears:tiny")
    assert body is not None and body["capabilities"] == ["transcription"]
    assert body["details"]["format"] == "faster-whisper"
    assert media.show("tiny:1b") is None


def test_ollama_categories_from_capabilities_then_names() -> None:
    assert model_category("nomic-embed-text", "nomic-bert", ["embedding"]) == "embedding"
    assert model_category("x/z-image-turbo", "", ["image"]) == "image"
    assert model_category("whisper-ish", "", ["completion"]) == "llm"
    assert model_category("x/flux2-klein", "", None) == "image"
    assert model_category("llama3.2", "llama", None) == "llm"


# --- NodeAgent with the emulator and fake engines ----------------------------------------


@pytest.fixture
async def emu() -> AsyncIterator[RunningEmulator]:
    emulator = await start_emulator(fast_profile(name="emu", preload=["tiny:1b"]))
    yield emulator
    await emulator.stop()


@pytest.fixture
async def agent(emu: RunningEmulator, tmp_path: Path) -> AsyncIterator[NodeAgent]:
    settings = load_settings(
        data_dir=tmp_path, node={"ollama_host": emu.url, "llamacpp": "off", "engines": "off"}
    )
    node = NodeAgent(settings, node_id="n1", backend=OllamaBackend(emu.url), media=engines())
    await node.start()
    yield node
    await node.stop()


def req(kind: RequestKind, model: str, **body: Any) -> InferenceRequest:
    return InferenceRequest(f"r-{kind}", kind, model, body, stream=False)


async def test_heartbeat_lists_media_models_next_to_ollamas(agent: NodeAgent) -> None:
    hb = await agent.heartbeat()
    names = {m.name: m.category for m in hb.models}
    assert names["mini:l6"] == "embedding" and names["paint:1"] == "image"
    assert names["ears:tiny"] == "asr" and names["embedder:latest"] == "embedding"
    assert names["tiny:1b"] == "llm"
    assert {m.name for m in hb.loaded} >= {"tiny:1b", "mini:l6"}


async def test_embed_goes_to_the_engine_or_to_ollama(agent: NodeAgent) -> None:
    engine = await agent.complete(req("embed", "mini:l6", input=["x"]), "mini:l6")
    assert engine["embeddings"] == [[1.0, 0.0]]
    ollama = await agent.complete(req("embed", "embedder", input=["x"]), "embedder")
    assert len(ollama["embeddings"][0]) == 32


async def test_wrong_kind_of_model_is_a_bad_request(agent: NodeAgent) -> None:
    with pytest.raises(BadRequest, match="does not support chat"):
        await agent.complete(req("chat", "paint:1", messages=[]), "paint:1")
    with pytest.raises(BadRequest, match="does not support image generation"):
        await agent.complete(req("image", "tiny:1b", prompt="p", width=64, height=64), "tiny:1b")
    with pytest.raises(BadRequest, match="does not support embeddings"):
        await agent.complete(req("embed", "paint:1", input="x"), "paint:1")
    assert agent.in_flight == 0


async def test_show_on_each_kind_of_model(agent: NodeAgent) -> None:
    sim = await agent.show("tiny:1b")
    assert "completion" in sim["capabilities"] and sim["model_info"]
    assert (await agent.show("mini:l6"))["capabilities"] == ["embedding"]
    with pytest.raises(ModelNotFound):
        await agent.show("nope:1b")


async def test_pull_then_delete_on_ollama(agent: NodeAgent) -> None:
    lines = [line async for line in agent.pull("fresh:1b")]
    assert lines[0] == {"status": "pulling manifest"} and lines[-1] == {"status": "success"}
    assert any(line.get("digest") for line in lines)
    assert "fresh:1b" in {m.name for m in (await agent.heartbeat()).models}
    await agent.delete("fresh:1b")
    assert "fresh:1b" not in {m.name for m in (await agent.heartbeat()).models}
    with pytest.raises(ModelNotFound):
        await agent.delete("fresh:1b")


async def test_pull_failures_and_engine_models(agent: NodeAgent) -> None:
    seen: list[dict[str, Any]] = []
    with pytest.raises(BackendError, match="file does not exist"):
        async for line in agent.pull("not-anywhere:1b"):
            seen.append(line)
    assert seen == [{"status": "pulling manifest"}]
    with pytest.raises(BadRequest, match="cannot pull"):
        async for _ in agent.pull("mini:l6"):
            pass
    with pytest.raises(BadRequest, match="cannot delete"):
        await agent.delete("paint:1")


async def test_show_pull_delete_without_ollama(tmp_path: Path) -> None:
    """An OpenAI-compatible backend (llama.cpp) has no show/pull/delete of its own."""

    class LlamaCpp:
        kind = "llamacpp"
        url = "http://127.0.0.1:1"

        async def probe(self) -> Any:
            from herd.backends.base import BackendState

            model = ModelOnDisk(name="gemma3:270m", family="gemma3")
            loaded = LoadedModel(name="gemma3:270m", context_length=4096)
            return BackendState("llamacpp", self.url, True, models=(model,), loaded=(loaded,))

        async def close(self) -> None:
            return None

    settings = load_settings(data_dir=tmp_path, node={"llamacpp": "off", "engines": "off"})
    node = NodeAgent(settings, node_id="g", backend=LlamaCpp(), media=MediaEngines())  # type: ignore[arg-type]
    await node.start()
    body = await node.show("gemma3:270m")
    assert body["model_info"]["gemma3.context_length"] == 4096
    assert body["capabilities"] == ["completion"]
    with pytest.raises(BadRequest, match="llamacpp, which cannot pull"):
        async for _ in node.pull("x"):
            pass
    with pytest.raises(BadRequest, match="cannot delete"):
        await node.delete("gemma3:270m")


# --- Ollama native image models ----------------------------------------------------------


async def test_ollama_native_image_generation(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []

    async def images(request: web.Request) -> web.Response:
        seen.append(await request.json())
        return web.json_response(
            {"created": 1, "data": [{"b64_json": base64.b64encode(PNG).decode()}]}
        )

    async def tags(request: web.Request) -> web.Response:
        entry = {"model": "x/z-image-turbo:latest", "capabilities": ["image"], "details": {}}
        return web.json_response({"models": [entry]})

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"version": "0.14.0", "models": []})

    app = web.Application()
    app.router.add_post("/v1/images/generations", images)
    app.router.add_get("/api/tags", tags)
    app.router.add_get("/api/ps", ok)
    app.router.add_get("/api/version", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    backend = OllamaBackend(f"http://127.0.0.1:{port}")
    try:
        media = NodeMedia(MediaEngines())
        body = {"prompt": "p", "width": 512, "height": 256, "steps": 8, "seed": 3}
        result = await media.run("image", "x/z-image-turbo", body, backend)
        assert result["image"] == PNG and (result["width"], result["seed"]) == (512, 3)
        assert seen == [
            {
                "model": "x/z-image-turbo",
                "prompt": "p",
                "size": "512x256",
                "response_format": "b64_json",
                "steps": 8,
                "seed": 3,
            }
        ]
        with pytest.raises(BadRequest, match="does not support image generation"):
            await media.run("image", "llama3.2", body, backend)
    finally:
        await backend.close()
        await runner.cleanup()
