"""Context protection: keep a request's ``num_ctx`` from reloading a loaded model.

Ollama reloads a model whenever a request's ``num_ctx`` differs from the window it is
loaded with, which for an 89 GB model means minutes. Given the chosen node, the body's
``options`` and the request's estimated tokens, :func:`protect_context` says what the
dispatcher should send (``FLEET_CONTEXT_PROTECTION``):

* ``strip`` (default): drop ``num_ctx`` when the loaded window already holds the
  request (estimated prompt tokens + ``num_predict``). When the request truly needs
  more than the loaded window, switch to a larger already-loaded model of the same
  category (same family first) whose window holds it, if there is one (``upgraded``);
  otherwise keep ``num_ctx`` (the reload is genuinely needed).
  ``upgrade_node`` says where the stand-in is loaded: when it is not the chosen node
  the dispatcher re-routes with ``decide(..., models=[upgrade_model])``.
* ``warn``: change nothing, but say what ``strip`` would have done (``warned``; a
  possible upgrade is named but must not be applied).
* ``passthrough``: change nothing.

A model that is not loaded on the chosen node loads with whatever ``num_ctx`` the
request has: nothing to protect.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from herd.domain import LoadedModel, NodeHeartbeat, canonical_model
from herd.scoring.query import positive_int
from herd.taxonomy import group_of

ContextMode = Literal["strip", "warn", "passthrough"]
ContextAction = Literal["none", "stripped", "upgraded", "kept", "warned"]


@dataclass(frozen=True, slots=True)
class ContextProtection:
    options: Mapping[str, Any]  # the options to send (a copy; unchanged unless stripped)
    action: ContextAction
    note: str = ""
    upgrade_model: str | None = None  # serve this loaded model instead ("upgraded")
    upgrade_node: str | None = None  # where it is loaded (the chosen node when possible)


@dataclass(frozen=True, slots=True)
class _Upgrade:
    model: str
    node: str
    window: int


def find_upgrade(
    model: str, need: int, chosen: NodeHeartbeat, others: Iterable[NodeHeartbeat] = ()
) -> _Upgrade | None:
    """A loaded model of the same category whose window holds ``need`` tokens: on the
    chosen node first, then on ``others``; same family first, then the smallest window
    that fits, then the name."""
    key = canonical_model(model)
    wanted = chosen.models_by_key.get(key)
    category = group_of(model, wanted)
    family = wanted.family.lower() if wanted else ""
    best: tuple[tuple[int, bool, int, str, str], _Upgrade] | None = None
    nodes = [chosen, *sorted((o for o in others if o.node_id != chosen.node_id), key=_node_id)]
    for rank_, hb in enumerate(nodes):
        for other, loaded in hb.loaded_by_key.items():
            if other == key or loaded.context_length < need or loaded.context_length <= 0:
                continue
            disk = hb.models_by_key.get(other)
            if group_of(loaded.name, disk) != category:
                continue
            same = bool(family) and disk is not None and disk.family.lower() == family
            pref = (min(rank_, 1), not same, loaded.context_length, other, hb.node_id)
            if best is None or pref < best[0]:
                best = (pref, _Upgrade(loaded.name, hb.node_id, loaded.context_length))
    return best[1] if best else None


def _node_id(hb: NodeHeartbeat) -> str:
    return hb.node_id


def protect_context(
    options: Mapping[str, Any] | None,
    model: str,
    node: NodeHeartbeat,
    estimated_tokens: int,
    mode: ContextMode = "strip",
    others: Iterable[NodeHeartbeat] = (),
) -> ContextProtection:
    """What to do with ``options.num_ctx`` for ``model`` on the chosen ``node``."""
    opts = dict(options or {})
    if mode == "passthrough":
        return ContextProtection(opts, "none")
    loaded: LoadedModel | None = node.loaded_by_key.get(canonical_model(model))
    if loaded is None or loaded.context_length <= 0:
        return ContextProtection(opts, "none")
    window = loaded.context_length
    requested = positive_int(opts.get("num_ctx"))
    need = max(0, estimated_tokens) + (positive_int(opts.get("num_predict")) or 0)
    if need <= window:
        if requested is None or requested == window:
            return ContextProtection(opts, "none")
        note = (
            f"num_ctx {requested} would reload {model} (loaded with {window}); "
            f"~{need} tokens fit the loaded window"
        )
        if mode == "warn":
            return ContextProtection(opts, "warned", note)
        opts.pop("num_ctx", None)
        return ContextProtection(opts, "stripped", note + ": num_ctx dropped")
    # The request truly needs more than the loaded window.
    upgrade = find_upgrade(model, need, node, others)
    short = f"~{need} tokens exceed the {window}-token window {model} is loaded with"
    if upgrade is None:
        if mode == "warn":
            return ContextProtection(opts, "warned", short + "; no larger loaded model")
        if requested is None:  # nothing to keep: Ollama truncates the prompt
            return ContextProtection(opts, "none", short + "; no larger loaded model")
        return ContextProtection(opts, "kept", short + "; no larger loaded model, num_ctx kept")
    where = f"{upgrade.model} ({upgrade.window} tokens, on {upgrade.node})"
    if mode == "warn":
        return ContextProtection(
            opts, "warned", f"{short}; {where} would fit", upgrade.model, upgrade.node
        )
    opts.pop("num_ctx", None)
    return ContextProtection(
        opts, "upgraded", f"{short}; upgraded to {where}", upgrade.model, upgrade.node
    )
