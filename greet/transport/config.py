"""Settings of greet's HTTP/2 transport: one frozen dataclass per concern, defaults explained.

The defaults follow grpc-go's where grpc-go has one (keepalive, connection age and idleness, ping
enforcement), and libnghttp2's where the question is an HTTP/2 abuse limit (RST_STREAM rate, header
list size); MAX_CONCURRENT_STREAMS is 100, as libnghttp2 and h2 advertise by default, so that one
connection can hold at most 100 handlers however it behaves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from greet.transport._engine import ENGINE_NAMES, EngineLimits, EngineName, default_engine_name
from greet.transport._wire import ENCODINGS

__all__ = ["ChannelConfig", "ClientKeepalive", "KeepalivePolicy", "TransportConfig"]

MIB = 1 << 20


def check_seconds(name: str, value: float | None, *, zero: bool = False) -> None:
    if value is None:
        return
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")


@dataclass(frozen=True)
class KeepalivePolicy:
    """Server keepalive and the enforcement policy for client pings (grpc-go's keepalive).

    `time`: after this long without reading anything from a client, the server pings it;
    `timeout`: a ping not acknowledged within this closes the connection. `min_time`: a client
    that pings more often than this (without the server sending anything in between) earns a
    strike, and after `max_ping_strikes` gets GOAWAY ENHANCE_YOUR_CALM "too_many_pings", as grpc-go
    and grpcio answer; `permit_without_calls` allows pings while no call is open.
    """

    time: float = 7200.0
    timeout: float = 20.0
    min_time: float = 300.0
    permit_without_calls: bool = False
    max_ping_strikes: int = 2

    def __post_init__(self) -> None:
        check_seconds("keepalive time", self.time)
        check_seconds("keepalive timeout", self.timeout)
        check_seconds("keepalive min time", self.min_time, zero=True)


@dataclass(frozen=True)
class TransportConfig:
    """Everything the transport needs to know, per server (or client)."""

    engine: EngineName = field(default_factory=default_engine_name)
    max_message_bytes: int = 4 * MIB
    max_concurrent_streams: int = 100
    max_header_list_bytes: int = 64 * 1024
    handshake_timeout: float = 20.0
    keepalive: KeepalivePolicy = field(default_factory=KeepalivePolicy)
    max_connection_idle: float | None = None
    max_connection_age: float | None = None
    max_connection_age_grace: float | None = None
    max_resets_per_second: float = 33.0
    reset_burst: int = 1000
    max_settings_per_second: float = 10.0
    settings_burst: int = 100
    stream_send_buffer: int = 64 * 1024
    connection_send_buffer: int = 4 * MIB
    eager_calls: bool = True  # greet.transport._server_call
    compression: str | None = None  # reply encoding (greet.transport._wire), if accepted
    compression_threshold: int = 1024  # smaller replies stay uncompressed

    def __post_init__(self) -> None:
        if self.engine not in ENGINE_NAMES:
            raise ValueError(
                f"HTTP/2 engine is one of {', '.join(ENGINE_NAMES)}, not {self.engine!r}"
            )
        if self.max_message_bytes < 1:
            raise ValueError("max_message_bytes must be at least 1")
        if self.max_concurrent_streams < 1:
            raise ValueError("max_concurrent_streams must be at least 1")
        if not 1024 <= self.max_header_list_bytes <= EngineLimits.hard_header_list_size // 2:
            raise ValueError(
                f"max_header_list_bytes must be 1024 .. {EngineLimits.hard_header_list_size // 2}"
            )
        check_seconds("handshake timeout", self.handshake_timeout)
        check_seconds("max connection idle", self.max_connection_idle)
        check_seconds("max connection age", self.max_connection_age)
        check_seconds("max connection age grace", self.max_connection_age_grace, zero=True)
        if not (math.isfinite(self.max_resets_per_second) and self.max_resets_per_second > 0):
            raise ValueError("max_resets_per_second must be a positive number")
        if self.reset_burst < 1:
            raise ValueError("reset_burst must be at least 1")
        if self.compression not in (None, "identity", *ENCODINGS):
            raise ValueError(f"compression is one of {', '.join(sorted(ENCODINGS))}")

    def engine_limits(self) -> EngineLimits:
        return EngineLimits(
            max_concurrent_streams=self.max_concurrent_streams,
            advertised_header_list_size=self.max_header_list_bytes,
        )


@dataclass(frozen=True)
class ClientKeepalive:
    """Client keepalive (grpc-go's ClientParameters): off unless `time` is set.

    After `time` seconds without reading anything, the client pings; no acknowledgement within
    `timeout` closes the connection and fails its calls with UNAVAILABLE (the server or the path
    to it is gone, which a TCP connection alone may not notice for minutes).
    `permit_without_calls` pings also while no call is open. Keep `time` at or above the server's
    `--keepalive-min-time` (default 300 s) or the server answers GOAWAY "too_many_pings".
    """

    time: float | None = None
    timeout: float = 20.0
    permit_without_calls: bool = False

    def __post_init__(self) -> None:
        check_seconds("keepalive time", self.time)
        check_seconds("keepalive timeout", self.timeout)


@dataclass(frozen=True)
class ChannelConfig:
    """What a client connection (greet.transport._client.Channel) needs to know."""

    engine: EngineName = field(default_factory=default_engine_name)
    handshake_timeout: float = 20.0
    keepalive: ClientKeepalive = field(default_factory=ClientKeepalive)
    max_receive_message_bytes: int = 4 * MIB
    stream_send_buffer: int = 64 * 1024
    connection_send_buffer: int = 4 * MIB
    compression: str | None = None  # request encoding: gzip or deflate (None: none)
    compression_threshold: int = 0  # smaller request messages stay uncompressed

    def __post_init__(self) -> None:
        if self.compression not in (None, "identity", *ENCODINGS):
            raise ValueError(f"compression is one of {', '.join(sorted(ENCODINGS))}")
        if self.engine not in ENGINE_NAMES:
            raise ValueError(
                f"HTTP/2 engine is one of {', '.join(ENGINE_NAMES)}, not {self.engine!r}"
            )
        check_seconds("handshake timeout", self.handshake_timeout)
        if self.max_receive_message_bytes < 1:
            raise ValueError("max_receive_message_bytes must be at least 1")

    def engine_limits(self) -> EngineLimits:
        return EngineLimits()
