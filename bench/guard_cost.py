"""What the ingress's guard and hang-up watch cost per request, in process (no Ray).

The real app (``serve_app.routes.build_app``) over the fake nodes of the unit tests,
driven through ASGI in one event loop, with and without ``GuardMiddleware`` and
``HangupMiddleware``, alternating the two stacks round by round so both see the same
machine. Workloads: a non-streamed ``/api/chat``, a streamed one, and ``/api/tags``;
each with no credential and (guarded stack) with an inference key and a browser Origin.

Prints a table, then one line of JSON (``{"bench": "guard_cost", ...}``) as the last
line of stdout.

    python bench/guard_cost.py [--requests 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "unit"))  # the fake nodes of the unit tests

from dispatch_fakes import heartbeat, running  # noqa: E402

from serve_app.guard import GuardMiddleware  # noqa: E402
from serve_app.hangup import HangupMiddleware  # noqa: E402
from serve_app.routes import build_app  # noqa: E402
from serve_app.service import HerdService  # noqa: E402

KEY = "bench-key-0123456789abcdef"
CHAT = {"model": "tiny:1b", "messages": [{"role": "user", "content": "hi"}]}
WORKLOADS: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "chat": ("POST", "/api/chat", {**CHAT, "stream": False}),
    "chat stream": ("POST", "/api/chat", {**CHAT, "stream": True}),
    "tags": ("GET", "/api/tags", None),
}


def _stack(svc: HerdService, guarded: bool) -> Any:
    app = build_app(svc)
    if not guarded:
        app.user_middleware = [
            m for m in app.user_middleware if m.cls not in (GuardMiddleware, HangupMiddleware)
        ]
        app.middleware_stack = None  # rebuilt on the next request
    return app


async def _time(http: httpx.AsyncClient, work: str, n: int, headers: dict[str, str]) -> float:
    method, path, body = WORKLOADS[work]
    t0 = time.perf_counter()
    for _ in range(n):
        r = await http.request(method, path, json=body, headers=headers)
        if r.status_code != 200:
            raise SystemExit(f"{work}: {r.status_code} {r.text[:200]}")
    return (time.perf_counter() - t0) / n * 1e6  # µs per request


async def main(n: int, rounds: int) -> dict[str, Any]:
    over = {"admin_token": "bench-admin-0123456789", "api_keys": f"bench:{KEY}"}
    results: dict[str, dict[str, list[float]]] = {}
    async with running(heartbeat("alpha", loaded=["tiny:1b"]), **over) as fleet:
        svc = HerdService(fleet.d.settings, fleet.d)
        apps = {"plain": _stack(svc, False), "guarded": _stack(svc, True)}
        cases = {
            "plain": {},
            "guarded": {"Authorization": f"Bearer {KEY}"},
            "guarded+origin": {"x-api-key": KEY, "Origin": "http://localhost:3000"},
        }
        clients = {
            name: httpx.AsyncClient(
                transport=httpx.ASGITransport(app=apps["plain" if name == "plain" else "guarded"]),
                base_url="http://127.0.0.1:11435",
            )
            for name in cases
        }
        try:
            for name, http in clients.items():  # warm up
                for work in WORKLOADS:
                    await _time(http, work, 50, cases[name])
            for _ in range(rounds):
                for name, http in clients.items():
                    for work in WORKLOADS:
                        fleet.nodes.add(heartbeat("alpha", loaded=["tiny:1b"]))  # stays online
                        us = await _time(http, work, n, cases[name])
                        results.setdefault(work, {}).setdefault(name, []).append(us)
        finally:
            for http in clients.values():
                await http.aclose()
    return {w: {c: statistics.median(v) for c, v in by.items()} for w, by in results.items()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    table = asyncio.run(main(args.requests, args.rounds))
    print(f"{'workload':<12} {'plain µs':>9} {'guarded µs':>11} {'+origin µs':>11} {'added µs':>9}")
    for work, by in table.items():
        added = by["guarded"] - by["plain"]
        print(
            f"{work:<12} {by['plain']:>9.0f} {by['guarded']:>11.0f} "
            f"{by['guarded+origin']:>11.0f} {added:>9.0f}"
        )
    print(
        json.dumps(
            {
                "bench": "guard_cost",
                "requests": args.requests,
                "rounds": args.rounds,
                "median_us": {
                    w: {c: round(v, 1) for c, v in by.items()} for w, by in table.items()
                },
            }
        )
    )
