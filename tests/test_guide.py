"""docs/guide-add-an-rpc.md, walked through: every step applied as written to a copy of the
repository, the guide's own tests run there, and the new RPC called on a server started from it.

The guide is read in document order. A `<!-- guide: FILE, after "LINE" -->` comment says where
the code block under it goes: after the one line of FILE that reads LINE (leading and trailing
blanks aside), or `new file`. A console block's commands are run: `nox -s codegen` as the
noxfile's own `generate` (protoc with the betterproto plugin, from the `codegen` dependency group
that the test group includes), `nox -s tests -- ARGS` as pytest with those arguments, and
`python -m greet.server` as a server process; a Python block with no comment is a client script,
run against that server. Anything else in a console block fails the test, so that the guide
cannot gain a step this test does not take.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from server_process import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "guide-add-an-rpc.md"
COPIED = ("proto", "generated", "greet", "tools", "pyproject.toml", "noxfile.py")
COPIED_TESTS = ("conftest.py", "support")
DIRECTIVE = re.compile(r"<!-- guide: (?P<file>[^,]+), (?:new file|after (?P<line>\".*\")) -->")
BLOCK = re.compile(r"^```(?P<lang>\w*)\n(?P<body>.*?)^```$", re.M | re.S)
DEFAULT_TARGET = "127.0.0.1:8080"

GENERATE = """\
import importlib.util
import subprocess
import sys

spec = importlib.util.spec_from_file_location("noxfile", "noxfile.py")
noxfile = importlib.util.module_from_spec(spec)
spec.loader.exec_module(noxfile)


class Session:
    # What noxfile.generate uses of a nox Session; `python` is this interpreter.
    def run(self, *args, **kwargs):
        program = sys.executable if args[0] == "python" else args[0]
        subprocess.run([program, *args[1:]], check=True)


noxfile.generate(Session(), noxfile.GENERATED_DIR)
"""
"""`nox -s codegen` without nox's virtualenv: the noxfile's own generate(), run in the copy."""


@dataclass(frozen=True)
class Edit:
    """A code block and where the guide says it goes."""

    file: str
    after: str | None  # None: a new file
    code: str


@dataclass(frozen=True)
class Commands:
    """The `$ ` lines of a console block."""

    lines: tuple[str, ...]


@dataclass(frozen=True)
class ClientScript:
    """A Python block without a directive: run against the server the guide started."""

    code: str


Step = Edit | Commands | ClientScript


def guide_steps(text: str) -> Iterator[Step]:
    """The guide's steps in document order."""
    for block in BLOCK.finditer(text):
        lang, body = block.group("lang"), block.group("body")
        before = text[: block.start()].rstrip("\n")
        last_line = before.rsplit("\n", 1)[-1]
        directive = DIRECTIVE.fullmatch(last_line)
        if directive is not None:
            line = directive.group("line")
            after = None if line is None else json.loads(line)
            yield Edit(directive.group("file"), after, body)
        elif lang == "console":
            lines = [line[2:] for line in body.splitlines() if line.startswith("$ ")]
            yield Commands(tuple(lines))
        elif lang == "python":
            yield ClientScript(body)
        else:
            raise AssertionError(f"a {lang or 'plain'} block without a guide comment:\n{body}")


def apply_edit(repo: Path, edit: Edit) -> None:
    path = repo / edit.file
    if edit.after is None:
        assert not path.exists(), f"{edit.file} is said to be new, but exists"
        path.write_text(edit.code)
        return
    lines = path.read_text().splitlines(keepends=True)
    found = [i for i, line in enumerate(lines) if line.strip() == edit.after]
    assert len(found) == 1, f"{edit.file}: {len(found)} lines read {edit.after!r}, not one"
    position = found[0] + 1
    path.write_text("".join(lines[:position]) + edit.code + "".join(lines[position:]))


def copy_of_the_repository(into: Path) -> Path:
    repo = into / "repo"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, repo / name, ignore=ignore)
        else:
            shutil.copy2(source, repo / name)
    (repo / "tests").mkdir()
    for name in COPIED_TESTS:
        source = ROOT / "tests" / name
        if source.is_dir():
            shutil.copytree(source, repo / "tests" / name, ignore=ignore)
        else:
            shutil.copy2(source, repo / "tests" / name)
    return repo


def copy_environment(repo: Path) -> dict[str, str]:
    """The copy's greet and greet_service come first (before any installed greet); the
    interpreter's scripts directory (protoc-gen-python_betterproto) is on PATH."""
    python_path = os.pathsep.join([str(repo), str(repo / "generated")])
    scripts = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "PYTHONPATH": python_path,
        "PATH": os.pathsep.join([scripts, os.environ.get("PATH", "")]),
    }


def run(repo: Path, *args: str, timeout: float = 60) -> str:
    done = subprocess.run(
        args,
        cwd=repo,
        env=copy_environment(repo),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(args)} failed ({done.returncode}):\n{output}"
    return output


class GuideRun:
    """Takes the guide's steps in the copy, in order."""

    def __init__(self, repo: Path, stack: AsyncExitStack) -> None:
        self.repo = repo
        self.stack = stack
        self.server: ServerProcess | None = None
        self.outputs: list[str] = []

    async def take(self, step: Step) -> None:
        if isinstance(step, Edit):
            apply_edit(self.repo, step)
        elif isinstance(step, Commands):
            for line in step.lines:
                await self.command(line)
        else:
            assert self.server is not None, "a client script before `python -m greet.server`"
            code = step.code.replace(DEFAULT_TARGET, self.server.target)
            self.outputs.append(await asyncio.to_thread(run, self.repo, sys.executable, "-c", code))

    async def command(self, line: str) -> None:
        words = line.split()
        if words == ["nox", "-s", "codegen"]:
            await asyncio.to_thread(run, self.repo, sys.executable, "-c", GENERATE)
        elif words[:4] == ["nox", "-s", "tests", "--"]:
            pytest_args = ("-q", "-p", "no:cacheprovider", *words[4:])
            output = await asyncio.to_thread(
                run, self.repo, sys.executable, "-m", "pytest", *pytest_args, timeout=120
            )
            assert re.search(r"\b\d+ passed\b", output), output
            assert not re.search(r"\b(failed|error|skipped)\b", output), output
        elif words == ["python", "-m", "pip", "install", "."]:
            pass  # the copy is imported from its own directory (copy_environment)
        elif words == ["python", "-m", "greet.server"]:
            server = ServerProcess(env=copy_environment(self.repo), cwd=str(self.repo))
            self.server = await self.stack.enter_async_context(server)
        else:
            raise AssertionError(f"the guide runs a command this test does not know: {line}")


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as exits:
        yield exits


def test_the_guide_says_where_every_change_goes() -> None:
    steps = list(guide_steps(GUIDE.read_text()))
    edited = {step.file for step in steps if isinstance(step, Edit)}
    assert {"proto/greet.proto", "greet/service.py", "greet/greeting.py"} <= edited
    assert "greet/client/_client.py" in edited
    commands = [line for step in steps if isinstance(step, Commands) for line in step.lines]
    assert "nox -s codegen" in commands
    assert any(line.startswith("nox -s tests -- ") for line in commands)


async def test_the_guides_steps_add_an_rpc_that_a_server_answers(
    tmp_path: Path, stack: AsyncExitStack
) -> None:
    repo = copy_of_the_repository(tmp_path)
    guide = GuideRun(repo, stack)
    for step in guide_steps(GUIDE.read_text()):
        await guide.take(step)
    # codegen rewrote the stubs and the descriptor set that reflection serves
    assert "say_goodbye" in (repo / "generated" / "greet_service" / "__init__.py").read_text()
    assert b"SayGoodbye" in (repo / "generated" / "greet_service" / "greet.binpb").read_bytes()
    assert guide.outputs == ["Goodbye Alice\n"]
    # and the repository itself is untouched
    assert b"SayGoodbye" not in (ROOT / "generated" / "greet_service" / "greet.binpb").read_bytes()
