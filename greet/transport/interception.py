"""The server's interceptor seam: an ordered chain around every call's handler.

    class Interceptor(Protocol):
        async def intercept(self, call: ServerCall, proceed: Proceed) -> None: ...

Interceptors run in the order given (the first is the outermost), each before and after the rest
of the chain, as grpc-go's `ChainUnaryInterceptor`/`ChainStreamInterceptor` and grpcio's
`ServerInterceptor` do, for all four call kinds alike. An interceptor sees the call: its method
(`call.method`, `call.kind`), metadata, peer, deadline and user agent. It may

- reject the call: raise `GRPCError(status, message)` instead of awaiting `proceed()`; the client
  gets that status (trailers-only) and the handler never runs;
- wrap it: whatever it does before and after `await proceed()`, with `call.status` (the status
  the trailers carried: set once `proceed()` has returned), `call.elapsed`,
  `call.messages_received` and `call.messages_sent` - one observer of the call that metrics, logs
  and tracing all read.

`proceed()` runs the rest of the chain, the handler and its trailers, and returns normally
however they ended - an error, an inner interceptor's refusal or failure, a reset by the client
(CANCELLED), the deadline (DEADLINE_EXCEEDED), a drain's end (UNAVAILABLE): it is already the
call's status. It raises CancelledError only when the server itself is torn down under the call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from greet.transport.server_stream import ServerCall

__all__ = ["Interceptor", "Proceed", "run_chain"]

Proceed = Callable[[], Awaitable[None]]


class Interceptor(Protocol):
    """One link of the chain (see the module docstring)."""

    async def intercept(self, call: ServerCall, proceed: Proceed) -> None: ...


def run_chain(
    call: ServerCall,
    interceptors: Sequence[Interceptor],
    innermost: Callable[[ServerCall], Awaitable[None]],
    guard: Callable[[ServerCall, Awaitable[None]], Awaitable[None]],
    index: int = 0,
) -> Awaitable[None]:
    """The chain from `interceptors[index]` on, ending in `innermost(call)`. Each `proceed()`
    runs the rest under `guard`, which turns what an inner interceptor raised into the call's
    status, so that `proceed()` returns with `call.status` set (see the module docstring)."""
    if index == len(interceptors):
        return innermost(call)

    def proceed() -> Awaitable[None]:
        return guard(call, run_chain(call, interceptors, innermost, guard, index + 1))

    return interceptors[index].intercept(call, proceed)
