"""The terminal commands' way to the endpoint: its address, the token, readable errors
and the exit codes scripts can test.

The address is read the way Ollama's CLI reads ``OLLAMA_HOST``, from ``--host`` or
``HERD_HOST``: ``host``, ``host:port``, ``http://host:port`` or ``https://host``; no
scheme means http and herd's port (``FLEET_PORT``, 11435), a scheme without a port its
own (80, 443). Unset: ``http://127.0.0.1:<FLEET_PORT>``, the endpoint on this machine.

The token (``Authorization: Bearer``): ``--token``, else ``HERD_TOKEN``, else the admin
token this machine knows (``FLEET_ADMIN_TOKEN`` or the head's ``<data dir>/admin-token``,
as ``herd admin-token`` shows it). Pulls and deletes need the admin token; reads need a
key only when the endpoint sets ``FLEET_API_KEYS``.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from herd.errors import FleetUnavailable, HerdError
from herd.settings import Settings

EXIT_OK = 0
EXIT_ERROR = 1  # the command failed (a node refused a pull, a bad answer, ...)
EXIT_USAGE = 2  # the command line is wrong (argparse's own code)
EXIT_NOT_FOUND = 3  # no such model or node
EXIT_UNREACHABLE = 4  # no endpoint (or Ray cluster) at the address
EXIT_DENIED = 5  # the endpoint refused the credentials (401 / 403)

HOST_ENV = "HERD_HOST"
TOKEN_ENV = "HERD_TOKEN"
START_HINT = "start one with `herd demo` / `herd deploy`"
TOKEN_HINT = "pass --token, set HERD_TOKEN, or run this on the head"


class CliError(Exception):
    """A failure told to the user in one line, with the exit code scripts see."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_host(value: str | None, default_port: int) -> str:
    """The base URL for an ``OLLAMA_HOST``-style value (see the module docstring)."""
    text = (value or "").strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest, port = "http", text, str(default_port)
    else:
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise CliError(f"cannot read host '{value}': use http:// or https://", EXIT_USAGE)
        port = "443" if scheme == "https" else "80"
    hostport, _, path = rest.partition("/")
    host = hostport
    if hostport.startswith("["):  # [::1] or [::1]:port
        inner, _, tail = hostport[1:].partition("]")
        host = inner
        if tail.startswith(":") and tail[1:]:
            port = tail[1:]
    elif hostport.count(":") == 1:
        host, _, given = hostport.partition(":")
        port = given or port
    elif hostport.count(":") > 1 and not _is_ip(hostport):
        raise CliError(f"cannot read host '{value}'", EXIT_USAGE)
    host = host or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise CliError(f"cannot read host '{value}': bad port '{port}'", EXIT_USAGE)
    shown = f"[{host}]" if ":" in host else host
    base = f"{scheme}://{shown}:{int(port)}"
    return f"{base}/{path.strip('/')}" if path.strip("/") else base


def endpoint_url(flag: str | None, settings: Settings) -> str:
    return parse_host(flag or os.environ.get(HOST_ENV), settings.port)


def token_for(flag: str | None, settings: Settings) -> str | None:
    from herd.guard.credentials import read_admin_token

    given = (flag or os.environ.get(TOKEN_ENV) or "").strip()
    return given or read_admin_token(settings)


def error_text(response: httpx.Response) -> str:
    """The message of an error answer in any of herd's dialects (``{"error": "..."}``,
    ``{"error": {"message": ...}}``), else its first line."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            err = err.get("message")
        if isinstance(err, str) and err:
            return err
    text = response.text.strip().splitlines()
    return text[0][:300] if text else f"HTTP {response.status_code}"


def code_for_status(status: int) -> int:
    if status == 404:
        return EXIT_NOT_FOUND
    if status in (401, 403):
        return EXIT_DENIED
    return EXIT_ERROR


def code_for_error(exc: HerdError) -> int:
    """The exit code of a herd error (a Ray cluster out of reach: unreachable)."""
    if isinstance(exc, FleetUnavailable):
        return EXIT_UNREACHABLE
    return code_for_status(exc.status)


class Endpoint:
    """A synchronous client of one endpoint that turns every failure into a CliError."""

    def __init__(self, url: str, token: str | None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout = httpx.Timeout(timeout, connect=5.0)
        self.client = httpx.Client(base_url=self.url, headers=headers, timeout=self.timeout)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Endpoint:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextmanager
    def errors(self) -> Iterator[None]:
        """httpx's failures as one-line CliErrors."""
        try:
            yield
        except httpx.ConnectError:
            raise CliError(
                f"no herd endpoint at {self.url}: {START_HINT}", EXIT_UNREACHABLE
            ) from None
        except httpx.TimeoutException:
            raise CliError(f"the herd endpoint at {self.url} did not answer in time") from None
        except httpx.HTTPError as exc:
            raise CliError(f"talking to {self.url} failed: {exc}", EXIT_UNREACHABLE) from None

    def check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code < 400:
            return response
        message = error_text(response)
        if response.status_code == 401:
            message += f" ({TOKEN_HINT})"
        raise CliError(message, code_for_status(response.status_code))

    def request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        with self.errors():
            response = self.client.request(method, path, json=body)
        return self.check(response)

    def get_json(self, path: str) -> Any:
        response = self.request("GET", path)
        try:
            return response.json()
        except ValueError:
            problem = f"{self.url}{path} did not answer JSON: is it a herd endpoint?"
            raise CliError(problem) from None

    def nodes(self) -> list[dict[str, Any]]:
        status = self.get_json("/fleet/status")
        return list(status.get("nodes") or []) if isinstance(status, dict) else []


def check_node(nodes: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """The status entry of node ``name``; else a not-found CliError naming the nodes."""
    for node in nodes:
        if node.get("node_id") == name:
            return node
    known = ", ".join(sorted(str(n.get("node_id")) for n in nodes)) or "none"
    raise CliError(f"unknown node '{name}' (nodes: {known})", EXIT_NOT_FOUND)
