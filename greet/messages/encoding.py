"""`encode`: a simple message's bytes, byte-identical to betterproto's `bytes(message)`."""

from __future__ import annotations

import struct
from typing import Any, Final

from betterproto import PLACEHOLDER, Message

from greet.messages import plans
from greet.messages.plans import (
    _BYTES,
    _FIXED,
    _NOT_COMPILED,
    _SINT32,
    _SINT64,
    _STRING,
    _compile,
    _object_getattribute,
    _Plan,
)
from greet.messages.wire import _SMALL_VARINTS, _varint_bytes

_plans: Final = plans._plans  # assigned, not imported by name: see plans._plans

__all__ = ["encode"]


class _NotPlainValue(Exception):
    """A field holds a value of a type the fast encoder does not write itself."""


def encode(message: Message) -> bytes:
    """`bytes(message)`, without betterproto's per-attribute bookkeeping for simple classes."""
    cls = type(message)
    plan = _plans.get(cls, _NOT_COMPILED)
    if plan is _NOT_COMPILED:
        plan = _compile(cls)
    if plan is None:
        return bytes(message)
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
