"""The Debian packages greet's tests need, and how `nox -s system_packages` gets them.

`plan` is the whole decision and has no side effects: given the machine (`Host`) and the packages
installed on it, it returns the apt-get commands to run (none when nothing is missing), or raises
`CannotInstall` with the one line a person needs: the exact `apt-get install` command to run as
root. The nox session only gathers the facts, calls `plan` and runs what it returns.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "APT_ENV",
    "TEST_PACKAGES",
    "CannotInstall",
    "Host",
    "install_line",
    "installed_packages",
    "parse_dpkg_query",
    "plan",
]

TEST_PACKAGES: tuple[str, ...] = (
    "nginx-light",  # tests/test_nginx.py: nginx in front of greet replicas
    "gettext-base",  # envsubst, which the README's nginx steps fill the template with
    "nghttp2-client",  # h2load, for benchmarks/compare.py and its smoke test
    # grpc-go interop (tests/interop/build_go.sh builds offline from Debian's Go sources)
    "golang-go",
    "golang-google-grpc-dev",
    "golang-google-protobuf-dev",
    "golang-github-golang-protobuf-1-5-dev",
    "protobuf-compiler",
    "prometheus",  # Prometheus and promtool: the real reader of --metrics-port
    # the live page (web/): node runs its build, connect-node and playwright-core, which drives
    # Debian's Chromium headless (tests/test_browser.py); npm installs web/'s locked packages
    # (it ships with NodeSource's nodejs; with Debian's own nodejs, also install `npm`)
    "nodejs",
    "chromium",
)
"""What the test suite needs beyond Python, by Debian package name."""

APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}
"""apt-get never stops to ask (debconf questions, service restarts)."""


class CannotInstall(Exception):
    """The packages are missing and this process cannot install them; str() is one line."""


@dataclass(frozen=True)
class Host:
    """The facts about this machine that decide what `nox -s system_packages` can do."""

    root: bool
    """The effective user is root, so apt-get can install."""
    apt: bool
    """apt-get and dpkg-query are on PATH: Debian, or a derivative with Debian's package names."""
    npm: bool = True
    """npm is on PATH (NodeSource's nodejs brings it; Debian's nodejs needs the `npm` package)."""

    @classmethod
    def current(cls) -> Host:
        geteuid = getattr(os, "geteuid", None)  # absent on Windows
        return cls(
            root=geteuid is not None and geteuid() == 0,
            apt=shutil.which("apt-get") is not None and shutil.which("dpkg-query") is not None,
            npm=shutil.which("npm") is not None,
        )


def install_line(packages: Iterable[str]) -> str:
    """The command a person runs as root to install `packages`, as one shell line.

    The messages quote it in backticks, so that no punctuation after it (nox ends its error line
    with a full stop) reads as part of a package name.
    """
    return "apt-get update && apt-get install -y --no-install-recommends " + " ".join(packages)


def plan(
    host: Host, installed: Iterable[str], needed: Sequence[str] = TEST_PACKAGES
) -> list[list[str]]:
    """The apt-get commands that install what is missing of `needed`; [] when nothing is.

    Raises CannotInstall when something may be missing and this process cannot install it:
    not a Debian system (its package list cannot even be read), or not root.
    """
    if not host.apt:
        raise CannotInstall(
            "greet's tests need Debian packages and this system has no apt-get/dpkg-query; "
            f"on Debian, as root: `{install_line(needed)}`"
        )
    have = set(installed)
    missing = [package for package in needed if package not in have]
    if "nodejs" in needed and not host.npm and "npm" not in have:
        missing.append("npm")  # Debian's nodejs comes without it
    if not missing:
        return []
    if not host.root:
        raise CannotInstall(
            f"the tests need Debian packages that are not installed ({' '.join(missing)}); "
            f"as root, run: `{install_line(missing)}`"
        )
    return [
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
    ]


def parse_dpkg_query(output: str) -> frozenset[str]:
    """The installed packages in `dpkg-query -W -f '${Package}\\t${Status}\\n'` output.

    A package that was removed but left its configuration ("deinstall ok config-files") or is
    half-installed does not count.
    """
    names = set()
    for line in output.splitlines():
        name, _, status = line.partition("\t")
        if status.split()[-1:] == ["installed"]:
            names.add(name.strip())
    return frozenset(names)


def installed_packages(packages: Sequence[str]) -> frozenset[str]:
    """Which of `packages` dpkg knows as installed (needs dpkg-query on PATH)."""
    result = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package}\t${Status}\n", *packages],
        capture_output=True,
        text=True,
        check=False,  # exit 1 when some package is unknown to dpkg: that one is missing
    )
    return parse_dpkg_query(result.stdout)
