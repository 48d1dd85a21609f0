"""One error hierarchy for the whole project.

Every error is picklable (plain constructor arguments) so it crosses Ray actor
boundaries intact. Each HTTP dialect maps these in exactly one place
(:mod:`herd.convert.errors`, used by every HTTP surface: the API routes and the
dashboard's JSON API); ``status`` is the HTTP status that mapping uses.
"""

from __future__ import annotations


class HerdError(Exception):
    """Base class. ``status`` is the HTTP status; ``code`` a short machine tag."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), self.message, self.retry_after))


def _rebuild(cls: type[HerdError], message: str, retry_after: float | None) -> HerdError:
    return cls(message, retry_after=retry_after)


class BadRequest(HerdError):
    """The request itself is wrong (malformed JSON, wrong types, bad values)."""

    status = 400
    code = "invalid_request"


class Unauthorized(HerdError):
    """No valid credential: an inference key or the admin token (``WWW-Authenticate``)."""

    status = 401
    code = "unauthorized"


class Forbidden(HerdError):
    """Refused whatever the credential: a foreign browser Origin, a Host not allowed (DNS
    rebinding), a registry outside the pull allow-list."""

    status = 403
    code = "forbidden"


class NotFound(HerdError):
    """The thing a request names does not exist (a trace, a benchmark run, a route)."""

    status = 404
    code = "not_found"


class ModelNotFound(NotFound):
    """No node in the fleet has the model, loaded or on disk."""

    status = 404
    code = "model_not_found"


class PayloadTooLarge(HerdError):
    status = 413
    code = "payload_too_large"


class Unprocessable(HerdError):
    status = 422
    code = "unprocessable"


class RateLimited(HerdError):
    status = 429
    code = "rate_limited"


class NoCapacity(HerdError):
    """Nodes have the model but none can take the request (after the holding queue)."""

    status = 503
    code = "no_capacity"


class BackendError(HerdError):
    """A node's backend failed (connection refused, 5xx, broken stream)."""

    status = 502
    code = "backend_error"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        retryable: bool = True,
        backend_status: int | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.retryable = retryable
        self.backend_status = backend_status

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_backend,
            (type(self), self.message, self.retry_after, self.retryable, self.backend_status),
        )


def _rebuild_backend(
    cls: type[BackendError],
    message: str,
    retry_after: float | None,
    retryable: bool,
    backend_status: int | None,
) -> BackendError:
    return cls(message, retry_after=retry_after, retryable=retryable, backend_status=backend_status)


class BackendTimeout(BackendError):
    """A backend or node stayed silent past a time limit; the message names the limit
    (503: 504 is not a status herd answers)."""

    status = 503
    code = "backend_timeout"


class NodeUnavailable(BackendError):
    """The node (its actor or Ray node) is gone or unreachable."""

    status = 503
    code = "node_unavailable"


class Rebalanced(NodeUnavailable):
    """A request still waiting for a slot on a node was handed back (rebalancer, drain):
    nothing reached the client yet, so the dispatcher routes it again elsewhere without
    counting a retry."""

    code = "rebalanced"


class FleetUnavailable(HerdError):
    """The router or the cluster itself cannot be reached."""

    status = 503
    code = "fleet_unavailable"


class ConfigError(HerdError):
    """Invalid settings; shown to the user as one readable line."""

    status = 500
    code = "config_error"
