"""Settings declared once: each is a dataclass field whose `setting(...)` call holds its default,
the values it allows, its help, its flag and (derived from the flag) its environment variable.

    @dataclass(frozen=True)
    class Config:
        port: int = setting(8080, Integer(0, 65535), "port to listen on")

    parser = SettingsParser(prog="app", description="...")
    add_arguments(parser, settings_of(Config))

The flag is `--` and the field name with dashes (unless `flag=` says otherwise), the variable
`GREET_` and the flag in capitals (`--max-names` -> `GREET_MAX_NAMES`). A field that holds a
dataclass of further settings (`settings_group`) gives one flag per field of that dataclass, with
that dataclass's defaults.

The parser, the environment reading (`read_environment`), the construction (`build`) and the
checks a dataclass runs in `__post_init__` (`check_values`) all read these declarations. Every
message names where the value came from: the flag (`--port: must be 0..65535, not 99999`) or the
variable (`GREET_PORT: must be a whole number, not 'abc'`).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar, overload

from greet.errors import GreetError
from greet.server.setting_kinds import (
    Choice,
    FilePath,
    Integer,
    Kind,
    Number,
    Switch,
    Text,
)

__all__ = [
    "Choice",
    "ConfigError",
    "FilePath",
    "Integer",
    "Kind",
    "Number",
    "Setting",
    "SettingsParser",
    "Switch",
    "Text",
    "add_arguments",
    "build",
    "check_values",
    "env_name",
    "read_environment",
    "setting",
    "settings_group",
    "settings_of",
]

T = TypeVar("T")
D = TypeVar("D")

SETTING = "greet.setting"
GROUP = "greet.settings_group"
"""Keys of the dataclass field metadata that carry the declarations."""


class ConfigError(GreetError, ValueError):
    """A setting has a value it does not allow; the message names the flag or the variable."""


# --- declarations -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Declaration:
    """What a `setting(...)` call says, stored in its field's metadata."""

    kind: Kind[Any]
    help: str
    flag: str | None = None
    default_text: str | None = None
    section: str | None = None
    unset_text: str | None = None


@dataclass(frozen=True)
class Setting:
    """One setting as derived from its declaration and its field: the flag, the variable, the
    default, the kind of value and the help."""

    name: str
    """The field's name (in the group's dataclass when `group` is set)."""
    group: str | None
    """The field of the outer dataclass that holds this setting's dataclass, if any."""
    default: Any
    kind: Kind[Any]
    help: str
    flag: str
    default_text: str | None
    section: str | None
    unset_text: str | None

    @property
    def env(self) -> str:
        return env_name(self.flag)

    @property
    def dest(self) -> str:
        """The argparse destination (unique, unlike `name` across groups)."""
        return self.flag.removeprefix("--").replace("-", "_")

    @property
    def optional(self) -> bool:
        """Whether None is allowed (settings whose default is None: off / no limit)."""
        return self.default is None

    def problem(self, value: object) -> str | None:
        if value is None and self.optional:
            return None
        return self.kind.problem(value)

    def check(self, value: object) -> None:
        """ConfigError naming the flag if `value` is not allowed."""
        if (problem := self.problem(value)) is not None:
            raise ConfigError(f"{self.flag}: {problem}")

    def help_text(self) -> str:
        if self.default is None:
            fallback = "none" if isinstance(self.kind, FilePath) else "off"
            shown = self.unset_text or fallback
        else:
            shown = self.default_text or self.kind.show(self.default)
        return f"{self.help} (default: {shown})".replace("%", "%%")


@overload
def setting(
    default: None,
    kind: Kind[T],
    help: str,
    *,
    flag: str | None = ...,
    default_text: str | None = ...,
    section: str | None = ...,
    unset_text: str | None = ...,
) -> T | None: ...
@overload
def setting(
    default: T,
    kind: Kind[T],
    help: str,
    *,
    flag: str | None = ...,
    default_text: str | None = ...,
    section: str | None = ...,
    unset_text: str | None = ...,
) -> T: ...
def setting(
    default: Any,
    kind: Kind[Any],
    help: str,
    *,
    flag: str | None = None,
    default_text: str | None = None,
    section: str | None = None,
    unset_text: str | None = None,
) -> Any:
    """A dataclass field that is a setting (see the module docstring).

    `default` None means off; `unset_text` says what None means in --help ("no limit",
    "never"), `default_text` how another default is shown there ("4 MiB"); `section` titles the
    group of flags in --help it is listed under.
    """
    declaration = Declaration(kind, help, flag, default_text, section, unset_text)
    return dataclasses.field(default=default, metadata={SETTING: declaration})


def settings_group(cls: type[D], declarations: Mapping[str, Declaration]) -> D:
    """A dataclass field holding a `cls` (default `cls()`) whose fields named in
    `declarations` are settings, with the defaults `cls` gives them."""
    return dataclasses.field(default_factory=cls, metadata={GROUP: (cls, dict(declarations))})


def env_name(flag: str) -> str:
    """`--max-message-bytes` -> `GREET_MAX_MESSAGE_BYTES`."""
    return "GREET_" + flag.lstrip("-").replace("-", "_").upper()


def field_default(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    raise TypeError(f"setting {field.name} has no default")


def derive(name: str, group: str | None, default: Any, declaration: Declaration) -> Setting:
    return Setting(
        name=name,
        group=group,
        default=default,
        kind=declaration.kind,
        help=declaration.help,
        flag=declaration.flag or "--" + name.replace("_", "-"),
        default_text=declaration.default_text,
        section=declaration.section,
        unset_text=declaration.unset_text,
    )


DERIVED: dict[type[Any], tuple[Setting, ...]] = {}
"""settings_of's results, by dataclass."""


def settings_of(cls: type[Any]) -> tuple[Setting, ...]:
    """Every setting `cls` declares, in field order (a group's settings in its place)."""
    if cls not in DERIVED:
        DERIVED[cls] = derive_all(cls)
    return DERIVED[cls]


def derive_all(cls: type[Any]) -> tuple[Setting, ...]:
    found: list[Setting] = []
    for field in dataclasses.fields(cls):
        if (declaration := field.metadata.get(SETTING)) is not None:
            found.append(derive(field.name, None, field.default, declaration))
        elif (group := field.metadata.get(GROUP)) is not None:
            group_cls, declarations = group
            inner = {inner.name: inner for inner in dataclasses.fields(group_cls)}
            for name, declaration in declarations.items():
                default = field_default(inner[name])
                named = inner[name].metadata.get("flag")  # the group's dataclass may name it
                if named is not None and declaration.flag not in (None, named):
                    raise TypeError(f"{name}: flag {declaration.flag} here, {named} in {group_cls}")
                declaration = dataclasses.replace(declaration, flag=declaration.flag or named)
                found.append(derive(name, field.name, default, declaration))
    flags = [found_setting.flag for found_setting in found]
    if len(set(flags)) != len(flags):
        raise TypeError(f"{cls.__name__} declares a flag twice: {flags}")
    return tuple(found)


def value_of(instance: object, item: Setting) -> Any:
    holder = instance if item.group is None else getattr(instance, item.group)
    return getattr(holder, item.name)


def check_values(instance: object) -> None:
    """For a dataclass's `__post_init__`: ConfigError naming the flag of the first value that is
    not allowed."""
    for item in settings_of(type(instance)):
        item.check(value_of(instance, item))


def build(cls: type[D], values: Mapping[str, Any]) -> D:
    """A `cls` from values keyed by `Setting.dest`; settings missing from `values` keep their
    defaults."""
    direct: dict[str, Any] = {}
    groups: dict[str, dict[str, Any]] = {}
    for item in settings_of(cls):
        if item.dest not in values:
            continue
        if item.group is None:
            direct[item.name] = values[item.dest]
        else:
            groups.setdefault(item.group, {})[item.name] = values[item.dest]
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if field.name in groups:
            group_cls, _ = field.metadata[GROUP]
            direct[field.name] = group_cls(**groups[field.name])
    return cls(**direct)


def read_environment(
    settings: Iterable[Setting], environ: Mapping[str, str], *, skip: Iterable[str] = ()
) -> dict[str, Any]:
    """The values GREET_* variables give, keyed by `Setting.dest`; ConfigError naming the
    variable for a value that is not allowed. An empty variable counts as unset, and settings
    whose dest is in `skip` (given on the command line, which wins) are not read."""
    skipped = set(skip)
    values: dict[str, Any] = {}
    for item in settings:
        text = environ.get(item.env, "")
        if item.dest in skipped or not text:
            continue
        try:
            values[item.dest] = item.kind.parse(text)
        except ValueError as error:
            raise ConfigError(f"{item.env}: {error}") from None
    return values


# --- the command line ---------------------------------------------------------------------------


class SettingsParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are two lines: the error, then where help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(
            2, f"{self.prog}: error: {message}\nTry '{self.prog} --help' for more information.\n"
        )


def argparse_type(item: Setting) -> Any:
    def parse(text: str) -> Any:
        try:
            return item.kind.parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = item.dest
    return parse


def add_arguments(parser: argparse.ArgumentParser, settings: Sequence[Setting]) -> None:
    """One option per setting, in sections by `Setting.section`. A flag not given is absent
    from the parsed namespace (its default is applied by `build`), so that the environment can
    be read for it."""
    sections = {}
    for item in settings:
        target: Any = parser
        if item.section is not None:
            if item.section not in sections:
                sections[item.section] = parser.add_argument_group(item.section)
            target = sections[item.section]
        if isinstance(item.kind, Switch):
            target.add_argument(
                item.flag,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=item.help_text(),
            )
        else:
            target.add_argument(
                item.flag,
                type=argparse_type(item),
                default=argparse.SUPPRESS,
                metavar=item.kind.usage(),
                help=item.help_text(),
            )
