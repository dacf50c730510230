"""Server logging: text or JSON lines on stderr, and the per-call access log.

`configure_logging("json")` makes every log record one JSON object on one line:

    {"time": "2026-11-24T15:40:01.123456+00:00", "level": "INFO", "logger": "greet.server",
     "message": "greet server listening on 127.0.0.1:8080"}

Records may carry extra fields (`logging.info(..., extra={"fields": {...}})`); the access log uses
that. `AccessLog.install(server)` (`--access-log`, off by default) logs one record per call on the
`greet.access` logger, after its trailers are sent (or when the client cancelled it):

    method       the full method path, e.g. /greet_service.GreetService/SayHello
    peer         the client's address, host:port
    status       the gRPC status name (OK, INVALID_ARGUMENT, ...) and `code`, its number
    duration_ms  from the request headers to the trailers
    user_agent   the client's user-agent

No metadata is logged: in particular never the `authorization` header (bearer tokens) nor any
message content. Unknown method paths are cut to 200 characters.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime
import json
import logging
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from grpclib.const import Status
from grpclib.events import RecvRequest, SendTrailingMetadata, listen
from grpclib.exceptions import StreamTerminatedError

if TYPE_CHECKING:
    from grpclib._typing import IServerMethodFunc
    from grpclib.server import Server, Stream

__all__ = [
    "ACCESS_LOGGER",
    "TEXT_FORMAT",
    "AccessLog",
    "JsonFormatter",
    "configure_logging",
]

ACCESS_LOGGER = "greet.access"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MAX_METHOD_CHARS = 200


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


@dataclass
class _Call:
    method: str
    peer: str
    user_agent: str | None
    started_at: float
    logged: bool = False


_current_call: contextvars.ContextVar[_Call | None] = contextvars.ContextVar(
    "greet_access_call", default=None
)


def format_peer(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return "unknown"


class AccessLog:
    """One log record per call on the `greet.access` logger (see the module docstring)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger if logger is not None else logging.getLogger(ACCESS_LOGGER)

    def install(self, server: Server) -> None:
        """Log every call `server` handles (install before authentication, so that refused
        calls are logged too)."""
        listen(server, RecvRequest, self._on_request)
        listen(server, SendTrailingMetadata, self._on_trailers)

    async def _on_request(self, event: RecvRequest) -> None:
        call = _Call(
            method=event.method_name[:MAX_METHOD_CHARS],
            peer=format_peer(event.peer.addr()),
            user_agent=event.user_agent[:MAX_METHOD_CHARS] if event.user_agent else None,
            started_at=time.perf_counter(),
        )
        _current_call.set(call)
        event.method_func = self._cancellation_logged(event.method_func, call)

    def _cancellation_logged(self, func: IServerMethodFunc, call: _Call) -> IServerMethodFunc:
        async def handle(stream: Stream[Any, Any]) -> None:
            try:
                await func(stream)
            except (asyncio.CancelledError, StreamTerminatedError):
                self._log(call, Status.CANCELLED)
                raise

        return handle

    async def _on_trailers(self, event: SendTrailingMetadata) -> None:
        call = _current_call.get()
        if call is not None:
            self._log(call, event.status)

    def _log(self, call: _Call, status: Status) -> None:
        if call.logged:
            return
        call.logged = True
        duration_ms = (time.perf_counter() - call.started_at) * 1000
        self.logger.info(
            "%s %s %.3fms peer=%s",
            call.method,
            status.name,
            duration_ms,
            call.peer,
            extra={
                "fields": {
                    "method": call.method,
                    "peer": call.peer,
                    "status": status.name,
                    "code": status.value,
                    "duration_ms": round(duration_ms, 3),
                    "user_agent": call.user_agent,
                }
            },
        )
