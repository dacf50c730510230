"""`build`: a simple message instance from its fields, as its constructor would make it."""

from __future__ import annotations

from typing import Any, Final

from betterproto import PLACEHOLDER, Message

from greet.messages import plans
from greet.messages.plans import (
    _NOT_COMPILED,
    MessageT,
    _compile,
    _object_getattribute,
    _object_new,
)

_plans: Final = plans._plans  # assigned, not imported by name: see plans._plans

__all__ = ["build"]

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
