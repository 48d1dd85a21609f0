"""Python callers use the fleet through actor handles, without HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from .routing_support import set_loaded

pytestmark = pytest.mark.integration


def test_client_chat_embed_and_status(fleet: Any, sim: Any) -> None:
    from actors.client import connect_client

    set_loaded(fleet, sim, "gamma", "thinker:1b", False)  # beta is its only hot node

    client = connect_client(fleet.cluster.address, settings=fleet.settings)
    try:
        reply = client.chat("tiny:1b", [{"role": "user", "content": "hi"}])
        assert reply["message"]["content"] and reply["eval_count"] > 0
        assert reply["herd"]["node"] == "alpha"
        chunks = list(client.chat("thinker:1b", [{"role": "user", "content": "hi"}], stream=True))
        assert chunks[-1]["done"] and chunks[-1]["herd"]["node"] == "beta"
        assert client.embed("embedder", ["a", "b"])["embeddings"]
        status = client.fleet_status()
        assert {n["node_id"] for n in status["nodes"]} >= {"alpha", "beta", "gamma"}
        urls = [n["data_url"] for n in status["nodes"]]
        if fleet.settings.data_plane == "http":  # FLEET_DATA_PLANE=http
            assert all(u.startswith("http://") for u in urls), urls
        else:
            assert urls == [""] * len(urls)
        assert client.node("gamma").ping.remote() is not None
    finally:
        client.close()
