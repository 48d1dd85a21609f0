"""The guard on the real fleet (Serve + HAProxy + Ray): every mutation needs the admin
token, browsers from foreign origins and rebinding hosts are refused, and the clients we
did not write keep working unchanged."""

from __future__ import annotations

import subprocess
from typing import Any

import httpx
import ollama
import openai
import pytest
from fleet_auth import ADMIN_TOKEN

TINY = "tiny:1b"
CHAT = {"model": TINY, "messages": [{"role": "user", "content": "hi"}], "stream": False}

MUTATIONS = [
    ("POST", "/api/pull", {"model": "nothing-here:1b"}),
    ("DELETE", "/api/delete", {"model": "nothing-here:1b"}),
    ("POST", "/api/create", {"model": "x"}),
    ("POST", "/api/copy", {"source": TINY, "destination": "x"}),
    ("POST", "/api/chat", {**CHAT, "keep_alive": 0}),
    ("POST", "/api/generate", {"model": TINY, "keep_alive": 0}),
    ("POST", "/dashboard/api/settings", {"auto_pull": True}),
    ("POST", "/dashboard/api/pull", {"model": "nothing-here:1b"}),
    ("POST", "/dashboard/api/delete", {"model": "nothing-here:1b"}),
    ("POST", "/dashboard/api/benchmarks", {"name": "x"}),
]


@pytest.mark.parametrize(("method", "path", "body"), MUTATIONS)
def test_every_mutation_needs_the_admin_token(
    endpoint: str, method: str, path: str, body: dict[str, Any]
) -> None:
    r = httpx.request(method, f"{endpoint}{path}", json=body, timeout=15)
    assert r.status_code == 401, r.text
    assert "admin token" in r.json()["error"]
    wrong = httpx.request(
        method, f"{endpoint}{path}", json=body, timeout=15, headers={"x-api-key": "guess"}
    )
    assert wrong.status_code == 401


def test_mutations_work_with_the_admin_token(endpoint: str, admin: dict[str, str]) -> None:
    settings = httpx.get(f"{endpoint}/dashboard/api/settings", timeout=15).json()
    was = settings["toggles"]["auto_pull"]
    r = httpx.post(
        f"{endpoint}/dashboard/api/settings", json={"auto_pull": was}, headers=admin, timeout=15
    )
    assert r.status_code == 200, r.text
    r = httpx.post(f"{endpoint}/api/chat", json={**CHAT, "keep_alive": "10m"}, timeout=30)
    assert r.status_code == 200
    r = httpx.post(
        f"{endpoint}/api/generate", json={"model": TINY, "keep_alive": 0}, headers=admin, timeout=30
    )
    assert r.status_code == 200, r.text  # the admin may unload
    r = httpx.request(
        "DELETE", f"{endpoint}/api/delete", json={"model": "nothing-here:1b"}, headers=admin
    )
    assert r.status_code == 404  # past the guard: nobody has that model


def test_a_foreign_origin_and_a_rebinding_host_are_refused(endpoint: str) -> None:
    evil = {"Origin": "http://evil.example.com"}
    r = httpx.post(f"{endpoint}/api/chat", json=CHAT, headers=evil, timeout=15)
    assert r.status_code == 403
    r = httpx.post(
        f"{endpoint}/v1/chat/completions",
        content=b'{"model": "tiny:1b", "messages": [{"role": "user", "content": "hi"}]}',
        headers={**evil, "Content-Type": "text/plain"},
        timeout=15,
    )
    assert r.status_code == 403 and r.json()["error"]["type"] == "invalid_request_error"
    port = endpoint.rsplit(":", 1)[1]
    r = httpx.post(f"{endpoint}/api/chat", json=CHAT, headers={"Host": f"evil.example.com:{port}"})
    assert r.status_code == 403
    r = httpx.post(
        f"{endpoint}/api/chat", json=CHAT, headers={"Origin": "http://localhost:5173"}, timeout=30
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "http://localhost:5173"


def test_curl_and_the_official_clients_keep_working(endpoint: str) -> None:
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "-d",
            '{"model": "tiny:1b", "prompt": "hi", "stream": false}',
            f"{endpoint}/api/generate",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert '"done":true' in out.stdout.replace(" ", ""), out.stdout
    oai = openai.OpenAI(base_url=f"{endpoint}/v1", api_key="anything", max_retries=0)
    reply = oai.chat.completions.create(model=TINY, messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content
    client = ollama.Client(host=endpoint)
    assert client.chat(model=TINY, messages=[{"role": "user", "content": "hi"}]).message.content
    with pytest.raises(ollama.ResponseError) as info:
        client.pull("nothing-here:1b")
    assert info.value.status_code == 401
    admin_client = ollama.Client(host=endpoint, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    with pytest.raises(ollama.ResponseError) as info:
        admin_client.delete("nothing-here:1b")
    assert info.value.status_code == 404
