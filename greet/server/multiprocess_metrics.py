"""Metrics with `--workers N`: the workers record, the supervisor serves the sum.

The supervisor calls `prepare_multiprocess_dir()` before it starts any worker: it creates the
directory and sets PROMETHEUS_MULTIPROC_DIR in its environment, which the workers inherit.
Workers are started with multiprocessing's "spawn" (fresh interpreters), so prometheus_client
is first imported in each of them with the variable already set and picks its multiprocess
value storage (samples in files in that directory) by itself. The supervisor serves
`supervisor_registry(directory, worker_pids)`: grpc_server_* and greet_cache_* summed over every
worker that ever ran (counters do not go down when a worker is replaced), and process_* and
python_* per process (greet.server.process_metrics). Workers do not listen for HTTP.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = [
    "MULTIPROC_ENV",
    "in_worker_process",
    "prepare_multiprocess_dir",
    "remove_multiprocess_dir",
    "supervisor_registry",
]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_dir(directory: str | None = None) -> str:
    """Create (or empty) the directory the workers' samples go to and export it in
    PROMETHEUS_MULTIPROC_DIR, so worker processes started afterwards inherit it.
    Call in the supervisor before starting workers; returns the directory."""
    if directory is None:
        directory = tempfile.mkdtemp(prefix="greet-metrics-")
    else:
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory)
    os.environ[MULTIPROC_ENV] = directory
    return directory


def remove_multiprocess_dir(directory: str) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def in_worker_process() -> bool:
    """True in a worker whose metrics the supervisor collects (multiprocess mode)."""
    return bool(os.environ.get(MULTIPROC_ENV))


def supervisor_registry(
    directory: str, worker_pids: Callable[[], Iterable[int]]
) -> CollectorRegistry:
    """What the supervisor serves: every worker's samples in `directory`, and the process_*
    and python_* metrics of itself and of the live workers `worker_pids()`."""
    from prometheus_client import CollectorRegistry

    from greet.server.process_metrics import PerProcessCollector

    registry = CollectorRegistry()
    registry.register(PerProcessCollector(directory, worker_pids))
    return registry
