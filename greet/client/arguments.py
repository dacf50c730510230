"""The kinds of value only `python -m greet.client`'s flags take (greet._setting_kinds has the
rest), and its usage error.

Each rejects what would fail later or mean nothing (a zero, negative, NaN or infinite number of
seconds, an unreadable file, a metadata key gRPC does not allow). `Count` and `Pick` are the
shared `Integer` and `Choice` in the client's own words ("not a whole number: 'x'", "invalid
choice: 'x'"), which its users and tests know.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from greet._setting_kinds import Choice, FilePath, Integer, Kind, Number
from greet.errors import GreetError

__all__ = [
    "Count",
    "Duration",
    "MetadataPair",
    "NonZero",
    "Pick",
    "ReadableFile",
    "UsageError",
    "program_name",
]


class UsageError(GreetError):
    """The command line asks for something that cannot be done; exit status 2."""


@dataclass(frozen=True)
class Count(Integer):
    """A whole number from `minimum` (`Integer`)."""

    def convert(self, text: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"not a whole number: {text!r}") from None


@dataclass(frozen=True)
class Pick(Choice[str]):
    """One of `choices` (`Choice`)."""

    def refusal(self, value: object) -> str:
        listed = ", ".join(repr(choice) for choice in self.choices)
        return f"invalid choice: {value!r} (choose from {listed})"


@dataclass(frozen=True)
class NonZero(Number):
    """A finite number other than 0, of either sign (a load step may go down)."""

    metavar: str = "D"

    def problem(self, value: object) -> str | None:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return f"must be a number, not {value!r}"
        if not math.isfinite(value):
            return f"must be a finite number, not {value}"
        return "must not be 0" if value == 0 else None


SECONDS_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
SECONDS_PATTERN = re.compile(r"(?P<number>.*?)(?P<unit>ms|s|m|h)?")


@dataclass(frozen=True)
class Duration(Kind[float]):
    """Seconds, more than 0 and finite: `2.5`, or with a unit as ghz takes them: `500ms`, `10s`,
    `3m`, `1h`."""

    def usage(self) -> str | None:
        return "SECONDS"

    def convert(self, text: str) -> float:
        match = SECONDS_PATTERN.fullmatch(text.strip())
        assert match is not None  # the pattern matches every string
        try:
            return float(match.group("number")) * SECONDS_UNITS[match.group("unit") or "s"]
        except ValueError:
            raise ValueError(
                f"not a number of seconds: {text!r} (for example 2.5, 500ms, 10s, 3m)"
            ) from None

    def problem(self, value: object) -> str | None:
        if isinstance(value, (int, float)) and math.isfinite(value) and value > 0:
            return None
        return f"must be more than 0 seconds and finite, not {value!r}"

    def show(self, value: float) -> str:
        return f"{value:g}"


@dataclass(frozen=True)
class ReadableFile(FilePath):
    """A path to a file that can be opened for reading now (`FilePath` checks later)."""

    def convert(self, text: str) -> Path:
        path = Path(text)
        try:
            with path.open("rb"):
                pass
        except OSError as error:
            raise ValueError(f"cannot read {text}: {error.strerror or error}") from None
        return path


METADATA_KEY = re.compile(r"[0-9a-z_.\-]+")
METADATA_VALUE = re.compile(r"[ !-~]+")  # printable ASCII and space, as gRPC allows
RESERVED_KEYS = frozenset({"te", "content-type", "user-agent"})


@dataclass(frozen=True)
class MetadataPair(Kind[tuple[str, str]]):
    """`KEY=VALUE`, a gRPC metadata entry sent with every call (the key is case-insensitive)."""

    def usage(self) -> str | None:
        return "KEY=VALUE"

    def convert(self, text: str) -> tuple[str, str]:
        key, equals, value = text.partition("=")
        key = key.strip().lower()
        if not equals or not key:
            raise ValueError(f"expected KEY=VALUE, not {text!r}")
        return key, value

    def problem(self, value: object) -> str | None:
        if not (isinstance(value, tuple) and len(value) == 2):
            return f"must be a (key, value) pair, not {value!r}"
        key, text = value
        if not METADATA_KEY.fullmatch(key):
            return f"bad key {key!r}: a metadata key has only letters, digits and - _ ."
        if key.startswith("grpc-") or key in RESERVED_KEYS:
            return f"{key!r} is set by gRPC itself and cannot be sent"
        if key.endswith("-bin"):
            return f"{key!r}: binary (-bin) metadata cannot be given on the command line"
        if not METADATA_VALUE.fullmatch(text):
            return (
                f"bad value for {key!r}: a metadata value is printable ASCII, at least one "
                "character"
            )
        return None


def program_name() -> str:
    """`greet-client` when run as the console script, else `python -m greet.client`."""
    return "greet-client" if Path(sys.argv[0]).name == "greet-client" else "python -m greet.client"
