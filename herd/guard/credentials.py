"""The admin token and the inference keys: reading them from a request, comparing them
in constant time, the dashboard's session cookie, and the token file in the data dir.

When ``FLEET_ADMIN_TOKEN`` is unset the first head deploy generates one into
``<data dir>/admin-token`` (created with mode 0600, never rewritten) and prints it once;
``herd admin-token`` shows it again.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from herd.settings import Settings

SESSION_COOKIE = "herd_admin"
_SESSION_LABEL = b"herd-dashboard-session-v1"

Role = Literal["admin", "key", "metrics", "anonymous"]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request is: the admin, the holder of a named inference key, the holder of
    the metrics token (``/metrics`` only), or anonymous."""

    role: Role = "anonymous"
    key_name: str | None = None

    @property
    def admin(self) -> bool:
        return self.role == "admin"


ANONYMOUS = Caller()
# The caller of the request being handled, set by the ingress's guard.
current_caller: contextvars.ContextVar[Caller] = contextvars.ContextVar(
    "herd_caller", default=ANONYMOUS
)


def admin_token_path(data_dir: Path) -> Path:
    return data_dir / "admin-token"


def read_admin_token(settings: Settings) -> str | None:
    """``FLEET_ADMIN_TOKEN``, else the data dir's token file, else None."""
    if settings.admin_token is not None:
        return settings.admin_token.get_secret_value().strip()
    path = admin_token_path(settings.data_dir)
    try:
        token = path.read_text().strip()
    except OSError:
        return None
    return token or None


def ensure_admin_token(settings: Settings) -> tuple[str, bool]:
    """The admin token, generated into the data dir when there is none yet.
    Returns ``(token, created)``; ``created`` is True only for the call that wrote it."""
    existing = read_admin_token(settings)
    if existing:
        return existing, False
    path = admin_token_path(settings.data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another deploy won the race: use its token
        return path.read_text().strip(), False
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    return token, True


def session_value(admin_token: str) -> str:
    """The dashboard session cookie: derived from the token (valid on every replica,
    void as soon as the token changes), never the token itself."""
    return hmac.new(admin_token.encode(), _SESSION_LABEL, hashlib.sha256).hexdigest()


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class Credentials:
    """Checks what a request presents against the admin token and the key table."""

    def __init__(
        self, admin_token: str | None, keys: dict[str, str], metrics_token: str | None = None
    ) -> None:
        self.admin_token = admin_token
        self.metrics_token = metrics_token
        self._session = session_value(admin_token) if admin_token else None
        # Compare against every key (no early exit), so timing says nothing about which.
        self._keys = list(keys.items())

    @property
    def keys_required(self) -> bool:
        return bool(self._keys)

    def caller(self, presented: list[str], session: str | None = None) -> Caller:
        """The best role any presented secret (bearer / x-api-key values) earns."""
        found: Caller = ANONYMOUS
        for secret in presented:
            if self.admin_token and _equal(secret, self.admin_token):
                return Caller("admin")
            for key, name in self._keys:
                if _equal(secret, key):
                    found = Caller("key", name)
            if self.metrics_token and _equal(secret, self.metrics_token) and found is ANONYMOUS:
                found = Caller("metrics")
        if session and self._session and _equal(session, self._session):
            return Caller("admin")
        return found


def bearer(authorization: str | None) -> str | None:
    """The credential of an ``Authorization: Bearer ...`` header (None for other schemes)."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None
