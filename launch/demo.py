"""``herd demo``: the embedded default, a real one-box fleet on 127.0.0.1.

It starts several Ray nodes on this machine (``launch.localfleet``): the head hosts the
router, the Serve endpoint and two llama.cpp nodes, one with the packaged chat model
smollm2:135m (and the real media engines), one with gemma3:270m (a base model, for text
continuation); each worker Ray node hosts a NodeActor over an Ollama emulator with its
own device profile. Then it sends real requests in both dialects, prints where each went,
and keeps the endpoint up until Ctrl-C.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from herd.errors import FleetUnavailable
from herd.settings import Settings
from launch.localray import port_open

# The smol box also runs the real media engines (loaded on first use).
MEDIA_ENGINES = "sentence-transformers,faster-whisper,diffusers"
CHAT_MODEL = "smollm2:135m"  # the embedded default: instruction-tuned, answers and stops
# (name, backend, emulator profile or packaged llama.cpp model, Ray node it shares)
DEMO_FLEET: tuple[tuple[str, str, str, str | None], ...] = (
    ("smol-box", "llamacpp", CHAT_MODEL, None),
    ("gemma-box", "llamacpp", "gemma3:270m", "smol-box"),  # a second server on that machine
    ("mac-studio", "sim", "mac-studio", None),
    ("gaming-pc", "sim", "gaming-pc", None),
    ("laptop", "sim", "laptop", None),
)


def _say(message: str) -> None:
    print(message, flush=True)


DEMO_REQUESTS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    # The README's first example: no token limit, the model ends its answer itself.
    (
        "ollama",
        "/api/chat",
        {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "Hello!"}], "stream": False},
    ),
    (
        "openai",
        "/v1/chat/completions",
        {
            "model": CHAT_MODEL,
            "messages": [{"role": "user", "content": "Say hello to the herd in one sentence."}],
            "max_tokens": 48,
        },
    ),
    # gemma3 270M is a base model: it continues text (raw, no chat template).
    (
        "ollama",
        "/api/generate",
        {
            "model": "gemma3:270m",
            "prompt": "The capital of France is",
            "raw": True,
            "stream": False,
            "options": {"num_predict": 12},
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
    ("openai", "/v1/embeddings", {"model": "all-minilm:l6-v2", "input": ["a herd of llamas"]}),
    (
        "ollama",
        "/api/generate-image",
        {"model": "tiny-sd:random", "prompt": "a llama at sunset", "width": 64, "height": 64},
    ),
)


def _summary(path: str, body: dict[str, Any]) -> tuple[str, str]:
    if path == "/v1/embeddings":
        vector = body["data"][0]["embedding"]
        return f"1 x {len(vector)} dims (sentence-transformers)", "-"
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
            if resp.status_code == 200 and resp.headers.get("content-type") == "image/png":
                row.update(tokens="-", reply=f"{len(resp.content)} bytes of PNG (diffusers)")
            elif resp.status_code == 200:
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
    from launch.localfleet import LocalFleet, NodeSpec

    settings = settings.model_copy(
        update={
            "port": port or settings.port,
            "host": "127.0.0.1",
            "heartbeat_interval": 1.0,
            "heartbeat_timeout": 5.0,
            "heartbeat_offline": 10.0,
        }
    )
    from launch.haproxy import stop_leftover_haproxy

    for pid in stop_leftover_haproxy(settings.port):
        _say(
            f"stopped a leftover HAProxy (pid {pid}) of an earlier herd run on port {settings.port}"
        )
    if port_open(settings.port):
        raise FleetUnavailable(f"port {settings.port} is already in use (try --port)")
    specs = tuple(
        NodeSpec(
            name,
            backend,
            profile=source if backend == "sim" else "",
            ray_node=ray_node,
            engines=MEDIA_ENGINES if backend == "llamacpp" and ray_node is None else "off",
            model=source if backend == "llamacpp" else "",
        )
        for name, backend, source, ray_node in DEMO_FLEET
        if llamacpp or backend != "llamacpp"
    )
    fleet = LocalFleet(settings, specs, serve_proxy=settings.serve_proxy)
    _stop_on_sigterm()  # `kill PID` and a service manager's stop clean up like Ctrl-C
    names = ", ".join(f"{s.name} ({s.model or s.profile})" for s in specs)
    machines = sum(s.ray_node is None for s in specs)
    _say(f"starting {machines} Ray nodes on {fleet.cluster.address}: {names}")
    try:
        endpoint = fleet.start()
        _say(f"\nherd is up at {endpoint} with {len(specs)} nodes. Sending requests:\n")
        print_rows(send_demo_requests(endpoint))
        auth = " ".join(f"{k}={v}" for k, v in fleet.cluster.auth_env().items())
        _say(
            f"\nfleet status: {endpoint}/fleet/status  (or, with this Ray cluster's own"
            f" token: `{auth} herd status --address {fleet.cluster.address}`)"
        )
        _say(f"dashboard: {endpoint}/dashboard/  (traces, trends, health, settings)")
        if fleet.admin_token_created:
            from launch.admin import announce

            _say(announce(fleet.settings, fleet.admin_token_created))
        _say(f"try: curl {endpoint}/api/chat -d '{json.dumps(_CURL)}'")
        if keep_running:
            _say("\nthe endpoint stays up; press Ctrl-C to stop.")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                _say("\nstopping ...")
    finally:
        fleet.stop()
    return 0


def _stop_on_sigterm() -> None:
    import signal

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


_CURL = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "Hello!"}]}
