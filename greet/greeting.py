"""The domain rules of greeting: the text and the limits on what may be greeted. No gRPC here."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from greet.errors import InvalidRequest, LimitExceeded

__all__ = [
    "HELLO",
    "Greeter",
    "Limits",
    "WorkingGreeter",
    "check_name",
    "check_names",
    "check_stream_length",
    "greeting_for",
]

HELLO = "Hello"


def greeting_for(name: str) -> str:
    """The greeting for one name, exactly as the original Go service words it."""
    return f"{HELLO} {name}"


@dataclass(frozen=True)
class Limits:
    """How much one call may ask for; each breach names its limit in the error.

    None: no limit (the default for the count limits, as in the original Go service, whose
    calls are bounded by the message size, deadlines and cancellation only).
    """

    max_name_chars: int = 1024
    max_names_per_list: int | None = None
    max_messages_per_stream: int | None = None

    def __post_init__(self) -> None:
        for field_name in ("max_name_chars", "max_names_per_list", "max_messages_per_stream"):
            value = getattr(self, field_name)
            if value is not None and value < 1:
                raise ValueError(f"{field_name} must be at least 1")


def check_name(name: str, limits: Limits) -> None:
    """Raise InvalidRequest when a name is longer than the limit allows."""
    if len(name) > limits.max_name_chars:
        raise InvalidRequest(
            f"name is {len(name)} characters long; the limit (max_name_chars) is "
            f"{limits.max_name_chars}"
        )


def check_names(names: Sequence[str], limits: Limits) -> None:
    """Raise when a names list is too long or holds a name that is too long."""
    if limits.max_names_per_list is not None and len(names) > limits.max_names_per_list:
        raise LimitExceeded(
            f"{len(names)} names in one list; the limit (max_names_per_list) is "
            f"{limits.max_names_per_list}"
        )
    for name in names:
        check_name(name, limits)


def check_stream_length(count: int, limits: Limits) -> None:
    """Raise LimitExceeded once a client stream has sent more messages than allowed."""
    if limits.max_messages_per_stream is not None and count > limits.max_messages_per_stream:
        raise LimitExceeded(
            f"more than {limits.max_messages_per_stream} messages in one stream; the limit "
            "(max_messages_per_stream) was reached"
        )


class Greeter(Protocol):
    """Produces the greeting for a name: the (possibly slow) backend work behind the service."""

    async def greet(self, name: str) -> str: ...


@dataclass(frozen=True)
class WorkingGreeter:
    """The backend: greets a name after `work_delay` seconds of simulated work.

    The original Go demo slept in its server-streaming handler (its "long running process");
    here that latency is an option, 0 by default.
    """

    work_delay: float = 0.0

    async def greet(self, name: str) -> str:
        if self.work_delay > 0:
            await asyncio.sleep(self.work_delay)
        return greeting_for(name)
