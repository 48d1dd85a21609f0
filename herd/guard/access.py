"""Which credential each route needs (the exact rule is the README's "Security" table).

* ``public``: ``/``, ``/api/version``, the health probes, the dashboard's login page.
* ``inference``: the inference and read routes of both dialects (``/api/*``, ``/v1/*``,
  ``/fleet/*`` reads); open unless ``FLEET_API_KEYS`` is set, then a key or the admin
  token.
* ``admin``: every mutation. Any POST/PUT/PATCH/DELETE not named an inference route is
  one (deny by default, so a new mutating route is protected before anyone lists it).
* ``traces``: the dashboard (pages, its JSON API, its events, its read-only callbacks),
  which shows client addresses, tags and errors: the admin token, unless the endpoint
  listens on loopback only (then only this machine can reach it at all). Serve's HAProxy
  ingress does not pass the client's address on, so a per-request "is it local" test
  would be blind; the bind address is the rule that cannot be spoofed.
* ``metrics``: ``GET /metrics`` (node names, models, load; no clients, no tags): like
  ``traces``, and also ``FLEET_METRICS_TOKEN``, a token that reads ``/metrics`` only
  (for Prometheus' scrape config, so it never holds the admin token).
"""

from __future__ import annotations

import json
from typing import Literal

Access = Literal["public", "inference", "admin", "traces", "metrics"]

PUBLIC_PATHS = frozenset({"/", "/api/version", "/healthz", "/readyz"})
LOGIN_PATHS = frozenset({"/dashboard/login", "/dashboard/logout"})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# POST routes that answer a request without changing the fleet (everything else that
# writes is an admin action). Keep in step with serve_app's routes; test_guard_access
# checks that every POST route of the app is classified.
INFERENCE_POSTS = frozenset(
    {
        "/api/chat",
        "/api/generate",
        "/api/embed",
        "/api/embeddings",
        "/api/generate-image",
        "/api/transcribe",
        "/api/show",
        "/v1/chat/completions",
        "/v1/responses",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/rerank",
        "/v1/images/generations",
        "/v1/audio/transcriptions",
        "/v1/audio/speech",
        "/v1/messages",
        "/v1/messages/count_tokens",
    }
)
DASH_CALLBACKS = "/dashboard/_dash-update-component"
METRICS_PATH = "/metrics"


def route_access(method: str, path: str) -> Access:
    """The credential a request needs by method and path alone (Dash callbacks are
    refined by :func:`dash_callback_access`, which needs the body)."""
    method = method.upper()
    if path in PUBLIC_PATHS and method in READ_METHODS:
        return "public"
    if path in LOGIN_PATHS:
        return "public"
    if path == "/dashboard" or path.startswith("/dashboard/"):
        if method in READ_METHODS or path == DASH_CALLBACKS:
            return "traces"
        return "admin"
    if path == METRICS_PATH and method in READ_METHODS:
        return "metrics"
    if method in READ_METHODS:
        return "inference"
    if method == "POST" and path in INFERENCE_POSTS:
        return "inference"
    return "admin"


def dash_callback_access(body: bytes, mutating_outputs: frozenset[str]) -> Access:
    """A Dash callback request is an admin action when any of its outputs belongs to a
    callback that changes the fleet (``mutating_outputs``: ``"component-id.property"``)."""
    try:
        data = json.loads(body)
    except ValueError:
        return "traces"  # Dash itself answers the malformed body
    output = data.get("output") if isinstance(data, dict) else None
    if not isinstance(output, str):
        return "traces"
    # Several outputs come as "..a.children...b.figure.." ; one as "a.children".
    parts = {p for p in output.strip(".").split("...") if p}
    return "admin" if parts & mutating_outputs else "traces"
