"""`python -m greet.codegen PROTO_DIR OUT_DIR [--check]`: betterproto code for any proto folder.

What `nox -s codegen` does for greet's own `proto/`, for yours: protoc (from grpcio-tools) with
the betterproto plugin turns every `*.proto` of PROTO_DIR into Python packages under OUT_DIR, one
per proto package (`package inventory.v1;` -> `OUT_DIR/inventory/v1/__init__.py`), then

- writes `descriptor_set.binpb` (DESCRIPTOR_SET_FILE), the serialized FileDescriptorSet of those
  files and everything they import, into each generated package: greet's server answers gRPC
  reflection from it (greet.server.reflection finds it next to a servicer's generated base class;
  betterproto never registers descriptors in google.protobuf's pool);
- marks each top-level generated package typed (PEP 561 `py.typed`).

The tools that change the generated text are pinned: the `codegen` extra (`pip install
'greet[codegen]'`) lists the same versions as the project's `codegen` dependency group. OUT_DIR
is codegen's alone: it is emptied and written anew, so that nothing stale stays behind (a
working directory, a folder holding PROTO_DIR or a git repository is refused). `--check` writes
nothing and exits 1, listing every file that differs, is missing or is extra, when OUT_DIR is not
what PROTO_DIR generates.
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from google.protobuf.descriptor_pb2 import FileDescriptorSet

__all__ = [
    "DESCRIPTOR_SET_FILE",
    "CodegenError",
    "codegen",
    "differences",
    "generate",
    "main",
    "package_dirs",
]

DESCRIPTOR_SET_FILE = "descriptor_set.binpb"
"""The name of the FileDescriptorSet written into each generated package."""

PLUGIN = "protoc-gen-python_betterproto"
"""betterproto's protoc plugin (`betterproto[compiler]`), found beside this interpreter first."""


class CodegenError(Exception):
    """Codegen cannot run or protoc refused the input; the message says which and why."""


def proto_files(proto_dir: Path) -> list[str]:
    """The `*.proto` files of `proto_dir` and its subfolders, relative to it, sorted."""
    if not proto_dir.is_dir():
        raise CodegenError(f"{proto_dir}: not a folder")
    files = sorted(path.relative_to(proto_dir).as_posix() for path in proto_dir.rglob("*.proto"))
    if not files:
        raise CodegenError(f"{proto_dir}: no .proto files")
    return files


def plugin_path() -> str:
    """The betterproto plugin: beside this interpreter (a venv's scripts), else on PATH."""
    beside = Path(sys.executable).parent / PLUGIN
    if beside.exists():
        return str(beside)
    found = shutil.which(PLUGIN)
    if found is None:
        raise CodegenError(
            f"{PLUGIN} not found: install the codegen tools (pip install 'greet[codegen]')"
        )
    return found


def protoc(*arguments: str) -> None:
    """grpcio-tools' protoc in a child process (it prints its own errors on stderr)."""
    if importlib.util.find_spec("grpc_tools") is None:
        raise CodegenError("grpcio-tools is not installed: pip install 'greet[codegen]'")
    command = [sys.executable, "-m", "grpc_tools.protoc", *arguments]
    result = subprocess.run(command, check=False)
    if result.returncode != 0:
        raise CodegenError(f"protoc failed (exit status {result.returncode})")


def package_dirs(
    out: Path, descriptor_set: FileDescriptorSet, generated: Sequence[str]
) -> list[Path]:
    """The folders under `out` of the proto packages of `generated` (the files protoc was given,
    not their imports) that betterproto wrote a package into."""
    packages = {file.package for file in descriptor_set.file if file.name in set(generated)}
    folders = [out.joinpath(*package.split(".")) if package else out for package in packages]
    return sorted(folder for folder in folders if (folder / "__init__.py").is_file())


def generate(proto_dir: Path, out: Path) -> None:
    """Generate into `out`, a new folder."""
    out.mkdir(parents=True)
    protos = proto_files(proto_dir)
    protoc(
        f"--plugin=protoc-gen-python_betterproto={plugin_path()}",
        f"--proto_path={proto_dir}",
        f"--python_betterproto_out={out}",
        *protos,
    )
    with tempfile.TemporaryDirectory() as scratch:
        set_path = Path(scratch) / DESCRIPTOR_SET_FILE
        protoc(
            f"--proto_path={proto_dir}",
            "--include_imports",
            f"--descriptor_set_out={set_path}",
            *protos,
        )
        data = set_path.read_bytes()
    descriptor_set = FileDescriptorSet.FromString(data)
    for folder in package_dirs(out, descriptor_set, protos):
        (folder / DESCRIPTOR_SET_FILE).write_bytes(data)
    for package in sorted(path for path in out.iterdir() if (path / "__init__.py").is_file()):
        (package / "py.typed").write_text("")


def files_under(root: Path) -> set[str]:
    return {
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def differences(expected: Path, actual: Path) -> list[str]:
    """Every file that differs, is missing or is extra in `actual` compared with `expected`."""
    want, have = files_under(expected), files_under(actual) if actual.is_dir() else set()
    diffs = [f"missing: {name}" for name in sorted(want - have)]
    diffs += [f"extra: {name}" for name in sorted(have - want)]
    diffs += [
        f"differs: {name}"
        for name in sorted(want & have)
        if not filecmp.cmp(expected / name, actual / name, shallow=False)
    ]
    return diffs


def owned_folder_problem(proto_dir: Path, out: Path) -> str | None:
    """Why OUT_DIR cannot be codegen's own folder (it is emptied and rewritten); None if it can:
    never the working directory or one above it, a folder holding PROTO_DIR, or a repository."""
    here, target, protos = Path.cwd().resolve(), out.resolve(), proto_dir.resolve()
    if target == here or target in here.parents:
        return "it holds the working directory"
    if target == protos or target in protos.parents:
        return f"it holds {proto_dir}"
    if (target / ".git").exists():
        return "it is a git repository"
    return None


def codegen(proto_dir: Path, out: Path, *, check: bool = False) -> list[str]:
    """Rewrite `out` from scratch with what `proto_dir` generates (so nothing stale stays), or
    with `check` only list every file that differs, is missing or is extra."""
    if (problem := owned_folder_problem(proto_dir, out)) is not None:
        raise CodegenError(f"{out}: not a folder for generated code alone ({problem})")
    with tempfile.TemporaryDirectory() as scratch:
        fresh = Path(scratch) / "out"
        generate(proto_dir, fresh)
        if check:
            return differences(fresh, out)
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(os.fspath(fresh), os.fspath(out))
    return []


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m greet.codegen",
        description="Generate betterproto dataclasses, stubs and servicer bases (plus the "
        "descriptor set greet's server answers reflection from) for every .proto of PROTO_DIR.",
    )
    parser.add_argument("proto_dir", metavar="PROTO_DIR", type=Path, help="folder of .proto files")
    parser.add_argument(
        "out_dir", metavar="OUT_DIR", type=Path, help="the generated packages' own folder"
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if OUT_DIR is stale"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    try:
        diffs = codegen(arguments.proto_dir, arguments.out_dir, check=arguments.check)
    except CodegenError as error:
        print(f"greet.codegen: {error}", file=sys.stderr)
        return 1
    if diffs:
        print(f"{arguments.out_dir} is stale; run without --check:", file=sys.stderr)
        for diff in diffs:
            print(f"  {diff}", file=sys.stderr)
        return 1
    if arguments.check:
        print(f"{arguments.out_dir} matches {arguments.proto_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
