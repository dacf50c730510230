"""greet.client.Channel: the channel any generated stub accepts, with all of greet's client.

    async with Channel(["10.0.0.1:8080", "10.0.0.2:8080"], timeout=5, token=TOKEN) as channel:
        stub = InventoryServiceStub(channel)              # any betterproto stub
        reply = await stub.get_item(GetItemRequest(sku="A-1"))

A stub calls `channel.request(path, cardinality, request_type, reply_type, timeout=, deadline=,
metadata=)` and drives the stream it gets (grpclib's Stream interface: `send_request`,
`send_message`, `end`, `recv_message`, `async for`, `recv_initial_metadata`,
`recv_trailing_metadata`, `cancel`, `initial_metadata`, `trailing_metadata`, `peer`). Here that
stream is a CallStream: the call it stands for runs on the client's AttemptRunner
(greet.client._attempts), so every method of every service gets the same balancing over the
EndpointPool, retries per the service config (with the requests sent so far replayed), call and
attempt interceptors, one deadline over all attempts, metadata and token, TLS and compression.

How each call kind runs:
- unary: the request is kept when it is sent; the call runs when its reply is asked for
  (`recv_message`), as `AttemptRunner.unary`, whose first attempt goes straight to the
  transport when nothing is configured around it;
- server streaming: likewise, and its replies come from the runner's reply generator;
- client streaming: the call runs in a task of its own from `send_request` on, reading the
  requests the caller sends (ReplayableRequests), so that they stream while the caller sends;
- bidi: the call runs while the caller reads replies, its requests sent beside them (the
  generated stub sends from a task of its own); requests sent before the first read wait in
  the call's buffer.

`recv_initial_metadata` waits for the first reply (or the end of a call without one); the
metadata, trailers and peer are those of the call's last attempt. A failed call raises
greet.errors.RpcError from the stream method that was waiting.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
from collections import Counter
from collections.abc import AsyncGenerator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import replace
from types import TracebackType
from typing import Any

from grpclib.client import Channel as GrpclibChannel
from grpclib.client import Stream
from grpclib.const import Cardinality
from grpclib.encoding.proto import ProtoCodec
from grpclib.exceptions import ProtocolError
from grpclib.metadata import Deadline, _MetadataLike

from greet import telemetry
from greet.client._attempts import (
    AttemptRunner,
    Body,
    ReplayableRequests,
    RetryBudget,
    bidi_streaming,
    client_streaming,
    server_streaming,
    single,
)
from greet.client._calls import AttemptInterceptor, CallInterceptor, Method
from greet.client._pool import (
    Endpoint,
    EndpointPool,
    PoolOptions,
    Resolve,
    parse_targets,
    resolve_dns,
)
from greet.client._service_config import RetryPolicy, ServiceConfig
from greet.errors import MetadataValue
from greet.transport import ChannelConfig, ClientStream, Connector

__all__ = ["CallStream", "Channel", "calls_opened", "client_service_config", "with_compression"]

UNARY_UNARY = Cardinality.UNARY_UNARY
UNARY_STREAM = Cardinality.UNARY_STREAM
STREAM_UNARY = Cardinality.STREAM_UNARY
STREAM_STREAM = Cardinality.STREAM_STREAM

NOT_YET: Any = object()
"""No reply read ahead (by `recv_initial_metadata`)."""


class Channel(GrpclibChannel):
    """The client side of greet for any service: give it to a generated stub.

    `targets` is `"host:port"`, `"dns:///host:port"`, a comma-separated string of them or a list;
    `backup` targets are used only while every target is down. `timeout` is the default deadline
    of each call in seconds, over all its attempts (None: no deadline; a call's own `timeout=` or
    `deadline=` replaces it); `ssl` a client SSLContext for TLS; `token` is sent as
    `authorization: Bearer <token>`; `metadata` with every call (a call's own is added to it).

    Retries: `retry` is the policy of every method (default RetryPolicy(), its throttling the
    channel's budget); or `service_config` says per method, as grpc-go's does (a ServiceConfig,
    or its JSON text or dict); not both.

    `interceptors` run once around each call, `attempt_interceptors` around each attempt of it
    (greet.client.Interceptor), for example `greet.client.ClientMetrics(registry)`.
    `pool` tunes the connections per endpoint and the probing of failed ones; `transport` the
    HTTP/2 connections (engine, keepalive, handshake timeout: greet.transport.ChannelConfig);
    `compression` ("gzip" or "deflate") compresses every request message (replies come back
    compressed when the server is set to compress and the client accepts it: it accepts both);
    `resolve` replaces the DNS lookup of `dns:///` names; `connector` opens connections other
    than over sockets (greet.transport.testing's in-memory server). `served` counts successful
    calls per endpoint (`host:port`); `budget` is the live retry budget.

    It is a grpclib Channel only so that stubs typed against grpclib's accept it: nothing of
    grpclib's Channel runs (its connection, its `grpclib.events`); the connections are the
    pool's (greet.transport.Channel), and interceptors take the place of events.
    """

    def __init__(
        self,
        targets: str | Sequence[str],
        *,
        backup: str | Sequence[str] = (),
        timeout: float | None = None,
        ssl: ssl_module.SSLContext | None = None,
        token: str | None = None,
        metadata: Mapping[str, str] | None = None,
        retry: RetryPolicy | None = None,
        service_config: ServiceConfig | str | bytes | Mapping[str, Any] | None = None,
        interceptors: Sequence[CallInterceptor] = (),
        attempt_interceptors: Sequence[AttemptInterceptor] = (),
        pool: PoolOptions | None = None,
        resolve: Resolve = resolve_dns,
        transport: ChannelConfig | None = None,
        compression: str | None = None,
        connector: Connector | None = None,
    ) -> None:
        primaries = parse_targets(targets)
        if not primaries:
            raise ValueError("a Channel needs at least one target")
        # grpclib's __init__ is not run: it needs an event loop, and opens nothing this uses
        self.timeout = timeout
        self.metadata: dict[str, MetadataValue] = dict(metadata or {})
        if token is not None:
            if not token or any(c in token for c in "\r\n"):
                raise ValueError("token must be a non-empty single line")
            self.metadata["authorization"] = f"Bearer {token}"
        if telemetry.tracing_enabled():  # OTEL_* ask for it and greet[otel] is installed
            from greet.client.tracing import with_tracing

            interceptors, attempt_interceptors = with_tracing(interceptors, attempt_interceptors)
        self.service_config = client_service_config(retry, service_config)
        self.pool = EndpointPool(
            primaries,
            parse_targets(backup),
            ssl=ssl,
            options=pool,
            resolve=resolve,
            channel_config=with_compression(transport, compression),
            connector=connector,
        )
        self.runner = AttemptRunner(
            self.pool,
            self.service_config,
            interceptors=interceptors,
            attempt_interceptors=attempt_interceptors,
        )
        self._methods: dict[str, Method[Any, Any]] = {}

    def __repr__(self) -> str:
        return f"greet.client.Channel({[state.name for state in self.pool.endpoints]!r})"

    @property
    def budget(self) -> RetryBudget:
        """The live retry budget (the service config's retryThrottling)."""
        return self.runner.budget

    @property
    def served(self) -> Counter[str]:
        """Successful calls per endpoint (`host:port`)."""
        return self.runner.served

    @property
    def endpoints(self) -> list[Endpoint]:
        """The endpoints currently in the pool (resolved names included), primaries first."""
        return [state.endpoint for state in self.pool.endpoints]

    async def __aenter__(self) -> Channel:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close every connection."""
        self.pool.close()

    def request(
        self,
        name: str,
        cardinality: Cardinality,
        request_type: type[Any],
        reply_type: type[Any],
        *,
        timeout: float | None = None,
        deadline: Deadline | None = None,
        metadata: _MetadataLike | None = None,
    ) -> CallStream:
        """A call of the method `name` (`/package.Service/Method`), as a stream to drive; see
        the module docstring. `timeout`/`deadline` (the earlier of both) replace the channel's
        timeout; `metadata` is sent beside the channel's."""
        if timeout is None and deadline is None:
            timeout = self.timeout
        if timeout is not None:
            by_timeout = Deadline.from_timeout(timeout)
            deadline = by_timeout if deadline is None else min(by_timeout, deadline)
        sent = self.metadata
        if metadata:
            sent = dict(sent)
            sent.update(metadata)
        method = self._methods.get(name)  # made once per path and types
        if (
            method is None
            or method.kind is not cardinality
            or method.request_type is not request_type
            or method.reply_type is not reply_type
        ):
            method = self._methods[name] = Method(name, cardinality, request_type, reply_type)
        stream = CallStream(self, method, sent, deadline)
        if OPENING:  # some context collects the calls it opens (calls_opened)
            opened = OPENED.get()
            if opened is not None:
                opened.append(stream)
        return stream


OPENED: ContextVar[list[CallStream] | None] = ContextVar("greet_client_calls_opened", default=None)
OPENING = 0
"""How many `calls_opened` contexts are open, in any task: while none is, no call looks up
OPENED."""


@contextmanager
def calls_opened() -> Iterator[list[CallStream]]:
    """The CallStreams Channel.request makes in this context, as they are made.

    A generated stub's streaming method is an async generator around another one (betterproto's
    `_unary_stream`, `_stream_stream`), and closing the outer one leaves the inner one, which
    holds the stream's `async with`, to the garbage collector: the call would go on until then.
    Whoever closes the outer one early closes the streams it opened with `CallStream.close()`
    (GreetClient does).
    """
    global OPENING
    opened: list[CallStream] = []
    token = OPENED.set(opened)
    OPENING += 1
    try:
        yield opened
    finally:
        OPENING -= 1
        OPENED.reset(token)


CODEC = ProtoCodec()
"""What grpclib's Stream is given; a CallStream encodes nothing itself (its attempts do)."""
NO_DISPATCH: Any = None
"""grpclib.events are not sent: interceptors take their place."""


class CallStream(Stream[Any, Any]):
    """One call on a greet.client.Channel, driven as grpclib's Stream (see the module
    docstring). Made by `Channel.request`."""

    def __init__(
        self,
        channel: Channel,
        method: Method[Any, Any],
        metadata: dict[str, MetadataValue],
        deadline: Deadline | None,
    ) -> None:
        sent: Any = metadata  # grpclib's _Metadata type is a multidict's
        super().__init__(
            channel,
            method.path,
            sent,
            method.kind,
            method.request_type,
            method.reply_type,
            codec=CODEC,
            status_details_codec=None,
            dispatch=NO_DISPATCH,
            deadline=deadline,
        )
        self.runner = channel.runner
        self.method = method
        self.metadata = metadata
        self._request: Any = NOT_YET
        self._ahead: Any = NOT_YET  # a reply read ahead by recv_initial_metadata
        self._finished = False  # every reply has been read
        self._replies: AsyncGenerator[Any, None] | None = None  # server streaming, bidi
        self._requests: ReplayableRequests[Any] | None = None  # client streaming, bidi
        self._task: asyncio.Task[Any] | None = None  # client streaming
        self._attempt_stream: ClientStream | None = None
        self._opener: asyncio.Task[Any] | None = None  # bidi: the task that opened the call

    def _watch(self, stream: ClientStream) -> None:
        self._attempt_stream = stream

    def _seen(self) -> None:
        """Take the metadata and peer of the last attempt's stream."""
        stream = self._attempt_stream
        if stream is not None:
            self.initial_metadata = stream.initial_metadata
            self.trailing_metadata = stream.trailing_metadata
            self.peer = stream.peer

    async def __aenter__(self) -> CallStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._finished and self._replies is None and self._task is None:
            stream = self._attempt_stream  # a unary call: it ended with its reply
            if stream is not None:
                self.initial_metadata = stream.initial_metadata
                self.trailing_metadata = stream.trailing_metadata
                self.peer = stream.peer
            return
        try:
            if (
                exc is None
                and self._send_request_done
                and not self._finished
                and not self._cancel_done
                and not self._recv_trailing_metadata_done
            ):
                await self.recv_trailing_metadata()  # the rest of the call, as grpclib's
        finally:
            await self.close()

    async def close(self) -> None:
        """End what still runs of the call (the caller left it, or cancelled it); the stream's
        `async with` does it too, but a generated stub's streaming method may leave that to the
        garbage collector when its caller stops reading (see `calls_opened`)."""
        self._finished = True
        if self._requests is not None:
            self._requests.close()
        replies, self._replies = self._replies, None
        if replies is not None:
            await replies.aclose()
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])
        if task is not None and not task.cancelled():
            task.exception()  # retrieved: the caller saw it, or left before it
        self._seen()

    # -- sending ---------------------------------------------------------------------------

    async def send_request(self, *, end: bool = False) -> None:
        if self._send_request_done:
            raise ProtocolError("Request is already sent")
        kind = self._cardinality
        if end and not kind.client_streaming:
            raise ProtocolError(
                "Unary request requires a message to be sent before ending outgoing stream"
            )
        self._send_request_done = True
        if not kind.client_streaming:
            return
        call = self.runner.new_call(self.method, self.metadata, self._deadline)
        policy = call.retry_policy or RetryPolicy()
        requests = self._requests = ReplayableRequests[Any](policy.replay_buffer_messages)
        if kind is STREAM_UNARY:
            body: Body[Any, Any] = client_streaming(requests)
            replies = self.runner.run(call, body, requests, watch=self._watch)
            self._task = asyncio.ensure_future(single(replies))
        else:
            body = bidi_streaming(requests)
            self._replies = self.runner.run(call, body, requests, watch=self._watch)
            self._opener = asyncio.current_task()
        if end:
            requests.end()
            self._end_done = True

    async def send_message(self, message: Any, *, end: bool = False) -> None:
        if not self._send_request_done:
            if self._cardinality.client_streaming:
                await self.send_request()
            else:
                self._send_request_done = True  # all send_request does for a unary request
        if self._end_done:
            raise ProtocolError("Stream is ended")
        requests = self._requests
        if requests is None:  # unary request: the call runs when its reply is asked for
            if self._send_message_done:
                raise ProtocolError("Message was already sent")
            self._request = message
            self._send_message_done = True
            self._end_done = True
            return
        task = self._task
        if task is not None and task.done():
            await task  # the call has ended: its error, if it failed
        try:
            await requests.put(message)
        except ProtocolError:
            if task is not None and task.done():
                await task  # the call ended while this request waited: its error, if it failed
            self._sending_ended()
            raise
        self._send_message_done = True
        self._messages_sent += 1
        if end:
            requests.end()
            self._end_done = True

    def _sending_ended(self) -> None:
        """A request was sent on a call that has ended (the server ended it, it failed, or it
        was closed): in a task beside the one that opened the call, such as a generated stub's
        sending task, the send side ends quietly, as a cancellation (the call's outcome is read
        where its replies are); in the task that opened it, the caller hears of it
        (ProtocolError)."""
        if self._cardinality is STREAM_STREAM and asyncio.current_task() is not self._opener:
            raise asyncio.CancelledError("the call has ended: no more requests can be sent")

    async def end(self) -> None:
        if not self._send_request_done:
            raise ProtocolError("Request was not sent")
        if self._end_done:
            raise ProtocolError("Stream was already ended")
        if self._requests is None:
            if not self._send_message_done:
                raise ProtocolError("Unary request requires a single message to be sent")
        else:
            self._requests.end()
        self._end_done = True

    async def cancel(self) -> None:
        if not self._send_request_done:
            raise ProtocolError("Request was not sent yet")
        if self._cancel_done:
            raise ProtocolError("Stream was already cancelled")
        self._cancel_done = True
        await self.close()

    # -- receiving -------------------------------------------------------------------------

    async def recv_message(self) -> Any:
        ahead = self._ahead
        if ahead is not NOT_YET:
            self._ahead = NOT_YET
            return ahead
        if self._finished:
            return None
        kind = self._cardinality
        if kind is UNARY_UNARY:
            self._finished = True
            request = self._request
            if request is NOT_YET:
                raise ProtocolError("Request was not sent yet")
            reply = await self.runner.unary(
                self.method, request, self.metadata, self._deadline, self._watch
            )
            self._messages_received = 1
            return reply
        if kind is STREAM_UNARY:
            task = self._task
            if task is None:
                raise ProtocolError("Request was not sent yet")
            self._finished = True
            reply = await task
            self._seen()
            self._messages_received = 1
            return reply
        replies = self._replies
        if replies is None:
            if self._send_request_done and kind is UNARY_STREAM:
                call = self.runner.new_call(self.method, self.metadata, self._deadline)
                body = server_streaming(self._unary_request())
                replies = self._replies = self.runner.run(call, body, watch=self._watch)
            else:
                raise ProtocolError("Request was not sent yet")
        try:
            reply = await anext(replies)
        except StopAsyncIteration:
            self._finished = True
            self._seen()
            return None
        except BaseException:
            self._finished = True
            self._seen()
            raise
        if self.initial_metadata is None:
            self._seen()
        self._messages_received += 1
        return reply

    def _unary_request(self) -> Any:
        request = self._request
        if request is NOT_YET:
            raise ProtocolError("Request was not sent yet")
        return request

    async def recv_initial_metadata(self) -> None:
        """Waits for the first reply (or the call's end): see the module docstring."""
        if not self._send_request_done:
            raise ProtocolError("Request was not sent yet")
        if self._recv_initial_metadata_done:
            raise ProtocolError("Initial metadata was already received")
        if self._ahead is NOT_YET and not self._finished:
            reply = await self.recv_message()
            if reply is not None:
                self._ahead = reply
        self._recv_initial_metadata_done = True
        self._seen()

    async def recv_trailing_metadata(self) -> None:
        """Waits for the end of the call (replies not read are dropped)."""
        if self._recv_trailing_metadata_done:
            raise ProtocolError("Trailing metadata was already received")
        if not self._end_done:
            raise ProtocolError("Outgoing stream was not ended")
        self._ahead = NOT_YET
        while await self.recv_message() is not None:
            pass
        self._recv_trailing_metadata_done = True
        self._seen()


def with_compression(transport: ChannelConfig | None, compression: str | None) -> ChannelConfig:
    """The connection settings, with the request compression `compression` names."""
    transport = transport or ChannelConfig()
    if compression is None:
        return transport
    if transport.compression not in (None, compression):
        raise ValueError("compression= and transport.compression disagree: give one of them")
    return replace(transport, compression=compression)


def client_service_config(
    retry: RetryPolicy | None,
    service_config: ServiceConfig | str | bytes | Mapping[str, Any] | None,
) -> ServiceConfig:
    """The service config a channel's `retry` and `service_config` arguments give."""
    if service_config is None:
        return ServiceConfig.uniform(retry or RetryPolicy())
    if retry is not None:
        raise ValueError(
            "give retry (one policy for every method) or service_config (per method), not both"
        )
    if isinstance(service_config, ServiceConfig):
        return service_config
    return ServiceConfig.from_json(service_config)
