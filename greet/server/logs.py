"""Server logging: text or JSON lines on stderr (`--log-format text|json`).

`configure_logging("json")` makes every log record one JSON object on one line:

    {"time": "2026-11-24T15:40:01.123456+00:00", "level": "INFO", "logger": "greet.server",
     "message": "greet server listening on 127.0.0.1:8080"}

Records may carry extra fields (`logging.info(..., extra={"fields": {...}})`); the access log
(greet.middleware.access_log) uses that.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import Any, TextIO

__all__ = ["TEXT_FORMAT", "JsonFormatter", "configure_logging"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, extra `fields`, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(
                record.created, datetime.timezone.utc
            ).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(
    log_format: str = "text", *, level: int = logging.INFO, stream: TextIO | None = None
) -> None:
    """Log records at `level` and above to stderr as text lines or JSON lines."""
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    elif log_format == "text":
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    else:
        raise ValueError(f"log format is text or json, not {log_format!r}")
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
