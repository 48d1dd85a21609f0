"""Turn Ray's exceptions into the herd error hierarchy (one place)."""

from __future__ import annotations

from ray import exceptions as rex

from herd.errors import BackendTimeout, HerdError, NodeUnavailable


def unwrap(exc: BaseException, node_id: str | None = None) -> HerdError:
    """The herd error behind a Ray exception; a dead or unreachable actor is NodeUnavailable."""
    if isinstance(exc, HerdError):
        return exc
    cause = getattr(exc, "cause", None)
    if isinstance(cause, HerdError):
        return cause
    where = f" ({node_id})" if node_id else ""
    if isinstance(exc, rex.GetTimeoutError | TimeoutError):
        return BackendTimeout(f"node did not answer in time{where}")
    if isinstance(exc, rex.RayActorError | rex.ActorUnavailableError | rex.NodeDiedError):
        return NodeUnavailable(f"node actor is gone{where}: {type(exc).__name__}")
    if isinstance(exc, rex.RayTaskError):
        return NodeUnavailable(f"node failed{where}: {cause or exc}")
    return NodeUnavailable(f"{type(exc).__name__}{where}: {exc}")
