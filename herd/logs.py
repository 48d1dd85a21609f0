"""JSONL structured logging: one JSON object per line in ``<data_dir>/logs/herd.jsonl``.

Each line holds ``ts`` (ISO 8601, UTC), ``level``, ``logger`` and ``msg``, then every
field passed through ``extra=`` (``log.info("routed", extra={"node": "mac"})``) except
names starting with ``_`` (Ray stamps ``_ray_timestamp_ns`` on every record), and
``exc`` / ``stack`` when present. The file rotates at midnight UTC; 30 rotated files
are kept (``herd.jsonl.YYYY-MM-DD``).

:func:`configure_logging` attaches one handler to the root logger, so records from
third-party libraries reach the file too. The project's own loggers (``herd``,
``actors``, ``serve_app``, ``dashboard``) are set to ``settings.log_level``; other
libraries keep their own levels (WARNING by default), so a DEBUG file is not flooded
by HTTP client internals.
"""

from __future__ import annotations

import json
import logging
import os
import time
import traceback
from datetime import UTC, datetime
from logging.handlers import TimedRotatingFileHandler
from pathlib import Path
from typing import Any

from herd.settings import Settings

LOG_FILE_NAME = "herd.jsonl"
BACKUP_COUNT = 30
PROJECT_LOGGERS = ("herd", "actors", "serve_app", "dashboard")

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """Format a record as one line of JSON (never raises on odd ``extra`` values)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and key not in entry and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, default=str, ensure_ascii=False)


class JsonlFileHandler(TimedRotatingFileHandler):
    """Daily (UTC midnight) rotating JSONL file, safe to share between processes.

    Every Ray worker on a device (NodeActor, RouterActor, Serve replicas) writes the
    same file. The stdlib handler, on rollover, deletes an existing dated file before
    renaming, so the second process to roll over would destroy the day the first one
    just rotated. This one notices that the dated file exists and only reopens the
    (already fresh) base file instead.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(
            path,
            when="midnight",
            backupCount=BACKUP_COUNT,
            encoding="utf-8",
            utc=True,
        )

    def doRollover(self) -> None:
        start = time.gmtime(self.rolloverAt - self.interval)
        rotated = self.rotation_filename(f"{self.baseFilename}.{time.strftime(self.suffix, start)}")
        if not os.path.exists(rotated):
            super().doRollover()
            return
        # Another process already rotated this period: follow it to the new file.
        if self.stream:
            self.stream.close()
        self.stream = self._open()
        now = int(time.time())
        next_at = self.computeRollover(now)
        while next_at <= now:
            next_at += self.interval
        self.rolloverAt = next_at


def configure_logging(settings: Settings) -> None:
    """Send logs to ``settings.log_dir / "herd.jsonl"`` at ``settings.log_level``.

    Idempotent: the root logger keeps exactly one herd JSONL handler. Calling again
    with the same file only updates the level; with another file, the old handler is
    closed and replaced.
    """
    level = logging.getLevelName(settings.log_level)
    path = (settings.log_dir / LOG_FILE_NAME).resolve()
    root = logging.getLogger()

    current: JsonlFileHandler | None = None
    for handler in list(root.handlers):
        if isinstance(handler, JsonlFileHandler):
            if current is None and Path(handler.baseFilename) == path:
                current = handler
            else:
                root.removeHandler(handler)
                handler.close()

    if current is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        current = JsonlFileHandler(path)
        current.setFormatter(JsonFormatter())
        root.addHandler(current)
    current.setLevel(level)

    for name in PROJECT_LOGGERS:
        logging.getLogger(name).setLevel(level)
