"""Load schedules of `bench` (calls started per second over time) and the pacer that keeps to one.

The flags are ghz's:

    --rps R                                   const: at most R calls per second throughout
    --load-schedule step --load-start S --load-step D --load-step-duration T
        [--load-end E] [--load-max-duration M]
                                              S calls/s, changed by D every T seconds until the
                                              rate reaches E or M seconds have passed, then held
    --load-schedule line --load-start S --load-step D [--load-end E] [--load-max-duration M]
                                              S + D*t calls/s (D per second), bounded the same way

A schedule is an upper bound: calls start no faster than it says, and a start that is missed
because every worker is busy (`--concurrency` too low for the rate) is not made up later.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["SCHEDULE_KINDS", "LoadSchedule", "Pacer", "load_schedule_from_flags"]

SCHEDULE_KINDS = ("const", "step", "line")


@dataclass(frozen=True)
class LoadSchedule:
    """Calls per second as a function of the seconds since the bench started."""

    kind: str
    start: float
    step: float = 0.0
    step_duration: float = 1.0
    end: float | None = None
    max_duration: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULE_KINDS:
            raise ValueError(f"load schedule must be one of {', '.join(SCHEDULE_KINDS)}")
        numbers = [self.start, self.step, self.step_duration, self.end or 1, self.max_duration or 1]
        if not all(math.isfinite(number) for number in numbers):
            raise ValueError("load schedule values must be finite")
        if self.start <= 0 or self.step_duration <= 0:
            raise ValueError("the start rate and the step duration must be more than 0")

    def rate_at(self, elapsed: float) -> float:
        """Calls per second `elapsed` seconds into the run."""
        if self.kind == "const":
            return self.start
        ramp = elapsed if self.max_duration is None else min(elapsed, self.max_duration)
        if self.kind == "step":
            change = self.step * math.floor(ramp / self.step_duration)
        else:
            change = self.step * ramp
        rate = self.start + change
        if self.end is not None:
            rate = min(rate, self.end) if self.step > 0 else max(rate, self.end)
        return rate

    def describe(self) -> dict[str, object]:
        """The schedule as JSON-ready settings."""
        if self.kind == "const":
            return {"schedule": "const", "rps": self.start}
        settings: dict[str, object] = {
            "schedule": self.kind,
            "start": self.start,
            "step": self.step,
        }
        if self.kind == "step":
            settings["step_duration_s"] = self.step_duration
        settings["end"] = self.end
        settings["max_duration_s"] = self.max_duration
        return settings

    def label(self) -> str:
        """One line for the summary, e.g. `step: 50/s, +50 every 2s, up to 300/s`."""
        if self.kind == "const":
            return f"const: {self.start:g}/s"
        every = f" every {self.step_duration:g}s" if self.kind == "step" else " per second"
        text = f"{self.kind}: {self.start:g}/s, {self.step:+g}{every}"
        if self.end is not None:
            text += f", {'up' if self.step > 0 else 'down'} to {self.end:g}/s"
        if self.max_duration is not None:
            text += f", for at most {self.max_duration:g}s"
        return text


def load_schedule_from_flags(
    kind: str,
    *,
    rps: float | None,
    start: float | None,
    step: float | None,
    step_duration: float | None,
    end: float | None,
    max_duration: float | None,
) -> LoadSchedule | None:
    """The schedule the bench flags ask for (None: no rate limit); ValueError naming the flags."""
    ramp_flags = {
        "--load-start": start,
        "--load-step": step,
        "--load-step-duration": step_duration,
        "--load-end": end,
        "--load-max-duration": max_duration,
    }
    given = [flag for flag, value in ramp_flags.items() if value is not None]
    if kind == "const":
        if given:
            raise ValueError(f"{given[0]} is for --load-schedule step or line")
        return None if rps is None else LoadSchedule("const", rps)
    if rps is not None:
        raise ValueError(f"--rps is the constant rate; --load-schedule {kind} uses --load-start")
    if start is None or step is None:
        raise ValueError(f"--load-schedule {kind} needs --load-start and --load-step")
    if kind == "step" and step_duration is None:
        raise ValueError("--load-schedule step needs --load-step-duration")
    if kind == "line" and step_duration is not None:
        raise ValueError(
            "--load-step-duration is for --load-schedule step (line changes each second)"
        )
    if end is not None and (end - start) * step <= 0:
        way = "above" if step > 0 else "below"
        raise ValueError(f"--load-end must be {way} --load-start when --load-step is {step:g}")
    schedule = LoadSchedule(
        kind, start, step, step_duration or 1.0, end=end, max_duration=max_duration
    )
    if end is None and step < 0:
        if max_duration is None:
            raise ValueError("a falling load needs --load-end or --load-max-duration")
        if schedule.rate_at(max_duration) <= 0:
            raise ValueError(f"the rate would reach 0 within --load-max-duration {max_duration:g}")
    return schedule


class Pacer:
    """Hands out call start times that keep to a schedule; shared by every bench worker."""

    def __init__(
        self, schedule: LoadSchedule, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.schedule = schedule
        self._clock = clock
        self._started = clock()
        self._next = self._started

    def target_rate(self) -> float:
        """The rate the schedule asks for now."""
        return self.schedule.rate_at(self._clock() - self._started)

    async def wait(self, deadline: float = math.inf) -> bool:
        """Wait for the next free start time (now if the schedule is behind); False, at once,
        when that time is at or after `deadline` (a clock time)."""
        now = self._clock()
        slot = max(self._next, now)
        if slot >= deadline:
            return False
        self._next = slot + 1 / self.schedule.rate_at(slot - self._started)
        if slot > now:
            await asyncio.sleep(slot - now)
        return True
