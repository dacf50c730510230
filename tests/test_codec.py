"""greet._codec, the one protobuf codec, against betterproto; and betterproto's two codecs.

greet._codec builds, decodes and encodes betterproto's simple classes itself. Each property is
checked against both of betterproto's implementations: the one in use (the Rust codec where it is
installed, as it is on the platforms greet ships wheels for) through `bytes()` and `parse()`, and
pure-Python betterproto through `Message.dump` and `Message.load`, which the Rust codec leaves in
place. Where pure-Python betterproto departs from protobuf (packed chunks, 32-bit varints above 32
bits, negative enums) greet._codec follows protobuf and the Rust codec; those cases are pinned in
their own tests and kept out of the pure comparisons. Other betterproto classes are decoded as
strictly (`check_wire_format`, the same varint reader), and client and server share the codec and
its one `MalformedMessage`.

The Rust codec replaces `Message.__bytes__` and `Message.parse` when it is importable (a default
dependency where it has wheels). Its output must be byte-identical to pure-Python betterproto's:
each message is serialized here (Rust) and in a reference child process that blocks the module
(pure Python), for greet's messages and for a message with every kind of field. The one
difference found (map entries holding a default key or value) is pinned in its own test.
"""

# ruff: noqa: RUF009  (betterproto's *_field() calls declare dataclass fields, as in generated/)
from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import json
import math
import re
import struct
import subprocess
import sys
import textwrap
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any, TypeVar, cast

import betterproto
import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loopback import bound_socket
from raw_http2 import RawPeer
from server_process import ServerProcess

from greet import _codec
from greet._codec import (
    MalformedMessage,
    StrictProtoCodec,
    build,
    decode,
    encode,
    is_simple,
    rust_codec_active,
)
from greet.client import GreetClient
from greet.errors import RpcError
from greet.server import GreetServer
from greet.service import GreetService
from greet.transport import TransportServer
from greet_service import (
    GreetServiceStub,
    HelloRequest,
    HelloResponse,
    MessagesList,
    NamesList,
    NoParam,
)

RUST_ACTIVE = betterproto.Message.parse.__qualname__ != "Message.parse"
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# === betterproto-rust-codec against pure-Python betterproto =====================================

# Message classes shared by this process and the reference process.
MESSAGES = textwrap.dedent(
    """
    from dataclasses import dataclass
    from typing import Dict, List, Optional

    import betterproto

    from greet_service import (
        HelloRequest, HelloResponse, MessagesList, NamesList, NoParam,
    )


    class Color(betterproto.Enum):
        RED = 0
        GREEN = 1
        BLUE = 2


    @dataclass(eq=False, repr=False)
    class Child(betterproto.Message):
        label: str = betterproto.string_field(1)
        weight: int = betterproto.sint64_field(2)


    @dataclass(eq=False, repr=False)
    class Everything(betterproto.Message):
        i32: int = betterproto.int32_field(1)
        i64: int = betterproto.int64_field(2)
        u32: int = betterproto.uint32_field(3)
        u64: int = betterproto.uint64_field(4)
        s32: int = betterproto.sint32_field(5)
        s64: int = betterproto.sint64_field(6)
        f32: int = betterproto.fixed32_field(7)
        f64: int = betterproto.fixed64_field(8)
        sf32: int = betterproto.sfixed32_field(9)
        sf64: int = betterproto.sfixed64_field(10)
        flag: bool = betterproto.bool_field(11)
        text: str = betterproto.string_field(12)
        blob: bytes = betterproto.bytes_field(13)
        real: float = betterproto.double_field(14)
        single: float = betterproto.float_field(15)
        color: Color = betterproto.enum_field(16)
        numbers: List[int] = betterproto.int32_field(17)
        words: List[str] = betterproto.string_field(18)
        child: Child = betterproto.message_field(19)
        children: List[Child] = betterproto.message_field(20)
        counts: Dict[str, int] = betterproto.map_field(
            21, betterproto.TYPE_STRING, betterproto.TYPE_INT32
        )
        maybe: Optional[str] = betterproto.string_field(22, optional=True)


    TYPES = {
        cls.__name__: cls
        for cls in (HelloRequest, HelloResponse, MessagesList, NamesList, NoParam, Everything)
    }


    def from_json(value):
        if isinstance(value, dict) and "__bytes__" in value:
            return bytes.fromhex(value["__bytes__"])
        if isinstance(value, dict) and "__child__" in value:
            return Child(**{k: from_json(v) for k, v in value["__child__"].items()})
        if isinstance(value, dict):
            return {k: from_json(v) for k, v in value.items()}
        if isinstance(value, list):
            return [from_json(v) for v in value]
        return value


    def build(name, fields):
        fields = {k: from_json(v) for k, v in fields.items()}
        if "color" in fields:
            fields["color"] = Color(fields["color"])
        return TYPES[name](**fields)
    """
)

REFERENCE = textwrap.dedent(
    """
    import json, sys
    sys.modules["betterproto_rust_codec"] = None  # as if it were not installed
    import betterproto
    assert betterproto.Message.parse.__qualname__ == "Message.parse", "Rust codec still active"
    import types
    module = types.ModuleType("codec_messages")
    sys.modules["codec_messages"] = module
    exec(sys.argv[1], module.__dict__)
    namespace = module.__dict__
    for line in sys.stdin:
        request = json.loads(line)
        if "parse" in request:
            message = namespace["TYPES"][request["parse"]]().parse(bytes.fromhex(request["hex"]))
            answer = message.to_json()
        else:
            answer = bytes(namespace["build"](request["type"], request["fields"])).hex()
        print("=" + answer, flush=True)  # "=" keeps an empty message's line non-empty
    """
)

# A real module, so that betterproto resolves the type hints of the classes in it.
codec_messages = types.ModuleType("codec_messages")
sys.modules["codec_messages"] = codec_messages
exec(MESSAGES, codec_messages.__dict__)
namespace: dict[str, Any] = codec_messages.__dict__


class PureReference:
    """The reference child process: pure-Python betterproto, one request per line."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", REFERENCE, MESSAGES],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ask(self, request: dict[str, Any]) -> str:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline().strip()
        assert answer.startswith("="), "reference process died"
        return answer[1:]

    def serialize(self, name: str, fields: dict[str, Any]) -> bytes:
        return bytes.fromhex(self.ask({"type": name, "fields": fields}))

    def parse_to_json(self, name: str, data: bytes) -> str:
        return self.ask({"parse": name, "hex": data.hex()})

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(30)


@pytest.fixture(scope="module")
def reference() -> Iterator[PureReference]:
    process = PureReference()
    yield process
    process.close()


def to_json(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"__bytes__": value.hex()}
    if isinstance(value, list):
        return [to_json(item) for item in value]
    if isinstance(value, dict) and "__child__" not in value:
        return {key: to_json(item) for key, item in value.items()}
    return value


int32 = st.integers(-(2**31), 2**31 - 1)
int64 = st.integers(-(2**63), 2**63 - 1)
uint32 = st.integers(0, 2**32 - 1)
uint64 = st.integers(0, 2**64 - 1)
text = st.text(max_size=30)
child = st.fixed_dictionaries({}, optional={"label": text, "weight": int64}).map(
    lambda fields: {"__child__": fields}
)
EVERYTHING_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "i32": int32,
    "i64": int64,
    "u32": uint32,
    "u64": uint64,
    "s32": int32,
    "s64": int64,
    "f32": uint32,
    "f64": uint64,
    "sf32": int32,
    "sf64": int64,
    "flag": st.booleans(),
    "text": text,
    "blob": st.binary(max_size=30).map(to_json),
    "real": st.floats(allow_nan=False),
    "single": st.floats(width=32, allow_nan=False),
    "color": st.integers(0, 2),
    "numbers": st.lists(int32, max_size=6),
    "words": st.lists(text, max_size=6),
    "child": child,
    "children": st.lists(child, max_size=3),
    # Keys and values that are not the default: see test_map_entries_with_default_values_...
    "counts": st.dictionaries(text.filter(bool), int32.filter(bool), max_size=4),
    "maybe": text,
}
GREET_FIELDS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "HelloRequest": {"name": text},
    "HelloResponse": {"message": text},
    "NamesList": {"names": st.lists(text, max_size=10)},
    "MessagesList": {"messages": st.lists(text, max_size=10)},
    "NoParam": {},
}
messages = st.one_of(
    st.tuples(st.just("Everything"), st.fixed_dictionaries({}, optional=EVERYTHING_FIELDS)),
    *(
        st.tuples(st.just(name), st.fixed_dictionaries({}, optional=fields))
        for name, fields in GREET_FIELDS.items()
    ),
)


def test_the_rust_codec_is_active_here() -> None:
    """It is a default dependency on this platform, and betterproto picked it up."""
    assert rust_codec_active()
    assert betterproto.Message.__bytes__.__module__ == "betterproto"
    assert "patch" in betterproto.Message.__bytes__.__qualname__


@settings(max_examples=300, deadline=None)
@given(message=messages)
def test_rust_output_is_byte_identical(
    reference: PureReference, message: tuple[str, dict[str, Any]]
) -> None:
    name, fields = message
    built = namespace["build"](name, fields)
    rust_bytes = bytes(built)
    assert rust_bytes == reference.serialize(name, fields)
    # And the Rust parser reads it back to what the pure-Python parser reads.
    parsed = namespace["TYPES"][name]().parse(rust_bytes)
    assert json.loads(parsed.to_json()) == json.loads(reference.parse_to_json(name, rust_bytes))


def test_special_floats_and_extremes(reference: PureReference) -> None:
    cases: list[dict[str, Any]] = [
        {"real": math.inf, "single": -math.inf},
        {"real": -0.0, "single": -0.0},
        {"i32": -1, "i64": -(2**63), "u64": 2**64 - 1, "s64": -(2**63)},
        {"text": "Grüße, 世界, 👋", "words": ["", "\u0000", "x" * 300]},
        {"counts": {"a": 1, "b": -1}, "children": [{"__child__": {}}]},
        {"maybe": ""},
    ]
    for fields in cases:
        assert bytes(namespace["build"]("Everything", fields)) == reference.serialize(
            "Everything", fields
        ), fields


def test_map_entries_with_default_values_mean_the_same(reference: PureReference) -> None:
    """The one difference found: in a map entry whose key or value is the default, the Rust codec
    leaves that field out where pure-Python betterproto writes it. Both encodings are valid
    protobuf and parse to the same map. greet's messages have no map fields."""
    fields: dict[str, Any] = {"counts": {"": 7, "k": 0}}
    rust_bytes = bytes(namespace["build"]("Everything", fields))
    pure_bytes = reference.serialize("Everything", fields)
    assert rust_bytes != pure_bytes
    for data in (rust_bytes, pure_bytes):
        parsed = json.loads(reference.parse_to_json("Everything", data))
        assert parsed == {"counts": {"": 7, "k": 0}}
        assert namespace["Everything"]().parse(data).counts == {"": 7, "k": 0}


PURE_SERVER = """
import runpy, sys
sys.modules["betterproto_rust_codec"] = None  # as if the wheels were not installed
sys.modules["uvloop"] = None
runpy.run_module("greet.server", run_name="__main__", alter_sys=True)
"""


async def test_server_falls_back_to_pure_python(tmp_path: Path) -> None:
    (tmp_path / "greet_pure_server.py").write_text(PURE_SERVER)
    from grpclib.client import Channel

    env = {"PYTHONPATH": f"{tmp_path}:{':'.join(sys.path)}"}
    async with ServerProcess(env=env, module="greet_pure_server") as server:
        runtime = await server.wait_for_log(re.compile(r"event loop: (\w+); protobuf codec: (.+)"))
        host, _, port = server.target.rpartition(":")
        channel = Channel(host, int(port))
        try:
            stub = GreetServiceStub(channel, timeout=30)
            assert (await stub.say_hello(NoParam())).message == "Hello"
            names = NamesList(names=["Ann", "Grüße"])
            assert [r.message async for r in stub.say_hello_server_streaming(names)] == [
                "Hello Ann",
                "Hello Grüße",
            ]
            requests = [HelloRequest(name="Bo"), HelloRequest(name="Cy")]
            listed = await stub.say_hello_client_streaming(requests)
            assert listed.messages == ["Hello Bo", "Hello Cy"]
            echoed = [r.message async for r in stub.say_hello_bidirectional_streaming(requests)]
            assert echoed == ["Hello Bo", "Hello Cy"]
        finally:
            channel.close()
    assert runtime.group(1) == "asyncio"
    assert runtime.group(2) == "pure-Python betterproto"


def test_fields_strategy_covers_every_field() -> None:
    declared = set(namespace["Everything"]._betterproto.meta_by_field_name)
    assert set(EVERYTHING_FIELDS) == declared


# === greet._codec against betterproto ==========================================================


class Color(betterproto.Enum):
    RED = 0
    GREEN = 1
    BLUE = 2
    INFRARED = -1


@dataclass(eq=False, repr=False)
class Scalars(betterproto.Message):
    """Every scalar type once, declared out of number order, some with two-byte keys."""

    text: str = betterproto.string_field(12)
    i32: int = betterproto.int32_field(1)
    i64: int = betterproto.int64_field(2)
    u32: int = betterproto.uint32_field(3)
    u64: int = betterproto.uint64_field(4)
    s32: int = betterproto.sint32_field(5)
    s64: int = betterproto.sint64_field(6)
    f32: int = betterproto.fixed32_field(7)
    f64: int = betterproto.fixed64_field(8)
    sf32: int = betterproto.sfixed32_field(9)
    sf64: int = betterproto.sfixed64_field(10)
    flag: bool = betterproto.bool_field(11)
    blob: bytes = betterproto.bytes_field(13)
    real: float = betterproto.double_field(14)
    single: float = betterproto.float_field(15)
    color: Color = betterproto.enum_field(16)
    maybe_text: str | None = betterproto.string_field(17, optional=True)
    maybe_int: int | None = betterproto.sint64_field(18, optional=True)
    maybe_flag: bool | None = betterproto.bool_field(19, optional=True)
    maybe_color: Color | None = betterproto.enum_field(20, optional=True)
    maybe_real: float | None = betterproto.double_field(21, optional=True)
    maybe_blob: bytes | None = betterproto.bytes_field(22, optional=True)
    far: int = betterproto.uint32_field(536_870_911)  # the largest field number


@dataclass(eq=False, repr=False)
class Repeated(betterproto.Message):
    """Every scalar type repeated."""

    i32s: list[int] = betterproto.int32_field(1)
    i64s: list[int] = betterproto.int64_field(2)
    u32s: list[int] = betterproto.uint32_field(3)
    u64s: list[int] = betterproto.uint64_field(4)
    s32s: list[int] = betterproto.sint32_field(5)
    s64s: list[int] = betterproto.sint64_field(6)
    f32s: list[int] = betterproto.fixed32_field(7)
    f64s: list[int] = betterproto.fixed64_field(8)
    sf32s: list[int] = betterproto.sfixed32_field(9)
    sf64s: list[int] = betterproto.sfixed64_field(10)
    flags: list[bool] = betterproto.bool_field(11)
    words: list[str] = betterproto.string_field(12)
    blobs: list[bytes] = betterproto.bytes_field(13)
    reals: list[float] = betterproto.double_field(14)
    singles: list[float] = betterproto.float_field(15)
    colors: list[Color] = betterproto.enum_field(16)
    far_words: list[str] = betterproto.string_field(300)  # a two-byte key


SIMPLE_CLASSES: tuple[type[betterproto.Message], ...] = (Scalars, Repeated)
GREET_CLASSES: tuple[type[betterproto.Message], ...] = (
    NoParam,
    HelloRequest,
    HelloResponse,
    NamesList,
    MessagesList,
)

# --- betterproto's two implementations -----------------------------------------------------


MessageT = TypeVar("MessageT", bound=betterproto.Message)


def metadata(cls: type[betterproto.Message]) -> Any:
    """betterproto's per-class metadata (`_betterproto`, a classproperty mypy cannot follow)."""
    return cls._betterproto  # type: ignore[arg-type]


def declared_fields(cls: type[betterproto.Message]) -> tuple[dataclasses.Field[Any], ...]:
    return dataclasses.fields(cast(Any, cls))


def pure_bytes(message: betterproto.Message) -> bytes:
    """Pure-Python betterproto's serialization (Message.dump), whatever codec is installed."""
    with BytesIO() as stream:
        message.dump(stream)
        return stream.getvalue()


def pure_parse(cls: type[MessageT], data: bytes) -> MessageT:
    """Pure-Python betterproto's `cls().parse(data)` (Message.load)."""
    with BytesIO(data) as stream:
        return cls().load(stream)


def state(message: betterproto.Message) -> dict[str, Any]:
    result: dict[str, Any] = object.__getattribute__(message, "__dict__")
    return result


def canonical(value: Any) -> Any:
    """A value compared by what it holds: floats bit for bit (NaN as one), enums as ints."""
    if value is betterproto.PLACEHOLDER:
        return "<PLACEHOLDER>"
    if isinstance(value, float):
        return ("float", "nan" if math.isnan(value) else struct.pack("<d", value))
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("int", int(value))
    if isinstance(value, list):
        return ("list", [canonical(item) for item in value])
    return (type(value).__name__, value)


def canonical_state(message: betterproto.Message) -> list[tuple[str, Any]]:
    return [(key, canonical(value)) for key, value in state(message).items()]


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def minimal_unknown_fields(data: bytes) -> bytes:
    """Unknown fields with every varint re-encoded minimally, as the Rust codec keeps them."""
    out = b""
    pos = 0
    while pos < len(data):
        key, pos = read_varint(data, pos)
        out += varint(key)
        wire_type = key & 7
        if wire_type == 0:
            value, pos = read_varint(data, pos)
            out += varint(value)
        elif wire_type == 2:
            length, pos = read_varint(data, pos)
            out += varint(length) + data[pos : pos + length]
            pos += length
        else:
            width = 8 if wire_type == 1 else 4
            out += data[pos : pos + width]
            pos += width
    return out


def assert_same_message(
    ours: betterproto.Message, theirs: betterproto.Message, *, rust: bool = False
) -> None:
    """Equal as betterproto compares, field for field, and in the bookkeeping attributes.

    `rust`: `theirs` comes from the Rust codec, which keeps unknown fields re-encoded."""
    assert type(ours) is type(theirs)
    assert list(state(ours)) == list(state(theirs))
    assert canonical_state(ours)[1:-2] == canonical_state(theirs)[1:-2]  # the fields
    assert ours._serialized_on_wire == theirs._serialized_on_wire
    unknown = ours._unknown_fields
    if rust and RUST_ACTIVE:
        unknown = minimal_unknown_fields(unknown)
    assert unknown == theirs._unknown_fields
    assert state(ours)["_group_current"] == state(theirs)["_group_current"] == {}
    if "nan" not in repr(canonical_state(ours)):  # betterproto's __eq__: NaN != NaN in lists
        assert ours == theirs


def has_negative_enum(fields: dict[str, Any]) -> bool:
    values = [
        item
        for value in fields.values()
        for item in (value if isinstance(value, list) else [value])
        if isinstance(item, betterproto.Enum)
    ]
    return any(value < 0 for value in values)


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return ("value", call())
    except Exception as error:
        return ("error", type(error))


# --- strategies ------------------------------------------------------------------------------

INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
UINT32 = st.integers(0, 2**32 - 1)
UINT64 = st.integers(0, 2**64 - 1)
DOUBLES = st.floats(allow_nan=True, allow_infinity=True)
SINGLES = st.floats(width=32, allow_nan=True, allow_infinity=True)
ENUMS = st.one_of(st.sampled_from(list(Color)), INT32.map(Color.try_value))

VALUES: dict[str, st.SearchStrategy[Any]] = {
    betterproto.TYPE_INT32: INT32,
    betterproto.TYPE_SINT32: INT32,
    betterproto.TYPE_SFIXED32: INT32,
    betterproto.TYPE_INT64: INT64,
    betterproto.TYPE_SINT64: INT64,
    betterproto.TYPE_SFIXED64: INT64,
    betterproto.TYPE_UINT32: UINT32,
    betterproto.TYPE_FIXED32: UINT32,
    betterproto.TYPE_UINT64: UINT64,
    betterproto.TYPE_FIXED64: UINT64,
    betterproto.TYPE_BOOL: st.booleans(),
    betterproto.TYPE_STRING: st.text(),
    betterproto.TYPE_BYTES: st.binary(),
    betterproto.TYPE_DOUBLE: DOUBLES,
    betterproto.TYPE_FLOAT: SINGLES,
    betterproto.TYPE_ENUM: ENUMS,
}


def field_kinds(cls: type[betterproto.Message]) -> dict[str, tuple[int, str, bool]]:
    """Field name -> (number, proto type, repeated), from the dataclass declarations."""
    result = {}
    for field in declared_fields(cls):
        meta = field.metadata["betterproto"]
        hint = str(field.type)
        result[field.name] = (meta.number, meta.proto_type, hint.startswith(("list[", "List[")))
    return result


def field_values(cls: type[betterproto.Message]) -> st.SearchStrategy[dict[str, Any]]:
    """Keyword arguments for `cls`: any subset of its fields, with defaults likely."""
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for field in declared_fields(cls):
        meta = field.metadata["betterproto"]
        _, proto_type, repeated = field_kinds(cls)[field.name]
        values = VALUES[proto_type]
        if repeated:
            optional[field.name] = st.lists(values, max_size=6)
        elif meta.optional:
            optional[field.name] = st.one_of(st.none(), values)
        else:
            default = metadata(cls).default_gen[field.name]()
            optional[field.name] = st.one_of(st.just(default), values)
    return st.fixed_dictionaries({}, optional=optional)


def varint(value: int, padding: int = 0) -> bytes:
    """`value` (0 <= value < 2**64) as a varint, `padding` bytes longer than needed (max 10)."""
    groups = []
    while True:
        groups.append(value & 0x7F)
        value >>= 7
        if not value:
            break
    groups += [0] * max(0, min(padding, 10 - len(groups)))
    return bytes([group | 0x80 for group in groups[:-1]] + [groups[-1]])


@dataclass(frozen=True)
class WireField:
    """One encoded field of a generated wire message."""

    data: bytes
    name: str | None  # None: an unknown field
    packed: bool
    pure_agrees: bool  # pure-Python betterproto reads this field's value as protobuf does


FIXED_WIDTHS = {"fixed32": 4, "sfixed32": 4, "float": 4, "fixed64": 8, "sfixed64": 8, "double": 8}
WIRE_TYPES = {
    "string": 2,
    "bytes": 2,
    **{name: 5 if w == 4 else 1 for name, w in FIXED_WIDTHS.items()},
}


def pure_agrees_on_varint(proto_type: str, raw: int) -> bool:
    """Does pure-Python betterproto read varint `raw` as protobuf reads a `proto_type`?"""
    if proto_type in ("uint32", "sint32"):
        return raw < 2**32
    if proto_type == "enum":
        return raw < 2**31
    return True


@st.composite
def element(draw: st.DrawFn, proto_type: str) -> tuple[bytes, bool]:
    """One value's payload on the wire (without key), and whether pure betterproto agrees."""
    if proto_type in FIXED_WIDTHS:
        return draw(
            st.binary(min_size=FIXED_WIDTHS[proto_type], max_size=FIXED_WIDTHS[proto_type])
        ), True
    if proto_type == "string":
        payload = draw(st.text()).encode()
        return varint(len(payload)) + payload, True
    if proto_type == "bytes":
        payload = draw(st.binary())
        return varint(len(payload)) + payload, True
    raw = draw(st.one_of(st.integers(0, 300), UINT64))
    return varint(raw, draw(st.integers(0, 3))), pure_agrees_on_varint(proto_type, raw)


@st.composite
def wire_field(draw: st.DrawFn, cls: type[betterproto.Message]) -> WireField:
    kinds = field_kinds(cls)
    used = {number for number, _, _ in kinds.values()}
    if draw(st.integers(0, 4)) == 0:  # an unknown field, of any wire type proto3 allows
        number = draw(st.integers(1, 2**29 - 1).map(lambda n: 1000 + n % 1000 if n in used else n))
        wire_type = draw(st.sampled_from([0, 1, 2, 5]))
        padding = st.integers(0, 2).map(lambda n: n if n == 2 else 0)  # over-long varints too
        if wire_type == 0:
            payload = varint(draw(UINT64), draw(padding))
        elif wire_type == 2:
            blob = draw(st.binary(max_size=20))
            payload = varint(len(blob), draw(padding)) + blob
        else:
            payload = draw(st.binary(min_size=8 if wire_type == 1 else 4, max_size=8))[
                : 8 if wire_type == 1 else 4
            ]
        key = varint((number << 3) | wire_type, draw(padding))
        return WireField(key + payload, None, False, True)
    name = draw(st.sampled_from(sorted(kinds)))
    number, proto_type, repeated = kinds[name]
    if repeated and proto_type not in ("string", "bytes") and draw(st.booleans()):
        elements = draw(st.lists(element(proto_type), max_size=5))
        chunk = b"".join(payload for payload, _ in elements)
        agrees = all(ok for _, ok in elements)
        return WireField(varint((number << 3) | 2) + varint(len(chunk)) + chunk, name, True, agrees)
    payload, agrees = draw(element(proto_type))
    key = varint((number << 3) | WIRE_TYPES.get(proto_type, 0), draw(st.integers(0, 1)))
    return WireField(key + payload, name, False, agrees)


def pure_agrees_on(fields: list[WireField]) -> bool:
    """False when pure-Python betterproto would read these fields unlike protobuf: besides the
    values themselves, a packed chunk for a field that already has values replaces them."""
    seen: set[str] = set()
    for field in fields:
        if not field.pure_agrees or (field.packed and field.name in seen):
            return False
        if field.name is not None:
            seen.add(field.name)
    return True


def test_the_strategies_see_the_test_classes_as_declared() -> None:
    assert all(repeated for _, _, repeated in field_kinds(Repeated).values())
    assert not any(repeated for _, _, repeated in field_kinds(Scalars).values())
    assert {proto_type for _, proto_type, _ in field_kinds(Scalars).values()} == set(VALUES)


# --- which classes are simple ----------------------------------------------------------------


@pytest.mark.parametrize("cls", GREET_CLASSES + SIMPLE_CLASSES, ids=lambda cls: cls.__name__)
def test_scalar_classes_are_simple(cls: type[betterproto.Message]) -> None:
    assert is_simple(cls)


@dataclass(eq=False, repr=False)
class WithMessage(betterproto.Message):
    child: HelloRequest = betterproto.message_field(1)


@dataclass(eq=False, repr=False)
class WithMap(betterproto.Message):
    counts: dict[str, int] = betterproto.map_field(
        1, betterproto.TYPE_STRING, betterproto.TYPE_INT32
    )


@dataclass(eq=False, repr=False)
class WithOneof(betterproto.Message):
    name: str = betterproto.string_field(1, group="choice")
    number: int = betterproto.int32_field(2, group="choice")


@dataclass(eq=False, repr=False)
class WithWrapper(betterproto.Message):
    maybe: str | None = betterproto.message_field(1, wraps=betterproto.TYPE_STRING)


@dataclass(eq=False, repr=False)
class WithOwnPostInit(betterproto.Message):
    name: str = betterproto.string_field(1)

    def __post_init__(self) -> None:
        super().__post_init__()


@dataclass(eq=False, repr=False)
class WithOwnBytes(betterproto.Message):
    name: str = betterproto.string_field(1)

    def __bytes__(self) -> bytes:
        return b"custom"


@dataclass(eq=False, repr=False, init=False)
class WithOwnInit(betterproto.Message):
    """Same signature as the dataclass's __init__, different behaviour (caught by the probe)."""

    name: str = betterproto.string_field(1)

    def __init__(self, name: str = betterproto.PLACEHOLDER) -> None:
        self.name = name if name is betterproto.PLACEHOLDER else name.upper()
        self.__post_init__()


@dataclass(eq=False, repr=False)
class WithDuplicateNumber(betterproto.Message):
    first: str = betterproto.string_field(1)
    second: str = betterproto.string_field(1)


@dataclass(eq=False, repr=False)
class WithMismatchedHint(betterproto.Message):
    name: int = betterproto.string_field(1)  # a string field typed int


class NotADataclass(HelloRequest):
    def __init__(self, name: str = "") -> None:
        super().__init__(name)


NOT_SIMPLE: tuple[Any, ...] = (
    WithMessage,
    WithMap,
    WithOneof,
    WithWrapper,
    WithOwnPostInit,
    WithOwnBytes,
    WithOwnInit,
    WithDuplicateNumber,
    WithMismatchedHint,
    NotADataclass,
    betterproto.Message,
    int,
    HelloRequest(),
)


@pytest.mark.parametrize("cls", NOT_SIMPLE, ids=lambda cls: getattr(cls, "__name__", repr(cls)))
def test_other_classes_are_not_simple(cls: Any) -> None:
    assert not is_simple(cls)


def test_a_class_whose_constructor_does_more_is_caught_by_the_probe() -> None:
    # Everything structural matches (signature included); only running the constructor shows
    # that it transforms its argument.
    assert inspect.signature(WithOwnInit.__init__).parameters["name"].default is (
        betterproto.PLACEHOLDER
    )
    assert WithOwnInit(name="x").name == "X"
    assert not is_simple(WithOwnInit)


FALLBACK_CASES: list[tuple[type[betterproto.Message], dict[str, Any]]] = [
    (WithMessage, {"child": HelloRequest(name="Ann")}),
    (WithMap, {"counts": {"a": 1, "b": 0}}),
    (WithOneof, {"number": 0}),
    (WithOneof, {"name": "x"}),
    (WithWrapper, {"maybe": ""}),
    (WithOwnPostInit, {"name": "x"}),
    (WithOwnInit, {"name": "x"}),
]


@pytest.mark.parametrize(
    ("cls", "fields"), FALLBACK_CASES, ids=lambda x: getattr(x, "__name__", "")
)
def test_other_classes_fall_back_to_betterproto(
    cls: type[betterproto.Message], fields: dict[str, Any]
) -> None:
    built = build(cls, **fields)
    expected = cls(**fields)
    assert type(built) is cls
    assert list(state(built)) == list(state(expected))
    assert built == expected
    assert encode(built) == bytes(expected)
    data = bytes(expected)
    assert decode(cls, data) == cls.FromString(data)
    assert encode(decode(cls, data)) == data


def test_a_class_with_its_own_bytes_keeps_it() -> None:
    assert encode(WithOwnBytes(name="x")) == b"custom"


# --- build -------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", SIMPLE_CLASSES, ids=lambda cls: cls.__name__)
@given(data=st.data())
@PROPERTY
def test_build_gives_the_constructors_instance(
    cls: type[betterproto.Message], data: st.DataObject
) -> None:
    fields = data.draw(field_values(cls))
    built = build(cls, **fields)
    expected = cls(**fields)
    assert type(built) is cls
    # Same keys in the same order, the very same values (PLACEHOLDER for unset fields).
    assert list(state(built)) == list(state(expected))
    for key, value in state(expected).items():
        if key in ("_unknown_fields", "_group_current"):
            assert state(built)[key] == value
        else:
            assert state(built)[key] is value, key
    assert state(built)["_group_current"] is not state(expected)["_group_current"]


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"text": ""},
        {"maybe_text": None},
        {"maybe_text": ""},
        {"maybe_int": 0},
        {"i32": 0},
        {"i32": betterproto.PLACEHOLDER},
        {"maybe_flag": betterproto.PLACEHOLDER},
        {"text": None},
    ],
    ids=lambda fields: repr(fields).replace(repr(betterproto.PLACEHOLDER), "PLACEHOLDER"),
)
def test_build_decides_serialized_on_wire_as_betterproto(fields: dict[str, Any]) -> None:
    built = build(Scalars, **fields)
    expected = Scalars(**fields)
    assert built._serialized_on_wire is expected._serialized_on_wire
    assert list(state(built).items()) == list(state(expected).items())


@pytest.mark.parametrize("cls", GREET_CLASSES, ids=lambda cls: cls.__name__)
def test_build_greet_messages(cls: type[betterproto.Message]) -> None:
    for fields in (
        {},
        {
            name: ["Ann"] if name.endswith("s") else "Ann"
            for name in metadata(cls).meta_by_field_name
        },
    ):
        built = build(cls, **fields)
        assert list(state(built).items()) == list(state(cls(**fields)).items())
        assert encode(built) == bytes(cls(**fields)) == pure_bytes(cls(**fields))


def test_build_rejects_an_unknown_field_as_the_dataclass_does() -> None:
    with pytest.raises(TypeError) as expected:
        HelloResponse(mesage="Hello")  # type: ignore[call-arg]
    with pytest.raises(TypeError) as raised:
        build(HelloResponse, mesage="Hello")
    assert str(raised.value) == str(expected.value)
    assert "unexpected keyword argument 'mesage'" in str(raised.value)


def test_build_leaves_a_message_value_to_betterproto() -> None:
    # betterproto's __setattr__ marks a field-less message assigned to a field as serialized;
    # build hands such values to the constructor rather than imitate that.
    value = NoParam()
    assert value._serialized_on_wire is False
    built = build(HelloRequest, name=value)
    assert value._serialized_on_wire is True
    assert state(built)["name"] is value


def test_built_instances_do_not_share_state() -> None:
    first, second = build(NamesList, names=["a"]), build(NamesList)
    assert state(first)["_group_current"] is not state(second)["_group_current"]
    second.names.append("b")  # betterproto fills the default list on first access
    assert first.names == ["a"]
    assert NamesList().names == []


# --- encode ------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", SIMPLE_CLASSES, ids=lambda cls: cls.__name__)
@given(data=st.data())
@PROPERTY
def test_encode_is_byte_identical_to_betterproto(
    cls: type[betterproto.Message], data: st.DataObject
) -> None:
    fields = data.draw(field_values(cls))
    ours = encode(cls(**fields))
    # The fast path itself, not a fallback to bytes():
    plan = _codec._plans[cls]
    assert plan is not None
    assert _codec._encode_fields(plan, state(cls(**fields))) == ours
    assert ours == pure_bytes(cls(**fields))
    assert ours == bytes(cls(**fields))
    assert encode(build(cls, **fields)) == ours


@given(
    fields=field_values(Scalars),
    unknown=st.binary(max_size=12).map(lambda b: b"\xa2\x06" + bytes([len(b)]) + b),
)
@PROPERTY
def test_encode_appends_unknown_fields(fields: dict[str, Any], unknown: bytes) -> None:
    message = Scalars(**fields)
    message._unknown_fields = unknown
    twin = Scalars(**fields)
    twin._unknown_fields = unknown
    assert encode(message) == pure_bytes(twin) == bytes(twin)
    assert encode(message).endswith(unknown)


def test_encode_writes_what_betterproto_writes_for_set_defaults() -> None:
    # proto3: defaults are left out, `optional` fields are written whenever they are not None.
    assert encode(Scalars(text="", i32=0, real=-0.0, color=Color(0), flag=False)) == b""
    assert (
        encode(Scalars(maybe_text="", maybe_int=0, maybe_flag=False))
        == b"\x8a\x01\x00\x90\x01\x00\x98\x01\x00"
    )
    assert encode(Repeated(words=[], i32s=[])) == b""
    assert encode(Repeated(words=[""], i32s=[0])) == b"\x0a\x01\x00\x62\x00"


@pytest.mark.parametrize(
    ("cls", "fields"),
    [
        (HelloResponse, {"message": 5}),
        (HelloResponse, {"message": b"bytes"}),
        (HelloResponse, {"message": ["a", "b"]}),  # pure betterproto writes a list as repeated
        (NamesList, {"names": ("a", "b")}),
        (NamesList, {"names": ["a", 1]}),
        (Scalars, {"i32": 1.5}),
        (Scalars, {"i32": "1"}),
        (Scalars, {"i32": [1, 2]}),
        (Scalars, {"i64": -(2**64)}),
        (Scalars, {"blob": "text"}),
        (Scalars, {"blob": bytearray(b"x")}),
        (Scalars, {"single": 1e300}),
        (Scalars, {"f32": -1}),
        (Scalars, {"real": "1.0"}),
        (Repeated, {"f32s": [1, -1]}),
        (Repeated, {"i32s": [1, None]}),
        (Repeated, {"blobs": [b"x", "y"]}),
    ],
    ids=repr,
)
def test_encode_hands_values_outside_their_type_to_betterproto(
    cls: type[betterproto.Message], fields: dict[str, Any]
) -> None:
    assert outcome(lambda: encode(cls(**fields))) == outcome(lambda: bytes(cls(**fields)))


def test_encode_reads_the_instance_dict_only() -> None:
    message = HelloResponse(message="Hello")
    assert encode(message) == b"\n\x05Hello"
    assert list(state(message).items()) == list(state(HelloResponse(message="Hello")).items())
    unset = NamesList()
    assert encode(unset) == b""
    assert state(unset)["names"] is betterproto.PLACEHOLDER  # bytes() would have filled it in


# --- decode ------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", SIMPLE_CLASSES, ids=lambda cls: cls.__name__)
@given(data=st.data())
@PROPERTY
def test_decode_reads_what_betterproto_writes(
    cls: type[betterproto.Message], data: st.DataObject
) -> None:
    fields = data.draw(field_values(cls))
    wire = pure_bytes(cls(**fields))
    ours = decode(cls, wire)
    assert_same_message(ours, cls().parse(wire), rust=True)
    if not has_negative_enum(fields):  # pure betterproto does not sign-extend enums
        assert_same_message(ours, pure_parse(cls, wire))
    assert encode(ours) == wire


@pytest.mark.parametrize("cls", SIMPLE_CLASSES, ids=lambda cls: cls.__name__)
@given(data=st.data())
@PROPERTY
def test_decode_reads_any_valid_wire_data_as_betterproto(
    cls: type[betterproto.Message], data: st.DataObject
) -> None:
    """Fields in any order, repeated singular fields, packed and unpacked repeated fields,
    non-canonical varints, unknown fields of every proto3 wire type."""
    fields = data.draw(st.lists(wire_field(cls), max_size=12))
    wire = b"".join(field.data for field in fields)
    ours = decode(cls, wire)
    for key, value in state(ours).items():
        if (
            key in ("color", "maybe_color")
            and value is not None
            and value is not betterproto.PLACEHOLDER
        ):
            assert isinstance(value, Color)
    active = cls().parse(wire)
    assert_same_message(ours, active, rust=True)
    if not RUST_ACTIVE or minimal_unknown_fields(ours._unknown_fields) == ours._unknown_fields:
        assert encode(ours) == bytes(active)
    if pure_agrees_on(fields):
        theirs = pure_parse(cls, wire)
        assert_same_message(ours, theirs)
        assert encode(ours) == pure_bytes(theirs)


@pytest.mark.parametrize("cls", SIMPLE_CLASSES + GREET_CLASSES, ids=lambda cls: cls.__name__)
@given(wire=st.binary(max_size=40))
@PROPERTY
def test_decode_of_arbitrary_bytes_agrees_with_the_strict_codec(
    cls: type[betterproto.Message], wire: bytes
) -> None:
    ours = outcome(lambda: decode(cls, wire))
    if ours[0] == "error":
        assert ours[1] is MalformedMessage
    if not RUST_ACTIVE:  # pure-Python betterproto accepts malformed input: nothing to compare
        return
    theirs = outcome(lambda: cls().parse(wire))
    assert ours[0] == theirs[0], (ours, theirs)
    if ours[0] == "value":
        assert_same_message(ours[1], theirs[1], rust=True)


@pytest.mark.parametrize("cls", GREET_CLASSES, ids=lambda cls: cls.__name__)
def test_decode_greet_messages(cls: type[betterproto.Message]) -> None:
    names = ["Ann", "", "Zoë", "x" * 200, "\n" * 10]
    for fields in (
        {},
        {name: names if name.endswith("s") else "Zoë" for name in metadata(cls).meta_by_field_name},
    ):
        wire = bytes(cls(**fields)) + b"\xf8\x3e\x01"  # and an unknown field 999
        ours = decode(cls, wire)
        assert_same_message(ours, cls().parse(wire), rust=True)
        assert_same_message(ours, pure_parse(cls, wire))
        assert ours._unknown_fields == b"\xf8\x3e\x01"


@pytest.mark.parametrize(
    "names",
    [
        [f"name-{index:04d}" for index in range(1000)],  # ASCII: the whole run is sliced
        ["Zoë", "Ann", "Émile", ""] * 50,  # not ASCII: each name decoded on its own
        ["a" * 127, "b" * 128, "c" * 300],  # lengths of one, two and three varint bytes
    ],
    ids=["ascii", "unicode", "long"],
)
def test_decode_long_runs_of_a_repeated_string(names: list[str]) -> None:
    wire = bytes(NamesList(names=names))
    assert decode(NamesList, wire).names == names
    # an unknown field 2 inside the run
    interleaved = (
        bytes(NamesList(names=names[:2])) + b"\x10\x01" + bytes(NamesList(names=names[2:]))
    )
    assert_same_message(decode(NamesList, interleaved), pure_parse(NamesList, interleaved))


def test_decode_accepts_bytes_like_input() -> None:
    for data in (bytearray(b"\n\x05Alice"), memoryview(b"\n\x05Alice")):
        message = decode(HelloRequest, data)  # type: ignore[arg-type]
        assert message.name == "Alice"
        assert type(state(message)["_unknown_fields"]) is bytes


def test_decoded_instances_do_not_share_state() -> None:
    first, second = decode(NamesList, b"\n\x01a"), decode(NamesList, b"\n\x01a")
    first.names.append("b")
    assert second.names == ["a"]
    assert state(first)["_group_current"] is not state(second)["_group_current"]


def test_decode_of_nothing_is_the_empty_message_on_the_wire() -> None:
    message = decode(NoParam, b"")
    assert list(state(message).items()) == list(state(NoParam().parse(b"")).items())
    assert message._serialized_on_wire is True


# Where pure-Python betterproto departs from protobuf, greet._codec follows protobuf (and the
# Rust codec).


def test_packed_chunks_are_concatenated() -> None:
    wire = b"\x0a\x01\x01" + b"\x08\x05" + b"\x0a\x02\x02\x03"
    assert decode(Repeated, wire).i32s == [1, 5, 2, 3]
    assert pure_parse(Repeated, wire).i32s == [2, 3]  # pure betterproto keeps the last chunk
    if RUST_ACTIVE:
        assert Repeated().parse(wire).i32s == [1, 5, 2, 3]


@pytest.mark.parametrize(
    ("field", "raw", "expected"),
    [
        ("u32", 2**32 + 7, 7),
        ("u32", 2**64 - 1, 2**32 - 1),
        ("s32", 2**64 - 1, -(2**31)),
        ("i32", 2**32 + 5, 5),
        ("color", 2**64 - 1, Color.INFRARED),  # -1, sign-extended as protobuf writes it
        ("color", 2**32 + 2, Color.BLUE),
    ],
)
def test_32_bit_varints_keep_their_low_32_bits(field: str, raw: int, expected: int) -> None:
    number = metadata(Scalars).meta_by_field_name[field].number
    wire = varint(number << 3) + varint(raw)
    value = getattr(decode(Scalars, wire), field)
    assert value == expected
    if field == "color":
        assert value is expected
    if RUST_ACTIVE:
        assert getattr(Scalars().parse(wire), field) == expected


def test_unknown_fields_are_kept_byte_for_byte() -> None:
    # Over-long varints in an unknown field: pure betterproto keeps the bytes as they came, the
    # Rust codec re-encodes them minimally; greet._codec keeps them as pure betterproto does.
    wire = b"\x90\x00\x00" + b"\x12\x81\x00x"
    assert decode(NoParam, wire)._unknown_fields == wire
    assert pure_parse(NoParam, wire)._unknown_fields == wire
    assert encode(decode(NoParam, wire)) == wire
    if RUST_ACTIVE:
        assert NoParam().parse(wire)._unknown_fields == b"\x10\x00\x12\x01x"


def test_unknown_enum_values_are_kept_as_enum_instances() -> None:
    value = decode(Scalars, b"\x80\x01\x07").color
    assert isinstance(value, Color)
    assert value == 7
    assert encode(Scalars(color=value)) == b"\x80\x01\x07"


# --- malformed input ---------------------------------------------------------------------------

MALFORMED: list[tuple[str, type[betterproto.Message], bytes, str]] = [
    ("truncated key varint", HelloRequest, b"\x8a", r"varint at byte 0 runs past the end"),
    (
        "key without length",
        HelloRequest,
        b"\n",
        r"field 1 \(name\) at byte 0 is missing its length",
    ),
    ("truncated length varint", HelloRequest, b"\n\x85", r"varint at byte 1 runs past the end"),
    ("length past the end", HelloRequest, b"\n\x05Al", r"missing its 5 bytes \(2 are left\)"),
    (
        "unknown length past the end",
        HelloRequest,
        b"\x12\x05Al",
        r"field 2 at byte 0 is missing its 5 bytes",
    ),
    ("truncated varint value", Scalars, b"\x08\x80", r"varint at byte 1 runs past the end"),
    ("varint value missing", Scalars, b"\x08", r"field 1 \(i32\) at byte 0 is missing its varint"),
    ("unknown varint missing", HelloRequest, b"\x10", r"field 2 at byte 0 is missing its varint"),
    (
        "truncated fixed32",
        Scalars,
        b"\x3d\x01\x02",
        r"field 7 \(f32\) at byte 0 is missing its 4 bytes",
    ),
    (
        "truncated fixed64",
        Scalars,
        b"\x41\x01\x02\x03",
        r"field 8 \(f64\) at byte 0 is missing its 8 bytes",
    ),
    (
        "truncated unknown fixed64",
        HelloRequest,
        b"\x11\x00",
        r"field 2 at byte 0 is missing its 8 bytes",
    ),
    (
        "truncated unknown fixed32",
        HelloRequest,
        b"\x15\x00",
        r"field 2 at byte 0 is missing its 4 bytes",
    ),
    ("varint over 10 bytes", Scalars, b"\x08" + b"\xff" * 10 + b"\x01", r"longer than 10 bytes"),
    (
        "length varint over 10 bytes",
        HelloRequest,
        b"\n" + b"\x80" * 10 + b"\x00",
        r"longer than 10 bytes",
    ),
    ("varint over 64 bits", Scalars, b"\x20" + b"\xff" * 9 + b"\x02", r"larger than 64 bits"),
    (
        "unknown varint over 64 bits",
        HelloRequest,
        b"\x10" + b"\xff" * 9 + b"\x7f",
        r"larger than 64 bits",
    ),
    ("field number 0", HelloRequest, b"\x00\x01", r"field number 0 \(at byte 0\) is not valid"),
    ("field number 0, length-delimited", HelloRequest, b"\x02\x00", r"field number 0"),
    (
        "field number over 2**29 - 1",
        HelloRequest,
        varint(2**29 << 3) + b"\x01",
        r"field number 536870912 .* above the maximum",
    ),
    ("wire type 3 (start group)", HelloRequest, b"\x1b", r"wire type 3 \(a group\)"),
    ("wire type 4 (end group)", HelloRequest, b"\x1c", r"wire type 4 \(a group\)"),
    (
        "wire type 3 on a known field",
        HelloRequest,
        b"\x0b",
        r"field 1 \(name\) at byte 0 uses wire type 3 \(a group\)",
    ),
    ("wire type 6", HelloRequest, b"\x1e", r"invalid wire type 6"),
    ("wire type 7", HelloRequest, b"\x1f", r"invalid wire type 7"),
    (
        "varint for a string field",
        HelloRequest,
        b"\x08\x01",
        r"field 1 \(name\) at byte 0 has wire type 0 \(varint\), but string fields use wire type 2",
    ),
    (
        "fixed32 for a repeated string",
        NamesList,
        b"\x0d\x00\x00\x00\x00",
        r"wire type 5 \(32-bit\), but repeated string fields use wire type 2 \(length-delim",
    ),
    (
        "fixed32 for an int32",
        Scalars,
        b"\x0d\x00\x00\x00\x00",
        r"field 1 \(i32\) .* wire type 5 \(32-bit\), but int32 fields use wire type 0",
    ),
    (
        "packed for a singular int32",
        Scalars,
        b"\x0a\x01\x01",
        r"field 1 \(i32\) .* wire type 2 .*, but int32 fields use wire type 0 \(varint\)$",
    ),
    (
        "varint for a double",
        Scalars,
        b"\x70\x01",
        r"field 14 \(real\) .* but double fields use wire type 1 \(64-bit\)",
    ),
    (
        "fixed64 for a repeated int32",
        Repeated,
        b"\x09" + bytes(8),
        r"but repeated int32 fields use wire type 0 \(varint\) or 2 \(packed\)",
    ),
    (
        "packed fixed32 of 3 bytes",
        Repeated,
        b"\x3a\x03\x01\x02\x03",
        r"packed fixed32 data of 3 bytes is not a whole number of 4-byte values",
    ),
    (
        "packed double of 9 bytes",
        Repeated,
        b"\x72\x09" + bytes(9),
        r"packed double data of 9 bytes",
    ),
    (
        "truncated varint in a packed chunk",
        Repeated,
        b"\x0a\x02\x01\x81",
        r"varint at byte 3 runs past the end",
    ),
    (
        "packed chunk past the end",
        Repeated,
        b"\x0a\x05\x01",
        r"field 1 \(i32s\) at byte 0 is missing its 5 bytes",
    ),
    (
        "invalid UTF-8",
        HelloRequest,
        b"\n\x01\xff",
        r"field 1 \(name\) at byte 0 is not valid UTF-8: invalid start byte",
    ),
    ("UTF-8 cut short", HelloRequest, b"\n\x01\xc3", r"not valid UTF-8: unexpected end of data"),
    ("UTF-8 surrogate", HelloRequest, b"\n\x03\xed\xa0\x80", r"not valid UTF-8"),
    ("UTF-8 overlong", HelloRequest, b"\n\x02\xc0\xaf", r"not valid UTF-8"),
    (
        "invalid UTF-8 in a repeated string",
        NamesList,
        b"\n\x01a\n\x01\xff",
        r"field 1 \(names\) at byte 3 is not valid UTF-8",
    ),
    (
        "invalid UTF-8 in a two-byte-key string",
        Repeated,
        b"\xe2\x12\x01\xff",
        r"field 300 \(far_words\) at byte 0 is not valid UTF-8",
    ),
    (
        "ASCII run ending in a bare key",
        NamesList,
        b"\n\x01a\n",
        r"field 1 \(names\) at byte 3 is missing its length",
    ),
    (
        "bare key after an earlier ASCII run",
        NamesList,
        b"\n\x01a\n\x01b\x10\x01\n",
        r"field 1 \(names\) at byte 8 is missing its length",
    ),
    (
        "ASCII run with the last name cut short",
        NamesList,
        b"\n\x01a\n\x05ab",
        r"field 1 \(names\) at byte 3 is missing its 5 bytes",
    ),
    (
        "run with a name cut short",
        NamesList,
        b"\n\x02\xc3\xa9\n\x05ab",
        r"field 1 \(names\) at byte 4 is missing its 5 bytes",
    ),
    (
        "run with a length cut short",
        NamesList,
        b"\n\x02\xc3\xa9\n\x85",
        r"varint at byte 5 runs past the end",
    ),
]


@pytest.mark.parametrize(
    ("cls", "data", "message"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_decode_rejects_malformed_input(
    cls: type[betterproto.Message], data: bytes, message: str
) -> None:
    with pytest.raises(MalformedMessage, match=message):
        decode(cls, data)
    assert issubclass(MalformedMessage, ValueError)
    if RUST_ACTIVE:  # the Rust codec agrees that the input is malformed
        with pytest.raises(RuntimeError):
            cls().parse(data)


def test_rust_codec_is_compared_when_installed() -> None:
    # The "active codec" comparisons above are against the Rust codec wherever it is installed
    # (it is a default dependency where wheels exist), not silently against pure Python twice.
    installed = importlib.util.find_spec("betterproto_rust_codec") is not None
    assert installed == RUST_ACTIVE


# --- one decoder for every class: check_wire_format ---------------------------------------------


@pytest.mark.parametrize(
    ("cls", "data", "message"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_check_wire_format_rejects_what_decode_rejects(
    cls: type[betterproto.Message], data: bytes, message: str
) -> None:
    """The check for classes that are not simple walks the bytes as `decode` does: the same
    varint reader, the same field checks, the same words."""
    with pytest.raises(MalformedMessage, match=message):
        _codec.check_wire_format(cls, data)


@settings(max_examples=200, deadline=None)
@given(message=messages)
def test_check_wire_format_accepts_what_betterproto_writes(
    message: tuple[str, dict[str, Any]],
) -> None:
    name, fields = message
    cls = namespace["TYPES"][name]
    data = bytes(namespace["build"](name, fields)) + b"\xf8\x3e\x01"  # and an unknown field
    _codec.check_wire_format(cls, data)
    parsed = decode(cls, data, validate=True)
    assert parsed == cls().parse(data)
    assert encode(parsed) == bytes(parsed)


def test_check_wire_format_looks_inside_nested_messages() -> None:
    child = b"\x0a\x05Al"  # a HelloRequest whose name is cut short
    data = b"\x0a" + bytes([len(child)]) + child
    assert not is_simple(WithMessage)
    with pytest.raises(MalformedMessage, match=r"field 1 \(name\) at byte 2 is missing its 5"):
        _codec.check_wire_format(WithMessage, data)
    with pytest.raises(MalformedMessage, match="nested deeper than 100"):
        _codec.check_wire_format(WithMessage, data, depth=101)


def test_other_classes_are_decoded_strictly_by_whoever_parses() -> None:
    """Pure-Python betterproto accepts a truncated message that is not simple; decode does not,
    whether it checks itself (`validate=True`) or the Rust codec parses (`validate=None`)."""
    data = b"\x0a\x05A"
    assert pure_parse(WithOneof, data).name == "A"  # accepted as it is, silently
    for validate in (True, None):
        with pytest.raises(MalformedMessage):
            decode(WithOneof, data, validate=validate)
    with pytest.raises(MalformedMessage, match=r"field 1 \(name\) at byte 0 is missing its 5"):
        decode(WithOneof, data, validate=True)


# The two decoders greet had disagreed here: the validator for classes that were not simple read
# varints of any length up to 10 bytes, the simple decoder rejected those above 2**64 - 1.
OVER_64_BITS = b"\x10" + b"\xff" * 9 + b"\x7f"  # field 2, a varint of 70 bits


@pytest.mark.parametrize(
    ("cls", "data"),
    [
        (HelloRequest, b"\x0a\x01a" + OVER_64_BITS),  # simple, an unknown field
        (WithOneof, OVER_64_BITS),  # not simple, a known int32 field
        (WithMessage, b"\x0a\x0b" + OVER_64_BITS),  # not simple, inside a nested message
        (WithMap, b"\x0a\x0e\x0a\x01k" + OVER_64_BITS),  # not simple, a map entry's value
    ],
    ids=["simple", "oneof", "nested", "map"],
)
def test_a_varint_above_64_bits_is_rejected_everywhere(
    cls: type[betterproto.Message], data: bytes
) -> None:
    with pytest.raises(MalformedMessage, match="larger than 64 bits"):
        _codec.check_wire_format(cls, data)
    for validate in (True, None):  # None: the Rust codec checks where it parses
        with pytest.raises(MalformedMessage, match="larger than 64 bits" if validate else None):
            decode(cls, data, validate=validate)
        with pytest.raises(GRPCError) as raised:
            StrictProtoCodec(validate=validate).decode(data, cls)
        assert raised.value.status is Status.INVALID_ARGUMENT
        assert raised.value.message == f"malformed {cls.__name__} message: " + str(
            raised.value.__cause__
        )
        assert type(raised.value.__cause__) is MalformedMessage
    if RUST_ACTIVE:  # the Rust codec agrees
        with pytest.raises(RuntimeError):
            cls().parse(data)


# --- client and server: one codec, one MalformedMessage -----------------------------------------


class MalformedReplies(GreetService):
    """Replies whose bytes end in a field cut short: the codec writes unknown fields as they are."""

    async def say_hello(self, no_param: NoParam) -> HelloResponse:
        reply = HelloResponse(message="Hello")
        reply._unknown_fields = b"\x12\x05ab"  # field 2: 5 bytes announced, 2 there
        return reply


def malformed_message_in(error: BaseException) -> MalformedMessage | None:
    """The MalformedMessage an error was raised from, following its causes."""
    cause: BaseException | None = error
    while cause is not None and type(cause) is not MalformedMessage:
        cause = cause.__cause__
    return cause


async def test_a_malformed_request_is_invalid_argument_on_the_server(server: GreetServer) -> None:
    assert type(server.grpc_server.codec) is StrictProtoCodec
    peer = await RawPeer.connect(server.target)
    try:
        stream_id = peer.request("SayHelloBidirectionalStreaming", b"\x0a\x05Al")
        response = await peer.response(stream_id)
    finally:
        await peer.close()
    assert response.grpc_status == Status.INVALID_ARGUMENT.value
    assert response.grpc_message == (
        "malformed HelloRequest message: truncated message: field 1 (name) at byte 0 is missing "
        "its 5 bytes (2 are left)"
    )


async def test_a_malformed_reply_is_a_clear_error_on_the_client() -> None:
    server = TransportServer([MalformedReplies()])
    await server.start(sock=bound_socket())
    host, port = server.address
    try:
        async with GreetClient(f"{host}:{port}", timeout=30) as client:
            with pytest.raises(RpcError) as raised:
                await client.say_hello()
    finally:
        server.close()
        await server.wait_closed()
    assert raised.value.status is Status.INVALID_ARGUMENT
    assert str(raised.value.message) == (
        "malformed HelloResponse message: truncated message: field 2 at byte 7 is missing its "
        "5 bytes (2 are left)"
    )
    cause = malformed_message_in(raised.value)
    assert cause is not None, "the client's error does not come from the codec's MalformedMessage"
    assert str(cause).startswith("truncated message: field 2 at byte 7")
