"""Fast, strict build / decode / encode for simple betterproto message classes.

Which upstream behaviour this covers: betterproto 2.0.0b7 (pinned) spends ~20 us constructing
`HelloResponse(message="Hello")` (its `__setattr__` and `__getattribute__` police oneof groups
by raising and catching AttributeError), ~11-20 us parsing a one-field message and ~4 us
serializing one, even with betterproto-rust-codec; its pure-Python parser also accepts
truncated input and wrong wire types. For "simple" classes (scalar and repeated-scalar fields
only, see `is_simple`) this package builds, decodes and encodes instances itself, by composition:
no class, instance or module of betterproto's (or of `generated/`) is modified. Instances are
made with `object.__new__(cls)` (which is `cls.__new__` for every simple class) and filled
through their `__dict__`, which is read with `object.__getattribute__` so that betterproto's
`__getattribute__` never runs.

One module a job: `plans` (which classes are simple, and each one's plan, compiled once),
`building` (`build`), `decoding` (`decode`), `encoding` (`encode`) and `wire` (wire types,
varints, `MalformedMessage`). They share the plans and constants as module globals, so that the
per-call paths look up no more than they did in one module.

What the results are:

- `build(cls, **fields)` gives an instance whose `__dict__` equals `cls(**fields).__dict__`:
  same keys in the same order, same values, `_serialized_on_wire` as betterproto's
  `__post_init__` computes it, `_unknown_fields == b""`, a fresh `_group_current == {}`.
- `decode(cls, data)` equals `cls().parse(data)` (`==`, `bytes()`, `_serialized_on_wire`,
  `_unknown_fields`; fields that are absent on the wire stay PLACEHOLDER as there) for every
  well-formed input, and raises `MalformedMessage` for the rest: a truncated varint or length, a
  varint longer than 10 bytes or above 64 bits, field number 0 or above 2**29 - 1, wire types
  3 and 4 (groups) and 6 and 7, a wire type the field's type does not use (packed encoding is
  accepted for repeated numeric fields, as protobuf requires), packed data that does not divide
  into whole values, and invalid UTF-8 in a string field. Values follow protobuf (and
  betterproto-rust-codec): a later value of a singular field replaces an earlier one, repeated
  fields accumulate (packed chunks are concatenated; pure-Python betterproto replaces the list
  with the last chunk instead), 32-bit types keep the low 32 bits of the varint and enum values
  are sign-extended int32s (pure-Python betterproto keeps all 64 bits for uint32, sint32 and
  enums). Enum values are betterproto Enum members (`try_value`), as pure-Python betterproto
  gives them; the Rust codec gives plain ints for unknown values, which compare equal. Unknown
  fields are kept byte for byte, as pure-Python betterproto keeps them; the Rust codec re-encodes
  their keys, lengths and varint values minimally, so the two differ (in `_unknown_fields` and
  in `bytes()`) only for unknown fields written with over-long varints.
- `encode(message)` is byte-identical to `bytes(message)` as pure-Python betterproto writes it
  (and betterproto-rust-codec matches it): fields in declaration order, proto3 defaults (and
  PLACEHOLDER, and None) omitted, `optional` fields written whenever they are not None, repeated
  numeric fields packed, `_unknown_fields` appended. A value outside its field's Python type is
  handed to `bytes(message)`, whose result or error is then the answer.

For a class that is not simple, `build` calls `cls(**fields)`, `decode` calls
`cls.FromString(data)` (no strictness: the caller checks such input itself) and `encode` calls
`bytes(message)`.

Private betterproto names read here (each has a contract test in tests/test_messages.py; the
same list is `BETTERPROTO_PRIVATE_NAMES`):

- `Message._betterproto`: the per-class `ProtoClassMetadata` (a classproperty)
- `ProtoClassMetadata.meta_by_field_name`, `.field_name_by_number`, `.oneof_group_by_field`,
  `.default_gen`, `.cls_by_field`
- `FieldMetadata.number`, `.proto_type`, `.map_types`, `.group`, `.wraps`, `.optional`, and the
  dataclass field metadata key `"betterproto"` (`FieldMetadata.get`)
- the instance attributes `_serialized_on_wire`, `_unknown_fields`, `_group_current`
- `PLACEHOLDER` (the default of every non-optional field) and `Enum.try_value`

Besides those names, `is_simple` checks betterproto's behaviour at run time: the first time a
class is used, `build` is compared with the class's own constructor (with no fields and with every
field set); if they differ, for example after an upgrade, the class is treated as not simple.
"""

from __future__ import annotations

from typing import Final

from greet.messages.building import build
from greet.messages.decoding import decode
from greet.messages.encoding import _encode_fields as _encode_fields
from greet.messages.encoding import encode
from greet.messages.plans import _plans as _plans
from greet.messages.plans import is_simple
from greet.messages.wire import MalformedMessage

__all__ = [
    "BETTERPROTO_PRIVATE_NAMES",
    "MalformedMessage",
    "build",
    "decode",
    "encode",
    "is_simple",
]

BETTERPROTO_PRIVATE_NAMES: Final = (
    "Message._betterproto",
    "ProtoClassMetadata.meta_by_field_name",
    "ProtoClassMetadata.field_name_by_number",
    "ProtoClassMetadata.oneof_group_by_field",
    "ProtoClassMetadata.default_gen",
    "ProtoClassMetadata.cls_by_field",
    "FieldMetadata.number",
    "FieldMetadata.proto_type",
    "FieldMetadata.map_types",
    "FieldMetadata.group",
    "FieldMetadata.wraps",
    "FieldMetadata.optional",
    'dataclasses.Field.metadata["betterproto"]',
    "Message._serialized_on_wire",
    "Message._unknown_fields",
    "Message._group_current",
    "PLACEHOLDER",
    "Enum.try_value",
)
"""Every private (or internal-by-contract) betterproto name this package relies on."""
