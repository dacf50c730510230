"""How many worker processes `--workers` starts, and how they start: with SIGINT ignored.

(Part of greet.server.supervisor, which re-exports these names.)
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator

from greet.server.config import ServerConfig

__all__ = ["MAX_WORKERS_PER_CPU", "available_cpus", "children_ignore_sigint", "worker_count"]

MAX_WORKERS_PER_CPU = 4
"""More workers than this per CPU only add memory and start-up time (each is a whole process
that needs a CPU to serve); `--workers` above it is capped, with a warning."""


def available_cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worker_count(config: ServerConfig) -> int:
    """`--workers`, with 0 meaning one per CPU, and at most MAX_WORKERS_PER_CPU per CPU."""
    cpus = available_cpus()
    if config.workers == 0:
        return cpus
    return min(config.workers, MAX_WORKERS_PER_CPU * cpus)


@contextlib.contextmanager
def children_ignore_sigint() -> Iterator[None]:
    """Processes started inside begin with SIGINT ignored and blocked.

    Ctrl-C in a terminal sends SIGINT to the whole process group: to the supervisor, which
    stops the workers with SIGTERM, and to every worker. A worker still importing would die of
    KeyboardInterrupt with a traceback, and a serving one would take SIGINT as "stop" and the
    supervisor's SIGTERM right after it as "stop now", cutting the drain short. So workers take
    orders from the supervisor only: Python leaves a SIGINT it inherits as ignored alone (no
    KeyboardInterrupt), and `run_worker` keeps it blocked. Here SIGINT is blocked meanwhile, so
    one meant for the supervisor waits until the end of the block instead of being lost.
    """
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
