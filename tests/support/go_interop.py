"""The grpc-go interop binaries (tests/interop): the Go client and the Go reference server,
built offline from Debian's Go sources by tests/interop/build_go.sh."""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BUILD_SCRIPT", "DEBIAN_PACKAGES", "GoBinaries", "build_go_binaries", "go_server"]

GO_READY = re.compile(r"greet server listening on (\S+)")

BUILD_SCRIPT = Path(__file__).resolve().parent.parent / "interop" / "build_go.sh"
DEBIAN_PACKAGES = (
    "golang-go golang-google-grpc-dev golang-google-protobuf-dev "
    "golang-github-golang-protobuf-1-5-dev protobuf-compiler"
)


@dataclass(frozen=True)
class GoBinaries:
    client: Path
    server: Path


def build_go_binaries(out: Path) -> GoBinaries:
    """Build both into `out`; RuntimeError naming the missing packages or the build error."""
    missing = [tool for tool in ("go", "protoc") if shutil.which(tool) is None]
    if missing:
        raise RuntimeError(
            f"{' and '.join(missing)} not found: the grpc-go interop tests need the Debian "
            f"packages {DEBIAN_PACKAGES}"
        )
    build = subprocess.run(
        [str(BUILD_SCRIPT), str(out)], capture_output=True, text=True, timeout=600, check=False
    )
    if build.returncode != 0:
        raise RuntimeError(f"building the Go interop binaries failed:\n{build.stderr}")
    return GoBinaries(client=out / "greet-go-client", server=out / "greet-go-server")


@asynccontextmanager
async def go_server(
    binaries: GoBinaries, *flags: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """The grpc-go reference server on a free port, with `flags`: its process and host:port.
    It is stopped with SIGTERM at the end (and must exit 0), unless it was ended before."""
    process = await asyncio.create_subprocess_exec(
        str(binaries.server),
        "-addr",
        "127.0.0.1:0",
        *flags,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        line = await asyncio.wait_for(process.stderr.readline(), 30)
        match = GO_READY.search(line.decode())
        assert match, f"unexpected first line from the Go server: {line!r}"
        yield process, match.group(1)
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
