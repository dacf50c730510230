"""The proof: three replicas, `python -m greet.client --target a,b,c bench ... --json`, one replica
killed mid-run (SIGKILL), or drained (SIGTERM): no call fails and all three replicas served.

The replica goes down once the bench's own progress lines (stderr) show it has served calls:
an event seen from the outside, no fixed sleep.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from pathlib import Path

import pytest
from server_process import ServerProcess

PROGRESS = re.compile(r"^progress .* failed=(\d+) ")


def served(line: str, target: str) -> int:
    match = re.search(rf" {re.escape(target)}=(\d+)", line)
    return int(match.group(1)) if match else 0


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["kill", "drain"])
async def test_a_replica_going_down_mid_bench_fails_no_call(
    tmp_path: Path, signum: signal.Signals
) -> None:
    replicas = [ServerProcess(["--grace", "5"], cwd=str(tmp_path)) for _ in range(3)]
    for replica in replicas:
        await replica.start()
    a, b, c = replicas
    try:
        bench = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "greet.client",
            "--target",
            ",".join(replica.target for replica in replicas),
            "bench",
            "--rpc",
            "unary",
            "--duration",
            "4",
            "--concurrency",
            "32",
            "--json",
            "--progress-interval",
            "0.1",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=tmp_path,
        )
        assert bench.stdout is not None
        assert bench.stderr is not None
        progress: list[str] = []

        async def read_until_c_served() -> str:
            assert bench.stderr is not None
            while raw := await bench.stderr.readline():
                line = raw.decode().rstrip("\n")
                progress.append(line)
                if PROGRESS.match(line) and served(line, c.target) >= 50:
                    return line
            raise AssertionError("bench ended before the replica served:\n" + "\n".join(progress))

        at_kill = await asyncio.wait_for(read_until_c_served(), 60)
        c.send_signal(signum)
        await c.wait()
        out, err = await asyncio.wait_for(bench.communicate(), 60)
        progress += err.decode().splitlines()
        assert bench.returncode == 0, "\n".join(progress)
        lines = out.decode().splitlines()
        assert len(lines) == 1
        result = json.loads(lines[0])
    finally:
        for replica in (a, b):
            await replica.stop()
        if c.process is not None and c.process.returncode is None:
            await c.stop(signal.SIGKILL)

    assert result["failed"] == 0, result
    assert result["errors"] == {}
    assert set(result["by_target"]) == {a.target, b.target, c.target}
    assert all(count > 0 for count in result["by_target"].values())
    assert result["ok"] == sum(result["by_target"].values())
    # the run went on after the replica went down, on the other two
    assert result["by_target"][a.target] > served(at_kill, a.target)
    assert result["by_target"][b.target] > served(at_kill, b.target)
    failures_seen = [m.group(1) for line in progress if (m := PROGRESS.match(line))]
    assert set(failures_seen) == {"0"}  # not even transiently
