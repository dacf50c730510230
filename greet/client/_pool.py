"""EndpointPool: the endpoints a client balances over, their connections and their health.

Targets are `host:port` or `[v6]:port` endpoints, or `dns:///host:port` names (Endpoint,
DnsName: `parse_targets`). A name stands for every address it resolves to (`resolve_dns`, the
default `Resolve`: every A and AAAA address, from the system resolver, so /etc/hosts and the
search domains apply as for any other program); it is resolved again every
`PoolOptions.resolve_interval` seconds (addresses that appear are added, addresses that
disappear are dropped).

- Each endpoint has `connections_per_endpoint` HTTP/2 connections (greet.transport Channels,
  opened on first use); calls go round-robin over the healthy endpoints and, within an endpoint,
  over its connections (`pick` chooses both).
- An endpoint whose connection fails (refused, reset, GOAWAY) is taken out at once; a background
  probe reconnects with exponential backoff and jitter and puts it back when a connection opens.
- Backup targets are used only while every primary endpoint is down. When everything is down,
  calls still go to the endpoints in turn, so they fail with the real error (or find one back).
- Connecting is grpc-go's: the calls that need a connection while one is being opened wait for
  that one (greet.transport's Channel shares it), and an endpoint whose connect failed is in
  TRANSIENT_FAILURE until a probe connects: attempts on it fail at once with that connect's error
  (`EndpointState.failure`, raised as TransientFailure) instead of each opening a connection of
  its own. So a target that accepts TCP and never speaks HTTP/2 fails a call after one handshake
  timeout, however many attempts its retry policy allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl as ssl_module
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from greet.addresses import format_address, parse_address
from greet.transport import Channel, ChannelConfig, Connector

__all__ = [
    "DNS_SCHEME",
    "DnsName",
    "Endpoint",
    "EndpointPool",
    "EndpointState",
    "PoolOptions",
    "Resolve",
    "Target",
    "TransientFailure",
    "parse_target",
    "parse_target_spec",
    "parse_targets",
    "resolve_dns",
]

# -- targets ---------------------------------------------------------------------------------------

DNS_SCHEME = "dns:///"


@dataclass(frozen=True, order=True)
class Endpoint:
    """One server address."""

    host: str
    port: int

    def __str__(self) -> str:
        return format_address(self.host, self.port)


@dataclass(frozen=True, order=True)
class DnsName:
    """`dns:///host:port`: every address the name resolves to (A and AAAA), re-resolved."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{DNS_SCHEME}{Endpoint(self.host, self.port)}"


Target: TypeAlias = "Endpoint | DnsName"


def parse_target(target: str) -> Endpoint:
    """`host:port` or `[v6]:port` -> Endpoint; ValueError on anything else."""
    try:
        host, port = parse_address(target.strip())
    except ValueError as error:
        raise ValueError(f"bad target {target!r}: {error}") from None
    return Endpoint(host, port)


def parse_target_spec(target: str) -> Target:
    """`host:port`, `[v6]:port` or `dns:///host:port`; ValueError on anything else."""
    text = target.strip()
    if text.startswith("dns:"):
        if not text.startswith(DNS_SCHEME):
            raise ValueError(
                f"bad target {target!r}: expected dns:///host:port (no DNS server authority)"
            )
        endpoint = parse_target(text[len(DNS_SCHEME) :])
        return DnsName(endpoint.host, endpoint.port)
    return parse_target(text)


def parse_targets(targets: str | Sequence[str]) -> list[Target]:
    """Targets given as a comma-separated string or as a list (`dns:///` names allowed); empty
    entries are skipped, anything else that is not a target is a ValueError."""
    names = targets.split(",") if isinstance(targets, str) else list(targets)
    return [parse_target_spec(name) for name in names if name.strip()]


# -- resolving names -------------------------------------------------------------------------------

Resolve: TypeAlias = Callable[[str, int], Awaitable[list[Endpoint]]]
"""`await resolve(host, port)` -> the endpoints the name stands for (OSError if none)."""


async def resolve_dns(host: str, port: int) -> list[Endpoint]:
    """Every address of `host` (IPv4 and IPv6), without duplicates, in resolver order."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    endpoints: dict[Endpoint, None] = {}
    for _family, _type, _proto, _name, address in infos:
        endpoints[Endpoint(str(address[0]), int(address[1]))] = None
    if not endpoints:
        raise OSError(f"{host} has no addresses")
    return list(endpoints)


# -- the pool --------------------------------------------------------------------------------------

log = logging.getLogger("greet.client")

PRIMARY, BACKUP = 0, 1


@dataclass(frozen=True)
class PoolOptions:
    """Connections per endpoint, how failed endpoints are probed, how often names re-resolve."""

    connections_per_endpoint: int = 1
    reconnect_initial_backoff: float = 0.1
    reconnect_max_backoff: float = 5.0
    reconnect_multiplier: float = 1.6
    reconnect_jitter: float = 0.2
    connect_timeout: float = 5.0
    resolve_interval: float = 30.0

    def __post_init__(self) -> None:
        if self.connections_per_endpoint < 1:
            raise ValueError("connections_per_endpoint must be at least 1")
        if not 0 < self.reconnect_initial_backoff <= self.reconnect_max_backoff:
            raise ValueError("reconnect backoffs must satisfy 0 < initial <= max")
        if self.reconnect_multiplier < 1 or not 0 <= self.reconnect_jitter < 1:
            raise ValueError("reconnect_multiplier >= 1 and 0 <= reconnect_jitter < 1")
        if self.connect_timeout <= 0 or self.resolve_interval <= 0:
            raise ValueError("connect_timeout and resolve_interval must be positive")


class TransientFailure(OSError):
    """An attempt on an endpoint whose last connect failed, while it waits to reconnect: it fails
    at once, with that connect's error as its message (grpc-go's TRANSIENT_FAILURE)."""


class EndpointState:
    """One endpoint in the pool: its connections, whether it is taken out (`down`) and, if its
    last connect failed, how (`failure`)."""

    __slots__ = (
        "channels",
        "down",
        "endpoint",
        "failure",
        "name",
        "next_channel",
        "only",
        "probe",
        "tier",
    )

    def __init__(self, endpoint: Endpoint, tier: int, channels: list[Channel]) -> None:
        self.endpoint = endpoint
        self.name = str(endpoint)
        self.tier = tier
        self.channels = channels
        self.only = channels[0] if len(channels) == 1 else None
        """The one connection of an endpoint that has one (the default), else None."""
        self.next_channel = 0
        self.down = False
        self.failure: OSError | None = None
        """Why the last connect failed, while the endpoint is down (attempts on it then fail at
        once: `unreachable`); None when it is up or its connects have not failed."""
        self.probe: asyncio.Task[None] | None = None

    def unreachable(self) -> TransientFailure:
        """The error of an attempt on this endpoint while its `failure` stands."""
        error = TransientFailure(str(self.failure))
        error.__cause__ = self.failure  # the connect's own error, which the call's error names
        return error

    def channel(self) -> Channel:
        """The next connection, round-robin."""
        if self.only is not None:
            return self.only
        channels = self.channels
        self.next_channel = (self.next_channel + 1) % len(channels)
        return channels[self.next_channel]

    def close(self) -> None:
        if self.probe is not None:
            self.probe.cancel()
            self.probe = None
        for channel in self.channels:
            channel.close()

    def __repr__(self) -> str:
        return f"<EndpointState {self.name} {'down' if self.down else 'up'}>"


class EndpointPool:
    """The endpoints of one client (see the module docstring)."""

    def __init__(
        self,
        primaries: Sequence[Target],
        backups: Sequence[Target] = (),
        *,
        ssl: ssl_module.SSLContext | None = None,
        options: PoolOptions | None = None,
        resolve: Resolve = resolve_dns,
        channel_config: ChannelConfig | None = None,
        connector: Connector | None = None,
    ) -> None:
        if not primaries:
            raise ValueError("at least one target is needed")
        self.options = options or PoolOptions()
        self._ssl = ssl
        self._channel_config = channel_config or ChannelConfig()
        self._connector = connector
        self._resolve = resolve
        self._targets: list[tuple[Target, int]] = [(t, PRIMARY) for t in primaries] + [
            (t, BACKUP) for t in backups
        ]
        self._resolved: dict[tuple[Target, int], list[Endpoint]] = {}
        self._states: dict[tuple[Endpoint, int], EndpointState] = {}
        self._everything: list[EndpointState] = []
        self._candidates: list[EndpointState] = []  # what `pick` picks from, and how many
        self._count = 0
        self._next = -1
        self._resolver: asyncio.Task[None] | None = None
        self._closed = False
        for target, tier in self._targets:
            if isinstance(target, Endpoint):
                self._resolved[(target, tier)] = [target]
        self._needs_resolution = len(self._resolved) < len(self._targets)
        self._update()

    # -- picking -----------------------------------------------------------------------------

    @property
    def needs_resolution(self) -> bool:
        """True until the `dns:///` names have been resolved once (see `resolve`)."""
        return self._needs_resolution

    def pick(self) -> tuple[EndpointState, Channel] | None:
        """The next endpoint and its next connection, round-robin: healthy primaries, else
        healthy backups, else any. None until the `dns:///` names have been resolved once
        (`resolve`, then pick again), or when they resolved to nothing."""
        if self._needs_resolution:
            return None
        self._next += 1
        if not self._count:
            return None
        state = self._candidates[self._next % self._count]
        channel = state.only
        return (state, state.channel() if channel is None else channel)

    @property
    def endpoints(self) -> list[EndpointState]:
        """Every endpoint currently in the pool, primaries first."""
        return list(self._everything)

    # -- health ------------------------------------------------------------------------------

    def mark_down(
        self, state: EndpointState, channel: Channel, connect_error: OSError | None = None
    ) -> None:
        """A connection of `state` failed (`connect_error`: it could not be opened): take the
        endpoint out and start probing it."""
        if self._closed or channel not in state.channels:
            return
        if self._states.get((state.endpoint, state.tier)) is not state:
            return
        if connect_error is not None and state.failure is None:
            state.failure = connect_error
        if state.down:
            return
        log.info("endpoint %s is down, probing it", state.name)
        state.down = True
        for each in state.channels:
            each.close()
        self._update()
        state.probe = asyncio.create_task(self._probe(state), name=f"probe {state.name}")

    def mark_up(self, state: EndpointState) -> None:
        """A call on a down endpoint succeeded (or a probe connected): put it back."""
        if not state.down:
            return
        log.info("endpoint %s is back", state.name)
        state.down = False
        state.failure = None
        probe, state.probe = state.probe, None
        if probe is not None and probe is not asyncio.current_task():
            probe.cancel()
        self._update()

    async def _probe(self, state: EndpointState) -> None:
        options = self.options
        delay = options.reconnect_initial_backoff
        while state.down:
            jitter = random.uniform(1 - options.reconnect_jitter, 1 + options.reconnect_jitter)
            await asyncio.sleep(delay * jitter)
            channel = state.channels[0]
            try:
                await asyncio.wait_for(channel.__connect__(), options.connect_timeout)
            except asyncio.TimeoutError:  # still connecting: the connect goes on, shared
                delay = min(delay * options.reconnect_multiplier, options.reconnect_max_backoff)
                continue
            except OSError as error:
                state.failure = error
                delay = min(delay * options.reconnect_multiplier, options.reconnect_max_backoff)
                continue
            self.mark_up(state)

    # -- resolution --------------------------------------------------------------------------

    async def resolve(self) -> None:
        """Resolve every `dns:///` name now; start re-resolving them periodically."""
        if self._closed:
            return
        errors: list[str] = []
        for target, tier in self._targets:
            if isinstance(target, DnsName):
                try:
                    self._resolved[(target, tier)] = await self._resolve(target.host, target.port)
                except OSError as error:
                    errors.append(f"{target}: {error}")
        self._update()
        if errors and not self._everything:
            raise OSError("cannot resolve " + "; ".join(errors))
        self._needs_resolution = False
        if self._resolver is None:
            self._resolver = asyncio.create_task(self._resolve_periodically(), name="resolver")

    async def _resolve_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.options.resolve_interval)
            with contextlib.suppress(OSError):
                await self.resolve()

    def _update(self) -> None:
        """Rebuild the endpoint lists from the resolved targets and the health of each."""
        wanted: dict[tuple[Endpoint, int], None] = {}
        for (_target, tier), endpoints in self._resolved.items():
            for endpoint in endpoints:
                wanted[(endpoint, tier)] = None
        for key in list(self._states):
            if key not in wanted:
                self._states.pop(key).close()
        for key in sorted(wanted, key=lambda key: key[1]):
            if key not in self._states:
                self._states[key] = EndpointState(key[0], key[1], self._new_channels(key[0]))
        states = sorted(self._states.values(), key=lambda state: state.tier)
        self._everything = states
        primaries = [s for s in states if s.tier == PRIMARY and not s.down]
        backups = [s for s in states if s.tier == BACKUP and not s.down]
        self._candidates = primaries or backups or states
        self._count = len(self._candidates)

    def _new_channels(self, endpoint: Endpoint) -> list[Channel]:
        server_hostname = None
        if self._ssl is not None:
            names = [t.host for (t, _), eps in self._resolved.items() if endpoint in eps]
            dns_names = [n for n in names if n != endpoint.host]
            if dns_names:  # verify the certificate against the name, not the resolved address
                server_hostname = dns_names[0]
        return [
            Channel(
                endpoint.host,
                endpoint.port,
                ssl=self._ssl,
                server_hostname=server_hostname,
                config=self._channel_config,
                connector=self._connector,
            )
            for _ in range(self.options.connections_per_endpoint)
        ]

    def close(self) -> None:
        """Close every connection and stop probing and resolving."""
        self._closed = True
        if self._resolver is not None:
            self._resolver.cancel()
            self._resolver = None
        for state in self._states.values():
            state.close()
