"""Strict decoding: a malformed request message is INVALID_ARGUMENT, never UNKNOWN.

Pure-Python betterproto 2.0.0b7 silently accepts a truncated message (a length that runs past the
end, a varint cut short) and a wrong wire type, and raises UnicodeDecodeError/KeyError/TypeError on
other garbage. betterproto-rust-codec, when installed, rejects all of them, but with RuntimeError.
`StrictProtoCodec` checks the bytes with `check_wire_format` first when the pure-Python decoder is
in use, and reports either decoder's error as INVALID_ARGUMENT.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import betterproto
from grpclib.const import Status
from grpclib.encoding.proto import ProtoCodec
from grpclib.exceptions import GRPCError

from greet.messages import decode as decode_message
from greet.messages import encode as encode_message
from greet.messages import is_simple

__all__ = [
    "MalformedMessage",
    "StrictProtoCodec",
    "check_wire_format",
    "rust_codec_active",
]


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

    Simple betterproto messages (all of greet's) go through greet.messages, which decodes
    strictly and encodes byte-identically, at a small fraction of betterproto's cost. Other
    betterproto messages are checked by `check_wire_format` first when pure-Python betterproto
    decodes them (it would accept truncated input silently); betterproto-rust-codec checks them
    itself, and its error is reported the same way. google.protobuf messages (health,
    reflection) decode strictly on their own. `validate=None` chooses by what is installed.
    """

    def __init__(self, *, validate: bool | None = None) -> None:
        self.validate = not rust_codec_active() if validate is None else validate
        self._simple: dict[type, bool] = {}

    def _is_simple(self, message_type: type) -> bool:
        simple = self._simple.get(message_type)
        if simple is None:
            simple = self._simple[message_type] = is_simple(message_type)
        return simple

    def decode(self, data: bytes, message_type: Any) -> Any:
        try:
            if self._is_simple(message_type):
                return decode_message(message_type, data)
            if self.validate and issubclass(message_type, betterproto.Message):
                check_wire_format(data, message_type)
            return message_type.FromString(data)
        except Exception as error:
            raise GRPCError(
                Status.INVALID_ARGUMENT, f"malformed {message_type.__name__} message: {error}"
            ) from error

    def encode(self, message: Any, message_type: Any) -> bytes:
        kind = type(message)
        if kind is message_type and self._is_simple(kind):
            return encode_message(message)
        return super().encode(message, message_type)
