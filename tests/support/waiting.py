"""Waiting for state that has nothing to await, without fixed sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["wait_until"]


async def wait_until(
    condition: Callable[[], bool], what: str = "the condition", timeout: float = 30.0
) -> None:
    """Check `condition()` after each short pause until it holds (for state with nothing to
    await, such as counters); fail after `timeout` seconds naming `what`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"still not the case after {timeout}s: {what}")
        await asyncio.sleep(0.002)
