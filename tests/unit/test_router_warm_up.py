"""A restarted router knows no node until their next heartbeats: for its warm-up an
unknown model waits for them instead of answering 404 (then it is a 404 again)."""

from __future__ import annotations

import asyncio
import time

import pytest
from test_router_core import hb, make_settings

from herd.errors import ModelNotFound
from herd.routing.core import RouterCore


async def test_a_model_heard_of_during_the_warm_up_is_served() -> None:
    core = RouterCore(make_settings(), clock=time.time, warm_up=30.0)
    task = asyncio.create_task(core.acquire("r1", ["tiny:1b"]))
    await asyncio.sleep(0)  # the request is waiting for the fleet's first heartbeats
    assert not task.done()
    core.heartbeat(hb("other", models=("big:7b",)))  # not it: keeps waiting
    await asyncio.sleep(0)
    assert not task.done()
    core.heartbeat(hb("a", models=("tiny:1b",)))
    decision = await asyncio.wait_for(task, timeout=5)
    assert decision.node_id == "a"


async def test_unknown_after_the_warm_up_is_404() -> None:
    core = RouterCore(make_settings(), clock=time.time, warm_up=0.2)
    core.heartbeat(hb("a", models=("tiny:1b",)))
    with pytest.raises(ModelNotFound):
        await asyncio.wait_for(core.acquire("r1", ["ghost:1b"]), timeout=5)
    # Past the warm-up, an unknown model is a 404 at once, as before.
    with pytest.raises(ModelNotFound):
        await asyncio.wait_for(core.acquire("r2", ["ghost:1b"]), timeout=0.5)


async def test_a_fresh_router_has_no_warm_up() -> None:
    core = RouterCore(make_settings(), clock=time.time)
    with pytest.raises(ModelNotFound):
        await asyncio.wait_for(core.acquire("r1", ["tiny:1b"]), timeout=0.5)
