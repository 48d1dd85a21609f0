"""What ``herd deploy`` checks before it trusts a Ray cluster (actors/ray_auth.py), over
real sockets and a real gRPC server (no Ray)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager

import grpc
import pytest

from actors.ray_auth import (
    gcs_requires_token,
    listening_sockets,
    reachable_beyond_loopback,
)
from herd.errors import FleetUnavailable

PROBED = "/ray.rpc.NodeInfoGcsService/GetAllNodeInfo"


@contextmanager
def _grpc_server(answer: grpc.StatusCode | None) -> Iterator[int]:
    """A gRPC server whose GetAllNodeInfo refuses with ``answer`` (None: answers OK)."""

    def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
        if answer is not None:
            context.abort(answer, "refused")
        return b""

    class Handler(grpc.GenericRpcHandler):
        def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
            if details.method != PROBED:
                return None
            return grpc.unary_unary_rpc_method_handler(handle)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[Handler()])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port
    finally:
        server.stop(None)


def test_a_gcs_that_refuses_a_call_without_a_token_requires_one() -> None:
    with _grpc_server(grpc.StatusCode.UNAUTHENTICATED) as port:
        assert gcs_requires_token(f"127.0.0.1:{port}") is True


def test_a_gcs_that_answers_without_a_token_requires_none() -> None:
    with _grpc_server(None) as port:
        assert gcs_requires_token(f"127.0.0.1:{port}") is False


def test_any_other_answer_is_an_error_not_a_verdict() -> None:
    with _grpc_server(grpc.StatusCode.INTERNAL) as port, pytest.raises(FleetUnavailable):
        gcs_requires_token(f"127.0.0.1:{port}", timeout=5)


@contextmanager
def _listening(host: str) -> Iterator[int]:
    with socket.socket() as s:
        s.bind((host, 0))
        s.listen()
        yield s.getsockname()[1]


def test_a_port_on_loopback_only_is_not_reachable_from_the_network() -> None:
    with _listening("127.0.0.1") as port:
        assert any(p == port and a.is_loopback for a, p, _ in listening_sockets())
        assert reachable_beyond_loopback(f"127.0.0.1:{port}") is False


def test_a_port_on_every_interface_is_reachable_even_when_dialled_on_loopback() -> None:
    with _listening("0.0.0.0") as port:
        assert any(p == port and a.is_unspecified for a, p, _ in listening_sockets())
        assert reachable_beyond_loopback(f"127.0.0.1:{port}") is True


def test_a_lan_address_is_reachable_from_the_network() -> None:
    assert reachable_beyond_loopback("192.0.2.10:6379") is True
