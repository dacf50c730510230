"""MetricsEndpoint: `--metrics-port`, a minimal HTTP/1.1 server on the event loop that answers
GET /metrics (and /) with a prometheus_client registry in the Prometheus text format."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from greet.addresses import format_address
from greet.server.listen import dual_stack_socket

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["MetricsEndpoint"]

log = logging.getLogger("greet.metrics")

READ_TIMEOUT = 10.0
"""Seconds a scraper gets to send its request line and headers."""


class MetricsEndpoint:
    """GET /metrics -> `registry` as Prometheus text; `before_scrape` runs before each scrape
    (it brings counters up to date, see greet.server.metrics)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        host: str,
        port: int,
        *,
        before_scrape: Callable[[], None] | None = None,
    ) -> None:
        self.registry = registry
        self.host = host
        self.port = port
        self.before_scrape = before_scrape
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        sock = dual_stack_socket(self.host, self.port)  # `--host ::`: IPv4 scrapers too
        if sock is not None:
            self._server = await asyncio.start_server(self._handle, sock=sock)
        else:
            self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://{format_address(self.host, self.port)}/metrics"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        try:
            request_line = await asyncio.wait_for(reader.readline(), READ_TIMEOUT)
            while (await asyncio.wait_for(reader.readline(), READ_TIMEOUT)) not in (
                b"\r\n",
                b"\n",
                b"",
            ):
                pass  # headers: not needed
            parts = request_line.decode("latin-1").split()
            method, path = (parts[0], parts[1].split("?")[0]) if len(parts) >= 2 else ("", "")
            if method in ("GET", "HEAD") and path in ("/metrics", "/"):
                if self.before_scrape is not None:
                    self.before_scrape()
                body = generate_latest(self.registry)
                status, content_type = "200 OK", CONTENT_TYPE_LATEST
                if method == "HEAD":
                    body = b""
            else:
                body, status, content_type = b"not found\n", "404 Not Found", "text/plain"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("latin-1")
                + body
            )
            await writer.drain()
        except (asyncio.TimeoutError, ConnectionError):
            pass
        except Exception:
            log.exception("metrics request failed")
        finally:
            writer.close()
