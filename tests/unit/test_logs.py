"""JSONL logging: format, level, idempotence, rotation."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from herd.logs import (
    BACKUP_COUNT,
    LOG_FILE_NAME,
    PROJECT_LOGGERS,
    JsonFormatter,
    JsonlFileHandler,
    configure_logging,
)
from herd.settings import Settings, load_settings


def _settings(data_dir: Path, level: str = "DEBUG") -> Settings:
    return load_settings(data_dir=data_dir, log_level=level)


def _ours() -> list[JsonlFileHandler]:
    return [h for h in logging.getLogger().handlers if isinstance(h, JsonlFileHandler)]


def _lines(path: Path) -> list[dict[str, Any]]:
    for handler in _ours():
        handler.flush()
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Leave the root logger and the project loggers as we found them."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    levels = {name: logging.getLogger(name).level for name in PROJECT_LOGGERS}
    yield
    for handler in _ours():
        root.removeHandler(handler)
        handler.close()
    assert list(root.handlers) == handlers
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_writes_jsonl_under_log_dir(tmp_path: Path) -> None:
    settings = _settings(tmp_path / "data")
    configure_logging(settings)

    logging.getLogger("herd.router").info("routed %s to %s", "llama3", "mac", extra={"ms": 12})

    path = settings.log_dir / LOG_FILE_NAME
    assert path == tmp_path / "data" / "logs" / "herd.jsonl"
    [entry] = _lines(path)
    assert entry["level"] == "INFO"
    assert entry["logger"] == "herd.router"
    assert entry["msg"] == "routed llama3 to mac"
    assert entry["ms"] == 12
    ts = datetime.fromisoformat(entry["ts"])
    assert ts.utcoffset() == timedelta(0)
    assert abs((datetime.now(UTC) - ts).total_seconds()) < 60


def test_extra_fields_and_odd_values(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    configure_logging(settings)

    logging.getLogger("herd.x").warning(
        "odd",
        extra={"node": "pc", "path": Path("/a/b"), "tags": ("x", "y"), "n": None, "ok": True},
    )

    [entry] = _lines(settings.log_dir / LOG_FILE_NAME)
    assert entry["node"] == "pc"
    assert entry["path"] == "/a/b"
    assert entry["tags"] == ["x", "y"]
    assert entry["n"] is None
    assert entry["ok"] is True
    assert set(entry) == {"ts", "level", "logger", "msg", "node", "path", "tags", "n", "ok"}


def test_extra_cannot_overwrite_base_fields() -> None:
    record = logging.LogRecord("herd.a", logging.INFO, __file__, 1, "real", None, None)
    record.level = "fake"
    record.ts = "fake"
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "INFO"
    assert entry["ts"] != "fake"
    assert entry["msg"] == "real"


def test_private_record_attributes_are_skipped() -> None:
    # Ray's log record factory adds _ray_timestamp_ns to every record in its processes.
    record = logging.LogRecord("herd.a", logging.INFO, __file__, 1, "m", None, None)
    record._ray_timestamp_ns = 123
    record.node = "mac"
    entry = json.loads(JsonFormatter().format(record))
    assert entry["node"] == "mac"
    assert "_ray_timestamp_ns" not in entry


def test_exception_is_one_line_of_json(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    configure_logging(settings)

    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("herd.y").exception("failed")

    lines = (settings.log_dir / LOG_FILE_NAME).read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["level"] == "ERROR"
    assert "ValueError: boom" in entry["exc"]
    assert "Traceback" in entry["exc"]


def test_level_from_settings(tmp_path: Path) -> None:
    settings = _settings(tmp_path, level="warning")
    configure_logging(settings)

    log = logging.getLogger("herd.z")
    log.debug("hidden")
    log.info("hidden")
    log.warning("shown")
    logging.getLogger("serve_app.routes").error("also shown")

    msgs = [e["msg"] for e in _lines(settings.log_dir / LOG_FILE_NAME)]
    assert msgs == ["shown", "also shown"]
    for name in PROJECT_LOGGERS:
        assert logging.getLogger(name).level == logging.WARNING


def test_third_party_debug_stays_out(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    configure_logging(settings)

    logging.getLogger("herd").debug("ours")
    logging.getLogger("some_http_lib").debug("theirs")

    msgs = [e["msg"] for e in _lines(settings.log_dir / LOG_FILE_NAME)]
    assert msgs == ["ours"]


def test_idempotent(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    configure_logging(settings)
    configure_logging(settings)
    assert len(_ours()) == 1

    logging.getLogger("herd").info("once")
    assert [e["msg"] for e in _lines(settings.log_dir / LOG_FILE_NAME)] == ["once"]

    configure_logging(_settings(tmp_path, level="ERROR"))
    [handler] = _ours()
    assert handler.level == logging.ERROR


def test_reconfigure_to_another_dir_replaces_handler(tmp_path: Path) -> None:
    configure_logging(_settings(tmp_path / "one"))
    [first] = _ours()
    configure_logging(_settings(tmp_path / "two"))
    [second] = _ours()

    assert second is not first
    assert first.stream is None  # closed
    assert Path(second.baseFilename) == (tmp_path / "two" / "logs" / LOG_FILE_NAME).resolve()


def test_daily_rotation_keeps_30(tmp_path: Path) -> None:
    configure_logging(_settings(tmp_path))
    [handler] = _ours()

    assert handler.when == "MIDNIGHT"
    assert handler.interval == 24 * 60 * 60
    assert handler.utc is True
    assert handler.backupCount == BACKUP_COUNT == 30


def _rotated(log_dir: Path) -> list[Path]:
    return sorted(p for p in log_dir.iterdir() if p.name != LOG_FILE_NAME)


def test_rollover_renames_and_prunes(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    configure_logging(settings)
    [handler] = _ours()
    log_dir = settings.log_dir
    for day in range(1, 36):
        (log_dir / f"{LOG_FILE_NAME}.2020-01-{day:02d}").write_text("old\n")

    logging.getLogger("herd").info("yesterday")
    handler.rolloverAt = int(time.time()) - 1
    logging.getLogger("herd").info("today")

    rotated = _rotated(log_dir)
    assert len(rotated) == BACKUP_COUNT
    newest = rotated[-1]
    assert not newest.name.startswith(f"{LOG_FILE_NAME}.2020-")
    assert [json.loads(x)["msg"] for x in newest.read_text().splitlines()] == ["yesterday"]
    assert [e["msg"] for e in _lines(log_dir / LOG_FILE_NAME)] == ["today"]
    assert handler.rolloverAt > time.time()


@pytest.mark.skipif(sys.platform == "win32", reason="renaming an open file")
def test_rollover_after_another_process_rotated(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    configure_logging(settings)
    [handler] = _ours()
    log_dir = settings.log_dir
    base = log_dir / LOG_FILE_NAME

    logging.getLogger("herd").info("mine before midnight")
    handler.rolloverAt = int(time.time()) - 1
    # Another worker process on this device rolls the file over first.
    period = time.strftime(handler.suffix, time.gmtime(handler.rolloverAt - handler.interval))
    rotated = log_dir / f"{LOG_FILE_NAME}.{period}"
    os.rename(base, rotated)
    base.write_text(json.dumps({"msg": "theirs after midnight"}) + "\n", encoding="utf-8")

    logging.getLogger("herd").info("mine after midnight")

    assert [json.loads(x)["msg"] for x in rotated.read_text().splitlines()] == [
        "mine before midnight"
    ]
    assert [e["msg"] for e in _lines(base)] == ["theirs after midnight", "mine after midnight"]
    assert handler.rolloverAt > time.time()
