"""The web peers of greet's browser tests: the live page built from web/ with npm, node scripts
(connect-node, playwright-core driving Debian's Chromium), and the servers they call.

`built_web()` installs web/'s npm dependencies from its lock file (`npm ci`) into a cache
directory keyed by the lock file, once, and builds the page (protoc-gen-es, esbuild) into another
keyed by everything the build reads; later calls, also from other pytest workers, reuse both.

`ChildProcess` runs a command and waits for the line that says it is ready (its address), so
no port number is ever guessed: the page server (web/serve.mjs), greet's server and the
connectrpc comparison server all take `--port 0`.

`API_SERVERS` names the servers the web tests call and what each of them speaks.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = [
    "API_SERVERS",
    "CHROMIUM",
    "REPO",
    "SERVERS_UNDER_TEST",
    "ApiServer",
    "ChildProcess",
    "built_web",
    "run_node_script",
    "start_api_server",
    "start_page_server",
]

REPO = Path(__file__).resolve().parent.parent.parent
WEB = REPO / "web"
CHROMIUM = Path("/usr/bin/chromium")
"""Debian's Chromium (`chromium`, installed by `nox -s system_packages`)."""

BUILD_INPUTS = ("package.json", "package-lock.json", "build.mjs", "serve.mjs", "src", "test")
"""What of web/ the build reads or the tests run, besides proto/greet.proto."""


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "greet-web"


def _digest(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            digest.update(str(file.relative_to(REPO)).encode() + b"\0")
            digest.update(file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with (root / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # pytest-xdist's workers build one after the other
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(command: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None) -> None:
    result = subprocess.run(
        command,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(command)}` in {cwd} failed ({result.returncode}):\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )


def built_web() -> Path:
    """A directory holding web/ with its npm dependencies installed and the page built (dist/).

    npm comes from PATH; the build's protoc (grpcio-tools) and google/rpc protos
    (googleapis-common-protos) from this Python. Raises RuntimeError saying what failed.
    """
    if shutil.which("npm") is None or shutil.which("node") is None:
        raise RuntimeError("the web tests need node and npm on PATH (Debian: nodejs, npm)")
    root = _cache_root()
    with _locked(root):
        modules = root / f"node-{_digest([WEB / 'package-lock.json'])}"
        if not (modules / "done").exists():
            shutil.rmtree(modules, ignore_errors=True)
            modules.mkdir(parents=True)
            for name in ("package.json", "package-lock.json"):
                shutil.copy2(WEB / name, modules / name)
            _run(["npm", "ci", "--no-audit", "--no-fund"], modules)
            (modules / "done").touch()
        inputs = [WEB / name for name in BUILD_INPUTS] + [REPO / "proto" / "greet.proto"]
        build = root / f"build-{_digest(inputs)}"
        if not (build / "done").exists():
            shutil.rmtree(build, ignore_errors=True)
            (build / "web").mkdir(parents=True)
            for name in BUILD_INPUTS:
                source = WEB / name
                if source.is_dir():
                    shutil.copytree(source, build / "web" / name)
                else:
                    shutil.copy2(source, build / "web" / name)
            (build / "web" / "node_modules").symlink_to(modules / "node_modules")
            shutil.copytree(REPO / "proto", build / "proto")  # build.mjs reads ../proto
            _run(["node", "build.mjs"], build / "web", env={"PYTHON": sys.executable})
            (build / "done").touch()
    return build / "web"


class ChildProcess:
    """A child process that prints a line matching `ready` (on stdout or stderr) once it serves;
    `match` is that line's match. Its output is kept in `lines` for failure messages."""

    def __init__(
        self,
        command: Sequence[str],
        ready: re.Pattern[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.command = list(command)
        self.ready = ready
        self.cwd = cwd
        self.env = {**os.environ, **(env or {})}
        self.lines: list[str] = []
        self.process: asyncio.subprocess.Process | None = None
        self._readers: list[asyncio.Task[None]] = []
        self._ready: asyncio.Future[re.Match[str]] | None = None
        self.match: re.Match[str] | None = None

    async def __aenter__(self) -> ChildProcess:
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self.process = await asyncio.create_subprocess_exec(
            *self.command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=self.cwd,
            env=self.env,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self._readers = [
            asyncio.create_task(self._read(self.process.stdout)),
            asyncio.create_task(self._read(self.process.stderr)),
        ]
        reading: asyncio.Future[object] = asyncio.ensure_future(self._all_read())
        ready: asyncio.Future[object] = asyncio.ensure_future(self._ready)
        finished, _ = await asyncio.wait(
            {ready, reading}, timeout=60, return_when=asyncio.FIRST_COMPLETED
        )
        if ready not in finished:
            await self.stop()
            what = "exited" if reading in finished else "did not say it was ready in 60 s"
            raise RuntimeError(
                f"{self.command} {what} (waiting for {self.ready.pattern!r}):\n"
                + "\n".join(self.lines)
            )
        assert self._ready.done()
        self.match = self._ready.result()
        return self

    async def _all_read(self) -> object:
        for reader in self._readers:
            await reader
        return None

    @property
    def address(self) -> str:
        """What the ready line's pattern captured: the address the process serves on."""
        assert self.match is not None, "not started"
        return self.match.group(1)

    async def _read(self, stream: asyncio.StreamReader) -> None:
        async for raw in stream:
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(line)
            match = self.ready.search(line)
            if match and self._ready is not None and not self._ready.done():
                self._ready.set_result(match)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 20)
            except asyncio.TimeoutError:
                self.process.kill()
                await self.process.wait()
        for reader in self._readers:
            await reader

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


PAGE_READY = re.compile(r"greet live page at (http://\S+?)/ ")


def start_page_server(web: Path, api: str = "http://127.0.0.1:1") -> ChildProcess:
    """web/serve.mjs on a free loopback port; its origin is `.address`."""
    return ChildProcess(["node", "serve.mjs", "--port", "0", "--api", api], PAGE_READY, cwd=web)


@dataclass(frozen=True)
class ApiServer:
    """A server the web tests call: how to start it and what it speaks."""

    name: str
    ready: re.Pattern[str]
    protocols: frozenset[str]
    """Of `connect`, `grpc-web` (binary) and `grpc-web-text`."""
    http2: bool
    """It serves HTTP/2 without TLS (h2c) beside HTTP/1.1."""

    def command(self, origins: Sequence[str], max_name_chars: int) -> list[str]:
        cors = [arg for origin in origins for arg in ("--cors-allow-origin", origin)]
        limit = ["--max-name-chars", str(max_name_chars)]
        if self.name == "greet":
            return [sys.executable, "-m", "greet.server", "--port", "0", *cors, *limit]
        script = str(REPO / "benchmarks" / "connectrpc_server.py")
        return [sys.executable, script, "--port", "0", *cors, *limit]


API_SERVERS = {
    "greet": ApiServer(
        "greet",
        re.compile(r"greet server listening on ([^\s\"]+)"),
        frozenset({"connect", "grpc-web", "grpc-web-text"}),
        http2=True,
    ),
    # connectrpc 0.13 on uvicorn: no grpc-web-text, HTTP/1.1 only (uvicorn has no h2c)
    "connectrpc": ApiServer(
        "connectrpc",
        re.compile(r"connectrpc server listening on (\S+)"),
        frozenset({"connect", "grpc-web"}),
        http2=False,
    ),
}


def start_api_server(
    server: ApiServer, origins: Sequence[str] = (), max_name_chars: int = 8
) -> ChildProcess:
    """`server` on a free loopback port, allowing `origins` by CORS; its base URL is
    `http://` + `.address`."""
    return ChildProcess(server.command(origins, max_name_chars), server.ready, cwd=REPO)


async def run_node_script(web: Path, script: str, config: Mapping[str, Any]) -> Any:
    """Run `node test/SCRIPT JSON-CONFIG` in the built `web` and return the JSON it prints."""
    process = await asyncio.create_subprocess_exec(
        "node",
        f"test/{script}",
        json.dumps(config),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=web,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 240)
    except asyncio.TimeoutError:
        os.killpg(process.pid, signal.SIGKILL)  # the script and the browser it started
        await process.wait()
        raise
    if process.returncode != 0:
        raise AssertionError(
            f"node test/{script} failed ({process.returncode}):\n{out.decode()}\n{err.decode()}"
        )
    return json.loads(out)


SERVERS_UNDER_TEST = ("greet", "connectrpc")
"""The servers the web tests run against: greet, and the connectrpc stand-in (the same page and
clients against connectrpc's own server, which keeps the tests honest about the protocols)."""
