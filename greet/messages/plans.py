"""Which message classes are simple, and each one's plan: how `build`, `decode` and `encode`
(greet.messages) read and write its fields, computed once per class."""

from __future__ import annotations

import dataclasses
import inspect
import struct
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import betterproto
from betterproto import PLACEHOLDER, FieldMetadata, Message

from greet.messages.wire import (
    _MAX_FIELD_NUMBER,
    _WIRE_FIXED32,
    _WIRE_FIXED64,
    _WIRE_LEN,
    _WIRE_VARINT,
    _varint_bytes,
)

__all__ = ["is_simple"]

MessageT = TypeVar("MessageT", bound=Message)

# --- field kinds --------------------------------------------------------------------------------
# One small int per way of reading or writing a field; the hot loops dispatch on them.
_STRING, _BYTES = 0, 1
_INT32, _INT64, _UINT32, _UINT64, _SINT32, _SINT64, _BOOL, _ENUM = 2, 3, 4, 5, 6, 7, 8, 9
_FIXED = 10  # fixed32, fixed64, sfixed32, sfixed64, float, double: struct-packed
_PACKED_VARINT, _PACKED_FIXED = 11, 12  # decode only: a packed chunk of a repeated field

_VARINT_KINDS: Final = {
    betterproto.TYPE_INT32: _INT32,
    betterproto.TYPE_INT64: _INT64,
    betterproto.TYPE_UINT32: _UINT32,
    betterproto.TYPE_UINT64: _UINT64,
    betterproto.TYPE_SINT32: _SINT32,
    betterproto.TYPE_SINT64: _SINT64,
    betterproto.TYPE_BOOL: _BOOL,
    betterproto.TYPE_ENUM: _ENUM,
}
_FIXED_FORMATS: Final = {
    betterproto.TYPE_FIXED32: "I",
    betterproto.TYPE_SFIXED32: "i",
    betterproto.TYPE_FLOAT: "f",
    betterproto.TYPE_FIXED64: "Q",
    betterproto.TYPE_SFIXED64: "q",
    betterproto.TYPE_DOUBLE: "d",
}
_PYTHON_TYPES: Final[dict[str, type]] = {
    betterproto.TYPE_STRING: str,
    betterproto.TYPE_BYTES: bytes,
    betterproto.TYPE_BOOL: bool,
    betterproto.TYPE_FLOAT: float,
    betterproto.TYPE_DOUBLE: float,
    **dict.fromkeys(
        (
            betterproto.TYPE_INT32,
            betterproto.TYPE_INT64,
            betterproto.TYPE_UINT32,
            betterproto.TYPE_UINT64,
            betterproto.TYPE_SINT32,
            betterproto.TYPE_SINT64,
            betterproto.TYPE_FIXED32,
            betterproto.TYPE_FIXED64,
            betterproto.TYPE_SFIXED32,
            betterproto.TYPE_SFIXED64,
        ),
        int,
    ),
}
"""Scalar proto type -> the Python type betterproto holds it in (enums: an Enum subclass)."""

# Methods whose betterproto implementation greet.messages reproduces: a class that overrides any
# of them (or that betterproto-rust-codec would not serve the same way) is not simple.
_REPRODUCED_METHODS: Final = (
    "__new__",
    "__post_init__",
    "__setattr__",
    "__getattribute__",
    "__bytes__",
    "SerializeToString",
    "parse",
    "load",
    "dump",
    "FromString",
    "_get_field_default",
)

_object_getattribute: Final = object.__getattribute__
_object_new: Final = object.__new__


# --- compiled plans -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _FieldRule:
    """What one known field looks like, for error messages."""

    number: int
    name: str
    proto_type: str
    wire_type: int
    repeated: bool
    packable: bool


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
classes live as long as the process anyway). The modules that read it bind it by assignment
(`_plans = plans._plans`), not with `from greet.messages.plans import _plans`: CPython compiles
`_plans.get(...)` on a name imported as such as an attribute load and a call, which costs more
per call than the method call it makes of it otherwise."""


def is_simple(cls: type) -> bool:
    """True if `cls` is a betterproto message class greet.messages builds, decodes and encodes.

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
        if proto_type == betterproto.TYPE_STRING:
            kind, wire_type = _STRING, _WIRE_LEN
        elif proto_type == betterproto.TYPE_BYTES:
            kind, wire_type = _BYTES, _WIRE_LEN
        elif proto_type in _VARINT_KINDS:
            kind, wire_type = _VARINT_KINDS[proto_type], _WIRE_VARINT
        else:
            code = _FIXED_FORMATS[proto_type]
            kind = _FIXED
            wire_type = _WIRE_FIXED32 if code in "Iif" else _WIRE_FIXED64
            extra = struct.Struct("<" + code)
        packable = repeated and kind not in (_STRING, _BYTES)

        absent[name] = unset
        rules[number] = _FieldRule(number, name, proto_type, wire_type, repeated, packable)
        by_key[(number << 3) | wire_type] = (name, kind, repeated, extra)
        if packable:
            packed_kind = _PACKED_FIXED if kind == _FIXED else _PACKED_VARINT
            packed_extra = (kind, extra)
            by_key[(number << 3) | _WIRE_LEN] = (name, packed_kind, True, packed_extra)
        write_wire_type = _WIRE_LEN if packable else wire_type
        key = _varint_bytes((number << 3) | write_wire_type)
        default = [] if repeated else (None if optional else singular_default_gen())
        writers.append((name, kind, repeated, bool(optional), key, default, extra))

    built_template = {"_serialized_on_wire": False, **absent}
    built_template.update({"_unknown_fields": b"", "_group_current": None})
    decoded_template = dict(built_template, _serialized_on_wire=True)
    single_string = None
    if len(writers) == 1:
        name, kind, repeated, optional, key, _, _ = writers[0]
        if kind == _STRING and not repeated and not optional and len(key) == 1:
            single_string = (name, key[0])
    return _Plan(
        field_names=frozenset(absent),
        absent=absent,
        built_template=built_template,
        decoded_template=decoded_template,
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
