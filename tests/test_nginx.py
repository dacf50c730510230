"""deploy/nginx: three replicas behind a real nginx (Debian's nginx-light), failover included.

nginx's port is reserved without a port-0-then-reuse race: the test binds a socket with
SO_REUSEPORT to port 0 and keeps it (bound, never listening) for the whole test; nginx, whose
`listen` carries `reuseport`, binds the same port beside it. The kernel hands connections only
to listening sockets, so they all go to nginx, and no other program can take the port meanwhile.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from generated.greet_service import GreetServiceStub, NoParam
from greet.client import GreetClient
from greet.server.supervisor import port_sharing_socket
from greet.testing import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "nginx" / "greet.conf.template"
NGINX_STARTED = re.compile(r"start worker process \d+")

MAIN_CONF = """\
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log stderr notice;
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {tmp}/greet.conf;
}}
"""


def render(template: str, values: dict[str, str]) -> str:
    """Fill `${NAME}` placeholders as envsubst would; every placeholder must be given."""
    for name, value in values.items():
        template = template.replace("${" + name + "}", value)
    assert "${" not in template, "a placeholder was left unfilled"
    return template


class NginxProcess:
    """nginx in the foreground with its own prefix, config, pid file and logs under `tmp`."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.error_lines: list[str] = []
        self._new_line = asyncio.Event()
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._access_log = (tmp / "access.log").open("wb")  # the template logs to stdout

    async def start(self, nginx: str) -> None:
        self.process = await asyncio.create_subprocess_exec(
            nginx,
            *("-p", str(self.tmp), "-c", str(self.tmp / "nginx.conf"), "-e", "stderr"),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._access_log,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read())
        await self.wait_for(NGINX_STARTED)

    async def _read(self) -> None:
        assert self.process is not None
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            self.error_lines.append(raw.decode(errors="replace").rstrip("\n"))
            self._new_line.set()
        self._new_line.set()

    async def wait_for(self, pattern: re.Pattern[str], timeout: float = 30.0) -> None:
        async def seen() -> None:
            while not any(pattern.search(line) for line in self.error_lines):
                if self._reader is not None and self._reader.done():
                    raise RuntimeError("nginx exited:\n" + "\n".join(self.error_lines))
                self._new_line.clear()
                await self._new_line.wait()

        await asyncio.wait_for(seen(), timeout)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful shutdown
            await asyncio.wait_for(self.process.wait(), 30)
        if self._reader is not None:
            await self._reader
        self._access_log.close()


@pytest.fixture
def nginx_binary() -> str:
    """nginx from Debian; its absence fails the test (CI installs nginx-light)."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if found is None:
        pytest.fail("nginx is not installed (Debian: apt-get install nginx-light)")
    return found


@pytest.fixture
async def replicas(tmp_path: Path) -> AsyncIterator[list[ServerProcess]]:
    async with AsyncExitStack() as stack:
        started = await asyncio.gather(
            *(ServerProcess(cwd=str(tmp_path)).start() for _ in range(3)),
            return_exceptions=True,
        )
        servers = [server for server in started if isinstance(server, ServerProcess)]
        for server in servers:
            stack.push_async_callback(server.stop)
        for outcome in started:
            if isinstance(outcome, BaseException):
                raise outcome
        yield servers


async def test_calls_through_nginx_fail_over_when_a_replica_dies(
    nginx_binary: str, replicas: list[ServerProcess], tmp_path: Path
) -> None:
    with port_sharing_socket(socket.AF_INET, ("127.0.0.1", 0)) as reserved:
        port = reserved.getsockname()[1]
        conf = render(
            TEMPLATE.read_text(),
            {
                "GREET_NGINX_LISTEN": f"127.0.0.1:{port}",
                "GREET_REPLICAS": " ".join(f"server {r.target};" for r in replicas),
            },
        )
        (tmp_path / "greet.conf").write_text(conf)
        (tmp_path / "nginx.conf").write_text(MAIN_CONF.format(tmp=tmp_path))
        nginx = NginxProcess(tmp_path)
        try:
            await nginx.start(nginx_binary)
            await run_scenario(f"127.0.0.1:{port}", replicas, nginx)
        finally:
            await nginx.stop()
    assert nginx.process is not None
    assert nginx.process.returncode == 0


async def run_scenario(target: str, replicas: list[ServerProcess], nginx: NginxProcess) -> None:
    async with GreetClient(target, timeout=30) as client:
        assert (await client.say_hello()).message == "Hello"
        streamed = [r.message async for r in client.say_hello_server_streaming(["Ann", "Bob"])]
        assert streamed == ["Hello Ann", "Hello Bob"]
        collected = await client.say_hello_client_streaming(["Ann", "Bob"])
        assert collected.messages == ["Hello Ann", "Hello Bob"]
        echoed = [r.message async for r in client.say_hello_bidirectional_streaming(["A", "B"])]
        assert echoed == ["Hello A", "Hello B"]

    victim = replicas[0]
    victim.send_signal(signal.SIGKILL)
    await victim.wait()

    # A plain grpclib channel (one connection, no client-side retries): every call that works
    # here was made to work by nginx.
    host, port = target.rsplit(":", 1)
    channel = Channel(host, int(port))
    try:
        stub = GreetServiceStub(channel)
        replies = [await stub.say_hello(NoParam(), timeout=30) for _ in range(200)]
    finally:
        channel.close()
    assert [reply.message for reply in replies] == ["Hello"] * 200
    # ... and nginx did try the dead replica, and passed that call on.
    refused = f'upstream: "grpc://{victim.target}"'
    assert any("Connection refused" in line and refused in line for line in nginx.error_lines)

    # With every replica gone, callers get UNAVAILABLE (not UNKNOWN) from nginx itself.
    for replica in replicas[1:]:
        await replica.stop(signal.SIGKILL)
    channel = Channel(host, int(port))
    try:
        with pytest.raises(GRPCError) as caught:
            await GreetServiceStub(channel).say_hello(NoParam(), timeout=30)
    finally:
        channel.close()
    assert caught.value.status == Status.UNAVAILABLE
    assert caught.value.message == "no greet replica available"
