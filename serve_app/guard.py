"""The ingress's guard: every HTTP request passes here before any route runs.

In order: the ``Host`` name (DNS rebinding) and the browser ``Origin`` (403), CORS
preflights of allowed origins, the body limit (413, enforced while the body is read,
chunked bodies too), then the credential the route needs (``herd.guard.access``: 401
in the client's dialect, or the dashboard's login page). The caller (admin, a named
key, anonymous) is left in ``herd.guard.credentials.current_caller`` for the routes.
Pure ASGI, so streamed answers pass through untouched.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any

from fastapi.responses import RedirectResponse, Response

from herd.errors import Forbidden, HerdError, PayloadTooLarge, Unauthorized
from herd.guard.access import DASH_CALLBACKS, Access, dash_callback_access, route_access
from herd.guard.browser import BrowserPolicy
from herd.guard.credentials import SESSION_COOKIE, Caller, Credentials, bearer, current_caller
from herd.settings import Settings
from herd.traces.context import current_trace
from serve_app.errors import error_response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_BINDS = frozenset({"127.0.0.1", "localhost", "::1"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_CORS_METHODS = "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS"


class GuardPolicy:
    """What the guard checks against, built once per replica from the settings."""

    def __init__(
        self,
        settings: Settings,
        admin_token: str | None,
        mutating_outputs: frozenset[str] = frozenset(),
        browser: BrowserPolicy | None = None,
    ) -> None:
        token = settings.metrics_token
        metrics = token.get_secret_value().strip() if token is not None else None
        self.credentials = Credentials(admin_token, settings.api_key_table(), metrics)
        self.browser = browser or BrowserPolicy.build(settings.origins, settings.allowed_hosts)
        self.max_body = settings.max_body_bytes
        self.dashboard_max_body = settings.dashboard_max_body_bytes
        self.mutating_outputs = mutating_outputs
        # Only this machine can reach an endpoint bound to loopback: no login for reads.
        self.local_only = settings.host in LOOPBACK_BINDS or settings.host.startswith("127.")
        self._hosts: dict[str | None, bool] = {}  # Host header -> allowed (a few names)

    def host_allowed(self, host: str | None) -> bool:
        known = self._hosts.get(host)
        if known is None:
            if len(self._hosts) > 1024:  # bounded: arbitrary Host values cannot grow it
                self._hosts.clear()
            known = self._hosts[host] = self.browser.host_allowed(host)
        return known

    def needs(self, access: Access, caller: Caller) -> HerdError | None:
        """None when ``caller`` may go on; else the refusal."""
        if access == "public" or caller.admin:
            return None
        if access == "inference":
            if not self.credentials.keys_required or caller.role == "key":
                return None
            return Unauthorized(
                "this endpoint needs an API key: send it as 'Authorization: Bearer <key>' "
                "or 'x-api-key: <key>'"
            )
        if access in ("traces", "metrics") and self.local_only:
            return None
        if access == "metrics":
            if caller.role == "metrics":
                return None
            return Unauthorized(
                "/metrics needs FLEET_METRICS_TOKEN or the admin token: send "
                "'Authorization: Bearer <token>' (Prometheus: the scrape config's authorization)"
            )
        what = "the dashboard" if access == "traces" else "this action"
        return Unauthorized(
            f"{what} needs the admin token: send 'Authorization: Bearer <token>' "
            "(`herd admin-token` shows it) or log in at /dashboard/login"
        )


_WANTED = frozenset(
    {
        b"host",
        b"origin",
        b"content-length",
        b"authorization",
        b"x-api-key",
        b"cookie",
        b"accept",
        b"access-control-request-method",
        b"access-control-request-headers",
    }
)


def _headers(scope: Scope) -> dict[str, str]:
    """The request headers the guard reads (a repeated one joined with commas, so two
    Host headers never pass as one)."""
    out: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", ()):
        name_b = raw_name.lower()
        if name_b not in _WANTED:
            continue
        name, value = name_b.decode("latin-1"), raw_value.decode("latin-1")
        out[name] = f"{out[name]},{value}" if name in out else value
    return out


def _session(headers: dict[str, str]) -> str | None:
    raw = headers.get("cookie")
    if not raw:
        return None
    try:
        jar: SimpleCookie = SimpleCookie(raw)
    except Exception:  # a malformed cookie header is no session
        return None
    morsel = jar.get(SESSION_COOKIE)
    return morsel.value if morsel is not None else None


class GuardMiddleware:
    def __init__(self, app: ASGIApp, policy: Callable[[], GuardPolicy]) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = self.policy()
        path: str = scope.get("path", "")
        method: str = scope.get("method", "GET")
        headers = _headers(scope)
        host, origin = headers.get("host"), headers.get("origin")
        if not policy.host_allowed(host):
            await self._refuse(scope, receive, send, Forbidden(f"host {host!r} is not allowed"))
            return
        if not policy.browser.origin_allowed(origin, host):
            message = f"origin {origin!r} is not allowed (set FLEET_ORIGINS to allow it)"
            await self._refuse(scope, receive, send, Forbidden(message))
            return
        cross = origin is not None and origin.strip().lower() not in _own_origins(host)
        if method == "OPTIONS" and origin and "access-control-request-method" in headers:
            await _preflight(origin, headers)(scope, receive, send)
            return
        dashboard = path == "/dashboard" or path.startswith("/dashboard/")
        limit = policy.dashboard_max_body if dashboard else policy.max_body
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, receive, send, _too_large(limit))
            return
        access = route_access(method, path)
        if dashboard and method in _BODY_METHODS:
            # Small bodies (Dash callbacks, the JSON API): read whole, then replayed.
            body = await _read_all(receive, limit)
            if body is None:
                await self._refuse(scope, receive, send, _too_large(limit))
                return
            if access == "traces" and path == DASH_CALLBACKS:
                access = dash_callback_access(body, policy.mutating_outputs)
            receive = _replay(body, receive)
        elif method in _BODY_METHODS:
            receive = _limited(receive, limit)
        secrets = (bearer(headers.get("authorization")), headers.get("x-api-key"))
        presented = [value for value in secrets if value]
        caller = policy.credentials.caller(presented, _session(headers) if dashboard else None)
        refusal = policy.needs(access, caller)
        if refusal is not None and path == DASH_CALLBACKS and access == "admin":
            # A mutating Dash callback can fire without a click (a view loading its
            # current values sets the toggles it watches): answer Dash's "no update"
            # (204), so nothing changes and the page logs no error; the view says that
            # changes need the login.
            await Response(status_code=204)(scope, receive, send)
            return
        if refusal is not None:
            if dashboard and method == "GET" and "text/html" in headers.get("accept", ""):
                await RedirectResponse("/dashboard/login", status_code=303)(scope, receive, send)
                return
            await self._refuse(scope, receive, send, refusal)
            return
        if cross and origin:
            send = _with_cors(send, origin)
        if caller.key_name is not None:
            trace = current_trace.get()
            if trace is not None:  # the inference key's name, usable like a tag
                trace.caller_tags = (f"key:{caller.key_name}",)
        token = current_caller.set(caller)
        try:
            await self.app(scope, receive, send)
        finally:
            current_caller.reset(token)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, exc: HerdError) -> None:
        response = error_response(scope.get("path", ""), exc)
        if isinstance(exc, Unauthorized):
            response.headers["WWW-Authenticate"] = 'Bearer realm="herd"'
        # The trace middleware (outside this one) records the refusal like any answer.
        await response(scope, receive, send)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body is larger than {limit} bytes")


def _own_origins(host: str | None) -> tuple[str, ...]:
    if not host:
        return ()
    host = host.strip().lower()
    return (f"http://{host}", f"https://{host}")


def _preflight(origin: str, headers: dict[str, str]) -> Response:
    return Response(
        status_code=204,
        headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": _CORS_METHODS,
            "Access-Control-Allow-Headers": headers.get(
                "access-control-request-headers", "authorization, content-type"
            ),
            "Access-Control-Max-Age": "600",
            "Vary": "Origin",
        },
    )


def _with_cors(send: Send, origin: str) -> Send:
    async def cors_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [
                *message.get("headers", ()),
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-expose-headers", b"*"),
                (b"vary", b"Origin"),
            ]
        await send(message)

    return cors_send


async def _read_all(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it grows past ``limit``."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(parts)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # then the client's disconnect, when it comes

    return replay


def _limited(receive: Receive, limit: int) -> Receive:
    """``receive`` that raises 413 once the body grows past ``limit`` (a chunked body
    has no Content-Length to check up front); the route's error handler answers it."""
    size = 0

    async def limited() -> Message:
        nonlocal size
        message = await receive()
        if message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > limit:
                raise _too_large(limit)
        return message

    return limited
