"""The admin token on the head: generated on the first head deploy (or taken from
``FLEET_ADMIN_TOKEN``) and put into the settings the endpoint is deployed with."""

from __future__ import annotations

from pydantic import SecretStr

from herd.guard.credentials import admin_token_path, ensure_admin_token
from herd.settings import Settings


def with_admin_token(settings: Settings) -> tuple[Settings, str | None]:
    """``settings`` carrying the admin token, and the token itself when this call just
    generated it (to be shown once); None when it existed already."""
    token, created = ensure_admin_token(settings)
    updated = settings.model_copy(update={"admin_token": SecretStr(token)})
    return updated, (token if created else None)


def announce(settings: Settings, token: str) -> str:
    """The one time a generated token is printed."""
    return (
        f"admin token (generated, kept in {admin_token_path(settings.data_dir)}, mode 0600; "
        f"`herd admin-token` shows it again):\n  {token}\n"
        "send it as 'Authorization: Bearer <token>' for pulls, deletes and settings, "
        "or log in at /dashboard/login"
    )
