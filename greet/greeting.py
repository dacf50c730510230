"""The domain rules of greeting: the text and the limits on what may be greeted. No gRPC here."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Protocol

from greet.errors import InvalidRequest, LimitExceeded, Violation

__all__ = [
    "HELLO",
    "NAME_TOO_LONG",
    "TOO_MANY_MESSAGES",
    "TOO_MANY_NAMES",
    "Greeter",
    "Limits",
    "WorkingGreeter",
    "check_name",
    "check_names",
    "check_stream_length",
    "greeting_for",
]

HELLO = "Hello"

# The reasons a request is refused (google.rpc.ErrorInfo.reason on the wire).
NAME_TOO_LONG = "NAME_TOO_LONG"
TOO_MANY_NAMES = "TOO_MANY_NAMES"
TOO_MANY_MESSAGES = "TOO_MANY_MESSAGES"


def greeting_for(name: str) -> str:
    """The greeting for one name, exactly as the original Go service words it."""
    return f"{HELLO} {name}"


@dataclass(frozen=True)
class Limits:
    """How much one call may ask for; None (the default) is no limit.

    The original Go service has none of these limits: it serves any request that fits in the
    message size limit (--max-message-bytes), and message size, deadlines, cancellation and
    fairness already bound the work of a call. So each limit here is opt-in, by its flag (the
    field's `flag` metadata, see `Limits.flag`), and each breach names that flag in the error.
    """

    max_name_chars: int | None = field(default=None, metadata={"flag": "--max-name-chars"})
    max_names_per_list: int | None = field(default=None, metadata={"flag": "--max-names"})
    max_messages_per_stream: int | None = field(
        default=None, metadata={"flag": "--max-stream-messages"}
    )

    def __post_init__(self) -> None:
        for limit in fields(self):
            value = getattr(self, limit.name)
            if value is not None and value < 1:
                raise ValueError(
                    f"{self.flag(limit.name)} must be at least 1 (or unset: no limit), not {value}"
                )

    @classmethod
    def flag(cls, field_name: str) -> str:
        """The server flag that sets a limit: `--max-names` for `max_names_per_list`."""
        for limit in fields(cls):
            if limit.name == field_name:
                flag: str = limit.metadata["flag"]
                return flag
        raise KeyError(field_name)


def check_name(name: str, limits: Limits, field_path: str = "name") -> None:
    """Raise InvalidRequest when a name is longer than the limit allows.

    `field_path` names the name in the request, e.g. `names[3]` in a NamesList.
    """
    limit = limits.max_name_chars
    if limit is not None and len(name) > limit:
        flag = Limits.flag("max_name_chars")
        raise InvalidRequest(
            f"{field_path} is {len(name)} characters long; the limit ({flag}) is {limit}",
            violation=Violation(NAME_TOO_LONG, field_path, limit, len(name), flag),
        )


def check_names(names: Sequence[str], limits: Limits) -> None:
    """Raise when a names list is too long or holds a name that is too long."""
    limit = limits.max_names_per_list
    if limit is not None and len(names) > limit:
        flag = Limits.flag("max_names_per_list")
        raise LimitExceeded(
            f"{len(names)} names in one list; the limit ({flag}) is {limit}",
            violation=Violation(TOO_MANY_NAMES, "names", limit, len(names), flag),
        )
    if limits.max_name_chars is not None:
        for index, name in enumerate(names):
            check_name(name, limits, f"names[{index}]")


def check_stream_length(count: int, limits: Limits) -> None:
    """Raise LimitExceeded once a client stream has sent more messages than allowed.

    `count` is the number of messages received so far, the one being checked included.
    """
    limit = limits.max_messages_per_stream
    if limit is not None and count > limit:
        flag = Limits.flag("max_messages_per_stream")
        raise LimitExceeded(
            f"more than {limit} messages in one stream; the limit ({flag}) is {limit}",
            violation=Violation(TOO_MANY_MESSAGES, "requests", limit, count, flag),
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
