"""Trace writer: what ``TraceWriter.submit`` costs the caller, and how fast traces reach
the database.

Submits N realistic records (routing breakdown of 4 candidates, tags) in calls of
``--per-call`` records from ``--threads`` threads, then waits for the writer to commit
them all. Reports the submit latency per call (the journal ``write`` + ``fsync``: what
the request path would pay) and the end-to-end throughput into the store.

Prints a table, then one line of JSON (``{"bench": "trace_writer", ...}``) as the last
line of stdout.

    python bench/trace_writer.py [--records 20000] [--per-call 1] [--threads 4] [--url URL]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

from herd.traces.records import TraceRecord
from herd.traces.store import TraceStore
from herd.traces.writer import TraceWriter


def make(i: int) -> TraceRecord:
    scores = [
        {"thermal": 50.0, "memory_fit": 15.0, "queue": -5.0 * k, "latency": -3.0, "role": 10.0}
        for k in range(4)
    ]
    cands = tuple(
        {"node_id": f"node-{k}", "total": sum(b.values()), "breakdown": b}
        for k, b in enumerate(scores)
    )
    return TraceRecord(
        request_id=f"bench-{i}",
        time=time.time(),
        requested_model="qwen3:8b",
        served_model="qwen3:8b",
        node_id="node-0",
        score=80.0,
        breakdown=scores[0],
        candidates=cands,
        latency_s=1.2,
        ttft_s=0.2,
        prompt_tokens=300,
        completion_tokens=200,
        tags=("bench", "app"),
        dialect="openai",
        stream=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--per-call", type=int, default=1)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--url", default=None, help="SQLAlchemy URL (default: temp SQLite)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        store = TraceStore(args.url or f"sqlite:///{Path(tmp) / 'herd.db'}")
        writer = TraceWriter(store, Path(tmp) / "spool")
        records = [make(i) for i in range(args.records)]
        latencies: list[float] = []
        lock = threading.Lock()

        def send(part: list[TraceRecord]) -> None:
            mine = []
            for i in range(0, len(part), args.per_call):
                t0 = time.perf_counter()
                writer.submit(part[i : i + args.per_call])
                mine.append(time.perf_counter() - t0)
            with lock:
                latencies.extend(mine)

        threads = [
            threading.Thread(target=send, args=(records[k :: args.threads],))
            for k in range(args.threads)
        ]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        submitted = time.perf_counter() - start
        assert writer.flush(timeout=600), "writer did not catch up"
        total = time.perf_counter() - start
        writer.close()
        stored = store.count_traces()
        store.close()

    lat = sorted(latencies)
    result = {
        "bench": "trace_writer",
        "records": args.records,
        "per_call": args.per_call,
        "threads": args.threads,
        "db": (args.url or "sqlite").split(":", 1)[0],
        "submit_p50_ms": round(statistics.median(lat) * 1000, 3),
        "submit_p99_ms": round(lat[int(len(lat) * 0.99) - 1] * 1000, 3),
        "submit_records_per_s": round(args.records / submitted),
        "stored_records_per_s": round(args.records / total),
        "stored": stored,
    }
    for key, value in result.items():
        print(f"{key:>22}  {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
