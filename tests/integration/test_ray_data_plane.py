"""Both data planes on the one shared fleet, without starting anything new.

The shared fleet runs the default plane (``FLEET_DATA_PLANE=http``: tokens over each
node's authenticated HTTP endpoint). Its NodeActors also keep the Ray streaming
generator, so a Python client whose Dispatcher is built with ``data_plane="ray"`` runs
the Ray plane against the same nodes: streaming, non-streaming and a retry before the
first chunk, each checked to have gone through the plane it names.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration

MESSAGES = [{"role": "user", "content": "Tell me about herds."}]


def _client(fleet: Any, plane: str) -> Any:
    from actors.client import connect_client

    settings = fleet.settings.model_copy(update={"data_plane": plane})
    return connect_client(fleet.cluster.address, settings=settings)


@pytest.fixture
def ray_client(fleet: Any) -> Iterator[Any]:
    client = _client(fleet, "ray")
    yield client
    client.close()


def _used_http(client: Any) -> bool:
    return bool(client.dispatcher.nodes.plane.used)  # the RayNodes port's HttpDataPlane


def test_streaming_over_the_ray_plane(ray_client: Any) -> None:
    chunks = list(ray_client.chat("tiny:1b", MESSAGES, stream=True))
    assert len(chunks) > 2 and chunks[-1]["done"] is True
    assert "".join(c["message"]["content"] for c in chunks[:-1])
    assert chunks[-1]["eval_count"] > 0 and chunks[-1]["herd"]["node"]
    generated = list(ray_client.generate("thinker:1b", "Why is the sky blue?", stream=True))
    assert generated[-1]["done"] is True and "".join(c["response"] for c in generated)
    assert not _used_http(ray_client)


def test_non_streaming_over_the_ray_plane(ray_client: Any) -> None:
    reply = ray_client.chat("tiny:1b", MESSAGES)
    assert reply["done"] is True and reply["message"]["content"]
    assert reply["eval_count"] > 0 and reply["herd"]["retries"] == 0
    assert not _used_http(ray_client)


@pytest.mark.parametrize("stream", [True, False], ids=["streaming", "non-streaming"])
def test_a_failure_before_the_first_chunk_moves_over_the_ray_plane(
    ray_client: Any, sim: Any, stream: bool
) -> None:
    reply = _retried_once(ray_client, sim, stream)
    assert reply["done"] is True and reply["herd"]["retries"] == 1
    assert not _used_http(ray_client)


def test_the_shared_fleet_streams_over_http_by_default(fleet: Any) -> None:
    client = _client(fleet, fleet.settings.data_plane)
    try:
        chunks = list(client.chat("tiny:1b", MESSAGES, stream=True))
        assert chunks[-1]["done"] is True
        reply = client.chat("tiny:1b", MESSAGES)
        assert reply["done"] is True and reply["message"]["content"]
        # FLEET_DATA_PLANE=ray runs this whole suite on the Ray plane instead.
        assert _used_http(client) == (fleet.settings.data_plane == "http")
    finally:
        client.close()


def _retried_once(client: Any, sim: Any, stream: bool) -> dict[str, Any]:
    """Make the node ``client`` picks for tiny:1b fail before its first chunk once and
    return the reply that moved. Where tiny:1b goes depends on the routing engine's
    state, so the node is looked up first and the lookup repeated if routing changed
    its mind in between."""
    for _ in range(3):
        node = client.chat("tiny:1b", MESSAGES)["herd"]["node"]
        sim.fault(node, kind="fail_before", model="tiny:1b", count=1, status=500)
        if stream:
            chunks = list(client.chat("tiny:1b", MESSAGES, stream=True))
            reply = {**chunks[-1], "content": "".join(c["message"]["content"] for c in chunks)}
        else:
            reply = client.chat("tiny:1b", MESSAGES)
            reply["content"] = reply["message"]["content"]
        assert reply["content"]
        if reply["herd"]["retries"]:
            assert reply["herd"]["node"] != node
            return dict(reply)
        httpx.delete(f"{sim.url(node)}/_sim/faults", timeout=5)  # routed elsewhere: again
    raise AssertionError("tiny:1b never went to the node that was made to fail")
