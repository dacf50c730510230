"""Connection lifecycle: handshake timeout, keepalive, idleness, maximum age, graceful drain.

What each timer does, as grpc-go's keepalive package has it (greet.transport.config gives the
defaults):
- handshake: a connection whose peer has not sent its SETTINGS (the end of the HTTP/2 preface)
  within `handshake_timeout` is closed: half-open or silent connections cost nothing for long;
- keepalive: after `keepalive.time` without anything read from the peer, the server pings; no
  acknowledgement within `keepalive.timeout` closes the connection (the peer is gone);
- idle: after `max_connection_idle` with no call open, a graceful GOAWAY and close;
- age: after `max_connection_age` (give or take 10%, so that replicas' connections do not all
  end at once), a graceful drain: clients open a new connection for new calls, and behind an L4
  load balancer such as a Kubernetes Service they spread over new replicas. Calls in flight get
  `max_connection_age_grace` more seconds (None: as long as they need), then are ended.

A graceful drain is two GOAWAY frames (RFC 9113 section 6.8): the first with the largest stream
id, so streams the client has already sent are still served, then after a PING round trip the
second with the last stream id really accepted. Streams after that are refused.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Protocol

from greet.transport.config import TransportConfig

__all__ = ["ConnectionLifecycle", "Lifecycle"]

log = logging.getLogger("greet.transport")

AGE_JITTER = 0.1


class Lifecycle(Protocol):
    """What the timers need from a connection."""

    @property
    def calls_open(self) -> int: ...

    def send_keepalive_ping(self) -> None: ...

    def begin_drain(self, reason: str) -> None: ...

    def end_calls(self, reason: str) -> None: ...

    def close(self, reason: str) -> None: ...


class ConnectionLifecycle:
    """The timers of one connection (see the module docstring)."""

    __slots__ = (
        "_age",
        "_config",
        "_connection",
        "_grace",
        "_handshake",
        "_idle",
        "_keepalive",
        "_keepalive_deadline",
        "_loop",
        "last_call_ended",
        "last_read",
    )

    def __init__(
        self,
        connection: Lifecycle,
        config: TransportConfig,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._connection = connection
        self._config = config
        self._loop = loop
        now = loop.time()
        self.last_read = now
        self.last_call_ended = now
        self._handshake: asyncio.TimerHandle | None = loop.call_later(
            config.handshake_timeout, self._handshake_expired
        )
        self._keepalive: asyncio.TimerHandle | None = loop.call_later(
            config.keepalive.time, self._keepalive_due
        )
        self._keepalive_deadline: asyncio.TimerHandle | None = None
        self._idle: asyncio.TimerHandle | None = None
        if config.max_connection_idle is not None:
            self._idle = loop.call_later(config.max_connection_idle, self._idle_due)
        self._age: asyncio.TimerHandle | None = None
        if config.max_connection_age is not None:
            jitter = random.uniform(1 - AGE_JITTER, 1 + AGE_JITTER)
            self._age = loop.call_later(config.max_connection_age * jitter, self._age_due)
        self._grace: asyncio.TimerHandle | None = None

    def handshake_done(self) -> None:
        if self._handshake is not None:
            self._handshake.cancel()
            self._handshake = None

    def _handshake_expired(self) -> None:
        self._handshake = None
        self._connection.close(
            f"no HTTP/2 preface within {self._config.handshake_timeout:g}s (handshake timeout)"
        )

    # -- keepalive ---------------------------------------------------------------------------

    def _keepalive_due(self) -> None:
        quiet_for = self._loop.time() - self.last_read
        interval = self._config.keepalive.time
        if quiet_for < interval:
            self._keepalive = self._loop.call_later(interval - quiet_for, self._keepalive_due)
            return
        self._connection.send_keepalive_ping()
        self._keepalive_deadline = self._loop.call_later(
            self._config.keepalive.timeout, self._keepalive_expired
        )
        self._keepalive = self._loop.call_later(interval, self._keepalive_due)

    def ping_acknowledged(self) -> None:
        if self._keepalive_deadline is not None:
            self._keepalive_deadline.cancel()
            self._keepalive_deadline = None

    def _keepalive_expired(self) -> None:
        self._keepalive_deadline = None
        log.info(
            "keepalive ping not acknowledged within %gs: closing the connection",
            self._config.keepalive.timeout,
        )
        self._connection.close(
            f"keepalive ping not acknowledged within {self._config.keepalive.timeout:g}s"
        )

    # -- idleness and age --------------------------------------------------------------------

    def _idle_due(self) -> None:
        limit = self._config.max_connection_idle
        assert limit is not None
        if self._connection.calls_open:
            self._idle = self._loop.call_later(limit, self._idle_due)
            return
        idle_for = self._loop.time() - self.last_call_ended
        if idle_for < limit:
            self._idle = self._loop.call_later(limit - idle_for, self._idle_due)
            return
        self._idle = None
        self._connection.begin_drain("max_idle")

    def _age_due(self) -> None:
        self._age = None
        self._connection.begin_drain("max_age")
        grace = self._config.max_connection_age_grace
        if grace is not None:
            self._grace = self._loop.call_later(grace, self._grace_over)

    def _grace_over(self) -> None:
        self._grace = None
        self._connection.end_calls("max connection age grace period over")

    def stop(self) -> None:
        """The connection is closed: no timer may fire any more."""
        for handle in (
            self._handshake,
            self._keepalive,
            self._keepalive_deadline,
            self._idle,
            self._age,
            self._grace,
        ):
            if handle is not None:
                handle.cancel()
        self._handshake = self._keepalive = self._keepalive_deadline = None
        self._idle = self._age = self._grace = None
