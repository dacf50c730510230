"""Command-line values of `python -m greet.client`: checked types and one-line usage errors.

Each `argparse` type here rejects what would fail later or mean nothing (a zero, negative, NaN or
infinite number of seconds, an unreadable file, a metadata key gRPC does not allow) with a message
that argparse prefixes with the flag's name. `OneLineErrorParser` prints a usage error as one
line and a `--help` hint, not argparse's usage block.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path
from typing import NoReturn

from greet.errors import GreetError

__all__ = [
    "OneLineErrorParser",
    "UsageError",
    "metadata_pair",
    "non_negative_int",
    "positive_int",
    "positive_number",
    "positive_seconds",
    "program_name",
    "readable_file",
    "signed_number",
    "usage_error_text",
]


class UsageError(GreetError):
    """The command line asks for something that cannot be done; exit status 2."""


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line and a hint to `--help` (exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, usage_error_text(self.prog, message))


def usage_error_text(prog: str, message: str) -> str:
    return f"{prog}: error: {message}\nTry '{prog} --help' for more information.\n"


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def finite_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text!r}")
    return value


def positive_number(text: str) -> float:
    value = finite_number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text!r}")
    return value


def signed_number(text: str) -> float:
    """A finite number other than 0 (a load step may go down)."""
    value = finite_number(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must not be 0")
    return value


SECONDS_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
SECONDS_PATTERN = re.compile(r"(?P<number>.*?)(?P<unit>ms|s|m|h)?")


def positive_seconds(text: str) -> float:
    """Seconds, more than 0 and finite: `2.5`, or with a unit as ghz takes them: `500ms`, `10s`,
    `3m`, `1h`."""
    match = SECONDS_PATTERN.fullmatch(text.strip())
    assert match is not None  # the pattern matches every string
    unit = SECONDS_UNITS[match.group("unit") or "s"]
    try:
        value = float(match.group("number")) * unit
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a number of seconds: {text!r} (for example 2.5, 500ms, 10s, 3m)"
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds and finite, not {text!r}")
    return value


def readable_file(text: str) -> Path:
    """A path to a file that can be opened for reading now."""
    path = Path(text)
    try:
        with path.open("rb"):
            pass
    except OSError as error:
        reason = error.strerror or str(error)
        raise argparse.ArgumentTypeError(f"cannot read {text}: {reason}") from None
    return path


METADATA_KEY = re.compile(r"[0-9a-z_.\-]+")
METADATA_VALUE = re.compile(r"[ !-~]+")  # printable ASCII and space, as gRPC allows
RESERVED_KEYS = frozenset({"te", "content-type", "user-agent"})


def metadata_pair(text: str) -> tuple[str, str]:
    """`KEY=VALUE`, a gRPC metadata entry sent with every call (the key is case-insensitive)."""
    key, equals, value = text.partition("=")
    key = key.strip().lower()
    if not equals or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, not {text!r}")
    if not METADATA_KEY.fullmatch(key):
        raise argparse.ArgumentTypeError(
            f"bad key {key!r}: a metadata key has only letters, digits and - _ ."
        )
    if key.startswith("grpc-") or key in RESERVED_KEYS:
        raise argparse.ArgumentTypeError(f"{key!r} is set by gRPC itself and cannot be sent")
    if key.endswith("-bin"):
        raise argparse.ArgumentTypeError(
            f"{key!r}: binary (-bin) metadata cannot be given on the command line"
        )
    if not METADATA_VALUE.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"bad value for {key!r}: a metadata value is printable ASCII, at least one character"
        )
    return key, value


def program_name() -> str:
    """`greet-client` when run as the console script, else `python -m greet.client`."""
    return "greet-client" if Path(sys.argv[0]).name == "greet-client" else "python -m greet.client"
