"""A server interceptor of your own: a per-method rate limit that answers RESOURCE_EXHAUSTED.

    python -m greet.examples.rate_limit --port 8080 --per-second 5 --burst 10

serves GreetService with every GreetService method limited to `--burst` calls at once and
`--per-second` calls a second after that (a token bucket per method); a call over the limit gets
RESOURCE_EXHAUSTED and is never handled. Health and reflection stay unlimited. Try it with

    python -m greet.client --target 127.0.0.1:8080 unary     # again and again

The interceptor is the `RateLimit` class below: an object with an `intercept(call, proceed)`
coroutine that raises GRPCError to refuse a call, or awaits `proceed()` to let it through
(see greet.middleware). GreetServer runs greet's own interceptors first (metrics, the access
log, auth), then the ones passed as `interceptors=`: refused calls are counted in
grpc_server_handled_total{grpc_code="ResourceExhausted"} with `--metrics-port`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from greet.middleware import Proceed, ServerCall
from greet.server import GreetServer, ServerConfig
from greet.server.logs import configure_logging

__all__ = ["RateLimit", "TokenBucket", "main"]

log = logging.getLogger("greet.examples.rate_limit")

LIMITED_PREFIX = "/greet_service.GreetService/"


@dataclass
class TokenBucket:
    """`burst` tokens, refilled at `per_second`; each call takes one."""

    per_second: float
    burst: int
    tokens: float = field(init=False)
    updated: float = field(init=False, default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = float(self.burst)

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class RateLimit:
    """The interceptor: one token bucket per method whose path starts with `prefix`."""

    def __init__(self, per_second: float, burst: int, prefix: str = LIMITED_PREFIX) -> None:
        self.per_second = per_second
        self.burst = burst
        self.prefix = prefix
        self.buckets: dict[str, TokenBucket] = {}

    async def intercept(self, call: ServerCall, proceed: Proceed) -> None:
        if call.method.startswith(self.prefix):
            bucket = self.buckets.get(call.method)
            if bucket is None:
                bucket = self.buckets[call.method] = TokenBucket(self.per_second, self.burst)
            if not bucket.take():
                raise GRPCError(
                    Status.RESOURCE_EXHAUSTED,
                    f"rate limit of {call.method}: {self.burst} calls, then "
                    f"{self.per_second:g} a second; try again later",
                )
        await proceed()


async def main(
    *, host: str = "127.0.0.1", port: int = 8080, per_second: float = 5.0, burst: int = 10
) -> None:
    """Serve with the rate limit until SIGINT or SIGTERM, then drain and stop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    limit = RateLimit(per_second, burst)
    async with GreetServer(ServerConfig(host=host, port=port), interceptors=[limit]) as server:
        log.info("rate limit: %d calls per method, then %g a second", burst, per_second)
        log.info("greet server listening on %s", server.target)
        await stop.wait()
        log.info("shutting down")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m greet.examples.rate_limit", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0: any free port (logged)")
    parser.add_argument("--per-second", type=float, default=5.0, help="calls a second per method")
    parser.add_argument("--burst", type=int, default=10, help="calls at once per method")
    args = parser.parse_args(argv)
    if args.per_second < 0:
        parser.error("--per-second must be 0 or more")
    if args.burst < 1:
        parser.error("--burst must be at least 1")
    if not 0 <= args.port <= 65535:
        parser.error("--port must be 0-65535")
    return args


def run(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging("text")
    try:
        asyncio.run(
            main(host=args.host, port=args.port, per_second=args.per_second, burst=args.burst)
        )
    except OSError as error:
        log.error("cannot serve: %s", error)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(run())
