"""What a server connection writes, and how it stops: the base of ServerConnection.

- Writes are batched (greet.transport.writes) and flushed from the engine's send queue; a call
  whose stream or connection buffer is over its bound waits in `_waiting_writers` until the
  socket and the engine drain (`send_blocked`), so a peer that stops reading holds bounded memory.
- Trailers end a call; a call answered while its client was still sending gets RST_STREAM
  NO_ERROR after its trailers (the gRPC way to say "stop sending").
- A connection ends with a lingering close (`close`): what is queued is written and followed by a
  FIN, input is read and dropped until the peer closes too or LINGER seconds pass, then the socket
  is closed, and aborted if it still has not written out its last bytes after CLOSE_TIMEOUT.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from grpclib.const import Status

from greet.addresses import format_peer
from greet.transport.engine import EngineFailure, ErrorCode, Header, Http2Engine, StreamGone
from greet.transport.frames import goaway_frame
from greet.transport.responses import rejection
from greet.transport.writes import WriteBatcher

if TYPE_CHECKING:
    from greet.transport.server_stream import ServerCall

__all__ = ["CLOSE_TIMEOUT", "LINGER", "ServerOutput"]

log = logging.getLogger("greet.transport")

LINGER = 1.0  # seconds a closing connection keeps reading (and dropping) what the peer sends
CLOSE_TIMEOUT = 5.0  # seconds a closed socket may take to write out its last bytes


class ServerOutput:
    """The output half of a ServerConnection (see the module docstring)."""

    engine: Http2Engine
    writes: WriteBatcher
    loop: asyncio.AbstractEventLoop
    calls: dict[int, ServerCall]
    stream_send_buffer: int
    connection_send_buffer: int
    highest_stream_id: int
    draining: bool
    final_goaway: int | None
    closing: bool

    def __init__(self) -> None:
        self.send_blocked = False  # the socket's or the engine's buffer is full
        self._transport: asyncio.Transport | None = None
        self._waiting_writers: set[ServerCall] = set()
        self._reset_after_trailers: list[int] = []
        self._pending_acks = 0  # PING/SETTINGS ACKs owed while the socket is not writable
        self._write_paused = False
        self._engine_done = False

    def pause_writing(self) -> None:
        self._write_paused = True
        self.send_blocked = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._pending_acks = 0
        self._update_send_blocked()

    # -- output ------------------------------------------------------------------------------

    def _flush(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        data = self.engine.data_to_send()
        if self._reset_after_trailers:
            data += self._reset_finished_streams()
        if data:
            transport.write(data)
        if self._engine_done:
            self.close("the HTTP/2 session ended")
            return
        if self.draining and self.final_goaway is not None and not self.calls:
            self.close("drained")
            return
        if self._waiting_writers or self.send_blocked:
            self._update_send_blocked()

    def _reset_finished_streams(self) -> bytes:
        """RST_STREAM(NO_ERROR) for streams answered while the client was still sending (the
        gRPC way to say "stop sending"), once their trailers are out."""
        engine = self.engine
        waiting = []
        for stream_id in self._reset_after_trailers:
            if not engine.is_stream_open(stream_id):
                continue
            if engine.queued(stream_id):
                waiting.append(stream_id)
            else:
                engine.reset_stream(stream_id, ErrorCode.NO_ERROR)
        self._reset_after_trailers = waiting
        return engine.data_to_send()

    def schedule_flush(self) -> None:
        self.writes.request()

    def _update_send_blocked(self) -> None:
        blocked = self._write_paused or self.engine.queued_total() > self.connection_send_buffer
        self.send_blocked = blocked
        if self._waiting_writers:
            engine = self.engine
            ready = [
                call
                for call in self._waiting_writers
                if blocked is False and engine.queued(call.stream_id) <= self.stream_send_buffer
            ]
            for call in ready:
                self._waiting_writers.discard(call)
                call.writable()

    def wait_writable(self, call: ServerCall) -> None:
        self._waiting_writers.add(call)

    def acknowledge(self, call: ServerCall) -> None:
        """The call's handler took (or will never take) what it received: open the window."""
        if call.unacked:
            self.engine.acknowledge(call.stream_id, call.unacked)
            call.unacked = 0
            self.writes.request()

    def send_trailers(
        self, call: ServerCall, headers: list[Header], *, trailers_only: bool
    ) -> None:
        if trailers_only:
            self.engine.send_headers(call.stream_id, headers, end_stream=True)
        else:
            self.engine.send_trailers(call.stream_id, headers)
        if not call.request_ended:
            self._reset_after_trailers.append(call.stream_id)
        self.writes.request()

    def reset(self, call: ServerCall, code: int) -> None:
        self.engine.reset_stream(call.stream_id, code)
        self.writes.request()

    def reject(self, call: ServerCall, status: Status, message: str) -> None:
        """Answer a call that has no handler running: trailers-only with `status`."""
        self._answer(call.stream_id, status, message, ended=call.request_ended)
        call.terminate()

    def _answer(
        self,
        stream_id: int,
        status: Status,
        message: str,
        *,
        http_status: bytes = b"200",
        ended: bool = True,
    ) -> None:
        """A trailers-only response (no handler involved)."""
        try:
            self.engine.send_headers(
                stream_id, rejection(status, message, http_status), end_stream=True
            )
        except StreamGone:
            return  # reset by the client already: nobody to answer
        if not ended:
            self._reset_after_trailers.append(stream_id)
        self.writes.request()

    # -- connection-level ends ---------------------------------------------------------------

    def _goaway_and_close(self, code: ErrorCode, debug: bytes, reason: str) -> None:
        log.info("closing connection from %s: %s", self.peer_name, reason)
        self.engine.goaway(code, self.highest_stream_id, debug)
        self.writes.now()
        self.close(reason)

    def _fail(self, failure: EngineFailure) -> None:
        """The peer broke the protocol (or an engine limit): GOAWAY with the code, close."""
        transport = self._transport
        log.info(
            "HTTP/2 error on connection from %s: %s (%s)",
            self.peer_name,
            failure.message,
            failure.code.name,
        )
        if transport is not None and not transport.is_closing():
            if failure.goaway_queued:
                transport.write(self.engine.data_to_send())
            else:
                debug = failure.message.encode("utf-8", "replace")[:256]
                transport.write(goaway_frame(self.highest_stream_id, failure.code, debug))
        self.close(failure.message)

    def abort(self) -> None:
        """Drop the socket at once (safe when it is closed already)."""
        if self._transport is not None:
            self._transport.abort()

    def close(self, reason: str) -> None:
        """End the connection the way HTTP/2 servers must (a lingering close): what is queued
        is written and followed by a FIN, input is read and dropped until the peer closes too
        or LINGER seconds pass, then the socket is closed. Closing at once while the peer is
        still sending would make the kernel answer with an RST that destroys the GOAWAY."""
        transport = self._transport
        if self.closing:
            return
        self.closing = True
        self.engine.halt()
        if transport is None or transport.is_closing():
            return
        log.debug("connection from %s closing: %s", self.peer_name, reason)
        if transport.can_write_eof():
            try:
                transport.write_eof()
            except OSError:  # the peer is gone already (ENOTCONN): nothing left to linger for
                transport.abort()
                return
        self.loop.call_later(LINGER, self._close_now)

    def _close_now(self) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.close()
            if transport.get_write_buffer_size():  # a peer that does not read
                self.loop.call_later(CLOSE_TIMEOUT, self.abort)

    @property
    def peer_name(self) -> str:
        transport = self._transport
        address = transport.get_extra_info("peername") if transport is not None else None
        return format_peer(address, unknown="unknown peer")
