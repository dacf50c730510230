"""Server interceptors: the home of greet's own (auth, metrics, the access log) and of yours.

Every call a GreetServer serves runs through an ordered chain of interceptors, for all four
call kinds alike, as grpc-go's `ChainUnaryInterceptor`/`ChainStreamInterceptor` and grpcio's
`ServerInterceptor` do. An interceptor is any object with

    async def intercept(self, call: ServerCall, proceed: Proceed) -> None

(the `Interceptor` protocol). The first in the chain is the outermost: it runs before, and
finishes after, all the others. Inside `intercept` it may

- look at the call: `call.method` (`/greet_service.GreetService/SayHello`), `call.kind`
  (a grpclib `Cardinality`), `call.metadata`, `call.peer`, `call.deadline`, `call.user_agent`;
- refuse it: `raise GRPCError(Status.PERMISSION_DENIED, "why")` instead of awaiting
  `proceed()`. The client gets that status and message; the interceptors after this one and
  the handler never run;
- wrap it: `await proceed()` runs the rest of the chain, the handler and its trailers. After
  it, `call.status` (the status the trailers carried), `call.status_message`, `call.elapsed`
  (seconds since the request headers), `call.messages_received` and `call.messages_sent` are
  the call's outcome: the one observer of a call that metrics, logs and tracing all read.
  `proceed()` returns however the handler or an inner interceptor ended (a refusal, a failure,
  a reset, the deadline, a drain: it is already the call's status); it raises CancelledError
  only when the server itself is torn down under the call. `final_status(call, raised)` tells
  the status in every case, and `CallObserver` is a base class that does that bookkeeping.

    class Deny:
        async def intercept(self, call: ServerCall, proceed: Proceed) -> None:
            if call.metadata is not None and call.metadata.get("x-deny") == "yes":
                raise GRPCError(Status.PERMISSION_DENIED, "denied")
            await proceed()

    server = GreetServer(config, interceptors=[Deny()])

GreetServer's chain is greet's own interceptors, then yours in the order given:

    ServerMetrics    --metrics-port: go-grpc-prometheus' grpc_server_* (greet.middleware.metrics)
    AccessLog        --access-log: one record per call (greet.middleware.access_log)
    BearerTokenAuth  --auth-token-file: UNAUTHENTICATED without a token (greet.middleware.auth)

Metrics and the access log come first so that calls refused by auth (or by yours) are counted
and logged. A runnable example, a per-method rate limit: `python -m greet.examples.rate_limit`.
A new server interceptor of greet's own goes into a module of this package, one per
interceptor; GreetServer (greet.server.app) puts it in the chain.
"""

from greet.middleware.access_log import AccessLog
from greet.middleware.auth import BearerTokenAuth, TokenFile
from greet.middleware.metrics import ServerMetrics
from greet.middleware.observer import CallObserver, final_status
from greet.transport import Interceptor, Proceed, ServerCall

__all__ = [
    "AccessLog",
    "BearerTokenAuth",
    "CallObserver",
    "Interceptor",
    "Proceed",
    "ServerCall",
    "ServerMetrics",
    "TokenFile",
    "final_status",
]
