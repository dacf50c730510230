"""The protobuf codec under betterproto's classes: one strict decoder, one encoder, one error.

Which upstream behaviour this covers: betterproto 2.0.0b7 (pinned) spends ~20 us constructing
`HelloResponse(message="Hello")` (its `__setattr__` and `__getattribute__` police oneof groups
by raising and catching AttributeError), ~11-20 us parsing a one-field message and ~4 us
serializing one, even with betterproto-rust-codec. Its pure-Python parser accepts truncated input
and wrong wire types, and fails on other garbage with assorted errors; the Rust codec rejects all
of it, with RuntimeError. Here every malformed message is `MalformedMessage`, whoever parses it,
and `StrictProtoCodec` (grpclib's ProtoCodec, used by greet's server and client alike) answers it
with INVALID_ARGUMENT. Nothing of betterproto's (or of `generated/`) is modified: instances are
made with `object.__new__(cls)` (`cls.__new__` for every simple class) and filled through their
`__dict__`, read with `object.__getattribute__` so that betterproto's `__getattribute__` never runs.

"Simple" classes (scalar and repeated-scalar fields only, see `is_simple`; all of greet's):
- `build(cls, **fields)` gives an instance whose `__dict__` equals `cls(**fields).__dict__` (keys,
  order, values, `_serialized_on_wire`, `_unknown_fields == b""`, a fresh `_group_current`).
- `decode(cls, data)` equals `cls().parse(data)` (`==`, `bytes()`, `_serialized_on_wire`,
  `_unknown_fields`; absent fields stay PLACEHOLDER) for every well-formed input, and raises
  `MalformedMessage` for the rest: a truncated varint or length, a varint longer than 10 bytes
  or above 64 bits, field number 0 or above 2**29 - 1, wire types 3, 4 (groups), 6 and 7, a wire
  type the field's type does not use (packed is accepted for repeated numeric fields), packed
  data that is not whole values, invalid UTF-8 in a string. Values follow protobuf and the Rust
  codec: the last value of a singular field wins, repeated fields (and packed chunks) accumulate,
  32-bit types keep the low 32 bits of the varint, enums are sign-extended int32s, as
  `Enum.try_value` members (pure-Python betterproto keeps the last packed chunk and all 64 bits).
  Unknown fields are kept byte for byte, as pure-Python betterproto keeps them.
- `encode(message)` is byte-identical to pure-Python betterproto's `bytes(message)` (and the Rust
  codec's), for instances from `build`, `decode` or the plain constructor alike; a value outside
  its field's Python type is handed to `bytes(message)`, whose result or error is the answer.

Any other betterproto class (message, map or oneof fields) is decoded as strictly:
`check_wire_format` walks the bytes with the same varint reader and field checks (nested messages
recursively), then betterproto's parser runs; where the Rust codec parses, its own check stands
instead. Other classes (google.protobuf's: health, reflection) use their own strict parser.

Private betterproto names read here, each with a contract test in
tests/test_upstream_contracts.py (`BETTERPROTO_PRIVATE_NAMES`): `Message._betterproto` (the
per-class `ProtoClassMetadata`, a classproperty) and its `meta_by_field_name`,
`field_name_by_number`, `oneof_group_by_field`, `default_gen`, `cls_by_field`; `FieldMetadata`'s
`number`, `proto_type`, `map_types`, `group`, `wraps`, `optional` and the dataclass field metadata
key `"betterproto"`; the instance attributes `_serialized_on_wire`, `_unknown_fields`,
`_group_current`; `PLACEHOLDER`; `Enum.try_value`; `Message.parse.__qualname__` (which tells
whether the Rust codec replaced the parser). Besides, the first time a class is used, `build` is
compared with the class's own constructor; if they differ (after an upgrade, say), the class is
not simple.
"""

from __future__ import annotations

import dataclasses
import inspect
import struct
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import betterproto
from betterproto import PLACEHOLDER, FieldMetadata, Message
from grpclib.const import Status
from grpclib.encoding.proto import ProtoCodec
from grpclib.exceptions import GRPCError

__all__ = [
    "BETTERPROTO_PRIVATE_NAMES",
    "MalformedMessage",
    "StrictProtoCodec",
    "build",
    "check_wire_format",
    "decode",
    "encode",
    "is_simple",
    "rust_codec_active",
]

BETTERPROTO_PRIVATE_NAMES: Final = (
    "Message._betterproto", "ProtoClassMetadata.meta_by_field_name",
    "ProtoClassMetadata.field_name_by_number", "ProtoClassMetadata.oneof_group_by_field",
    "ProtoClassMetadata.default_gen", "ProtoClassMetadata.cls_by_field", "FieldMetadata.number",
    "FieldMetadata.proto_type", "FieldMetadata.map_types", "FieldMetadata.group",
    "FieldMetadata.wraps", "FieldMetadata.optional", 'dataclasses.Field.metadata["betterproto"]',
    "Message._serialized_on_wire", "Message._unknown_fields", "Message._group_current",
    "PLACEHOLDER", "Enum.try_value", "Message.parse.__qualname__",
)  # fmt: skip
"""Every private (or internal-by-contract) betterproto name this module relies on."""

MessageT = TypeVar("MessageT", bound=Message)


class MalformedMessage(ValueError):
    """The bytes are not a valid protobuf encoding of the expected message."""


def rust_codec_active() -> bool:
    """True when betterproto-rust-codec has replaced `Message.parse` (it validates strictly)."""
    return Message.parse.__qualname__ != "Message.parse"


# --- the wire format ----------------------------------------------------------------------------

_WIRE_VARINT, _WIRE_FIXED64, _WIRE_LEN, _WIRE_FIXED32 = 0, 1, 2, 5
_WIRE_NAMES: Final = {0: "0 (varint)", 1: "1 (64-bit)", 2: "2 (length-delimited)", 5: "5 (32-bit)"}
_MAX_FIELD_NUMBER: Final = (1 << 29) - 1
_MAX_KEY: Final = 0xFFFF_FFFF  # (_MAX_FIELD_NUMBER << 3) | 7
_MAX_NESTING: Final = 100  # protobuf's default recursion limit
_SMALL_VARINTS: Final = tuple(bytes((value,)) for value in range(0x80))


def _read_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """The varint starting at `data[pos]` (which must be before `end`) and the position after."""
    start = pos
    result = 0
    shift = 0
    while pos < end:
        byte = data[pos]
        pos += 1
        if shift == 63:  # the 10th byte holds bit 63 only
            if byte & 0x80:
                raise MalformedMessage(f"the varint at byte {start} is longer than 10 bytes")
            if byte > 1:
                raise MalformedMessage(f"the varint at byte {start} is larger than 64 bits")
            return result | (byte << 63), pos
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
    raise MalformedMessage(f"truncated message: the varint at byte {start} runs past the end")


def _varint_bytes(value: int) -> bytes:
    """betterproto's `encode_varint`: negative values as their 64-bit two's complement."""
    if 0 <= value < 0x80:
        return _SMALL_VARINTS[value]
    if value < 0:
        if value < -(1 << 63):
            raise ValueError("a negative value below -2**63 does not fit in a 64-bit varint")
        value += 1 << 64
    out = bytearray()
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


# --- field rules and plans ----------------------------------------------------------------------

# One small int per way of reading or writing a field; the hot loops dispatch on them.
_STRING, _BYTES = 0, 1
_INT32, _INT64, _UINT32, _UINT64, _SINT32, _SINT64, _BOOL, _ENUM = 2, 3, 4, 5, 6, 7, 8, 9
_FIXED = 10  # fixed32, fixed64, sfixed32, sfixed64, float, double: struct-packed
_PACKED_VARINT, _PACKED_FIXED = 11, 12  # decode only: a packed chunk of a repeated field

_VARINT_TYPES: Final = ("int32", "int64", "uint32", "uint64", "sint32", "sint64", "bool", "enum")
_VARINT_KINDS: Final = dict(zip(_VARINT_TYPES, range(_INT32, _ENUM + 1), strict=True))
_FIXED_FORMATS: Final = {
    "fixed32": "I", "sfixed32": "i", "float": "f", "fixed64": "Q", "sfixed64": "q", "double": "d"
}  # fmt: skip
_PYTHON_TYPES: Final[dict[str, type]] = {
    "string": str, "bytes": bytes, "bool": bool, "float": float, "double": float,
    **dict.fromkeys(("int32", "int64", "uint32", "uint64", "sint32", "sint64"), int),
    **dict.fromkeys(("fixed32", "fixed64", "sfixed32", "sfixed64"), int),
}  # fmt: skip
"""Scalar proto type -> the Python type betterproto holds it in (enums: an Enum subclass)."""

# Methods whose betterproto implementation this module reproduces: a class that overrides any of
# them (or that betterproto-rust-codec would not serve the same way) is not simple.
_REPRODUCED_METHODS: Final = (
    "__new__", "__post_init__", "__setattr__", "__getattribute__", "__bytes__",
    "SerializeToString", "parse", "load", "dump", "FromString", "_get_field_default",
)  # fmt: skip

_object_getattribute: Final = object.__getattribute__
_object_new: Final = object.__new__


@dataclass(frozen=True, slots=True)
class _FieldRule:
    """What one known field may look like on the wire (and its name, for error messages)."""

    number: int
    name: str
    proto_type: str
    wire_type: int
    repeated: bool
    packable: bool  # a repeated numeric field: a length-delimited chunk of values is allowed
    nested: type[Message] | None = None  # a message (or map entry) field's class


def _wire_type(proto_type: str) -> int:
    if proto_type in _VARINT_KINDS:
        return _WIRE_VARINT
    if proto_type in _FIXED_FORMATS:
        return _WIRE_FIXED32 if _FIXED_FORMATS[proto_type] in "Iif" else _WIRE_FIXED64
    return _WIRE_LEN  # string, bytes, message, map


@dataclass(frozen=True, slots=True)
class _Plan:
    """Everything `build`, `decode` and `encode` need for one simple class, computed once."""

    field_names: frozenset[str]
    absent: dict[str, Any]  # field -> the value that means "not set" (PLACEHOLDER or None)
    built_template: dict[str, Any]  # the `__dict__` of cls(), in order
    decoded_template: dict[str, Any]  # the `__dict__` of cls().parse(b"")
    # wire key -> (field name, kind, repeated, extra); extra: the Enum class or a struct.Struct
    by_key: dict[int, tuple[str, int, bool, Any]]
    rules: dict[int, _FieldRule]
    # (field name, kind, repeated, optional, key bytes, default, extra) in betterproto's order
    writers: tuple[tuple[str, int, bool, bool, bytes, Any, Any], ...]
    # (field name, key byte) when the class has one field, a plain string with a one-byte key
    # (HelloRequest, HelloResponse): build, decode and encode take a shortcut for it
    single_string: tuple[str, int] | None = None


_NOT_COMPILED: Final[Any] = object()
_plans: dict[type, _Plan | None] = {}
"""Class -> its plan, or None when it is not simple. Classes are kept alive (generated message
classes live as long as the process anyway)."""
_other_rules: dict[type, dict[int, _FieldRule]] = {}
"""Class that is not simple -> its field rules, for `check_wire_format`."""


def is_simple(cls: type) -> bool:
    """True if `cls` is a betterproto message class this module builds, decodes and encodes.

    Simple: a dataclass subclass of `betterproto.Message` whose fields are all scalars (string,
    bytes, bool, the integer types, float, double, enums) or repeated scalars, optionally
    proto3 `optional`, with no oneof group, message or map field; betterproto's field metadata
    matching its dataclass fields; none of betterproto's construction or (de)serialization
    methods overridden; and the class's own constructor giving the same instance as `build`.
    """
    if not isinstance(cls, type):
        return False
    plan = _plans.get(cls, _NOT_COMPILED)
    if plan is _NOT_COMPILED:
        plan = _compile(cls)
    return plan is not None


def _compile(cls: type) -> _Plan | None:
    try:
        plan = _make_plan(cls)
        if plan is not None and not _constructor_agrees(cls, plan):
            plan = None
    except Exception:  # metadata betterproto cannot compute (e.g. unresolvable type hints)
        plan = None
    _plans[cls] = plan
    return plan


def _make_plan(cls: type) -> _Plan | None:
    if not (isinstance(cls, type) and issubclass(cls, Message) and cls is not Message):
        return None
    if not dataclasses.is_dataclass(cls):
        return None
    for name in _REPRODUCED_METHODS:
        if inspect.getattr_static(cls, name) is not inspect.getattr_static(Message, name):
            return None
    meta = cls._betterproto  # betterproto's per-class metadata (a classproperty)
    if meta.oneof_group_by_field:
        return None
    fields = dataclasses.fields(cls)
    if [field.name for field in fields] != list(meta.meta_by_field_name):
        return None
    if len(meta.field_name_by_number) != len(fields):
        return None  # two fields share a number
    init_parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    if [parameter.name for parameter in init_parameters] != [field.name for field in fields]:
        return None

    absent: dict[str, Any] = {}
    by_key: dict[int, tuple[str, int, bool, Any]] = {}
    rules: dict[int, _FieldRule] = {}
    writers: list[tuple[str, int, bool, bool, bytes, Any, Any]] = []
    for field, parameter in zip(fields, init_parameters, strict=True):
        name = field.name
        field_meta: FieldMetadata = field.metadata.get("betterproto")  # FieldMetadata.get
        if field_meta is None or field_meta is not meta.meta_by_field_name[name]:
            return None
        number, proto_type, optional = field_meta.number, field_meta.proto_type, field_meta.optional
        if field_meta.group is not None or field_meta.map_types is not None or field_meta.wraps:
            return None
        if not 1 <= number <= _MAX_FIELD_NUMBER or meta.field_name_by_number.get(number) != name:
            return None
        unset = None if optional else PLACEHOLDER
        if field.default is not unset or field.default_factory is not dataclasses.MISSING:
            return None
        if not field.init or parameter.default is not unset:
            return None
        if parameter.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD:
            return None

        element = meta.cls_by_field.get(name)
        default_gen = meta.default_gen.get(name)
        if proto_type == betterproto.TYPE_ENUM:
            if not (isinstance(element, type) and issubclass(element, betterproto.Enum)):
                return None
            singular_default_gen: Any = element.try_value
        else:
            if proto_type not in _PYTHON_TYPES or element is not _PYTHON_TYPES[proto_type]:
                return None
            singular_default_gen = element
        if optional:
            repeated = False
            if default_gen is not type(None):
                return None
        elif default_gen is list:
            repeated = True
        elif default_gen == singular_default_gen:
            repeated = False
        else:
            return None

        extra: Any = element if proto_type == betterproto.TYPE_ENUM else None
        wire_type = _wire_type(proto_type)
        if proto_type in (betterproto.TYPE_STRING, betterproto.TYPE_BYTES):
            kind = _STRING if proto_type == betterproto.TYPE_STRING else _BYTES
        elif wire_type == _WIRE_VARINT:
            kind = _VARINT_KINDS[proto_type]
        else:
            kind, extra = _FIXED, struct.Struct("<" + _FIXED_FORMATS[proto_type])
        packable = repeated and kind not in (_STRING, _BYTES)

        absent[name] = unset
        rules[number] = _FieldRule(number, name, proto_type, wire_type, repeated, packable)
        by_key[(number << 3) | wire_type] = (name, kind, repeated, extra)
        if packable:
            packed_kind = _PACKED_FIXED if kind == _FIXED else _PACKED_VARINT
            by_key[(number << 3) | _WIRE_LEN] = (name, packed_kind, True, (kind, extra))
        key = _varint_bytes((number << 3) | (_WIRE_LEN if packable else wire_type))
        default = [] if repeated else (None if optional else singular_default_gen())
        writers.append((name, kind, repeated, bool(optional), key, default, extra))

    built_template = {"_serialized_on_wire": False, **absent}
    built_template.update({"_unknown_fields": b"", "_group_current": None})
    single_string = None
    if len(writers) == 1:
        name, kind, repeated, optional, key, _, _ = writers[0]
        if kind == _STRING and not repeated and not optional and len(key) == 1:
            single_string = (name, key[0])
    return _Plan(
        field_names=frozenset(absent),
        absent=absent,
        built_template=built_template,
        decoded_template=dict(built_template, _serialized_on_wire=True),
        by_key=by_key,
        rules=rules,
        writers=tuple(writers),
        single_string=single_string,
    )


def _constructor_agrees(cls: type, plan: _Plan) -> bool:
    """Does `cls(...)` give the instance `plan` describes, with no fields and with all set?

    (The tests check that `build` gives what the plan describes.)"""
    probes: dict[str, Any] = {name: object() for name in plan.field_names}
    for fields in ({}, probes):
        actual = _object_getattribute(cls(**fields), "__dict__")
        expected = dict(plan.built_template, **fields)
        expected["_serialized_on_wire"] = bool(fields)
        expected["_group_current"] = {}
        if list(actual) != list(expected):
            return False
        for key, value in expected.items():
            other = actual[key]
            if key in ("_unknown_fields", "_group_current"):
                if type(value) is not type(other) or value != other:
                    return False
            elif value is not other:
                return False
    return True


def _rules_of(cls: type[Message]) -> dict[int, _FieldRule]:
    """Field number -> rule for any betterproto class, from its metadata (cached)."""
    rules = _other_rules.get(cls)
    if rules is None:
        meta = cls._betterproto  # type: ignore[arg-type]  # betterproto's classproperty
        rules = {}
        for number, name in meta.field_name_by_number.items():
            proto_type = meta.meta_by_field_name[name].proto_type
            nested = meta.cls_by_field.get(name)
            if not (isinstance(nested, type) and issubclass(nested, Message)):
                nested = None
            repeated = meta.default_gen.get(name) is list
            packable = repeated and _wire_type(proto_type) != _WIRE_LEN
            wire_type = _wire_type(proto_type)
            rules[number] = _FieldRule(
                number, name, proto_type, wire_type, repeated, packable, nested
            )
        _other_rules[cls] = rules
    return rules


# --- build --------------------------------------------------------------------------------------

_PLAIN_VALUE_TYPES: Final = frozenset({str, bytes, int, bool, float, list, type(None)})


def build(cls: type[MessageT], /, **fields: Any) -> MessageT:
    """`cls(**fields)`, without betterproto's per-attribute bookkeeping for simple classes.

    An unknown field name raises the dataclass's own TypeError.
    """
    plan = _plans.get(cls, _NOT_COMPILED)
    if plan is _NOT_COMPILED:
        plan = _compile(cls)
    if plan is None:
        return cls(**fields)
    single = plan.single_string
    if single is not None and len(fields) == 1:
        name = single[0]
        value = fields.get(name, _NOT_COMPILED)
        if type(value) is str:  # the shortcut: one string field, given as a str
            message: MessageT = _object_new(cls)
            state = _object_getattribute(message, "__dict__")
            state.update(plan.built_template)
            state[name] = value
            state["_serialized_on_wire"] = True
            state["_group_current"] = {}
            return message
    serialized = False
    if fields:
        absent = plan.absent
        for name, value in fields.items():
            unset = absent.get(name, _NOT_COMPILED)
            if unset is _NOT_COMPILED:
                return cls(**fields)  # not a field: the dataclass raises its TypeError
            if type(value) not in _PLAIN_VALUE_TYPES and isinstance(value, Message):
                return cls(**fields)  # betterproto's __setattr__ marks some messages serialized
            if value is not unset and value is not PLACEHOLDER:
                serialized = True  # as betterproto's __post_init__ decides
    message = _object_new(cls)
    state = _object_getattribute(message, "__dict__")
    state.update(plan.built_template)
    if fields:
        state.update(fields)
        if serialized:
            state["_serialized_on_wire"] = True
    state["_group_current"] = {}
    return message


# --- decode -------------------------------------------------------------------------------------


def decode(cls: type[MessageT], data: bytes, validate: bool | None = None) -> MessageT:
    """Parse `data` as a `cls`, strictly: `MalformedMessage` for anything but a valid encoding.

    `validate` (classes that are not simple): run `check_wire_format` before betterproto's
    parser; None: unless the Rust codec parses (it checks for itself).
    """
    plan = _plans.get(cls, _NOT_COMPILED)
    if plan is _NOT_COMPILED:
        plan = _compile(cls)
    if plan is None:
        return _decode_other(cls, data, validate)
    message: MessageT = _object_new(cls)
    state = _object_getattribute(message, "__dict__")
    state.update(plan.decoded_template)
    if data:
        if type(data) is not bytes:
            data = bytes(data)
        single = plan.single_string
        if (  # the shortcut: exactly one occurrence of the one string field, ASCII, < 128 bytes
            single is not None
            and data[0] == single[1]
            and len(data) >= 2
            and data[1] == len(data) - 2
            and data[1] < 0x80
            and data.isascii()
        ):
            state[single[0]] = data[2:].decode("ascii")
            state["_group_current"] = {}
            return message
        unknown = _decode_fields(plan, data, state)
        if unknown:
            state["_unknown_fields"] = unknown
    state["_group_current"] = {}
    return message


def _decode_other(cls: type[MessageT], data: bytes, validate: bool | None) -> MessageT:
    """A class that is not simple: betterproto's parser after `check_wire_format` (or the Rust
    codec's own check), or google.protobuf's; any error as MalformedMessage."""
    if issubclass(cls, Message) and (not rust_codec_active() if validate is None else validate):
        check_wire_format(cls, data)
    try:
        return cls.FromString(data)
    except Exception as error:  # the Rust codec's RuntimeError, google.protobuf's DecodeError
        raise MalformedMessage(str(error) or type(error).__name__) from error


def check_wire_format(cls: type[Message], data: bytes, start: int = 0, end: int | None = None,
                      depth: int = 0) -> None:  # fmt: skip
    """Raise MalformedMessage unless `data[start:end]` is a well-formed `cls` (any betterproto
    class): what `decode` rejects for a simple class, with nested messages checked recursively."""
    if depth > _MAX_NESTING:
        raise MalformedMessage(f"messages nested deeper than {_MAX_NESTING}")
    if type(data) is not bytes:
        data = bytes(data)
    rules = _rules_of(cls)
    end = len(data) if end is None else end
    pos = start
    while pos < end:
        field_start = pos
        key, pos = _read_varint(data, pos, end)
        field_end = _skip_field(rules, data, field_start, key, pos, end)
        rule = rules.get(key >> 3)
        if rule is not None and key & 7 == _WIRE_LEN:
            pos = _length(rules, data, key, field_start, pos, end)[0]
            if rule.proto_type == betterproto.TYPE_STRING:
                try:
                    data[pos:field_end].decode()
                except UnicodeDecodeError as error:
                    raise _not_utf8(rules, key, field_start, error) from None
            elif rule.nested is not None:
                check_wire_format(rule.nested, data, pos, field_end, depth + 1)
            elif rule.packable and rule.wire_type == _WIRE_VARINT:
                while pos < field_end:
                    _, pos = _read_varint(data, pos, field_end)
            elif rule.packable:
                width = 8 if rule.wire_type == _WIRE_FIXED64 else 4
                if (field_end - pos) % width:
                    raise _not_whole(rule, field_start, field_end - pos, width)
        pos = field_end


def _decode_fields(plan: _Plan, data: bytes, state: dict[str, Any]) -> bytes:
    """Store the known fields of `data` in `state` (an instance dict, from `decoded_template`);
    return the unknown fields' bytes."""
    size = len(data)
    by_key = plan.by_key
    unknown: list[bytes] | None = None
    text: str | None = None  # `data` as str if it is all ASCII, made when a run needs it
    ascii_checked = False
    pos = 0
    while pos < size:
        start = pos
        key = data[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = _read_varint(data, pos, size)
        entry = by_key.get(key)
        if entry is None:
            pos = _skip_field(plan.rules, data, start, key, pos, size)
            if unknown is None:
                unknown = []
            unknown.append(data[start:pos])
            continue
        name, kind, repeated, extra = entry
        if kind <= _BYTES and repeated:
            current = state[name]
            if current is PLACEHOLDER:
                current = state[name] = []
            if not ascii_checked and key < 0x80 and _run_continues(data, pos, size, key):
                ascii_checked = True  # once per message: a scan per run could be quadratic
                text = data.decode("ascii") if data.isascii() else None
            pos = _decode_run(plan.rules, data, start, pos, size, key, kind, current, text)
            continue
        if kind <= _BYTES or kind >= _PACKED_VARINT:  # length-delimited
            pos, end = _length(plan.rules, data, key, start, pos, size)
            if kind == _STRING:
                try:
                    value: Any = data[pos:end].decode()
                except UnicodeDecodeError as error:
                    raise _not_utf8(plan.rules, key, start, error) from None
            elif kind == _BYTES:
                value = data[pos:end]
            else:
                chunk = _decode_packed(plan.rules, key, start, data, pos, end, kind, extra)
                current = state[name]
                if current is PLACEHOLDER:
                    state[name] = chunk
                else:
                    current.extend(chunk)
                pos = end
                continue
            pos = end
        elif kind == _FIXED:
            end = pos + extra.size
            if end > size:
                raise _truncated(plan.rules, key, start, f"its {extra.size} bytes")
            value = extra.unpack_from(data, pos)[0]
            pos = end
        else:
            if pos >= size:
                raise _truncated(plan.rules, key, start, "its varint value")
            value = data[pos]
            if value < 0x80:
                pos += 1
            else:
                value, pos = _read_varint(data, pos, size)
            if kind != _UINT64:
                value = _convert_varint(kind, value, extra)
        if repeated:
            current = state[name]
            if current is PLACEHOLDER:
                state[name] = [value]
            else:
                current.append(value)
        else:
            state[name] = value
    return b"".join(unknown) if unknown is not None else b""


def _run_continues(data: bytes, pos: int, size: int, key: int) -> bool:
    """Is the length-delimited field whose length starts at `pos` followed by `key` again?"""
    if pos >= size:
        return False
    length = data[pos]
    end = pos + 1 + length
    return length < 0x80 and end < size and data[end] == key


def _decode_run(
    rules: dict[int, _FieldRule],
    data: bytes,
    start: int,
    pos: int,
    size: int,
    key: int,
    kind: int,
    out: list[Any],
    text: str | None,
) -> int:
    """Append a run of one repeated string or bytes field (one-byte `key`) to `out`.

    `start` is where the first element's key is and `pos` where its length is; the run goes on
    while the next byte is `key`. With `text` (all of `data` decoded as ASCII: every length is
    then a one-byte varint and every string valid) elements are slices of it; otherwise each is
    checked and decoded on its own. Returns the position after the run.
    """
    append = out.append
    if text is not None and key < 0x80:
        # All ASCII: keys and lengths are one byte each. `payload` is where an element's bytes
        # start (its length is the byte before); the run ends where the next byte is not `key`,
        # or, through IndexError, at the end of `data`.
        source: str | bytes = text if kind == _STRING else data
        payload = pos + 1
        end = pos
        try:
            while True:
                end = payload + data[payload - 1]
                append(source[payload:end])
                if data[end] != key:
                    return end
                payload = end + 2
        except IndexError:
            if payload - 1 >= size:  # the last byte is `key`: its length is missing
                raise _truncated(rules, key, payload - 2, "its length") from None
            if end > size:
                what = f"its {end - payload} bytes ({size - payload} are left)"
                raise _truncated(rules, key, payload - 2, what) from None
            return end
    while True:
        pos, end = _length(rules, data, key, start, pos, size)
        if kind == _STRING:
            try:
                append(data[pos:end].decode())
            except UnicodeDecodeError as error:
                raise _not_utf8(rules, key, start, error) from None
        else:
            append(data[pos:end])
        if key < 0x80 and end < size and data[end] == key:
            start = end
            pos = end + 1
        else:
            return end


def _convert_varint(kind: int, value: int, enum_cls: Any) -> Any:
    """A varint's value as the field's type reads it (protobuf's rules for each type)."""
    if kind in (_INT32, _ENUM):
        value &= 0xFFFF_FFFF
        if value & 0x8000_0000:
            value -= 1 << 32
        return enum_cls.try_value(value) if kind == _ENUM else value
    if kind == _INT64:
        return value - (1 << 64) if value & (1 << 63) else value
    if kind == _UINT32:
        return value & 0xFFFF_FFFF
    if kind == _SINT32:
        value &= 0xFFFF_FFFF
        return (value >> 1) ^ -(value & 1)
    if kind == _SINT64:
        return (value >> 1) ^ -(value & 1)
    if kind == _BOOL:
        return value != 0
    return value  # uint64


def _decode_packed(
    rules: dict[int, _FieldRule],
    key: int,
    start: int,
    data: bytes,
    pos: int,
    end: int,
    kind: int,
    extra: tuple[int, Any],
) -> list[Any]:
    element_kind, element_extra = extra
    if kind == _PACKED_FIXED:
        width = element_extra.size
        count, rest = divmod(end - pos, width)
        if rest:
            raise _not_whole(rules[key >> 3], start, end - pos, width)
        return list(struct.unpack_from(f"<{count}{element_extra.format[1:]}", data, pos))
    chunk: list[Any] = []
    while pos < end:
        value = data[pos]
        if value < 0x80:
            pos += 1
        else:
            value, pos = _read_varint(data, pos, end)  # the chunk's end bounds its varints
        if element_kind != _UINT64:
            value = _convert_varint(element_kind, value, element_extra)
        chunk.append(value)
    return chunk


def _skip_field(
    rules: dict[int, _FieldRule], data: bytes, start: int, key: int, pos: int, size: int
) -> int:
    """Check the key of the field at `start` (its value is at `pos`) and return where the field
    ends, or raise: `decode` calls it for keys it does not read itself, `check_wire_format` for
    every key."""
    number = key >> 3
    wire_type = key & 7
    if number == 0:
        raise MalformedMessage(f"field number 0 (at byte {start}) is not valid")
    if key > _MAX_KEY:
        raise MalformedMessage(
            f"field number {number} (at byte {start}) is above the maximum, {_MAX_FIELD_NUMBER}"
        )
    label = _field_label(rules, key)
    if wire_type in (3, 4):
        raise MalformedMessage(
            f"{label} at byte {start} uses wire type {wire_type} (a group), "
            "which proto3 does not support"
        )
    if wire_type in (6, 7):
        raise MalformedMessage(f"{label} at byte {start} has invalid wire type {wire_type}")
    rule = rules.get(number)
    if rule is not None and not (
        wire_type == rule.wire_type or (wire_type == _WIRE_LEN and rule.packable)
    ):
        allowed = _WIRE_NAMES[rule.wire_type] + " or 2 (packed)" * rule.packable
        raise MalformedMessage(
            f"{label} at byte {start} has wire type {_WIRE_NAMES[wire_type]}, but "
            f"{'repeated ' * rule.repeated}{rule.proto_type} fields use wire type {allowed}"
        )
    if wire_type == _WIRE_VARINT:
        if pos >= size:
            raise _truncated(rules, key, start, "its varint value")
        _, pos = _read_varint(data, pos, size)
        return pos
    if wire_type == _WIRE_LEN:
        return _length(rules, data, key, start, pos, size)[1]
    width = 8 if wire_type == _WIRE_FIXED64 else 4
    if pos + width > size:
        raise _truncated(rules, key, start, f"its {width} bytes")
    return pos + width


def _length(
    rules: dict[int, _FieldRule], data: bytes, key: int, start: int, pos: int, size: int
) -> tuple[int, int]:
    """Where the bytes of the length-delimited field at `start` begin and end (its length is at
    `pos`); MalformedMessage if either runs past `size`."""
    if pos >= size:
        raise _truncated(rules, key, start, "its length")
    length = data[pos]
    if length < 0x80:
        pos += 1
    else:
        length, pos = _read_varint(data, pos, size)
    if pos + length > size:
        raise _truncated(rules, key, start, f"its {length} bytes ({size - pos} are left)")
    return pos, pos + length


def _field_label(rules: dict[int, _FieldRule], key: int) -> str:
    rule = rules.get(key >> 3)
    return f"field {key >> 3}" + (f" ({rule.name})" if rule is not None else "")


def _truncated(rules: dict[int, _FieldRule], key: int, start: int, what: str) -> MalformedMessage:
    return MalformedMessage(
        f"truncated message: {_field_label(rules, key)} at byte {start} is missing {what}"
    )


def _not_whole(rule: _FieldRule, start: int, length: int, width: int) -> MalformedMessage:
    return MalformedMessage(
        f"field {rule.number} ({rule.name}) at byte {start}: packed {rule.proto_type} data of "
        f"{length} bytes is not a whole number of {width}-byte values"
    )


def _not_utf8(
    rules: dict[int, _FieldRule], key: int, start: int, error: UnicodeDecodeError
) -> MalformedMessage:
    return MalformedMessage(
        f"{_field_label(rules, key)} at byte {start} is not valid UTF-8: {error.reason} "
        f"at offset {error.start} of the string"
    )


# --- encode -------------------------------------------------------------------------------------


class _NotPlainValue(Exception):
    """A field holds a value of a type the fast encoder does not write itself."""


def encode(message: Any) -> bytes:
    """`bytes(message)`, without betterproto's per-attribute bookkeeping for simple classes
    (any other message: `message.SerializeToString()`)."""
    cls = type(message)
    plan = _plans.get(cls, _NOT_COMPILED)
    if plan is _NOT_COMPILED:
        plan = _compile(cls)
    if plan is None:
        serialized: bytes = message.SerializeToString()
        return serialized
    state = _object_getattribute(message, "__dict__")
    single = plan.single_string
    if single is not None:
        value = state[single[0]]
        if type(value) is str and not state["_unknown_fields"]:
            if not value:
                return b""
            if value.isascii() and len(value) < 0x80:  # the shortcut: key, length, bytes
                return bytes((single[1], len(value))) + value.encode()
    try:
        return _encode_fields(plan, state)
    except Exception:
        # A value outside its field's type (or a mangled instance): betterproto decides, with
        # its own result or error.
        return bytes(message)


def _encode_fields(plan: _Plan, state: dict[str, Any]) -> bytes:
    """The fields of `state` (an instance dict) as betterproto's `Message.dump` writes them."""
    parts: list[bytes] = []
    append = parts.append
    small = _SMALL_VARINTS
    for name, kind, repeated, optional, key, default, extra in plan.writers:
        value = state[name]
        if value is PLACEHOLDER or value is None:
            continue
        if repeated:
            if type(value) is not list:
                raise _NotPlainValue(name)
            if not value:
                continue
            if kind <= _BYTES:
                for item in value:
                    if kind == _STRING:
                        if type(item) is not str:
                            raise _NotPlainValue(name)
                        item = item.encode()
                    elif type(item) is not bytes:
                        raise _NotPlainValue(name)
                    length = len(item)
                    append(key)
                    append(small[length] if length < 0x80 else _varint_bytes(length))
                    append(item)
                continue
            if kind == _FIXED:
                packed = struct.pack(f"<{len(value)}{extra.format[1:]}", *value)
            else:
                packed = b"".join([_varint_value(kind, item) for item in value])
            append(key)
            append(_varint_bytes(len(packed)))
            append(packed)
            continue
        if not optional and value == default:
            continue
        if kind == _STRING:
            if type(value) is not str:
                raise _NotPlainValue(name)
            value = value.encode()
            length = len(value)
            append(key)
            append(small[length] if length < 0x80 else _varint_bytes(length))
            append(value)
        elif kind == _BYTES:
            if type(value) is not bytes:
                raise _NotPlainValue(name)
            length = len(value)
            append(key)
            append(small[length] if length < 0x80 else _varint_bytes(length))
            append(value)
        elif kind == _FIXED:
            append(key)
            append(extra.pack(value))
        else:
            append(key)
            append(_varint_value(kind, value))
    unknown = state["_unknown_fields"]
    if unknown:
        if type(unknown) is not bytes:
            raise _NotPlainValue("_unknown_fields")
        append(unknown)
    return b"".join(parts)


def _varint_value(kind: int, value: Any) -> bytes:
    """A varint-typed value as betterproto writes it (zig-zag for sint32/sint64)."""
    if not isinstance(value, int):
        raise _NotPlainValue(kind)
    if kind in (_SINT32, _SINT64):
        value = value << 1 if value >= 0 else (value << 1) ^ ~0
    return _varint_bytes(value)


# --- grpclib ------------------------------------------------------------------------------------


class StrictProtoCodec(ProtoCodec):
    """grpclib's proto codec on this module: a malformed message is INVALID_ARGUMENT (its cause
    the MalformedMessage), never UNKNOWN, on the server and on the client alike.

    `validate`: see `decode` (None: check classes that are not simple unless the Rust codec
    parses them).
    """

    def __init__(self, *, validate: bool | None = None) -> None:
        self.validate = not rust_codec_active() if validate is None else validate

    def decode(self, data: bytes, message_type: Any) -> Any:
        try:
            return decode(message_type, data, self.validate)
        except MalformedMessage as error:
            raise GRPCError(
                Status.INVALID_ARGUMENT, f"malformed {message_type.__name__} message: {error}"
            ) from error

    def encode(self, message: Any, message_type: Any) -> bytes:
        if type(message) is not message_type:
            return super().encode(message, message_type)  # grpclib's TypeError, or a subclass
        return encode(message)
