"""greet.client.Channel under a generated stub (GreetServiceStub), against the held-out-style
peers: grpcio's server and the grpc-go reference server (benchmarks/go_server, built offline by
tests/interop/build_go.sh). Balancing across two replicas with one killed, retries per a grpc-go
service config JSON, call and attempt interceptors, deadlines, TLS with trustme certificates.

grpcio's server runs in its own threads (grpc.server), serving GreetService through generic
handlers with the betterproto messages' own bytes; it can fail its first SayHello calls with
UNAVAILABLE and take a while over each greeting of a stream. The Go server is a real process.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent import futures
from contextlib import AbstractAsyncContextManager
from functools import partial
from pathlib import Path
from typing import Any, Generic, TypeVar

import grpc
import pytest
import trustme
from go_interop import GoBinaries, go_server
from grpclib.const import Status

from greet.client import Channel, ClientAttempt, ClientCall, Proceed, RpcError
from greet.tls import client_ssl_context
from greet_service import (
    GreetServiceStub,
    HelloRequest,
    HelloResponse,
    MessagesList,
    NamesList,
    NoParam,
)

SERVICE = "greet_service.GreetService"


def service_config(max_attempts: int, retryable: tuple[str, ...] = ("UNAVAILABLE",)) -> str:
    """grpc-go's service config JSON: every GreetService method retried on `retryable`."""
    return json.dumps(
        {
            "methodConfig": [
                {
                    "name": [{"service": SERVICE}],
                    "retryPolicy": {
                        "maxAttempts": max_attempts,
                        "initialBackoff": "0.001s",
                        "maxBackoff": "0.002s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": list(retryable),
                    },
                }
            ]
        }
    )


class GrpcioGreet:
    """GreetService on grpcio's server (see the module docstring): SayHello fails its first
    `failures` calls with UNAVAILABLE; each greeting of a stream takes `work_delay` seconds;
    a bidi call ends after `bidi_answers` replies (OK, or `bidi_status`) while its client still
    sends; `metadata` keeps the invocation metadata of every SayHello call."""

    def __init__(
        self,
        *,
        failures: int = 0,
        work_delay: float = 0.0,
        tls: trustme.LeafCert | None = None,
        bidi_answers: int | None = None,
        bidi_status: grpc.StatusCode | None = None,
    ) -> None:
        self.failures = failures
        self.work_delay = work_delay
        self.bidi_answers = bidi_answers
        self.bidi_status = bidi_status
        self.calls = 0
        self.metadata: list[dict[str, str | bytes]] = []
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self._server.add_generic_rpc_handlers([self._handlers()])
        if tls is None:
            port = self._server.add_insecure_port("127.0.0.1:0")
        else:
            key = tls.private_key_pem.bytes()
            chain = b"".join(blob.bytes() for blob in tls.cert_chain_pems)
            credentials = grpc.ssl_server_credentials([(key, chain)])
            port = self._server.add_secure_port("127.0.0.1:0", credentials)
        self.target = f"127.0.0.1:{port}"
        self._server.start()

    def stop(self) -> None:
        self._server.stop(None).wait()

    def _handlers(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "SayHello": grpc.unary_unary_rpc_method_handler(
                    self.say_hello,
                    request_deserializer=NoParam.FromString,
                    response_serializer=bytes,
                ),
                "SayHelloServerStreaming": grpc.unary_stream_rpc_method_handler(
                    self.server_streaming,
                    request_deserializer=NamesList.FromString,
                    response_serializer=bytes,
                ),
                "SayHelloClientStreaming": grpc.stream_unary_rpc_method_handler(
                    self.client_streaming,
                    request_deserializer=HelloRequest.FromString,
                    response_serializer=bytes,
                ),
                "SayHelloBidirectionalStreaming": grpc.stream_stream_rpc_method_handler(
                    self.bidi,
                    request_deserializer=HelloRequest.FromString,
                    response_serializer=bytes,
                ),
            },
        )

    def say_hello(self, _request: NoParam, context: grpc.ServicerContext) -> HelloResponse:
        with self._lock:
            self.calls += 1
            self.metadata.append(dict(context.invocation_metadata()))
            fail = self.calls <= self.failures
        if fail:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"call {self.calls} fails")
        return HelloResponse(message="Hello")

    def greet(self, name: str, context: grpc.ServicerContext) -> HelloResponse | None:
        """The greeting for `name`, after `work_delay`; None if the call ended meanwhile."""
        if self.work_delay:
            ended = threading.Event()
            context.add_callback(ended.set)
            if ended.wait(self.work_delay):
                return None
        return HelloResponse(message=f"Hello {name}")

    def server_streaming(
        self, request: NamesList, context: grpc.ServicerContext
    ) -> Iterator[HelloResponse]:
        for name in request.names:
            if (reply := self.greet(name, context)) is None:
                return
            yield reply

    def client_streaming(
        self, requests: Iterator[HelloRequest], context: grpc.ServicerContext
    ) -> MessagesList:
        return MessagesList(messages=[f"Hello {request.name}" for request in requests])

    def bidi(
        self, requests: Iterator[HelloRequest], context: grpc.ServicerContext
    ) -> Iterator[HelloResponse]:
        for answered, request in enumerate(requests):
            if answered == self.bidi_answers:  # ends the call, its client still sending
                if self.bidi_status is not None:
                    context.abort(self.bidi_status, f"no more than {answered}")
                return
            if (reply := self.greet(request.name, context)) is None:
                return
            yield reply


@pytest.fixture
def grpcio_servers() -> Iterator[Callable[..., GrpcioGreet]]:
    """Start GrpcioGreet servers; all are stopped after the test."""
    started: list[GrpcioGreet] = []

    def start(**options: Any) -> GrpcioGreet:
        server = GrpcioGreet(**options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


Record = TypeVar("Record", ClientCall, ClientAttempt)


class Seen(Generic[Record]):
    """Records every call (or attempt) an interceptor sees, and adds metadata to each."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.records: list[Record] = []

    async def intercept(self, record: Record, proceed: Proceed, /) -> None:
        self.records.append(record)
        record.metadata[self.key] = str(len(self.records))
        await proceed()


async def say_hello_many(stub: GreetServiceStub, count: int) -> None:
    for _ in range(count):
        assert (await stub.say_hello(NoParam())).message == "Hello"


NAMES = ["Akhil", "Zoë", "世界"]
GREETINGS = [f"Hello {name}" for name in NAMES]


async def all_four(stub: GreetServiceStub) -> None:
    """Each call kind once, with the replies GreetService gives."""
    assert (await stub.say_hello(NoParam())).message == "Hello"
    streamed = stub.say_hello_server_streaming(NamesList(names=NAMES))
    assert [reply.message async for reply in streamed] == GREETINGS
    requests = [HelloRequest(name=name) for name in NAMES]
    assert (await stub.say_hello_client_streaming(requests)).messages == GREETINGS
    bidi = stub.say_hello_bidirectional_streaming(requests)
    assert [reply.message async for reply in bidi] == GREETINGS


# -- grpcio's server ------------------------------------------------------------------------------


async def test_grpcio_all_four_calls_balanced_and_one_replica_stopped(
    grpcio_servers: Callable[..., GrpcioGreet],
) -> None:
    first, second = grpcio_servers(), grpcio_servers()
    config = service_config(max_attempts=3)
    async with Channel([first.target, second.target], service_config=config, timeout=10) as chan:
        stub = GreetServiceStub(chan)
        await all_four(stub)
        await say_hello_many(stub, 4)
        assert chan.served == {first.target: 4, second.target: 4}  # round-robin
        await asyncio.to_thread(second.stop)
        await say_hello_many(stub, 6)
        await all_four(stub)
        assert chan.served[first.target] >= 10
        assert sum(chan.served.values()) == 18


async def test_grpcio_unavailable_is_retried_per_the_service_config(
    grpcio_servers: Callable[..., GrpcioGreet],
) -> None:
    flaky = grpcio_servers(failures=2)
    async with Channel(flaky.target, service_config=service_config(3), timeout=10) as channel:
        assert (await GreetServiceStub(channel).say_hello(NoParam())).message == "Hello"
    assert flaky.calls == 3

    flaky = grpcio_servers(failures=2)
    async with Channel(flaky.target, service_config=service_config(2), timeout=10) as channel:
        with pytest.raises(RpcError) as raised:
            await GreetServiceStub(channel).say_hello(NoParam())
    assert raised.value.status is Status.UNAVAILABLE
    assert raised.value.message == "call 2 fails"  # grpcio's own status message
    assert flaky.calls == 2


async def test_grpcio_call_and_attempt_interceptors_see_the_retry(
    grpcio_servers: Callable[..., GrpcioGreet],
) -> None:
    flaky = grpcio_servers(failures=1)
    calls, attempts = Seen[ClientCall]("x-call"), Seen[ClientAttempt]("x-attempt")
    async with Channel(
        flaky.target,
        service_config=service_config(3),
        interceptors=[calls],
        attempt_interceptors=[attempts],
        metadata={"x-team": "inventory"},
        timeout=10,
    ) as channel:
        assert (await GreetServiceStub(channel).say_hello(NoParam())).message == "Hello"
    [call] = calls.records
    assert (call.method, call.status) == (f"/{SERVICE}/SayHello", Status.OK)
    assert [(a.number, a.status) for a in attempts.records] == [
        (1, Status.UNAVAILABLE),
        (2, Status.OK),
    ]
    assert [(sent["x-team"], sent["x-call"], sent["x-attempt"]) for sent in flaky.metadata] == [
        ("inventory", "1", "1"),
        ("inventory", "1", "2"),
    ]


async def test_grpcio_deadline_exceeded_with_its_cause(
    grpcio_servers: Callable[..., GrpcioGreet],
) -> None:
    slow = grpcio_servers(work_delay=30.0)
    async with Channel(slow.target, service_config=service_config(3)) as channel:
        stub = GreetServiceStub(channel)
        with pytest.raises(RpcError) as raised:
            [
                reply
                async for reply in stub.say_hello_server_streaming(
                    NamesList(names=["late"]), timeout=0.3
                )
            ]
        assert raised.value.status is Status.DEADLINE_EXCEEDED
        assert raised.value.__cause__ is not None  # the client's timer, or the server's status
        with pytest.raises(RpcError) as raised:
            requests = [HelloRequest(name="late")]
            [reply async for reply in stub.say_hello_bidirectional_streaming(requests, timeout=0.3)]
        assert raised.value.status is Status.DEADLINE_EXCEEDED
        assert raised.value.__cause__ is not None
        assert (await stub.say_hello(NoParam(), timeout=10)).message == "Hello"


async def endless() -> AsyncIterator[HelloRequest]:
    for index in itertools.count():
        yield HelloRequest(name=str(index))


async def test_grpcio_ending_a_bidi_call_before_its_requests_end(
    grpcio_servers: Callable[..., GrpcioGreet],
) -> None:
    """grpcio's server ends the call with its trailers, then resets the stream (NO_ERROR): the
    status in the trailers is the call's outcome."""
    early = grpcio_servers(bidi_answers=2)
    failing = grpcio_servers(bidi_answers=1, bidi_status=grpc.StatusCode.RESOURCE_EXHAUSTED)
    async with Channel([early.target], timeout=10) as channel:
        stub = GreetServiceStub(channel)
        for _ in range(2):
            replies = stub.say_hello_bidirectional_streaming(endless())
            assert [reply.message async for reply in replies] == ["Hello 0", "Hello 1"]
    async with Channel([failing.target], timeout=10) as channel:
        replies = GreetServiceStub(channel).say_hello_bidirectional_streaming(endless())
        heard = []
        with pytest.raises(RpcError) as raised:
            async for reply in replies:
                heard.append(reply.message)
    assert heard == ["Hello 0"]
    assert (raised.value.status, raised.value.message) == (
        Status.RESOURCE_EXHAUSTED,
        "no more than 1",
    )


async def test_grpcio_over_tls_with_trustme_certificates(
    grpcio_servers: Callable[..., GrpcioGreet], tmp_path: Path
) -> None:
    """greet.tls.client_ssl_context offers ALPN "h2", which grpcio's server requires."""
    ca = trustme.CA()
    secure = grpcio_servers(tls=ca.issue_cert("127.0.0.1"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    trusted = client_ssl_context(tmp_path / "ca.pem")
    async with Channel(secure.target, ssl=trusted, timeout=10) as channel:
        await all_four(GreetServiceStub(channel))
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "other.pem"))
    untrusted = client_ssl_context(tmp_path / "other.pem")
    config = service_config(2)
    async with Channel(secure.target, ssl=untrusted, timeout=10, service_config=config) as channel:
        with pytest.raises(RpcError) as raised:
            await GreetServiceStub(channel).say_hello(NoParam())
    assert raised.value.status is Status.UNAVAILABLE
    assert isinstance(raised.value.__cause__, ssl.SSLCertVerificationError)


# -- grpc-go's server -----------------------------------------------------------------------------


GoServer = Callable[..., AbstractAsyncContextManager[tuple[asyncio.subprocess.Process, str]]]


@pytest.fixture
def go_servers(go_binaries: GoBinaries) -> GoServer:
    """`async with go_servers(*flags) as (process, target)`: the grpc-go reference server."""
    return partial(go_server, go_binaries)


async def test_go_all_four_calls_balanced_and_one_replica_killed(
    go_servers: GoServer,
) -> None:
    async with go_servers() as (_, first), go_servers() as (second_process, second):
        config = service_config(max_attempts=3)
        async with Channel([first, second], service_config=config, timeout=10) as channel:
            stub = GreetServiceStub(channel)
            await all_four(stub)
            await say_hello_many(stub, 4)
            assert channel.served == {first: 4, second: 4}
            second_process.send_signal(signal.SIGKILL)
            await second_process.wait()
            await say_hello_many(stub, 6)
            await all_four(stub)
            assert channel.served[first] >= 12
            assert sum(channel.served.values()) == 18


async def test_go_retries_per_the_service_config_past_a_killed_replica(
    go_servers: GoServer,
) -> None:
    """A replica killed before the first call: the first attempt goes to it (round-robin starts
    at the first target) and fails UNAVAILABLE; the service config decides whether the call
    goes on to the live one."""
    calls, attempts = Seen[ClientCall]("x-call"), Seen[ClientAttempt]("x-attempt")
    async with go_servers() as (dead_process, dead), go_servers() as (_, live):
        dead_process.send_signal(signal.SIGKILL)
        await dead_process.wait()
        async with Channel(
            [dead, live],
            service_config=service_config(max_attempts=2),
            interceptors=[calls],
            attempt_interceptors=[attempts],
            timeout=10,
        ) as channel:
            assert (await GreetServiceStub(channel).say_hello(NoParam())).message == "Hello"
        [call] = calls.records
        assert call.status is Status.OK
        assert [(a.endpoint, a.status) for a in attempts.records] == [
            (dead, Status.UNAVAILABLE),
            (live, Status.OK),
        ]
        not_on_unavailable = service_config(2, retryable=("RESOURCE_EXHAUSTED",))
        async with Channel([dead, live], service_config=not_on_unavailable) as channel:
            with pytest.raises(RpcError) as raised:
                await GreetServiceStub(channel).say_hello(NoParam(), timeout=10)
        assert raised.value.status is Status.UNAVAILABLE
        assert dead in raised.value.message


async def test_go_deadline_exceeded_with_its_cause(go_servers: GoServer) -> None:
    """Against grpc-go 1.33 the deadline is met where the server waits for a request: a server
    handler that returns its context's error when the deadline fires (in the greeting) ends the
    call with UNKNOWN, which races the client's own timer."""
    never = asyncio.Event()

    async def no_requests() -> AsyncIterator[HelloRequest]:
        await never.wait()
        yield HelloRequest(name="never")

    async with (
        go_servers() as (_, target),
        Channel(target, service_config=service_config(3)) as channel,
    ):
        stub = GreetServiceStub(channel)
        with pytest.raises(RpcError) as raised:
            bidi = stub.say_hello_bidirectional_streaming(no_requests(), timeout=0.3)
            [reply async for reply in bidi]
        assert raised.value.status is Status.DEADLINE_EXCEEDED
        assert raised.value.__cause__ is not None
        assert (await stub.say_hello(NoParam(), timeout=10)).message == "Hello"
