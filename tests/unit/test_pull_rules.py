"""What a pull must pass (herd/dispatch/pull_checks.py, herd/dispatch/model_ops.py,
auto_pull): the registry allow-list before any node is asked, the disk of the node it
goes to; and one pull per node and model (herd/node/pulls.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import replace
from typing import Any

import pytest
from dispatch_fakes import heartbeat, request, running
from test_dispatch_models import auto_pull_on

from herd.dispatch.pull_checks import check_registry, model_registry
from herd.errors import BackendError, BackendTimeout, Forbidden, ModelNotFound, NoCapacity
from herd.node.pulls import NodePulls
from herd.sim.testing import wait_for

GIB = 1024**3


# --- the registry a name pulls from ---------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "registry"),
    [
        ("llama3:8b", "registry.ollama.ai"),
        ("llama3", "registry.ollama.ai"),
        ("library/x", "registry.ollama.ai"),
        ("library/x:latest", "registry.ollama.ai"),
        ("registry.ollama.ai/library/llama3:8b", "registry.ollama.ai"),
        ("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M", "hf.co"),
        ("HF.CO/user/repo", "hf.co"),
        ("10.0.0.5:8080/x/y", "10.0.0.5:8080"),
        ("10.0.0.5:8080/x/y:tag", "10.0.0.5:8080"),
        # two parts: Ollama reads the first as a namespace on its own registry
        ("10.0.0.5:8080/y", "registry.ollama.ai"),
    ],
)
def test_the_registry_of_a_name_is_read_as_ollama_reads_it(name: str, registry: str) -> None:
    assert model_registry(name) == registry


@pytest.mark.parametrize(
    "name",
    [
        "http://10.0.0.5/x/y",
        "https://hf.co/u/r",
        "user@10.0.0.5/x/y",
        "a/b/c/d",
        "/x/y",
        "x//y",
        "x/y/",
        "evil.example/x/y z",
        "llama3@sha256:abc",
        "",
    ],
)
def test_names_that_cannot_be_read_safely_have_no_registry(name: str) -> None:
    assert model_registry(name) is None


def test_only_allowed_registries_pass() -> None:
    assert check_registry("registry.ollama.ai", "llama3:8b") == "registry.ollama.ai"
    assert check_registry("registry.ollama.ai, HF.co", "hf.co/u/r:Q4") == "hf.co"
    with pytest.raises(Forbidden, match=r"pulls from '10\.0\.0\.5:8080' are not allowed") as e:
        check_registry("registry.ollama.ai", "10.0.0.5:8080/x/y")
    assert e.value.status == 403 and "FLEET_PULL_REGISTRIES: registry.ollama.ai" in e.value.message
    with pytest.raises(Forbidden, match="cannot pull"):
        check_registry("registry.ollama.ai", "http://10.0.0.5/x/y")
    with pytest.raises(Forbidden):  # an empty allow-list allows nothing
        check_registry("", "llama3")


# --- model_ops.pull: refused before any node is asked ---------------------------------------
FLEET = (
    heartbeat("a", loaded=["tiny:1b"], memory_available=2 * GIB),
    heartbeat("b", models=["tiny:1b"], memory_available=6 * GIB),
)


async def test_a_pull_from_a_registry_not_allowed_reaches_no_node() -> None:
    async with running(*FLEET) as f:
        for insecure in (False, True):
            with pytest.raises(Forbidden):
                await f.d.models.pull("10.0.0.5:8080/x/y", insecure=insecure)
            with pytest.raises(Forbidden):
                await f.d.models.pull("10.0.0.5:8080/x/y", node="a", insecure=insecure)
        assert f.nodes.pulls == []
        started = await f.d.models.pull("fresh:1b", insecure=True)  # allowed: goes ahead
        assert [line async for line in started.rest][-1] == {"status": "success"}
        assert f.nodes.pulls == [("b", "fresh:1b", True)]


async def test_other_registries_can_be_allowed() -> None:
    async with running(*FLEET, pull_registries="registry.ollama.ai,hf.co") as f:
        started = await f.d.models.pull("hf.co/u/r:Q4_K_M")
        assert started.node == "b" and f.nodes.pulls == [("b", "hf.co/u/r:Q4_K_M", False)]


async def test_auto_pull_obeys_the_allow_list() -> None:
    async with running(*FLEET) as f:
        await auto_pull_on(f)
        with pytest.raises(ModelNotFound, match="not allowed") as e:
            await f.d.complete(request("10.0.0.5:8080/x/y"))
        assert e.value.status == 404 and f.nodes.pulls == []


# --- the disk of the node a pull goes to ------------------------------------------------------
def disk(hb: Any, free: int | None) -> Any:
    return replace(hb, disk_free=free)


async def test_a_pull_goes_to_a_node_with_room_for_it() -> None:
    # b has the most free memory but not the disk: the pull goes to a
    beats = (disk(FLEET[0], 50 * GIB), disk(FLEET[1], 1 * GIB))
    async with running(*beats) as f:
        started = await f.d.models.pull("fresh:1b")
        assert started.node == "a"


async def test_no_node_with_room_is_a_503_that_says_why() -> None:
    beats = (disk(FLEET[0], GIB // 2), disk(FLEET[1], 1 * GIB))
    async with running(*beats) as f:
        with pytest.raises(NoCapacity) as e:
            await f.d.models.pull("fresh:1b")
        msg = e.value.message
        assert e.value.status == 503 and "node 'b' has 1.0 GiB of disk free" in msg
        assert "size is unknown" in msg and "FLEET_NODE_PULL_RESERVE_BYTES" in msg
        with pytest.raises(NoCapacity, match=r"node 'a' has 0\.5 GiB"):
            await f.d.models.pull("fresh:1b", node="a")
        assert f.nodes.pulls == []


async def test_the_catalog_size_of_a_model_counts() -> None:
    # c holds big:70b (40 GiB); a has 30 GiB free: too little for it, enough for others
    big = replace(
        heartbeat("c", models=["big:70b"], backend="llamacpp"),
        models=(replace(heartbeat("c", models=["big:70b"]).models[0], size=40 * GIB),),
    )
    beats = (disk(FLEET[0], 30 * GIB), big)
    async with running(*beats, node={"pull_reserve_bytes": GIB}) as f:
        with pytest.raises(NoCapacity, match=r"needs 41.0 GiB \(40.0 GiB for the model"):
            await f.d.models.pull("big:70b", node="a")
        assert (await f.d.models.pull("small:1b", node="a")).node == "a"


async def test_a_re_pull_and_an_unknown_disk_are_not_checked() -> None:
    beats = (disk(FLEET[0], 0), disk(FLEET[1], None))
    async with running(*beats) as f:
        assert (await f.d.models.pull("tiny:1b", node="a")).node == "a"  # a holds it
        assert (await f.d.models.pull("fresh:1b", node="b")).node == "b"  # b reports none


# --- one pull per node and model ------------------------------------------------------------
class Source:
    """A backend pull: progress lines released one by one by the test."""

    def __init__(self) -> None:
        self.started = 0
        self.closed = 0
        self.lines: asyncio.Queue[dict[str, Any] | BaseException | None] = asyncio.Queue()

    async def pull(self) -> AsyncGenerator[dict[str, Any], None]:
        self.started += 1
        try:
            while (item := await self.lines.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.closed += 1


async def take(gen: AsyncGenerator[dict[str, Any], None], n: int) -> list[dict[str, Any]]:
    return [await anext(gen) for _ in range(n)]


async def test_a_second_pull_of_a_model_joins_the_running_one() -> None:
    pulls, src = NodePulls("node n", stall=30.0), Source()
    first = pulls.join("fresh:1b", src.pull).follow()
    layer = {"status": "pulling abc", "digest": "sha256:abc", "total": 100}
    for line in ({"status": "pulling manifest"}, layer, {**layer, "completed": 50}):
        src.lines.put_nowait(line)
        assert await anext(first) == line  # the first follower sees every line
    # the second pull of the same model (another spelling) gets the progress so far,
    # one line per step, then the same lines as the first
    second = pulls.join("FRESH:1b", src.pull).follow()
    assert await take(second, 2) == [{"status": "pulling manifest"}, {**layer, "completed": 50}]
    assert pulls.running() == ["fresh:1b"] and src.started == 1
    src.lines.put_nowait({"status": "success"})
    src.lines.put_nowait(None)
    assert [line async for line in first] == [{"status": "success"}]
    assert [line async for line in second] == [{"status": "success"}]
    assert src.started == 1 and src.closed == 1 and pulls.running() == []
    # once it ended, a new pull starts afresh
    third = pulls.join("fresh:1b", src.pull).follow()
    src.lines.put_nowait({"status": "success"})
    src.lines.put_nowait(None)
    assert [line async for line in third] == [{"status": "success"}] and src.started == 2


async def test_every_follower_gets_the_error() -> None:
    pulls, src = NodePulls("node n", stall=30.0), Source()
    a = pulls.join("m", src.pull).follow()
    b = pulls.join("m", src.pull).follow()
    src.lines.put_nowait({"status": "pulling manifest"})
    await take(a, 1)
    await take(b, 1)
    src.lines.put_nowait(BackendError("no space left on device", retryable=False))
    for follower in (a, b):
        with pytest.raises(BackendError, match="no space left"):
            await anext(follower)


async def test_a_pull_with_no_progress_is_stopped_by_its_stall_limit() -> None:
    pulls, src = NodePulls("node n", stall=0.05), Source()
    follower = pulls.join("m", src.pull).follow()
    src.lines.put_nowait({"status": "pulling manifest"})
    await take(follower, 1)
    with pytest.raises(BackendTimeout, match=r"no progress for 0\.05s") as e:
        await anext(follower)  # the source never sends another line
    assert "FLEET_NODE_PULL_STALL_TIMEOUT" in e.value.message and e.value.status == 503
    assert src.closed == 1 and pulls.running() == []


async def test_a_pull_nobody_follows_any_more_is_stopped() -> None:
    pulls, src = NodePulls("node n", stall=30.0), Source()
    a = pulls.join("m", src.pull).follow()
    b = pulls.join("m", src.pull).follow()
    src.lines.put_nowait({"status": "pulling manifest"})
    await take(a, 1)
    await take(b, 1)
    await a.aclose()
    assert src.closed == 0  # b still follows it
    await b.aclose()
    await wait_for(lambda: src.closed == 1)
    assert pulls.running() == []
