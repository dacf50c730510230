"""The grpc-go interop binaries (tests/interop): the Go client and the Go reference server,
built offline from Debian's Go sources by tests/interop/build_go.sh."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BUILD_SCRIPT", "DEBIAN_PACKAGES", "GoBinaries", "build_go_binaries"]

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
