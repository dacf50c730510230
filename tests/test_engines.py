"""Both HTTP/2 engines, sans-I/O, as h11's tests drive h11: bytes in, events out, no sockets.

A client engine and a server engine of the same kind (greet.transport._engine.new_engine) are
joined by moving each one's `data_to_send()` into the other's `receive()`; a recording
`EngineEvents` on each side keeps what the engine reported, in order. The assertions are the
seam's written semantics (greet.transport._engine's docstring), on nghttp2 and h2 alike whatever
GREET_HTTP2_ENGINE says: the connection layer above is written once on the strength of them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import pytest
from hpack import Encoder

from greet.transport._engine import (
    CLIENT_PREFACE,
    ENGINE_NAMES,
    EngineFailure,
    EngineLimits,
    EngineName,
    ErrorCode,
    Header,
    Headers,
    Http2Engine,
    new_engine,
)

pytestmark = pytest.mark.parametrize("name", ENGINE_NAMES)

REQUEST: list[Header] = [
    (b":method", b"POST"),
    (b":scheme", b"http"),
    (b":path", b"/greet_service.GreetService/SayHello"),
    (b":authority", b"in-memory:1"),
    (b"content-type", b"application/grpc"),
    (b"te", b"trailers"),
]
RESPONSE: list[Header] = [(b":status", b"200"), (b"content-type", b"application/grpc")]
TRAILERS: list[Header] = [(b"grpc-status", b"0")]

Event = tuple[object, ...]


def plain(headers: Headers) -> list[Header]:
    return [(bytes(name), bytes(value)) for name, value in headers]


@dataclass
class Recorder:
    """An EngineEvents that keeps every call as a tuple: ("request", stream_id, headers, end)."""

    events: list[Event] = field(default_factory=list)

    def of(self, kind: str) -> list[Event]:
        return [event for event in self.events if event[0] == kind]

    def body(self, stream_id: int) -> bytes:
        return b"".join(e[2] for e in self.of("data") if e[1] == stream_id)  # type: ignore[misc]

    def on_request(self, stream_id: int, headers: Headers, end_stream: bool) -> None:
        self.events.append(("request", stream_id, plain(headers), end_stream))

    def on_response(self, stream_id: int, headers: Headers, end_stream: bool) -> None:
        self.events.append(("response", stream_id, plain(headers), end_stream))

    def on_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        self.events.append(("data", stream_id, bytes(data), end_stream))

    def on_trailers(self, stream_id: int, headers: Headers) -> None:
        self.events.append(("trailers", stream_id, plain(headers)))

    def on_stream_reset(self, stream_id: int, error_code: int) -> None:
        self.events.append(("reset", stream_id, error_code))

    def on_stream_closed(self, stream_id: int, error_code: int) -> None:
        self.events.append(("closed", stream_id, error_code))

    def on_window_update(self, stream_id: int) -> None:
        self.events.append(("window", stream_id))

    def on_ping(self) -> None:
        self.events.append(("ping",))

    def on_ping_ack(self, payload: bytes) -> None:
        self.events.append(("ping_ack", bytes(payload)))

    def on_settings(self) -> None:
        self.events.append(("settings",))

    def on_goaway(self, last_stream_id: int, error_code: int, debug: bytes) -> None:
        self.events.append(("goaway", last_stream_id, error_code, bytes(debug)))

    def on_connection_closed(self, error_code: int) -> None:
        self.events.append(("connection_closed", error_code))


class Pair:
    """A client engine and a server engine, joined by `shuttle`."""

    def __init__(
        self,
        name: EngineName,
        *,
        client_limits: EngineLimits | None = None,
        server_limits: EngineLimits | None = None,
    ) -> None:
        self.client_events = Recorder()
        self.server_events = Recorder()
        self.client: Http2Engine = new_engine(
            name, client=True, limits=client_limits or EngineLimits(), events=self.client_events
        )
        self.server: Http2Engine = new_engine(
            name, client=False, limits=server_limits or EngineLimits(), events=self.server_events
        )
        self.client.initiate()
        self.server.initiate()

    def shuttle(self) -> None:
        """Move bytes both ways until neither engine has anything more to send."""
        for _ in range(50):
            to_server = self.client.data_to_send()
            to_client = self.server.data_to_send()
            if not to_server and not to_client:
                return
            if to_server:
                self.server.receive(to_server)
            if to_client:
                self.client.receive(to_client)
        raise AssertionError("the engines are still talking after 50 rounds")

    def handshake(self) -> Pair:
        self.shuttle()
        return self

    def request(self, end_stream: bool = False) -> int:
        stream_id = self.client.send_request(REQUEST, end_stream=end_stream)
        self.shuttle()
        return stream_id


RST_STREAM, GOAWAY = 0x3, 0x7


def raw_frame(frame_type: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + struct.pack(">BBI", frame_type, flags, stream_id)
        + (payload)
    )


def headers_frame(stream_id: int, block: bytes, *, end_stream: bool) -> bytes:
    return raw_frame(0x1, 0x4 | (0x1 if end_stream else 0), stream_id, block)  # END_HEADERS


def frames(data: bytes) -> list[tuple[int, int, bytes]]:
    """(type, stream id, payload) of each frame in `data`."""
    out = []
    while data:
        length = int.from_bytes(data[:3], "big")
        kind, stream_id = data[3], int.from_bytes(data[5:9], "big") & 0x7FFFFFFF
        out.append((kind, stream_id, data[9 : 9 + length]))
        data = data[9 + length :]
    return out


def test_preface_and_settings_handshake(name: EngineName) -> None:
    pair = Pair(name, server_limits=EngineLimits(max_concurrent_streams=7))
    first = pair.client.data_to_send()
    assert first.startswith(CLIENT_PREFACE)
    pair.server.receive(first)
    pair.shuttle()
    assert pair.client_events.of("settings")
    assert pair.server_events.of("settings")
    assert pair.client.peer_max_concurrent_streams == 7  # greet's own SETTINGS frame
    assert not pair.client_events.of("goaway")
    assert not pair.server_events.of("goaway")


def test_request_headers_reach_on_request(name: EngineName) -> None:
    pair = Pair(name).handshake()
    stream_id = pair.request()
    assert stream_id == 1
    assert pair.server_events.of("request") == [("request", 1, REQUEST, False)]
    assert pair.server.is_stream_open(1)


def test_data_is_not_acknowledged_until_the_connection_says(name: EngineName) -> None:
    window = 1000
    pair = Pair(name, server_limits=EngineLimits(initial_window_size=window)).handshake()
    stream_id = pair.request()
    pair.client.send_data(stream_id, b"x" * 2500)
    pair.shuttle()
    assert pair.server_events.body(stream_id) == b"x" * window
    assert pair.client.queued(stream_id) == 1500
    pair.shuttle()  # nothing was acknowledged: nothing moves
    assert pair.server_events.body(stream_id) == b"x" * window
    pair.server.acknowledge(stream_id, window)
    pair.shuttle()
    assert pair.server_events.body(stream_id) == b"x" * 2 * window
    pair.server.acknowledge(stream_id, window)
    pair.shuttle()
    assert pair.server_events.body(stream_id) == b"x" * 2500
    assert pair.client.queued(stream_id) == 0


def test_trailers_wait_for_the_queued_body(name: EngineName) -> None:
    window = 1000
    pair = Pair(name, client_limits=EngineLimits(initial_window_size=window)).handshake()
    stream_id = pair.request(end_stream=True)
    pair.server.send_headers(stream_id, RESPONSE)
    pair.server.send_data(stream_id, b"y" * 1500)
    pair.server.send_trailers(stream_id, TRAILERS)
    assert pair.server.queued(stream_id) > 0
    pair.shuttle()
    assert pair.client_events.of("response") == [("response", stream_id, RESPONSE, False)]
    assert pair.client_events.body(stream_id) == b"y" * window
    assert pair.client_events.of("trailers") == []  # not ahead of the body
    pair.client.acknowledge(stream_id, window)
    pair.shuttle()
    assert pair.client_events.body(stream_id) == b"y" * 1500
    kinds = [e[0] for e in pair.client_events.events if len(e) > 1 and e[1] == stream_id]
    assert kinds[-2:] == ["trailers", "closed"]
    assert pair.client_events.of("trailers") == [("trailers", stream_id, TRAILERS)]


def exchange(pair: Pair) -> int:
    """A whole unary call: request with body, response, body, trailers."""
    stream_id = pair.client.send_request(REQUEST)
    pair.client.send_data(stream_id, b"\0\0\0\0\0", end_stream=True)
    pair.shuttle()
    pair.server.send_headers(stream_id, RESPONSE)
    pair.server.send_data(stream_id, b"\0\0\0\0\0")
    pair.server.send_trailers(stream_id, TRAILERS)
    pair.shuttle()
    return stream_id


def test_stream_closed_is_reported_once_per_stream(name: EngineName) -> None:
    pair = Pair(name).handshake()
    finished = [exchange(pair) for _ in range(3)]
    reset = pair.request()
    pair.client.reset_stream(reset, ErrorCode.CANCEL)
    pair.shuttle()
    for side in (pair.client_events, pair.server_events):
        closed = side.of("closed")
        assert sorted(e[1] for e in closed) == [*finished, reset]  # type: ignore[type-var]
        assert {e[1]: e[2] for e in closed}[finished[0]] == 0
    for stream_id in (*finished, reset):
        assert not pair.client.is_stream_open(stream_id)
        assert not pair.server.is_stream_open(stream_id)


def test_a_peer_s_rst_stream_is_reported(name: EngineName) -> None:
    pair = Pair(name).handshake()
    stream_id = pair.request()
    pair.client.reset_stream(stream_id, ErrorCode.CANCEL)
    pair.shuttle()
    assert pair.server_events.of("reset") == [("reset", stream_id, ErrorCode.CANCEL)]
    assert pair.server_events.of("closed") == [("closed", stream_id, ErrorCode.CANCEL)]
    assert pair.client_events.of("reset") == []  # our own reset is not the peer's
    pair.server.reset_stream(pair.request(), ErrorCode.REFUSED_STREAM)
    pair.shuttle()
    assert pair.client_events.of("reset") == [("reset", 3, ErrorCode.REFUSED_STREAM)]


@pytest.mark.parametrize(
    "bad",
    [
        [*REQUEST, (b"X-Upper", b"case")],  # field names are lowercase (RFC 9113 8.2.1)
        [h for h in REQUEST if h[0] != b":path"],  # a required pseudo-header missing (8.3.1)
        [*REQUEST, (b"connection", b"keep-alive")],  # connection-specific (8.2.2)
        [*REQUEST, (b"x-bad", b"line\nbreak")],  # a field value with a line break (8.2.1)
    ],
    ids=["uppercase-name", "no-path", "connection-header", "newline-in-value"],
)
def test_a_malformed_request_resets_its_stream_not_the_connection(
    name: EngineName, bad: list[Header]
) -> None:
    # Written with hpack, not the client engine: libnghttp2's client lowercases names itself.
    pair = Pair(name).handshake()
    encoder = Encoder()
    pair.server.receive(headers_frame(1, encoder.encode(bad), end_stream=True))
    answer = frames(pair.server.data_to_send())
    assert pair.server_events.of("request") == []
    assert (RST_STREAM, 1, struct.pack(">I", ErrorCode.PROTOCOL_ERROR)) in answer
    assert GOAWAY not in [kind for kind, _, _ in answer]
    pair.server.receive(headers_frame(3, encoder.encode(REQUEST), end_stream=True))
    assert pair.server_events.of("request") == [("request", 3, REQUEST, True)]  # lives on


def test_garbage_instead_of_the_preface_fails_the_connection(name: EngineName) -> None:
    pair = Pair(name)
    with pytest.raises(EngineFailure) as caught:
        pair.server.receive(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert caught.value.code is ErrorCode.PROTOCOL_ERROR


@pytest.mark.parametrize(
    ("garbage", "code"),
    [
        (raw_frame(0x0, 0x0, 0, b"data on stream 0"), ErrorCode.PROTOCOL_ERROR),  # RFC 9113 6.1
        (raw_frame(0x4, 0x0, 0, b"12345"), ErrorCode.FRAME_SIZE_ERROR),  # not 6n bytes (6.5)
        (raw_frame(0x6, 0x0, 0, b"short"), ErrorCode.FRAME_SIZE_ERROR),  # not 8 bytes (6.7)
    ],
    ids=["data-on-stream-0", "settings-length", "ping-length"],
)
def test_a_connection_error_after_the_handshake_ends_the_connection(
    name: EngineName, garbage: bytes, code: ErrorCode
) -> None:
    """h2 raises EngineFailure; libnghttp2 answers these itself and reports on_connection_closed
    (the seam allows both, greet.transport._engine): either way a GOAWAY with the code is
    queued, and the connection writes it and closes."""
    pair = Pair(name).handshake()
    failures: list[EngineFailure] = []
    try:
        pair.server.receive(garbage)
    except EngineFailure as failure:
        failures.append(failure)
    output = pair.server.data_to_send()  # libnghttp2 reports the end as it writes its GOAWAY
    if failures:
        assert [(f.code, f.goaway_queued) for f in failures] == [(code, True)]
    else:
        assert pair.server_events.of("connection_closed") == [("connection_closed", code)]
    goaways = [payload for kind, _, payload in frames(output) if kind == GOAWAY]
    assert [struct.unpack(">II", goaway[:8])[1] for goaway in goaways] == [code]


def test_goaway_is_reported(name: EngineName) -> None:
    pair = Pair(name).handshake()
    stream_id = pair.request()
    pair.server.goaway(ErrorCode.NO_ERROR, 2**31 - 1, b"draining")  # a drain's first GOAWAY
    pair.shuttle()
    pair.server.goaway(ErrorCode.NO_ERROR, stream_id)
    pair.shuttle()
    goaways = pair.client_events.of("goaway")
    assert goaways[0] == ("goaway", 2**31 - 1, 0, b"draining")
    assert goaways[-1][:3] == ("goaway", stream_id, 0)
    pair.client.goaway(ErrorCode.ENHANCE_YOUR_CALM, 0, b"calm")
    pair.shuttle()
    assert pair.server_events.of("goaway")[-1] == (
        "goaway",
        0,
        ErrorCode.ENHANCE_YOUR_CALM,
        b"calm",
    )


def test_ping_is_acknowledged(name: EngineName) -> None:
    pair = Pair(name).handshake()
    pair.client.ping(b"greet-01")
    pair.shuttle()
    assert pair.server_events.of("ping") == [("ping",)]
    assert pair.client_events.of("ping_ack") == [("ping_ack", b"greet-01")]
    assert pair.server_events.of("ping_ack") == []
