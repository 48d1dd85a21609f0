"""``herd demo``: the embedded default, a real one-box fleet on 127.0.0.1.

It starts several Ray nodes on this machine (``herd.localray``): the head hosts the
router, the Serve endpoint and a node running the packaged gemma3 270M model on
llama.cpp; each worker Ray node hosts a NodeActor over an Ollama emulator with its own
device profile. Then it sends real requests in both dialects, prints where each went,
and keeps the endpoint up until Ctrl-C.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from herd.errors import FleetUnavailable
from herd.localray import LocalRay, free_port, port_open, resource_name, wait_until
from herd.settings import Settings

EMULATED = (("mac-studio", "mac-studio"), ("gaming-pc", "gaming-pc"), ("laptop", "laptop"))
LLAMACPP_NODE = "gemma-box"


def _say(message: str) -> None:
    print(message, flush=True)


@contextmanager
def emulators(names: tuple[tuple[str, str], ...]) -> Iterator[dict[str, str]]:
    procs: list[subprocess.Popen[bytes]] = []
    urls: dict[str, str] = {}
    try:
        for name, profile in names:
            port = free_port()
            cmd = [sys.executable, "-m", "herd.sim", "--port", str(port), "--profile", profile]
            procs.append(subprocess.Popen([*cmd, "--name", name], stdout=subprocess.DEVNULL))
            urls[name] = f"http://127.0.0.1:{port}"
            wait_until(lambda p=port: port_open(p), 30, f"the {name} emulator")  # type: ignore[misc]
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def node_settings(settings: Settings, name: str, **node: Any) -> Settings:
    return settings.model_copy(
        update={"node": settings.node.model_copy(update={"name": name, **node})}
    )


DEMO_REQUESTS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    (
        "openai",
        "/v1/chat/completions",
        {
            "model": "gemma3:270m",
            "messages": [{"role": "user", "content": "Say hello to the herd in one sentence."}],
            "max_tokens": 32,
        },
    ),
    (
        "ollama",
        "/api/chat",
        {
            "model": "llama3.3:70b",
            "messages": [{"role": "user", "content": "Why is the sky blue?"}],
            "stream": False,
            "options": {"num_predict": 24},
        },
    ),
    (
        "ollama",
        "/api/generate",
        {
            "model": "llama3.2:3b",
            "prompt": "Write a haiku about llamas.",
            "stream": False,
            "options": {"num_predict": 24},
        },
    ),
    (
        "openai",
        "/v1/chat/completions",
        {
            "model": "qwen3:8b",
            "messages": [{"role": "user", "content": "Name three colours."}],
            "max_tokens": 24,
        },
    ),
    ("ollama", "/api/embed", {"model": "nomic-embed-text", "input": ["herd", "of llamas"]}),
)


def _summary(path: str, body: dict[str, Any]) -> tuple[str, str]:
    if path == "/api/embed":
        vectors = body.get("embeddings") or []
        return f"{len(vectors)} x {len(vectors[0]) if vectors else 0} dims", "-"
    if path.startswith("/v1/"):
        text = body["choices"][0]["message"]["content"] or ""
        usage = body.get("usage") or {}
        return text, f"{usage.get('prompt_tokens', 0)}+{usage.get('completion_tokens', 0)}"
    text = (body.get("message") or {}).get("content") or body.get("response") or ""
    return text, f"{body.get('prompt_eval_count', 0)}+{body.get('eval_count', 0)}"


def send_demo_requests(endpoint: str) -> list[dict[str, Any]]:
    rows = []
    with httpx.Client(base_url=endpoint, timeout=120) as client:
        for dialect, path, body in DEMO_REQUESTS:
            t0 = time.perf_counter()
            resp = client.post(path, json=body)
            elapsed = time.perf_counter() - t0
            row = {
                "dialect": dialect,
                "path": path,
                "model": body["model"],
                "status": resp.status_code,
                "node": resp.headers.get("x-herd-node", "-"),
                "seconds": round(elapsed, 2),
            }
            if resp.status_code == 200:
                text, tokens = _summary(path, resp.json())
                row.update(tokens=tokens, reply=" ".join(text.split())[:60])
            else:
                row.update(tokens="-", reply=resp.text[:60])
            rows.append(row)
    return rows


def print_rows(rows: list[dict[str, Any]]) -> None:
    cols = ["dialect", "path", "model", "status", "node", "seconds", "tokens", "reply"]
    table = [cols] + [[str(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(cols))]
    for line in table:
        _say("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)))


def run_demo(
    settings: Settings, port: int | None = None, keep_running: bool = True, llamacpp: bool = True
) -> int:
    from actors.cluster import connect, ray_node_with_resource
    from actors.node import deploy_node_actor
    from actors.router import deploy_router_actor
    from actors.teardown import stop_herd
    from serve_app.app import deploy_serve

    settings = settings.model_copy(
        update={
            "port": port or settings.port,
            "host": "127.0.0.1",
            "heartbeat_interval": 1.0,
            "heartbeat_timeout": 5.0,
            "heartbeat_offline": 10.0,
        }
    )
    if port_open(settings.port):
        raise FleetUnavailable(f"port {settings.port} is already in use (try --port)")
    head = LLAMACPP_NODE if llamacpp else "router"
    cluster = LocalRay(gcs_port=free_port(), serve_proxy=settings.serve_proxy)
    _say(f"starting a local Ray cluster on {cluster.address} ...")
    try:
        cluster.start_head(head)
        for name, _profile in EMULATED:
            cluster.add_worker(name)
        with emulators(EMULATED) as urls:
            import ray

            connect(cluster.address, timeout=30)
            wait_until(
                lambda: all(ray_node_with_resource(resource_name(n)) for n, _ in EMULATED),
                90,
                "the worker Ray nodes",
                step=0.5,
            )
            head_id = ray_node_with_resource(resource_name(head))
            assert head_id is not None
            deploy_router_actor(settings, ray_node_id=head_id)
            if llamacpp:
                _say("starting llama.cpp with gemma3:270m on the head node ...")
                deploy_node_actor(node_settings(settings, head, llamacpp="on"), head, head_id)
            for name, _profile in EMULATED:
                ray_id = ray_node_with_resource(resource_name(name))
                assert ray_id is not None
                cfg = node_settings(settings, name, ollama_host=urls[name], llamacpp="off")
                deploy_node_actor(cfg, name, ray_id)
            endpoint = deploy_serve(settings)
            expected = len(EMULATED) + (1 if llamacpp else 0)
            wait_until(lambda: _online(endpoint) >= expected, 60, "every node online", 0.5)
            _say(f"\nherd is up at {endpoint} with {expected} nodes. Sending requests:\n")
            print_rows(send_demo_requests(endpoint))
            _say(f"\nfleet status: {endpoint}/fleet/status  (or `herd status`)")
            _say(f"try: curl {endpoint}/api/chat -d '{json.dumps(_CURL)}'")
            if keep_running:
                _say("\nthe endpoint stays up; press Ctrl-C to stop.")
                try:
                    while True:
                        time.sleep(3600)
                except KeyboardInterrupt:
                    _say("\nstopping ...")
            for line in stop_herd(settings, drain_timeout=10):
                _say(f"  {line}")
            ray.shutdown()
    finally:
        cluster.stop()
    return 0


_CURL = {"model": "gemma3:270m", "messages": [{"role": "user", "content": "Hello!"}]}


def _online(endpoint: str) -> int:
    try:
        status = httpx.get(f"{endpoint}/fleet/status", timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return 0
    return sum(1 for n in status.get("nodes", []) if n["status"] == "online" and n["backend_ok"])
