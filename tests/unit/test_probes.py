"""/healthz and /readyz over the real app and fake nodes, and the readiness rule."""

from __future__ import annotations

import httpx
from dispatch_fakes import heartbeat, running

from serve_app.routes import build_app, readiness
from serve_app.service import HerdService


async def _get(d: object, path: str, **over: object) -> httpx.Response:
    app = build_app(HerdService(d.settings, d))  # type: ignore[attr-defined]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        return await http.get(path)


async def test_probes_answer_without_credentials_even_with_keys() -> None:
    keys = {"api_keys": "alice:alice-key-0123456789", "admin_token": "a" * 20}
    async with running(heartbeat("alpha", loaded=["tiny:1b"]), **keys) as fleet:
        r = await _get(fleet.d, "/healthz")
        assert r.status_code == 200 and r.json() == {"status": "ok"}
        r = await _get(fleet.d, "/readyz")
        assert r.status_code == 200 and r.json() == {"status": "ready", "nodes_online": 1}


async def test_not_ready_without_an_online_node() -> None:
    async with running() as fleet:
        r = await _get(fleet.d, "/readyz")
        assert r.status_code == 503
        assert r.json() == {"status": "not ready", "reason": "no node is online"}
        assert (await _get(fleet.d, "/healthz")).status_code == 200


async def test_not_ready_when_the_router_does_not_answer() -> None:
    async with running(heartbeat("alpha"), actor_call_timeout=0.2) as fleet:
        fleet.router.call_hangs = True
        r = await _get(fleet.d, "/readyz")
        assert r.status_code == 503 and r.json()["reason"].startswith("router:")


def test_readiness_rule() -> None:
    online = {"nodes": [{"status": "online"}, {"status": "offline"}]}
    assert readiness(online) is None
    assert readiness({"nodes": [{"status": "degraded"}]}) == "no node is online"
    assert readiness({**online, "traces": {"alive": False}}) == "the trace writer is not running"
    stalled = {**online, "traces": {"alive": True, "last_error": "OperationalError: down"}}
    assert readiness(stalled) == "the trace store refuses writes: OperationalError: down"
