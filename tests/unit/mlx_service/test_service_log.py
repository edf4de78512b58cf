"""The service's log writer (mlx_service/telemetry/service_log.py): a file that cannot be written is
said once and its lines dropped, never a traceback per line; it resumes when it can be
written again; a full queue drops lines instead of making the request thread wait."""
from __future__ import annotations

import logging
import queue
import shutil

from mlx_service.telemetry import service_log
from mlx_service.telemetry.service_log import DroppingQueueHandler, SafeRotatingFileHandler


def _record(i: int) -> logging.LogRecord:
    return logging.makeLogRecord({"name": "t", "levelno": logging.INFO, "levelname": "INFO",
                                  "msg": f"line {i} " + "x" * 60})


def test_a_failing_rotation_is_said_once_and_lines_are_dropped(tmp_path, capsys, monkeypatch):
    log = tmp_path / "service.log"
    (tmp_path / "service.log.1").mkdir()  # rotation renames onto this: it always fails
    (tmp_path / "service.log.1" / "keep").write_text("x")
    handler = SafeRotatingFileHandler(str(log), maxBytes=300, backupCount=1)
    for i in range(200):
        handler.emit(_record(i))
    err = capsys.readouterr().err
    assert err.count("cannot write the log") == 1 and "Traceback" not in err, err
    assert handler.dropped >= 180  # all but the few lines before the first rotation
    assert log.stat().st_size < 300 + 200

    # fixed: the next try (after RETRY_S) rotates, writes, and says how many were dropped
    shutil.rmtree(tmp_path / "service.log.1")
    monkeypatch.setattr(service_log, "RETRY_S", 0.0)
    handler.emit(_record(999))
    handler.close()
    text = log.read_text()
    assert "line 999" in text and "line(s) were dropped" in text


def test_a_full_queue_drops_instead_of_waiting(capsys):
    records: queue.Queue = queue.Queue(2)
    handler = DroppingQueueHandler(records)
    for i in range(5):
        handler.emit(_record(i))  # would block forever with a plain put()
    assert records.qsize() == 2 and handler.dropped == 3
    assert capsys.readouterr().err.count("lines are dropped") == 1
