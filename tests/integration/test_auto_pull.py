"""Auto-pull (runtime toggle): a model no node has is pulled onto the best node, then served."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from launch.localray import wait_until

pytestmark = pytest.mark.integration

MODEL = "spare:1b"  # in every emulator's pull registry, on no node's disk


def _chat(endpoint: str, model: str = MODEL) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": False}
    return httpx.post(f"{endpoint}/api/chat", json=body, timeout=60)


def _set(endpoint: str, on: bool, admin: dict[str, str]) -> dict[str, Any]:
    url = f"{endpoint}/dashboard/api/settings"
    r = httpx.post(url, json={"auto_pull": on}, headers=admin, timeout=10)
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


def test_auto_pull_serves_a_model_nobody_had(endpoint: str, admin: dict[str, str]) -> None:
    assert _chat(endpoint).status_code == 404  # toggle off: the usual 404
    assert _set(endpoint, True, admin)["toggles"]["auto_pull"] is True
    try:
        # The ingress learns the toggle with its next routing view (well under a second).
        replies: list[httpx.Response] = []

        def served() -> bool:
            replies.append(_chat(endpoint))
            return replies[-1].status_code == 200

        wait_until(served, 60, "an auto-pulled answer", step=0.3)
        reply = replies[-1]
        assert reply.json()["message"]["content"]
        node = reply.headers["x-herd-node"]
        tags = httpx.get(f"{endpoint}/api/tags", timeout=10).json()["models"]
        assert any(m["name"] == MODEL for m in tags)
        # a model of a registry not allowed is not pulled: the usual 404, with the reason
        refused = _chat(endpoint, "10.0.0.5:8080/x/y")
        assert refused.status_code == 404 and "not allowed" in refused.json()["error"]
    finally:
        _set(endpoint, False, admin)
        httpx.request(
            "DELETE", f"{endpoint}/api/delete", json={"model": MODEL}, headers=admin, timeout=30
        )
    assert node in ("alpha", "beta", "gamma")
