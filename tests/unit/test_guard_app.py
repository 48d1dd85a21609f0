"""The ingress's guard in front of the real app (routes, dispatcher, traces) over fake
nodes: who may call what, browser safety, body limits, the dashboard login."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from dispatch_fakes import Fleet, heartbeat, running
from fastapi import FastAPI, Request

from herd.guard.credentials import SESSION_COOKIE, current_caller
from serve_app.routes import build_app
from serve_app.service import HerdService

ADMIN_TOKEN = "admin-token-0123456789abcdef"
KEYS = "alice:alice-key-0123456789,bob:bob-key-0123456789ab"
BASE = "http://127.0.0.1:11435"
CHAT = {"model": "tiny:1b", "messages": [{"role": "user", "content": "hi"}], "stream": False}
OPENAI_CHAT = {"model": "tiny:1b", "messages": [{"role": "user", "content": "hi"}]}


def _dashboard_probe(app: FastAPI) -> None:
    """Stand-ins for the dashboard routes (the real ones are tested on the fleet)."""

    @app.get("/dashboard/api/traces")
    async def traces() -> dict[str, Any]:
        return {"traces": [], "caller": current_caller.get().role}

    @app.post("/dashboard/api/settings")
    async def settings(request: Request) -> dict[str, Any]:
        return {"saved": (await request.body()).decode()}

    @app.post("/dashboard/_dash-update-component")
    async def callback(request: Request) -> dict[str, Any]:
        CALLBACKS.append((await request.json())["output"])
        return {"response": {}}


CALLBACKS: list[str] = []  # the Dash callbacks the stand-in route ran


@asynccontextmanager
async def client(**over: Any) -> AsyncIterator[tuple[httpx.AsyncClient, Fleet]]:
    over.setdefault("admin_token", ADMIN_TOKEN)
    async with running(heartbeat("alpha", loaded=["tiny:1b"]), **over) as fleet:
        app = build_app(HerdService(fleet.d.settings, fleet.d))
        _dashboard_probe(app)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
            yield http, fleet


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_inference_is_open_and_mutations_need_the_admin_token() -> None:
    async with client() as (http, fleet):
        assert (await http.post("/api/chat", json=CHAT)).status_code == 200
        assert (await http.get("/api/tags")).status_code == 200
        # The openai client always sends a bearer; any value is fine without keys.
        r = await http.post("/v1/chat/completions", json=OPENAI_CHAT, headers=bearer("ollama"))
        assert r.status_code == 200
        r = await http.post("/api/pull", json={"model": "tiny:1b"})
        assert r.status_code == 401
        assert "admin token" in r.json()["error"]
        assert r.headers["www-authenticate"].startswith("Bearer")
        r = await http.request("DELETE", "/api/delete", json={"model": "tiny:1b"})
        assert r.status_code == 401
        assert fleet.nodes.pulls == [] and not any(c[1] == "delete" for c in fleet.nodes.calls)
        r = await http.post("/api/pull", json={"model": "tiny:1b"}, headers=bearer(ADMIN_TOKEN))
        assert r.status_code == 200, r.text
        r = await http.request(
            "DELETE", "/api/delete", json={"model": "tiny:1b"}, headers=bearer(ADMIN_TOKEN)
        )
        assert r.status_code == 200, r.text
        records = await fleet.records()
        assert [r.requested_model for r in records] == ["tiny:1b", "tiny:1b"]


async def test_keep_alive_zero_unloads_only_for_the_admin() -> None:
    async with client() as (http, fleet):
        for keep_alive in (0, "0", "0s"):
            r = await http.post("/api/chat", json={**CHAT, "keep_alive": keep_alive})
            assert r.status_code == 401, keep_alive
            assert "keep_alive 0" in r.json()["error"]
        r = await http.post("/v1/chat/completions", json={**OPENAI_CHAT, "keep_alive": 0})
        assert r.status_code == 401
        assert r.json()["error"]["type"] == "invalid_request_error"
        assert len(fleet.nodes.opened) == 0
        r = await http.post("/api/chat", json={**CHAT, "keep_alive": "5m"})
        assert r.status_code == 200
        r = await http.post(
            "/api/chat", json={**CHAT, "keep_alive": 0}, headers=bearer(ADMIN_TOKEN)
        )
        assert r.status_code == 200
        records = await fleet.records()
        assert [r.http_status for r in records] == [401, 401, 401, 401, 200, 200]


async def test_api_keys_guard_inference_in_each_dialect() -> None:
    async with client(api_keys=KEYS) as (http, fleet):
        r = await http.post("/api/chat", json=CHAT)
        assert r.status_code == 401 and "API key" in r.json()["error"]
        r = await http.post("/v1/chat/completions", json=OPENAI_CHAT, headers=bearer("nope"))
        assert r.status_code == 401
        assert r.json()["error"]["type"] == "invalid_request_error"
        assert (await http.get("/v1/models")).status_code == 401
        assert (await http.get("/api/version")).status_code == 200  # public
        assert (await http.get("/")).status_code == 200
        ok = await http.post("/api/chat", json=CHAT, headers=bearer("alice-key-0123456789"))
        assert ok.status_code == 200
        ok = await http.post(
            "/v1/chat/completions", json=OPENAI_CHAT, headers={"x-api-key": "bob-key-0123456789ab"}
        )
        assert ok.status_code == 200
        ok = await http.post("/api/chat", json=CHAT, headers=bearer(ADMIN_TOKEN))
        assert ok.status_code == 200
        # A key is not the admin token.
        r = await http.post(
            "/api/pull", json={"model": "x"}, headers=bearer("alice-key-0123456789")
        )
        assert r.status_code == 401
        records = await fleet.records()
        assert [r.http_status for r in records] == [401, 401, 200, 200, 200]
        assert "key:alice" in records[2].tags and "key:bob" in records[3].tags
        assert not any(t.startswith("key:") for t in records[4].tags)


async def test_foreign_origins_and_rebinding_hosts_are_refused() -> None:
    async with client() as (http, fleet):
        evil = {"Origin": "https://evil.example.com"}
        r = await http.post("/api/chat", json=CHAT, headers=evil)
        assert r.status_code == 403 and "origin" in r.json()["error"]
        # A text/plain "simple request" from a page carries its Origin too.
        r = await http.post(
            "/api/pull",
            content=b'{"model": "x"}',
            headers={**evil, "Content-Type": "text/plain"},
        )
        assert r.status_code == 403
        r = await http.post("/v1/chat/completions", json=OPENAI_CHAT, headers=evil)
        assert r.status_code == 403 and r.json()["error"]["type"] == "invalid_request_error"
        # DNS rebinding: the page's own name as Host.
        r = await http.post("/api/chat", json=CHAT, headers={"Host": "evil.example.com:11435"})
        assert r.status_code == 403 and "host" in r.json()["error"]
        # A local web app is allowed, with CORS headers; its preflight too.
        local = {"Origin": "http://localhost:3000"}
        r = await http.post("/api/chat", json=CHAT, headers=local)
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "http://localhost:3000"
        r = await http.options(
            "/api/chat",
            headers={
                **local,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert r.status_code == 204
        assert r.headers["access-control-allow-origin"] == "http://localhost:3000"
        r = await http.options(
            "/api/chat", headers={**evil, "Access-Control-Request-Method": "POST"}
        )
        assert r.status_code == 403
        # The endpoint's own origin (the dashboard in a browser) is fine.
        r = await http.post("/api/chat", json=CHAT, headers={"Origin": BASE})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
        assert fleet.nodes.pulls == []


async def test_bodies_are_limited_while_read_chunked_too() -> None:
    async with client(max_body_bytes=1000, dashboard_max_body_bytes=100) as (http, fleet):
        big = {**CHAT, "messages": [{"role": "user", "content": "x" * 2000}]}
        r = await http.post("/api/chat", json=big)
        assert r.status_code == 413 and "larger than 1000" in r.json()["error"]

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(20):
                yield b" " * 100  # JSON whitespace: only the size is wrong

        r = await http.post("/v1/chat/completions", content=chunks())
        assert "content-length" not in r.request.headers
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
        r = await http.post(
            "/dashboard/api/settings", content=chunks(), headers=bearer(ADMIN_TOKEN)
        )
        assert r.status_code == 413
        assert len(fleet.nodes.opened) == 0


async def test_the_dashboard_needs_a_login_unless_bound_to_loopback() -> None:
    async with client(host="0.0.0.0") as (http, _fleet):
        r = await http.get("/dashboard/api/traces")
        assert r.status_code == 401
        r = await http.get("/dashboard/api/traces", headers={"Accept": "text/html"})
        assert r.status_code == 303 and r.headers["location"] == "/dashboard/login"
        page = await http.get("/dashboard/login")
        assert page.status_code == 200 and 'name="token"' in page.text
        bad = await http.post("/dashboard/login", data={"token": "wrong"})
        assert bad.status_code == 401 and SESSION_COOKIE not in bad.cookies
        good = await http.post("/dashboard/login", data={"token": ADMIN_TOKEN})
        assert good.status_code == 303
        cookie = good.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and ADMIN_TOKEN not in cookie
        r = await http.get("/dashboard/api/traces")  # the client keeps the cookie
        assert r.status_code == 200 and r.json()["caller"] == "admin"
        r = await http.post("/dashboard/api/settings", content=b"{}")
        assert r.status_code == 200
        # The cookie is the dashboard's only: the API still wants the bearer.
        assert (await http.post("/api/pull", json={"model": "x"})).status_code == 401
        await http.get("/dashboard/logout")
        assert (await http.get("/dashboard/api/traces")).status_code == 401
    async with client(host="127.0.0.1") as (http, _fleet):
        r = await http.get("/dashboard/api/traces")
        assert r.status_code == 200 and r.json()["caller"] == "anonymous"
        # Mutations need the token even from this machine.
        assert (await http.post("/dashboard/api/settings", content=b"{}")).status_code == 401


async def test_every_post_route_of_the_app_is_classified() -> None:
    from herd.guard.access import INFERENCE_POSTS, route_access

    async with client() as (http, _fleet):
        app: Callable[..., Any] = http._transport.app  # type: ignore[attr-defined]
        posts = {
            r.path
            for r in app.routes  # type: ignore[attr-defined]
            if "POST" in getattr(r, "methods", ()) and not r.path.startswith("/dashboard")
        }
    mutations = {"/api/pull"}
    assert posts - mutations <= INFERENCE_POSTS, posts - mutations - INFERENCE_POSTS
    assert all(route_access("POST", p) == "admin" for p in mutations)


async def test_dash_callbacks_that_mutate_run_only_for_the_admin() -> None:
    CALLBACKS.clear()

    def body(output: str) -> dict[str, Any]:
        return {"output": output, "outputs": {}, "inputs": [], "changedPropIds": []}

    url = "/dashboard/_dash-update-component"
    async with client(host="127.0.0.1") as (http, _fleet):
        # Reading views needs no login on a loopback-bound endpoint.
        r = await http.post(url, json=body("..overview-nodes.children...x.figure.."))
        assert r.status_code == 200
        # A toggle without the login: Dash's "no update", and the callback never runs.
        r = await http.post(url, json=body("settings-saved.children"))
        assert r.status_code == 204 and r.content == b""
        r = await http.post(url, json=body("rec-pull-message.children"))
        assert r.status_code == 204
        assert CALLBACKS == ["..overview-nodes.children...x.figure.."]
        await http.post("/dashboard/login", data={"token": ADMIN_TOKEN})
        r = await http.post(url, json=body("settings-saved.children"))
        assert r.status_code == 200
        assert CALLBACKS[-1] == "settings-saved.children"
    async with client(host="0.0.0.0") as (http, _fleet):
        r = await http.post(url, json=body("..overview-nodes.children...x.figure.."))
        assert r.status_code == 401  # reading traces from another machine: the login
