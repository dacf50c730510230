"""Automation: system packages, lint, typecheck, codegen (and its drift check), lock, tests.

`nox` runs the default sessions, in order, and stops at the first that fails
(`--no-stop-on-first-error` runs them all): `system_packages` first installs the Debian packages
the tests need (as root on Debian) or stops at once with the one `apt-get install` line to run.
`nox -s codegen` regenerates `generated/` from `proto/`; `nox -s codegen -- --check` (or the
default `codegen_check` session) fails when it is stale. `nox -s lock` rewrites constraints.txt
(the Docker image's pinned dependencies); the default `lock_check` fails when it is stale.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

import nox

ROOT = Path(__file__).parent
sys.path.insert(0, str(ROOT / "tools"))  # the helpers below, which tests/ also imports

import constraints_lock  # noqa: E402
import debian_packages  # noqa: E402

nox.needs_version = ">=2025.2.9"
nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = [
    "system_packages",
    "lint",
    "typecheck",
    "codegen_check",
    "lock_check",
    "tests",
]
nox.options.stop_on_first_error = True

PYPROJECT = nox.project.load_toml("pyproject.toml")
PROTO_DIR = ROOT / "proto"
GENERATED_DIR = ROOT / "generated"
LOCK_FILE = ROOT / "constraints.txt"
DOCKERFILE = ROOT / "Dockerfile"
LINTED = ["greet", "tests", "noxfile.py", "benchmarks", "tools"]
TYPECHECKED = ["greet", "tests", "noxfile.py", "tools"]
TEST_WORKERS = min(8, max(3, os.cpu_count() or 1))


def install_group(session: nox.Session, group: str) -> None:
    session.install(*nox.project.dependency_groups(PYPROJECT, group))


@nox.session(name="system_packages", venv_backend="none")
def system_packages(session: nox.Session) -> None:
    """Install the Debian packages the tests need; where it cannot, name the command."""
    host = debian_packages.Host.current()
    needed = debian_packages.TEST_PACKAGES
    installed = debian_packages.installed_packages(needed) if host.apt else frozenset()
    try:
        commands = debian_packages.plan(host, installed)
    except debian_packages.CannotInstall as error:
        session.error(str(error))
    for command in commands:
        session.run(*command, external=True, env=debian_packages.APT_ENV)
    if commands:
        still_missing = set(needed) - debian_packages.installed_packages(needed)
        if still_missing:
            session.error(f"apt-get did not install: {' '.join(sorted(still_missing))}")
    session.log(f"Debian packages for the tests are installed: {' '.join(needed)}")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    install_group(session, "lint")
    session.run("ruff", "check", *LINTED)
    session.run("ruff", "format", "--check", *LINTED)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package, the tests and this file."""
    install_group(session, "typecheck")
    session.install(".")
    session.run("mypy", "--strict", *TYPECHECKED)


def greet_codegen(session: nox.Session, *arguments: str) -> None:
    """`python -m greet.codegen proto/ generated/ ...` from this checkout: the same code path a
    user's `python -m greet.codegen` takes (greet.codegen needs only the codegen group's tools,
    so greet itself is put on the path rather than installed with its dependencies)."""
    session.run(
        "python",
        "-m",
        "greet.codegen",
        str(PROTO_DIR),
        str(GENERATED_DIR),
        *arguments,
        env={"PYTHONPATH": str(ROOT)},
    )


@nox.session
def codegen(session: nox.Session) -> None:
    """Regenerate generated/ from proto/; with `-- --check`, fail if generated/ is stale."""
    install_group(session, "codegen")
    greet_codegen(session, *(["--check"] if "--check" in session.posargs else []))


@nox.session(name="codegen_check")
def codegen_check(session: nox.Session) -> None:
    """`nox -s codegen -- --check`, as one of the default sessions."""
    install_group(session, "codegen")
    greet_codegen(session, "--check")


@nox.session
@nox.parametrize("engine", ["nghttp2", "h2"])
def tests(session: nox.Session, engine: str) -> None:
    """The test suite against the package installed as a user would install it, once per
    HTTP/2 engine (GREET_HTTP2_ENGINE: servers, clients and the CLI in the tests all use it).

    By default in TEST_WORKERS parallel processes (pytest-xdist): most tests wait on sockets,
    timers and child processes, so even two cores run three at once well. Arguments after `--`
    replace the default (`nox -s tests -- -k bidi` runs in one process)."""
    install_group(session, "test")
    session.install(".")
    default = ["-q", "-n", str(TEST_WORKERS)]
    session.run("pytest", *(session.posargs or default), env={"GREET_HTTP2_ENGINE": engine})


def runtime_dependencies() -> list[str]:
    dependencies: list[str] = PYPROJECT["project"]["dependencies"]
    return dependencies


def docker_python() -> str:
    """The Python version of the Dockerfile's final stage (`FROM python:3.11-slim` -> 3.11)."""
    versions = re.findall(r"^FROM\s+python:(\d+\.\d+)", DOCKERFILE.read_text(), re.MULTILINE)
    if not versions:
        raise ValueError(f"{DOCKERFILE.name}: no `FROM python:X.Y...` line")
    version: str = versions[-1]
    return version


@nox.session
def lock(session: nox.Session) -> None:
    """Rewrite constraints.txt from pyproject's dependencies, then install it as the image does."""
    install_group(session, "lock")
    python = docker_python()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "compiled.txt"
        session.run(
            "uv",
            "pip",
            "compile",
            "pyproject.toml",
            "--universal",  # one file for every platform the image (or a user) may run on
            f"--python-version={python}",
            "--generate-hashes",
            "--no-header",
            "--quiet",
            f"--output-file={out}",
        )
        compiled = out.read_text()
    LOCK_FILE.write_text(constraints_lock.render(compiled, runtime_dependencies(), python))
    session.log(f"wrote {LOCK_FILE.name}")
    # What the Dockerfile does with it: every pin hash-checked, greet itself without dependencies,
    # and nothing missing.
    session.install("--require-hashes", "--no-deps", "-r", str(LOCK_FILE))
    session.install("--no-deps", ".")
    session.run("python", "-m", "pip", "check")


@nox.session(name="lock_check", venv_backend="none")
def lock_check(session: nox.Session) -> None:
    """Fail when constraints.txt is stale with respect to pyproject.toml or the Dockerfile."""
    if not LOCK_FILE.exists():
        session.error(f"{LOCK_FILE.name} is missing; run `nox -s lock`")
    problems = constraints_lock.lock_problems(
        LOCK_FILE.read_text(), runtime_dependencies(), docker_python()
    )
    if problems:
        session.error(f"{LOCK_FILE.name} is stale ({'; '.join(problems)}); run `nox -s lock`")
    session.log(f"{LOCK_FILE.name} matches pyproject.toml")
