"""What a ClientStream is told by its connection, and the waits that news ends.

The connection calls `got_headers`, `feed` (DATA, cut into messages by the stream's framer),
`got_trailers`, `stream_closed`, `terminate` and `writable`; each wakes the call's receiving
(or sending) side. A stream's deadline timer ends here too: the stream is reset (CANCEL) and the
waiting call raises asyncio.TimeoutError, as grpclib's does.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from grpclib.exceptions import GRPCError, StreamTerminatedError

from greet.transport.engine import ErrorCode, Headers
from greet.transport.errors import StreamReset
from greet.transport.receiving import MessageFramer

if TYPE_CHECKING:
    from greet.transport.client_connection import ClientConnection

__all__ = ["ClientStreamSignals"]


class ClientStreamSignals:
    """The receiving half of a ClientStream (see the module docstring)."""

    connection: ClientConnection | None
    stream_id: int
    framer: MessageFramer
    response_headers: Headers | None
    response_trailers: Headers | None
    remote_ended: bool
    recv_error: GRPCError | None
    failure: BaseException | None
    unacked: int
    _recv_waiter: asyncio.Future[None] | None
    _send_waiter: asyncio.Future[None] | None
    _deadline_timer: asyncio.TimerHandle | None

    def got_headers(self, headers: Headers, end_stream: bool) -> None:
        if self.response_headers is None:
            self.response_headers = headers
            if end_stream:  # trailers-only
                self.response_trailers = headers
                self.remote_ended = True
        else:  # a second HEADERS with END_STREAM: trailers
            self.got_trailers(headers)
            return
        self._wake()

    def feed(self, data: bytes, end_stream: bool) -> None:
        self.unacked += len(data)
        if self.recv_error is None:
            try:
                self.framer.feed(data)
            except GRPCError as error:
                self.recv_error = error
                self.framer.clear()
                self._cancel_stream()
        if end_stream:
            self.remote_ended = True
        if not self.framer.messages and self.connection is not None:
            self.connection.acknowledge(self)
        self._wake()

    def got_trailers(self, headers: Headers) -> None:
        self.response_trailers = headers
        self.remote_ended = True
        self._wake()

    def stream_closed(self, error_code: int) -> None:
        if not self.remote_ended and self.failure is None:
            self.failure = StreamReset(
                error_code, f"the stream closed ({ErrorCode(error_code).name})"
            )
        self._wake()

    def terminate(self, error: StreamTerminatedError) -> None:
        if self.failure is None:
            self.failure = error
        self._wake()

    def writable(self) -> None:
        waiter = self._send_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake(self) -> None:
        """Something arrived or the stream ended: wake the receiving side (and the sending side,
        which must see a failure)."""
        waiter = self._recv_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self.failure is not None:
            self.writable()

    def _deadline_expired(self) -> None:
        self._deadline_timer = None
        if self.failure is None:
            self.failure = asyncio.TimeoutError()
        self._cancel_stream()
        self._wake()

    def _cancel_stream(self) -> None:
        connection = self.connection
        if connection is not None and self.stream_id and not connection.closed:
            connection.engine.reset_stream(self.stream_id, ErrorCode.CANCEL)
            connection.sent()

    async def _wait(self) -> None:
        """Until the connection tells the stream something; raises how the stream failed."""
        if self.failure is not None:
            raise self.failure
        waiter = self._recv_waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._recv_waiter = None

    async def _wait_writable(self) -> None:
        if self.failure is not None:
            raise self.failure
        waiter = self._send_waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._send_waiter = None
