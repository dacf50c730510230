"""What each `bench` call sends: from `--names N`, or from `--data JSON` / `--data-file FILE`.

The JSON is shaped like the proto messages, as ghz takes it:

    unary          {}                                  NoParam (a list of {} is accepted too)
    server-stream  {"names": ["a", "b"]}               NamesList; a list of them is sent
                                                       round-robin, one per call
    client-stream  [{"name": "a"}, {"name": "b"}]      the HelloRequest stream of every call
    bidi           (as client-stream; a single {"name": ...} is a stream of one)
"""

from __future__ import annotations

import json
from dataclasses import dataclass

__all__ = ["CallData", "call_data_from_json", "default_call_data"]


@dataclass(frozen=True)
class CallData:
    """The names each call sends: `names_lists` for server-stream (round-robin over them),
    `stream` for client-stream and bidi; unary sends NoParam and needs neither."""

    names_lists: tuple[tuple[str, ...], ...] = ((),)
    stream: tuple[str, ...] = ()


def default_call_data(count: int) -> CallData:
    """`count` generated names per call: name-0, name-1, ..."""
    names = tuple(f"name-{index}" for index in range(count))
    return CallData(names_lists=(names,), stream=names)


SENDS = {
    "unary": "NoParam {}",
    "server-stream": 'a NamesList {"names": [...]} per call',
    "client-stream": 'a stream of HelloRequest [{"name": ...}, ...]',
    "bidi": 'a stream of HelloRequest [{"name": ...}, ...]',
}


def call_data_from_json(rpc: str, text: str) -> CallData:
    """Parse `--data` for `rpc`; ValueError saying what is wrong (the caller names the flag)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON: {error}") from None
    try:
        return call_data(rpc, value)
    except ValueError as error:
        raise ValueError(f"{rpc} sends {SENDS[rpc]}; {error}") from None


def call_data(rpc: str, value: object) -> CallData:
    messages = value if isinstance(value, list) else [value]
    if rpc == "unary":
        for message in messages:
            no_param(message)
        return CallData()
    if rpc == "server-stream":
        if not messages:
            raise ValueError("an empty list: give at least one NamesList")
        return CallData(names_lists=tuple(names_list(message) for message in messages))
    return CallData(stream=tuple(hello_request(message) for message in messages))


def fields(message: object, kind: str, allowed: set[str]) -> dict[str, object]:
    if not isinstance(message, dict):
        raise ValueError(f"a {kind} is a JSON object, not {json.dumps(message)[:40]}")
    unknown = sorted(set(message) - allowed)
    if unknown:
        known = ", ".join(sorted(allowed)) or "no fields"
        raise ValueError(f"{kind} has no field {unknown[0]!r} (it has {known})")
    return message


def no_param(message: object) -> None:
    fields(message, "NoParam", set())


def names_list(message: object) -> tuple[str, ...]:
    names = fields(message, "NamesList", {"names"}).get("names", [])
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise ValueError('NamesList.names is a list of strings: {"names": ["a", "b"]}')
    return tuple(names)


def hello_request(message: object) -> str:
    name = fields(message, "HelloRequest", {"name"}).get("name", "")
    if not isinstance(name, str):
        raise ValueError('HelloRequest.name is a string: {"name": "a"}')
    return name
