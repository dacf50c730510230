"""The task that serves one call: its handler, through the server's interceptors.

`run_call` maps what the handler (or an interceptor) raised to a status - GRPCError as given, a
deadline to DEADLINE_EXCEEDED, a shutdown to UNAVAILABLE, a bug to UNKNOWN with the traceback
logged - and always releases what the call held.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError

from greet.transport.interception import run_chain

if TYPE_CHECKING:
    from greet.transport.server_stream import ServerCall

__all__ = ["finish", "run_call"]

log = logging.getLogger("greet.server")


async def finish(
    call: ServerCall, status: Status, message: str | None = None, details: Any = None
) -> None:
    """Send the trailers that end `call`, unless the stream is already done."""
    if call._send_trailing_metadata_done or call._cancel_done or call.closed:
        return
    if (
        status is Status.OK
        and not call._cardinality.server_streaming
        and not call._send_message_done
    ):
        log.error("%s returned without sending its one reply message", call._method_name)
        status, message = Status.UNKNOWN, "Internal Server Error"
    with contextlib.suppress(StreamTerminatedError):
        await call.send_trailing_metadata(
            status=status, status_message=message, status_details=details
        )


async def serve(call: ServerCall) -> None:
    """The handler and the trailers its outcome calls for (the innermost link of the chain)."""
    try:
        func = call.handler_func
        if "recv_request" in call._listening:
            call.metadata, func = await call._dispatch.recv_request(
                call.metadata,
                func,
                method_name=call._method_name,
                deadline=call.deadline,
                content_type=call.content_type,
                user_agent=call.user_agent,
                peer=call.peer,
            )
        await func(call)
    except GRPCError as error:
        await finish(call, error.status, error.message, error.details)
    except StreamTerminatedError:
        call.status = call.status or Status.CANCELLED  # the client went away: nobody to answer
    except asyncio.CancelledError:
        await ended_by_cancellation(call)
    except Exception:
        log.exception("%s failed", call._method_name)
        await finish(call, Status.UNKNOWN, "Internal Server Error")
    else:
        await finish(call, Status.OK)


async def ended_by_cancellation(call: ServerCall) -> None:
    """Answer a call cancelled under its handler (deadline, shutdown), or note that the client
    cancelled it; re-raise when the server itself is being torn down."""
    if call.deadline_hit:
        await finish(call, Status.DEADLINE_EXCEEDED, "deadline exceeded")
    elif call.shutting_down:
        await finish(call, Status.UNAVAILABLE, "the server is shutting down")
    elif call.closed:
        call.status = call.status or Status.CANCELLED
    else:
        raise asyncio.CancelledError


async def run_call(call: ServerCall) -> None:
    """Serve one call through the server's interceptors (greet.transport.interception); the
    call is released however it ends."""
    interceptors = call.connection.server.interceptors
    try:
        if not interceptors:
            await serve(call)
        else:
            await guarded(call, run_chain(call, interceptors, serve, guarded))
    finally:
        call.release()


async def guarded(call: ServerCall, step: Awaitable[None]) -> None:
    """Await a step of the interceptor chain; what it raises becomes the call's status (an
    interceptor's GRPCError as given, a failure UNKNOWN with its traceback logged)."""
    try:
        await step
    except GRPCError as error:  # an interceptor refused the call
        await finish(call, error.status, error.message, error.details)
    except asyncio.CancelledError:
        await ended_by_cancellation(call)
    except Exception:
        log.exception("an interceptor of %s failed", call._method_name)
        await finish(call, Status.UNKNOWN, "Internal Server Error")
