"""The node's HTTP data plane (``FLEET_DATA_PLANE=http``), without Ray.

``POST /herd/stream`` takes ``{"request_id", "kind", "model", "body"}`` and answers
NDJSON, one line per Ollama chunk, produced by :meth:`NodeAgent.stream` (same stall
timeouts, draining and keep_alive handling as the Ray path). An error before the first
chunk is an HTTP status with ``{"error", "code", "retryable"}``; an error after it is a
final line of that same shape (with ``"herd_error": true``, so it cannot be mistaken for
a chunk). The ingress side lives in ``actors/node_stream.py``.

Every request must carry the fleet's shared secret in ``X-Herd-Data-Token``: a missing
one is answered 401, a wrong one 403, before anything else runs. The token comes from
``FLEET_DATA_TOKEN`` or, by default, from Ray's GCS KV (``actors/data_token.py``), so
every device of one Ray cluster agrees on it without configuration.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from contextlib import suppress
from typing import Any

from aiohttp import web

from herd import errors
from herd.domain import InferenceRequest
from herd.errors import BackendError, BadRequest, HerdError
from herd.json_codec import dumps, loads
from herd.node.agent import NodeAgent

log = logging.getLogger("herd.node.http_server")

STREAM_PATH = "/herd/stream"
NDJSON = "application/x-ndjson"
TOKEN_HEADER = "X-Herd-Data-Token"
INSTANCE_HEADER = "X-Herd-Node-Instance"  # which process answers (the NodeActor's actor id)


def new_data_token() -> str:
    """A fresh random shared secret for the data plane (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def token_matches(expected: str, presented: str | None) -> bool:
    """Constant-time comparison of the token a request presented with the node's."""
    if not expected or presented is None:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


def _error_classes() -> dict[str, type[HerdError]]:
    """Each error code to the class that defines it."""
    return {
        value.code: value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, HerdError) and "code" in value.__dict__
    }


_BY_CODE = _error_classes()


def error_payload(err: HerdError) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "error": err.message,
        "code": err.code,
        "retryable": bool(getattr(err, "retryable", False)),
        "herd_error": True,
    }
    if err.retry_after is not None:
        payload["retry_after"] = err.retry_after
    status = getattr(err, "backend_status", None)
    if status is not None:
        payload["backend_status"] = status
    return payload


def error_from_payload(payload: dict[str, Any], default_retryable: bool) -> HerdError:
    """Rebuild the herd error a node sent (status body or final error line)."""
    cls = _BY_CODE.get(str(payload.get("code") or ""), BackendError)
    message = str(payload.get("error") or "node error")
    retry_after = payload.get("retry_after")
    if issubclass(cls, BackendError):
        return cls(
            message,
            retry_after=retry_after,
            retryable=bool(payload.get("retryable", default_retryable)),
            backend_status=payload.get("backend_status"),
        )
    return cls(message, retry_after=retry_after)


def _line(chunk: Any) -> bytes:
    return dumps(chunk) + b"\n"


def _lines(batch: list[Any]) -> bytes:
    """A batch (chunks, or lines a backend handed over as they came) as one write."""
    return b"\n".join([c if type(c) is bytes else dumps(c) for c in batch]) + b"\n"


class NodeHTTPServer:
    """An aiohttp server in the running loop that streams ``agent``'s answers."""

    def __init__(
        self,
        agent: NodeAgent,
        *,
        token: str,
        host: str = "127.0.0.1",
        port: int = 0,
        instance: str = "",
    ) -> None:
        if not token:
            raise ValueError("the data plane needs a shared token")
        self.agent = agent
        self.host = host
        self.port = port
        self._token = token
        self._headers = {"Content-Type": NDJSON}
        if instance:
            self._headers[INSTANCE_HEADER] = instance
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        if self._runner is None:
            return ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=1024**3, middlewares=[self._auth])
        app.router.add_post(STREAM_PATH, self._stream)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """401 without the shared token, 403 with a wrong one; nothing else runs."""
        presented = request.headers.get(TOKEN_HEADER)
        if token_matches(self._token, presented):
            response: web.StreamResponse = await handler(request)
            return response
        status = 401 if presented is None else 403
        reason = "missing" if presented is None else "wrong"
        log.warning("data plane: %s token from %s", reason, request.remote)
        body = {"error": f"{reason} data-plane token", "code": "unauthorized", "herd_error": True}
        return web.json_response(body, status=status)

    async def start(self) -> str:
        runner = web.AppRunner(
            self.build_app(), handler_cancellation=True, access_log=None, shutdown_timeout=0.5
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, backlog=1024)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        addresses = runner.addresses
        if addresses:
            self.port = int(addresses[0][1])
        self._runner = runner
        return self.url

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        try:
            payload = loads(await request.read())
            req = InferenceRequest(
                request_id=str(payload.get("request_id") or ""),
                kind=payload["kind"],
                model=str(payload["model"]),
                body=dict(payload.get("body") or {}),
            )
        except Exception as exc:
            err = BadRequest(f"bad data-plane request: {exc}")
            return web.json_response(error_payload(err), status=err.status)
        gen = self.agent.stream(req, req.model, raw=True)  # lines forwarded as they came
        try:
            try:
                first: list[Any] = await anext(gen)
            except StopAsyncIteration:
                first = []
            except HerdError as err:
                return web.json_response(error_payload(err), status=err.status)
            except Exception as exc:
                failed = BackendError(f"{self.agent.node_id}: {type(exc).__name__}: {exc}")
                return web.json_response(error_payload(failed), status=failed.status)
            response = web.StreamResponse(headers=self._headers)
            await response.prepare(request)
            if first:
                await response.write(_lines(first))
            try:
                async for batch in gen:
                    await response.write(_lines(batch))
            except (ConnectionError, OSError):
                raise  # the ingress went away: nothing to tell it
            except HerdError as err:
                await response.write(_line(error_payload(err)))
            except Exception as exc:
                broke = BackendError(f"{self.agent.node_id}: {exc}", retryable=False)
                await response.write(_line(error_payload(broke)))
            with suppress(ConnectionError, OSError):
                await response.write_eof()
            return response
        finally:
            await gen.aclose()
