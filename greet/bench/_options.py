"""What a `bench` run does: call kind, length, concurrency, request data, load schedule, warm-up."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from greet.bench._data import CallData, default_call_data
from greet.bench._schedule import LoadSchedule

__all__ = ["DEFAULT_DURATION", "RPC_KINDS", "BenchOptions"]

RPC_KINDS = ("unary", "server-stream", "client-stream", "bidi")
DEFAULT_DURATION = 10.0


@dataclass(frozen=True)
class BenchOptions:
    """One run: `rpc` for `duration` seconds or `requests` calls (the `skip_first` warm-up calls
    included), from `concurrency` workers, each call sending `data`, started no faster than
    `schedule` allows (None: as fast as the workers go)."""

    rpc: str = "unary"
    duration: float | None = None
    requests: int | None = None
    concurrency: int = 16
    data: CallData = field(default_factory=lambda: default_call_data(10))
    schedule: LoadSchedule | None = None
    skip_first: int = 0
    progress_interval: float = 0.5

    def __post_init__(self) -> None:
        if self.rpc not in RPC_KINDS:
            raise ValueError(f"rpc must be one of {', '.join(RPC_KINDS)}")
        if (self.duration is None) == (self.requests is None):
            raise ValueError("give either a duration or a number of requests")
        if self.duration is not None and not (self.duration > 0 and math.isfinite(self.duration)):
            raise ValueError("--duration must be more than 0 seconds and finite")
        if self.requests is not None and self.requests < 1:
            raise ValueError("--requests must be at least 1")
        if self.concurrency < 1:
            raise ValueError("--concurrency must be at least 1")
        if self.skip_first < 0:
            raise ValueError("--skip-first must be 0 or more")
        if self.requests is not None and self.skip_first >= self.requests:
            raise ValueError(
                f"--skip-first {self.skip_first} leaves none of --requests {self.requests} "
                "to count (the skipped calls are part of --requests)"
            )
        if not (self.progress_interval > 0 and math.isfinite(self.progress_interval)):
            raise ValueError("--progress-interval must be more than 0 seconds and finite")
