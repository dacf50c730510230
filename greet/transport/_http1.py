"""HTTP/1.1 on the gRPC port: the front door that tells HTTP/1.1 from HTTP/2, and the HTTP/1.1
connection that serves Connect and gRPC-Web (greet.transport._web) with h11.

`FrontDoor` is what the listener makes for every accepted connection. With TLS, ALPN decides
(`h2` or `http/1.1`); otherwise the first bytes do: the HTTP/2 preface (`PRI * HTTP/2.0`) hands
the socket to a ServerConnection, anything else to an `Http1Connection`. The hand-over is
`transport.set_protocol` plus the bytes read so far; after it the front door is out of the way,
so an HTTP/2 connection costs nothing more per call.

`Http1Connection` serves one request at a time, as HTTP/1.1 does: keep-alive, and pipelined
requests answered in order (h11 holds the next request until the current response is out; the
socket is read meanwhile only up to one request's worth, so a pipelining client holds a bounded
amount of memory). A client that closes or resets the socket mid-call cancels the call's handler.
Its limits:

    request line + header block over --max-header-list-bytes   431, then close
    a request h11 cannot parse                                 400 (h11's hint), then close
    Content-Length over one message (--max-message-bytes)     the protocol's resource_exhausted
                                                               error, then close (the body is
                                                               not read)
    client or bidi streaming                                   `unimplemented` (needs HTTP/2)
    idle (no request) for --max-connection-idle, or 5 minutes  closed

Drain (TransportServer.shutdown): an idle connection closes at once; one with a call in flight
finishes it with `Connection: close` (or, once the grace period is over, ends it like a gRPC
call, UNAVAILABLE). A client that goes away mid-call cancels its handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import h11
from grpclib.const import Status
from grpclib.protocol import Peer

from greet.transport._connection import batching_transport
from greet.transport._engine import Header, StreamGone
from greet.transport._web import Answer, WebCall, WebRequest, open_call, plain, refusal, send_answer
from greet.transport._web_wire import classify

if TYPE_CHECKING:
    from greet.transport._connection import Writer
    from greet.transport._server import TransportServer
    from greet.transport._server_call import ServerCall

__all__ = ["IDLE_TIMEOUT", "Http1Connection"]

log = logging.getLogger("greet.transport")

IDLE_TIMEOUT = 300.0  # seconds an HTTP/1.1 connection may wait for its next request
STREAM_ID = 1  # the one call of an HTTP/1.1 connection
FLUSH_AT = 64 * 1024  # response bytes held for one write at most (then the socket's own buffer)


class Http1Connection(asyncio.Protocol):
    """One HTTP/1.1 connection of a TransportServer (see the module docstring); the Sink of its
    calls."""

    stream_id = STREAM_ID

    def __init__(self, server: TransportServer) -> None:
        self.server = server
        config = server.transport_config
        self.h11 = h11.Connection(
            h11.SERVER, max_incomplete_event_size=config.max_header_list_bytes
        )
        self.calls: dict[int, ServerCall] = {}
        self.send_blocked = False
        self.draining = False
        self.closed = False
        self._call: WebCall | None = None
        self._discarding = False  # the response is out before the request's body ended
        self._writer: Writer | None = None
        self._out: list[bytes] = []  # response bytes not yet written (`_sent`)
        self._flush_scheduled = False
        self._out_size = 0
        self._transport: asyncio.Transport | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._idle_limit = config.max_connection_idle or IDLE_TIMEOUT
        # one framed message, base64 for gRPC-Web text: longer bodies are refused unread
        self._body_limit = (config.max_message_bytes + 5) * 4 // 3 + 4
        self._pipeline_limit = config.max_header_list_bytes + self._body_limit
        self._reading_paused = False
        self.loop: asyncio.AbstractEventLoop
        self.peer: Peer

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = batching_transport(transport)
        self.loop = asyncio.get_running_loop()
        self.peer = Peer(self._transport)
        self.server.connections.add(self)
        self._wait_idle()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            self.h11.receive_data(data)
        except RuntimeError:  # h11 no longer reads (a response told the client to close)
            return
        self._events()

    def eof_received(self) -> bool:
        """The client closed its side: a browser that went away. Its call in flight is
        cancelled (the connection closes), as when the socket is reset."""
        return False

    def pause_writing(self) -> None:
        self.send_blocked = True

    def resume_writing(self) -> None:
        self.send_blocked = False
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.writable()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        self._stop_idle()
        call = self._call
        self._call = None
        self.calls.clear()
        if call is not None:
            call.connection_lost()
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.writable()
        self.server.connections.discard(self)
        self.server.connection_closed(self)

    # -- requests ----------------------------------------------------------------------------

    def _events(self) -> None:
        connection = self.h11
        while not self.closed:
            try:
                event = connection.next_event()
            except h11.RemoteProtocolError as error:
                self._bad_request(error)
                return
            if event is h11.NEED_DATA:
                return
            if event is h11.PAUSED:
                # Pipelined requests wait in h11 until the current answer is out. The socket is
                # still read (a client that goes away cancels its call) up to a bound.
                buffered, _ = connection.trailing_data
                if len(buffered) > self._pipeline_limit and self._transport is not None:
                    self._transport.pause_reading()
                    self._reading_paused = True
                return
            if isinstance(event, h11.Request):
                self._request(event)
            elif isinstance(event, h11.Data):
                if self._call is not None:
                    self._call.data_received(bytes(event.data), False)
            elif isinstance(event, h11.EndOfMessage):
                call = self._call
                if call is not None:
                    call.data_received(b"", True)
                elif self._discarding:
                    self._discarding = False
                    self._next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                if self._call is None:
                    self.close("the client closed the connection")
                return

    def _request(self, event: h11.Request) -> None:
        self._stop_idle()
        headers = [(name, value) for name, value in event.headers]
        request = WebRequest(
            bytes(event.method),
            bytes(event.target).partition(b"?")[0].decode("ascii", "replace"),
            headers,
            False,
        )
        size = len(event.target) + sum(len(name) + len(value) + 4 for name, value in headers)
        limit = self.server.transport_config.max_header_list_bytes
        if size > limit:  # h11 checks only a head still incomplete when a read ends
            self._answer(plain(431, too_large(limit)), close=True)
            return
        length = request.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self._body_limit:
            answer = oversized(self, request, int(length))
            self._answer(answer, close=True)
            return
        if self.h11.they_are_waiting_for_100_continue:  # curl, for bodies over 1 KiB
            with contextlib.suppress(StreamGone):
                self._send(h11.InformationalResponse(status_code=100, headers=[]))
                self._flush()
        opened = open_call(self.server, request, self)
        if isinstance(opened, Answer):
            self._answer(opened, close=False)  # (or with its own `connection: close`)
            return
        self._call = opened
        self.calls[STREAM_ID] = opened
        opened.headers_received(False)

    def _answer(self, answer: Answer, *, close: bool) -> None:
        if close:
            answer.headers.append((b"connection", b"close"))
        with contextlib.suppress(StreamGone):
            send_answer(self, answer)

    def _bad_request(self, error: h11.RemoteProtocolError) -> None:
        status = error.error_status_hint
        if status == 431 or "too long" in str(error).lower():
            status = 431
            text = too_large(self.server.transport_config.max_header_list_bytes)
        else:
            text = f"malformed HTTP/1.1 request: {error}"
        if self.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE) and self._call is None:
            answer = plain(status, text, [(b"connection", b"close")])
            with contextlib.suppress(StreamGone):
                send_answer(self, answer)
        self.close(text)

    # -- the Sink of its call (greet.transport._web) -------------------------------------------

    def respond(
        self, status: int, headers: list[Header], *, end: bool, request_ended: bool = True
    ) -> None:
        if self.draining:
            headers = [*headers, (b"connection", b"close")]
        self._send(h11.Response(status_code=status, headers=headers, reason=reason(status)))
        self._sent(end)

    def write(self, data: bytes, *, end: bool, request_ended: bool = True) -> None:
        if data:
            self._send(h11.Data(data=data))
        self._sent(end)

    def _send(self, event: Any) -> None:
        transport = self._transport
        if self.closed or transport is None or transport.is_closing():
            raise StreamGone("the HTTP/1.1 connection is closed")
        try:
            data = self.h11.send(event)
        except h11.LocalProtocolError as error:
            raise StreamGone(str(error)) from None
        if data:
            self._out.append(data)
            self._out_size += len(data)
            if self._out_size > FLUSH_AT:  # a handler that sends without pausing
                self._flush()

    def _sent(self, end: bool) -> None:
        """A response ends now (one write of all of it), or goes on (written at the end of this
        event-loop round, with whatever else the call sends in it): a send() system call per
        piece was most of an HTTP/1.1 call's cost."""
        if end:
            self._send(h11.EndOfMessage())
            self._flush()
            self._response_done()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        out = self._out
        if not out:
            return
        self._out = []
        self._out_size = 0
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(b"".join(out) if len(out) > 1 else out[0])

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def acknowledge(self, size: int) -> None:
        """Nothing to open: HTTP/1.1 has no flow-control window."""

    def must_wait(self) -> bool:
        return self.send_blocked and not self.closed

    def wait_writable(self, writer: Writer) -> None:
        self._writer = writer

    def _response_done(self) -> None:
        """The response is out: the call is over; the next request (pipelined) may start."""
        call = self._call
        self._call = None
        self.calls.clear()
        if call is not None:
            call.stream_closed(0)
        connection = self.h11
        if connection.our_state is h11.MUST_CLOSE or self.draining:
            self.close("response sent; the connection closes")
            return
        if connection.their_state is h11.SEND_BODY:
            self._discarding = True  # answered early: read and drop the rest of the body
            return
        if connection.their_state is h11.DONE:
            self._next_cycle()

    def _next_cycle(self) -> None:
        try:
            self.h11.start_next_cycle()
        except h11.LocalProtocolError:
            self.close("the connection cannot be reused")
            return
        self._wait_idle()
        if self._reading_paused and self._transport is not None:
            self._reading_paused = False
            self._transport.resume_reading()
        self.loop.call_soon(self._events)  # a pipelined request already read

    # -- timers, drain and close (TransportServer) ---------------------------------------------

    def _wait_idle(self) -> None:
        self._stop_idle()
        self._idle = self.loop.call_later(self._idle_limit, self._idle_over)

    def _stop_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def _idle_over(self) -> None:
        self._idle = None
        if self._call is None:
            self.close("idle")

    def begin_drain(self, reason: str = "server shutting down") -> None:
        """Finish the call in flight with `Connection: close`; an idle connection closes now."""
        self.draining = True
        if self._call is None:
            self.close(reason)

    def final_goaway_now(self) -> None:
        """HTTP/1.1 has no GOAWAY: `begin_drain` said it all."""

    def end_calls(self, reason: str) -> None:
        call = self._call
        if call is not None:
            call.shut_down()

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self._stop_idle()
        log.debug("HTTP/1.1 connection closing: %s", reason)
        self._flush()
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.close()


def too_large(limit: int) -> str:
    return f"request line and headers are larger than the limit (--max-header-list-bytes, {limit})"


def reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:  # Connect's 499
        return b"Client Closed Request" if status == 499 else b""


def oversized(connection: Http1Connection, request: WebRequest, length: int) -> Answer:
    """The answer to a body larger than any message may be: the protocol's error, if the
    request names one, else 413."""
    limit = connection.server.transport_config.max_message_bytes
    content_type = request.get(b"content-type")
    kind = classify(None if content_type is None else content_type.decode("latin-1"))
    message = (
        f"request body is {length} bytes; the limit (--max-message-bytes) is {limit} for a message"
    )
    if kind is None:
        return plain(413, message)
    answer = refusal(kind, Status.RESOURCE_EXHAUSTED, message)
    answer.headers += connection.server.cors.response_headers(request.get(b"origin"))
    return answer
