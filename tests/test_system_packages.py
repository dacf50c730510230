"""`nox -s system_packages` (tools/debian_packages.py): install the tests' Debian packages as root
on Debian, or stop with the one line that says what to run.

The decision (`plan`) is tested with made-up machines; the nox session only feeds it the real one.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from debian_packages import (
    TEST_PACKAGES,
    CannotInstall,
    Host,
    install_line,
    parse_dpkg_query,
    plan,
)

ROOT = Path(__file__).resolve().parent.parent
DEBIAN_ROOT = Host(root=True, apt=True)
DEBIAN_USER = Host(root=False, apt=True)
NOT_DEBIAN = Host(root=True, apt=False)
EVERYTHING = frozenset(TEST_PACKAGES)


def refusal(host: Host, installed: frozenset[str]) -> str:
    with pytest.raises(CannotInstall) as caught:
        plan(host, installed)
    return str(caught.value)


def test_nothing_to_do_when_every_package_is_installed() -> None:
    assert plan(DEBIAN_ROOT, EVERYTHING) == []
    assert plan(DEBIAN_USER, EVERYTHING) == []  # no root needed to run the tests


def test_root_on_debian_updates_then_installs_only_what_is_missing() -> None:
    commands = plan(DEBIAN_ROOT, EVERYTHING - {"golang-go", "nginx-light"})
    assert commands == [  # in TEST_PACKAGES order
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "nginx-light", "golang-go"],
    ]


def test_npm_comes_with_nodejs_where_the_nodejs_installed_has_none() -> None:
    debian_nodejs = Host(root=True, apt=True, npm=False)
    # a bare machine: Debian's nodejs, which has no npm, and Debian's npm with it
    assert plan(debian_nodejs, EVERYTHING - {"nodejs"})[-1][-2:] == ["nodejs", "npm"]
    # Debian's nodejs already there, without npm
    assert plan(debian_nodejs, EVERYTHING)[-1][-1:] == ["npm"]
    # NodeSource's nodejs brings npm: nothing more
    assert plan(DEBIAN_ROOT, EVERYTHING) == []


def test_not_root_stops_with_one_line_naming_the_install_command() -> None:
    message = refusal(DEBIAN_USER, EVERYTHING - {"nginx-light", "prometheus"})
    assert "\n" not in message
    assert message.endswith(
        "`apt-get update && apt-get install -y --no-install-recommends nginx-light prometheus`"
    )
    assert "as root" in message


def test_not_debian_stops_with_one_line_naming_every_package() -> None:
    message = refusal(NOT_DEBIAN, frozenset())
    assert "\n" not in message
    assert "no apt-get" in message
    assert message.endswith(f"`{install_line(TEST_PACKAGES)}`")


def test_the_command_in_the_message_is_the_one_root_would_run() -> None:
    missing = EVERYTHING - {"protobuf-compiler"}
    message = refusal(DEBIAN_USER, missing)
    _, install = plan(DEBIAN_ROOT, missing)
    suggested = message.rsplit("&& ", 1)[1].rstrip("`").split()
    assert [word for word in install if word != "-q"] == suggested


def test_dpkg_status_counts_only_installed_packages() -> None:
    output = (
        "nginx-light\tinstall ok installed\n"
        "golang-go\tdeinstall ok config-files\n"
        "prometheus\tinstall ok half-configured\n"
        "protobuf-compiler\thold ok installed\n"
    )
    assert parse_dpkg_query(output) == {"nginx-light", "protobuf-compiler"}


def test_the_list_covers_what_the_tests_ask_for() -> None:
    """Every Debian package a test or build script names when something is missing."""
    named: set[str] = set()
    build_go = (ROOT / "tests" / "interop" / "build_go.sh").read_text()
    block = build_go.split("Debian packages needed:", 1)[1].split("\n# (", 1)[0]
    named.update(block.replace("#", " ").split())
    for test in ("test_nginx.py", "test_benchmarks_smoke.py"):
        text = (ROOT / "tests" / test).read_text()
        named.update(re.findall(r"apt-get install ([a-z0-9-]+)", text))
        named.update(re.findall(r"Debian ([a-z0-9]+-[a-z0-9-]+)\)", text))
    assert {"golang-go", "nginx-light", "nghttp2-client"} <= named
    assert named <= set(TEST_PACKAGES)


def test_the_readme_names_the_same_packages() -> None:
    readme = (ROOT / "README.md").read_text()
    tests_section = readme.split("\n## Tests\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"line to run: `([^`]+)`", tests_section)
    assert match is not None
    assert match.group(1).split() == list(TEST_PACKAGES)
