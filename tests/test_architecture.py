"""docs/architecture.md draws the path of a unary call; this checks the drawing against a traced
call: every greet module one `GreetClient.say_hello()` really runs functions in (client and
server, `benchmarks/path_length.py`) is in the drawing, and the drawing names no module the
call does not cross.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARCHITECTURE = ROOT / "docs" / "architecture.md"
PATH_LENGTH = ROOT / "benchmarks" / "path_length.py"
MODULE = re.compile(r"\bgreet/[\w/]+\.py\b")
ENGINES = {"greet/transport/_engines/nghttp2.py", "greet/transport/_engines/h2.py"}
"""A call crosses one of them (GREET_HTTP2_ENGINE, or the default); the drawing names both."""


def drawn_modules() -> set[str]:
    """The greet modules named in the drawing of 'A unary call, module by module'."""
    text = ARCHITECTURE.read_text()
    section = text.split("## A unary call, module by module", 1)[1].split("\n## ", 1)[0]
    drawings = re.findall(r"^```text\n(.*?)^```$", section, re.M | re.S)
    assert drawings, "docs/architecture.md has no drawing of the unary path"
    return {name for drawing in drawings for name in MODULE.findall(drawing)}


def traced_modules() -> set[str]:
    """The greet modules a real unary round trip runs functions in (a child process, so that
    its profiler sees nothing of pytest's)."""
    result = subprocess.run(
        [sys.executable, str(PATH_LENGTH), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    traced: dict[str, list[str]] = json.loads(result.stdout.splitlines()[-1])["modules"]
    return set(traced)


def test_the_drawing_names_every_module_a_unary_call_crosses_and_no_other() -> None:
    drawn = drawn_modules()
    traced = traced_modules()
    assert not traced - drawn, f"crossed by the call but not drawn: {sorted(traced - drawn)}"
    assert len(traced & ENGINES) == 1
    not_crossed = drawn - traced - ENGINES
    assert not not_crossed, f"drawn but not crossed by the call: {sorted(not_crossed)}"
