"""greet: a typed, pure-Python gRPC GreetService and its client library."""

__all__ = ["__version__"]

__version__ = "0.1.0"
