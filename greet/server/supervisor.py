"""`python -m greet.server --workers N`: N worker processes sharing one port, and their supervisor.

The supervisor (the `python -m greet.server` process itself) does not serve gRPC. It

1. reserves the listening address: one socket with SO_REUSEPORT, bound but never listening, so
   `--port 0` resolves to a real port, that port stays ours while workers come and go, and a
   port held by another program is a one-line error before any worker starts;
2. starts N workers (multiprocessing "spawn": a fresh interpreter, nothing inherited but the
   arguments) that each bind their own SO_REUSEPORT socket to that address and listen on it;
   each reports over a pipe when it serves, and the supervisor logs the readiness line
   `greet server listening on HOST:PORT` once, after every worker is ready;
3. watches them: a worker that exits is replaced at once (logged), with a back-off only for
   workers that die before they ever serve (a broken config would otherwise spin);
4. on SIGTERM/SIGINT forwards SIGTERM to every worker, each of which drains its calls for up to
   `--grace` seconds, and exits 0 once all have exited (SIGKILL after grace + a margin).
   Workers ignore SIGINT themselves, so a terminal's Ctrl-C, which reaches every process of the
   group, is one graceful stop (see greet.server.worker_processes).

Why one socket per worker rather than one inherited socket: with SO_REUSEPORT the Linux kernel
hashes each new connection to one of the listening sockets, so connections (and with HTTP/2, the
calls on them) spread evenly over the workers, and a dead worker's socket leaves the group, so no
connection waits in the queue of a process that is gone. With one shared socket every worker's
event loop is woken for each connection and whichever accepts first wins, which piles connections
onto some workers (measured: two SO_REUSEPORT workers give about 1.7x one; benchmarks/RESULTS.md).
The kernel only balances between sockets of the same user; on macOS SO_REUSEPORT does not
balance at all.

Workers learn that the supervisor is gone (even by SIGKILL) from the end of file on their pipe
and then stop gracefully, so no worker outlives its supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing
import os
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, TypeAlias

from greet.addresses import format_address
from greet.server.app import GreetServer
from greet.server.config import ServerConfig
from greet.server.metrics_endpoint import MetricsEndpoint
from greet.server.multiprocess_metrics import (
    prepare_multiprocess_dir,
    remove_multiprocess_dir,
    supervisor_registry,
)
from greet.server.run import configure_logging, run_event_loop, serve
from greet.server.worker_processes import (
    MAX_WORKERS_PER_CPU,
    available_cpus,
    children_ignore_sigint,
    worker_count,
)

__all__ = ["MAX_WORKERS_PER_CPU", "Supervisor", "supervise", "worker_count"]

log = logging.getLogger("greet.server")

SockAddr: TypeAlias = "tuple[Any, ...]"

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
KILL_MARGIN = 5.0
"""Seconds past --grace after which workers that still run are killed."""
MAX_STARTUP_FAILURES = 5
"""Replacements in a row that die before serving; then the supervisor gives up (exit 1)."""
FIRST_BACKOFF, MAX_BACKOFF = 0.1, 2.0


def listen_address(host: str, port: int) -> tuple[socket.AddressFamily, SockAddr]:
    """The first address `host` resolves to for listening (IPv6 or IPv4)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


def port_sharing_socket(family: socket.AddressFamily, sockaddr: SockAddr) -> socket.socket:
    """A TCP socket with SO_REUSEPORT, bound to `sockaddr`; it joins the kernel's balancing
    group for that port when it starts listening."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise OSError("--workers needs SO_REUSEPORT, which this system lacks; use --workers 1")
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


def describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-exitcode).name}"
    return f"exit status {exitcode}"


# --- the worker side (runs in the child process) ---------------------------------------------


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process is started with (pickled to the child)."""

    slot: int
    config: ServerConfig
    family: socket.AddressFamily
    sockaddr: SockAddr


def run_worker(spec: WorkerSpec, channel: Connection) -> None:
    """The worker process: serve on an own SO_REUSEPORT socket until SIGTERM."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # see children_ignore_sigint
    configure_logging(spec.config)  # a spawned process starts without the parent's set-up

    def ready(server: GreetServer) -> None:
        channel.send(os.getpid())
        # The supervisor never writes: the pipe becomes readable only at its end of file,
        # when the supervisor is gone. Then stop as if told to.
        asyncio.get_running_loop().add_reader(channel.fileno(), supervisor_gone)

    def supervisor_gone() -> None:
        asyncio.get_running_loop().remove_reader(channel.fileno())
        log.warning("worker %d: supervisor is gone; stopping", spec.slot)
        os.kill(os.getpid(), signal.SIGTERM)

    try:
        sock = port_sharing_socket(spec.family, spec.sockaddr)
        run_event_loop(serve(spec.config, sock=sock, on_ready=ready))
    except OSError as error:
        log.error("worker %d cannot serve: %s", spec.slot, error)
        raise SystemExit(1) from None


# --- the supervisor side ---------------------------------------------------------------------


@dataclass
class Worker:
    """One running worker process and the supervisor's end of its pipe."""

    slot: int
    process: BaseProcess
    channel: Connection

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid


@contextlib.contextmanager
def readable(fd: int, future: asyncio.Future[int]) -> Iterator[None]:
    """Resolve `future` with `fd` once `fd` is readable, while inside the block."""
    loop = asyncio.get_running_loop()

    def done() -> None:
        if not future.done():
            future.set_result(fd)

    loop.add_reader(fd, done)
    try:
        yield
    finally:
        loop.remove_reader(fd)


class Supervisor:
    """Starts, watches and stops the worker processes (see the module docstring)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.count = worker_count(config)
        self.workers: dict[int, Worker] = {}
        self.address: tuple[str, int] | None = None
        self._context = multiprocessing.get_context("spawn")
        self._stop_requested = asyncio.Event()
        self._failed = asyncio.Event()
        self._all_ready = asyncio.Event()
        self._ready_slots: set[int] = set()
        self._stopping = False
        # --metrics-port: workers inherit PROMETHEUS_MULTIPROC_DIR (set before they start).
        self.metrics_dir: str | None = None
        self.metrics_endpoint: MetricsEndpoint | None = None

    @property
    def target(self) -> str:
        assert self.address is not None
        return format_address(*self.address)

    async def run(self) -> int:
        """Supervise until told to stop; the process exit status (0: clean)."""
        family, sockaddr = listen_address(self.config.host, self.config.port)
        with port_sharing_socket(family, sockaddr) as reservation:
            bound = reservation.getsockname()
            self.address = (bound[0], bound[1])
            worker_config = dataclasses.replace(
                self.config, port=bound[1], workers=1, metrics_port=None
            )
            specs = [
                WorkerSpec(slot, worker_config, family, bound) for slot in range(1, self.count + 1)
            ]
            with self._signal_handlers():
                if self.config.metrics_port is not None:
                    self.metrics_dir = prepare_multiprocess_dir()
                if self.count < self.config.workers:
                    log.warning(
                        "--workers %d is more than %d per CPU (%d CPUs); starting %d",
                        self.config.workers,
                        MAX_WORKERS_PER_CPU,
                        available_cpus(),
                        self.count,
                    )
                log.info("starting %d workers on %s", self.count, self.target)
                slots = [asyncio.create_task(self._keep_slot(spec)) for spec in specs]
                await self._first(self._all_ready, self._failed, self._stop_requested)
                if self._all_ready.is_set() and not self._stop_requested.is_set():
                    await self.start_metrics()
                    log.info("greet server listening on %s", self.target)
                    await self._first(self._failed, self._stop_requested)
                clean = await self._stop_workers(slots)
                await self.stop_metrics()
        log.info("stopped")
        return 0 if clean and not self._failed.is_set() else 1

    async def start_metrics(self) -> None:
        """`--metrics-port` in multi-worker mode: serve the sum over all workers' samples.

        Runs once, after every worker serves and before the readiness line. Workers are started
        with metrics_port=None (they do not compete for the port) and record into the
        multiprocess directory made in `run`; the endpoint adds the process_* and python_*
        metrics of the supervisor and of every live worker (see
        greet.server.multiprocess_metrics).
        """
        if self.metrics_dir is None:
            return
        registry = supervisor_registry(self.metrics_dir, self.worker_pids)
        self.metrics_endpoint = MetricsEndpoint(
            registry, self.config.host, self.config.metrics_port or 0
        )
        await self.metrics_endpoint.start()
        log.info("metrics on %s", self.metrics_endpoint.url)

    def worker_pids(self) -> list[int]:
        """The process ids of the workers running now."""
        return [worker.pid for worker in list(self.workers.values())]

    async def stop_metrics(self) -> None:
        """Counterpart of `start_metrics`, after every worker has exited."""
        if self.metrics_endpoint is not None:
            await self.metrics_endpoint.close()
        if self.metrics_dir is not None:
            remove_multiprocess_dir(self.metrics_dir)

    @contextlib.contextmanager
    def _signal_handlers(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        handled = list(STOP_SIGNALS)
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, self._stop_requested.set)
        if self.config.auth_token_file is not None:  # workers re-read their tokens on SIGHUP
            loop.add_signal_handler(signal.SIGHUP, self._signal_workers, signal.SIGHUP)
            handled.append(signal.SIGHUP)
        try:
            yield
        finally:
            for signum in handled:
                loop.remove_signal_handler(signum)

    @staticmethod
    async def _first(*events: asyncio.Event) -> None:
        """Wait until any of `events` is set."""
        waiters = [asyncio.create_task(event.wait()) for event in events]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    def _signal_workers(self, signum: int) -> None:
        for worker in self.workers.values():
            if worker.process.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signum)

    def _spawn(self, spec: WorkerSpec) -> Worker:
        ours, theirs = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=run_worker, args=(spec, theirs), name=f"greet-worker-{spec.slot}"
        )
        with children_ignore_sigint():
            process.start()
        theirs.close()  # the child holds its end; ours sees EOF when the child is gone
        worker = Worker(spec.slot, process, ours)
        self.workers[spec.slot] = worker
        return worker

    async def _wait_ready(self, worker: Worker) -> bool:
        """True once the worker reports it serves; False if it exits first."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        with readable(worker.channel.fileno(), future), readable(worker.process.sentinel, future):
            await future
        if worker.channel.poll():
            with contextlib.suppress(EOFError, OSError):
                worker.channel.recv()
                return True
        return False

    async def _wait_exit(self, worker: Worker) -> int:
        """Wait for the worker process to end, reap it and return its exit code."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        with readable(worker.process.sentinel, future):
            await future
        worker.process.join()
        worker.channel.close()
        if self.workers.get(worker.slot) is worker:
            del self.workers[worker.slot]
        exitcode = worker.process.exitcode
        worker.process.close()
        return exitcode if exitcode is not None else -1

    async def _keep_slot(self, spec: WorkerSpec) -> None:
        """Keep one worker slot filled until the supervisor stops."""
        failures = 0
        while not self._stopping:
            worker = self._spawn(spec)
            ready = await self._wait_ready(worker)
            if ready:
                failures = 0
                log.info("worker %d (pid %d) ready", spec.slot, worker.pid)
                self._ready_slots.add(spec.slot)
                if len(self._ready_slots) == self.count:
                    self._all_ready.set()
            pid = worker.pid
            exitcode = await self._wait_exit(worker)
            if self._stopping:
                return
            how = describe_exit(exitcode)
            if ready:
                log.warning(
                    "worker %d (pid %d) exited (%s); starting a replacement", spec.slot, pid, how
                )
                continue
            failures += 1
            if not self._all_ready.is_set() or failures >= MAX_STARTUP_FAILURES:
                log.error(
                    "worker %d (pid %d) exited (%s) before serving; giving up", spec.slot, pid, how
                )
                self._failed.set()
                return
            backoff = min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (failures - 1))
            log.warning(
                "worker %d (pid %d) exited (%s) before serving; retrying in %.1f s",
                spec.slot,
                pid,
                how,
                backoff,
            )
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop_requested.wait(), backoff)

    async def _stop_workers(self, slots: list[asyncio.Task[None]]) -> bool:
        """SIGTERM every worker, wait for all to exit; True unless some had to be killed."""
        self._stopping = True
        log.info("shutting down %d workers", len(self.workers))
        self._signal_workers(signal.SIGTERM)
        try:
            await asyncio.wait_for(
                asyncio.shield(asyncio.gather(*slots)), self.config.grace + KILL_MARGIN
            )
        except asyncio.TimeoutError:
            log.error("workers still running %.1f s after SIGTERM; killing them", KILL_MARGIN)
            self._signal_workers(signal.SIGKILL)
            await asyncio.gather(*slots)
            return False
        return True


def supervise(config: ServerConfig) -> int:
    """Run the supervisor in this process until SIGTERM/SIGINT; the exit status."""
    return asyncio.run(Supervisor(config).run())
