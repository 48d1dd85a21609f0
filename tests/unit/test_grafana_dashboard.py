"""grafana/herd-dashboard.json: a well-formed dashboard whose every query is valid PromQL
(``promtool check rules``) over metric names herd really exposes. The integration test
(tests/integration/test_metrics_prometheus.py) runs the same queries on a live Prometheus."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from test_metrics import MODEL, fleet_status, known, metrics, record, samples

from herd.domain import Outcome
from herd.routing.events import Begin, Note

DASHBOARD = Path(__file__).resolve().parents[2] / "grafana" / "herd-dashboard.json"
_NAME = re.compile(r"\b(herd_[a-z_]+)\b")
_SUFFIXES = ("_bucket", "_count", "_sum")


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def queries(rate_window: str = "5m") -> list[str]:
    """Every panel's PromQL, with Grafana's variables filled in."""
    out = []
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", ()):
            expr = target["expr"].replace("$__rate_interval", rate_window)
            out.append(expr.replace("$node", ".*"))
    return out


def exposed_names() -> set[str]:
    m = metrics(fleet_status(), known_model=known(MODEL))
    m.traces([record("a"), record("b", status="error", retries=1, fallback_used=True)])
    now = 0.0
    m.events(
        [
            Begin("a", "alpha", MODEL, 0),
            Outcome("a", "alpha", MODEL, ok=False, moved=True),
            Note("context_protection", {"action": "strip", "model": MODEL}, now),
            Note("vram_fallback", {"model": MODEL, "served": MODEL}, now),
        ]
    )
    return {name for name, _ in samples(m.exposition())}


def test_panels_are_laid_out_and_use_the_datasource_variable() -> None:
    data = dashboard()
    assert data["uid"] and data["title"] == "herd"
    names = {v["name"] for v in data["templating"]["list"]}
    assert {"datasource", "node"} <= names
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids))
    titles = " ".join(p["title"] for p in data["panels"]).lower()
    for wanted in ("request rate", "latency", "first token", "error", "in-flight", "memory"):
        assert wanted in titles, wanted
    for panel in data["panels"]:
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"]


def test_every_query_names_metrics_herd_exposes() -> None:
    exposed = exposed_names()
    used = {name for expr in queries() for name in _NAME.findall(expr)}
    assert used, "no herd_ metric in the dashboard"
    missing = sorted(n for n in used if n not in exposed)
    assert not missing, f"the dashboard queries metrics herd does not expose: {missing}"
    # and the main families are all on it
    bases = {n.removesuffix(s) for n in used for s in _SUFFIXES if n.endswith(s)} | used
    for family in (
        "herd_requests_total",
        "herd_request_duration_seconds",
        "herd_time_to_first_token_seconds",
        "herd_node_in_flight_requests",
        "herd_node_memory_available_bytes",
    ):
        assert family in bases, family


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make system-deps` installs Debian's prometheus"
    rules = [{"record": f"herd:dashboard_query_{i}", "expr": e} for i, e in enumerate(queries())]
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout
