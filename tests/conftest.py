"""One shared herd fleet for the integration and e2e tests: 3 Ray nodes on 127.0.0.1.

alpha (head Ray node; also hosts the router and Serve): tiny:1b loaded ("hot"), embedder
beta: tiny:1b on disk, thinker:1b loaded; learns its owner's week (capacity learning: the
    test_capacity.py owner joins a meeting through <data dir>/capacity/beta.meeting)
gamma: tiny:1b on disk, coder:1b loaded (long answers), embedder
gemma (a second NodeActor on alpha's Ray node): the real gemma3:270m (a base model) on
    llama.cpp, and the real media engines (MiniLM on sentence-transformers, whisper
    tiny.en on faster-whisper, the tiny random diffusers pipeline tiny-sd:random, text to
    speech on Piper with the packaged voice (tts-1) and on espeak-ng), loaded on first use
smol (a third NodeActor on alpha's Ray node): the real smollm2:135m (instruction-tuned,
    the embedded default) on llama.cpp
Each node's backend is an Ollama emulator process; tests inject faults through its
``/_sim/`` admin API or stop it. Heartbeats are fast so the fleet reacts within ~1 s.
Unit tests never request these fixtures, so they never start Ray.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fleet_auth import ADMIN, ADMIN_TOKEN

from herd.settings import load_settings
from herd.sim.testing import fast_profile

MEDIA_ENGINES = "sentence-transformers,faster-whisper,diffusers,piper,espeak-ng"

NODE_PROFILES: dict[str, dict[str, Any]] = {
    "alpha": {"preload": ["tiny:1b"], "num_parallel": 4},
    "beta": {"preload": ["thinker:1b"], "num_parallel": 2},
    "gamma": {"preload": ["coder:1b"], "num_parallel": 2, "response_tokens": 120},
}


def _profile_file(tmp: Path, name: str, overrides: dict[str, Any]) -> Path:
    profile = fast_profile(name=name, **overrides)
    if name == "beta":  # beta has no embedder and no coder
        profile.models = [m for m in profile.models if m.name in ("tiny:1b", "thinker:1b")]
    if name == "alpha":
        profile.models = [m for m in profile.models if m.name in ("tiny:1b", "embedder:latest")]
    path = tmp / f"{name}.json"
    path.write_text(profile.model_dump_json())
    return path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that take parts of the shared fleet down run after every other test."""
    items.sort(key=lambda item: item.get_closest_marker("destructive") is not None)


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from launch.localfleet import LocalFleet, NodeSpec

    # Ray token auth is on: LocalRay gives the cluster its own token and hands it to this
    # process (the driver); subprocesses that join get ``fleet.cluster.auth_env()``.
    tmp = tmp_path_factory.mktemp("fleet")
    settings = load_settings(
        host="127.0.0.1",
        port=_free_port(),
        heartbeat_interval=0.25,
        heartbeat_timeout=1.0,
        heartbeat_offline=2.0,
        holding_queue_timeout=3.0,
        data_dir=tmp / "data",
        first_chunk_timeout=3.0,
        chunk_timeout=5.0,
        # These tests assert which node serves (the hot one), which the seed's policy
        # makes deterministic; the default expected_latency policy learns from traffic
        # (slow-fault tests teach it that alpha is slow). It is covered by unit and
        # property tests and by bench/fleet.py over the real router and emulators.
        routing_policy="score",
        # beta learns its owner's week, and its "owner" is this busy box (the tests, Ray):
        # its availability points would change which node these tests see serve.
        # The signal is covered by unit tests (tests/unit/test_scoring_signals.py).
        score_availability=0.0,
        admin_token=ADMIN_TOKEN,
        # tests/integration/test_model_aliases.py: names clients insist on
        model_aliases='{"gpt-4o-mini": "smollm2:135m", "claude-haiku-4-5": "tiny:1b"}',
        # The failure memory cools a pair down for 4 s, then 8 s (test_failure_memory.py
        # waits them out); the sim fixture readmits everything after each test.
        failure_cooldown=4.0,
        failure_cooldown_max=16.0,
    )
    specs = (
        *(
            NodeSpec(
                name, "sim", str(_profile_file(tmp, name, over)), capacity_learning=name == "beta"
            )
            for name, over in NODE_PROFILES.items()
        ),
        NodeSpec("gemma", "llamacpp", ray_node="alpha", engines=MEDIA_ENGINES, model="gemma3:270m"),
        NodeSpec("smol", "llamacpp", ray_node="alpha"),  # the default: smollm2:135m
    )
    local = LocalFleet(settings, specs)
    try:
        local.start()
        _load_minilm(local.endpoint)
        yield local
    finally:
        local.stop()


def _load_minilm(endpoint: str, timeout: float = 180.0) -> None:
    """MiniLM loads on its first request (8 s on a busy 2-core box: torch, then the
    model), longer than this fleet's first-chunk limit (3 s plus the hop's margin): load
    it once before the tests, which are about embeddings, not about a cold load. The node
    finishes loading after a first request gave up, so a later one finds it loaded."""
    deadline = time.monotonic() + timeout
    body = {"model": "all-minilm:l6-v2", "input": "warm up"}
    while True:
        r = httpx.post(f"{endpoint}/api/embed", json=body, timeout=60)
        if r.status_code == 200:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"MiniLM did not load: {r.status_code} {r.text[:200]}")
        time.sleep(0.5)  # the poll step while the node loads it


def _free_port() -> int:
    from launch.localray import free_port

    return free_port()


@pytest.fixture
def admin() -> dict[str, str]:
    """Headers carrying the shared fleet's admin token."""
    return dict(ADMIN)


@pytest.fixture
def endpoint(fleet: Any) -> str:
    return str(fleet.endpoint)


@pytest.fixture
def sim(fleet: Any) -> Iterator[Any]:
    """Admin access to each node's emulator; faults are cleared after every test."""

    class Sim:
        faulted = False

        def url(self, node: str) -> str:
            return str(fleet.emulator_urls[node])

        def fault(self, node: str, **spec: Any) -> None:
            self.faulted = True
            r = httpx.post(f"{self.url(node)}/_sim/faults", json=spec, timeout=5)
            r.raise_for_status()

        def state(self, node: str) -> dict[str, Any]:
            result: dict[str, Any] = httpx.get(f"{self.url(node)}/_sim/state", timeout=5).json()
            return result

        def served(self, node: str) -> int:
            return int(self.state(node)["counters"]["served"])

    sim = Sim()
    yield sim
    for node, url in fleet.emulator_urls.items():
        if node in fleet.emulators:
            httpx.delete(f"{url}/_sim/faults", timeout=5)
    _forget_faults(fleet, sim.faulted)


def _forget_faults(fleet: Any, faulted: bool) -> None:
    """Readmit what a test's faults cooled down and, after a test that injected faults,
    forget the latencies they taught (the router's failure memory and learned
    performance outlive the test: a slow fault on beta would make later tests' hot node
    lose to a warm one), then wait until the ingress's mirror holds the router's view
    without them."""
    import ray

    from actors import NAMESPACE, ROUTER_NAME
    from actors.naming import get_named
    from launch.localray import wait_until

    router = get_named(ROUTER_NAME, NAMESPACE)
    if router is None:
        return
    changed = ray.get(router.forget_failures.remote(), timeout=10)
    if faulted:
        changed += ray.get(router.forget_learning.remote(), timeout=10)
    if not changed:
        return
    version = fleet.status()["view_version"]
    wait_until(
        lambda: fleet.status().get("ingress_view_version", -1) >= version,
        10,
        "the ingress to forget the failures",
    )
