"""What the dispatcher does to a request around its routing decision, as pure functions.

First (:func:`with_aliases`): the model names the client sent become fleet models
through ``FLEET_MODEL_ALIASES`` (the one place they do; the trace keeps the name sent).

Before deciding (:func:`plan_route`): the request's features for the policies
(:class:`RouteQuery`), and the models to try in order: the requested one and its
``fallback_models``, or, with the VRAM-aware fallback on (runtime toggle, or the request
opts in with ``"vram_fallback": true``), first an already-loaded model of the same
category when the requested one is loaded nowhere.

After deciding (:func:`settle`): the decision names the model the client asked for and
whether another one serves it; context protection (``FLEET_CONTEXT_PROTECTION``) may
drop a ``num_ctx`` that would reload the loaded model, or upgrade to a larger loaded
model on the chosen node; and ``keep_alive`` is set so models loaded through herd stay
loaded (the node adds it when missing).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from herd.convert.routing import fallback_chain
from herd.domain import Decision, FleetSnapshot, InferenceRequest, canonical_model
from herd.model_names import ModelAliases
from herd.scoring import RouteQuery
from herd.scoring.context import ContextMode, ContextProtection, protect_context
from herd.scoring.vram_fallback import VramFallback, requested_in_body, vram_fallback

_CONTEXT_KINDS = ("chat", "generate")


def with_aliases(req: InferenceRequest, aliases: ModelAliases) -> InferenceRequest:
    """``req`` with its model and fallback models resolved through the aliases (a
    fallback that resolves to the model itself, or to an earlier fallback, is dropped)."""
    if not aliases:
        return req
    model = aliases.resolve(req.model)
    fallbacks = fallback_chain(model, [aliases.resolve(m) for m in req.fallback_models])
    if model == req.model and fallbacks == req.fallback_models:
        return req
    return replace(req, model=model, fallback_models=fallbacks)


@dataclass(frozen=True, slots=True)
class RoutePlan:
    models: tuple[str, ...]
    query: RouteQuery
    vram: VramFallback | None = None


def plan_route(
    req: InferenceRequest,
    snapshot: FleetSnapshot | None,
    toggles: dict[str, bool],
    exclude: frozenset[str] = frozenset(),
) -> RoutePlan:
    models = (req.model, *req.fallback_models)
    query = RouteQuery.from_request(req)
    if snapshot is None or req.kind not in ("chat", "generate", "embed", "embeddings"):
        return RoutePlan(models, query)
    enabled = toggles.get("vram_fallback", False) or requested_in_body(req.body)
    found = vram_fallback(snapshot, req.model, enabled=enabled, exclude=exclude)
    if found is None:
        return RoutePlan(models, query)
    return RoutePlan((found.model, *models), query, found)


@dataclass(frozen=True, slots=True)
class Settled:
    req: InferenceRequest
    decision: Decision
    context: ContextProtection | None = None


def settle(
    req: InferenceRequest,
    decision: Decision,
    snapshot: FleetSnapshot | None,
    mode: ContextMode,
) -> Settled:
    """The request as the node gets it and the decision as the client sees it."""
    decision = _served_as(decision, req.model)
    if snapshot is None or req.kind not in _CONTEXT_KINDS:
        return Settled(req, decision)
    nodes = {n.node_id: n.heartbeat for n in snapshot.nodes}
    chosen = nodes.get(decision.node_id)
    if chosen is None:
        return Settled(req, decision)
    options = req.body.get("options")
    result = protect_context(
        options if isinstance(options, dict) else None,
        decision.model,
        chosen,
        req.estimated_tokens,
        mode,
        others=nodes.values(),
    )
    if result.action in ("none", "kept", "warned"):
        return Settled(req, decision, result if result.action != "none" else None)
    body: dict[str, Any] = {**req.body, "options": dict(result.options)}
    if result.action == "upgraded":
        if result.upgrade_node != decision.node_id or result.upgrade_model is None:
            # The larger window is loaded elsewhere: keep the request as it is here.
            kept = replace(result, action="kept", options=options or {})
            return Settled(req, decision, kept)
        decision = _served_as(replace(decision, model=result.upgrade_model), req.model)
    return Settled(replace(req, body=body), decision, result)


def _served_as(decision: Decision, requested: str) -> Decision:
    other = canonical_model(decision.model) != canonical_model(requested)
    if decision.requested_model == requested and decision.fallback == other:
        return decision
    return replace(decision, requested_model=requested, fallback=other)
