"""Where herd's request-path time goes: each hop timed on its own, on one local fleet.

Two views, both against the same ``instant`` emulator and the same fleet as
``bench/overhead.py`` (``_fleet.local_fleet``):

1. In the cluster, no HTTP: a probe actor pinned to the head node (where the Serve
   replica runs) times an empty actor call to the router and to the NodeActor,
   ``router.acquire``, ``node.complete``, the first item of ``node.stream``, submitting
   ``router.release``, an aiohttp request to the emulator, and herd's own
   ``Dispatcher.complete`` / ``Dispatcher.stream`` (first chunks).
2. Over HTTP through the Serve ingress: a probe FastAPI app (route prefix ``/probe``)
   deployed next to herd's, adding one hop at a time: a canned answer, a plain aiohttp
   proxy to the emulator, one empty router call, one NodeActor call, herd's Dispatcher
   (router + node + release); then herd's real ``/api/chat``.

    python bench/hops.py [--mode haproxy|default] [-n 300] [--seconds 5] [--replicas 1]
                         [--ray-env RAY_worker_niceness=0]

Prints a table, then one line of JSON (``{"bench": "hops", ...}``). This is a profiling
aid for the lead; ``bench/overhead.py`` is the benchmark.
"""

# No ``from __future__ import annotations`` here: the probe app is pickled by value and
# FastAPI must see real ``Request`` annotations in the replica.
import argparse
import asyncio
import json
import os
import sys
import time
from collections import defaultdict
from typing import Any

import ray
from _fleet import MODES, NODE, local_fleet
from _hops_driver import PROBE_PREFIX, cpu_costs, http_hops, ms_stats, print_cpu
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from ray import serve

CHAT_BODY = {
    "model": "smollm2:135m",
    "messages": [{"role": "user", "content": "Say hi."}],
    "options": {"num_predict": 8},
}


def _chat_request(body: bytes) -> Any:
    """Build the InferenceRequest exactly as herd's ``/api/chat`` route does."""
    import uuid

    from herd import convert, wire

    return convert.ollama_chat_request(
        wire.parse_chat_request(body),
        request_id=uuid.uuid4().hex,
        received_at=time.time(),
        header_tags=None,
        client=None,
    )


ROUTER = "herd-router"


def _actor(name: str) -> Any:
    """A herd actor's handle by name (a blocking lookup: this is a profiling aid)."""
    from actors.handles import lookup

    return lookup(name)


# --- 1. the probe actor: hops inside the cluster ------------------------------------
@ray.remote(num_cpus=0)
class HopProbe:
    def __init__(self, settings: Any, emulator: str, node_id: str) -> None:
        from actors.ports import ray_dispatcher

        self.settings = settings
        self.emulator = emulator
        self.node_id = node_id
        self.dispatcher = ray_dispatcher(settings)

    async def run(self, n: int, warmup: int) -> dict[str, list[float]]:
        import aiohttp

        from herd.domain import Outcome

        router = _actor(ROUTER)
        node = _actor(f"herd-node:{self.node_id}")
        samples: dict[str, list[float]] = defaultdict(list)
        raw = json.dumps({**CHAT_BODY, "stream": False}).encode()
        raw_stream = json.dumps({**CHAT_BODY, "stream": True}).encode()
        session = aiohttp.ClientSession()
        try:
            for i in range(warmup + n):
                t: dict[str, float] = {}
                t0 = time.perf_counter()
                await router.ping.remote()
                t["router.ping (empty call, same node)"] = time.perf_counter() - t0

                t0 = time.perf_counter()
                await node.ping.remote()
                t["node.ping (empty call, other node)"] = time.perf_counter() - t0

                t0 = time.perf_counter()
                req = _chat_request(raw)
                t["parse + build InferenceRequest"] = time.perf_counter() - t0

                t0 = time.perf_counter()
                decision = await router.acquire.remote(req.request_id, (req.model,), frozenset(), 0)
                t["router.acquire"] = time.perf_counter() - t0

                t0 = time.perf_counter()
                await node.complete.remote(req, decision.model)
                t["node.complete (non-streaming)"] = time.perf_counter() - t0

                t0 = time.perf_counter()
                router.release.remote(
                    Outcome(
                        request_id=req.request_id,
                        node_id=decision.node_id,
                        model=req.model,
                        total_s=0.001,
                        ok=True,
                        started=True,
                    )
                )
                t["router.release submit (not awaited)"] = time.perf_counter() - t0

                sreq = _chat_request(raw_stream)
                decision = await router.acquire.remote(sreq.request_id, (sreq.model,))
                t0 = time.perf_counter()
                gen = node.stream.remote(sreq, decision.model)
                await (await gen.__anext__())
                t["node.stream first item"] = time.perf_counter() - t0
                async for ref in gen:
                    await ref
                router.release.remote(
                    Outcome(
                        request_id=sreq.request_id,
                        node_id=decision.node_id,
                        model=sreq.model,
                        total_s=0.001,
                        ok=True,
                        started=True,
                    )
                )

                t0 = time.perf_counter()
                async with session.post(self.emulator + "/api/chat", data=raw) as resp:
                    await resp.read()
                t["aiohttp to the emulator (from the head)"] = time.perf_counter() - t0

                t0 = time.perf_counter()
                await self.dispatcher.complete(_chat_request(raw))
                t["Dispatcher.complete (acquire+node+release)"] = time.perf_counter() - t0

                t0 = time.perf_counter()
                served = await self.dispatcher.stream(_chat_request(raw_stream))
                t["Dispatcher.stream first chunks"] = time.perf_counter() - t0
                async for _batch in served.rest:
                    pass

                if i >= warmup:
                    for key, value in t.items():
                        samples[key].append(value)
        finally:
            await session.close()
        samples.update(self._serialization(raw))
        samples.update(await self._local_decision(node))
        return dict(samples)

    async def _local_decision(self, node: Any) -> dict[str, list[float]]:
        """A RouterCore in this process: what a decision costs without the actor call."""
        from herd.domain import Outcome
        from herd.routing.core import RouterCore

        core = RouterCore(self.settings)
        core.heartbeat(await node.push_heartbeat.remote())
        times = []
        for i in range(1000):
            t0 = time.perf_counter()
            decision = core.try_route(f"local-{i}", ("smollm2:135m",))
            assert decision is not None
            core.release(
                Outcome(
                    request_id=f"local-{i}",
                    node_id=decision.node_id,
                    model=decision.model,
                    ok=True,
                    started=True,
                )
            )
            times.append(time.perf_counter() - t0)
        return {"in-process RouterCore try_route + release": times}

    def _serialization(self, raw: bytes) -> dict[str, list[float]]:
        """Pickling the objects that cross actor boundaries on every request."""
        from ray import cloudpickle

        from herd.domain import Decision

        req = _chat_request(raw)
        decision = Decision(
            request_id=req.request_id,
            node_id=self.node_id,
            model=req.model,
            requested_model=req.model,
            score=50.0,
            breakdown={"thermal": 50.0},
        )
        out: dict[str, list[float]] = {}
        for name, obj in (("InferenceRequest", req), ("Decision", decision)):
            times = []
            for _ in range(200):
                t0 = time.perf_counter()
                cloudpickle.loads(cloudpickle.dumps(obj))
                times.append(time.perf_counter() - t0)
            out[f"pickle+unpickle {name} ({len(cloudpickle.dumps(obj))} B)"] = times
        return out


# --- 2. the probe Serve app: hops over HTTP -------------------------------------------
CANNED = json.dumps(
    {"model": "smollm2:135m", "message": {"role": "assistant", "content": "hi"}, "done": True}
).encode()


@serve.ingress()
class ProbeIngress:
    def __init__(self, settings: Any, emulator: str, node_id: str) -> None:
        from actors.ports import ray_dispatcher

        self.settings = settings
        self.emulator = emulator
        self.node_id = node_id
        self.dispatcher = ray_dispatcher(settings)
        self._session: Any = None
        self._core: Any = None

    async def _local_core(self) -> Any:
        """Prototype: a RouterCore inside the replica, fed the node's heartbeats, so the
        decision needs no actor call (a real design would also send the router one
        coalesced begin/end report every few ms, off the request path)."""
        if self._core is None:
            import asyncio

            from herd.routing.core import RouterCore

            core = RouterCore(self.settings)
            node = _actor(f"herd-node:{self.node_id}")
            core.heartbeat(await node.push_heartbeat.remote())
            self._core = core

            async def refresh() -> None:
                while True:
                    await asyncio.sleep(self.settings.heartbeat_interval)
                    core.heartbeat(await node.push_heartbeat.remote())

            self._refresh = asyncio.get_running_loop().create_task(refresh())
        return self._core

    def _http(self) -> Any:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        return self._session

    def __serve_build_asgi_app__(self) -> FastAPI:
        from herd.json_codec import dumps

        app = FastAPI()

        @app.post("/canned")
        async def canned(request: Request) -> Response:
            await request.body()
            return Response(CANNED, media_type="application/json")

        @app.post("/http")
        async def http(request: Request) -> Response:
            body = await request.body()
            async with self._http().post(self.emulator + "/api/chat", data=body) as resp:
                data = await resp.read()
            return Response(data, media_type="application/json")

        @app.post("/router-ping")
        async def router_ping(request: Request) -> Response:
            await request.body()
            await _actor(ROUTER).ping.remote()
            return Response(CANNED, media_type="application/json")

        @app.post("/node")
        async def node(request: Request) -> Response:
            req = _chat_request(await request.body())
            if req.stream:
                gen = _actor(f"herd-node:{self.node_id}").stream.remote(req, req.model)

                async def body() -> Any:
                    async for ref in gen:
                        yield b"".join(dumps(c) + b"\n" for c in await ref)

                return StreamingResponse(body(), media_type="application/x-ndjson")
            result = await _actor(f"herd-node:{self.node_id}").complete.remote(req, req.model)
            return Response(dumps(result), media_type="application/json")

        @app.post("/local")
        async def local(request: Request) -> Response:
            from herd.domain import Outcome

            req = _chat_request(await request.body())
            core = await self._local_core()
            decision = core.try_route(req.request_id, (req.model,))
            node = _actor(f"herd-node:{decision.node_id}")

            def done() -> None:
                core.release(
                    Outcome(
                        request_id=req.request_id,
                        node_id=decision.node_id,
                        model=decision.model,
                        ok=True,
                        started=True,
                    )
                )

            if req.stream:
                gen = node.stream.remote(req, decision.model)
                first = await (await gen.__anext__())

                async def body() -> Any:
                    try:
                        yield b"".join(dumps(c) + b"\n" for c in first)
                        async for ref in gen:
                            yield b"".join(dumps(c) + b"\n" for c in await ref)
                    finally:
                        done()

                return StreamingResponse(body(), media_type="application/x-ndjson")
            result = await node.complete.remote(req, decision.model)
            done()
            return Response(dumps(result), media_type="application/json")

        @app.post("/dispatch")
        async def dispatch(request: Request) -> Response:
            req = _chat_request(await request.body())
            _decision, _retries, result = await self.dispatcher.complete(req)
            return Response(dumps(result), media_type="application/json")

        return app


def deploy_probe(settings: Any, emulator: str, replicas: int) -> None:
    deployment: Any = serve.deployment(
        ProbeIngress,
        name="ProbeIngress",
        num_replicas=replicas,
        ray_actor_options={"num_cpus": 0},
        max_ongoing_requests=10_000,
    )
    serve.run(
        deployment.bind(settings, emulator, NODE),
        name="probe",
        route_prefix=PROBE_PREFIX,
        blocking=False,
    )


# --- driver ----------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time each hop of herd's request path.")
    parser.add_argument("--mode", choices=MODES, default="haproxy")
    parser.add_argument("-n", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0, help="c=16 load per target")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--ray-env", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    for item in args.ray_env:
        name, _, value = item.partition("=")
        os.environ[name] = value  # LocalRay hands os.environ to the Ray nodes it starts
    with local_fleet(args.mode, replicas=args.replicas) as fleet:
        router_settings = fleet.settings
        deploy_probe(router_settings, fleet.emulator, args.replicas)
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        probe = HopProbe.options(  # type: ignore[attr-defined]
            scheduling_strategy=NodeAffinitySchedulingStrategy(fleet.head_ray_node_id, soft=False)
        ).remote(router_settings, fleet.emulator, NODE)
        time.sleep(2)  # let the probe app's route reach the proxy
        print(f"{args.mode}: in-cluster hops ...", file=sys.stderr, flush=True)
        cluster = ray.get(probe.run.remote(args.n, args.warmup))
        print(f"{args.mode}: HTTP hops ...", file=sys.stderr, flush=True)
        http = asyncio.run(
            http_hops(fleet.endpoint, fleet.emulator, args.n, args.warmup, args.seconds)
        )
        print(f"{args.mode}: CPU per request ...", file=sys.stderr, flush=True)
        probe = fleet.endpoint + PROBE_PREFIX
        cpu_targets = [
            ("direct", fleet.emulator + "/api/chat"),
            ("canned", probe + "/canned"),
            ("http", probe + "/http"),
            ("node", probe + "/node"),
            ("local", probe + "/local"),
            ("dispatch", probe + "/dispatch"),
            ("herd", fleet.endpoint + "/api/chat"),
        ]
        roots = [*fleet.pids, os.getpid()]
        cpu = asyncio.run(cpu_costs(roots, cpu_targets, args.seconds))
    cluster_ms = {k: ms_stats(v) for k, v in cluster.items()}
    width = max(len(k) for k in (*cluster_ms, *http))
    print(f"mode {args.mode}, replicas {args.replicas}, ray env {args.ray_env or '-'}")
    print(f"{'in the cluster (probe actor on the head)':{width}}  {'p50 ms':>8} {'p99 ms':>8}")
    for key, v in cluster_ms.items():
        print(f"{key:{width}}  {v['p50']:8.3f} {v['p99']:8.3f}")
    print(f"\n{'over HTTP (sequential; c=16)':{width}}  {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}")
    for key, v in http.items():
        rps = f"{v['rps_c16']:8.1f}" if "rps_c16" in v else f"{'':8}"
        print(f"{key:{width}}  {v['p50']:8.3f} {v['p99']:8.3f} {rps}")
    print_cpu(cpu)
    summary = {
        "bench": "hops",
        "mode": args.mode,
        "replicas": args.replicas,
        "ray_env": args.ray_env,
        "n": args.n,
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "cluster_ms": cluster_ms,
        "http": http,
        "cpu_ms_per_request": cpu,
    }
    print(json.dumps(summary, separators=(",", ":")), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
