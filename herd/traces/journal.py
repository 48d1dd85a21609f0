"""The trace journal's segments and the reader the writer tails them with.

A segment is ``journal-<n>.jsonl`` (eight digits); a position is (segment, byte offset).
:class:`JournalReader` returns complete lines as ``TraceRecord``s with the position after
each, crosses into newer segments, skips the torn tail of a sealed segment (a crash cut
its last write short) and keeps lines that do not parse in ``unreadable`` for the
quarantine.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import IO

from herd.traces.records import TraceRecord
from herd.traces.repair import describe

log = logging.getLogger("herd.traces.writer")

SEGMENT = re.compile(r"^journal-(\d{8})\.jsonl$")
Position = tuple[int, int]  # (segment number, byte offset)


def segment_name(n: int) -> str:
    return f"journal-{n:08d}.jsonl"


class JournalReader:
    """Reads complete journal lines from a position, crossing into newer segments."""

    def __init__(self, spool_dir: Path, chunk: int) -> None:
        self.spool_dir = spool_dir
        self.chunk = chunk
        self._fh: IO[bytes] | None = None
        self._fh_segment = -1
        self.unreadable: list[tuple[bytes, str]] = []  # (line, reason) for the quarantine

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self._fh_segment = -1

    def read(
        self, pos: Position, limit: int
    ) -> tuple[list[tuple[TraceRecord, Position]], Position]:
        out: list[tuple[TraceRecord, Position]] = []
        while len(out) < limit:
            segment, offset = pos
            newer = self._next_segment(segment)  # looked up BEFORE reading: see below
            data = self._read_from(segment, offset)
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                # Nothing complete here. A newer segment existing before this read means
                # this one is sealed: what is left is a torn line from a crash; skip it.
                if newer is None:
                    break
                if data:
                    log.warning("skipping a torn journal tail in segment %d", segment)
                pos = (newer, 0)
                continue
            for line in data[:cut].split(b"\n")[:-1]:
                if len(out) >= limit:
                    break
                offset += len(line) + 1
                try:
                    out.append((TraceRecord.from_json(line.decode()), (segment, offset)))
                except (ValueError, TypeError, UnicodeDecodeError) as exc:
                    self.unreadable.append((line, f"unreadable journal line: {describe(exc)}"))
            pos = (segment, offset)
        return out, pos

    def _next_segment(self, segment: int) -> int | None:
        later = [
            int(m.group(1))
            for p in self.spool_dir.iterdir()
            if (m := SEGMENT.match(p.name)) and int(m.group(1)) > segment
        ]
        return min(later) if later else None

    def _read_from(self, segment: int, offset: int) -> bytes:
        if self._fh_segment != segment:
            self.close()
            path = self.spool_dir / segment_name(segment)
            try:
                self._fh = open(path, "rb")  # noqa: SIM115
            except FileNotFoundError:
                return b""
            self._fh_segment = segment
        assert self._fh is not None
        self._fh.seek(offset)
        return self._fh.read(self.chunk)
