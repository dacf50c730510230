"""`python -m greet.server` and `python -m greet.client` as child processes, for greet's tests.

`ServerProcess` runs `python -m greet.server` in a child process with `--port 0` by default and
waits for its readiness line, so no port number is ever guessed or reused.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path
from types import TracebackType
from typing import NamedTuple, TypeVar

__all__ = ["READY_PATTERN", "CompletedCommand", "ServerProcess", "run_client_cli"]


class CompletedCommand(NamedTuple):
    """Exit status and output of a finished command."""

    code: int
    out: str
    err: str


async def run_client_cli(
    *args: str, cwd: str | os.PathLike[str], timeout: float = 60.0
) -> CompletedCommand:
    """Run `python -m greet.client ARGS...` to completion and return its status and output."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "greet.client",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return CompletedCommand(process.returncode, out.decode(), err.decode())


READY_PATTERN = re.compile(r"greet server listening on ([^\s\"]+)")


_Process = TypeVar("_Process", bound="ServerProcess")


class ServerProcess:
    """A `python -m greet.server` child process; its stderr lines are kept in `log_lines`."""

    def __init__(
        self,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        module: str = "greet.server",
        code: str | None = None,
        stdout: Path | None = None,
    ) -> None:
        """`python -m module ARGS` (or `python -c code ARGS`), with `--port 0` unless ARGS
        name a port; its stdout goes to the file `stdout` if given, else nowhere."""
        self.args = list(args)
        if not any(arg == "--port" or arg.startswith("--port=") for arg in self.args):
            self.args += ["--port", "0"]
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.command = ["-c", code] if code is not None else ["-m", module]
        self.stdout = stdout
        self.log_lines: list[str] = []
        self.target = ""
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._new_line = asyncio.Event()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self: _Process, timeout: float = 30.0) -> _Process:
        """Start the process and wait until it says it is listening."""
        with self.stdout.open("wb") if self.stdout is not None else nullcontext() as out:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                *self.command,
                *self.args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out if out is not None else asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env=self.env,
                cwd=self.cwd,
            )
        self._reader = asyncio.create_task(self._read_log())
        match = await self.wait_for_log(READY_PATTERN, timeout=timeout)
        self.target = match.group(1)
        return self

    async def _read_log(self) -> None:
        assert self.process is not None
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            self.log_lines.append(raw.decode(errors="replace").rstrip("\n"))
            self._new_line.set()
        self._new_line.set()

    async def wait_for_log(self, pattern: re.Pattern[str], timeout: float = 30.0) -> re.Match[str]:
        """Wait for a stderr line matching `pattern` (also one logged already)."""

        async def first_match() -> re.Match[str]:
            seen = 0
            while True:
                for line in self.log_lines[seen:]:
                    if match := pattern.search(line):
                        return match
                seen = len(self.log_lines)
                if self._reader is not None and self._reader.done():
                    raise RuntimeError(
                        f"server exited before logging {pattern.pattern!r}:\n"
                        + "\n".join(self.log_lines)
                    )
                self._new_line.clear()
                await self._new_line.wait()

        return await asyncio.wait_for(first_match(), timeout)

    def send_signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    async def wait(self, timeout: float = 30.0) -> int:
        """Wait for the process to exit and return its status."""
        assert self.process is not None
        code = await asyncio.wait_for(self.process.wait(), timeout)
        if self._reader is not None:
            await self._reader
        return code

    async def stop(self, signum: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the process (SIGTERM by default) and return its exit status."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signum)
        try:
            return await self.wait(timeout)
        except asyncio.TimeoutError:
            self.process.kill()
            await self.wait(timeout)
            raise

    async def __aenter__(self: _Process) -> _Process:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.process is not None and self.process.returncode is None:
            await self.stop()
