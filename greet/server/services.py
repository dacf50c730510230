"""Which services a server serves: servicers given in code, or named as `MODULE:ATTR`.

A servicer is what grpclib serves (`grpclib._typing.IServable`): an instance of a subclass of the
`...Base` class betterproto generates for a service (`InventoryServiceBase`), whose
`__mapping__()` maps each method path `/package.Service/Method` to its handler.

`--service MODULE:ATTR` (repeatable; `GREET_SERVICE=a:B,c:D`) names servicers for `python -m
greet.server`. MODULE is imported (from the current folder too, as `python -m` puts it on the
path) and ATTR, a dotted name inside it, is

- a servicer class, made with no arguments;
- a function (or other callable) of no arguments returning one servicer or a sequence of them;
- a servicer itself.

`check_service_spec` imports MODULE and looks ATTR up (so a typo is a usage error at start-up,
naming the flag); `make_services` calls what was found, once per server (each worker process of
`--workers` imports and makes its own).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from typing import Any

from grpclib._typing import ICheckable, IServable

from greet._settings import ConfigError

__all__ = [
    "SERVICE_FLAG",
    "check_service_spec",
    "find_service",
    "make_services",
    "service_names",
]

SERVICE_FLAG = "--service"


def service_names(servicer: ICheckable) -> tuple[str, ...]:
    """The services a servicer serves, `package.Service` for methods `/package.Service/Method`,
    each once, in the order of its methods."""
    names = (path.split("/")[1] for path in servicer.__mapping__())
    return tuple(dict.fromkeys(names))


def is_servicer(value: object) -> bool:
    return not isinstance(value, type) and callable(getattr(value, "__mapping__", None))


def split_spec(spec: str) -> tuple[str, str]:
    """`MODULE:ATTR` -> (MODULE, ATTR); ValueError saying what is wrong otherwise."""
    module, colon, attribute = spec.strip().partition(":")
    if not colon or not module or not attribute:
        raise ValueError(f"must be MODULE:ATTR (inventory_service:InventoryService), not {spec!r}")
    return module, attribute


def find_service(spec: str) -> Any:
    """Import MODULE of `spec` and return its ATTR (not yet called); ConfigError naming the flag
    when MODULE cannot be imported or has no ATTR."""
    try:
        module_name, attribute = split_spec(spec)
    except ValueError as error:
        raise ConfigError(f"{SERVICE_FLAG}: {error}") from None
    try:
        value: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(f"{SERVICE_FLAG} {spec}: cannot import {module_name}: {error}") from None
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise ConfigError(f"{SERVICE_FLAG} {spec}: {module_name} has no {attribute}") from None
    if not is_servicer(value) and not callable(value):
        raise ConfigError(
            f"{SERVICE_FLAG} {spec}: {attribute} is neither a servicer class, a function "
            f"returning servicers, nor a servicer"
        )
    return value


def check_service_spec(spec: str) -> None:
    """ConfigError naming the flag when `spec` does not name something to serve."""
    find_service(spec)


def made_from(spec: str, found: Any) -> list[IServable]:
    made = found if is_servicer(found) else found()
    servicers = [made] if is_servicer(made) else made
    if not isinstance(servicers, Iterable) or isinstance(servicers, (str, bytes)):
        servicers = [servicers]
    servicers = list(servicers)
    for servicer in servicers:
        if not is_servicer(servicer):
            raise ConfigError(
                f"{SERVICE_FLAG} {spec}: made {servicer!r}, not a servicer (an instance of "
                f"a generated ...Base class)"
            )
    if not servicers:
        raise ConfigError(f"{SERVICE_FLAG} {spec}: made no servicer")
    return servicers


def make_services(specs: Sequence[str]) -> list[IServable]:
    """The servicers `specs` name, in order (see the module docstring)."""
    return [servicer for spec in specs for servicer in made_from(spec, find_service(spec))]
