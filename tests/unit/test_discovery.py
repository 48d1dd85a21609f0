"""mDNS discovery of the head (herd/discovery.py): a real zeroconf advertisement and
browser on the loopback interface (multicast stays on this machine), and the parser of
what the LAN sends, which is untrusted."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from herd.discovery import SERVICE_TYPE, HeadAd, advertise, discover, parse_info

LO = ["127.0.0.1"]


def ad(name: str = "studio") -> HeadAd:
    return HeadAd(name, "127.0.0.1", 6379, 11435, "0.9.0", "2.60.0", "3.11.9")


def test_a_joining_box_finds_the_advertised_head() -> None:
    adv = advertise(ad())
    try:
        (head,) = discover(timeout=5.0, interfaces=LO, first=True)
    finally:
        adv.close()
    assert head == ad()
    assert head.gcs_address == "127.0.0.1:6379"


def test_two_heads_are_both_found_and_a_closed_one_is_gone() -> None:
    one, two = advertise(ad("studio")), advertise(ad("mini"))
    try:
        heads = discover(timeout=3.0, interfaces=LO)
    finally:
        one.close()
        two.close()
    assert [h.name for h in heads] == ["mini", "studio"]
    assert discover(timeout=1.0, interfaces=LO) == []


@dataclass
class FakeInfo:
    name: str = f"studio.{SERVICE_TYPE}"
    port: Any = 6379
    addresses: list[str] = field(default_factory=lambda: ["192.168.1.10"])
    properties: dict[bytes, Any] = field(
        default_factory=lambda: {b"endpoint": b"11435", b"herd": b"0.9.0", b"ray": b"2.60.0"}
    )

    def parsed_addresses(self) -> list[str]:
        return self.addresses


def test_parse_info_reads_a_good_record() -> None:
    head = parse_info(FakeInfo())
    assert head is not None
    assert (head.name, head.ip, head.gcs_port, head.endpoint_port) == (
        "studio",
        "192.168.1.10",
        6379,
        11435,
    )
    assert (head.herd_version, head.ray_version, head.python) == ("0.9.0", "2.60.0", "")


@pytest.mark.parametrize(
    "bad",
    [
        FakeInfo(name="studio._other._tcp.local."),
        FakeInfo(port=0),
        FakeInfo(port=70000),
        FakeInfo(addresses=[]),
        FakeInfo(addresses=["fe80::1"]),
        FakeInfo(properties={b"endpoint": b"not-a-port"}),
        FakeInfo(properties={}),
    ],
)
def test_parse_info_ignores_records_that_do_not_fit(bad: FakeInfo) -> None:
    assert parse_info(bad) is None
    assert parse_info(None) is None


def test_parse_info_bounds_and_cleans_text() -> None:
    props = {b"endpoint": b"11435", b"herd": b"x" * 500, b"ray": b"2.60\n\x1b[31m"}
    head = parse_info(FakeInfo(properties=props))
    assert head is not None
    assert len(head.herd_version) == 64 and head.ray_version == ""
