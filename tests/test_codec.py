"""betterproto-rust-codec against pure-Python betterproto, and the pure-Python fallback.

The Rust codec replaces `Message.__bytes__` and `Message.parse` when it is importable (a default
dependency where it has wheels). Its output must be byte-identical to pure-Python betterproto's:
each message is serialized here (Rust) and in a reference child process that blocks the module
(pure Python), for greet's messages and for a message with every kind of field. The one
difference found (map entries holding a default key or value) is pinned in its own test.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import betterproto
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from server_process import ServerProcess

from greet.transport.decoding import rust_codec_active
from greet_service import GreetServiceStub, HelloRequest, NamesList, NoParam

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
