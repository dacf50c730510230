"""Kinds of setting value (greet._settings): how a value is written on the command line or in a
GREET_* variable, which values are allowed, and how one is shown in --help.

Messages say what is wrong without saying where the value came from ("must be 0..65535, not
99999"); greet._settings puts the flag or the variable in front.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

__all__ = ["Choice", "FilePath", "Integer", "Kind", "Many", "Number", "Switch", "Text"]

T = TypeVar("T")
C = TypeVar("C", bound=str)


class Kind(ABC, Generic[T]):
    """The values a setting takes: how they are written on the command line or in a variable
    (`convert`), which of them are allowed (`problem`) and how one is shown in --help (`show`)."""

    @abstractmethod
    def convert(self, text: str) -> T:
        """The value `text` stands for; ValueError("must be ..., not 'text'") if none."""

    @abstractmethod
    def problem(self, value: object) -> str | None:
        """Why `value` is not allowed ("must be ..., not ..."); None when it is."""

    def show(self, value: T) -> str:
        return str(value)

    def usage(self) -> str | None:
        """The metavar in --help (None: argparse's own)."""
        return None

    def parse(self, text: str) -> T:
        """`convert`, then `problem`: a value allowed, or ValueError saying why not."""
        value = self.convert(text)
        if (problem := self.problem(value)) is not None:
            raise ValueError(problem)
        return value


@dataclass(frozen=True)
class Text(Kind[str]):
    """Any string."""

    metavar: str | None = None

    def usage(self) -> str | None:
        return self.metavar

    def convert(self, text: str) -> str:
        return text

    def problem(self, value: object) -> str | None:
        return None if isinstance(value, str) else f"must be a string, not {value!r}"


@dataclass(frozen=True)
class Integer(Kind[int]):
    """A whole number from `minimum` to `maximum` (None: no upper end)."""

    minimum: int
    maximum: int | None = None
    metavar: str = "N"

    def usage(self) -> str | None:
        return self.metavar

    def convert(self, text: str) -> int:
        try:
            return int(text.strip(), 10)
        except ValueError:
            raise ValueError(f"must be a whole number, not {text!r}") from None

    def problem(self, value: object) -> str | None:
        if not isinstance(value, int) or isinstance(value, bool):
            return f"must be a whole number, not {value!r}"
        if self.maximum is not None and not self.minimum <= value <= self.maximum:
            return f"must be {self.minimum}..{self.maximum}, not {value}"
        if value < self.minimum:
            return f"must be at least {self.minimum}, not {value}"
        return None


@dataclass(frozen=True)
class Number(Kind[float]):
    """A finite number, at least `minimum` (more than it when `exclusive`); NaN and infinity are
    never allowed (`--grace nan` would make every comparison false)."""

    minimum: float = 0.0
    exclusive: bool = False
    metavar: str = "SECONDS"

    def usage(self) -> str | None:
        return self.metavar

    def convert(self, text: str) -> float:
        try:
            return float(text.strip())
        except ValueError:
            raise ValueError(f"must be a number, not {text!r}") from None

    def problem(self, value: object) -> str | None:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return f"must be a number, not {value!r}"
        if not math.isfinite(value):
            return f"must be a finite number, not {value}"
        if self.exclusive and value <= self.minimum:
            return f"must be more than {self.show(self.minimum)}, not {self.show(value)}"
        if value < self.minimum:
            return f"must be at least {self.show(self.minimum)}, not {self.show(value)}"
        return None

    def show(self, value: float) -> str:
        return f"{value:g}"


@dataclass(frozen=True)
class Choice(Kind[C]):
    """One of `choices`."""

    choices: tuple[C, ...]

    def usage(self) -> str | None:
        return "{" + ",".join(self.choices) + "}"

    def convert(self, text: str) -> C:
        word = text.strip()
        for choice in self.choices:
            if word == choice:
                return choice
        raise ValueError(self.refusal(word))

    def problem(self, value: object) -> str | None:
        return None if value in self.choices else self.refusal(value)

    def refusal(self, value: object) -> str:
        return f"must be one of {', '.join(self.choices)}; not {value!r}"


TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Switch(Kind[bool]):
    """On or off: `--name` / `--no-name` on the command line (only `--name`, which turns it on,
    when not `negatable`), a yes/no word in a variable."""

    negatable: bool = True

    def convert(self, text: str) -> bool:
        word = text.strip().lower()
        if word in TRUE_WORDS or word in FALSE_WORDS:
            return word in TRUE_WORDS
        raise ValueError(
            f"must be one of {'/'.join(TRUE_WORDS)} or {'/'.join(FALSE_WORDS)}, not {text!r}"
        )

    def problem(self, value: object) -> str | None:
        return None if isinstance(value, bool) else f"must be True or False, not {value!r}"

    def show(self, value: bool) -> str:
        return "on" if value else "off"


@dataclass(frozen=True)
class FilePath(Kind[Path]):
    """A file to read; whether it can be read is checked by `file_problem`, not at parse time."""

    def usage(self) -> str | None:
        return "FILE"

    def convert(self, text: str) -> Path:
        if not text:
            raise ValueError("must be a file name, not ''")
        return Path(text)

    def problem(self, value: object) -> str | None:
        return None if isinstance(value, Path) else f"must be a path, not {value!r}"

    @staticmethod
    def file_problem(path: Path) -> str | None:
        """Why `path` cannot be read ("no such file or directory"); None when it can."""
        try:
            with path.open("rb"):
                return None
        except OSError as error:
            return (error.strerror or str(error)).lower()


@dataclass(frozen=True)
class Many(Kind[tuple[T, ...]]):
    """A flag given any number of times, each time one `item` (`-m a=1 -m b=2`); a variable
    gives one."""

    item: Kind[T]

    def usage(self) -> str | None:
        return self.item.usage()

    def convert(self, text: str) -> tuple[T, ...]:
        return (self.item.parse(text),)

    def problem(self, value: object) -> str | None:
        if not isinstance(value, tuple):
            return f"must be a tuple, not {value!r}"
        problems = (self.item.problem(each) for each in value)
        return next((problem for problem in problems if problem is not None), None)
