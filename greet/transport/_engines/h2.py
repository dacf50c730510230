"""The h2 engine: pure-Python h2, behind `Http2Engine` with the same semantics as nghttp2's.

What this adapter adds to h2, so that the layer above sees one behaviour:
- a send queue per stream: h2 refuses DATA beyond the flow-control window and would send
  trailers ahead of unsent DATA; here body bytes wait for window updates and trailers or the end
  of the stream wait for the body. As with libnghttp2, queued bytes are framed only when output
  is asked for (`data_to_send`), so they count as `queued` until then (a handler that sends
  faster than the connection flushes is held to its stream's bound), and the messages queued on
  a stream share DATA frames (h2's cost is per frame: a frame per small message made a
  server stream cost about 30 us a message);
- one `on_stream_closed` per stream, when both sides have ended or it was reset either way;
- request headers checked by greet.transport._engines.h2 (h2's own validation would close the whole
  connection for one malformed request);
- `GreetH2Connection` (greet.transport._engines.h2), h2's connection with greet's starting
  settings and a GOAWAY that closes nothing;
- GOAWAY frames written by greet (greet.transport._engine), for the same reason on our side;
- less of h2's work per call: HPACK caches (`CachingEncoder`, `CachingDecoder`: a connection's
  usual header blocks are encoded and decoded once while the dynamic table stays), well-formed
  request heads remembered, no `repr` of every received frame (`GreetH2Connection`), stream
  ends read from h2's stream states.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    PingAckReceived,
    PingReceived,
    RemoteSettingsChanged,
    RequestReceived,
    ResponseReceived,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from h2.exceptions import ProtocolError, StreamClosedError, StreamIDTooLowError
from h2.frame_buffer import FrameBuffer
from h2.settings import SettingCodes, Settings
from hpack import Decoder, Encoder, HeaderTuple
from hpack.table import HeaderTable
from hyperframe.frame import ContinuationFrame, Frame, GoAwayFrame, RstStreamFrame

from greet.transport._engine import (
    MAX_STREAM_ID,
    SETTINGS_MAX_CONCURRENT_STREAMS,
    EngineEvents,
    EngineFailure,
    EngineLimits,
    ErrorCode,
    Header,
    Headers,
    StreamGone,
    goaway_frame,
    settings_frame,
)

__all__ = [
    "GreetH2Connection",
    "H2Engine",
    "HeaderBlockBuffer",
    "request_problem",
    "trailers_problem",
]


# -- h2_connection ----------


class HeaderBlockBuffer(FrameBuffer):
    """h2's frame buffer with greet's bounds on one header block: at most `max_continuations`
    CONTINUATION frames and `max_bytes` of encoded headers (past either, a connection error, as
    h2's own limit is). The middle frames of a long block are folded into one, so h2's count of
    64 frames is never reached; the block h2 assembles is the same bytes."""

    def __init__(self, *, server: bool, max_continuations: int, max_bytes: int) -> None:
        super().__init__(server=server)
        self.max_continuations = max_continuations
        self.max_bytes = max_bytes
        self._continuations = 0
        self._block_bytes = 0
        self._folded: list[bytes] = []

    def _update_header_buffer(self, f: Frame | None) -> Frame | None:
        buffered = self._headers_buffer
        if buffered and isinstance(f, ContinuationFrame) and f.stream_id == buffered[0].stream_id:
            self._continuations += 1
            self._block_bytes += len(f.data)
            if self._continuations > self.max_continuations:
                raise ProtocolError("Too many continuation frames received.")
            if self._block_bytes > self.max_bytes:
                raise ProtocolError("Header block too large.")
            if len(buffered) > 1 and "END_HEADERS" not in f.flags:
                self._folded.append(f.data)  # into the first CONTINUATION, when the block ends
                return None
            if self._folded:
                buffered[-1].data += b"".join(self._folded)
                self._folded.clear()
        elif not buffered:
            self._continuations = 0
            self._block_bytes = len(getattr(f, "data", b""))  # a HEADERS frame may begin one
        return super()._update_header_buffer(f)


class CountingTable(HeaderTable):
    """hpack's header table, counting its changes: `generation` moves whenever an entry is added
    (which may evict others) or the size changes, and only then."""

    generation = 0

    def add(self, name: bytes, value: bytes) -> None:
        self.generation += 1
        super().add(name, value)

    @property
    def maxsize(self) -> int:
        return int(_TABLE_MAXSIZE.__get__(self))

    @maxsize.setter
    def maxsize(self, newmax: int) -> None:
        self.generation += 1
        _TABLE_MAXSIZE.__set__(self, newmax)


_TABLE_MAXSIZE: property = vars(HeaderTable)["maxsize"]


HPACK_CACHE_ENTRIES = 32


"""Header blocks (or lists) an HPACK cache keeps per connection; it starts over when full."""


HPACK_CACHE_BLOCK = 1024


"""The largest encoded header block the HPACK caches keep (with its list, at most 8 KiB)."""


class CachingEncoder(Encoder):
    """hpack's encoder that gives the same block again for the same header list while its
    dynamic table has not changed.

    Encoding is a function of the list and the table; a block whose encoding added nothing to
    the table (every field was found in it, or is sent without indexing) leaves the table as it
    was, so the same bytes are right as long as `generation` stays. greet sends the same
    response headers and OK trailers call after call, and a client the same request headers.
    """

    def __init__(self) -> None:
        super().__init__()
        self.header_table: CountingTable = CountingTable()
        self._blocks: dict[tuple[tuple[bytes, bytes], ...], tuple[int, bytes]] = {}

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        table = self.header_table
        if not huffman or table.resized or type(headers) is not list:
            return super().encode(headers, huffman)
        for header in headers:
            if type(header) is not tuple or len(header) != 2:  # HeaderTuple: sensitivity
                return super().encode(headers, huffman)
        key = tuple(headers)
        generation = table.generation
        cached = self._blocks.get(key)
        if cached is not None and cached[0] == generation:
            return cached[1]
        block = super().encode(headers, huffman)
        if table.generation == generation and len(block) <= HPACK_CACHE_BLOCK:
            if len(self._blocks) >= HPACK_CACHE_ENTRIES:
                self._blocks.clear()
            self._blocks[key] = (generation, block)
        return block


class CachingDecoder(Decoder):
    """hpack's decoder that gives the same header list again for the same block while its
    dynamic table and limits have not changed (see CachingEncoder: a block that changed nothing
    in the table decodes to the same list, and passes the same checks, as long as they stay).
    """

    def __init__(self, max_header_list_size: int) -> None:
        super().__init__(max_header_list_size=max_header_list_size)
        self.header_table: CountingTable = CountingTable()
        self.max_allowed_table_size = self.header_table.maxsize
        self._lists: dict[bytes, tuple[int, int, int, list[HeaderTuple]]] = {}

    def decode(self, data: bytes, raw: bool = False) -> Iterable[HeaderTuple]:
        if not raw or type(data) is not bytes or len(data) > HPACK_CACHE_BLOCK:
            return super().decode(data, raw)
        table = self.header_table
        generation = table.generation
        cached = self._lists.get(data)
        if (
            cached is not None
            and cached[0] == generation
            and cached[1] == self.max_header_list_size
            and cached[2] == self.max_allowed_table_size
        ):
            return list(cached[3])
        headers = list(super().decode(data, raw))
        if table.generation == generation:
            if len(self._lists) >= HPACK_CACHE_ENTRIES:
                self._lists.clear()
            entry = (generation, self.max_header_list_size, self.max_allowed_table_size, headers)
            self._lists[data] = entry
            return list(headers)
        return headers


class GreetH2Connection(H2Connection):
    """h2's connection with greet's starting settings and a GOAWAY that closes nothing.

    `DEFAULT_MAX_HEADER_LIST_SIZE` is h2's class attribute for the size its HPACK decoder gives
    up at (a connection error): greet's hard limit. The smaller limit greet advertises is applied
    per call by the connection.
    """

    DEFAULT_MAX_HEADER_LIST_SIZE = EngineLimits.hard_header_list_size

    def __init__(self, config: H2Configuration, limits: EngineLimits) -> None:
        super().__init__(config)
        initial: dict[SettingCodes, int] = {
            SettingCodes.MAX_CONCURRENT_STREAMS: MAX_STREAM_ID,  # enforced per stream by greet
            SettingCodes.MAX_HEADER_LIST_SIZE: limits.hard_header_list_size,
            SettingCodes.INITIAL_WINDOW_SIZE: limits.initial_window_size,
            SettingCodes.MAX_FRAME_SIZE: limits.max_frame_size,
        }
        if config.client_side:
            initial[SettingCodes.ENABLE_PUSH] = 0
        self.local_settings = Settings(client=config.client_side, initial_values=initial)
        self.max_inbound_frame_size = limits.max_frame_size
        self.encoder = CachingEncoder()
        self.decoder = CachingDecoder(self.DEFAULT_MAX_HEADER_LIST_SIZE)
        self.incoming_buffer = HeaderBlockBuffer(
            server=not config.client_side,
            max_continuations=limits.max_continuations,
            max_bytes=limits.hard_header_list_size,
        )

    def _receive_frame(self, frame: Frame) -> list[Event]:
        """h2's own `_receive_frame` (h2 4.4.1), without its first line: a trace log call whose
        argument, `repr(frame)`, h2 builds for every frame even when nothing logs it (about a
        tenth of the engine's time on a unary call). tests/test_upstream_contracts.py pins the
        upstream method this copies."""
        events: list[Event]
        try:
            frames, events = self._frame_dispatch_table[frame.__class__](frame)
        except StreamClosedError as e:
            if self._stream_is_closed_by_reset(e.stream_id):
                f = RstStreamFrame(e.stream_id)
                f.error_code = e.error_code
                self._prepare_for_sending([f])
                events = e._events
            else:
                raise
        except StreamIDTooLowError as e:
            if self._stream_is_closed_by_reset(e.stream_id):
                f = RstStreamFrame(e.stream_id)
                f.error_code = ErrorCodes.STREAM_CLOSED
                self._prepare_for_sending([f])
                events = []
            elif self._stream_is_closed_by_end(e.stream_id):
                raise StreamClosedError(e.stream_id) from e
            else:
                raise
        else:
            self._prepare_for_sending(frames)
        return events

    def _receive_goaway_frame(self, frame: GoAwayFrame) -> tuple[list[Frame], list[Event]]:
        """A GOAWAY is reported, and h2's state machine is left open for the streams in flight
        (greet's connection opens no new streams after it)."""
        event = ConnectionTerminated()
        event.error_code = ErrorCodes(frame.error_code) if frame.error_code < 14 else None
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]


# -- headers ----------

REQUEST_PSEUDO = frozenset({b":method", b":scheme", b":path", b":authority", b":protocol"})


CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)


# RFC 9110 token characters, lower case only (RFC 9113 section 8.2.1)
FIELD_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+\Z")


# No NUL, CR or LF anywhere, no leading or trailing space or tab (RFC 9113 section 8.2.1)
BAD_VALUE = re.compile(rb"[\x00\r\n]|\A[ \t]|[ \t]\Z")


def field_problem(name: bytes, value: bytes) -> str | None:
    if not FIELD_NAME.match(name):
        return f"invalid header name {name[:64]!r}"
    if value and BAD_VALUE.search(value):
        return f"invalid value for header {name[:64]!r}"
    if name in CONNECTION_SPECIFIC:
        return f"connection-specific header {name.decode()!r}"
    if name == b"te" and value != b"trailers":
        return "te header other than 'trailers'"
    return None


def request_problem(headers: Headers) -> str | None:
    """Why a request header block is malformed, or None when it is well formed."""
    seen: set[bytes] = set()
    regular = False
    for name, value in headers:
        if name[:1] == b":":
            if regular:
                return f"pseudo-header {name.decode(errors='replace')!r} after regular headers"
            if name not in REQUEST_PSEUDO:
                return f"unknown pseudo-header {name[:64]!r}"
            if name in seen:
                return f"duplicate pseudo-header {name.decode()!r}"
            seen.add(name)
            continue
        regular = True
        problem = field_problem(name, value)
        if problem is not None:
            return problem
    pseudo = dict(header for header in headers if header[0][:1] == b":")
    if pseudo.get(b":method") == b"CONNECT":
        return None if b":authority" in pseudo and b":path" not in pseudo else "bad CONNECT"
    for required in (b":method", b":scheme", b":path"):
        if not pseudo.get(required):
            return f"missing or empty {required.decode()}"
    return None


def trailers_problem(headers: Headers) -> str | None:
    """Why a trailer block is malformed (pseudo-headers, bad fields), or None."""
    for name, value in headers:
        if name[:1] == b":":
            return f"pseudo-header {name[:64]!r} in trailers"
        problem = field_problem(name, value)
        if problem is not None:
            return problem
    return None


# -- engine_h2 ----------

SETTINGS_MAX_HEADER_LIST_SIZE = 0x6


class _Outbound:
    """Body bytes of one stream waiting for window, and what ends the stream after them."""

    __slots__ = ("chunks", "end", "size", "trailers")

    def __init__(self) -> None:
        self.chunks: deque[bytes | memoryview] = deque()
        self.size = 0
        self.end = False
        self.trailers: Headers | None = None


WELL_FORMED_MEMO_ENTRIES = 32


WELL_FORMED_MEMO_BYTES = 8192


"""How many well-formed request header lists (each at most this many bytes of names and values)
an engine remembers, so that a client's usual request headers are checked once."""


RECEIVE_SLICE = 16 * 1024


"""Bytes of input h2 parses at a time. h2 turns all it is given into events before any is
handled, so a 256 KiB read of a rapid-reset flood would be parsed whole (about half a second)
after the reset limit has already closed the connection; libnghttp2 stops where the limit trips."""


class H2Engine:
    """One connection's h2 state, with send queues and greet's checks."""

    def __init__(self, *, client: bool, limits: EngineLimits, events: EngineEvents) -> None:
        self._client = client
        self._limits = limits
        self._events = events
        self._h2 = GreetH2Connection(
            H2Configuration(
                client_side=client,
                header_encoding=None,
                validate_inbound_headers=False,
                validate_outbound_headers=False,
                normalize_inbound_headers=False,
                normalize_outbound_headers=False,
            ),
            limits,
        )
        self._outbound: dict[int, _Outbound] = {}
        self._ready: dict[int, None] = {}  # streams whose queue may move at the next output
        self._closing: dict[int, int] = {}  # stream -> error code: on_stream_closed to come
        self._well_formed_heads: set[tuple[Header, ...]] = set()
        self._raw: list[bytes] = []
        self._open = True
        self._halted = False

    def initiate(self) -> None:
        h2 = self._h2
        h2.initiate_connection()
        delta = self._limits.connection_window_size - h2.local_settings.initial_window_size
        if delta > 0:
            h2.increment_flow_control_window(delta)
        if not self._client:
            self._raw.append(
                settings_frame(
                    {
                        SETTINGS_MAX_CONCURRENT_STREAMS: self._limits.max_concurrent_streams,
                        SETTINGS_MAX_HEADER_LIST_SIZE: self._limits.advertised_header_list_size,
                    }
                )
            )

    # -- input -------------------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        if len(data) <= RECEIVE_SLICE:
            self._receive(data)
            return
        for start in range(0, len(data), RECEIVE_SLICE):
            if self._halted:  # a limit closed the connection: parse none of the rest
                return
            self._receive(data[start : start + RECEIVE_SLICE])

    def _receive(self, data: bytes) -> None:
        try:
            events = self._h2.receive_data(data)
        except ProtocolError as error:
            self._open = False
            code = (
                ErrorCode(int(error.error_code)) if error.error_code else ErrorCode.PROTOCOL_ERROR
            )
            raise EngineFailure(code, str(error), goaway_queued=True) from error
        for event in events:
            if self._halted:
                return
            handle = self._handlers.get(type(event))
            if handle is not None:
                handle(self, event)
            # StreamEnded: the event that ended the stream says so (`stream_ended`) and is handled
            # above. SettingsAcknowledged, PriorityUpdated, UnknownFrameReceived (ignored,
            # RFC 9113 section 4.1), AlternativeServiceAvailable, InformationalResponseReceived:
            # nothing to do.
        if self._closing:
            self._report_pending_closes()

    def _on_request(self, event: RequestReceived) -> None:
        stream_id = event.stream_id
        assert stream_id is not None
        assert event.headers is not None
        headers: Headers = list(event.headers)
        if not self._well_formed(headers):
            self.reset_stream(stream_id, ErrorCode.PROTOCOL_ERROR)
            return
        ended = event.stream_ended is not None
        self._events.on_request(stream_id, headers, ended)
        if ended:
            self._on_remote_end(stream_id)

    def _well_formed(self, headers: Headers) -> bool:
        """`request_problem` is None, remembered for the few header lists a peer repeats."""
        key = tuple(headers)
        if key in self._well_formed_heads:
            return True
        if request_problem(headers) is not None:
            return False
        if sum(len(name) + len(value) for name, value in key) <= WELL_FORMED_MEMO_BYTES:
            if len(self._well_formed_heads) >= WELL_FORMED_MEMO_ENTRIES:
                self._well_formed_heads.clear()
            self._well_formed_heads.add(key)
        return True

    def _on_data(self, event: DataReceived) -> None:
        stream_id = event.stream_id
        assert stream_id is not None
        assert event.data is not None
        data = event.data
        padding = (event.flow_controlled_length or 0) - len(data)
        if padding > 0:
            self._h2.acknowledge_received_data(padding, stream_id)
        ended = event.stream_ended is not None
        self._events.on_data(stream_id, data, ended)
        if ended:
            self._on_remote_end(stream_id)

    def _on_response(self, event: ResponseReceived) -> None:
        assert event.stream_id is not None
        assert event.headers is not None
        ended = event.stream_ended is not None
        self._events.on_response(event.stream_id, list(event.headers), ended)
        if ended:
            self._on_remote_end(event.stream_id)

    def _on_trailers(self, event: TrailersReceived) -> None:
        stream_id = event.stream_id
        assert stream_id is not None
        assert event.headers is not None
        headers: Headers = list(event.headers)
        if trailers_problem(headers) is not None:
            self.reset_stream(stream_id, ErrorCode.PROTOCOL_ERROR)
            return
        self._events.on_trailers(stream_id, headers)
        self._on_remote_end(stream_id)

    def _on_reset(self, event: StreamReset) -> None:
        stream_id = event.stream_id
        assert stream_id is not None
        self._outbound.pop(stream_id, None)
        code = int(event.error_code or 0)
        if event.remote_reset:
            self._events.on_stream_reset(stream_id, code)
        self._closing.setdefault(stream_id, code)

    def _on_window_update(self, event: WindowUpdated) -> None:
        self._window_opened(event.stream_id or 0)
        self._events.on_window_update(event.stream_id or 0)

    def _on_ping(self, event: PingReceived) -> None:
        self._events.on_ping()

    def _on_ping_ack(self, event: PingAckReceived) -> None:
        self._events.on_ping_ack(bytes(event.ping_data or b""))

    def _on_settings(self, event: RemoteSettingsChanged) -> None:
        self._events.on_settings()
        if SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
            self._window_opened(0)
            self._events.on_window_update(0)

    def _on_goaway(self, event: ConnectionTerminated) -> None:
        self._events.on_goaway(
            event.last_stream_id or 0,
            int(event.error_code or 0),
            bytes(event.additional_data or b""),
        )

    _handlers: ClassVar[dict[type[Event], Callable[[H2Engine, Any], None]]] = {
        DataReceived: _on_data,
        RequestReceived: _on_request,
        ResponseReceived: _on_response,
        TrailersReceived: _on_trailers,
        WindowUpdated: _on_window_update,
        StreamReset: _on_reset,
        PingReceived: _on_ping,
        PingAckReceived: _on_ping_ack,
        RemoteSettingsChanged: _on_settings,
        ConnectionTerminated: _on_goaway,
    }

    # -- stream ends: h2's stream state machine says when both sides are done ------------------

    def _done(self, stream_id: int) -> bool:
        """h2 has closed the stream (both sides ended, or reset), or already forgotten it."""
        stream = self._h2.streams.get(stream_id)
        return stream is None or stream.closed

    def _on_remote_end(self, stream_id: int) -> None:
        if self._done(stream_id):
            self._closing.setdefault(stream_id, 0)

    def _ended_local(self, stream_id: int) -> None:
        if self._done(stream_id):
            self._closing.setdefault(stream_id, 0)

    def _report_pending_closes(self) -> None:
        closing = self._closing
        while closing:
            stream_id = next(iter(closing))
            code = closing.pop(stream_id)
            self._outbound.pop(stream_id, None)
            self._events.on_stream_closed(stream_id, code)

    # -- output ------------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        if self._ready:
            self._send_queued()
        out = self._h2.data_to_send()
        if self._raw:
            out = bytes(out) + b"".join(self._raw)
            self._raw.clear()
        if self._closing:
            self._report_pending_closes()
        return out

    def _window_opened(self, stream_id: int) -> None:
        """A WINDOW_UPDATE (0: the connection's, or a new initial window): queues may move."""
        if not self._outbound:
            return
        if stream_id:
            if stream_id in self._outbound:
                self._ready[stream_id] = None
        else:
            self._ready.update(dict.fromkeys(self._outbound))

    def _send_queued(self) -> None:
        """Frame what window allows of the queues that may move (as libnghttp2 does when asked
        for output: until then the bytes count as `queued`, and a sender is held to its bound)."""
        ready = self._ready
        self._ready = {}
        for stream_id in ready:
            self._drain_stream(stream_id)

    def _drain_stream(self, stream_id: int) -> None:
        """Send what window allows of the stream's queue; then its end, once the queue is empty."""
        outbound = self._outbound.get(stream_id)
        if outbound is None:
            return
        h2 = self._h2
        chunks = outbound.chunks
        sent_end = False
        frame_size = h2.max_outbound_frame_size
        try:
            while chunks:
                room = min(h2.local_flow_control_window(stream_id), frame_size)
                if room <= 0:
                    return  # a WINDOW_UPDATE puts the stream back in `_ready`
                # One DATA frame carries as many queued messages as fit (h2's cost is per frame).
                chunk = chunks.popleft()
                if len(chunk) > room:
                    chunks.appendleft(memoryview(chunk)[room:])
                    chunk = chunk[:room]
                elif chunks and len(chunk) < room:
                    parts = [chunk]
                    size = len(chunk)
                    while chunks and size < room:
                        part = chunks.popleft()
                        if len(part) > room - size:
                            chunks.appendleft(memoryview(part)[room - size :])
                            part = part[: room - size]
                        parts.append(part)
                        size += len(part)
                    chunk = b"".join(parts)
                outbound.size -= len(chunk)
                sent_end = not chunks and outbound.end and outbound.trailers is None
                h2.send_data(stream_id, bytes(chunk), end_stream=sent_end)
            del self._outbound[stream_id]
            if outbound.trailers is not None:
                h2.send_headers(stream_id, outbound.trailers, end_stream=True)
            elif outbound.end and not sent_end:
                h2.end_stream(stream_id)
            if outbound.end or outbound.trailers is not None:
                self._ended_local(stream_id)
        except ProtocolError:  # the stream or the connection closed meanwhile
            self._outbound.pop(stream_id, None)

    def send_request(self, headers: Headers, end_stream: bool = False) -> int:
        try:
            stream_id = self._h2.get_next_available_stream_id()
            self._h2.send_headers(stream_id, headers, end_stream=end_stream)
        except ProtocolError as error:
            raise StreamGone(str(error)) from error
        if end_stream:
            self._ended_local(stream_id)
        return stream_id

    def send_headers(self, stream_id: int, headers: Headers, end_stream: bool = False) -> None:
        try:
            self._h2.send_headers(stream_id, headers, end_stream=end_stream)
        except ProtocolError as error:
            raise StreamGone(str(error)) from error
        if end_stream:
            self._ended_local(stream_id)

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        if not self.is_stream_open(stream_id):
            raise StreamGone(f"stream {stream_id} is closed")
        outbound = self._outbound.get(stream_id)
        if outbound is None:
            outbound = self._outbound[stream_id] = _Outbound()
        if data:
            outbound.chunks.append(data)
            outbound.size += len(data)
        outbound.end = outbound.end or end_stream
        self._ready[stream_id] = None  # framed by the next data_to_send

    def send_trailers(self, stream_id: int, headers: Headers) -> None:
        outbound = self._outbound.get(stream_id)
        if outbound is not None:
            outbound.trailers = headers
            self._ready[stream_id] = None
            return
        try:
            self._h2.send_headers(stream_id, headers, end_stream=True)
        except ProtocolError as error:
            raise StreamGone(str(error)) from error
        self._ended_local(stream_id)

    def end_stream(self, stream_id: int) -> None:
        if stream_id in self._outbound:
            self._outbound[stream_id].end = True
            self._ready[stream_id] = None
            return
        try:
            self._h2.end_stream(stream_id)
        except ProtocolError as error:
            raise StreamGone(str(error)) from error
        self._ended_local(stream_id)

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        self._outbound.pop(stream_id, None)
        if self._done(stream_id):
            return  # already closed (and reported, or about to be)
        try:
            self._h2.reset_stream(stream_id, error_code)
        except (ProtocolError, StreamClosedError):
            return
        self._closing.setdefault(stream_id, error_code)

    def acknowledge(self, stream_id: int, size: int) -> None:
        if size and self._open:
            try:
                self._h2.acknowledge_received_data(size, stream_id)
            except ProtocolError:
                return  # the connection is closing

    def queued(self, stream_id: int) -> int:
        outbound = self._outbound.get(stream_id)
        return 0 if outbound is None else outbound.size

    def queued_total(self) -> int:
        return sum(outbound.size for outbound in self._outbound.values())

    def ping(self, payload: bytes) -> None:
        if self._open:
            self._h2.ping(payload)

    def goaway(self, error_code: int, last_stream_id: int, debug: bytes = b"") -> None:
        """Written as a raw frame: h2's own close_connection would stop the calls in flight."""
        if self._open:
            self._raw.append(goaway_frame(last_stream_id, error_code, debug))

    def halt(self) -> None:
        self._halted = True

    def is_stream_open(self, stream_id: int) -> bool:
        stream = self._h2.streams.get(stream_id)
        return stream is not None and not stream.closed

    @property
    def peer_max_concurrent_streams(self) -> int:
        return self._h2.remote_settings.max_concurrent_streams
