"""HTTP/1.1 on the gRPC port: the connection that serves Connect and gRPC-Web
(greet.transport._web) to browsers, parsed by httptools (llhttp, the parser of Node.js and of
uvicorn).

`FrontDoor` (greet.transport._server) tells HTTP/1.1 from HTTP/2 by ALPN or by the first bytes and
hands the socket to an `Http1Connection`.

`Http1Connection` answers requests one at a time, in order, as HTTP/1.1 does: keep-alive, and
pipelined requests (read ahead into `Http1Request`s that wait for their turn; once they hold more
than a header block and a message's worth of bytes, the socket is no longer read until the
answers catch up, so a pipelining client holds a bounded amount of memory). A request's body goes
to its call as it comes (the last piece with the end of the request). A client that closes or
resets the socket mid-call cancels the call's handler. Its limits:

    request line + header block over --max-header-list-bytes   431, then close
    a request llhttp cannot parse                              400 (llhttp's reason), then close
    Content-Length over one message (--max-message-bytes)     the protocol's resource_exhausted
                                                               error, then close (the body is
                                                               not read)
    client or bidi streaming                                   `unimplemented` (needs HTTP/2)
    idle (no request) for --max-connection-idle, or 5 minutes  closed

A response with a Content-Length is written as it is; one without (a stream) is chunked, or, to
an HTTP/1.0 client, delimited by the end of the connection. `Expect: 100-continue` gets its
`100 Continue` when the request's turn comes. A request that does not keep the connection alive
(HTTP/1.0 without keep-alive, `Connection: close`, an `Upgrade`, which greet does not do) is the
connection's last. A response is one socket write when the call answers in one go (unary), else
one per event-loop round.

Drain (TransportServer.shutdown): an idle connection closes at once; one with a call in flight
finishes it with `Connection: close` (or, once the grace period is over, ends it like a gRPC
call, UNAVAILABLE). A client that goes away mid-call cancels its handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from http import HTTPStatus
from typing import TYPE_CHECKING

import httptools
from grpclib.const import Status
from grpclib.protocol import Peer

from greet.transport._connection import batching_transport
from greet.transport._engine import Header, StreamGone
from greet.transport._web import Answer, WebCall, WebRequest, open_call, plain, refusal, send_answer
from greet.transport._web_wire import classify_header

if TYPE_CHECKING:
    from greet.transport._connection import Writer
    from greet.transport._server import TransportServer
    from greet.transport._server_call import ServerCall

__all__ = ["IDLE_TIMEOUT", "Http1Connection", "Http1Request"]

log = logging.getLogger("greet.transport")

IDLE_TIMEOUT = 300.0  # seconds an HTTP/1.1 connection may wait for its next request
STREAM_ID = 1  # the one call of an HTTP/1.1 connection
FLUSH_AT = 64 * 1024  # response bytes held for one write at most (then the socket's own buffer)
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"


class HeadTooLarge(Exception):
    """Raised inside the parser's callbacks: the request line and headers are over the limit."""


class Http1Request:
    """One request read from the connection: answered now (the first of the queue) or waiting
    for the answers before it (pipelined)."""

    __slots__ = (
        "call",
        "complete",
        "expects_continue",
        "head_only",
        "held",
        "keep_alive",
        "old_client",
        "parts",
        "queued",
        "request",
        "responded",
        "started",
    )

    def __init__(self, request: WebRequest, keep_alive: bool, old_client: bool) -> None:
        self.request = request
        self.keep_alive = keep_alive
        self.old_client = old_client  # HTTP/1.0: no chunked responses
        self.head_only = request.method == b"HEAD"
        self.expects_continue = False
        self.complete = False  # the whole request (body included) is read
        self.started = False  # its turn came (its call opened, or its answer sent)
        self.responded = False  # its response is out
        self.call: WebCall | None = None
        self.held: bytes | None = None  # the last body piece, given to the call with the end
        self.parts: list[bytes] = []  # body read before its turn
        self.queued = 0  # bytes of it read before its turn (head and body)


class Http1Connection(asyncio.Protocol):
    """One HTTP/1.1 connection of a TransportServer (see the module docstring); the Sink of its
    calls."""

    stream_id = STREAM_ID

    def __init__(self, server: TransportServer) -> None:
        self.server = server
        config = server.transport_config
        self.parser = httptools.HttpRequestParser(self)
        self.calls: dict[int, ServerCall] = {}
        self.send_blocked = False
        self.draining = False
        self.closed = False
        self.requests: deque[Http1Request] = deque()  # the first is being answered
        self._reading: Http1Request | None = None  # the one whose body is being read
        self._url = b""
        self._headers: list[Header] = []
        self._head_size = 0
        self._head_limit = config.max_header_list_bytes
        self._too_large = False  # the head being read is over the limit
        self._last = False  # a request that ends the connection was read
        self._read_all = False  # ... whole: what comes after it is not read
        self._failure: Answer | None = None  # to send once the answers before it are out
        self._chunked = False  # the response in progress is chunked
        self._until_close = False  # ... or ends with the connection (an HTTP/1.0 client)
        self._close_after = False  # ... and is the connection's last
        self._head_only = False
        self._writer: Writer | None = None
        self._out: list[bytes] = []  # response bytes not yet written (`_sent`)
        self._flush_scheduled = False
        self._out_size = 0
        self._transport: asyncio.Transport | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._idle_limit = config.max_connection_idle or IDLE_TIMEOUT
        self._active_at = 0.0
        # one framed message, base64 for gRPC-Web text: longer bodies are refused unread
        self._body_limit = (config.max_message_bytes + 5) * 4 // 3 + 4
        self._pipeline_limit = config.max_header_list_bytes + self._body_limit
        self._queued = 0  # bytes read ahead (heads and bodies) for requests not yet started
        self._next_waits = False  # the next request waits for the client to read our answers
        self._reading_paused = False
        self.loop: asyncio.AbstractEventLoop
        self.peer: Peer

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = batching_transport(transport)
        self.loop = asyncio.get_running_loop()
        self.peer = Peer(self._transport)
        self.server.connections.add(self)
        self._active_at = self.loop.time()
        self._idle = self.loop.call_later(self._idle_limit, self._idle_check)

    def data_received(self, data: bytes) -> None:
        if self.closed or self._read_all or self._failure is not None:
            return
        try:
            self.parser.feed_data(data)
        except (HeadTooLarge, httptools.HttpParserCallbackError):
            # (httptools wraps what a callback raises; `_too_large` says whether it was ours)
            if not self._too_large:
                raise
            self._fail(431, too_large(self._head_limit))
        except httptools.HttpParserUpgrade:
            # greet upgrades to nothing: the request is answered and the connection closes
            self._last = True
            reading = self._reading
            if reading is not None and not reading.complete:
                self.on_message_complete()
            self._read_all = True
        except httptools.HttpParserError as error:
            self._fail(400, f"malformed HTTP/1.1 request: {error}")

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
        if self._next_waits:
            self._next_waits = False
            self._next()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        self._stop_idle()
        call = self.requests[0].call if self.requests else None
        self.requests.clear()
        self.calls.clear()
        if call is not None:
            call.connection_lost()
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.writable()
        self.server.connections.discard(self)
        self.server.connection_closed(self)

    # -- the parser's callbacks (httptools) ------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._head_size = 0
        self._active_at = self.loop.time()

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)
        if self._head_size > self._head_limit:
            self._too_large = True
            raise HeadTooLarge

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self._head_limit:
            self._too_large = True
            raise HeadTooLarge
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        headers = self._headers
        request = WebRequest(
            parser.get_method(),
            self._url.partition(b"?")[0].decode("ascii", "replace"),
            headers,
            False,
            self._head_size - len(self._url) - 4 * len(headers),  # the names' and values' bytes
        )
        keep_alive = parser.should_keep_alive()
        entry = Http1Request(request, keep_alive, parser.get_http_version() == "1.0")
        expect = request.get(b"expect")
        entry.expects_continue = expect is not None and expect.lower() == b"100-continue"
        if not keep_alive:
            self._last = True
        self._reading = entry
        requests = self.requests
        requests.append(entry)
        if len(requests) == 1:
            self._start(entry)
            return
        entry.queued = self._head_size
        self._queued += self._head_size
        if self._queued > self._pipeline_limit and not self._reading_paused:
            self._pause_reading()

    def on_body(self, body: bytes) -> None:
        entry = self._reading
        if entry is None:
            return
        if not entry.started:
            entry.parts.append(body)
            entry.queued += len(body)
            self._queued += len(body)
            if self._queued > self._pipeline_limit and not self._reading_paused:
                self._pause_reading()
            return
        call = entry.call
        if call is None or entry.responded:
            return  # answered already: the rest of the body is dropped
        held, entry.held = entry.held, body
        if held is not None:
            call.data_received(held, False)

    def on_message_complete(self) -> None:
        entry = self._reading
        if entry is None:
            return
        self._reading = None
        entry.complete = True
        if self._last:
            self._read_all = True
        if not entry.started:
            return
        if entry.responded:  # answered before its body ended
            self._advance()
            return
        call = entry.call
        if call is not None:
            held, entry.held = entry.held, None
            call.data_received(held or b"", True)

    # -- requests ----------------------------------------------------------------------------

    def _start(self, entry: Http1Request) -> None:
        """The request's turn: its call opens (or its answer goes out)."""
        entry.started = True
        self._queued -= entry.queued
        entry.queued = 0
        request = entry.request
        length = request.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self._body_limit:
            self._answer(entry, oversized(self, request, int(length)), close=True)
            return
        if entry.expects_continue and not entry.complete and not entry.parts:
            self._out.append(CONTINUE)  # curl, for bodies over 1 KiB
            self._flush()
        opened = open_call(self.server, request, self)
        if isinstance(opened, Answer):
            self._answer(entry, opened, close=False)  # (or with its own `connection: close`)
            return
        entry.call = opened
        self.calls[STREAM_ID] = opened
        opened.headers_received(False)
        if entry.parts:
            parts, entry.parts = entry.parts, []
            entry.held = parts.pop()
            for part in parts:
                if entry.call is opened and not entry.responded:
                    opened.data_received(part, False)
        if entry.complete and entry.call is opened and not entry.responded:
            held, entry.held = entry.held, None
            opened.data_received(held or b"", True)

    def _answer(self, entry: Http1Request, answer: Answer, *, close: bool) -> None:
        if close:
            answer.headers.append((b"connection", b"close"))
            self._last = True
        try:
            send_answer(self, answer)
        except StreamGone:
            return

    def _fail(self, status: int, text: str) -> None:
        """A request that cannot be read: its answer goes out after those of the requests
        before it, then the connection closes."""
        self._failure = plain(status, text, [(b"connection", b"close")])
        reading = self._reading
        self._reading = None
        if reading is not None and reading.started and not reading.complete:
            self.close(text)  # its call waits for a body that cannot be read
            return
        if reading is not None and not reading.started:
            self.requests.pop()  # (its head was read, its body was not)
        if not self.requests:
            self._send_failure()
        elif not self._reading_paused:
            self._pause_reading()

    def _send_failure(self) -> None:
        failure, self._failure = self._failure, None
        if failure is None:
            return
        self.requests.append(Http1Request(WebRequest(b"POST", "", [], False), False, False))
        self.requests[0].started = True
        self.requests[0].complete = True
        with contextlib.suppress(StreamGone):
            send_answer(self, failure)
        self.close(failure.body.decode().strip())

    # -- the Sink of its call (greet.transport._web) -------------------------------------------

    def respond(
        self, status: int, headers: list[Header], *, end: bool, request_ended: bool = True
    ) -> None:
        self._head(status, headers, end)
        self._sent(end)

    def respond_whole(
        self, status: int, headers: list[Header], body: bytes, *, request_ended: bool = True
    ) -> None:
        """The whole response, in one write (a unary call's, an Answer)."""
        self._head(status, headers, True)
        if body and not self._head_only:
            self._out.append(body)
        self._sent(True)

    def _head(self, status: int, headers: list[Header], end: bool) -> None:
        transport = self._transport
        if self.closed or transport is None or transport.is_closing() or not self.requests:
            raise StreamGone("the HTTP/1.1 connection is closed")
        entry = self.requests[0]
        if entry.responded:
            raise StreamGone("the response is out")
        close = self.draining or (self._last and entry is self.requests[-1]) or not entry.keep_alive
        parts = [status_line(status)]
        length = False
        for name, value in headers:
            if b"\n" in value or b"\r" in value:
                raise StreamGone(f"header {name.decode('latin-1')!r} holds a line break")
            if name == b"content-length":
                length = True
            elif name == b"connection":
                if value.lower() == b"close":
                    close = True
                continue
            parts += (name, b": ", value, b"\r\n")
        self._chunked = self._until_close = False
        if length:
            pass
        elif end:
            parts.append(b"content-length: 0\r\n")
        elif entry.old_client:
            self._until_close = close = True
        else:
            self._chunked = True
            parts.append(b"transfer-encoding: chunked\r\n")
        if close:
            parts.append(b"connection: close\r\n")
        self._close_after = close
        self._head_only = entry.head_only
        parts.append(b"\r\n")
        self._queue(b"".join(parts))

    def write(self, data: bytes, *, end: bool, request_ended: bool = True) -> None:
        transport = self._transport
        if self.closed or transport is None or transport.is_closing():
            raise StreamGone("the HTTP/1.1 connection is closed")
        if data and not self._head_only:
            if self._chunked:
                self._queue(b"%x\r\n%b\r\n" % (len(data), data))
            else:
                self._queue(data)
        if end and self._chunked and not self._head_only:
            self._queue(LAST_CHUNK)
        self._sent(end)

    def _queue(self, data: bytes) -> None:
        self._out.append(data)
        self._out_size += len(data)
        if self._out_size > FLUSH_AT:  # a handler that sends without pausing
            self._flush()

    def _sent(self, end: bool) -> None:
        """A response ends now (one write of all of it), or goes on (written at the end of this
        event-loop round, with whatever else the call sends in it): a send() system call per
        piece was most of an HTTP/1.1 call's cost."""
        if end:
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
        entry = self.requests[0]
        entry.responded = True
        call = entry.call
        entry.call = None
        self.calls.clear()
        if call is not None:
            call.stream_closed(0)
        if self._close_after:
            self.close("response sent; the connection closes")
            return
        if entry.complete:
            self._advance()
        # else: answered early; the rest of its body is read and dropped (on_message_complete)

    def _advance(self) -> None:
        """The first request is over: the next one's turn."""
        requests = self.requests
        requests.popleft()
        self._active_at = self.loop.time()
        if requests:
            self.loop.call_soon(self._next)  # a pipelined request already read
        elif self._failure is not None:
            self._send_failure()
        elif self._reading_paused and self._transport is not None:
            self._reading_paused = False
            self._transport.resume_reading()

    def _next(self) -> None:
        requests = self.requests
        if self.closed or not requests or requests[0].started:
            return
        if self.send_blocked:  # a client that does not read its answers gets no more of them
            self._next_waits = True
            return
        self._start(requests[0])
        if (
            self._reading_paused
            and self._transport is not None
            and self._failure is None
            and self._queued <= self._pipeline_limit
        ):
            self._reading_paused = False
            self._transport.resume_reading()

    def _pause_reading(self) -> None:
        if self._transport is not None:
            self._reading_paused = True
            self._transport.pause_reading()

    # -- timers, drain and close (TransportServer) ---------------------------------------------

    def _idle_check(self) -> None:
        """Close the connection when it has waited for a request for the idle limit (the timer
        is set once and pushed back, not set again for every request)."""
        self._idle = None
        if self.closed:
            return
        due = self._active_at + self._idle_limit
        now = self.loop.time()
        if self.requests or now < due:
            wait = self._idle_limit if self.requests else due - now
            self._idle = self.loop.call_later(wait, self._idle_check)
            return
        self.close("idle")

    def _stop_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def begin_drain(self, reason: str = "server shutting down") -> None:
        """Finish the call in flight with `Connection: close`; an idle connection closes now."""
        self.draining = True
        if not self.requests:
            self.close(reason)

    def final_goaway_now(self) -> None:
        """HTTP/1.1 has no GOAWAY: `begin_drain` said it all."""

    def end_calls(self, reason: str) -> None:
        call = self.requests[0].call if self.requests else None
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


STATUS_LINES: dict[int, bytes] = {}


def status_line(status: int) -> bytes:
    line = STATUS_LINES.get(status)
    if line is None:
        line = STATUS_LINES[status] = b"HTTP/1.1 %d %b\r\n" % (status, reason(status))
    return line


def oversized(connection: Http1Connection, request: WebRequest, length: int) -> Answer:
    """The answer to a body larger than any message may be: the protocol's error, if the
    request names one, else 413."""
    limit = connection.server.transport_config.max_message_bytes
    content_type = request.get(b"content-type")
    kind = classify_header(content_type)
    message = (
        f"request body is {length} bytes; the limit (--max-message-bytes) is {limit} for a message"
    )
    if kind is None:
        return plain(413, message)
    answer = refusal(kind, Status.RESOURCE_EXHAUSTED, message)
    answer.headers += connection.server.cors.response_headers(request.get(b"origin"))
    return answer
