"""Abuse limits the connection applies itself, the same way on both engines.

- `TokenBucket`: RST_STREAM from the peer (rapid reset, CVE-2023-44487) and SETTINGS frames each
  spend a token; a connection that runs its bucket dry gets GOAWAY ENHANCE_YOUR_CALM. The bucket
  holds `burst` tokens and refills at `rate` per second, so ordinary cancellation never comes near.
- `PingStrikes`: grpc-go's keepalive enforcement. A PING that comes sooner than `min_time` after
  the last one (or while no call is open, unless that is permitted) is a strike; the server's own
  HEADERS or DATA forgive them (a client pinging an active stream is fine). More than
  `max_strikes` strikes: GOAWAY ENHANCE_YOUR_CALM with debug data "too_many_pings", the words
  grpc-go and grpcio use, which their clients read to back off.
"""

from __future__ import annotations

import time

__all__ = ["PingStrikes", "TokenBucket"]


class TokenBucket:
    """`burst` tokens, refilled at `rate` per second; `take()` is False once empty."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._last = time.monotonic()

    def take(self) -> bool:
        tokens = self._tokens
        if tokens < 1.0:
            now = time.monotonic()
            tokens = min(self.burst, tokens + (now - self._last) * self.rate)
            self._last = now
            if tokens < 1.0:
                self._tokens = tokens
                return False
        elif tokens < self.burst:
            now = time.monotonic()
            tokens = min(self.burst, tokens + (now - self._last) * self.rate)
            self._last = now
        else:
            self._last = time.monotonic()
        self._tokens = tokens - 1.0
        return True


class PingStrikes:
    """Counts pings that break the keepalive enforcement policy (see the module docstring)."""

    __slots__ = ("_last_ping", "max_strikes", "min_time", "permit_without_calls", "strikes")

    NO_CALLS_INTERVAL = 7200.0  # grpc-go: without calls, one ping per two hours is fine

    def __init__(self, min_time: float, permit_without_calls: bool, max_strikes: int) -> None:
        self.min_time = min_time
        self.permit_without_calls = permit_without_calls
        self.max_strikes = max_strikes
        self.strikes = 0
        self._last_ping: float | None = None

    def ping(self, calls_open: bool) -> bool:
        """Record a PING; False when the peer has earned a GOAWAY."""
        now = time.monotonic()
        last = self._last_ping
        self._last_ping = now
        if last is not None:
            allowed = (
                self.min_time
                if calls_open or self.permit_without_calls
                else max(self.min_time, self.NO_CALLS_INTERVAL)
            )
            if now - last < allowed:
                self.strikes += 1
        return self.strikes <= self.max_strikes

    def forgive(self) -> None:
        """The server sent HEADERS or DATA: pings so far are fine (grpc-go resets on writes)."""
        self.strikes = 0
        self._last_ping = None
