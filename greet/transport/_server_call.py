"""ServerCall: one gRPC call on one HTTP/2 stream; what method handlers receive as `stream`.

It is a `grpclib.server.Stream`, so generated servicers (betterproto's `__rpc_*` methods),
grpclib's health and reflection services and handlers written for grpclib run on it unchanged:
`recv_message`, `send_initial_metadata`, `send_message`, `send_trailing_metadata`, `cancel`,
async iteration, and the attributes `metadata`, `deadline`, `peer`, `user_agent`. grpclib's
server events (`grpclib.events`: RecvRequest, RecvMessage, SendInitialMetadata, SendMessage,
SendTrailingMetadata) are dispatched at the same points as in grpclib, and only when listened to.

A call's life is a `CallState` that only the call changes; its connection tells it what happened
(`request_data`, `request_ended`, `stream_closed`, `stream_reset`, ...) and the call decides:

    RECEIVING --start--> RUNNING --trailers--> ANSWERED
        |                   |                      |
        +------- the stream is gone (reset, lost) -+--> CLOSED

Request messages are cut out of DATA by a `MessageFramer` as they arrive; replies go to the
connection's send queue, and `send_message` waits only when that queue is over
`stream_send_buffer` for the stream (or `connection_send_buffer` for the whole connection).

The call's handler runs through the server's interceptors:

    class Interceptor(Protocol):
        async def intercept(self, call: ServerCall, proceed: Proceed) -> None: ...

Interceptors run in the order given (the first is the outermost), each before and after the rest
of the chain, as grpc-go's `ChainUnaryInterceptor`/`ChainStreamInterceptor` and grpcio's
`ServerInterceptor` do, for all four call kinds alike. An interceptor sees the call: its method
(`call.method`, `call.kind`), metadata, peer, deadline and user agent. It may reject the call
(raise `GRPCError(status, message)` instead of awaiting `proceed()`: the client gets that status,
trailers-only, and the handler never runs) or wrap it, reading `call.status` once `proceed()` has
returned, `call.elapsed`, `call.messages_received` and `call.messages_sent`. `proceed()` returns
normally however the rest ended (an error, a refusal, a reset by the client: CANCELLED, the
deadline: DEADLINE_EXCEEDED, a drain's end: UNAVAILABLE); it raises CancelledError only when the
server itself is torn down under the call. What a handler raises becomes the status: GRPCError as
given, a bug UNKNOWN with the traceback logged.

Eager start: a handler runs in the callback that completed its request, and becomes an asyncio
Task only if it has to wait. Most calls never wait, so a call costs no Task and its reply leaves
in the same socket write as the callback's other output. On Python 3.12 and later this is
asyncio's own eager start; on 3.10 and 3.11 `Resumed` carries on a coroutine whose first step
ran already. During that first step there is no current task, so a handler that calls
`asyncio.current_task()` before it awaits anything should run with eager calls off
(`python -m greet.server --no-eager-calls`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError
from grpclib.metadata import Deadline, _Metadata, _MetadataLike, encode_metadata
from grpclib.server import Stream
from multidict import MultiDict

from greet.transport._engine import ErrorCode, Header, StreamGone
from greet.transport._wire import (
    RECV_YIELD_EVERY,
    RESPONSE_HEADERS,
    CompressedBody,
    MessageFramer,
    compress,
    decompress,
    header_list,
    trailers,
    truncated,
)

if TYPE_CHECKING:
    from grpclib.protocol import Peer

    from greet.transport._connection import Writer
    from greet.transport._server import TransportServer
    from greet.transport._wire import Route

__all__ = [
    "CallConnection",
    "CallState",
    "Interceptor",
    "Listening",
    "Proceed",
    "ServerCall",
    "run_chain",
    "start_call",
]

log = logging.getLogger("greet.server")


# -- events ----------


class Listening:
    """The events of one dispatcher that have listeners."""

    __slots__ = ("_dispatch", "_names", "_size")

    def __init__(self, dispatch: object) -> None:
        self._dispatch = dispatch
        self._size = -1
        self._names: frozenset[str] = frozenset()

    def names(self) -> frozenset[str]:
        """Dispatch method names (`recv_message`, ...) with at least one listener."""
        attributes = vars(self._dispatch)
        if len(attributes) != self._size:
            methods = getattr(type(self._dispatch), "__dispatch_methods__", {})
            self._names = frozenset(name for name in methods.values() if name not in attributes)
            self._size = len(attributes)
        return self._names


# -- eager ----------

NATIVE_EAGER = sys.version_info >= (3, 12)


class Resumed(Coroutine[Any, Any, None]):
    """A coroutine that already ran its first step, for an asyncio Task to carry on: the first
    `send` hands the Task the future the coroutine is waiting on."""

    __slots__ = ("_awaiting", "_coro")

    def __init__(self, coro: Coroutine[Any, Any, None], awaiting: Any) -> None:
        self._coro = coro
        self._awaiting = awaiting

    def send(self, value: Any) -> Any:
        awaiting = self._awaiting
        if awaiting is not None:
            self._awaiting = None
            return awaiting
        return self._coro.send(value)

    def throw(self, *args: Any) -> Any:
        self._awaiting = None
        return self._coro.throw(*args)

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Generator[Any, None, None]:  # pragma: no cover - Tasks use send
        raise TypeError("a resumed call is driven by its Task, not awaited")


def start_call(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None], *, eager: bool
) -> asyncio.Task[None] | None:
    """Start `coro`; None when it finished at once (eager), else its Task."""
    if not eager:
        return loop.create_task(coro)
    if NATIVE_EAGER:  # pragma: no cover - Python 3.12+
        task: asyncio.Task[None] = asyncio.Task(coro, loop=loop, eager_start=True)  # type: ignore[call-arg]
        return None if task.done() else task
    context = contextvars.copy_context()
    try:
        awaiting = context.run(coro.send, None)
    except StopIteration:
        return None
    return context.run(loop.create_task, Resumed(coro, awaiting))


# -- interception ----------

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


# -- the call ----------------------------------------------------------------------------------


class CallConnection(Protocol):
    """What a call sends through: its HTTP/2 connection (greet.transport._server), or a web
    call's exchange (greet.transport._web), which writes the same steps in Connect or gRPC-Web.
    """

    loop: asyncio.AbstractEventLoop
    server: TransportServer
    peer: Peer
    eager_calls: bool
    max_message_bytes: int
    compression_threshold: int
    stream_send_buffer: int

    @property
    def send_blocked(self) -> bool: ...

    def send_headers(self, stream_id: int, headers: list[Header]) -> None: ...

    def send_data(self, stream_id: int, data: bytes) -> None: ...

    def send_trailers(
        self, stream_id: int, headers: list[Header], *, trailers_only: bool, request_ended: bool
    ) -> None: ...

    def reset(self, stream_id: int, code: int) -> None: ...

    def answer(
        self,
        stream_id: int,
        status: Status,
        message: str,
        *,
        http_status: bytes = b"200",
        ended: bool = True,
    ) -> None: ...

    def acknowledge(self, stream_id: int, size: int) -> None: ...

    def must_wait(self, stream_id: int) -> bool: ...

    def wait_writable(self, writer: Writer) -> None: ...


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class CallState(Enum):
    """A call's life (see the module docstring); only the call moves it."""

    RECEIVING = "receiving"  # the request is still coming; no handler yet
    RUNNING = "running"  # the handler runs (eagerly, or as a Task once it waited)
    ANSWERED = "answered"  # the trailers are out
    CLOSED = "closed"  # the stream is gone (reset, closed, connection lost)


class ServerCall(Stream[Any, Any]):
    """One call (see the module docstring). Built by the connection, not by users."""

    # Defaults of what changes during a call: set on the instance only when it changes.
    state = CallState.RECEIVING
    status: Status | None = None  # what the trailers said, once they are sent
    status_message: str | None = None
    ended_at = 0.0  # time.perf_counter() when the trailers were sent (or the stream went)
    _task: asyncio.Task[None] | None = None  # while the handler waits (see `start_call`)
    _request_ended = False
    _recv_error: GRPCError | None = None
    _unacked = 0  # received bytes not yet acknowledged to the client
    _single: bytes | None = None  # a unary request's one message, when it came whole
    _cancelled_for: Status | None = None  # why the server cancelled the handler, if it did
    _received = 0
    _unchecked = 0  # bytes sent since the send queue was last looked at
    _recv_waiter: asyncio.Future[None] | None = None
    _send_waiter: asyncio.Future[None] | None = None
    _deadline_timer: asyncio.TimerHandle | None = None
    protocol = "grpc"  # the wire protocol: "grpc", or a web call's "connect" or "grpc-web"
    # Set from the route (greet.transport._wire.Route.call_attributes):
    route: Route
    handler_func: Any
    reply_encoding: str | None
    unary_request: bool

    def __init__(
        self,
        connection: CallConnection,
        stream_id: int,
        route: Route,
        deadline: Deadline | None,
        metadata: _Metadata,
    ) -> None:
        # grpclib's Stream.__init__ wants grpclib's own HTTP/2 stream; the same attributes are
        # set here for the transport greet owns, most of them from the route's prototype.
        attributes = vars(self)
        attributes.update(route.call_attributes)  # type: ignore[arg-type]
        self._listening = connection.server.listening.names()
        self.deadline = deadline
        self.metadata = metadata
        self.peer = connection.peer
        self.connection = connection
        self.stream_id = stream_id
        self.framer = MessageFramer(connection.max_message_bytes)
        self.started_at = time.perf_counter()
        if deadline is not None:
            self._deadline_timer = asyncio.get_running_loop().call_later(
                max(0.0, deadline.time_remaining()), self._deadline_expired
            )

    @property
    def content_type(self) -> str:
        return self.route.head.content_type or ""

    @property
    def encoding(self) -> str | None:
        """How the client compresses its messages (grpc-encoding)."""
        return self.route.head.encoding

    @property
    def server(self) -> TransportServer:
        """The server the call came to."""
        return self.connection.server

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The handler's Task, once it had to wait (None while it runs eagerly, or is done)."""
        return self._task

    # -- what interceptors read --------------------------------------------------------------

    @property
    def method(self) -> str:
        """The method path, `/package.Service/Method`."""
        return self._method_name

    @property
    def kind(self) -> Cardinality:
        """Unary, server streaming, client streaming or bidi."""
        return self._cardinality

    @property
    def elapsed(self) -> float:
        """Seconds from the call's headers to its trailers (so far, while it runs)."""
        return (self.ended_at or time.perf_counter()) - self.started_at

    @property
    def messages_received(self) -> int:
        return self._messages_received

    @property
    def messages_sent(self) -> int:
        return self._messages_sent

    # -- what the connection tells the call ---------------------------------------------------

    def headers_received(self, end_stream: bool) -> None:
        """The request's headers were accepted: a streaming request starts its handler now."""
        if end_stream:
            self._end_request()
        if self._cardinality.client_streaming or end_stream:
            self._start()

    def data_received(self, data: bytes, end_stream: bool) -> None:
        """DATA for this call arrived."""
        state = self.state
        if state is CallState.CLOSED:
            self.connection.acknowledge(self.stream_id, len(data))
            return
        if end_stream and state is CallState.RECEIVING and self.unary_request:
            # The usual unary request: its one whole message in the DATA frame that ends it.
            size = len(data) - 5
            if (
                size >= 0
                and data[0] == 0
                and self.framer.untouched
                and int.from_bytes(data[1:5], "big") == size
                and size <= self.framer.limit
            ):
                self._single = data[5:]
                self._unacked = len(data)
                self._request_ended = True
                self._start()
                return
        self._unacked += len(data)
        if self._recv_error is None:
            try:
                self.framer.feed(data)
            except GRPCError as error:
                self._recv_error = error
                self.framer.clear()
            if end_stream:
                self._end_request()
        elif end_stream:
            self._request_ended = True
        if not self.framer.messages:
            self._acknowledge()
        _wake(self._recv_waiter)
        if self.state is CallState.RECEIVING:
            if end_stream:
                self._start()
            elif self._recv_error is not None:
                self._reject(self._recv_error.status, self._recv_error.message or "")

    def request_ended(self) -> None:
        """The client ended its side of the stream with trailers."""
        if self.state is CallState.CLOSED:
            return
        self._end_request()
        if self.state is CallState.RECEIVING:
            self._start()

    def stream_closed(self, error_code: int) -> None:
        """The stream is gone: reset by the client (`error_code` not 0), or both sides ended."""
        if self.state is CallState.RECEIVING or error_code:
            self._terminate()
            self._release()
        else:
            self.state = CallState.CLOSED  # the handler has answered: nothing to cancel

    def connection_lost(self) -> None:
        self._terminate()

    def shut_down(self) -> None:
        """The drain's grace period is over: end the call with UNAVAILABLE."""
        task = self._task
        if task is not None and not task.done():
            self._cancelled_for = Status.UNAVAILABLE
            task.cancel()
        elif self.state is CallState.RECEIVING:
            self._reject(Status.UNAVAILABLE, "the server is shutting down")

    def writable(self) -> None:
        """Send window or buffer space opened up."""
        _wake(self._send_waiter)

    # -- the call's own steps ------------------------------------------------------------------

    def _end_request(self) -> None:
        self._request_ended = True
        if self._recv_error is None and self.framer.inside_message:
            self._recv_error = truncated()
            self.framer.clear()
        _wake(self._recv_waiter)

    def _start(self) -> None:
        """Start the handler; a unary request is checked for its one message first."""
        if self.unary_request and self._single is None:
            if self._recv_error is not None:
                self._reject(self._recv_error.status, self._recv_error.message or "")
                return
            count = len(self.framer.messages)
            if count != 1:
                self._reject(
                    Status.INTERNAL,
                    f"{self._method_name} takes one request message; the client sent {count}",
                )
                return
        self.state = CallState.RUNNING
        connection = self.connection
        self._task = start_call(connection.loop, self._run(), eager=connection.eager_calls)

    def _reject(self, status: Status, message: str) -> None:
        """Answer without a handler (trailers-only with `status`)."""
        self.connection.answer(self.stream_id, status, message, ended=self._request_ended)
        self._terminate()

    def _terminate(self) -> None:
        """The stream is gone (reset by the client, or the connection lost): stop the handler."""
        if self.state is CallState.CLOSED:
            return
        self.state = CallState.CLOSED
        if not self.ended_at:
            self.ended_at = time.perf_counter()
        self.framer.clear()
        _wake(self._recv_waiter)
        _wake(self._send_waiter)
        task = self._task
        if task is not None and not task.done():
            task.cancel()

    def _deadline_expired(self) -> None:
        self._deadline_timer = None
        task = self._task
        if task is not None and not task.done():
            self._cancelled_for = Status.DEADLINE_EXCEEDED
            task.cancel()
        elif self.state is CallState.RECEIVING:
            # The request never completed: answer without starting the handler.
            self._reject(Status.DEADLINE_EXCEEDED, "deadline exceeded")

    def _acknowledge(self) -> None:
        if self._unacked:
            self.connection.acknowledge(self.stream_id, self._unacked)
            self._unacked = 0

    def _release(self) -> None:
        """Drop what the call holds; the connection forgets it once the stream is closed."""
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        framer = self.framer
        if framer.messages or framer.inside_message:
            framer.clear()
        self._acknowledge()
        self._task = None

    # -- running the handler -----------------------------------------------------------------

    async def _run(self) -> None:
        """Serve the call through the server's interceptors; release it however it ends."""
        interceptors = self.connection.server.interceptors
        try:
            if not interceptors:
                await self._serve()
            else:
                await self._guarded(
                    run_chain(self, interceptors, ServerCall._serve, ServerCall._guarded)
                )
        finally:
            self._release()

    async def _serve(self) -> None:
        """The handler and the trailers its outcome calls for (the innermost link)."""
        try:
            func = self.handler_func
            if "recv_request" in self._listening:
                self.metadata, func = await self._dispatch.recv_request(
                    self.metadata,
                    func,
                    method_name=self._method_name,
                    deadline=self.deadline,
                    content_type=self.content_type,
                    user_agent=self.user_agent,
                    peer=self.peer,
                )
            await func(self)
        except GRPCError as error:
            await self.finish(error.status, error.message, error.details)
        except StreamTerminatedError:
            self.status = self.status or Status.CANCELLED  # the client went away
        except asyncio.CancelledError:
            await self._ended_by_cancellation()
        except Exception:
            log.exception("%s failed", self._method_name)
            await self.finish(Status.UNKNOWN, "Internal Server Error")
        else:
            await self.finish(Status.OK)

    async def _guarded(self, step: Awaitable[None]) -> None:
        """Await a step of the interceptor chain; what it raises becomes the call's status (an
        interceptor's GRPCError as given, a failure UNKNOWN with its traceback logged)."""
        try:
            await step
        except GRPCError as error:  # an interceptor refused the call
            await self.finish(error.status, error.message, error.details)
        except asyncio.CancelledError:
            await self._ended_by_cancellation()
        except Exception:
            log.exception("an interceptor of %s failed", self._method_name)
            await self.finish(Status.UNKNOWN, "Internal Server Error")

    async def _ended_by_cancellation(self) -> None:
        """Answer a call the server cancelled under its handler (deadline, shutdown), or note
        that the client cancelled it; re-raise when the server itself is being torn down."""
        cancelled_for = self._cancelled_for
        if cancelled_for is Status.DEADLINE_EXCEEDED:
            await self.finish(Status.DEADLINE_EXCEEDED, "deadline exceeded")
        elif cancelled_for is Status.UNAVAILABLE:
            await self.finish(Status.UNAVAILABLE, "the server is shutting down")
        elif self.state is CallState.CLOSED:
            self.status = self.status or Status.CANCELLED
        else:
            raise asyncio.CancelledError

    async def finish(self, status: Status, message: str | None = None, details: Any = None) -> None:
        """Send the trailers that end the call, unless the stream is already done."""
        if self._send_trailing_metadata_done or self._cancel_done or self.state is CallState.CLOSED:
            return
        if (
            status is Status.OK
            and not self._cardinality.server_streaming
            and not self._send_message_done
        ):
            log.error("%s returned without sending its one reply message", self._method_name)
            status, message = Status.UNKNOWN, "Internal Server Error"
        with contextlib.suppress(StreamTerminatedError):
            await self.send_trailing_metadata(
                status=status, status_message=message, status_details=details
            )

    # -- grpclib.server.Stream ---------------------------------------------------------------

    async def recv_message(self) -> Any:
        """The next request message, or None once the client has ended its stream."""
        body = self._single
        if body is not None:  # the unary fast path: one message, nothing else to wait for
            self._single = None
            self._acknowledge()
            message = self._codec.decode(body, self._recv_type)
            if "recv_message" in self._listening:
                (message,) = await self._dispatch.recv_message(message)
            self._messages_received += 1
            return message
        messages = self.framer.messages
        while not messages:
            if self._recv_error is not None:
                raise self._recv_error
            if self._request_ended:
                return None
            if self.state is CallState.CLOSED:
                raise StreamTerminatedError("the client reset the stream")
            waiter = self._recv_waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._recv_waiter = None
        body = messages.popleft()
        if not messages:
            self._acknowledge()
        self._received += 1
        if not self._received % RECV_YIELD_EVERY:
            await asyncio.sleep(0)  # other calls run while this stream's messages are buffered
        if type(body) is CompressedBody:
            body = decompress(body, self.encoding, self.framer.limit)
        message = self._codec.decode(body, self._recv_type)
        if "recv_message" in self._listening:
            (message,) = await self._dispatch.recv_message(message)
        self._messages_received += 1
        return message

    def _check_open(self) -> None:
        if self.state is CallState.CLOSED:
            raise StreamTerminatedError("the stream is closed (reset by the client or lost)")

    def _gone(self, error: StreamGone) -> StreamTerminatedError:
        """The engine no longer has the stream: the call is over."""
        self._terminate()
        return StreamTerminatedError(f"the stream is gone: {error}")

    async def send_initial_metadata(self, *, metadata: _MetadataLike | None = None) -> None:
        if self._send_initial_metadata_done:
            raise ProtocolError("Initial metadata was already sent")
        sent: Any = metadata
        if "send_initial_metadata" in self._listening:
            (sent,) = await self._dispatch.send_initial_metadata(MultiDict(metadata or ()))
        headers = RESPONSE_HEADERS
        if self.reply_encoding is not None:
            headers = [*headers, (b"grpc-encoding", self.reply_encoding.encode())]
        if sent:
            headers = headers + header_list(encode_metadata(sent))
        self._send_headers(headers)

    def _send_headers(self, headers: list[Header]) -> None:
        self._check_open()
        try:
            self.connection.send_headers(self.stream_id, headers)
        except StreamGone as error:
            raise self._gone(error) from None
        self._send_initial_metadata_done = True

    async def send_message(self, message: Any) -> None:
        if not self._send_initial_metadata_done:
            if self.reply_encoding is None and "send_initial_metadata" not in self._listening:
                self._send_headers(RESPONSE_HEADERS)  # the usual case, without an await
            else:
                await self.send_initial_metadata()
        if not self._cardinality.server_streaming and self._send_message_done:
            raise ProtocolError("Message was already sent")
        if "send_message" in self._listening:
            (message,) = await self._dispatch.send_message(message)
        body = self._codec.encode(message, self._send_type)
        flag = b"\x00"
        connection = self.connection
        if self.reply_encoding is not None and len(body) >= connection.compression_threshold:
            body = compress(body, self.reply_encoding)
            flag = b"\x01"
        self._check_open()
        stream_id = self.stream_id
        try:
            connection.send_data(stream_id, flag + len(body).to_bytes(4, "big") + body)
        except StreamGone as error:
            raise self._gone(error) from None
        self._send_message_done = True
        self._messages_sent += 1
        # The send queue is looked at once a quarter of its bound has been sent since the last
        # look (or when the connection is blocked): at most that much over the bound is queued.
        unchecked = self._unchecked + len(body) + 5
        if unchecked > connection.stream_send_buffer >> 2 or connection.send_blocked:
            self._unchecked = 0
            if connection.must_wait(stream_id):
                await self._wait_writable()
        else:
            self._unchecked = unchecked
        if self._messages_sent == 1 and self._cardinality.server_streaming:
            # A handler started eagerly runs inside the callback that read its request, and
            # nothing is written before that callback ends: the first reply of a stream goes
            # out now, not after the handler has produced a flow-control window of them.
            await asyncio.sleep(0)

    async def _wait_writable(self) -> None:
        connection = self.connection
        while self.state is not CallState.CLOSED and connection.must_wait(self.stream_id):
            waiter = self._send_waiter = asyncio.get_running_loop().create_future()
            connection.wait_writable(self)
            try:
                await waiter
            finally:
                self._send_waiter = None
        self._check_open()

    async def send_trailing_metadata(
        self,
        *,
        status: Status = Status.OK,
        status_message: str | None = None,
        status_details: Any = None,
        metadata: _MetadataLike | None = None,
    ) -> None:
        if self._send_trailing_metadata_done:
            raise ProtocolError("Trailing metadata was already sent")
        if (
            not self._cardinality.server_streaming
            and not self._send_message_done
            and status is Status.OK
        ):
            raise ProtocolError(
                "Unary response with OK status requires a single message to be sent"
            )
        sent: Any = metadata
        if "send_trailing_metadata" in self._listening:
            (sent,) = await self._dispatch.send_trailing_metadata(
                MultiDict(metadata or ()),
                status=status,
                status_message=status_message,
                status_details=status_details,
            )
        trailers_only = not self._send_initial_metadata_done
        headers = trailers(
            status,
            status_message,
            status_details,
            self._status_details_codec,
            sent,
            trailers_only=trailers_only,
        )
        self._check_open()
        try:
            self.connection.send_trailers(
                self.stream_id,
                headers,
                trailers_only=trailers_only,
                request_ended=self._request_ended,
            )
        except StreamGone as error:
            raise self._gone(error) from None
        self._send_trailing_metadata_done = True
        if self.state is CallState.RUNNING:
            self.state = CallState.ANSWERED
        self.status = status
        self.status_message = status_message
        self.ended_at = time.perf_counter()

    async def cancel(self) -> None:
        if self._cancel_done:
            raise ProtocolError("Stream was already cancelled")
        self.connection.reset(self.stream_id, ErrorCode.CANCEL)
        self._cancel_done = True

    async def __aenter__(self) -> ServerCall:
        return self

    async def __aexit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> bool | None:
        """grpclib's contract: an exception inside becomes the status in the trailers."""
        if self._send_trailing_metadata_done or self._cancel_done or self.state is CallState.CLOSED:
            return True
        if exc_val is None:
            await self.finish(Status.OK)
        elif isinstance(exc_val, GRPCError):
            await self.finish(exc_val.status, exc_val.message, exc_val.details)
        elif isinstance(exc_val, Exception):
            await self.finish(Status.UNKNOWN, "Internal Server Error")
        else:
            return None
        return True
