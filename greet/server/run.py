"""Running one server process until SIGTERM or SIGINT: what `python -m greet.server` does."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket

from greet.server.app import GreetServer
from greet.server.config import ServerConfig

__all__ = ["serve"]

log = logging.getLogger("greet.server")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def serve(config: ServerConfig, *, sock: socket.socket | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then shut down cleanly."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    server = GreetServer(config)
    await server.start(sock=sock)
    log.info("greet server listening on %s", server.target)
    try:
        await stop.wait()
        log.info("shutting down")
        await server.stop(config.grace)
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)
    log.info("stopped")
