"""The greet gRPC server: `python -m greet.server`, or `GreetServer` from code.

The names below are imported on first use, so that `python -m greet.server` can arrange its
Ctrl-C handling before any heavy import (see greet.server.__main__).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from greet.server.app import GreetServer
    from greet.server.config import ServerConfig, parse_config
    from greet.server.run import serve

__all__ = ["GreetServer", "ServerConfig", "parse_config", "serve"]

HOMES = {
    "GreetServer": "greet.server.app",
    "ServerConfig": "greet.server.config",
    "parse_config": "greet.server.config",
    "serve": "greet.server.run",
}
"""Where each public name is defined."""


def __getattr__(name: str) -> Any:
    if name in HOMES:
        return getattr(importlib.import_module(HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
