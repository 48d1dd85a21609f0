"""Turn Ray's exceptions into the herd error hierarchy (one place)."""

from __future__ import annotations

from ray import exceptions as rex

from herd.errors import BackendTimeout, HerdError, NodeUnavailable


def herd_cause(exc: BaseException) -> HerdError | None:
    """The herd error an actor raised, carried by Ray's exception (None if none)."""
    if isinstance(exc, HerdError):
        return exc
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, HerdError) else None


def unwrap(exc: BaseException, node_id: str | None = None) -> HerdError:
    """The herd error behind a Ray exception; a dead or unreachable actor is NodeUnavailable."""
    cause = herd_cause(exc)
    if cause is not None:
        return cause
    where = f" ({node_id})" if node_id else ""
    if isinstance(exc, rex.GetTimeoutError | TimeoutError):
        return BackendTimeout(f"node did not answer in time{where}")
    if isinstance(exc, rex.RayActorError | rex.ActorUnavailableError | rex.NodeDiedError):
        return NodeUnavailable(f"node actor is gone{where}: {type(exc).__name__}")
    if isinstance(exc, rex.RayTaskError):
        return NodeUnavailable(f"node failed{where}: {getattr(exc, 'cause', None) or exc}")
    return NodeUnavailable(f"{type(exc).__name__}{where}: {exc}")
