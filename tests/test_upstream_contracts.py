"""Contract tests: every private upstream name greet still relies on, checked where it is used.

greet.transport subclasses grpclib's Server, Stream and Channel and h2's H2Connection, and reads
a few private names of grpclib and betterproto (greet._codec's are listed in its docstring).
grpclib (==0.4.9) and betterproto (==2.0.0b7) are pinned exactly and h2 is capped below 5; when
an upgrade moves one of these names, the test named after it fails here, loudly, instead of a
subclass silently falling back to upstream behaviour.
"""

# ruff: noqa: RUF009  (betterproto's *_field() calls declare dataclass fields, as in generated/)
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import betterproto
import grpclib.client
import grpclib.events
import grpclib.metadata
import grpclib.server
import pytest
from grpclib.const import Cardinality, Status
from grpclib.encoding.proto import ProtoStatusDetailsCodec
from grpclib.exceptions import GRPCError
from h2.config import H2Configuration
from h2.events import ConnectionTerminated, RequestReceived
from h2.exceptions import ProtocolError
from hpack import Encoder
from hyperframe.frame import ContinuationFrame, GoAwayFrame, HeadersFrame, SettingsFrame

from greet import _codec
from greet._settings import known_flags
from greet.service import GreetService
from greet.transport import Channel, ClientStream, ServerCall, TransportServer
from greet.transport._engine import EngineLimits
from greet.transport._engines.h2 import GreetH2Connection, HeaderBlockBuffer
from greet_service import HelloRequest, HelloResponse, NamesList

# -- grpclib -----------------------------------------------------------------------------------


def public_methods(cls: type) -> set[str]:
    return {
        name
        for name, value in vars(cls).items()
        if callable(value) and (not name.startswith("_") or name in ("__aenter__", "__aexit__"))
    }


def test_server_call_overrides_every_method_of_grpclib_server_stream() -> None:
    """A method grpclib adds to its server Stream would reach grpclib's own HTTP/2 stream
    (which ServerCall does not have): ServerCall must override each of them."""
    upstream = public_methods(grpclib.server.Stream)
    assert upstream == {
        "recv_message",
        "send_initial_metadata",
        "send_message",
        "send_trailing_metadata",
        "cancel",
        "__aenter__",
        "__aexit__",
    }
    assert upstream <= public_methods(ServerCall)


def test_server_stream_state_names_are_grpclib_s() -> None:
    """ServerCall sets grpclib.server.Stream's private state (its class-level defaults)."""
    for name in (
        "_send_initial_metadata_done",
        "_send_message_done",
        "_send_trailing_metadata_done",
        "_cancel_done",
        "_messages_sent",
        "_messages_received",
    ):
        assert hasattr(grpclib.server.Stream, name), name
    init = inspect.signature(grpclib.server.Stream.__init__).parameters
    for name in ("codec", "status_details_codec", "dispatch", "deadline", "user_agent"):
        assert name in init, name


def test_client_stream_overrides_every_method_of_grpclib_client_stream() -> None:
    upstream = public_methods(grpclib.client.Stream)
    assert upstream == {
        "send_request",
        "send_message",
        "end",
        "recv_initial_metadata",
        "recv_message",
        "recv_trailing_metadata",
        "cancel",
        "__aenter__",
        "__aexit__",
    }
    assert upstream <= public_methods(ClientStream)


async def test_client_stream_uses_grpclib_s_header_checks() -> None:
    """ClientStream inherits grpclib's response checks (private methods) and its state."""
    channel = Channel("127.0.0.1", 1)
    stream = channel.request(
        "/greet_service.GreetService/SayHello", Cardinality.UNARY_UNARY, HelloRequest, HelloResponse
    )
    for name in (
        "_send_request_done",
        "_end_done",
        "_recv_initial_metadata_done",
        "_recv_trailing_metadata_done",
        "_trailers_only",
        "_method_name",
        "_metadata",
        "_deadline",
        "_dispatch",
        "_codec",
        "_send_type",
        "_recv_type",
        "_cardinality",
    ):
        assert hasattr(stream, name), name
    stream._raise_for_status({":status": "200"})
    with pytest.raises(GRPCError) as raised:
        stream._raise_for_status({":status": "503"})
    assert raised.value.status is Status.UNAVAILABLE
    stream._raise_for_content_type({"content-type": "application/grpc"})
    status, message, details = stream._process_grpc_status(
        {"grpc-status": "3", "grpc-message": "bad%20name"}
    )
    assert (status, message, details) == (Status.INVALID_ARGUMENT, "bad name", None)
    with pytest.raises(GRPCError):
        stream._raise_for_grpc_status(status, message, details)
    channel.close()


def test_grpclib_metadata_names() -> None:
    assert grpclib.metadata._STATUS_DETAILS_KEY == "grpc-status-details-bin"
    assert grpclib.metadata._Metadata is not None
    assert grpclib.metadata._MetadataLike is not None


async def test_dispatch_objects_are_where_listen_looks() -> None:
    """grpclib.events.listen(target, ...) uses `target.__dispatch__`; greet's Server and Channel
    pass theirs to their calls, so listeners see greet's calls."""
    server = TransportServer([GreetService()])
    assert isinstance(server.__dispatch__, grpclib.events._DispatchServerEvents)
    assert server.dispatch is server.__dispatch__
    channel = Channel("127.0.0.1", 1)
    assert isinstance(channel.__dispatch__, grpclib.events._DispatchChannelEvents)
    grpclib.events.listen(server, grpclib.events.RecvRequest, on_request)
    channel.close()


async def on_request(event: grpclib.events.RecvRequest) -> None:
    pass


async def test_server_base_accepts_the_codecs() -> None:
    server = TransportServer([GreetService()], status_details_codec=ProtoStatusDetailsCodec())
    assert server.status_details_codec is not None
    assert set(server.methods) == set(GreetService().__mapping__())


def test_grpclib_private_typing_names() -> None:
    import grpclib._typing as typing_names

    for name in ("IServable", "ICheckable", "IServerMethodFunc"):
        assert hasattr(typing_names, name), name


# -- h2 ----------------------------------------------------------------------------------------


def h2_server() -> GreetH2Connection:
    connection = GreetH2Connection(
        H2Configuration(client_side=False, header_encoding=None), EngineLimits()
    )
    connection.initiate_connection()
    connection.data_to_send()
    return connection


def test_h2_goaway_override_keeps_streams_usable() -> None:
    """h2 routes GOAWAY frames to `_receive_goaway_frame` (overridden): the event comes, and the
    connection can still answer the streams in flight."""
    from h2.connection import H2Connection

    assert "_receive_goaway_frame" in vars(H2Connection)
    client = GreetH2Connection(
        H2Configuration(client_side=True, header_encoding=None), EngineLimits()
    )
    client.initiate_connection()
    stream_id = client.get_next_available_stream_id()
    client.send_headers(stream_id, [(b":method", b"POST"), (b":scheme", b"http"),
                                    (b":path", b"/x"), (b":authority", b"a")])  # fmt: skip
    events = client.receive_data(GoAwayFrame(0, last_stream_id=2**31 - 1).serialize())
    assert any(isinstance(event, ConnectionTerminated) for event in events)
    client.send_data(stream_id, b"still open", end_stream=True)  # would raise if CLOSED


def test_h2_starts_with_greet_s_settings() -> None:
    """h2 enforces `local_settings` from the first byte: MAX_CONCURRENT_STREAMS is greet's
    (enforced per stream by greet), the header list limit is greet's hard one."""
    connection = h2_server()
    limits = EngineLimits()
    assert connection.local_settings.max_concurrent_streams == 2**31 - 1
    assert connection.local_settings.max_header_list_size == limits.hard_header_list_size
    assert connection.max_inbound_frame_size == limits.max_frame_size
    assert connection.decoder.max_header_list_size == limits.hard_header_list_size
    assert limits.hard_header_list_size == GreetH2Connection.DEFAULT_MAX_HEADER_LIST_SIZE


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SettingsFrame(0).serialize()


def header_block_frames(continuations: int) -> bytes:
    """A request HEADERS frame whose block goes on in `continuations` CONTINUATION frames."""
    block = Encoder().encode(
        [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/x"), (b":authority", b"a"),
         (b"x-big", b"v" * (continuations * 100))],
        huffman=False,
    )  # fmt: skip
    size = -(-len(block) // (continuations + 1))
    parts = [block[i : i + size] for i in range(0, len(block), size)]
    first = HeadersFrame(1, data=parts[0], flags=["END_STREAM"])
    rest = [ContinuationFrame(1, data=part) for part in parts[1:]]
    rest[-1].flags.add("END_HEADERS")
    return b"".join(frame.serialize() for frame in (first, *rest))


def test_h2_header_blocks_may_span_greet_s_continuation_limit() -> None:
    """h2's FrameBuffer assembles header blocks in `_update_header_buffer` from
    `_headers_buffer` and gives up after 64 CONTINUATION frames; greet's `incoming_buffer`
    (HeaderBlockBuffer) takes EngineLimits.max_continuations and no more."""
    from h2.frame_buffer import CONTINUATION_BACKLOG, FrameBuffer

    assert CONTINUATION_BACKLOG == 64
    assert "_update_header_buffer" in vars(FrameBuffer)
    assert FrameBuffer()._headers_buffer == []
    limit = EngineLimits().max_continuations
    connection = h2_server()
    assert isinstance(connection.incoming_buffer, HeaderBlockBuffer)
    events = connection.receive_data(PREFACE + header_block_frames(limit))
    (request,) = [event for event in events if isinstance(event, RequestReceived)]
    assert dict(request.headers)[b"x-big"] == b"v" * (limit * 100)
    with pytest.raises(ProtocolError, match="Too many continuation frames"):
        h2_server().receive_data(PREFACE + header_block_frames(limit + 1))


HEADER_LISTS: list[list[tuple[bytes, bytes]]] = [
    [(b":status", b"200"), (b"content-type", b"application/grpc")],
    [(b"grpc-status", b"0")],
    [(b":status", b"200"), (b"content-type", b"application/grpc")],
    [(b"grpc-status", b"2"), (b"grpc-message", b"boom")],
    [(b"grpc-status", b"0")],
    [(b":status", b"200"), (b"content-type", b"application/grpc"), (b"x-big", b"v" * 3000)],
    [(b":status", b"200"), (b"content-type", b"application/grpc")],
    [(b"grpc-status", b"0")],
    [(b"grpc-status", b"2"), (b"grpc-message", b"boom")],
    [(b"grpc-status", b"0")],
]


def test_hpack_tables_change_only_through_add_and_maxsize() -> None:
    """hpack's coders keep their dynamic table in `header_table`, a HeaderTable whose entries
    change only in `add` and the `maxsize` setter: greet's CountingTable counts those, and its
    HPACK caches (CachingEncoder, CachingDecoder) trust the count."""
    from hpack import Decoder
    from hpack.table import HeaderTable

    from greet.transport._engines.h2 import CountingTable

    assert isinstance(vars(HeaderTable)["maxsize"], property)
    assert callable(vars(HeaderTable)["add"])
    encoder, decoder = Encoder(), Decoder()
    assert isinstance(encoder.header_table, HeaderTable)
    assert isinstance(decoder.header_table, HeaderTable)
    table = CountingTable()
    decoder.header_table = table
    seen: list[tuple[int, list[tuple[bytes, bytes]]]] = []
    for headers in HEADER_LISTS:
        before = (table.generation, list(table.dynamic_entries))
        decoder.decode(encoder.encode(headers), raw=True)
        if table.generation == before[0]:
            assert list(table.dynamic_entries) == before[1]
        seen.append((table.generation, list(table.dynamic_entries)))
    assert seen[0][0] < seen[3][0] < seen[5][0]  # new fields were added
    assert seen[6][0] == seen[5][0]  # known fields only: no change
    generation = table.generation
    decoder.header_table_size = 100
    assert table.generation > generation
    assert table.maxsize == 100


def test_h2_encodes_and_decodes_with_greet_s_hpack_caches() -> None:
    """h2 encodes with the connection's `encoder` and decodes with its `decoder`, read at each
    use, and applies SETTINGS to them: greet's caching coders give the same bytes and lists as
    hpack's own, call after call, whatever happened to the table in between."""
    from hpack import Decoder

    from greet.transport._engines.h2 import CachingDecoder, CachingEncoder

    connection = h2_server()
    assert isinstance(connection.encoder, CachingEncoder)
    assert isinstance(connection.decoder, CachingDecoder)
    caching, plain = CachingEncoder(), Encoder()
    caching_decoder, plain_decoder = CachingDecoder(1 << 16), Decoder(1 << 16)
    for _ in range(3):
        for headers in HEADER_LISTS:
            block = caching.encode(list(headers))
            assert block == plain.encode(list(headers))
            assert caching_decoder.decode(block, raw=True) == plain_decoder.decode(block, raw=True)
    caching.header_table_size = plain.header_table_size = 64
    for headers in HEADER_LISTS[:3]:
        assert caching.encode(list(headers)) == plain.encode(list(headers))
    # what h2 sends and receives goes through them (with the H2Engine's configuration: h2
    # hands the encoder the list itself when it neither normalizes nor validates)
    config = H2Configuration(
        client_side=True,
        header_encoding=None,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
    )
    client = GreetH2Connection(config, EngineLimits())
    client.initiate_connection()
    connection.receive_data(client.data_to_send())
    request = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/x"),
               (b":authority", b"a")]  # fmt: skip
    for _ in range(2):
        stream_id = client.get_next_available_stream_id()
        client.send_headers(stream_id, request, end_stream=True)
        events = connection.receive_data(client.data_to_send())
        (received,) = [event for event in events if isinstance(event, RequestReceived)]
        assert list(received.headers or ()) == request
    assert client.encoder._blocks  # type: ignore[attr-defined]
    assert connection.decoder._lists


def test_h2_stream_closed_once_both_sides_ended_or_reset() -> None:
    """The h2 engine asks h2 whether a stream is over: `H2Connection.streams` and
    `H2Stream.closed`, True once both sides ended (or it was reset), not after one side."""
    client = GreetH2Connection(
        H2Configuration(client_side=True, header_encoding=None), EngineLimits()
    )
    server = h2_server()
    client.initiate_connection()
    server.receive_data(client.data_to_send())
    request = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/x"),
               (b":authority", b"a")]  # fmt: skip
    client.send_headers(1, request, end_stream=True)
    client.send_headers(3, request)
    server.receive_data(client.data_to_send())
    assert not server.streams[1].closed  # the request ended, the reply has not
    server.send_headers(1, [(b":status", b"200")], end_stream=True)
    assert server.streams[1].closed
    server.send_headers(3, [(b":status", b"200")], end_stream=True)
    assert not server.streams[3].closed  # the reply ended, the request has not
    server.reset_stream(3)
    assert server.streams[3].closed


H2_RECEIVE_FRAME_SHA256 = "39b2e16b4fd74ed014ca144a0c6e388aef3dc51f116d6f0a874b70d92bd92873"


def test_h2_receive_frame_is_the_method_greet_copies() -> None:
    """GreetH2Connection._receive_frame is h2 4.4.1's `_receive_frame` without its trace line
    (whose `repr(frame)` runs for every frame). It reads `_frame_dispatch_table`,
    `_stream_is_closed_by_reset`, `_stream_is_closed_by_end`, `_prepare_for_sending` and
    StreamClosedError's `_events`. When h2 changes the method, this fails: copy it again."""
    import hashlib

    from h2.connection import H2Connection
    from h2.exceptions import StreamClosedError
    from hyperframe.frame import DataFrame, RstStreamFrame

    source = inspect.getsource(H2Connection._receive_frame)
    assert hashlib.sha256(source.encode()).hexdigest() == H2_RECEIVE_FRAME_SHA256
    assert 'trace("Received frame: %s", repr(frame))' in source
    connection = h2_server()
    assert DataFrame in connection._frame_dispatch_table
    for name in ("_stream_is_closed_by_reset", "_stream_is_closed_by_end", "_prepare_for_sending"):
        assert callable(getattr(connection, name)), name
    assert StreamClosedError(1)._events == []
    # the error path: DATA on a stream the server reset is answered with RST_STREAM, and the
    # connection lives on
    config = H2Configuration(client_side=True, header_encoding=None)
    client = GreetH2Connection(config, EngineLimits())
    client.initiate_connection()
    connection.receive_data(client.data_to_send())
    request = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/x"),
               (b":authority", b"a")]  # fmt: skip
    client.send_headers(1, request)
    connection.receive_data(client.data_to_send())
    connection.reset_stream(1)
    connection.data_to_send()
    data = DataFrame(1, data=b"late")
    assert connection.receive_data(data.serialize()) == []
    out = connection.data_to_send()
    assert out[3] == RstStreamFrame.type


# -- betterproto ------------------------------------------------------------------------------
# greet._codec reads these (its docstring lists them, and `BETTERPROTO_PRIVATE_NAMES`): the
# per-class metadata for its plans and for `check_wire_format`, the instance bookkeeping it fills
# in itself, and how the Rust codec shows that it replaced the parser.


class Color(betterproto.Enum):
    RED = 0
    GREEN = 1


@dataclass(eq=False, repr=False)
class WithOneof(betterproto.Message):
    name: str = betterproto.string_field(1, group="choice")
    number: int = betterproto.int32_field(2, group="choice")


@dataclass(eq=False, repr=False)
class WithEnumAndOptional(betterproto.Message):
    color: Color = betterproto.enum_field(1)
    maybe_text: str | None = betterproto.string_field(2, optional=True)


def metadata(cls: type[betterproto.Message]) -> Any:
    """betterproto's per-class metadata (`_betterproto`, a classproperty mypy cannot follow)."""
    return cast(Any, cls)._betterproto


def state(message: betterproto.Message) -> dict[str, Any]:
    result: dict[str, Any] = object.__getattribute__(message, "__dict__")
    return result


def is_field_metadata_field(name: str) -> Callable[[], bool]:
    return lambda: name in {field.name for field in dataclasses.fields(betterproto.FieldMetadata)}


def parse_qualname_tells_the_rust_codec() -> bool:
    """betterproto assigns the Rust codec's `__parse_patch` to `Message.parse` when the module
    imports; its own methods keep their `Message.` names (the pure-Python case is checked in a
    child process that blocks the module: tests/test_codec.py, REFERENCE)."""
    installed = importlib.util.find_spec("betterproto_rust_codec") is not None
    qualname = betterproto.Message.parse.__qualname__
    expected = "__parse_patch" if installed else "Message.parse"
    return qualname == expected and betterproto.Message.load.__qualname__ == "Message.load"


UPSTREAM_CHECKS: dict[str, Callable[[], bool]] = {
    "Message._betterproto": lambda: type(metadata(HelloRequest)).__name__ == "ProtoClassMetadata",
    "ProtoClassMetadata.meta_by_field_name": lambda: (
        metadata(HelloRequest).meta_by_field_name
        == {"name": dataclasses.fields(HelloRequest)[0].metadata["betterproto"]}
    ),
    "ProtoClassMetadata.field_name_by_number": lambda: (
        metadata(HelloRequest).field_name_by_number == {1: "name"}
    ),
    "ProtoClassMetadata.oneof_group_by_field": lambda: (
        metadata(WithOneof).oneof_group_by_field == {"name": "choice", "number": "choice"}
    ),
    "ProtoClassMetadata.default_gen": lambda: (
        metadata(HelloRequest).default_gen == {"name": str}
        and metadata(NamesList).default_gen == {"names": list}
    ),
    "ProtoClassMetadata.cls_by_field": lambda: (
        metadata(WithEnumAndOptional).cls_by_field["color"] is Color
    ),
    **{
        f"FieldMetadata.{name}": is_field_metadata_field(name)
        for name in ("number", "proto_type", "map_types", "group", "wraps", "optional")
    },
    'dataclasses.Field.metadata["betterproto"]': lambda: isinstance(
        dataclasses.fields(HelloRequest)[0].metadata["betterproto"], betterproto.FieldMetadata
    ),
    "Message._serialized_on_wire": lambda: (
        state(HelloRequest())["_serialized_on_wire"] is False
        and state(HelloRequest(name="x"))["_serialized_on_wire"] is True
    ),
    "Message._unknown_fields": lambda: (
        state(HelloRequest())["_unknown_fields"] == b""
        and HelloRequest().parse(b"\x10\x01")._unknown_fields == b"\x10\x01"
    ),
    "Message._group_current": lambda: (
        state(HelloRequest())["_group_current"] == {}
        and state(WithOneof(number=1))["_group_current"] == {"choice": "number"}
    ),
    "PLACEHOLDER": lambda: (
        state(HelloRequest())["name"] is betterproto.PLACEHOLDER
        and state(WithEnumAndOptional())["maybe_text"] is None
    ),
    "Enum.try_value": lambda: Color.try_value(1) is Color.GREEN and Color.try_value(9) == 9,
    "Message.parse.__qualname__": parse_qualname_tells_the_rust_codec,
}


def test_every_private_betterproto_name_has_a_contract_check() -> None:
    assert set(UPSTREAM_CHECKS) == set(_codec.BETTERPROTO_PRIVATE_NAMES)
    docstring = _codec.__doc__ or ""
    for name in _codec.BETTERPROTO_PRIVATE_NAMES:
        short = name.rsplit(".", 1)[-1].split("[")[0]
        assert short in docstring, f"{name} is not listed in greet._codec's docstring"


@pytest.mark.parametrize("name", _codec.BETTERPROTO_PRIVATE_NAMES)
def test_betterproto_private_name_still_means_what_the_codec_relies_on(name: str) -> None:
    try:
        holds = UPSTREAM_CHECKS[name]()
    except Exception as error:  # removed or renamed: say which name
        pytest.fail(f"betterproto private name {name} is gone or changed: {error!r}")
    assert holds, f"betterproto private name {name} no longer behaves as greet._codec expects"


def test_betterproto_field_metadata_for_strict_decoding() -> None:
    """greet._codec's check of classes that are not simple reads the same metadata."""
    meta: Any = cast(Any, HelloRequest)._betterproto
    assert meta.field_name_by_number == {1: "name"}
    assert meta.meta_by_field_name["name"].proto_type == "string"
    assert _codec._rules_of(NamesList)[1].proto_type == "string"
    assert _codec._rules_of(NamesList)[1].repeated
    assert hasattr(meta, "cls_by_field")


# -- argparse --------------------------------------------------------------------------------------


def test_argparse_actions_list_every_flag_and_each_commands_parser() -> None:
    """greet._settings.known_flags reads ArgumentParser._actions: every action, those of the
    argument groups too, with its option strings; add_subparsers' action maps each command name
    to its parser in `choices`."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--top")
    parser.add_argument_group("a group").add_argument("-g", "--grouped")
    commands = parser.add_subparsers()
    command = commands.add_parser("run")
    command.add_argument("--inner")
    flags = [flag for action in parser._actions for flag in action.option_strings]
    assert set(flags) == {"-h", "--help", "--top", "-g", "--grouped"}
    (subparsers,) = [action for action in parser._actions if isinstance(action.choices, dict)]
    assert subparsers.choices == {"run": command}
    assert known_flags(parser) == {"-h", "--help", "--top", "-g", "--grouped", "--inner"}
