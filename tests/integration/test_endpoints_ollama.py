"""The Ollama dialect through the fleet, judged by the official ollama client: chat,
generate, embed, embeddings, list, ps, show, pull, delete, the liveness routes,
fallbacks, and bad input on every endpoint."""

from __future__ import annotations

from typing import Any

import httpx
import ollama
import pytest

from launch.localray import wait_until

pytestmark = pytest.mark.integration

MESSAGES = [{"role": "user", "content": "Name one colour."}]
MINILM = "all-minilm:l6-v2"
GEMMA = "gemma3:270m"


@pytest.fixture
def oll(endpoint: str) -> Any:
    client = ollama.Client(host=endpoint)
    yield client
    client._client.close()


def client_for(endpoint: str, node: str, admin: dict[str, str]) -> Any:
    """An ollama client whose requests name a node (``X-Herd-Node``) and carry the admin
    token (pull and delete are admin actions)."""
    return ollama.Client(host=endpoint, headers={"X-Herd-Node": node, **admin})


def herd_tags(endpoint: str) -> dict[str, dict[str, Any]]:
    """``/api/tags`` with herd's extra fields (the ollama client drops them)."""
    return {m["model"]: m for m in httpx.get(f"{endpoint}/api/tags").json()["models"]}


def holders(endpoint: str, model: str) -> set[str]:
    return set(herd_tags(endpoint).get(model, {}).get("nodes") or ())


# --- inference -----------------------------------------------------------------------


def test_chat_on_real_llamacpp_streaming_and_not(oll: Any) -> None:
    whole = oll.chat(model=GEMMA, messages=MESSAGES, stream=False, options={"num_predict": 8})
    assert whole.message.role == "assistant" and whole.message.content
    assert whole.done and whole.eval_count > 0 and whole.prompt_eval_count > 0
    parts = list(oll.chat(model=GEMMA, messages=MESSAGES, stream=True, options={"num_predict": 8}))
    assert parts[-1].done and all(p.message.role == "assistant" for p in parts)
    assert "".join(p.message.content or "" for p in parts).strip()


def test_generate_streaming_and_not(oll: Any) -> None:
    whole = oll.generate(model=GEMMA, prompt="The sky is", options={"num_predict": 6})
    assert whole.response and whole.done
    parts = list(oll.generate(model="tiny:1b", prompt="Hello", stream=True))
    assert parts[-1].done and "".join(p.response for p in parts)


def test_embed_and_legacy_embeddings_on_both_embedders(oll: Any) -> None:
    minilm = oll.embed(model=MINILM, input=["a llama", "an alpaca"])
    assert len(minilm.embeddings) == 2 and len(minilm.embeddings[0]) == 384
    assert minilm.prompt_eval_count and minilm.prompt_eval_count > 0
    assert len(oll.embeddings(model=MINILM, prompt="a llama").embedding) == 384
    sim = oll.embed(model="embedder", input="one")
    assert len(sim.embeddings) == 1 and len(sim.embeddings[0]) == 32
    assert len(oll.embeddings(model="embedder", prompt="one").embedding) == 32


def test_embed_minilm_is_served_by_the_engine_node(endpoint: str) -> None:
    r = httpx.post(f"{endpoint}/api/embed", json={"model": MINILM, "input": "x"}, timeout=120)
    assert r.status_code == 200 and r.headers["x-herd-node"] == "gemma"
    assert r.json()["model"] == MINILM


def test_fallback_models_in_the_ollama_dialect(endpoint: str) -> None:
    body = {"model": "nope:70b", "fallback_models": ["tiny:1b"], "prompt": "hi", "stream": False}
    r = httpx.post(f"{endpoint}/api/generate", json=body, timeout=60)
    assert r.status_code == 200, r.text
    assert r.headers["x-herd-fallback"] == "true" and r.headers["x-herd-model"] == "tiny:1b"
    assert r.json()["response"]


# --- models --------------------------------------------------------------------------


def test_list_and_ps_cover_every_model_type(oll: Any, endpoint: str) -> None:
    oll.embed(model=MINILM, input="warm it up")
    listed = {m.model for m in oll.list().models}
    assert {"tiny:1b", GEMMA, MINILM, "tiny-sd:random", "whisper:tiny.en"} <= listed
    categories = {name: m["category"] for name, m in herd_tags(endpoint).items()}
    assert categories[MINILM] == "embedding" and categories["embedder:latest"] == "embedding"
    assert categories["tiny-sd:random"] == "image" and categories["whisper:tiny.en"] == "asr"
    assert categories["tiny:1b"] == "llm" and categories[GEMMA] == "llm"
    # /api/ps comes from heartbeats: the MiniLM load shows up with gemma's next one.
    wait_until(
        lambda: {m.model for m in oll.ps().models} >= {"tiny:1b", MINILM},
        10,
        "MiniLM in /api/ps",
        step=0.1,
    )
    running = httpx.get(f"{endpoint}/api/ps").json()["models"]
    assert {(m["model"], m["node"]) for m in running} >= {("tiny:1b", "alpha"), (MINILM, "gemma")}


def test_show_for_each_kind_of_node(oll: Any) -> None:
    sim = oll.show("coder:1b")
    assert sim.modelinfo and sim.capabilities and "completion" in sim.capabilities
    assert sim.details.family
    minilm = oll.show(MINILM)
    assert minilm.capabilities == ["embedding"] and minilm.modelinfo is not None
    assert minilm.details.family == "bert"
    gemma = oll.show(GEMMA)  # llama.cpp: described from its model list
    assert gemma.modelinfo is not None and gemma.capabilities == ["completion"]
    with pytest.raises(ollama.ResponseError) as err:
        oll.show("nope:9b")
    assert err.value.status_code == 404


def test_pull_to_a_named_node_then_delete_it(endpoint: str, admin: dict[str, str]) -> None:
    beta = client_for(endpoint, "beta", admin)
    try:
        lines = list(beta.pull("fresh:1b", stream=True))
        statuses = [line.status for line in lines]
        assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
        assert any(
            s and s.startswith("pulling ") and line.digest
            for s, line in zip(statuses, lines, strict=True)
        )
        assert any(line.total and line.completed == line.total for line in lines)
        wait_until(lambda: "beta" in holders(endpoint, "fresh:1b"), 10, "fresh:1b on beta")
        reply = httpx.post(
            f"{endpoint}/api/generate",
            json={"model": "fresh:1b", "prompt": "hi", "stream": False},
            timeout=60,
        )
        assert reply.status_code == 200 and reply.headers["x-herd-node"] == "beta"
        beta.delete("fresh:1b")
        wait_until(lambda: "beta" not in holders(endpoint, "fresh:1b"), 10, "fresh:1b gone")
    finally:
        beta._client.close()


def test_pull_to_the_best_node_non_streaming_and_delete_everywhere(
    endpoint: str, admin: dict[str, str]
) -> None:
    body = {"model": "fresh:1b", "stream": False}
    r = httpx.post(f"{endpoint}/api/pull", json=body, headers=admin, timeout=60)
    assert r.status_code == 200 and r.json() == {"status": "success"}
    node = r.headers["x-herd-node"]
    assert node in ("alpha", "beta", "gamma")  # Ollama nodes only, never llama.cpp
    url = f"{endpoint}/api/delete"
    gone = httpx.request("DELETE", url, json={"model": "fresh:1b"}, headers=admin)
    assert gone.status_code == 200 and gone.content == b""
    assert node in gone.headers["x-herd-node"].split(",")
    again = httpx.request("DELETE", url, json={"model": "fresh:1b"}, headers=admin)
    assert again.status_code == 404 and "fresh:1b" in again.json()["error"]


def test_pull_failures_in_both_forms(endpoint: str, admin: dict[str, str]) -> None:
    client = ollama.Client(host=endpoint, headers=admin)
    try:
        with pytest.raises(ollama.ResponseError) as err:
            list(client.pull("not-in-any-registry:1b", stream=True))  # error line mid-stream
    finally:
        client._client.close()
    assert "does not exist" in err.value.error
    r = httpx.post(
        f"{endpoint}/api/pull",
        json={"model": "not-in-any-registry:1b", "stream": False},
        headers=admin,
    )
    assert r.status_code == 502 and "does not exist" in r.json()["error"]


@pytest.mark.parametrize(
    "body",
    [
        {"model": "10.0.0.5:8080/x/y", "insecure": True},
        {"model": "10.0.0.5:8080/x/y", "stream": False},
        {"model": "evil.example/x/y", "node": "alpha"},
        {"model": "http://10.0.0.5/x/y"},
    ],
)
def test_a_pull_from_a_registry_not_allowed_is_403_before_any_node(
    endpoint: str, admin: dict[str, str], sim: Any, body: dict[str, Any]
) -> None:
    """Only FLEET_PULL_REGISTRIES (default registry.ollama.ai) may be pulled from: the
    node never sees the request (its emulator's counters stay put)."""

    def pulls() -> dict[str, int]:
        nodes = ("alpha", "beta", "gamma")
        return {n: sim.state(n)["counters"]["by_endpoint"].get("pull", 0) for n in nodes}

    before = pulls()
    r = httpx.post(f"{endpoint}/api/pull", json=body, headers=admin, timeout=30)
    assert r.status_code == 403, r.text
    assert "not allowed" in r.json()["error"] or "cannot pull" in r.json()["error"]
    client = ollama.Client(host=endpoint, headers=admin)
    try:
        with pytest.raises(ollama.ResponseError) as err:
            client.pull(body["model"], insecure=True)
    finally:
        client._client.close()
    assert err.value.status_code == 403
    assert pulls() == before


def test_nodes_report_their_disk(endpoint: str) -> None:
    nodes = {n["node_id"]: n for n in httpx.get(f"{endpoint}/fleet/status").json()["nodes"]}
    for name in ("alpha", "beta", "gamma"):  # emulators: their profile's disk
        assert isinstance(nodes[name]["disk_free"], int) and nodes[name]["disk_free"] > 0


def test_liveness_and_version(endpoint: str) -> None:
    assert httpx.get(f"{endpoint}/").text == "Ollama is running"
    head = httpx.head(f"{endpoint}/")
    assert head.status_code == 200 and head.content == b""
    assert httpx.get(f"{endpoint}/api/version").json()["version"]
    assert httpx.head(f"{endpoint}/api/tags").status_code == 200


# --- bad input: Ollama's error body, the right status, never a 500 -------------------

MSG = [{"role": "user", "content": "hi"}]

BAD: list[tuple[str, str, Any, int]] = [
    ("POST", "/api/chat", b"{not json", 400),
    ("POST", "/api/chat", b"", 400),
    ("POST", "/api/chat", {"messages": MSG}, 400),  # no model
    ("POST", "/api/chat", {"model": "tiny:1b", "messages": "hi"}, 400),
    ("POST", "/api/chat", {"model": "tiny:1b", "messages": MSG, "options": {"num_ctx": "x"}}, 400),
    ("POST", "/api/chat", {"model": "tiny:1b", "messages": MSG, "format": "yaml"}, 400),
    ("POST", "/api/chat", {"model": "tiny-sd:random", "messages": MSG, "stream": False}, 400),
    ("POST", "/api/chat", {"model": "nope:9b", "messages": MSG}, 404),
    ("POST", "/api/generate", b"[", 400),
    ("POST", "/api/generate", {"model": 5, "prompt": "x"}, 400),
    ("POST", "/api/generate", {"model": "tiny:1b", "prompt": ["x"]}, 400),
    ("POST", "/api/generate", {"model": "tiny:1b", "think": "very"}, 400),
    ("POST", "/api/generate", {"model": "whisper:tiny.en", "prompt": "x"}, 400),
    ("POST", "/api/generate", {"model": "nope:9b", "prompt": "x"}, 404),
    ("POST", "/api/embed", b"{", 400),
    ("POST", "/api/embed", {"input": "x"}, 400),  # no model
    ("POST", "/api/embed", {"model": MINILM, "input": 5}, 400),
    ("POST", "/api/embed", {"model": MINILM, "input": "x", "dimensions": -1}, 400),
    ("POST", "/api/embed", {"model": "tiny-sd:random", "input": "x"}, 400),
    ("POST", "/api/embed", {"model": "nope:9b", "input": "x"}, 404),
    ("POST", "/api/embeddings", b"nope", 400),
    ("POST", "/api/embeddings", {"model": MINILM, "prompt": 5}, 400),
    ("POST", "/api/embeddings", {"model": "nope:9b", "prompt": "x"}, 404),
    ("POST", "/api/show", b"{", 400),
    ("POST", "/api/show", {}, 400),
    ("POST", "/api/show", {"model": 5}, 400),
    ("POST", "/api/show", {"model": "nope:9b"}, 404),
    ("POST", "/api/pull", b"{", 400),
    ("POST", "/api/pull", {"stream": False}, 400),
    ("POST", "/api/pull", {"model": "fresh:1b", "node": "nowhere"}, 400),
    ("POST", "/api/pull", {"model": "fresh:1b", "node": "gemma"}, 400),  # llama.cpp node
    ("POST", "/api/pull", {"model": MINILM, "node": "alpha", "insecure": "yes"}, 400),
    ("DELETE", "/api/delete", b"{", 400),
    ("DELETE", "/api/delete", {"model": ["x"]}, 400),
    ("DELETE", "/api/delete", {"model": MINILM}, 400),  # an engine's model
    ("DELETE", "/api/delete", {"model": "tiny:1b", "node": "nowhere"}, 400),
    ("DELETE", "/api/delete", {"model": "nope:9b"}, 404),
    ("DELETE", "/api/delete", {"model": "nope:9b", "node": "alpha"}, 404),
    ("POST", "/api/generate-image", b"{", 400),
    ("GET", "/api/chat", None, 405),
    ("POST", "/api/nothing", {}, 404),
]


@pytest.mark.parametrize(("method", "path", "body", "status"), BAD)
def test_bad_input(
    endpoint: str, admin: dict[str, str], method: str, path: str, body: Any, status: int
) -> None:
    headers = dict(admin)  # pull and delete are admin actions: bad input still gets its 400
    if isinstance(body, bytes):
        headers["content-type"] = "application/json"
        kw: dict[str, Any] = {"content": body}
    else:
        kw = {} if body is None else {"json": body}
    r = httpx.request(method, f"{endpoint}{path}", headers=headers, timeout=60, **kw)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert isinstance(error, str) and error


@pytest.fixture(scope="module")
def big_body() -> bytes:
    return b'{"model":"tiny:1b","prompt":"' + b"x" * (65 * 1024 * 1024) + b'"}'


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/chat"),
        ("POST", "/api/generate"),
        ("POST", "/api/embed"),
        ("POST", "/api/embeddings"),
        ("POST", "/api/show"),
        ("POST", "/api/pull"),
        ("DELETE", "/api/delete"),
    ],
)
def test_oversized_body_is_413(
    endpoint: str, admin: dict[str, str], big_body: bytes, method: str, path: str
) -> None:
    r = httpx.request(method, f"{endpoint}{path}", content=big_body, headers=admin, timeout=120)
    assert r.status_code == 413 and "larger than" in r.json()["error"]
