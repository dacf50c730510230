"""One process's load loop: `concurrency` workers calling GreetService over greet's transport.

The bench measures the server, so each call is as cheap as the client side can make it: a
greet.transport.Channel per connection (`--connections` per endpoint) with a codec that passes
bytes through (`RawCodec`), and every request message encoded once, before the run. No
GreetClient, no interceptors, no reply decoding.

What the client library would do for a user, done here in its plainest form:

- endpoints: every `--target` (a `dns:///name:port` resolved once, before the run), taken
  round-robin; `--backup` endpoints only while every target is down;
- retries: an attempt that fails UNAVAILABLE (refused, connection lost, GOAWAY, refused stream)
  is made again on another endpoint that is up, up to `--max-attempts` attempts a call;
- an endpoint whose connection failed is down for a while (0.05 s, doubling to 2 s while it
  keeps failing); it is tried again after that, or at once when no endpoint is up;
- a worker whose call failed UNAVAILABLE waits before its next call (0.05 s, doubling to 1 s,
  back to none after a call that succeeds): against a dead target each worker makes a handful
  of calls a second, not thousands, and every one is counted and reported;
- `--timeout` is the deadline of a call, all its attempts included; `--metadata`, the token,
  TLS and the HTTP/2 settings (`--http2-engine`, keepalive, compression) as for any call.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from grpclib.const import Cardinality
from grpclib.encoding.base import CodecBase
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError
from grpclib.metadata import Deadline

from greet.addresses import format_address, parse_address
from greet.bench._options import BenchOptions
from greet.bench._result import BenchResult
from greet.bench._schedule import Pacer
from greet.service import GreetService
from greet.transport import (
    Channel,
    ChannelConfig,
    ClientStream,
    ConnectionEnded,
    HandshakeFailed,
    StreamRefused,
)

__all__ = [
    "CALL_BACKOFF",
    "DNS_SCHEME",
    "Connect",
    "EndpointAddress",
    "Load",
    "RawCodec",
    "Snapshot",
    "resolve_targets",
]

DNS_SCHEME = "dns:///"
METHOD_OF_KIND = {
    "unary": "SayHello",
    "server-stream": "SayHelloServerStreaming",
    "client-stream": "SayHelloClientStreaming",
    "bidi": "SayHelloBidirectionalStreaming",
}
UNAVAILABLE = "UNAVAILABLE"


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: `first` seconds, doubled after each failure, at most `most`."""

    first: float
    most: float

    def after(self, previous: float) -> float:
        return self.first if previous <= 0 else min(self.most, previous * 2)


CALL_BACKOFF = Backoff(0.05, 1.0)
"""A worker's wait after a call that failed UNAVAILABLE."""
ENDPOINT_BACKOFF = Backoff(0.05, 2.0)
"""How long an endpoint whose connection failed is left alone."""


class RawCodec(CodecBase):
    """Messages are bytes already encoded (requests) or left undecoded (replies)."""

    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        encoded: bytes = message  # encoded already
        return encoded

    def decode(self, data: bytes, message_type: Any) -> bytes:
        return data


@dataclass(frozen=True)
class EndpointAddress:
    """One address to call: `host`, `port`, and the name to check a TLS certificate against."""

    host: str
    port: int
    server_hostname: str | None = None

    @property
    def name(self) -> str:
        return format_address(self.host, self.port)


def resolve_targets(text: str) -> tuple[EndpointAddress, ...]:
    """`host:port[,...]` and `dns:///name:port` (every address of the name, resolved now);
    ValueError saying which target is wrong."""
    addresses: list[EndpointAddress] = []
    for target in (part.strip() for part in text.split(",")):
        if not target:
            continue
        dns = target.startswith(DNS_SCHEME)
        try:
            host, port = parse_address(target.removeprefix(DNS_SCHEME))
        except ValueError as error:
            raise ValueError(f"bad target {target!r}: {error}") from None
        if not dns:
            addresses.append(EndpointAddress(host, port))
            continue
        try:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as error:
            raise ValueError(f"{target}: cannot resolve {host}: {error}") from None
        for address in dict.fromkeys(str(info[4][0]) for info in found):
            addresses.append(EndpointAddress(address, port, server_hostname=host))
    return tuple(addresses)


@dataclass(frozen=True)
class Connect:
    """How a bench process reaches the servers; plain data, so that it crosses to a worker
    process (TLS as the files, each process makes its own context)."""

    targets: tuple[EndpointAddress, ...]
    backup: tuple[EndpointAddress, ...] = ()
    config: ChannelConfig = field(default_factory=ChannelConfig)
    connections: int = 1
    metadata: tuple[tuple[str, str], ...] = ()
    timeout: float | None = None
    max_attempts: int = 1
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None


class Endpoint:
    """One address, its channels (used in turn), and whether it is down just now."""

    def __init__(self, address: EndpointAddress, connect: Connect, ssl: Any) -> None:
        self.name = address.name
        self.channels = [
            Channel(
                address.host,
                address.port,
                ssl=ssl,
                server_hostname=address.server_hostname,
                config=connect.config,
                codec=RawCodec(),
            )
            for _ in range(connect.connections)
        ]
        self._turn = itertools.cycle(self.channels)
        self.down_until = 0.0
        self._backoff = 0.0

    def channel(self) -> Channel:
        return next(self._turn)

    def is_up(self, now: float) -> bool:
        return self.down_until <= now

    def failed(self, now: float) -> None:
        self._backoff = ENDPOINT_BACKOFF.after(self._backoff)
        self.down_until = now + self._backoff

    def served(self) -> None:
        self._backoff = 0.0
        self.down_until = 0.0

    def close(self) -> None:
        for channel in self.channels:
            channel.close()


class Endpoints:
    """The targets in turn, the backups while every target is down."""

    def __init__(self, targets: list[Endpoint], backup: list[Endpoint]) -> None:
        self.targets = targets
        self.backup = backup
        self._next = 0
        self.only = targets[0] if len(targets) == 1 and not backup else None

    def pick(self, now: float, tried: Collection[str] = ()) -> Endpoint | None:
        """The next endpoint that is up and not yet tried by this call; when none is, on a
        call's first attempt, the one that comes back soonest (None on a retry)."""
        if self.only is not None and not tried:
            return self.only  # one target, no backup: nothing to choose
        for group in (self.targets, self.backup):
            for offset in range(len(group)):
                endpoint = group[(self._next + offset) % len(group)]
                if endpoint.is_up(now) and endpoint.name not in tried:
                    self._next = (self._next + offset + 1) % max(1, len(self.targets))
                    return endpoint
        if tried:
            return None
        return min(self.targets, key=lambda endpoint: endpoint.down_until)

    def close(self) -> None:
        for endpoint in (*self.targets, *self.backup):
            endpoint.close()


class AttemptFailed(Exception):
    """An attempt ended with `status` (a gRPC status name) and `text`; `endpoint_down` when the
    endpoint could not be reached or its connection ended."""

    def __init__(self, status: str, text: str, *, endpoint_down: bool = False) -> None:
        super().__init__(f"{status}: {text}")
        self.status = status
        self.text = text
        self.endpoint_down = endpoint_down


Attempt = Callable[[Channel, Deadline | None], Awaitable[int]]
"""One attempt of a call on a channel; returns the messages it streamed."""


class Method(NamedTuple):
    """A GreetService method as the servicer serves it: its path, kind and request class."""

    path: str
    cardinality: Cardinality
    request_type: Any


def greet_methods() -> dict[str, Method]:
    """GreetService's methods by name, from the servicer's own method table."""
    methods = {}
    for path, handler in GreetService().__mapping__().items():
        methods[path.rpartition("/")[2]] = Method(path, handler.cardinality, handler.request_type)
    return methods


def make_attempt(options: BenchOptions, metadata: tuple[tuple[str, str], ...]) -> Attempt:
    """The attempt of `options.rpc`, its requests encoded once, here."""
    methods = greet_methods()
    path, cardinality, _ = methods[METHOD_OF_KIND[options.rpc]]
    names_list = methods["SayHelloServerStreaming"].request_type
    hello_request = methods["SayHelloClientStreaming"].request_type
    data = options.data
    names_lists = itertools.cycle(
        [bytes(names_list(names=list(names))) for names in data.names_lists]
    )
    stream = [bytes(hello_request(name=name)) for name in data.stream]
    no_param = bytes(methods["SayHello"].request_type())
    sent = len(stream)

    def request(channel: Channel, deadline: Deadline | None) -> ClientStream:
        return channel.request(
            path, cardinality, bytes, bytes, deadline=deadline, metadata=metadata or None
        )

    async def unary(channel: Channel, deadline: Deadline | None) -> int:
        async with request(channel, deadline) as call:
            await call.send_message(no_param, end=True)
            await call.recv_message()
        return 1

    async def server_stream(channel: Channel, deadline: Deadline | None) -> int:
        replies = 0
        async with request(channel, deadline) as call:
            await call.send_message(next(names_lists), end=True)
            while await call.recv_message() is not None:
                replies += 1
        return replies

    async def send_messages(call: ClientStream) -> None:
        for index, body in enumerate(stream, 1):
            await call.send_message(body, end=index == sent)

    async def send_all(call: ClientStream) -> None:
        await call.send_request(end=not stream)
        await send_messages(call)

    async def client_stream(channel: Channel, deadline: Deadline | None) -> int:
        async with request(channel, deadline) as call:
            await send_all(call)
            await call.recv_message()
        return sent

    async def bidi(channel: Channel, deadline: Deadline | None) -> int:
        replies = 0
        async with request(channel, deadline) as call:
            await call.send_request(end=not stream)
            sending = asyncio.ensure_future(send_messages(call))  # replies flow while it sends
            try:
                while await call.recv_message() is not None:
                    replies += 1
                await sending
            finally:
                if not sending.done():
                    sending.cancel()
                    with contextlib.suppress(BaseException):
                        await sending
        return replies

    attempts: dict[str, Attempt] = {
        "unary": unary,
        "server-stream": server_stream,
        "client-stream": client_stream,
        "bidi": bidi,
    }
    return attempts[options.rpc]


def attempt_failure(
    error: Exception, endpoint: str, deadline: Deadline | None
) -> AttemptFailed | None:
    """How an attempt on `endpoint` that raised `error` failed (None: not a failure of the call
    but a fault of the bench, to be raised)."""
    if isinstance(error, GRPCError):
        return AttemptFailed(error.status.name, error.message or "")
    if isinstance(error, (ConnectionEnded, StreamRefused)):
        down = isinstance(error, ConnectionEnded)
        return AttemptFailed(UNAVAILABLE, f"{endpoint}: {error}", endpoint_down=down)
    if isinstance(error, (StreamTerminatedError, ProtocolError)):
        return AttemptFailed("INTERNAL", f"{endpoint}: {error}")
    if isinstance(error, TimeoutError):
        if deadline is not None and deadline.time_remaining() <= 0:
            return AttemptFailed("DEADLINE_EXCEEDED", "deadline exceeded")
        return AttemptFailed(
            UNAVAILABLE,
            f"cannot connect to {endpoint}: no HTTP/2 handshake within the handshake timeout",
            endpoint_down=True,
        )
    if isinstance(error, HandshakeFailed):  # its text names the endpoint and what it lacked
        return AttemptFailed(UNAVAILABLE, str(error), endpoint_down=True)
    if isinstance(error, OSError):
        return AttemptFailed(
            UNAVAILABLE,
            f"cannot connect to {endpoint}: {error.strerror or error}",
            endpoint_down=True,
        )
    return None


@dataclass
class Snapshot:
    """The figures so far, for the progress line: counted calls, warm-up calls made, successful
    calls per endpoint, and when counting began (time.perf_counter, the same clock in every
    process; None: not yet)."""

    ok: int = 0
    failed: int = 0
    skipped: int = 0
    by_target: dict[str, int] = field(default_factory=dict)
    counting_since: float | None = None


@dataclass
class Phase:
    """The warm-up (not counted, a fixed number of calls) or the counted part of a run."""

    counted: bool
    to_start: int  # calls still to start in this phase; -1: no limit
    origin: float  # clock time the phase's record start times are measured from


class Load:
    """One process's share of a run: `options` (its concurrency, calls and rate) on `connect`."""

    def __init__(self, options: BenchOptions, connect: Connect, ssl: Any = None) -> None:
        self.options = options
        self.connect = connect
        self.result = BenchResult(options)
        self.served: Counter[str] = Counter()
        self.counting_since: float | None = None
        self.endpoints = Endpoints(
            [Endpoint(address, connect, ssl) for address in connect.targets],
            [Endpoint(address, connect, ssl) for address in connect.backup],
        )
        self._attempt = make_attempt(options, connect.metadata)

    def snapshot(self) -> Snapshot:
        result = self.result
        return Snapshot(
            result.ok, result.failed, result.skipped, dict(self.served), self.counting_since
        )

    async def call(self) -> tuple[str, str, int]:
        """One call, retried on other endpoints while that may help: (status, text, messages)."""
        connect = self.connect
        deadline = Deadline.from_timeout(connect.timeout) if connect.timeout else None
        clock = time.perf_counter
        endpoint = self.endpoints.pick(clock())
        assert endpoint is not None  # a first attempt always has one
        attempts_left = connect.max_attempts
        tried: list[str] = []
        while True:
            attempts_left -= 1
            try:
                messages = await self._attempt(endpoint.channel(), deadline)
            except Exception as error:
                failure = attempt_failure(error, endpoint.name, deadline)
                if failure is None:
                    raise
                if failure.endpoint_down:
                    endpoint.failed(clock())
                if failure.status != UNAVAILABLE or attempts_left <= 0:
                    return failure.status, failure.text, 0
                tried.append(endpoint.name)
                retry_on = self.endpoints.pick(clock(), tried)
                if retry_on is None:
                    return failure.status, failure.text, 0
                endpoint = retry_on
                continue
            if endpoint.down_until:
                endpoint.served()
            if self.counting_since is not None:
                self.served[endpoint.name] += 1
            return "OK", "", messages

    async def run(self, stop: asyncio.Event | None = None) -> BenchResult:
        """Run to the end (or until `stop` is set: then `interrupted`); the result."""
        try:
            self.result.interrupted = await run_until_stopped(self._phases(), stop)
        finally:
            self.endpoints.close()
        self.result.by_target = dict(self.served)
        return self.result

    async def _phases(self) -> None:
        options, result = self.options, self.result
        pacer = Pacer(options.schedule) if options.schedule is not None else None
        clock = time.perf_counter
        run_start = clock()
        end = run_start + options.duration if options.duration is not None else math.inf
        remaining = options.requests if options.requests is not None else -1

        async def worker(phase: Phase) -> None:
            nonlocal remaining
            backoff = 0.0
            while remaining != 0 and phase.to_start != 0:
                remaining -= 1
                phase.to_start -= 1
                if pacer is not None and not await pacer.wait(end):
                    return  # the next start the schedule allows is after the end
                began = clock()
                if began >= end:
                    return
                status, text, messages = await self.call()
                finished = clock()
                if phase.counted:
                    result.calls.add(
                        began - phase.origin,
                        finished - began,
                        status,
                        messages,
                        f"{status}: {text}" if text else "",
                    )
                    if status == "OK":
                        result.ok += 1
                    else:
                        result.failed += 1
                else:
                    result.skipped += 1
                if status != UNAVAILABLE:
                    backoff = 0.0
                    continue
                backoff = CALL_BACKOFF.after(backoff)
                wait = min(backoff, end - finished)
                if wait > 0:
                    await asyncio.sleep(wait)

        if options.skip_first:
            warm_up = Phase(counted=False, to_start=options.skip_first, origin=run_start)
            await asyncio.gather(*(worker(warm_up) for _ in range(options.concurrency)))
        counted = Phase(counted=True, to_start=-1, origin=clock())
        self.counting_since = counted.origin
        cpu = time.process_time()
        try:
            await asyncio.gather(*(worker(counted) for _ in range(options.concurrency)))
        finally:
            result.elapsed = clock() - counted.origin
            result.cpu = time.process_time() - cpu


async def run_until_stopped(work: Awaitable[None], stop: asyncio.Event | None) -> bool:
    """Run `work` to its end, or cancel it when `stop` is set first; True if it was stopped."""
    task = asyncio.ensure_future(work)
    if stop is None:
        await task
        return False
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        raise
    finally:
        stopping.cancel()
    if task.done():
        task.result()  # its exception, if it raised one
        return False
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return True


def shares(total: int, parts: int) -> Iterator[int]:
    """`total` split into `parts` whole shares, the larger ones first."""
    base, extra = divmod(total, parts)
    return (base + (1 if index < extra else 0) for index in range(parts))
