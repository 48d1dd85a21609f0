"""A node whose backend is down reports no models; the router still knows them, so a
request for a model only that node has waits in the holding queue instead of a 404."""

from __future__ import annotations

import asyncio

import pytest

from herd.errors import ModelNotFound
from herd.routing.core import RouterCore
from herd.sim.testing import wait_for
from tests.unit.test_router_core import Clock, hb, make_settings


@pytest.fixture
def core() -> RouterCore:
    return RouterCore(make_settings(), clock=Clock())


async def test_backend_down_node_keeps_its_models_known_and_requests_wait(
    core: RouterCore,
) -> None:
    core.heartbeat(hb("gamma", models=("coder:1b",), loaded=("coder:1b",)))
    core.heartbeat(hb("gamma", backend_ok=False))  # a failed probe lists nothing
    assert core.known_model("coder:1b") and core.known_model("CODER:1b")
    task = asyncio.create_task(core.acquire("r1", ["coder:1b"]))
    await wait_for(lambda: core.waiting == 1 or task.done(), timeout=5)
    assert not task.done(), task
    core.heartbeat(hb("gamma", models=("coder:1b",), loaded=("coder:1b",)))
    decision = await asyncio.wait_for(task, timeout=5)
    assert (decision.node_id, decision.model) == ("gamma", "coder:1b")


async def test_a_model_the_backend_no_longer_lists_is_404(core: RouterCore) -> None:
    core.heartbeat(hb("gamma", models=("coder:1b",)))
    core.heartbeat(hb("gamma", models=("tiny:1b",)))  # deleted while the backend was up
    assert not core.known_model("coder:1b")
    with pytest.raises(ModelNotFound):
        await core.acquire("r1", ["coder:1b"])


async def test_a_forgotten_node_takes_its_models_with_it(core: RouterCore) -> None:
    core.heartbeat(hb("delta", models=("solo:1b",)))
    core.heartbeat(hb("delta", backend_ok=False))
    core.forget_node("delta")
    assert not core.known_model("solo:1b")
    assert core.status()["nodes"] == []
    with pytest.raises(ModelNotFound):
        await core.acquire("r1", ["solo:1b"])
