"""The head's mDNS advertisement (``herd.discovery``), made by the RouterActor: it lives
on the head as long as the fleet and comes back after a crash, so ``herd join`` without
an address finds the head whenever herd runs there."""

from __future__ import annotations

import ipaddress
import logging
import platform

import ray

import herd
from herd.discovery import Advertisement, HeadAd, advertise

log = logging.getLogger("herd.actors.discovery")


def advertise_head(endpoint_port: int) -> Advertisement | None:
    """Announce this Ray node as the fleet's head on its LAN interface; ``None`` on a
    loopback-only fleet (nothing on the LAN could join it) or when mDNS is unavailable
    (logged: joining by address still works)."""
    ip = ray.util.get_node_ip_address()
    if ipaddress.ip_address(ip).is_loopback:
        return None
    gcs = ray.get_runtime_context().gcs_address
    ad = HeadAd(
        name=platform.node() or "herd",
        ip=ip,
        gcs_port=int(gcs.rsplit(":", 1)[1]),
        endpoint_port=endpoint_port,
        herd_version=herd.__version__,
        ray_version=ray.__version__,
        python=platform.python_version(),
    )
    try:
        adv = advertise(ad)
    except Exception as exc:  # no multicast on this interface, a name clash, ...
        log.warning("cannot advertise the head over mDNS at %s: %s", ip, exc)
        return None
    log.info("advertising the head over mDNS: %s at %s", ad.name, ad.gcs_address)
    return adv
