"""The greet gRPC server: `python -m greet.server`, or `GreetServer` from code."""

from greet.server.app import GreetServer
from greet.server.config import ServerConfig, parse_config
from greet.server.run import serve

__all__ = ["GreetServer", "ServerConfig", "parse_config", "serve"]
