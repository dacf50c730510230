"""CallObserver: the base of interceptors that watch calls without changing them.

Metrics and the access log are observers; a user's tracing or audit log can be one too:

    class SlowCalls(CallObserver):
        def ended(self, call: ServerCall, status: Status) -> None:
            if call.elapsed > 1.0:
                log.warning("%s took %.1fs (%s)", call.method, call.elapsed, status.name)

`started(call)` runs before the rest of the chain, `ended(call, status)` after it, exactly once
however the call ended: with the status its trailers carried, the status an inner interceptor
refused it with, UNKNOWN for an inner interceptor's bug, or CANCELLED when the call was cancelled
under it (the client reset it or went away). `call.elapsed`, `call.messages_received` and
`call.messages_sent` are final in `ended`. Neither method may await: an observer never delays a
call.
"""

from __future__ import annotations

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from greet.transport import Proceed, ServerCall

__all__ = ["CallObserver", "final_status"]


def final_status(call: ServerCall, raised: BaseException | None = None) -> Status:
    """The status `call` ended with, read after `await proceed()` returned or raised `raised`.

    `call.status` when trailers were sent; else what an inner interceptor raised (its
    GRPCError's status; UNKNOWN for any other exception, which the transport answers with
    UNKNOWN); else CANCELLED (the stream was reset or lost before any trailers).
    """
    if call.status is not None:
        return call.status
    if isinstance(raised, GRPCError):
        return raised.status
    if isinstance(raised, Exception):
        return Status.UNKNOWN
    return Status.CANCELLED


class CallObserver:
    """An interceptor that watches every call (see the module docstring); subclass it and
    override `started` and/or `ended`."""

    async def intercept(self, call: ServerCall, proceed: Proceed) -> None:
        self.started(call)
        try:
            await proceed()
        except BaseException as error:
            self.ended(call, final_status(call, error))
            raise
        self.ended(call, final_status(call))

    def started(self, call: ServerCall) -> None:
        """The call begins (before the interceptors after this one and the handler)."""

    def ended(self, call: ServerCall, status: Status) -> None:
        """The call is over, with `status`."""
