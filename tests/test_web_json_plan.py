"""greet.transport._web_wire's JsonPlan against betterproto's own to_dict and from_dict: the
fast path gives their result, or steps aside."""

# ruff: noqa: RUF009  (betterproto's *_field() calls declare dataclass fields, as in generated/)

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import betterproto
import pytest

from greet._codec import build
from greet.transport._web_wire import JSON_CODEC, json_plan
from greet_service import HelloRequest, HelloResponse, NamesList


@dataclass(eq=False, repr=False)
class Mixed(betterproto.Message):
    text_value: str = betterproto.string_field(1)
    flag: bool = betterproto.bool_field(2)
    count: int = betterproto.int32_field(3)
    unsigned: int = betterproto.uint32_field(4)
    tags: list[str] = betterproto.string_field(5)
    numbers: list[int] = betterproto.sint32_field(6)


@dataclass(eq=False, repr=False)
class Wide(betterproto.Message):
    big: int = betterproto.int64_field(1)


def library_json(message: betterproto.Message) -> bytes:
    return json.dumps(message.to_dict(), separators=(",", ":")).encode()


MESSAGES = [
    HelloResponse(message="Hello"),
    HelloResponse(),
    HelloResponse().parse(b""),
    build(HelloResponse, message='héllo "quoted" \\ \n\t\u0001 \U0001f600 </script>'),
    NamesList(names=["a", "b"]),
    NamesList(),
    Mixed(),
    Mixed(text_value="x", flag=True, count=-5, unsigned=7, tags=["p"], numbers=[1, -2]),
    Mixed(count=0, flag=False, text_value=""),
    Mixed(count=-(2**31), unsigned=2**32 - 1, tags=["", "é"], numbers=[0]),
    Mixed().parse(bytes(Mixed(count=3, tags=["a"]))),
]


@pytest.mark.parametrize("message", MESSAGES, ids=repr)
def test_encode_is_to_dict(message: betterproto.Message) -> None:
    assert JSON_CODEC.encode(message, type(message)) == library_json(message)


def test_a_value_outside_the_plan_goes_to_to_dict() -> None:
    message = Mixed(count=2**40)  # not an int32: whatever betterproto writes stands
    assert JSON_CODEC.encode(message, Mixed) == library_json(message)


@pytest.mark.parametrize(
    ("cls", "value"),
    [
        (HelloRequest, {}),
        (HelloRequest, {"name": "Bo"}),
        (HelloRequest, {"name": None}),
        (NamesList, {"names": ["a", "b"]}),
        (NamesList, {"names": []}),
        (Mixed, {"textValue": "t", "flag": True, "count": -1, "unsigned": 4}),
        (Mixed, {"text_value": "t", "numbers": [3, -3], "tags": ["x"]}),
        (Mixed, {"count": "12"}),  # a number as a string: betterproto's from_dict decides
        (Mixed, {"unsigned": 2**32}),  # out of range: betterproto's from_dict decides
        (Mixed, {"unknownKey": 1}),
    ],
    ids=repr,
)
def test_decode_is_from_dict(cls: type[betterproto.Message], value: dict[str, Any]) -> None:
    data = json.dumps(value).encode()
    expected = cls().from_dict(value)
    got = JSON_CODEC.decode(data, cls)
    assert type(got) is cls
    assert got.__dict__ == expected.__dict__  # (for what betterproto accepts unchecked too)


def test_messages_are_fresh_each_time() -> None:
    first = JSON_CODEC.decode(b"{}", NamesList)
    first.names.append("changed")
    assert JSON_CODEC.decode(b"{}", NamesList).names == []


def test_plans_cover_simple_classes_only() -> None:
    assert json_plan(HelloRequest) is not None
    assert json_plan(Mixed) is not None
    assert json_plan(Wide) is None  # 64-bit integers are strings in proto3 JSON
    assert json_plan(dict) is None
