"""The dispatcher's steps around a decision (herd/dispatch/prep.py): VRAM-aware fallback,
context protection, and the decision naming the model that really serves."""

from __future__ import annotations

from typing import Any

import pytest

from herd.dispatch.prep import plan_route, settle
from herd.domain import (
    Decision,
    FleetSnapshot,
    InferenceRequest,
    LoadedModel,
    ModelOnDisk,
    NodeHeartbeat,
    NodeView,
)

QWEN8 = ModelOnDisk("qwen3:8b", family="qwen3", parameter_size="8.2B")
QWEN32 = ModelOnDisk("qwen3:32b", family="qwen3", parameter_size="32.8B")
EMBED = ModelOnDisk("nomic-embed-text:latest", family="nomic-bert", parameter_size="137M")


def node(node_id: str, loaded: dict[str, int], disk: tuple[ModelOnDisk, ...]) -> NodeView:
    hb = NodeHeartbeat(
        node_id=node_id,
        hostname=node_id,
        backend_ok=True,
        models=disk,
        loaded=tuple(LoadedModel(m, context_length=c) for m, c in loaded.items()),
    )
    return NodeView(hb, "online")


SNAP = FleetSnapshot(
    (
        node("a", {"qwen3:8b": 4096, "nomic-embed-text:latest": 2048}, (QWEN8, QWEN32, EMBED)),
        node("b", {}, (QWEN8, QWEN32)),
    ),
    0.0,
)


def req(model: str = "qwen3:32b", **over: Any) -> InferenceRequest:
    values: dict[str, Any] = {
        "request_id": "r1",
        "kind": "chat",
        "model": model,
        "body": {"model": model, "messages": []},
        "fallback_models": ("other:1b",),
        "estimated_tokens": 500,
    }
    values.update(over)
    return InferenceRequest(**values)


def decision(model: str, node_id: str = "a", requested: str | None = None) -> Decision:
    return Decision("r1", node_id, model, requested or model, 50.0, {"thermal": 50.0})


# --- before deciding: which models, in which order ---------------------------------------


def test_plain_plan_is_the_model_then_its_fallbacks() -> None:
    plan = plan_route(req(), SNAP, {"vram_fallback": False})
    assert plan.models == ("qwen3:32b", "other:1b") and plan.vram is None
    assert plan.query.prompt_tokens == 500 and plan.query.model == "qwen3:32b"


@pytest.mark.parametrize(
    ("toggles", "body_extra"),
    [
        ({"vram_fallback": True}, {}),  # the fleet opted in (dashboard toggle)
        ({}, {"vram_fallback": True}),  # the request opted in
        ({}, {"metadata": {"vram_fallback": True}}),  # ... through the SDKs' extra_body
    ],
)
def test_vram_fallback_puts_a_loaded_stand_in_first(
    toggles: dict[str, bool], body_extra: dict[str, Any]
) -> None:
    r = req(body={"model": "qwen3:32b", "messages": [], **body_extra})
    plan = plan_route(r, SNAP, toggles)
    assert plan.models == ("qwen3:8b", "qwen3:32b", "other:1b")
    assert plan.vram is not None and plan.vram.model == "qwen3:8b"


def test_no_vram_fallback_without_a_fresh_view_or_for_a_loaded_model() -> None:
    assert plan_route(req(), None, {"vram_fallback": True}).vram is None
    assert plan_route(req("qwen3:8b"), SNAP, {"vram_fallback": True}).vram is None


# --- after deciding -------------------------------------------------------------------


def test_decision_names_the_requested_model_and_flags_a_stand_in() -> None:
    settled = settle(req(), decision("qwen3:8b"), SNAP, "strip")
    assert settled.decision.model == "qwen3:8b"
    assert settled.decision.requested_model == "qwen3:32b" and settled.decision.fallback
    same = settle(req("qwen3:8b"), decision("qwen3:8b"), SNAP, "strip")
    assert not same.decision.fallback


def test_num_ctx_that_would_reload_is_stripped() -> None:
    body = {"model": "qwen3:8b", "messages": [], "options": {"num_ctx": 8192, "seed": 1}}
    settled = settle(req("qwen3:8b", body=body), decision("qwen3:8b"), SNAP, "strip")
    assert settled.req.body["options"] == {"seed": 1}
    assert settled.context is not None and settled.context.action == "stripped"


@pytest.mark.parametrize("mode", ["warn", "passthrough"])
def test_warn_and_passthrough_send_num_ctx(mode: Any) -> None:
    body = {"model": "qwen3:8b", "messages": [], "options": {"num_ctx": 8192}}
    settled = settle(req("qwen3:8b", body=body), decision("qwen3:8b"), SNAP, mode)
    assert settled.req.body["options"] == {"num_ctx": 8192}
    assert (settled.context is None) == (mode == "passthrough")


def test_embeddings_are_left_alone() -> None:
    r = req("nomic-embed-text", kind="embed", body={"input": "x", "options": {"num_ctx": 9}})
    settled = settle(r, decision("nomic-embed-text:latest"), SNAP, "strip")
    assert settled.req is r and settled.context is None


def test_upgrade_to_a_larger_window_loaded_on_the_chosen_node() -> None:
    snap = FleetSnapshot((node("a", {"qwen3:8b": 4096, "qwen3:32b": 32768}, (QWEN8, QWEN32)),), 0.0)
    r = req("qwen3:8b", estimated_tokens=10_000)
    settled = settle(r, decision("qwen3:8b"), snap, "strip")
    assert settled.context is not None and settled.context.action == "upgraded"
    assert settled.decision.model == "qwen3:32b" and settled.decision.fallback
    assert settled.decision.requested_model == "qwen3:8b"


def test_upgrade_elsewhere_is_not_applied_here() -> None:
    snap = FleetSnapshot(
        (
            node("a", {"qwen3:8b": 4096}, (QWEN8, QWEN32)),
            node("b", {"qwen3:32b": 32768}, (QWEN8, QWEN32)),
        ),
        0.0,
    )
    settled = settle(req("qwen3:8b", estimated_tokens=10_000), decision("qwen3:8b"), snap, "strip")
    assert settled.decision.model == "qwen3:8b"
    assert settled.context is not None and settled.context.action == "kept"
