"""The README, CONTRIBUTING.md and docs/: their links resolve, every flag they name exists, their
examples run, and the homes CONTRIBUTING.md names exist.

Flags are checked where the text says whose they are: in a command line (a code block's line, or
an inline code span) from the point where it runs `python -m greet.server`, `greet-client`,
`python benchmarks/compare.py` ..., against that program's `--help`; and in an inline code span
that starts with `--`, against the flags of all of them. Flags of other tools (pip, nox, kubectl,
grpcurl) are written after the tool's name and so are not taken for greet's.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from loopback import StartServer
from server_process import run_client_cli

from greet.greeting import Limits
from greet.server import GreetServer

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CONTRIBUTING = ROOT / "CONTRIBUTING.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, CONTRIBUTING, ROOT / "CHANGELOG.md", *DOCS]
GUIDE = ROOT / "docs" / "your-service.md"  # a project of its own, walked by test_your_service.py
CHART = "benchmarks/chart.svg"
"""Drawn by benchmarks/chart.py from the recorded results; the README links it before it exists."""
DEFAULT_TARGET = "127.0.0.1:8080"

PROGRAMS: dict[str, tuple[tuple[str, ...], ...]] = {
    "python -m greet.server": (("-m", "greet.server"),),
    "greet-server": (("-m", "greet.server"),),
    "python -m greet.client": (("-m", "greet.client"), ("-m", "greet.client", "bench")),
    "greet-client": (("-m", "greet.client"), ("-m", "greet.client", "bench")),
    "python -m greet.examples.rate_limit": (("-m", "greet.examples.rate_limit"),),
    "python -m greet.codegen": (("-m", "greet.codegen"),),
    "python benchmarks/compare.py": (("benchmarks/compare.py",),),
    "python benchmarks/profile.py": (("benchmarks/profile.py",),),
}
"""Each documented program and the `--help` outputs (arguments to python) its flags come from."""
PROGRAM = re.compile("|".join(re.escape(name) for name in sorted(PROGRAMS, key=len, reverse=True)))
FLAG = re.compile(r"(?<![\w-])--[a-z0-9][a-z0-9-]*")
GREET_VARIABLE = re.compile(r"\bGREET_[A-Z0-9_]*[A-Z0-9]\b")
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\n(?P<body>.*?)^```$", re.M | re.S)
LINK = re.compile(r"!?\[[^\]]*\]\((?P<target>[^)\s]+)\)")
CODE_SPAN = re.compile(r"`([^`]+)`")
HEADING = re.compile(r"^#{1,6} (.+)$", re.M)


@dataclass(frozen=True)
class CodeBlock:
    lang: str  # "" for an indented block
    body: str


@dataclass(frozen=True)
class Page:
    """A Markdown page split into its code blocks and its prose (the rest)."""

    path: Path
    blocks: tuple[CodeBlock, ...]
    prose: str

    @classmethod
    def read(cls, path: Path) -> Page:
        text = path.read_text()
        blocks = [CodeBlock(m.group("lang"), m.group("body")) for m in FENCE.finditer(text)]
        prose_lines: list[str] = []
        indented: list[str] = []
        previous = ""
        for line in FENCE.sub("", text).splitlines():
            if line.startswith("    ") and (indented or not previous.strip()):
                indented.append(line[4:])
                continue
            if indented:
                blocks.append(CodeBlock("", "\n".join(indented) + "\n"))
                indented = []
            prose_lines.append(line)
            previous = line
        if indented:
            blocks.append(CodeBlock("", "\n".join(indented) + "\n"))
        return cls(path, tuple(blocks), "\n".join(prose_lines))

    @property
    def name(self) -> str:
        return str(self.path.relative_to(ROOT))

    def python_blocks(self) -> list[str]:
        return [block.body for block in self.blocks if block.lang == "python"]

    def command_lines(self) -> Iterator[str]:
        """Shell lines of the code blocks, continuation lines joined."""
        for block in self.blocks:
            if block.lang not in ("", "sh", "console", "shell", "bash"):
                continue
            logical = ""
            for line in block.body.splitlines():
                line = line.removeprefix("$ ")
                if line.endswith("\\"):
                    logical += line[:-1] + " "
                    continue
                yield logical + line
                logical = ""

    def code_spans(self) -> list[str]:
        return [" ".join(span.split()) for span in CODE_SPAN.findall(self.prose)]

    def anchors(self) -> set[str]:
        return {github_anchor(heading) for heading in HEADING.findall(self.prose)}


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@cache
def page(path: Path) -> Page:
    return Page.read(path)


@cache
def help_flags(arguments: tuple[str, ...]) -> frozenset[str]:
    done = subprocess.run(
        [sys.executable, *arguments, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{' '.join(arguments)} --help:\n{done.stderr}"
    return frozenset(FLAG.findall(done.stdout))


def program_flags(program: str) -> frozenset[str]:
    return frozenset().union(*(help_flags(arguments) for arguments in PROGRAMS[program]))


def all_flags() -> frozenset[str]:
    return frozenset().union(*(program_flags(program) for program in PROGRAMS))


def unknown_flags_in_command(line: str) -> Iterator[str]:
    """The flags of a command line that the program they follow does not have."""
    runs = list(PROGRAM.finditer(line))
    ends = [run.start() for run in runs[1:]] + [len(line)] if runs else []
    for run, end in zip(runs, ends, strict=True):
        words = line[run.end() : end]
        known = program_flags(run.group())
        yield from (flag for flag in FLAG.findall(words) if flag not in known)


def nox_sessions() -> set[str]:
    """The session names the noxfile declares (a function's name, or its `name=`)."""
    names: set[str] = set()
    for node in ast.parse((ROOT / "noxfile.py").read_text()).body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            call = decorator if isinstance(decorator, ast.Call) else None
            target = call.func if call is not None else decorator
            if ast.unparse(target) != "nox.session":
                continue
            names.add(node.name)
            for keyword in call.keywords if call is not None else []:
                if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                    names.add(str(keyword.value.value))
    return names


# --- links ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_resolves(path: Path) -> None:
    broken = []
    for target in LINK.findall(page(path).prose):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if linked == ROOT / CHART and not linked.exists():
            continue  # linked ahead of benchmarks/chart.py's first run
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in page(linked).anchors():
            broken.append(f"{target}: no heading #{anchor} in {linked.relative_to(ROOT)}")
    assert broken == []


def test_the_readme_shows_the_generated_benchmark_chart() -> None:
    assert f"]({CHART})" in README.read_text().split("![", 1)[1]
    chart = ROOT / CHART
    if chart.exists():
        assert re.match(r"\s*(<\?xml[^>]*>\s*)?<svg\b", chart.read_text()), f"{CHART} is no SVG"


def test_the_readme_is_short_and_links_every_page_of_docs() -> None:
    text = README.read_text()
    assert len(text.splitlines()) < 150
    linked = {target.partition("#")[0] for target in LINK.findall(page(README).prose)}
    assert {f"docs/{doc.name}" for doc in DOCS} <= linked
    assert "CONTRIBUTING.md" in linked


# --- flags, variables and sessions ---------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_documented_flag_exists(path: Path) -> None:
    doc = page(path)
    unknown = [
        (line, flag) for line in doc.command_lines() for flag in unknown_flags_in_command(line)
    ]
    for span in doc.code_spans():
        if span.startswith("--"):
            unknown += [(span, flag) for flag in FLAG.findall(span) if flag not in all_flags()]
        else:
            unknown += [(span, flag) for flag in unknown_flags_in_command(span)]
    assert unknown == []


def test_the_flag_check_knows_a_flag_from_a_typo() -> None:
    assert list(unknown_flags_in_command("python -m greet.server --port 0 --max-names 3")) == []
    assert list(unknown_flags_in_command("python -m greet.server --max-name 3")) == ["--max-name"]
    assert list(unknown_flags_in_command("greet-client --target h:1 bench --rps 5")) == []
    assert list(unknown_flags_in_command("greet-server --rps 5")) == ["--rps"]
    assert list(unknown_flags_in_command("pip install --group bench .")) == []


@pytest.mark.parametrize("path", PAGES, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_greet_variable_belongs_to_a_server_flag(path: Path) -> None:
    server_variables = {
        "GREET_" + flag[2:].upper().replace("-", "_")
        for flag in program_flags("python -m greet.server")
    }
    nginx_template = (ROOT / "deploy" / "nginx" / "greet.conf.template").read_text()
    template_variables = set(re.findall(r"\$\{(GREET_[A-Z0-9_]+)\}", nginx_template))
    named = set(GREET_VARIABLE.findall(path.read_text()))
    assert named - server_variables - template_variables == set()


@pytest.mark.parametrize("path", PAGES, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_nox_session_named_exists(path: Path) -> None:
    named = set(re.findall(r"\bnox -s ([\w-]+)", path.read_text()))
    assert named - nox_sessions() == set()


# --- examples ------------------------------------------------------------------------------------


def python_examples() -> Iterator[tuple[str, str]]:
    for path in PAGES:
        if path == GUIDE:
            continue
        for number, code in enumerate(page(path).python_blocks(), 1):
            yield f"{page(path).name}#{number}", code


@pytest.mark.parametrize(("where", "code"), list(python_examples()), ids=lambda x: x)
def test_every_python_example_compiles_and_imports_what_exists(where: str, code: str) -> None:
    tree = compile(code, where, "exec", ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    missing = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module is not None:
            module = importlib.import_module(node.module)
            missing += [
                f"{node.module}.{alias.name}"
                for alias in node.names
                if not hasattr(module, alias.name)
            ]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                importlib.import_module(alias.name)
    assert missing == []


async def run_example(code: str, target: str) -> str:
    """Run a documented client script against `target` instead of the default address."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code.replace(DEFAULT_TARGET, target),
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_the_readme_quick_start_prints_what_the_readme_shows(server: GreetServer) -> None:
    shown = next(
        block.body for block in page(README).blocks if "$ python -m greet.client\n" in block.body
    )
    expected = shown.split("$ python -m greet.client\n", 1)[1]
    done = await run_client_cli("--target", server.target, cwd=ROOT)
    assert (done.code, done.out) == (0, expected)


async def test_the_readme_example_runs_all_four_call_kinds(server: GreetServer) -> None:
    [example] = page(README).python_blocks()
    output = await run_example(example, server.target)
    assert output.splitlines() == [
        "Hello",
        "Hello Alice",
        "Hello Bob",
        "['Hello Alice', 'Hello Bob']",
        "Hello Alice",
        "Hello Bob",
    ]


async def test_the_client_error_example_prints_the_rich_details_shown(
    start_server: StartServer,
) -> None:
    client_doc = page(ROOT / "docs" / "client.md")
    section = client_doc.path.read_text().split("\n## Errors\n", 1)[1].split("\n## ", 1)[0]
    [example, shown] = [m.group("body") for m in FENCE.finditer(section)]
    assert "--max-name-chars 1024" in section
    server = await start_server(limits=Limits(max_name_chars=1024))
    assert await run_example(example, server.target) == shown


# --- CONTRIBUTING.md ---------------------------------------------------------------------------


def test_contributing_names_a_home_for_each_kind_of_change() -> None:
    text = CONTRIBUTING.read_text()
    for change in ("a new RPC", "a new server interceptor or middleware", "a new metric"):
        assert f"| {change} |" in text
    assert "| a new server flag |" in text


def test_every_home_contributing_names_exists() -> None:
    spans = page(CONTRIBUTING).code_spans()
    paths = [span for span in spans if re.fullmatch(r"[\w.-]+(/[\w.-]*)+|Dockerfile|\w+\.md", span)]
    assert "greet/middleware/" in paths
    assert "greet/server/config.py" in paths
    assert [path for path in paths if not (ROOT / path).exists()] == []


def test_every_name_contributing_places_in_a_module_is_defined_there() -> None:
    text = " ".join(CONTRIBUTING.read_text().split())
    placed = re.findall(r"`(\w+)(?:\.\w+)?` in `([\w/]+\.py)`", text)
    assert ("ServerConfig", "greet/server/config.py") in placed
    undefined = [
        f"{name} in {path}"
        for name, path in placed
        if not re.search(rf"^(class|def) {name}\b", (ROOT / path).read_text(), re.M)
    ]
    assert undefined == []
