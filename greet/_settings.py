"""Settings declared once, for both commands: each is a dataclass field whose `setting(...)` call
holds its default, the values it allows (its kind, greet._setting_kinds), its help and its flag;
the flag gives the environment variable.

    @dataclass(frozen=True)
    class Config:
        port: int = setting(8080, Integer(0, 65535), "port to listen on")

    parser = SettingsParser(prog="app", description="...")
    add_arguments(parser, settings_of(Config))

The flag is `--` and the field name with dashes (unless `flag=` says otherwise), the variable
`GREET_` and the flag in capitals (`--max-names` -> `GREET_MAX_NAMES`). A field that holds a
dataclass of further settings (`settings_group`) gives the flags of that dataclass's settings,
with its defaults: those it declares itself with `setting(...)` (greet.transport.TransportConfig),
or, for a dataclass that knows nothing of flags (greet.greeting.Limits), those the group names.
Groups nest (the keepalive policy inside the transport settings inside the server's).

The parser (`add_arguments`), the environment (`read_environment`), the construction (`build`)
and the checks a dataclass runs in `__post_init__` (`check_values`) all read these declarations.
Every message names where the value came from: the flag (`--port: must be 0..65535, not 99999`)
or the variable (`GREET_PORT: must be a whole number, not 'abc'`).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar, cast, overload

from greet._setting_kinds import FilePath, Kind, Many, Switch
from greet.errors import GreetError

__all__ = [
    "ConfigError",
    "Declaration",
    "Group",
    "Setting",
    "SettingsParser",
    "add_arguments",
    "build",
    "check_values",
    "computed_setting",
    "env_name",
    "read_environment",
    "setting",
    "settings_group",
    "settings_of",
    "usage_error_text",
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
    """What a `setting(...)` call says, stored in its field's metadata.

    `default_text` is how the default is shown in --help ("4 MiB"; "" shows none), `unset_text`
    what a default of None means there ("no limit", "never"); `section` titles the group of flags
    it is listed under; `aliases` are further names of the flag (`-m` for `--metadata`); flags
    with the same `exclusive` name cannot be given together.
    """

    kind: Kind[Any]
    help: str
    flag: str | None = None
    default_text: str | None = None
    section: str | None = None
    unset_text: str | None = None
    aliases: tuple[str, ...] = ()
    exclusive: str | None = None


@dataclass(frozen=True)
class Group:
    """A dataclass of settings held by a field: its own `setting(...)` fields (`declarations`
    None), or the fields `declarations` names (a Group for a dataclass nested in it)."""

    cls: type[Any]
    declarations: Mapping[str, Declaration | Group] | None = None


@dataclass(frozen=True)
class Setting:
    """One setting as derived from its declaration and its field."""

    path: tuple[str, ...]
    """Field names from the outer dataclass down to this setting's field."""
    field: dataclasses.Field[Any]
    declaration: Declaration
    flag: str

    @property
    def name(self) -> str:
        return self.path[-1]

    @property
    def kind(self) -> Kind[Any]:
        return self.declaration.kind

    @property
    def section(self) -> str | None:
        return self.declaration.section

    @property
    def default(self) -> Any:
        """The default (a computed one is computed now)."""
        if self.field.default_factory is not dataclasses.MISSING:
            return self.field.default_factory()
        return self.field.default

    @property
    def env(self) -> str:
        return env_name(self.flag)

    @property
    def dest(self) -> str:
        """The argparse destination and the key of `build`'s values (unique, as flags are)."""
        return self.flag.removeprefix("--").replace("-", "_")

    @property
    def optional(self) -> bool:
        """Whether None is allowed (settings whose default is None: off / no limit)."""
        return self.field.default is None

    def problem(self, value: object) -> str | None:
        if value is None and self.optional:
            return None
        return self.kind.problem(value)

    def check(self, value: object) -> None:
        """ConfigError naming the flag if `value` is not allowed."""
        if (problem := self.problem(value)) is not None:
            raise ConfigError(f"{self.flag}: {problem}")

    def help_text(self) -> str:
        declared = self.declaration
        if isinstance(self.kind, Switch) and not self.kind.negatable:
            shown = ""
        elif self.field.default is None:
            fallback = "none" if isinstance(self.kind, FilePath) else "off"
            shown = fallback if declared.unset_text is None else declared.unset_text
        elif declared.default_text is not None:
            shown = declared.default_text
        else:
            shown = self.kind.show(self.default)
        text = f"{declared.help} (default: {shown})" if shown else declared.help
        return text.replace("%", "%%")


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
    aliases: tuple[str, ...] = ...,
    exclusive: str | None = ...,
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
    aliases: tuple[str, ...] = ...,
    exclusive: str | None = ...,
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
    aliases: tuple[str, ...] = (),
    exclusive: str | None = None,
) -> Any:
    """A dataclass field that is a setting (see the module docstring and `Declaration`);
    `default` None means off."""
    declaration = Declaration(
        kind, help, flag, default_text, section, unset_text, aliases, exclusive
    )
    return dataclasses.field(default=default, metadata={SETTING: declaration})


def computed_setting(
    factory: Callable[[], T],
    kind: Kind[T],
    help: str,
    *,
    default_text: str,
    flag: str | None = None,
    section: str | None = None,
) -> T:
    """A setting whose default `factory` computes for each instance made without it."""
    declaration = Declaration(kind, help, flag, default_text, section)
    return dataclasses.field(default_factory=factory, metadata={SETTING: declaration})


def settings_group(
    cls: type[D], declarations: Mapping[str, Declaration | Group] | None = None
) -> D:
    """A dataclass field holding a `cls` (default `cls()`) whose settings are its own
    `setting(...)` fields, or the fields named in `declarations` (see `Group`)."""
    group = Group(cls, declarations)
    return dataclasses.field(default_factory=cls, metadata={GROUP: group})


def env_name(flag: str) -> str:
    """`--max-message-bytes` -> `GREET_MAX_MESSAGE_BYTES`."""
    return "GREET_" + flag.lstrip("-").replace("-", "_").upper()


@dataclass(frozen=True)
class Derived:
    settings: tuple[Setting, ...]
    groups: dict[tuple[str, ...], type[Any]]
    """The dataclass at each path that holds settings (() is the outer one)."""


DERIVED: dict[type[Any], Derived] = {}
"""What `derive` found, by dataclass."""


def settings_of(cls: type[Any]) -> tuple[Setting, ...]:
    """Every setting `cls` declares, in field order (a group's settings in its place)."""
    return derive(cls).settings


def derive(cls: type[Any]) -> Derived:
    if cls not in DERIVED:
        found: list[Setting] = []
        groups: dict[tuple[str, ...], type[Any]] = {(): cls}
        walk(Group(cls), (), found, groups)
        flags = [flag for item in found for flag in (item.flag, *item.declaration.aliases)]
        if len(set(flags)) != len(flags):
            raise TypeError(f"{cls.__name__} declares a flag twice: {flags}")
        DERIVED[cls] = Derived(tuple(found), groups)
    return DERIVED[cls]


def walk(
    group: Group,
    path: tuple[str, ...],
    found: list[Setting],
    groups: dict[tuple[str, ...], type[Any]],
) -> None:
    fields = {field.name: field for field in dataclasses.fields(group.cls)}
    if group.declarations is None:
        entries = {
            name: field.metadata.get(SETTING) or field.metadata.get(GROUP)
            for name, field in fields.items()
        }
    else:
        entries = dict(group.declarations)
    for name, entry in entries.items():
        inner = (*path, name)
        if isinstance(entry, Group):
            groups[inner] = entry.cls
            walk(entry, inner, found, groups)
        elif isinstance(entry, Declaration):
            named = fields[name].metadata.get("flag")  # the dataclass may name it (Limits)
            if named is not None and entry.flag not in (None, named):
                raise TypeError(f"{name}: flag {entry.flag} here, {named} in {group.cls}")
            flag = entry.flag or named or "--" + name.replace("_", "-")
            found.append(Setting(inner, fields[name], entry, flag))


def value_of(instance: object, item: Setting) -> Any:
    value = instance
    for name in item.path:
        value = getattr(value, name)
    return value


def check_values(instance: object) -> None:
    """For a dataclass's `__post_init__`: ConfigError naming the flag of the first value that is
    not allowed."""
    for item in settings_of(type(instance)):
        item.check(value_of(instance, item))


def build(cls: type[D], values: Mapping[str, Any]) -> D:
    """A `cls` from values keyed by `Setting.dest`; settings missing from `values` keep their
    defaults."""
    derived = derive(cls)
    tree: dict[str, Any] = {}
    for item in derived.settings:
        if item.dest in values:
            node = tree
            for name in item.path[:-1]:
                node = node.setdefault(name, {})
            value = values[item.dest]
            node[item.name] = tuple(value) if isinstance(item.kind, Many) else value

    def make(path: tuple[str, ...], node: dict[str, Any]) -> Any:
        arguments = {}
        for name, value in node.items():
            inner = (*path, name)
            arguments[name] = make(inner, value) if inner in derived.groups else value
        return derived.groups[path](**arguments)

    return cast(D, make((), tree))


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


def usage_error_text(prog: str, message: str) -> str:
    """A usage error as both commands print it: the error, then where help is."""
    return f"{prog}: error: {message}\nTry '{prog} --help' for more information.\n"


NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")
"""A negative number, which argparse takes as a value rather than a flag."""

N = TypeVar("N")


class SettingsParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are two lines: the error, then where help is; a flag
    that neither it nor any of its commands knows is named as such (with the nearest known one),
    before argparse takes the word after it for a command or a value."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, usage_error_text(self.prog, message))

    @overload
    def parse_args(
        self, args: Iterable[str] | None = None, namespace: None = None
    ) -> argparse.Namespace: ...
    @overload
    def parse_args(self, args: Iterable[str] | None, namespace: N) -> N: ...
    @overload
    def parse_args(self, *, namespace: N) -> N: ...
    def parse_args(self, args: Iterable[str] | None = None, namespace: Any = None) -> Any:
        arguments = sys.argv[1:] if args is None else list(args)
        unknown = unknown_flag(arguments, known_flags(self))
        if unknown is not None:
            self.error(unknown)
        return super().parse_args(arguments, namespace)


def known_flags(parser: argparse.ArgumentParser) -> set[str]:
    """Every flag of `parser` and of its commands' parsers, however deep (argparse's private
    `_actions`: tests/test_upstream_contracts.py checks what is read of it)."""
    flags: set[str] = set()
    for action in parser._actions:
        flags.update(action.option_strings)
        if isinstance(action.choices, Mapping):  # add_subparsers: command name -> parser
            for command in action.choices.values():
                if isinstance(command, argparse.ArgumentParser):
                    flags |= known_flags(command)
    return flags


def unknown_flag(arguments: Sequence[str], flags: set[str]) -> str | None:
    """ "unknown flag --x (did you mean --y?)" for the first argument that is a flag none of
    `flags` is, or starts (argparse takes an unambiguous prefix); None if there is none."""
    for argument in arguments:
        if argument == "--":
            return None
        if not argument.startswith("-") or argument == "-" or NUMBER.match(argument):
            continue
        if argument.startswith("--"):
            flag = argument.split("=", 1)[0]
            if any(known.startswith(flag) for known in flags):
                continue
        else:
            flag = argument[:2]  # a short flag may have its value attached: -m KEY=VALUE
            if flag in flags:
                continue
        message = f"unknown flag {flag}"
        names = sorted(known[2:] for known in flags if known.startswith("--"))
        nearest = difflib.get_close_matches(flag.lstrip("-"), names, n=1, cutoff=0.7)
        return f"{message} (did you mean --{nearest[0]}?)" if nearest else message
    return None


def argparse_type(kind: Kind[Any], dest: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return kind.parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = dest
    return parse


def add_arguments(
    parser: argparse.ArgumentParser,
    settings: Sequence[Setting],
    *,
    defaults: bool = False,
    section: str | None = None,
    dests: Mapping[str, str] | None = None,
) -> None:
    """One option per setting, in sections by `Setting.section` (or all in `section`).

    Without `defaults`, a flag not given is absent from the parsed namespace (`build` applies
    its default), so that the environment, or the same flag given earlier on the command line,
    can stand for it. `dests` renames destinations.
    """
    containers: dict[tuple[str | None, str | None], Any] = {(None, None): parser}
    for item in settings:
        title = section or item.section
        if (title, None) not in containers:
            containers[title, None] = parser.add_argument_group(title)
        target = containers[title, None]
        if (exclusive := item.declaration.exclusive) is not None:
            if (title, exclusive) not in containers:
                containers[title, exclusive] = target.add_mutually_exclusive_group()
            target = containers[title, exclusive]
        default: Any = argparse.SUPPRESS
        if defaults and item.field.default is not dataclasses.MISSING:
            default = list(item.default) if isinstance(item.kind, Many) else item.default
        aliases = item.declaration.aliases
        names = sorted([item.flag, *aliases], key=lambda name: name.startswith("--"))
        options: dict[str, Any] = {
            "default": default,
            "help": item.help_text(),
            "dest": (dests or {}).get(item.dest, item.dest),
        }
        kind = item.kind
        if isinstance(kind, Switch):
            action = argparse.BooleanOptionalAction if kind.negatable else "store_true"
            target.add_argument(*names, action=action, **options)
        elif isinstance(kind, Many):
            parse = argparse_type(kind.item, item.dest)
            target.add_argument(
                *names, action="append", type=parse, metavar=kind.usage(), **options
            )
        else:
            parse = argparse_type(kind, item.dest)
            target.add_argument(*names, type=parse, metavar=kind.usage(), **options)
