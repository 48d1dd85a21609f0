"""The dashboard of the real fleet: traffic from the official clients goes through the
router, then each of the eight views and the trace view is opened in headless Chromium
at ``<endpoint>/dashboard/`` and must show numbers from that traffic. Screenshots go to
the test's tmp dir and ``.artifacts/dashboard/fleet/``.

Needs the session ``fleet`` (tests/conftest.py) with traces wired into the ingress and
the dashboard mounted by ``serve_app``.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest
from dashboard_browser import (
    browser_fixtures,
    expect_contains,
    expect_text,
    open_view,
    screenshot,
)
from fleet_auth import ADMIN, login
from playwright.sync_api import expect

from dashboard.views.common import fmt_int, fmt_rate, fmt_score, fmt_seconds
from launch.localray import wait_until

pytestmark = pytest.mark.integration

MESSAGES = [{"role": "user", "content": "Say something about llamas."}]
OPENAI_CALLS = 3


@dataclass
class Traffic:
    endpoint: str
    tag: str  # unique to this run, so its numbers are exactly this test's traffic
    request_ids: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    ollama_request_id: str = ""
    benchmark_id: int = 0

    def api(self, path: str, **params: Any) -> Any:
        reply = httpx.get(f"{self.endpoint}/dashboard/api/{path}", params=params, timeout=15)
        reply.raise_for_status()
        return reply.json()


def _stored(endpoint: str, request_id: str) -> bool:
    url = f"{endpoint}/dashboard/api/traces/{request_id}"
    return httpx.get(url, timeout=5).status_code == 200


@pytest.fixture(scope="module")
def traffic(fleet: Any) -> Traffic:
    endpoint = str(fleet.endpoint)
    out = Traffic(endpoint, tag=f"dash-{uuid.uuid4().hex[:6]}")
    client = openai.OpenAI(base_url=f"{endpoint}/v1", api_key="not-needed", max_retries=0)
    started = time.perf_counter()
    try:
        for _ in range(OPENAI_CALLS):
            raw = client.chat.completions.with_raw_response.create(
                model="tiny:1b",
                messages=MESSAGES,
                extra_body={"metadata": {"tags": ["app-x", out.tag]}},
            )
            completion = raw.parse()
            out.request_ids.append(raw.headers["x-herd-request-id"])
            out.nodes.append(raw.headers["x-herd-node"])
            assert completion.usage is not None
            out.prompt_tokens += completion.usage.prompt_tokens
            out.completion_tokens += completion.usage.completion_tokens
    finally:
        client.close()
    out.seconds = time.perf_counter() - started
    oll = ollama.Client(host=endpoint, headers={"X-Herd-Tags": "app-ollama"})
    try:
        reply = oll.chat(model="thinker:1b", messages=MESSAGES, stream=False)
        assert reply.message.content
    finally:
        oll._client.close()
    # Every trace is written off the request path: wait until all of them are stored.
    wait_until(
        lambda: all(_stored(endpoint, rid) for rid in out.request_ids), 30, "traces stored", 0.2
    )
    wait_until(
        lambda: bool(out.api("traces", tag="app-ollama", limit=1)["items"]), 30, "ollama trace"
    )
    thinker = out.api("traces", tag="app-ollama", limit=1)["items"]
    out.ollama_request_id = thinker[0]["request_id"]
    run = {
        "name": f"dashboard e2e {out.tag}",
        "started_at": time.time() - out.seconds,
        "finished_at": time.time(),
        "params": {"requests": OPENAI_CALLS, "model": "tiny:1b"},
        "results": {
            "requests": OPENAI_CALLS,
            "requests_per_s": round(OPENAI_CALLS / out.seconds, 3),
            "tokens_per_s": round(out.completion_tokens / out.seconds, 1),
            "errors": 0,
            "per_node": {n: {"requests": out.nodes.count(n)} for n in set(out.nodes)},
        },
    }
    saved = httpx.post(f"{endpoint}/dashboard/api/benchmarks", json=run, headers=ADMIN, timeout=15)
    assert saved.status_code == 201, saved.text
    out.benchmark_id = saved.json()["id"]
    return out


browser, page, shots = browser_fixtures(after="traffic", artifacts="fleet")


def test_fleet_overview_shows_the_live_nodes(
    traffic: Traffic, fleet: Any, page: Any, shots: tuple[Path, Path]
) -> None:
    open_view(page, traffic.endpoint, "", "Fleet Overview")
    nodes = fleet.status()["nodes"]
    online = sum(1 for n in nodes if n["status"] == "online")
    expect_text(page, "overview-nodes-online", f"{online} / {len(nodes)}")
    for node in nodes:
        expect_text(page, f"node-{node['node_id']}-name", node["node_id"])
    expect_contains(page, "node-alpha-loaded", "tiny:1b")
    expect(page.get_by_test_id("overview-requests-1h")).to_have_text(re.compile(r"^[1-9][\d,]*$"))
    screenshot(page, "1-overview", *shots)


def test_trends_count_the_traffic(traffic: Traffic, page: Any, shots: tuple[Path, Path]) -> None:
    open_view(page, traffic.endpoint, "trends", "Trends")
    total = traffic.api("overview", hours=24)["requests"]
    assert total >= OPENAI_CALLS + 1
    expect_text(page, "trends-requests", fmt_int(total))
    screenshot(page, "2-trends", *shots)


def test_model_insights_show_tiny(traffic: Traffic, page: Any, shots: tuple[Path, Path]) -> None:
    open_view(page, traffic.endpoint, "models", "Model Insights")
    tiny = next(m for m in traffic.api("models", hours=24)["models"] if m["model"] == "tiny:1b")
    assert tiny["requests"] >= OPENAI_CALLS
    expect_text(page, "models-row-tiny:1b-requests", fmt_int(tiny["requests"]))
    expect_text(page, "models-row-tiny:1b-avg_latency_s", fmt_seconds(tiny["avg_latency_s"]))
    expect(page.get_by_test_id("models-row-thinker:1b")).to_be_visible()
    page.get_by_test_id("models-row-tiny:1b").click()
    expect(page.locator("#models-daily-title")).to_have_text("Daily breakdown: tiny:1b")
    screenshot(page, "3-models", *shots)


def test_apps_show_the_tagged_traffic(
    traffic: Traffic, page: Any, shots: tuple[Path, Path]
) -> None:
    open_view(page, traffic.endpoint, "apps", "Apps")
    row = f"apps-row-{traffic.tag}"
    expect_text(page, f"{row}-requests", str(OPENAI_CALLS))
    expect_text(page, f"{row}-prompt_tokens", fmt_int(traffic.prompt_tokens))
    expect_text(page, f"{row}-completion_tokens", fmt_int(traffic.completion_tokens))
    expect_text(page, f"{row}-error_rate", "0.0%")
    expect(page.get_by_test_id("apps-row-app-x")).to_be_visible()
    expect_text(page, "apps-row-app-ollama-models", "thinker:1b")
    screenshot(page, "4-apps", *shots)


def test_benchmarks_show_the_run_measured_from_the_traffic(
    traffic: Traffic, page: Any, shots: tuple[Path, Path]
) -> None:
    open_view(page, traffic.endpoint, "benchmarks", "Benchmarks")
    run = traffic.benchmark_id
    tokens_per_s = round(traffic.completion_tokens / traffic.seconds, 1)
    expect_text(page, f"benchmarks-row-{run}-requests", str(OPENAI_CALLS))
    expect_text(page, f"benchmarks-row-{run}-tokens_per_s", fmt_rate(tokens_per_s))
    node = traffic.nodes[0]
    expect_text(page, f"benchmarks-node-{node}-requests", str(traffic.nodes.count(node)))
    screenshot(page, "5-benchmarks", *shots)


def test_health_lists_every_check(traffic: Traffic, page: Any, shots: tuple[Path, Path]) -> None:
    open_view(page, traffic.endpoint, "health", "Health")
    report = traffic.api("health")
    expect(page.locator("#health-checks > .check")).to_have_count(len(report["checks"]))
    for check in report["checks"]:
        expect_contains(page, f"health-check-{check['id']}", check["explanation"][:40])
    screenshot(page, "6-health", *shots)


def test_recommendations_per_node(traffic: Traffic, page: Any, shots: tuple[Path, Path]) -> None:
    open_view(page, traffic.endpoint, "recommendations", "Recommendations")
    report = traffic.api("recommendations")
    assert report["nodes"]
    for node in report["nodes"]:
        expect_contains(page, f"rec-node-{node['node_id']}-hardware", "RAM")
    screenshot(page, "7-recommendations", *shots)


def test_settings_nodes_versions_and_a_toggle(
    traffic: Traffic, page: Any, shots: tuple[Path, Path]
) -> None:
    open_view(page, traffic.endpoint, "settings", "Settings")
    current = traffic.api("settings")
    for node in current["nodes"]:
        expect_text(page, f"settings-node-{node['node_id']}-herd_version", node["herd_version"])
    routers = [n["node_id"] for n in current["nodes"] if n["is_router"]]
    assert routers, "the router's node should be marked"
    expect_text(page, f"settings-node-{routers[0]}-node", f"{routers[0]} Router")
    screenshot(page, "8-settings", *shots)
    was = current["toggles"]["vram_fallback"]
    login(page, traffic.endpoint)  # changing a setting is an admin action
    open_view(page, traffic.endpoint, "settings", "Settings")
    toggle = page.locator("#settings-toggles input[value=vram_fallback]")
    try:
        toggle.set_checked(not was)
        expect_text(page, "settings-saved", f"Saved: vram_fallback = {'off' if was else 'on'}")
        assert traffic.api("settings")["toggles"]["vram_fallback"] is (not was)
    finally:
        httpx.post(
            f"{traffic.endpoint}/dashboard/api/settings",
            json={"vram_fallback": was},
            headers=ADMIN,
            timeout=15,
        )


def test_trace_shows_why_the_node_won(
    traffic: Traffic, page: Any, shots: tuple[Path, Path]
) -> None:
    rid = traffic.request_ids[0]
    record = traffic.api(f"traces/{rid}")
    open_view(page, traffic.endpoint, "traces", "Request trace", query=f"?id={rid}")
    expect_text(page, "trace-id", rid)
    expect_text(page, "trace-winner", traffic.nodes[0])
    expect_text(page, "trace-score", fmt_score(record["score"]))
    expect_text(page, "trace-tags", f"app-x, {traffic.tag}")
    assert record["candidates"], "a routed request has scored candidates"
    for cand in record["candidates"]:
        expect_text(page, f"trace-candidate-{cand['node_id']}-total", fmt_score(cand["total"]))
    for node, reason in record["eliminated"].items():
        expect_text(page, f"trace-eliminated-{node}", f"{node}: {reason}")
    screenshot(page, "9-trace", *shots)
    open_view(
        page, traffic.endpoint, "traces", "Request trace", query=f"?id={traffic.ollama_request_id}"
    )
    expect_text(page, "trace-tags", "app-ollama")
    expect_contains(page, "trace-model", "thinker:1b")
