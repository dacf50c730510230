"""Automation: lint, typecheck, codegen (and its drift check), tests.

`nox` runs the default sessions; `nox -s codegen` regenerates `generated/` from `proto/`;
`nox -s codegen -- --check` (or the default `codegen_check` session) fails when it is stale.
"""

from __future__ import annotations

import filecmp
import shutil
import tempfile
from pathlib import Path

import nox

nox.needs_version = ">=2025.2.9"
nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "typecheck", "codegen_check", "tests"]

ROOT = Path(__file__).parent
PYPROJECT = nox.project.load_toml("pyproject.toml")
PROTO_DIR = ROOT / "proto"
GENERATED_DIR = ROOT / "generated"
DESCRIPTOR_SET = "greet_service/greet.binpb"
LINTED = ["greet", "tests", "noxfile.py", "benchmarks"]


def install_group(session: nox.Session, group: str) -> None:
    session.install(*nox.project.dependency_groups(PYPROJECT, group))


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
    session.run("mypy", "--strict", "greet", "tests", "noxfile.py")


def generate(session: nox.Session, out: Path) -> None:
    """Run protoc with the betterproto plugin into `out`, from scratch."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.glob("*.proto"))
    session.run(
        "python",
        "-m",
        "grpc_tools.protoc",
        f"--proto_path={PROTO_DIR}",
        f"--python_betterproto_out={out}",
        *protos,
    )
    # The serialized FileDescriptorSet lets the server answer gRPC reflection: betterproto never
    # registers descriptors in google.protobuf's pool, which grpclib.reflection reads.
    session.run(
        "python",
        "-m",
        "grpc_tools.protoc",
        f"--proto_path={PROTO_DIR}",
        f"--descriptor_set_out={out / DESCRIPTOR_SET}",
        *protos,
    )
    # PEP 561: the generated dataclasses and stubs are typed; users' mypy should read them.
    (out / "py.typed").write_text("")


def tree_differences(expected: Path, actual: Path) -> list[str]:
    """Every file that differs, is missing or is extra in `actual` compared with `expected`."""

    def files(root: Path) -> set[str]:
        return {
            str(p.relative_to(root))
            for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }

    want, have = files(expected), files(actual)
    diffs = [f"missing: {name}" for name in sorted(want - have)]
    diffs += [f"extra: {name}" for name in sorted(have - want)]
    diffs += [
        f"differs: {name}"
        for name in sorted(want & have)
        if not filecmp.cmp(expected / name, actual / name, shallow=False)
    ]
    return diffs


def check_generated(session: nox.Session) -> None:
    """Regenerate into a scratch folder and fail on any drift from generated/."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "generated"
        generate(session, fresh)
        diffs = tree_differences(fresh, GENERATED_DIR)
    if diffs:
        session.error("generated/ is stale; run `nox -s codegen`:\n  " + "\n  ".join(diffs))
    session.log("generated/ matches proto/")


@nox.session
def codegen(session: nox.Session) -> None:
    """Regenerate generated/ from proto/; with `-- --check`, fail if generated/ is stale."""
    install_group(session, "codegen")
    if "--check" in session.posargs:
        check_generated(session)
    else:
        generate(session, GENERATED_DIR)


@nox.session(name="codegen_check")
def codegen_check(session: nox.Session) -> None:
    """`nox -s codegen -- --check`, as one of the default sessions."""
    install_group(session, "codegen")
    check_generated(session)


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite against the package installed as a user would install it."""
    install_group(session, "test")
    session.install(".")
    session.run("pytest", *(session.posargs or ["-q"]))
