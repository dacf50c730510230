"""Settings of greet's HTTP/2 transport: one frozen dataclass per concern, defaults explained.

The server's settings (TransportConfig, KeepalivePolicy) are declared with greet._settings: each
field's `setting(...)` is its default, its check, its `python -m greet.server` flag (and GREET_*
variable) and its --help line at once; greet.server.config nests them as they are. The client's
(ChannelConfig, ClientKeepalive) are the client library's; the client CLI names the fields it
sets (greet.client.cli_flags).

The defaults follow grpc-go's where grpc-go has one (keepalive, connection age and idleness, ping
enforcement), and libnghttp2's where the question is an HTTP/2 abuse limit (RST_STREAM rate, header
list size); MAX_CONCURRENT_STREAMS is 100, as libnghttp2 and h2 advertise by default, so that one
connection can hold at most 100 handlers however it behaves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from greet._setting_kinds import Choice, Integer, Many, Number, Switch, Text
from greet._settings import check_values, computed_setting, setting, settings_group
from greet.transport._engine import ENGINE_NAMES, EngineLimits, EngineName, default_engine_name
from greet.transport._wire import ENCODINGS

__all__ = ["ChannelConfig", "ClientKeepalive", "KeepalivePolicy", "TransportConfig"]

MIB = 1 << 20

SECONDS = Number(0.0)
"""Zero or more seconds."""
POSITIVE_SECONDS = Number(0.0, exclusive=True)
REPLY_ENCODINGS = ("gzip", "deflate", "identity")
"""The reply encodings a server may be told to use: greet.transport._wire's and identity."""

LIMITS = "limits (calls over one get RESOURCE_EXHAUSTED or INVALID_ARGUMENT)"
HTTP2 = "HTTP/2"
CONNECTIONS = "keepalive and connection lifetime"
WEB = "browsers (Connect and gRPC-Web beside gRPC, on the same port)"
"""Sections of the server's --help."""


@dataclass(frozen=True)
class Origin(Text):
    """A web origin, `scheme://host[:port]`, or `*` for any."""

    metavar: str | None = "ORIGIN"

    def problem(self, value: object) -> str | None:
        if not isinstance(value, str):
            return f"must be an origin, not {value!r}"
        if value == "*":
            return None
        scheme, sep, rest = value.partition("://")
        if not sep or scheme not in ("http", "https") or not rest or "/" in rest.rstrip("/"):
            return f"must be an origin such as https://example.com:8443 (or *), not {value!r}"
        return None


@dataclass(frozen=True)
class Origins(Many[str]):
    """Origins: the flag once per origin; the variable a comma-separated list."""

    def convert(self, text: str) -> tuple[str, ...]:
        return tuple(self.item.parse(part.strip()) for part in text.split(",") if part.strip())


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

    time: float = setting(
        7200.0,
        POSITIVE_SECONDS,
        "seconds idle before the server pings the client",
        flag="--keepalive-time",
        section=CONNECTIONS,
    )
    timeout: float = setting(
        20.0,
        POSITIVE_SECONDS,
        "seconds to wait for a ping's answer before closing the connection",
        flag="--keepalive-timeout",
        section=CONNECTIONS,
    )
    min_time: float = setting(
        300.0,
        SECONDS,
        "least seconds between client pings the server accepts",
        flag="--keepalive-min-time",
        section=CONNECTIONS,
    )
    permit_without_calls: bool = setting(
        False,
        Switch(),
        "accept client pings on connections without calls",
        flag="--keepalive-permit-without-calls",
        section=CONNECTIONS,
    )
    max_ping_strikes: int = 2

    def __post_init__(self) -> None:
        check_values(self)


@dataclass(frozen=True)
class TransportConfig:
    """Everything the transport needs to know, per server. The fields without `setting(...)`
    are set in code only."""

    engine: EngineName = computed_setting(
        default_engine_name,
        Choice(ENGINE_NAMES),
        "HTTP/2 implementation: libnghttp2 (ngh2) or pure-Python h2",
        default_text="nghttp2 if the ngh2 package imports, else h2",
        flag="--http2-engine",
        section=HTTP2,
    )
    max_message_bytes: int = setting(
        4 * MIB,
        Integer(1, metavar="BYTES"),
        "largest request message; larger ones get RESOURCE_EXHAUSTED",
        default_text="4 MiB",
        section=LIMITS,
    )
    max_concurrent_streams: int = setting(
        100,
        Integer(1, 2**31 - 1),
        "calls one connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS)",
        section=HTTP2,
    )
    max_header_list_bytes: int = setting(
        64 * 1024,
        Integer(1024, EngineLimits.hard_header_list_size // 2, metavar="BYTES"),
        "largest header list (metadata) of a call (SETTINGS_MAX_HEADER_LIST_SIZE)",
        section=HTTP2,
    )
    handshake_timeout: float = setting(
        20.0,
        POSITIVE_SECONDS,
        "seconds a new connection has for the TLS handshake and the HTTP/2 preface",
        section=CONNECTIONS,
    )
    keepalive: KeepalivePolicy = settings_group(KeepalivePolicy)
    max_connection_idle: float | None = setting(
        None,
        POSITIVE_SECONDS,
        "seconds without calls after which a connection is closed with GOAWAY",
        unset_text="never",
        section=CONNECTIONS,
    )
    max_connection_age: float | None = setting(
        None,
        POSITIVE_SECONDS,
        "seconds after which a connection is closed with GOAWAY",
        unset_text="never",
        section=CONNECTIONS,
    )
    max_connection_age_grace: float | None = setting(
        None,
        POSITIVE_SECONDS,
        "seconds the calls of a connection closed for its age may still take",
        unset_text="no end",
        section=CONNECTIONS,
    )
    max_resets_per_second: float = setting(
        33.0,
        Number(0.0, exclusive=True, metavar="RATE"),
        "streams a client may reset per second, on average, before its connection is closed "
        "(rapid reset)",
        section=HTTP2,
    )
    reset_burst: int = setting(
        1000, Integer(1), "resets allowed at once above --max-resets-per-second", section=HTTP2
    )
    max_settings_per_second: float = 10.0
    settings_burst: int = 100
    stream_send_buffer: int = 64 * 1024
    connection_send_buffer: int = 4 * MIB
    eager_calls: bool = setting(  # greet.transport._server_call
        True,
        Switch(),
        "run each handler in the callback that completed its request, as an asyncio Task only "
        "once it waits (off: a Task per call, for handlers that need asyncio.current_task() "
        "before their first await on Python < 3.12)",
        section=HTTP2,
    )
    compression: str | None = setting(  # greet.transport._wire, for clients accepting it
        None,
        Choice(REPLY_ENCODINGS),
        "compress replies with this encoding",
        unset_text="none",
        section=HTTP2,
    )
    compression_threshold: int = 1024  # smaller replies stay uncompressed
    cors_allow_origin: tuple[str, ...] = setting(  # greet.transport._web
        (),
        Origins(Origin()),
        "an origin (scheme://host[:port], or *) whose browser pages may call the server "
        "(Connect, gRPC-Web); repeat for more, or give a comma-separated list in the variable",
        default_text="none: same-origin only",
        section=WEB,
    )

    def __post_init__(self) -> None:
        check_values(self)

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
