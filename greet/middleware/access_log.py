"""The access log (`--access-log`, off by default): one record per call on `greet.access`.

`AccessLog` is a call observer (greet.middleware.observer): it logs when the call is over, after
its trailers were sent, or when the client cancelled it. Text lines read

    greet.access: /greet_service.GreetService/SayHello OK 0.231ms peer=127.0.0.1:50522

and with `--log-format json` (greet.server.logs) the record carries these fields:

    method       the full method path, e.g. /greet_service.GreetService/SayHello
    peer         the client's address, host:port ([v6]:port)
    status       the gRPC status name (OK, INVALID_ARGUMENT, ...) and `code`, its number
    duration_ms  from the request headers to the end of the call
    user_agent   the client's user-agent

No metadata is logged: in particular never the `authorization` header (bearer tokens) nor any
message content. GreetServer puts it before authentication, so refused calls are logged too.
"""

from __future__ import annotations

import logging

from grpclib.const import Status

from greet.addresses import format_peer
from greet.middleware.observer import CallObserver
from greet.transport import ServerCall

__all__ = ["ACCESS_LOGGER", "AccessLog"]

ACCESS_LOGGER = "greet.access"
MAX_FIELD_CHARS = 200
"""A user agent is cut to this many characters (method paths are served ones: short)."""


class AccessLog(CallObserver):
    """One log record per call (see the module docstring)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger if logger is not None else logging.getLogger(ACCESS_LOGGER)

    def ended(self, call: ServerCall, status: Status) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        duration_ms = call.elapsed * 1000
        peer = format_peer(call.peer.addr())
        user_agent = call.user_agent[:MAX_FIELD_CHARS] if call.user_agent else None
        self.logger.info(
            "%s %s %.3fms peer=%s",
            call.method,
            status.name,
            duration_ms,
            peer,
            extra={
                "fields": {
                    "method": call.method,
                    "peer": peer,
                    "status": status.name,
                    "code": status.value,
                    "duration_ms": round(duration_ms, 3),
                    "user_agent": user_agent,
                }
            },
        )
