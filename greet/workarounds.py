"""Every workaround for a grpclib or betterproto behaviour, in one place.

Each section names the upstream behaviour it covers; each has a test that fails without it
(sections 1-3: tests/test_hostile_input.py and test_limits.py; 4 and 6: tests/test_shutdown.py;
5: see its own section at the end).

1. Strict decoding (`StrictProtoCodec`). Pure-Python betterproto 2.0.0b7 silently accepts a
   truncated message (a length that runs past the end, a varint cut short) and a wrong wire type,
   and raises UnicodeDecodeError/KeyError/TypeError on other garbage, which grpclib answers with
   UNKNOWN. betterproto-rust-codec, when installed, rejects all of them, but with RuntimeError
   (UNKNOWN again). The codec answers INVALID_ARGUMENT in both cases.
2. Receiving (`install_server_workarounds`, `checked_recv_message`). grpclib's `recv_message` reads
   the whole message whatever its length prefix says (no receive size limit), raises
   NotImplementedError on a compressed message and AssertionError on a message cut short by
   END_STREAM (both UNKNOWN), and never yields to the event loop while messages are already
   buffered, so one fast client stream can hold the loop. The replacement reads the 5-byte prefix,
   answers RESOURCE_EXHAUSTED above `max_message_bytes` before reading the body, UNIMPLEMENTED for a
   compressed message (no compression is supported), INVALID_ARGUMENT for a truncated one, and
   yields to the loop every few messages.
3. Unknown method (`MethodsWithFallback`). grpclib answers an unknown path trailers-only without
   `content-type`; grpc-go reads such a response as UNKNOWN. The fallback handler answers through
   grpclib's normal trailers-only path, which carries `content-type: application/grpc+proto`.
4. Graceful shutdown (`ConnectionDrain`). grpclib's `Server.close()` cancels running calls at once,
   keeps no list of its connections, never closes them and never sends GOAWAY. The drain stops
   accepting, sends GOAWAY (last stream id 2^31-1, as grpc-go's GracefulStop does first) on every
   open connection, waits for in-flight calls for up to the grace period, and then closes the
   connections (GOAWAY with the real last stream id) after grpclib has cancelled what is left.
5. Performance, at the end of this module (tests/test_perf_workarounds.py): 5a one socket write
   per event-loop round instead of grpclib's write per HTTP/2 step; 5b betterproto message classes
   built without betterproto's exception-driven oneof bookkeeping; 5c cheaper cleanup of grpclib's
   finished call tasks; 5d a per-connection cache of decoded HPACK header blocks.
6. Client GOAWAY (`install_goaway_tolerance`). grpclib's client drops every call in flight when a
   GOAWAY arrives; this keeps the streams the server accepted and reconnects for new calls.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import betterproto
from grpclib.const import Cardinality, Handler, Status
from grpclib.encoding.proto import ProtoCodec
from grpclib.exceptions import GRPCError
from grpclib.protocol import H2Protocol
from h2.errors import ErrorCodes
from h2.events import ConnectionTerminated
from hyperframe.frame import GoAwayFrame

if TYPE_CHECKING:
    from grpclib.client import Channel
    from grpclib.server import Server, Stream

__all__ = [
    "RECV_YIELD_EVERY",
    "ConnectionDrain",
    "MalformedMessage",
    "MethodsWithFallback",
    "StrictProtoCodec",
    "check_wire_format",
    "checked_recv_message",
    "install_goaway_tolerance",
    "install_server_workarounds",
    "rust_codec_active",
]

log = logging.getLogger("greet.server")

# --- 1. Strict decoding -------------------------------------------------------------------------


class MalformedMessage(ValueError):
    """The bytes are not a valid protobuf encoding of the expected message."""


def rust_codec_active() -> bool:
    """True when betterproto-rust-codec has replaced `Message.parse` (it validates strictly)."""
    return betterproto.Message.parse.__qualname__ != "Message.parse"


WIRE_VARINT, WIRE_FIXED64, WIRE_LEN, WIRE_FIXED32 = 0, 1, 2, 5
FIXED32_TYPES = frozenset({betterproto.TYPE_FLOAT, betterproto.TYPE_FIXED32, "sfixed32"})
FIXED64_TYPES = frozenset({betterproto.TYPE_DOUBLE, betterproto.TYPE_FIXED64, "sfixed64"})
LEN_TYPES = frozenset(
    {betterproto.TYPE_STRING, betterproto.TYPE_BYTES, betterproto.TYPE_MESSAGE, "map"}
)
MAX_NESTING = 100  # protobuf's default recursion limit


@dataclass(frozen=True)
class FieldRule:
    """What one known field may look like on the wire."""

    name: str
    wire_types: frozenset[int]
    is_string: bool
    message_type: type[betterproto.Message] | None


_rules_cache: dict[type[betterproto.Message], dict[int, FieldRule]] = {}


def field_rules(message_type: type[betterproto.Message]) -> dict[int, FieldRule]:
    """Field number -> rule, from betterproto's field metadata (cached per message type)."""
    rules = _rules_cache.get(message_type)
    if rules is not None:
        return rules
    meta = message_type._betterproto  # type: ignore[arg-type]  # betterproto's classproperty
    rules = {}
    for number, name in meta.field_name_by_number.items():
        proto_type = meta.meta_by_field_name[name].proto_type
        nested: type[betterproto.Message] | None = None
        if proto_type in LEN_TYPES:
            wire_types = frozenset({WIRE_LEN})
            if proto_type in (betterproto.TYPE_MESSAGE, "map"):
                cls = meta.cls_by_field.get(name)
                if isinstance(cls, type) and issubclass(cls, betterproto.Message):
                    nested = cls
        elif proto_type in FIXED32_TYPES:
            wire_types = frozenset({WIRE_FIXED32, WIRE_LEN})  # LEN: packed repeated
        elif proto_type in FIXED64_TYPES:
            wire_types = frozenset({WIRE_FIXED64, WIRE_LEN})
        else:
            wire_types = frozenset({WIRE_VARINT, WIRE_LEN})
        rules[number] = FieldRule(
            name=name,
            wire_types=wire_types,
            is_string=proto_type == betterproto.TYPE_STRING,
            message_type=nested,
        )
    _rules_cache[message_type] = rules
    return rules


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise MalformedMessage("truncated message: a varint runs past the end")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise MalformedMessage("a varint is longer than 10 bytes")


def check_wire_format(
    data: bytes,
    message_type: type[betterproto.Message],
    start: int = 0,
    end: int | None = None,
    depth: int = 0,
) -> None:
    """Raise MalformedMessage unless `data[start:end]` is a well-formed `message_type`.

    Checks what pure-Python betterproto does not: every length and varint stays inside the
    message, wire types are valid (groups are not supported) and match the known fields, string
    fields are valid UTF-8, nested messages recursively.
    """
    if depth > MAX_NESTING:
        raise MalformedMessage(f"messages nested deeper than {MAX_NESTING}")
    rules = field_rules(message_type)
    end = len(data) if end is None else end
    pos = start
    while pos < end:
        key, pos = _varint(data, pos, end)
        number = key >> 3
        wire_type = key & 7
        if number == 0:
            raise MalformedMessage("field number 0 is not valid")
        rule = rules.get(number)
        if rule is not None and wire_type not in rule.wire_types:
            raise MalformedMessage(
                f"field {number} ({rule.name}) has wire type {wire_type}, which its type "
                "does not allow"
            )
        if wire_type == WIRE_VARINT:
            _, pos = _varint(data, pos, end)
        elif wire_type == WIRE_LEN:
            length, pos = _varint(data, pos, end)
            field_end = pos + length
            if field_end > end:
                raise MalformedMessage(
                    f"truncated message: field {number} says {length} bytes, {end - pos} are left"
                )
            if rule is not None:
                if rule.is_string:
                    try:
                        data[pos:field_end].decode("utf-8")
                    except UnicodeDecodeError as error:
                        raise MalformedMessage(
                            f"field {number} ({rule.name}) is not valid UTF-8: {error.reason}"
                        ) from None
                elif rule.message_type is not None:
                    check_wire_format(data, rule.message_type, pos, field_end, depth + 1)
            pos = field_end
        elif wire_type == WIRE_FIXED64:
            pos += 8
        elif wire_type == WIRE_FIXED32:
            pos += 4
        else:
            raise MalformedMessage(f"field {number} has unsupported wire type {wire_type}")
        if pos > end:
            raise MalformedMessage(f"truncated message: field {number} runs past the end")


class StrictProtoCodec(ProtoCodec):
    """grpclib's proto codec, but a malformed message is INVALID_ARGUMENT, never UNKNOWN.

    With pure-Python betterproto the bytes are checked by `check_wire_format` first (betterproto
    would accept truncated input silently); betterproto-rust-codec checks them itself, and its
    error is reported the same way. `validate=None` chooses by what is installed.
    """

    def __init__(self, *, validate: bool | None = None) -> None:
        self.validate = not rust_codec_active() if validate is None else validate

    def decode(self, data: bytes, message_type: Any) -> Any:
        try:
            if self.validate:
                check_wire_format(data, message_type)
            return message_type.FromString(data)
        except Exception as error:
            raise GRPCError(
                Status.INVALID_ARGUMENT, f"malformed {message_type.__name__} message: {error}"
            ) from error


# --- 2. Receiving: size limit, compression flag, truncation, fairness ----------------------------

RECV_YIELD_EVERY = 16
"""checked_recv_message yields to the event loop after this many messages of one stream."""

_PREFIX = struct.Struct(">?I")


async def checked_recv_message(stream: Stream[Any, Any], max_message_bytes: int) -> Any:
    """grpclib.server.Stream.recv_message, with the checks grpclib's `recv_message` lacks."""
    h2_stream = stream._stream
    try:
        prefix = await h2_stream.recv_data(5)
        if not prefix:
            return None
        compressed, length = _PREFIX.unpack(prefix)
        if compressed:
            raise GRPCError(
                Status.UNIMPLEMENTED,
                "compressed messages are not supported; send them uncompressed "
                "(grpc-encoding: identity)",
            )
        if length > max_message_bytes:
            raise GRPCError(
                Status.RESOURCE_EXHAUSTED,
                f"request message is {length} bytes; the limit (--max-message-bytes) is "
                f"{max_message_bytes}",
            )
        body = await h2_stream.recv_data(length)
    except AssertionError:
        # grpclib's Buffer.read asserts when END_STREAM comes before the announced bytes.
        raise GRPCError(
            Status.INVALID_ARGUMENT, "truncated gRPC message: the stream ended inside it"
        ) from None
    message = stream._codec.decode(body, stream._recv_type)
    (message,) = await stream._dispatch.recv_message(message)
    stream._messages_received += 1
    connection = h2_stream.connection
    connection.messages_received += 1
    connection.last_message_received = time.monotonic()
    if not stream._messages_received % RECV_YIELD_EVERY:
        await asyncio.sleep(0)  # let other calls run while this stream's messages are buffered
    return message


def with_checked_recv(handler: Handler, max_message_bytes: int) -> Handler:
    """The same method handler, its stream receiving through `checked_recv_message`."""
    func = handler.func

    async def handle(stream: Stream[Any, Any]) -> None:
        # An instance attribute wins over grpclib.server.Stream.recv_message, also for `async for`.
        stream.recv_message = partial(  # type: ignore[method-assign]
            checked_recv_message, stream, max_message_bytes
        )
        await func(stream)

    return handler._replace(func=handle)


# --- 3. Unknown method: UNIMPLEMENTED with content-type ------------------------------------------


async def not_found(stream: Stream[Any, Any]) -> None:
    """Answer an unknown method trailers-only, with content-type (grpclib's own abort has none)."""
    await stream.send_trailing_metadata(
        status=Status.UNIMPLEMENTED, status_message=f"Method not found: {stream._method_name}"
    )


NOT_FOUND_HANDLER = Handler(not_found, Cardinality.UNARY_UNARY, object, object)


class MethodsWithFallback(dict[str, Handler]):
    """grpclib's method mapping; `get` of an unknown path returns the UNIMPLEMENTED handler."""

    def get(self, key: str, default: Any = None) -> Handler:
        return super().get(key) or NOT_FOUND_HANDLER


# --- 4. Graceful shutdown ------------------------------------------------------------------------

MAX_STREAM_ID = 2**31 - 1


class ConnectionDrain:
    """Tracks a grpclib Server's connections and shuts it down the way grpc-go's GracefulStop does.

    Install before `server.start()`: grpclib looks up `_protocol_factory` when it starts listening.
    """

    def __init__(self, server: Server) -> None:
        self.server = server
        self.connections: weakref.WeakSet[H2Protocol] = weakref.WeakSet()
        self._hurry = asyncio.Event()
        make_protocol = server._protocol_factory

        def tracking_factory() -> H2Protocol:
            protocol = make_protocol()
            self.connections.add(protocol)
            return protocol

        server._protocol_factory = tracking_factory  # type: ignore[method-assign]

    def open_connections(self) -> Iterator[H2Protocol]:
        for protocol in list(self.connections):
            connection = getattr(protocol, "connection", None)
            if connection is not None and not connection.is_closing():
                yield protocol

    def in_flight(self) -> set[asyncio.Task[None]]:
        """The request handler tasks still running."""
        return {
            task
            for handler in list(self.server._handlers)
            for task in list(handler._tasks.values())
            if not task.done()
        }

    def stop_accepting(self) -> None:
        listening = self.server._server
        if listening is not None:
            listening.close()

    def send_goaway(self) -> int:
        """GOAWAY(NO_ERROR, last stream 2^31-1) on every open connection: clients stop opening
        streams here, and streams already on their way are still served. Returns how many.

        Written as a raw frame: h2 moves its connection to CLOSED on GOAWAY and would then refuse
        to send the replies of the calls that are still running.
        """
        frame = GoAwayFrame(0, last_stream_id=MAX_STREAM_ID, error_code=0).serialize()
        count = 0
        for protocol in self.open_connections():
            protocol.connection.flush()
            protocol.connection._transport.write(frame)
            count += 1
        return count

    def hurry(self) -> None:
        """End the grace period now (a second stop signal): what is in flight gets cancelled."""
        if not self._hurry.is_set():
            log.info("told again to stop: not waiting for the calls in flight")
            self._hurry.set()

    async def wait_for_calls(self, grace: float) -> set[asyncio.Task[None]]:
        """Wait up to `grace` seconds (or until `hurry()`) for the in-flight calls; return those
        still running."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        hurried = loop.create_task(self._hurry.wait())
        try:
            pending = self.in_flight()
            while pending and not hurried.done():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                await asyncio.wait(
                    {*pending, hurried}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
                pending = self.in_flight()  # also calls that raced the GOAWAY
        finally:
            hurried.cancel()
        return pending

    def close_connections(self) -> None:
        """Final GOAWAY (real last stream id) and close every connection."""
        for protocol in self.open_connections():
            connection = protocol.connection
            try:
                connection._connection.close_connection(error_code=ErrorCodes.NO_ERROR)
                connection.flush()
            except Exception:  # h2 refuses in some states; the socket is closed all the same
                log.debug("no final GOAWAY", exc_info=True)
            connection._transport.close()

    async def shutdown(self, grace: float) -> None:
        """Stop accepting, GOAWAY, drain for up to `grace` seconds, cancel the rest, close."""
        self.stop_accepting()
        goaways = self.send_goaway()
        calls = len(self.in_flight())
        log.info(
            "draining: stopped accepting connections; GOAWAY sent on %d; %d calls in flight "
            "get up to %gs",
            goaways,
            calls,
            grace,
        )
        left = await self.wait_for_calls(grace)
        if left:
            log.info("grace period over: cancelling %d calls", len(left))
        self.server.close()  # cancels whatever is left
        self.close_connections()
        await self.server.wait_closed()


# --- 6. Client: GOAWAY does not kill in-flight calls ----------------------------------------------
# grpclib's client closes the whole connection when a GOAWAY arrives (and h2 moves the connection
# to CLOSED, refusing to send or receive any further frame), so every call in flight fails with
# UNAVAILABLE when a server starts a graceful shutdown. grpc-go and grpcio instead let the streams
# the server accepted (id <= last_stream_id) finish and open a new connection for new calls.
# `install_goaway_tolerance(channel)` does the same for a grpclib Channel.


def tolerate_goaway(protocol: H2Protocol) -> None:
    """Make one client connection treat GOAWAY(NO_ERROR) as "no new streams here" (after
    `connection_made`)."""
    h2_connection = protocol.connection._connection
    processor = protocol.processor
    close_on_goaway: Any = processor.processors[ConnectionTerminated]
    receive_goaway_frame = h2_connection._receive_goaway_frame

    def receive_goaway(frame: GoAwayFrame) -> tuple[list[Any], list[Any]]:
        if frame.error_code != ErrorCodes.NO_ERROR:
            return receive_goaway_frame(frame)
        event = ConnectionTerminated()  # h2's own event, without h2 closing the connection
        event.error_code = ErrorCodes.NO_ERROR
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]

    def on_goaway(event: ConnectionTerminated) -> None:
        if event.error_code != ErrorCodes.NO_ERROR:
            close_on_goaway(event)
            return
        protocol.handler.connection_lost = True  # type: ignore[attr-defined]  # new calls reconnect
        last = event.last_stream_id or 0
        for stream_id, stream in list(processor.streams.items()):
            if stream_id > last:  # never seen by the server: fail it so that it can be retried
                stream.__terminated__("GOAWAY: the server did not accept this stream")
        if not processor.streams:
            processor.close("Received GOAWAY frame with no calls in flight")

    h2_connection._frame_dispatch_table[GoAwayFrame] = receive_goaway
    processor.processors[ConnectionTerminated] = on_goaway


def install_goaway_tolerance(channel: Channel) -> None:
    """Every connection `channel` makes from now on tolerates GOAWAY (see section 6)."""
    make_protocol = channel._protocol_factory

    def tolerant_factory() -> H2Protocol:
        protocol = make_protocol()
        connection_made = protocol.connection_made

        def tolerant_connection_made(transport: asyncio.BaseTransport) -> None:
            connection_made(transport)
            tolerate_goaway(protocol)

        protocol.connection_made = tolerant_connection_made  # type: ignore[method-assign]
        return protocol

    channel._protocol_factory = tolerant_factory  # type: ignore[method-assign]


# --- Installing everything on a grpclib Server ----------------------------------------------------


def install_server_workarounds(server: Server, *, max_message_bytes: int) -> ConnectionDrain:
    """Apply sections 2-4 to a grpclib Server built with `codec=StrictProtoCodec()`.

    Call after the Server is built with all its handlers and before it starts.
    """
    methods: Mapping[str, Handler] = server._mapping
    server._mapping = MethodsWithFallback(
        {path: with_checked_recv(handler, max_message_bytes) for path, handler in methods.items()}
    )
    return ConnectionDrain(server)


# ==================================================================================================
# --- 5. Performance (this section: the performance helper; tests: tests/test_perf_workarounds.py)
# ==================================================================================================
#
# 5a. Write coalescing (`install_write_coalescing`). grpclib writes to the socket transport after
#     every HTTP/2 step: a unary reply alone is three `transport.write` calls (HEADERS, DATA,
#     trailers), plus one per flow-control acknowledgement, and a server stream one per message;
#     each is a send() system call, the largest single cost in a profile of a unary call (about
#     16% of server CPU). The proxy transport collects the writes made while the event loop runs
#     one round of callbacks and sends them with one write at the end of that round (or at once
#     before close/abort), so the order of bytes on the connection is unchanged.

import dataclasses  # noqa: E402  (section 5 keeps its imports with it)
from collections.abc import Iterable  # noqa: E402
from typing import cast  # noqa: E402

__all__ += ["CoalescingTransport", "install_performance_workarounds", "install_write_coalescing"]


class CoalescingTransport:
    """A transport proxy whose writes of one event-loop round go out in one `write`."""

    __slots__ = ("_loop", "_pending", "_scheduled", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._scheduled = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        self._pending.append(bytes(data))
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def writelines(self, chunks: Iterable[bytes | bytearray | memoryview]) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        """Send what was collected (called at the end of the loop round)."""
        self._scheduled = False
        pending = self._pending
        if not pending:
            return
        self._pending = []
        if self._transport.is_closing():
            return
        self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def install_write_coalescing(server: Server) -> None:
    """Give every connection `server` accepts a CoalescingTransport (install before start)."""
    make_protocol = server._protocol_factory

    def coalescing_factory() -> H2Protocol:
        protocol = make_protocol()
        connection_made = protocol.connection_made

        def coalescing_connection_made(transport: asyncio.BaseTransport) -> None:
            real = cast(asyncio.Transport, transport)
            proxy = CoalescingTransport(real, asyncio.get_running_loop())
            connection_made(cast(asyncio.Transport, proxy))

        protocol.connection_made = coalescing_connection_made  # type: ignore[method-assign]
        return protocol

    server._protocol_factory = coalescing_factory  # type: ignore[method-assign]


# 5b. Building messages and reading their fields (`speed_up_messages`). betterproto 2.0.0b7's
#     `Message.__setattr__` calls `hasattr(self, "_group_current")`, and its `__getattribute__`
#     looks that attribute up in a try block on every read, to police oneof groups. While a
#     message is being built (before `__post_init__` sets `_group_current`) both raise and catch
#     AttributeError for every field, and every later read (the Rust codec reads each field on
#     serialization) pays the group check: about half of the server's CPU time in a
#     server-streaming profile. For message classes without oneof groups and without message or
#     map fields (all of greet's) the replacements below produce the same instance state with
#     direct attribute access: the same fields, the same lazy defaults (PLACEHOLDER), the same
#     `_serialized_on_wire`, `_unknown_fields` and `_group_current`.

__all__ += ["speed_up_messages"]


def _fast_getattribute(self: Any, name: str) -> Any:
    value = object.__getattribute__(self, name)
    if value is not betterproto.PLACEHOLDER:
        return value
    value = self._get_field_default(name)
    object.__setattr__(self, name, value)
    return value


def _fast_setattr(self: Any, name: str, value: Any) -> None:
    if name != "_serialized_on_wire":
        object.__getattribute__(self, "__dict__")["_serialized_on_wire"] = True
    object.__setattr__(self, name, value)


def _fast_init_source(names: list[str], optional: set[str]) -> str:
    params = "".join(f", {name}=PLACEHOLDER" for name in names)
    lines = [f"def __init__(self{params}):", "    d = object.__getattribute__(self, '__dict__')"]
    if names:  # betterproto's __setattr__ adds this key first; keep the same key order
        lines.append("    d['_serialized_on_wire'] = True")
    lines += [f"    d[{name!r}] = {name}" for name in names]
    unset = [
        f"({name} is PLACEHOLDER or {name} is None)" if name in optional
        else f"{name} is PLACEHOLDER"
        for name in names
    ]  # fmt: skip
    lines.append(f"    d['_serialized_on_wire'] = not ({' and '.join(unset) or 'True'})")
    lines += ["    d['_unknown_fields'] = b''", "    d['_group_current'] = {}"]
    return "\n".join(lines)


def speeds_up(message_type: type) -> bool:
    """True for betterproto message classes `speed_up_messages` can safely change."""
    if not (isinstance(message_type, type) and issubclass(message_type, betterproto.Message)):
        return False
    cls: Any = message_type  # betterproto's classproperty confuses mypy
    if cls.__post_init__ is not betterproto.Message.__post_init__:
        return False
    meta = cls._betterproto
    if meta.oneof_group_by_field:
        return False
    fields = dataclasses.fields(cls)
    return all(
        field.init
        and field.default is betterproto.PLACEHOLDER
        and meta.meta_by_field_name[field.name].proto_type
        not in (betterproto.TYPE_MESSAGE, betterproto.TYPE_MAP)
        for field in fields
    ) and {field.name for field in fields} == set(meta.meta_by_field_name)


def speed_up_messages(message_types: Iterable[type]) -> list[type]:
    """Give each qualifying betterproto message class the fast __init__, __getattribute__ and
    __setattr__ described above (idempotent, process-wide); returns the classes changed."""
    changed = []
    for message_type in dict.fromkeys(message_types):
        if not speeds_up(message_type) or "__greet_fast__" in vars(message_type):
            continue
        fields = dataclasses.fields(message_type)
        meta = message_type._betterproto  # type: ignore[attr-defined]
        names = [field.name for field in fields]
        optional = {name for name in names if meta.meta_by_field_name[name].optional}
        namespace: dict[str, Any] = {"PLACEHOLDER": betterproto.PLACEHOLDER}
        exec(_fast_init_source(names, optional), namespace)
        fast_init = namespace["__init__"]
        fast_init.__qualname__ = f"{message_type.__qualname__}.__init__"
        message_type.__init__ = fast_init  # type: ignore[misc]
        message_type.__getattribute__ = _fast_getattribute  # type: ignore[method-assign,assignment]
        message_type.__setattr__ = _fast_setattr  # type: ignore[method-assign,assignment]
        message_type.__greet_fast__ = True  # type: ignore[attr-defined]
        changed.append(message_type)
    return changed


# 5c. Finished-call bookkeeping (`install_adaptive_task_gc`). grpclib's server Handler (one per
#     connection) rebuilds its dict of request tasks every 10 calls (`__gc_interval__ = 10`) to
#     drop the finished ones, scanning every call in flight each time: 2.7% of the CPU in a unary
#     profile at 128 calls in flight. Collecting again only after as many new calls as were still
#     running keeps the scan to about two entries per call however many calls are in flight, and
#     keeps at most as many finished tasks as running ones (at least grpclib's 10).

__all__ += ["install_adaptive_task_gc"]

MIN_GC_INTERVAL = 10  # grpclib's own interval


def adapt_task_gc(handler: Any) -> None:
    """Make one grpclib server Handler collect finished tasks at an interval that follows the
    number of calls in flight."""
    collect = handler.__gc_collect__

    def collect_and_adapt() -> None:
        collect()
        handler.__gc_interval__ = max(MIN_GC_INTERVAL, len(handler._tasks))

    handler.__gc_collect__ = collect_and_adapt


def install_adaptive_task_gc(server: Server) -> None:
    """Apply `adapt_task_gc` to the Handler of every connection `server` accepts."""
    make_protocol = server._protocol_factory

    def adapting_factory() -> H2Protocol:
        protocol = make_protocol()
        adapt_task_gc(protocol.handler)
        return protocol

    server._protocol_factory = adapting_factory  # type: ignore[method-assign]


# 5d. Header blocks (`cache_header_blocks`). h2 decodes every request's HPACK header block from
#     scratch (hpack: Huffman, integer decoding, a HeaderTuple per header): about 6% of the CPU of
#     a unary call. A client sends the same block again and again once its headers sit in the
#     HPACK dynamic table (h2load's and grpc clients' blocks differ only in :path, if at all).
#     Decoding depends on the bytes and on the decoder's state, so blocks are cached per
#     connection only while that state is unchanged: any decoder table change (an entry added,
#     a resize) or limit change empties the cache, and a block whose decoding changed the table is
#     not cached. At most 64 blocks per connection are kept.

__all__ += ["cache_header_blocks", "install_header_block_cache"]

MAX_CACHED_BLOCKS = 64


def cache_header_blocks(decoder: Any) -> None:
    """Put a cache in front of one hpack Decoder's `decode` (see above)."""
    table = decoder.header_table
    decode = decoder.decode
    add_entry = table.add
    cache: dict[tuple[bytes, bool], list[Any]] = {}
    generation = 0
    cached_state: tuple[int, int, int, int | None] = (-1, 0, 0, None)

    def add_and_count(name: bytes, value: bytes) -> None:
        nonlocal generation
        generation += 1
        add_entry(name, value)

    def state() -> tuple[int, int, int, int | None]:
        return (
            generation,
            table.maxsize,
            decoder.max_allowed_table_size,
            decoder.max_header_list_size,
        )

    def cached_decode(data: bytes, raw: bool = False) -> Any:
        nonlocal cached_state
        before = state()
        if before != cached_state:
            cache.clear()
            cached_state = before
        key = (bytes(data), raw)
        headers = cache.get(key)
        if headers is not None:
            return list(headers)
        headers = list(decode(data, raw))
        if state() == before:
            if len(cache) >= MAX_CACHED_BLOCKS:
                cache.clear()
            cache[key] = headers
        return list(headers)

    table.add = add_and_count
    decoder.decode = cached_decode


def install_header_block_cache(server: Server) -> None:
    """Apply `cache_header_blocks` to the HPACK decoder of every connection `server` accepts."""
    make_protocol = server._protocol_factory

    def caching_factory() -> H2Protocol:
        protocol = make_protocol()
        connection_made = protocol.connection_made

        def caching_connection_made(transport: asyncio.BaseTransport) -> None:
            connection_made(transport)
            cache_header_blocks(protocol.connection._connection.decoder)

        protocol.connection_made = caching_connection_made  # type: ignore[method-assign]
        return protocol

    server._protocol_factory = caching_factory  # type: ignore[method-assign]


def install_performance_workarounds(server: Server) -> None:
    """Apply section 5 to a grpclib Server (after install_server_workarounds, before start):
    write coalescing, adaptive task bookkeeping and header-block caching on its connections,
    fast message classes for its methods' types."""
    install_write_coalescing(server)
    install_adaptive_task_gc(server)
    install_header_block_cache(server)
    handlers = list(server._mapping.values())
    speed_up_messages(
        [handler.request_type for handler in handlers]
        + [handler.reply_type for handler in handlers]
    )
