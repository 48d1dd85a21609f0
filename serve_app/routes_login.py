"""The dashboard's login: ``GET /dashboard/login`` (a form), ``POST /dashboard/login``
(the admin token, form-encoded: sets the session cookie), ``/dashboard/logout``.

Who may call: anyone (it is how the admin gets in). Bounds: the body is a few bytes of
form (the guard's dashboard body limit), one constant-time comparison per attempt. The
cookie is ``HttpOnly; SameSite=Strict`` on ``/dashboard`` and holds a value derived from
the token, never the token itself (``herd.guard.credentials.session_value``).
"""

from __future__ import annotations

import html
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from herd.guard.credentials import SESSION_COOKIE, session_value
from serve_app.service import HerdService

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>herd: log in</title>
<link rel="icon" href="data:,">
<style>body{{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto;padding:0 1rem}}
input{{width:100%;padding:.5rem;margin:.5rem 0;box-sizing:border-box}}
.err{{color:#b00020}}</style></head>
<body><h1>herd dashboard</h1>
<p>Paste the fleet's admin token (<code>herd admin-token</code> on the router box shows it).</p>
{error}
<form method="post" action="/dashboard/login">
<input type="password" name="token" autocomplete="current-password" autofocus
 aria-label="admin token" placeholder="admin token">
<input type="submit" value="Log in"></form></body></html>
"""


def login_page(error: str | None = None, status: int = 200) -> HTMLResponse:
    shown = f'<p class="err" role="alert">{html.escape(error)}</p>' if error else ""
    return HTMLResponse(_PAGE.format(error=shown), status_code=status)


def add_login_routes(app: FastAPI, svc: HerdService) -> None:
    @app.get("/dashboard/login")
    async def login_form() -> Response:
        return login_page()

    @app.post("/dashboard/login")
    async def login(request: Request) -> Response:
        token = svc.admin_token
        if not token:
            return login_page("This fleet has no admin token configured.", 503)
        fields = parse_qs((await request.body()).decode("utf-8", "replace"))
        given = (fields.get("token") or [""])[0].strip()
        if svc.guard_policy.credentials.caller([given]).role != "admin":
            return login_page("That is not the admin token.", 401)
        response = RedirectResponse("/dashboard/", status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            session_value(token),
            path="/dashboard",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    @app.get("/dashboard/logout")
    @app.post("/dashboard/logout")
    async def logout() -> Response:
        response = RedirectResponse("/dashboard/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/dashboard")
        return response
