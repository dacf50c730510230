"""Path length of one unary call: the greet modules it runs functions in, and how many Python and
C function calls it makes in all, client and server together.

    python benchmarks/path_length.py            # a table, then "N modules, M calls"
    python benchmarks/path_length.py --json     # {"modules": {...}, "calls": M}

GreetClient and GreetServer run in one process over a real loopback connection. After warm-up
calls, one `client.say_hello()` runs under `sys.setprofile`, which sees every "call" and
"c_call" event (the event loop's own work included, until the server has finished the call).
Call counts are exact for one interpreter and set of installed packages, whatever the load on
the machine: a noise-free proxy for per-call machinery, beside the throughput benchmarks.
Run it with the Python of a venv where greet is installed (`pip install .` or `-e .`). Tracing is
off (OTEL_SDK_DISABLED=true) unless the environment says otherwise: with greet[otel] installed it
is on by default and would export every call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from types import FrameType
from typing import Any

os.environ.setdefault("OTEL_SDK_DISABLED", "true")

import greet
from greet.client import GreetClient
from greet.server import GreetServer, ServerConfig

PACKAGE = Path(greet.__file__).resolve().parent  # greet/; its modules are counted
WARM_UP = 20
SETTLE = 0.05  # seconds traced after the call returned, as the 2026-12-05 review counted


def module_name(filename: str) -> str | None:
    """`greet/transport/_server.py` for a file of the greet package, else None."""
    path = Path(filename)
    if not path.is_absolute():
        return None  # <frozen abc>, <string>: not a file of greet's
    try:
        return f"greet/{path.resolve().relative_to(PACKAGE)}"
    except ValueError:
        return None


async def trace_one_call() -> tuple[dict[str, set[str]], int]:
    seen: dict[str, set[str]] = {}
    calls = 0
    names: dict[str, str | None] = {}

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal calls
        if event == "call" or event == "c_call":
            calls += 1
        if event == "call":
            filename = frame.f_code.co_filename
            name = names.get(filename, "")
            if name == "":
                name = names[filename] = module_name(filename)
            if name is not None:
                seen.setdefault(name, set()).add(frame.f_code.co_name)

    async with GreetServer(ServerConfig(port=0)) as server:
        port = server.address[1]
        async with GreetClient(f"127.0.0.1:{port}", timeout=5) as client:
            for _ in range(WARM_UP):
                await client.say_hello()
            sys.setprofile(profile)
            try:
                await client.say_hello()
                # What the call leaves to do after its reply (the last acknowledgements) is
                # done within this while; the loop is otherwise idle.
                await asyncio.sleep(SETTLE)
            finally:
                sys.setprofile(None)
    return seen, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="the event loop (asyncio's own, as the 2026-12-05 review counted; or uvloop, which "
        "`python -m greet.server` runs on where it installs)",
    )
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        seen, calls = uvloop.run(trace_one_call())
    else:
        seen, calls = asyncio.run(trace_one_call())
    if args.json:
        modules = {name: sorted(functions) for name, functions in sorted(seen.items())}
        print(json.dumps({"loop": args.loop, "modules": modules, "calls": calls}))
        return
    for name in sorted(seen):
        print(f"  {name}: {', '.join(sorted(seen[name]))}")
    print(f"{len(seen)} modules, {calls} calls ({args.loop} event loop)")


if __name__ == "__main__":
    main()
