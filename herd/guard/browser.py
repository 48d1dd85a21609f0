"""Browser safety: which ``Origin`` may call the endpoint and which ``Host`` names it
answers to (a DNS-rebinding page reaches the endpoint under its own host name).

Origins: none at all (curl, the official clients, server-side code) is fine; otherwise
Ollama's default allow-list (``http(s)://localhost``, ``127.0.0.1``, ``0.0.0.0`` on any
port, ``app://``, ``file://``, ``tauri://``, ``vscode-webview://``, ``vscode-file://``),
``FLEET_ORIGINS`` (``*`` wildcards, OLLAMA_ORIGINS' form), or the endpoint's own origin
(the dashboard served from ``http://<router>:11435``).

Hosts: IP literals (rebinding needs a name the attacker controls), ``localhost`` and
``*.localhost``, ``*.local`` and ``*.internal`` (as Ollama), this machine's host name,
and ``FLEET_ALLOWED_HOSTS`` (``*`` allows any).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

_DEFAULT_ORIGIN_HOSTS = ("localhost", "127.0.0.1", "0.0.0.0", "[::1]")
_DEFAULT_ORIGIN_SCHEMES = (
    "app://*",
    "file://*",
    "tauri://*",
    "vscode-webview://*",
    "vscode-file://*",
)
_HOST_SUFFIXES = (".localhost", ".local", ".internal")


def _split(text: str) -> list[str]:
    return [p.strip().strip("\"'").lower() for p in text.split(",") if p.strip()]


def default_origins() -> list[str]:
    out = []
    for host in _DEFAULT_ORIGIN_HOSTS:
        for scheme in ("http", "https"):
            out += [f"{scheme}://{host}", f"{scheme}://{host}:*"]
    return out + list(_DEFAULT_ORIGIN_SCHEMES)


def host_name(host_header: str) -> str:
    """The name part of a ``Host`` header (``[::1]:8080`` -> ``::1``), lower case."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host  # a bare IPv6 literal or a name without a port


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def machine_names() -> list[str]:
    """This machine's own names (no DNS lookups: they can hang on a bad resolver)."""
    name = socket.gethostname().lower()
    short = name.split(".", 1)[0]
    return sorted({name, short, f"{short}.local"} - {""})


@dataclass(frozen=True, slots=True)
class BrowserPolicy:
    origins: tuple[str, ...]
    hosts: tuple[str, ...]
    any_host: bool = False

    @classmethod
    def build(
        cls, extra_origins: str, extra_hosts: str, names: Iterable[str] | None = None
    ) -> BrowserPolicy:
        hosts = _split(extra_hosts)
        return cls(
            origins=tuple(default_origins() + _split(extra_origins)),
            hosts=tuple(["localhost", *(machine_names() if names is None else names), *hosts]),
            any_host="*" in hosts,
        )

    def host_allowed(self, host_header: str | None) -> bool:
        if not host_header:
            return True  # HTTP/1.0 without Host: not a browser on a rebinding name
        name = host_name(host_header)
        if self.any_host or _is_ip(name) or name.endswith(_HOST_SUFFIXES):
            return True
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.hosts)

    def origin_allowed(self, origin: str | None, host_header: str | None) -> bool:
        if origin is None:
            return True
        origin = origin.strip().lower()
        if origin == "null":  # sandboxed frames, redirects across origins
            return False
        if host_header and _same_origin(origin, host_header):
            return True
        return any(fnmatch.fnmatchcase(origin, pattern) for pattern in self.origins)


def _same_origin(origin: str, host_header: str) -> bool:
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    return parts.netloc == host_header.strip().lower()
