"""`python -m greet.server` as a real process: readiness, flags, environment, clean shutdown."""

from __future__ import annotations

import signal

import pytest

from greet.client import GreetClient
from greet.server.config import DEFAULT_HOST, DEFAULT_PORT, parse_config
from greet.testing import ServerProcess


def test_defaults_are_the_original_address() -> None:
    config = parse_config([], environ={})
    assert (config.host, config.port) == (DEFAULT_HOST, DEFAULT_PORT) == ("127.0.0.1", 8080)


def test_environment_sets_flags_and_flags_win() -> None:
    environ = {"GREET_PORT": "9001", "GREET_WORK_DELAY": "0.5", "GREET_ACCESS_LOG": "true"}
    config = parse_config([], environ=environ)
    assert (config.port, config.work_delay, config.access_log) == (9001, 0.5, True)
    assert parse_config(["--port", "9002"], environ=environ).port == 9002


def test_bad_flag_values_are_usage_errors() -> None:
    with pytest.raises(SystemExit) as caught:
        parse_config(["--tls-cert", "cert.pem"], environ={})
    assert caught.value.code == 2


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_serves_then_exits_cleanly_on_signal(signum: int, tmp_path: str) -> None:
    server = await ServerProcess(cwd=str(tmp_path)).start()
    async with GreetClient(server.target, timeout=10) as client:
        assert (await client.say_hello()).message == "Hello"
    assert await server.stop(signum) == 0
    log = "\n".join(server.log_lines)
    assert "Traceback" not in log
    assert "stopped" in log


async def test_port_and_host_from_environment(tmp_path: str) -> None:
    async with ServerProcess(
        ["--port", "0"], env={"GREET_HOST": "127.0.0.1"}, cwd=str(tmp_path)
    ) as server:
        assert server.target.startswith("127.0.0.1:")
        async with GreetClient(server.target, timeout=10) as client:
            reply = await client.say_hello_client_streaming(["env"])
        assert reply.messages == ["Hello env"]


async def test_port_in_use_is_a_one_line_error(tmp_path: str) -> None:
    async with ServerProcess(cwd=str(tmp_path)) as first:
        port = first.target.rsplit(":", 1)[1]
        second = ServerProcess(["--port", port], cwd=str(tmp_path))
        with pytest.raises(RuntimeError, match="exited before"):
            await second.start()
        assert await second.wait() == 1
        assert any("cannot serve" in line for line in second.log_lines)
        assert not any("Traceback" in line for line in second.log_lines)
