"""Whole answers and everything around inference (herd/dispatch): complete() folding a
stream, one-chunk kinds, media jobs, model management across nodes, auto-pull, and the
dispatcher's router calls, over fake ports and a real RouterCore."""

from __future__ import annotations

import asyncio

import pytest
from dispatch_fakes import (
    Fleet,
    Reply,
    chat_reply,
    content,
    drain,
    failing,
    final,
    heartbeat,
    request,
    running,
)

from herd.dispatch.media import MediaDispatch
from herd.errors import (
    BackendError,
    BadRequest,
    FleetUnavailable,
    ModelNotFound,
    NodeUnavailable,
)
from herd.sim.testing import wait_for

TINY = "tiny:1b"
FLEET = (
    heartbeat("a", loaded=[TINY], memory_available=2 * 1024**3),
    heartbeat("b", models=[TINY], memory_available=6 * 1024**3),
)


# --- complete(): a stream folded into one answer --------------------------------------------
async def test_a_chat_stream_is_folded_into_one_body() -> None:
    async with running(*FLEET) as f:
        decision, retries, body = await f.d.complete(request(stream=False))
        assert (decision.node_id, retries) == ("a", 0)
        assert body["message"] == {"role": "assistant", "content": "Hello world"}
        assert (body["model"], body["done"], body["done_reason"]) == (TINY, True, "stop")
        assert (body["prompt_eval_count"], body["eval_count"]) == (7, 3)
        assert body["created_at"] == "2026-01-01T00:00:00Z"
        (record,) = await f.records()
        assert record.status == "ok" and record.completion_tokens == 3


async def test_a_generate_stream_is_folded_into_one_response() -> None:
    async with running(*FLEET) as f:
        chunks = [{"model": TINY, "response": w, "done": False} for w in ("Once ", "upon")]
        done = {"model": TINY, "response": "", "done": True, "eval_count": 2}
        f.nodes.script("a", Reply(first=chunks[:1], rest=[chunks[1:], [done]]))
        _, _, body = await f.d.complete(request(kind="generate"))
        assert (body["response"], body["eval_count"], "message" in body) == ("Once upon", 2, False)


async def test_complete_retries_before_the_first_chunk() -> None:
    async with running(*FLEET) as f:
        f.nodes.script("a", failing(NodeUnavailable("a is gone")))
        decision, retries, body = await f.d.complete(request())
        assert (decision.node_id, retries, body["message"]["content"]) == ("b", 1, "Hello world")


async def test_an_embed_answer_is_returned_as_is() -> None:
    async with running(heartbeat("e", loaded=["embedder:latest"])) as f:
        result = {"model": "embedder:latest", "embeddings": [[0.5, 0.25]], "total_duration": 9}
        f.nodes.script("e", Reply(first=[result]))
        decision, retries, body = await f.d.complete(request("embedder", kind="embed"))
        assert body == result and body is not result  # a copy of the node's one chunk
        assert (decision.node_id, decision.model, retries) == ("e", "embedder", 0)
        assert f.nodes.opened[0].model == "embedder"  # the node resolves the tag itself
        (answer,) = f.nodes.answers
        assert answer.exhausted and not answer.cancelled  # read to its end
        (record,) = await f.records()
        assert (record.status, record.kind) == ("ok", "embed")


async def test_a_stream_that_ends_without_done_fails_complete() -> None:
    async with running(*FLEET) as f:
        f.nodes.script("a", chat_reply(done=False))
        with pytest.raises(BackendError, match="without a final chunk") as info:
            await f.d.complete(request())
        assert not info.value.retryable and f.nodes.answers[0].cancelled
        assert f.nodes.opened_on() == ["a"]
        (outcome,) = await f.outcomes()
        assert not outcome.ok and outcome.started


async def test_an_error_chunk_fails_complete() -> None:
    async with running(*FLEET) as f:
        f.nodes.script("a", Reply(first=[content(TINY, "Hel")], rest=[[{"error": "OOM"}]]))
        with pytest.raises(BackendError, match="OOM"):
            await f.d.complete(request())


async def test_an_empty_answer_fails_complete() -> None:
    async with running(heartbeat("e", loaded=["embedder:latest"])) as f:
        f.nodes.script("e", Reply(first=[]))
        with pytest.raises(BackendError):
            await f.d.complete(request("embedder:latest", kind="embed"))
        assert f.nodes.answers[0].cancelled  # no chunk at all: not a complete answer


# --- media jobs -----------------------------------------------------------------------------
def image_reply(seed: int) -> Reply:
    return Reply(first=[{"model": "tiny-sd:random", "images": [f"png-{seed}"]}])


async def test_media_jobs_run_at_once_and_come_back_in_order() -> None:
    beats = (heartbeat(n, models=["tiny-sd:random"]) for n in "ab")
    async with running(*beats) as f:
        f.nodes.script("a", image_reply(1), image_reply(2))
        f.nodes.script("b", image_reply(3))
        jobs = [request("tiny-sd:random", kind="image", rid=f"img-{i}") for i in range(3)]
        results = await MediaDispatch(f.d).run_all(jobs)
        assert [r.decision.request_id for r in results] == ["img-0", "img-1", "img-2"]
        assert sorted(r.result["images"][0] for r in results) == ["png-1", "png-2", "png-3"]
        assert {r.decision.node_id for r in results} == {"a", "b"}  # they spread
        assert len(await f.records()) == 3


async def test_one_failed_media_job_fails_the_request_and_cancels_the_others() -> None:
    async with running(heartbeat("a", models=["tiny-sd:random"])) as f:
        f.nodes.script("a", Reply(hang=True), failing(BackendError("bad prompt", retryable=False)))
        jobs = [request("tiny-sd:random", kind="image", rid=f"img-{i}") for i in range(2)]
        with pytest.raises(BackendError, match="bad prompt"):
            await MediaDispatch(f.d).run_all(jobs)
        await wait_for(lambda: f.nodes.hanging == 0)  # the hung job was cancelled
        statuses = {r.request_id: r.status for r in await f.records()}
        assert statuses == {"img-0": "disconnected", "img-1": "error"}
        assert len(f.core.fleet.in_flight()) == 0


async def test_a_single_media_job_retries_elsewhere() -> None:
    beats = (heartbeat(n, models=["tiny-sd:random"]) for n in "ab")
    async with running(*beats) as f:
        f.nodes.script("a", failing(NodeUnavailable("a is gone")))
        (result,) = await MediaDispatch(f.d).run_all([request("tiny-sd:random", kind="image")])
        assert (result.decision.node_id, result.retries) == ("b", 1)


# --- model management -----------------------------------------------------------------------
async def test_show_asks_the_holders_loaded_first() -> None:
    async with running(*FLEET) as f:
        f.nodes.call_results[("a", "show")] = NodeUnavailable("a is gone")
        node, body = await f.d.models.show(TINY, verbose=True)
        assert (node, body) == ("b", {"modelfile": f"FROM {TINY}", "node": "b"})
        assert [(n, m, args) for n, m, args in f.nodes.calls] == [
            ("a", "show", (TINY, True)),
            ("b", "show", (TINY, True)),
        ]
        with pytest.raises(ModelNotFound):
            await f.d.models.show("nowhere:1b")


async def test_show_fails_with_the_last_holders_error() -> None:
    async with running(*FLEET) as f:
        f.nodes.call_results[("a", "show")] = NodeUnavailable("a is gone")
        f.nodes.call_results[("b", "show")] = ConnectionResetError("b reset")
        with pytest.raises(NodeUnavailable, match="node failed \\(b\\): ConnectionResetError"):
            await f.d.models.show(TINY)


async def test_pull_goes_to_the_node_with_the_most_free_memory() -> None:
    async with running(*FLEET, heartbeat("c", models=[TINY], memory_available=1024**3)) as f:
        pull = await f.d.models.pull("fresh:1b")
        assert (pull.node, pull.first) == ("b", {"status": "pulling manifest"})
        assert [line async for line in pull.rest] == [{"status": "success"}]
        assert f.nodes.pulls == [("b", "fresh:1b", False)]
        named = await f.d.models.pull("fresh:1b", node="c", insecure=True)
        assert [line async for line in named.rest] == [{"status": "success"}]
        assert f.nodes.pulls[-1] == ("c", "fresh:1b", True)
        with pytest.raises(BadRequest, match="unknown node 'zz'"):
            await f.d.models.pull("fresh:1b", node="zz")


async def test_delete_goes_to_every_holder() -> None:
    async with running(*FLEET) as f:
        assert sorted(await f.d.models.delete(TINY)) == ["a", "b"]
        f.nodes.call_results[("a", "delete")] = NodeUnavailable("a is gone")
        assert await f.d.models.delete(TINY) == ["b"]  # done where it could be
        f.nodes.call_results[("b", "delete")] = BackendError("b refused")
        with pytest.raises(NodeUnavailable, match="a is gone"):  # the first node's error
            await f.d.models.delete(TINY)
        with pytest.raises(BackendError, match="b refused"):
            await f.d.models.delete(TINY, node="b")
        with pytest.raises(BadRequest, match="unknown node"):
            await f.d.models.delete(TINY, node="zz")


async def test_a_node_call_that_does_not_answer_times_out() -> None:
    async with running(*FLEET, actor_call_timeout=0.1) as f:

        async def never(node_id: str, method: str, *args: object) -> None:
            await asyncio.Event().wait()

        f.nodes.call = never  # type: ignore[method-assign]
        with pytest.raises(BackendError, match="did not answer in time"):
            await f.d.models.call("a", "show", TINY, False)


# --- auto-pull ------------------------------------------------------------------------------
async def auto_pull_on(f: Fleet) -> None:
    f.core.set_toggles({"auto_pull": True})
    await f.synced()  # the dispatcher reads the toggle from its mirror
    assert f.d.mirror.toggles["auto_pull"]


async def test_auto_pull_pulls_a_model_nobody_has_then_routes_to_it() -> None:
    async with running(*FLEET) as f:
        await auto_pull_on(f)
        decision, retries, body = await f.d.complete(request("spare:1b"))
        assert f.nodes.pulls == [("b", "spare:1b", False)]  # the most free memory
        assert ("b", "push_heartbeat", ()) in f.nodes.calls
        assert (decision.node_id, decision.model, retries) == ("b", "spare:1b", 0)
        assert [o.model for o in f.nodes.opened] == ["spare:1b"]
        assert body["message"]["content"] == "Hello world"
        assert f.core.known_model("spare:1b")


async def test_auto_pull_that_fails_is_a_404_with_the_reason() -> None:
    async with running(*FLEET) as f:
        await auto_pull_on(f)
        f.nodes.pull_lines = [{"status": "pulling manifest"}, {"error": "file does not exist"}]
        with pytest.raises(ModelNotFound, match="file does not exist"):
            await f.d.stream(request("nowhere:1b"))
        assert f.nodes.pulls == [("b", "nowhere:1b", False)] and f.nodes.opened == []
        assert not any(m == "push_heartbeat" for _, m, _ in f.nodes.calls)


async def test_auto_pull_that_cannot_reach_the_node_is_a_404() -> None:
    async with running(*FLEET) as f:
        await auto_pull_on(f)
        f.nodes.call_results[("b", "push_heartbeat")] = NodeUnavailable("b is gone")
        with pytest.raises(ModelNotFound, match="auto-pull failed: b is gone"):
            await f.d.stream(request("spare:1b"))


async def test_without_auto_pull_an_unknown_model_is_not_pulled() -> None:
    async with running(*FLEET) as f:
        with pytest.raises(ModelNotFound):
            await f.d.stream(request("spare:1b"))
        assert f.nodes.pulls == []


# --- the dispatcher's router calls ----------------------------------------------------------
async def test_status_includes_what_this_dispatcher_started() -> None:
    async with running(*FLEET) as f:
        served = await f.d.stream(request())
        status = await f.d.status()  # flushes first: the router books the local decision
        assert status["queue"]["in_flight"] == 1
        assert status["ingress_view_version"] == f.d.mirror.version
        assert [n["node_id"] for n in status["nodes"]] == ["a", "b"]
        await drain(served.rest)
        assert (await f.d.status())["queue"]["in_flight"] == 0


async def test_router_calls_pass_results_and_errors_through() -> None:
    async with running(*FLEET) as f:
        toggles = await f.d.call_router("set_toggles", {"vram_fallback": True})
        assert toggles == {"auto_pull": False, "vram_fallback": True}
        with pytest.raises(ValueError, match="unknown toggle"):
            await f.d.call_router("set_toggles", {"nope": True})


async def test_a_silent_router_is_fleet_unavailable() -> None:
    async with running(*FLEET, actor_call_timeout=0.1) as f:
        f.router.call_hangs = True
        with pytest.raises(FleetUnavailable, match="no answer to catalog"):
            await f.d.models.catalog()
        assert f.router.forgotten == 1


async def test_a_lost_report_is_not_counted_locally_any_more() -> None:
    async with running(*FLEET) as f:
        f.router.report_error = ConnectionError("router restarting")
        served = await f.d.stream(request())
        await f.d.flush()  # does not raise: the router rebuilds from heartbeats
        assert f.router.forgotten >= 1 and f.router.reports == []
        snapshot = f.d.mirror.snapshot(f.core.clock() + 1.0)
        assert all(n.in_flight == 0 for n in snapshot.nodes)
        f.router.report_error = None
        await drain(served.rest)
        await f.d.flush()
        assert [type(e).__name__ for e in f.router.events()] == ["Outcome"]


async def test_the_final_chunk_metrics_reach_the_router() -> None:
    async with running(*FLEET) as f:
        f.nodes.script("a", Reply(first=[content(TINY, "x"), final(TINY)]))
        await drain((await f.d.stream(request())).rest)
        (outcome,) = await f.outcomes()
        assert (outcome.prompt_tokens, outcome.completion_tokens) == (7, 3)
        assert outcome.eval_s == pytest.approx(0.03) and outcome.load_s == pytest.approx(0.25)
        assert f.core.recent[-1]["completion_tokens"] == 3 and f.core.counters["ok"] == 1
