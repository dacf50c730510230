"""GreetClient: the typed client of greet_service.GreetService.

    async with GreetClient("127.0.0.1:8080") as client:
        reply = await client.say_hello()                     # HelloResponse
        async for reply in client.say_hello_server_streaming(["Alice", "Bob"]):
            print(reply.message)

Several targets (`GreetClient(["h1:p1", "h2:p2"])`, `"dns:///name:port"`), `backup=[...]` and
connection pools (`PoolOptions`). Retries: one `RetryPolicy` for every method (`retry=`), or per
method a `ServiceConfig` shaped like grpc-go's (`service_config=`, also its JSON). Interceptors
around each call and each attempt (`interceptors=`, `attempt_interceptors=`: `Interceptor`),
among them Prometheus metrics (`ClientMetrics`: greet.client.metrics). Every call raises
`greet.errors.RpcError` (with the gRPC status) when it fails.

The implementation modules are private, one concept each:

    _client.py          GreetClient, the typed face: its four calls
    _attempts.py        AttemptRunner: the one attempt loop, the call kinds, failures, the retry
                        budget, replayable requests
    _calls.py           ClientCall and ClientAttempt, what interceptors see, and their chains
    _service_config.py  RetryPolicy, RetryThrottling, ServiceConfig and its JSON form
    _pool.py            EndpointPool: targets, name resolution, balancing, endpoint health
"""

from greet.client._blocking import BlockingGreetClient
from greet.client._calls import (
    AttemptInterceptor,
    CallInterceptor,
    ClientAttempt,
    ClientCall,
    Interceptor,
    Proceed,
)
from greet.client._channel import CallStream, Channel
from greet.client._client import GreetClient, NameOrRequest, Requests
from greet.client._pool import DnsName, Endpoint, PoolOptions
from greet.client._service_config import (
    MethodConfig,
    MethodName,
    RetryPolicy,
    RetryThrottling,
    ServiceConfig,
)
from greet.client.metrics import ClientMetrics
from greet.errors import RpcError

__all__ = [
    "AttemptInterceptor",
    "BlockingGreetClient",
    "CallInterceptor",
    "CallStream",
    "Channel",
    "ClientAttempt",
    "ClientCall",
    "ClientMetrics",
    "DnsName",
    "Endpoint",
    "GreetClient",
    "Interceptor",
    "MethodConfig",
    "MethodName",
    "NameOrRequest",
    "PoolOptions",
    "Proceed",
    "Requests",
    "RetryPolicy",
    "RetryThrottling",
    "RpcError",
    "ServiceConfig",
]
