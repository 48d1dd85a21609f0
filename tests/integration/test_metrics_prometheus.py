"""A real Prometheus server scrapes herd's ``/metrics`` while real traffic goes through the
shared fleet; its HTTP API (``/api/v1/query``) must show the request counts and latency
histograms of that traffic, and ``promtool check metrics`` must pass on the exposition.

Prometheus is Debian's package (``make system-deps``), run as a plain process on a free
loopback port with its own config and data dir (never the system service). It scrapes
every second with the admin token as its bearer credential, as an operator's scrape
config would (``authorization: credentials_file`` in production).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest
from fleet_auth import ADMIN_TOKEN

from launch.localray import free_port, wait_until

pytestmark = pytest.mark.integration

MODEL = "tiny:1b"
CHATS = 6  # non-streamed, OpenAI dialect
STREAMS = 4  # streamed, Ollama dialect
UNKNOWN = 3  # an unknown model: rejected (404)
DASHBOARD = "grafana/herd-dashboard.json"


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        r.raise_for_status()
        body = r.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def scalar(self, expr: str) -> float | None:
        """The value of a query that sums to one series (None: no series yet)."""
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, expr: str, want: Any, what: str) -> None:
        seen: list[float | None] = []

        def reached() -> bool:
            seen.append(self.scalar(expr))
            return want(seen[-1]) if callable(want) else seen[-1] == want

        try:
            wait_until(reached, 60, what, step=0.25)
        except Exception as exc:
            raise AssertionError(f"{what}: {expr} was {seen[-1]!r}, wanted {want!r}") from exc


@pytest.fixture(scope="module")
def prometheus(fleet: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing: `make system-deps` installs Debian's package"
    home = tmp_path_factory.mktemp("prometheus")
    target = str(fleet.endpoint).removeprefix("http://").rstrip("/")
    (home / "token").write_text(ADMIN_TOKEN)
    (home / "prometheus.yml").write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  scrape_timeout: 1s\n"
        "scrape_configs:\n"
        "  - job_name: herd\n"
        "    metrics_path: /metrics\n"
        "    authorization:\n"
        f"      credentials_file: {home / 'token'}\n"
        "    static_configs:\n"
        f"      - targets: ['{target}']\n"
    )
    port = free_port()
    log = (home / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={home / 'prometheus.yml'}",
            f"--storage.tsdb.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = Prometheus(f"http://127.0.0.1:{port}")
    try:

        def ready() -> bool:
            assert proc.poll() is None, _tail(home / "prometheus.log")
            try:
                return httpx.get(f"{server.url}/-/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, 60, "prometheus to start")
        server.wait_for('up{job="herd"}', 1.0, "prometheus scraping herd")
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _tail(path: Path) -> str:
    return path.read_text()[-2000:]


def _scraped(endpoint: str) -> str:
    r = httpx.get(f"{endpoint}/metrics", timeout=10)
    assert r.status_code == 200, r.text
    return r.text


def _settled(prom: Prometheus, endpoint: str, expr: str) -> float:
    """``expr`` once Prometheus holds the value herd reports now (no trace of earlier
    tests still on its way): the baseline the traffic is counted from."""
    values: list[float] = []

    def stable() -> bool:
        a = prom.scalar(expr) or 0.0
        _scraped(endpoint)  # herd's own count moves only with traffic
        values.append(a)
        return len(values) >= 3 and values[-1] == values[-2] == values[-3]

    wait_until(stable, 60, f"a steady {expr}", step=1.0)
    return values[-1]


def test_prometheus_sees_the_traffic(prometheus: Prometheus, endpoint: str) -> None:
    ok = f'dialect="openai",kind="chat",model="{MODEL}",served_model="{MODEL}",status="ok"'
    streamed = f'dialect="ollama",kind="chat",model="{MODEL}",status="ok"'
    rejected = 'dialect="openai",model="other",served_model="none",status="rejected"'
    served_ok = f'served_model="{MODEL}",status="ok"'
    exprs = {
        "chats": f"sum(herd_requests_total{{{ok}}})",
        "streams": f"sum(herd_requests_total{{{streamed}}})",
        "rejected": f"sum(herd_requests_total{{{rejected}}})",
        "duration_count": f"sum(herd_request_duration_seconds_count{{{served_ok}}})",
        "duration_sum": f"sum(herd_request_duration_seconds_sum{{{served_ok}}})",
        "duration_inf": f'sum(herd_request_duration_seconds_bucket{{{served_ok},le="+Inf"}})',
        "duration_60": f'sum(herd_request_duration_seconds_bucket{{{served_ok},le="60.0"}})',
        "ttft_count": f'sum(herd_time_to_first_token_seconds_count{{served_model="{MODEL}"}})',
        "wait_count": f'sum(herd_queue_wait_seconds_count{{model="{MODEL}"}})',
    }
    before = {name: _settled(prometheus, endpoint, expr) for name, expr in exprs.items()}

    spent = 0.0  # the clients' own time for the served requests
    client = openai.OpenAI(base_url=f"{endpoint}/v1", api_key="x", max_retries=0)
    for i in range(CHATS):
        t0 = time.perf_counter()
        reply = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": f"hello {i}"}]
        )
        spent += time.perf_counter() - t0
        assert reply.choices[0].message.content
    native = ollama.Client(host=endpoint)
    for i in range(STREAMS):
        t0 = time.perf_counter()
        parts = list(
            native.chat(model=MODEL, messages=[{"role": "user", "content": f"hi {i}"}], stream=True)
        )
        spent += time.perf_counter() - t0
        assert parts[-1].done
    for _ in range(UNKNOWN):
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(
                model="no-such-model:1b", messages=[{"role": "user", "content": "hi"}]
            )

    served = CHATS + STREAMS
    prometheus.wait_for(exprs["chats"], before["chats"] + CHATS, "the chats")
    prometheus.wait_for(exprs["streams"], before["streams"] + STREAMS, "the streams")
    prometheus.wait_for(exprs["rejected"], before["rejected"] + UNKNOWN, "the rejected requests")
    # The latency histogram: one observation per served request, each in a bucket up to
    # the one its client saw (all under 60 s), and no more time than the clients spent.
    for name in ("duration_count", "duration_inf", "duration_60", "ttft_count"):
        prometheus.wait_for(exprs[name], before[name] + served, name)
    added = (prometheus.scalar(exprs["duration_sum"]) or 0.0) - before["duration_sum"]
    assert 0 < added <= spent
    prometheus.wait_for(
        exprs["wait_count"], lambda v: (v or 0) >= before["wait_count"] + served, "queue waits"
    )
    # The histogram answers PromQL's percentile questions (what the dashboard plots, over
    # rate() windows there; over the whole count here, which holds whatever the timing).
    p50 = prometheus.scalar(
        "histogram_quantile(0.5, sum by (le) "
        f"(herd_request_duration_seconds_bucket{{{served_ok}}}))"
    )
    assert p50 is not None and 0 < p50 <= 60
    # Gauges: the fleet's online nodes, as /fleet/status says.
    status = httpx.get(f"{endpoint}/fleet/status", timeout=10).json()
    online = sum(1 for n in status["nodes"] if n["status"] == "online")
    prometheus.wait_for('sum(herd_node_status{status="online"})', float(online), "online nodes")
    assert (prometheus.scalar("sum(herd_node_memory_total_bytes)") or 0) > 0


def test_promtool_accepts_the_live_exposition(endpoint: str) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make system-deps` installs Debian's prometheus"
    body = _scraped(endpoint)
    assert "herd_requests_total" in body and "herd_node_status" in body
    result = subprocess.run(
        [promtool, "check", "metrics"], input=body.encode(), capture_output=True, timeout=30
    )
    out = (result.stdout + result.stderr).decode()
    assert result.returncode == 0 and not out.strip(), out


def test_the_grafana_dashboard_queries_run(prometheus: Prometheus) -> None:
    """Every panel's query of grafana/herd-dashboard.json evaluates on the live server;
    the request, latency, first-token, node and memory panels have data."""
    board = json.loads((Path(__file__).resolve().parents[2] / DASHBOARD).read_text())
    empty: list[str] = []
    for panel in board["panels"]:
        for target in panel.get("targets", ()):
            expr = target["expr"].replace("$__rate_interval", "1m").replace("$node", ".*")
            if not prometheus.query(expr):
                empty.append(panel["title"])
    for title in (
        "Request rate by status",
        "End-to-end latency (served requests)",
        "Time to first token",
        "Free memory per node",
        "Nodes online",
    ):
        assert title not in empty, f"{title} shows no data"
