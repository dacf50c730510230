"""GreetClient: the typed client of greet_service.GreetService.

    async with GreetClient("127.0.0.1:8080") as client:
        reply = await client.say_hello()                     # HelloResponse
        async for reply in client.say_hello_server_streaming(["Alice", "Bob"]):
            print(reply.message)

Several targets (`GreetClient(["h1:p1", "h2:p2"])`, `"dns:///name:port"`), `backup=[...]` and
connection pools (`PoolOptions`): see greet.client.core. Retries: one `RetryPolicy` for every
method (`retry=`), or per method a `ServiceConfig` shaped like grpc-go's (`service_config=`, also
its JSON: greet.client.service_config). Interceptors around each call and each attempt
(`interceptors=`, `attempt_interceptors=`: greet.client.interceptors), among them Prometheus
metrics (`ClientMetrics`: greet.client.metrics). Every call raises `greet.errors.RpcError`
(with the gRPC status) when it fails.
"""

from greet.client.calls import ClientAttempt, ClientCall
from greet.client.core import GreetClient
from greet.client.interceptors import AttemptInterceptor, CallInterceptor, Interceptor, Proceed
from greet.client.metrics import ClientMetrics
from greet.client.pool import PoolOptions
from greet.client.requests import NameOrRequest, Requests
from greet.client.retry import RetryPolicy, RetryThrottling
from greet.client.service_config import MethodConfig, MethodName, ServiceConfig
from greet.client.targets import DnsName, Endpoint
from greet.errors import RpcError

__all__ = [
    "AttemptInterceptor",
    "CallInterceptor",
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
