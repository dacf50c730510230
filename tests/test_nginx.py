"""deploy/nginx: three replicas behind a real nginx (Debian's nginx-light), failover included,
and the steps of docs/deployment.md, run as written, starting nginx as a daemon that logs to
files.

nginx's port is reserved without a port-0-then-reuse race: the test binds a socket with
SO_REUSEPORT to port 0 and keeps it (bound, never listening) for the whole test; nginx, whose
`listen` carries `reuseport`, binds the same port beside it. The kernel hands connections only
to listening sockets, so they all go to nginx, and no other program can take the port meanwhile.
"""

from __future__ import annotations

import asyncio
import os
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
from server_process import ServerProcess
from waiting import wait_until

from greet.client import GreetClient
from greet.server.supervisor import port_sharing_socket
from greet_service import GreetServiceStub, NoParam

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "nginx" / "greet.conf.template"
DEPLOYMENT_DOC = ROOT / "docs" / "deployment.md"
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
        self._access_log = (tmp / "access.log").open("wb")  # the access log goes to stdout

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
                "GREET_NGINX_ACCESS_LOG": "/dev/stdout",  # nginx runs in the foreground here
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


# --- the documented steps (docs/deployment.md) ----------------------------------------------------

DEBIAN_LIKE_CONF = """\
worker_processes 1;
pid {tmp}/run/nginx.pid;
error_log {tmp}/var/log/nginx/error.log notice;
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {tmp}/etc/nginx/conf.d/*.conf;
}}
"""
"""Debian's /etc/nginx/nginx.conf in miniature: no `daemon` line, so nginx daemonizes."""


def readme_nginx_steps() -> str:
    """The shell steps of the documented nginx section, without the greet commands around them."""
    doc = DEPLOYMENT_DOC.read_text()
    section = doc.split("\n## Replicas behind nginx\n", 1)[1].split("\n## ", 1)[0]
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("    "))
    block: list[str] = []
    for line in lines[start:]:
        if not line.startswith("    "):
            break
        block.append(line[4:])
    return "\n".join(line for line in block if not line.startswith("python -m greet."))


def nginx_wrapper(tmp: Path, nginx: str) -> str:
    """A shell function `nginx` that runs nginx with its prefix, config and error log in `tmp`."""
    return (
        f"nginx() {{ command {nginx} -p {tmp}/ -e {tmp}/var/log/nginx/error.log "
        f'-c {tmp}/etc/nginx/nginx.conf "$@"; }}\n'
    )


def scratch_steps(steps: str, tmp: Path, listen: str, replicas: str) -> str:
    """The documented steps with nginx's paths moved under `tmp` and the test's own addresses."""
    assert steps.count("127.0.0.1:8080") == 1, steps  # GREET_NGINX_LISTEN
    steps = steps.replace("127.0.0.1:8080", listen)
    steps, count = re.subn(r"GREET_REPLICAS='[^']*'", f"GREET_REPLICAS='{replicas}'", steps)
    assert count == 1, steps
    for system_dir in ("/etc/nginx/", "/var/log/nginx/"):
        steps = steps.replace(system_dir, f"{tmp}{system_dir}")
    return steps + "\n"


async def run_bash(script: str, output: Path) -> tuple[int, str]:
    """Run `script`; its output goes to a file, not a pipe, which a daemon it starts would
    keep open (and a reader waiting for the pipe's end would wait forever)."""
    with output.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            script,
            cwd=ROOT,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=sink,
            stderr=sink,
        )
        status = await process.wait()
    return status, read_text(output)


def read_text(path: Path) -> str:
    return path.read_text(errors="replace")


async def stop_daemon(tmp: Path, nginx: str) -> None:
    """`nginx -s quit`, then SIGTERM if it is still there; returns once its pid file is gone."""
    pid_file = tmp / "run" / "nginx.pid"
    if not pid_file.exists():
        return  # (a daemon that never wrote its pid file is the test's failure already)
    await run_bash(nginx_wrapper(tmp, nginx) + "nginx -s quit\n", tmp / "quit.out")
    try:
        await wait_until(lambda: not pid_file.exists(), "nginx to quit", timeout=15)
    except AssertionError:
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
        await wait_until(lambda: not pid_file.exists(), "nginx to stop", timeout=15)


async def test_the_readme_steps_start_nginx_as_a_daemon_that_logs_to_files(
    nginx_binary: str, replicas: list[ServerProcess], tmp_path: Path
) -> None:
    """On a fresh install nginx is not running, so `nginx -s reload` alone fails; and a daemon
    has no stdout, so its calls must be logged to a file."""
    for directory in ("etc/nginx/conf.d", "var/log/nginx", "run"):
        (tmp_path / directory).mkdir(parents=True)
    (tmp_path / "etc/nginx/nginx.conf").write_text(DEBIAN_LIKE_CONF.format(tmp=tmp_path))
    with port_sharing_socket(socket.AF_INET, ("127.0.0.1", 0)) as reserved:
        listen = f"127.0.0.1:{reserved.getsockname()[1]}"
        script = nginx_wrapper(tmp_path, nginx_binary) + scratch_steps(
            readme_nginx_steps(),
            tmp_path,
            listen,
            " ".join(f"server {r.target};" for r in replicas),
        )
        try:
            status, output = await run_bash(script, tmp_path / "steps.out")
            assert status == 0, f"the documented nginx steps failed:\n{script}\n{output}"
            assert "test is successful" in output  # `nginx -t` passed on the documented config
            pid_file = tmp_path / "run" / "nginx.pid"
            await wait_until(pid_file.exists, "the daemon's pid file")  # written after the fork
            master = read_text(pid_file)
            async with GreetClient(listen, timeout=30) as client:
                assert (await client.say_hello()).message == "Hello"
            # The same steps again, with nginx running: a reload, not a second nginx.
            status, output = await run_bash(script, tmp_path / "again.out")
            assert status == 0, f"the documented nginx steps failed the second time:\n{output}"
            assert read_text(pid_file) == master
            async with GreetClient(listen, timeout=30) as client:
                assert (await client.say_hello()).message == "Hello"
            access_log = tmp_path / "var/log/nginx/greet-access.log"
            await wait_until(
                lambda: access_log.exists() and "grpc-status=0" in access_log.read_text(),
                "the call in nginx's access log file",
            )
            assert "SayHello" in access_log.read_text()
            error_log = (tmp_path / "var/log/nginx/error.log").read_text()
            assert "start worker process" in error_log
        finally:
            await stop_daemon(tmp_path, nginx_binary)
