"""The nghttp2 engine: libnghttp2 through ngh2 (a Cython binding), behind `Http2Engine`.

libnghttp2 validates request headers itself (a malformed request is reset with PROTOCOL_ERROR
and never reported), ignores unknown frame types, queues trailers behind the body, and bounds
CONTINUATION frames, header lists, SETTINGS entries and queued SETTINGS/PING ACKs. What this
adapter adds: manual flow control (received DATA is acknowledged only when the connection says
the application took it), MAX_CONCURRENT_STREAMS advertised in greet's own SETTINGS frame (see
greet.transport._engine) so that going over it costs one stream, not the connection, and one
translation of ngh2's event objects into `EngineEvents` calls. libnghttp2's own RST_STREAM rate
limit is set out of reach: the connection applies greet's (`--max-resets-per-second`) on both
engines alike, and answers with GOAWAY ENHANCE_YOUR_CALM.
"""

from __future__ import annotations

from typing import Any

import ngh2

from greet.transport._engine import (
    MAX_STREAM_ID,
    SETTINGS_MAX_CONCURRENT_STREAMS,
    EngineEvents,
    EngineFailure,
    EngineLimits,
    ErrorCode,
    Headers,
    SettingsAckFilter,
    StreamGone,
    goaway_frame,
    settings_frame,
)

__all__ = ["NgHttp2Engine"]

UNLIMITED_RATE = (2**62, 2**62)  # token bucket (burst, rate) that never runs dry
RECEIVE_SLICE = 16384
"""Input is handed to libnghttp2 at most this much at a time, and the events of each slice are
handled before the next: greet's own flood limits (PING strikes, the SETTINGS bucket) then act
before libnghttp2's backstop (`max_outbound_ack`, at twice greet's limit) trips inside one read."""

DataReceived = ngh2.DataReceived
RequestReceived = ngh2.RequestReceived
ResponseReceived = ngh2.ResponseReceived
TrailersReceived = ngh2.TrailersReceived
StreamReset = ngh2.StreamReset
StreamClosed = ngh2.StreamClosed
WindowUpdated = ngh2.WindowUpdated
PingReceived = ngh2.PingReceived
PingAcknowledged = ngh2.PingAcknowledged
SettingsReceived = ngh2.SettingsReceived
GoAwayReceived = ngh2.GoAwayReceived
ConnectionClosed = ngh2.ConnectionClosed


class NgHttp2Engine:
    """One connection's libnghttp2 session."""

    __slots__ = (
        "_client",
        "_conn",
        "_events",
        "_filter",
        "_halted",
        "_limits",
        "_open",
        "_peer_max_streams",
        "_raw",
    )

    def __init__(self, *, client: bool, limits: EngineLimits, events: EngineEvents) -> None:
        self._client = client
        self._limits = limits
        self._events = events
        config = ngh2.Configuration(
            auto_window_update=False,
            max_inbound_header_list_size=limits.hard_header_list_size,
            max_inbound_header_count=limits.hard_header_count,
            max_continuations=limits.max_continuations,
            max_outbound_ack=2 * limits.max_outbound_acks,
            stream_reset_rate_limit=UNLIMITED_RATE,
        )
        self._conn = ngh2.Connection(ngh2.Role.CLIENT if client else ngh2.Role.SERVER, config)
        self._filter: SettingsAckFilter | None = None
        self._raw = b""  # greet's own frames, sent after the engine's pending output
        self._peer_max_streams = MAX_STREAM_ID
        self._open = True
        self._halted = False

    def initiate(self) -> None:
        limits = self._limits
        settings = {
            ngh2.Setting.INITIAL_WINDOW_SIZE: limits.initial_window_size,
            ngh2.Setting.MAX_FRAME_SIZE: limits.max_frame_size,
            ngh2.Setting.MAX_HEADER_LIST_SIZE: limits.advertised_header_list_size,
        }
        if self._client:
            settings[ngh2.Setting.ENABLE_PUSH] = 0
        self._conn.initiate_connection(settings)
        self._conn.set_local_window_size(limits.connection_window_size)
        if not self._client:
            self._raw = settings_frame(
                {SETTINGS_MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams}
            )
            self._filter = SettingsAckFilter(skip_acks=1, server=True)

    # -- input -------------------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        ack_filter = self._filter
        if ack_filter is not None:
            data = ack_filter(data)
            if ack_filter.done:
                self._filter = None
        if len(data) <= RECEIVE_SLICE:
            self._receive(data)
            return
        view = memoryview(data)
        for start in range(0, len(data), RECEIVE_SLICE):
            self._receive(view[start : start + RECEIVE_SLICE])
            if self._halted:
                return

    def _receive(self, data: bytes | memoryview) -> None:
        try:
            self._conn.receive_data(data)
        except ngh2.DenialOfServiceError as error:
            self._open = False
            raise EngineFailure(ErrorCode.ENHANCE_YOUR_CALM, str(error)) from error
        except ngh2.ConnectionStateError as error:
            # libnghttp2 already ended the connection (its GOAWAY is queued) on earlier input
            raise EngineFailure(ErrorCode.PROTOCOL_ERROR, str(error), goaway_queued=True) from error
        except ngh2.NGH2Error as error:
            self._open = False
            raise EngineFailure(ErrorCode.PROTOCOL_ERROR, str(error)) from error
        self._dispatch()

    def _dispatch(self) -> None:
        events = self._events
        pending: list[Any] = self._conn.events()  # narrowed by `type(event) is` below
        for event in pending:
            if self._halted:
                break
            kind = type(event)
            if kind is DataReceived:
                events.on_data(event.stream_id, event.data, event.end_stream)
            elif kind is RequestReceived:
                events.on_request(event.stream_id, event.headers, event.end_stream)
            elif kind is StreamClosed:
                events.on_stream_closed(event.stream_id, event.error_code)
            elif kind is ResponseReceived:
                events.on_response(event.stream_id, event.headers, event.end_stream)
            elif kind is TrailersReceived:
                events.on_trailers(event.stream_id, event.headers)
            elif kind is WindowUpdated:
                events.on_window_update(event.stream_id)
            elif kind is StreamReset:
                events.on_stream_reset(event.stream_id, event.error_code)
            elif kind is PingReceived:
                events.on_ping()
            elif kind is PingAcknowledged:
                events.on_ping_ack(event.opaque_data)
            elif kind is SettingsReceived:
                self._peer_max_streams = self._conn.remote_settings.get(
                    ngh2.Setting.MAX_CONCURRENT_STREAMS, MAX_STREAM_ID
                )
                events.on_settings()
                events.on_window_update(0)  # INITIAL_WINDOW_SIZE may have grown every window
            elif kind is GoAwayReceived:
                events.on_goaway(event.last_stream_id, event.error_code, event.debug_data)
            elif kind is ConnectionClosed:
                events.on_connection_closed(event.error_code)
            # the rest (SETTINGS ACKs, priorities, ALTSVC, ORIGIN, 1xx) needs nothing from us

    # -- output ------------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        if not self._open:
            return b""
        try:
            out = self._conn.data_to_send()
        except ngh2.NGH2Error:
            self._open = False
            return b""
        self._dispatch()  # serializing can close streams (StreamClosed) or the connection
        if self._raw:
            out += self._raw
            self._raw = b""
        return out

    def send_request(self, headers: Headers, end_stream: bool = False) -> int:
        try:
            return self._conn.send_request(headers, end_stream=end_stream)
        except ngh2.NGH2Error as error:
            raise StreamGone(str(error)) from error

    def send_headers(self, stream_id: int, headers: Headers, end_stream: bool = False) -> None:
        try:
            self._conn.send_response(stream_id, headers, end_stream=end_stream)
        except ngh2.NGH2Error as error:
            raise StreamGone(str(error)) from error

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        try:
            self._conn.send_data(stream_id, data, end_stream=end_stream)
        except ngh2.NGH2Error as error:
            raise StreamGone(str(error)) from error

    def send_trailers(self, stream_id: int, headers: Headers) -> None:
        try:
            self._conn.send_trailers(stream_id, headers)
        except ngh2.NGH2Error as error:
            raise StreamGone(str(error)) from error

    def end_stream(self, stream_id: int) -> None:
        try:
            self._conn.end_stream(stream_id)
        except ngh2.NGH2Error as error:
            raise StreamGone(str(error)) from error

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        if self._open:
            try:
                self._conn.reset_stream(stream_id, error_code)
            except ngh2.NGH2Error:
                return  # already closed: nothing to reset

    def acknowledge(self, stream_id: int, size: int) -> None:
        if size and self._open:
            try:
                self._conn.acknowledge_received_data(size, stream_id)
            except (ngh2.NGH2Error, ValueError):
                return  # the connection failed meanwhile; nothing left to acknowledge

    def queued(self, stream_id: int) -> int:
        try:
            return self._conn.queued_body_size(stream_id)
        except ngh2.NGH2Error:
            return 0

    def queued_total(self) -> int:
        try:
            return self._conn.queued_body_size()
        except ngh2.NGH2Error:
            return 0

    def ping(self, payload: bytes) -> None:
        if self._open:
            self._conn.ping(payload)

    def goaway(self, error_code: int, last_stream_id: int, debug: bytes = b"") -> None:
        if not self._open:
            return
        if last_stream_id >= MAX_STREAM_ID and error_code == 0:
            # The first GOAWAY of a graceful drain, written by greet (libnghttp2's shutdown
            # notice carries no debug data, and its send_goaway ends the session at once):
            # libnghttp2 goes on accepting streams until the final GOAWAY.
            self._raw += goaway_frame(MAX_STREAM_ID, 0, debug)
            return
        try:
            self._conn.send_goaway(error_code, last_stream_id=last_stream_id, debug_data=debug)
        except ngh2.NGH2Error:
            return  # a GOAWAY is on its way already

    def halt(self) -> None:
        self._halted = True

    def is_stream_open(self, stream_id: int) -> bool:
        try:
            self._conn.stream_remote_window_size(stream_id)
        except ngh2.NGH2Error:
            return False
        return True

    @property
    def peer_max_concurrent_streams(self) -> int:
        return self._peer_max_streams
