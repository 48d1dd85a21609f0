"""Finding the fleet's head on the LAN over mDNS / DNS-SD (zeroconf), as the seed's nodes
find their router: the head advertises one ``_herd._tcp.local.`` service and
``herd join`` without an address browses for it.

The advertisement says where the head is and nothing secret: its address, Ray's GCS
port (the service's port), the endpoint's port and the versions a joining box must
match. The Ray token never travels over mDNS: ``herd join`` still needs it. What a
browser reads is untrusted LAN input, so every field is checked and bounded; a
record that does not parse is ignored.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

SERVICE_TYPE = "_herd._tcp.local."
MAX_HEADS = 16  # more answers than this on one LAN are ignored
_MAX_FIELD = 64


@dataclass(frozen=True, slots=True)
class HeadAd:
    """One advertised head."""

    name: str  # the instance name (the head's hostname)
    ip: str
    gcs_port: int
    endpoint_port: int
    herd_version: str
    ray_version: str
    python: str

    @property
    def gcs_address(self) -> str:
        return f"{self.ip}:{self.gcs_port}"


def _properties(ad: HeadAd) -> dict[str, str]:
    return {
        "endpoint": str(ad.endpoint_port),
        "herd": ad.herd_version,
        "ray": ad.ray_version,
        "python": ad.python,
    }


def _text(raw: Any) -> str:
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    text = str(raw or "")[:_MAX_FIELD]
    return text if text.isprintable() else ""


def _port(raw: Any) -> int | None:
    try:
        value = int(_text(raw))
    except ValueError:
        return None
    return value if 0 < value < 65536 else None


def parse_info(info: Any) -> HeadAd | None:
    """A resolved ``ServiceInfo`` as a :class:`HeadAd`; ``None`` when it does not fit."""
    if info is None or not info.name.endswith("." + SERVICE_TYPE):
        return None
    addresses = [a for a in info.parsed_addresses() if _is_ipv4(a)]
    gcs_port = _port(info.port)
    props = {_text(k): v for k, v in (info.properties or {}).items()}
    endpoint = _port(props.get("endpoint"))
    if not addresses or gcs_port is None or endpoint is None:
        return None
    return HeadAd(
        name=_text(info.name[: -len(SERVICE_TYPE) - 1]),
        ip=addresses[0],
        gcs_port=gcs_port,
        endpoint_port=endpoint,
        herd_version=_text(props.get("herd")),
        ray_version=_text(props.get("ray")),
        python=_text(props.get("python")),
    )


def _is_ipv4(address: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(address), ipaddress.IPv4Address)
    except ValueError:
        return False


class Advertisement:
    """The head's service record, announced on the interface of ``ad.ip`` until closed."""

    def __init__(self, ad: HeadAd) -> None:
        from zeroconf import IPVersion, ServiceInfo, Zeroconf

        self.ad = ad
        label = "".join(c if c.isalnum() or c == "-" else "-" for c in ad.name)[:_MAX_FIELD]
        self._info = ServiceInfo(
            SERVICE_TYPE,
            f"{label or 'herd'}.{SERVICE_TYPE}",
            addresses=[socket.inet_aton(ad.ip)],
            port=ad.gcs_port,
            properties=_properties(ad),
            server=f"{label or 'herd'}-herd.local.",
        )
        self._zc = Zeroconf(interfaces=[ad.ip], ip_version=IPVersion.V4Only)
        # allow_name_change: two heads with one hostname on a LAN both stay findable
        self._zc.register_service(self._info, allow_name_change=True)

    def close(self) -> None:
        try:
            self._zc.unregister_service(self._info)
        finally:
            self._zc.close()


def advertise(ad: HeadAd) -> Advertisement:
    return Advertisement(ad)


def discover(
    timeout: float = 3.0, interfaces: list[str] | None = None, first: bool = False
) -> list[HeadAd]:
    """Browse for heads for ``timeout`` seconds (``first``: return at the first one);
    every head found, by name, at most :data:`MAX_HEADS`. ``interfaces``: the addresses
    to browse from (default: every interface)."""
    from zeroconf import InterfaceChoice, IPVersion, ServiceBrowser, ServiceListener, Zeroconf

    found: dict[str, HeadAd] = {}
    lock = threading.Lock()
    arrived = threading.Event()

    class Listener(ServiceListener):
        def add_service(self, zc: Zeroconf, type_: str, name: str) -> None:
            self._resolve(zc, type_, name)

        def update_service(self, zc: Zeroconf, type_: str, name: str) -> None:
            self._resolve(zc, type_, name)

        def remove_service(self, zc: Zeroconf, type_: str, name: str) -> None:
            with lock:
                found.pop(name, None)

        @staticmethod
        def _resolve(zc: Zeroconf, type_: str, name: str) -> None:
            ad = parse_info(zc.get_service_info(type_, name, timeout=int(timeout * 1000)))
            if ad is None:
                return
            with lock:
                if name in found or len(found) < MAX_HEADS:
                    found[name] = ad
            arrived.set()

    zc = Zeroconf(
        interfaces=interfaces if interfaces else InterfaceChoice.All,
        ip_version=IPVersion.V4Only,
    )
    try:
        browser = ServiceBrowser(zc, SERVICE_TYPE, Listener())
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if arrived.wait(min(left, 0.1)) and first:
                break
        browser.cancel()
    finally:
        zc.close()
    with lock:
        return sorted(found.values(), key=lambda ad: ad.name)
