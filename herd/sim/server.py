"""The emulator's aiohttp application and the in-process API (:func:`start_emulator`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

import herd.sim.admin as admin
import herd.sim.embeddings as embeddings
import herd.sim.inference as inference
import herd.sim.management as management
from herd.sim.device import Device
from herd.sim.profile import SimProfile
from herd.sim.profiles import load_profile
from herd.sim.wire import DEVICE, Handler, error_middleware, error_response


@web.middleware
async def down_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The ``down`` fault: every Ollama route fails while it is active (``/_sim/`` not)."""
    if not request.path.startswith("/_sim/"):
        failure = request.app[DEVICE].faults.down()
        if failure is not None:
            return error_response(*failure)
    return await handler(request)


def build_app(device: Device) -> web.Application:
    """All Ollama routes plus the ``/_sim/`` admin routes, bound to ``device``."""
    app = web.Application(
        middlewares=[error_middleware, down_middleware], client_max_size=64 * 1024**2
    )
    app[DEVICE] = device
    r = app.router
    r.add_get("/", management.root)  # GET and HEAD
    r.add_get("/api/version", management.version)
    r.add_get("/api/tags", management.tags)
    r.add_get("/api/ps", management.ps)
    r.add_post("/api/show", management.show)
    r.add_post("/api/pull", management.pull)
    r.add_delete("/api/delete", management.delete)
    r.add_post("/api/generate", inference.generate)
    r.add_post("/api/chat", inference.chat)
    r.add_post("/api/embed", embeddings.embed)
    r.add_post("/api/embeddings", embeddings.embeddings)
    admin.add_routes(app)
    return app


@dataclass(slots=True)
class RunningEmulator:
    """A started emulator; ``await stop()`` when done."""

    device: Device
    host: str
    port: int
    runner: web.AppRunner

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def name(self) -> str:
        return self.device.profile.name

    async def stop(self) -> None:
        await self.device.close()
        await self.runner.cleanup()


async def start_emulator(
    profile: SimProfile | str | Path, host: str = "127.0.0.1", port: int = 0
) -> RunningEmulator:
    """Start an emulator in the running event loop (``port=0`` picks a free port)."""
    if not isinstance(profile, SimProfile):
        profile = load_profile(profile)
    device = Device(profile)
    await device.start()
    runner = web.AppRunner(
        build_app(device), handler_cancellation=True, access_log=None, shutdown_timeout=0.5
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    try:
        await site.start()
    except BaseException:
        await device.close()
        await runner.cleanup()
        raise
    addresses = runner.addresses
    bound = int(addresses[0][1]) if addresses else port
    return RunningEmulator(device, host, bound, runner)
