"""Per-message cost of the protobuf codecs greet could stand on, side by side.

    python benchmarks/codec_bench.py [--repeats 7] [--seconds 0.2] [--betterproto2-python PY]

Columns (microseconds of CPU time per operation, the median of `--repeats` timing runs, each
about `--seconds` long, timed with `time.process_time` so that waiting for a core on a shared
machine does not count):

- greet: greet._codec, greet's own codec under betterproto's classes (strict).
- bp+rust: betterproto 2.0.0b7 as installed, with betterproto-rust-codec (strict, RuntimeError).
- bp pure: betterproto's own pure-Python `load`/`dump`, which the Rust codec leaves in place
  (not strict: it accepts truncated input).
- betterproto2: betterproto2's classes for the same messages, written the way its compiler
  writes them. It is not a dependency of greet: give `--betterproto2-python` the Python of a
  scratch venv (`python -m venv /tmp/bp2 && /tmp/bp2/bin/pip install betterproto2`) and the
  script measures that column there; without it the column is empty.
- upb: google.protobuf (upb) classes from greet's own descriptor set, a reference for what a C
  parser costs, not a candidate (greet's API is betterproto's classes).

"construct" is the plain constructor; for greet it is `greet._codec.build`, which the client
uses (GreetService builds its replies with the plain constructor, the bp+rust figure). The last
rows are a reply as GreetService makes and sends one: construct, then encode. A measurement,
not a test.
"""

# ruff: noqa: RUF009  (betterproto2.field() declares dataclass fields, as its generated code does)
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import time
import timeit
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = ("greet", "bp+rust", "bp pure", "betterproto2", "upb")
NAMES_1K = [f"name-{index:04d}" for index in range(1_000)]
NAMES_100K = [f"name-{index:06d}" for index in range(100_000)]
ROWS = (
    "construct HelloResponse(message='Hello')",
    "encode HelloResponse",
    "parse HelloRequest b'\\n\\x05Alice'",
    "parse NoParam b''",
    "parse NamesList, 1,000 names",
    "parse NamesList, 100,000 names",
    "encode NamesList, 1,000 names",
    "reply: HelloResponse(message=...) + encode",
    "reply: build(HelloResponse, ...) + encode",
)
Cases = dict[str, Callable[[], object]]


def betterproto_cases(pure: bool) -> Cases:
    """betterproto 2.0.0b7's classes (generated/), parsed and written as installed or in pure
    Python."""
    import betterproto

    from greet_service import HelloRequest, HelloResponse, NamesList, NoParam

    def parse(cls: type[betterproto.Message], data: bytes) -> betterproto.Message:
        if not pure:
            return cls().parse(data)
        with BytesIO(data) as stream:
            return cls().load(stream)

    def write(message: betterproto.Message) -> bytes:
        if not pure:
            return bytes(message)
        with BytesIO() as stream:
            message.dump(stream)
            return stream.getvalue()

    hello, many = HelloResponse(message="Hello"), NamesList(names=NAMES_1K)
    names_1k, names_100k = bytes(many), bytes(NamesList(names=NAMES_100K))
    return {
        ROWS[0]: lambda: HelloResponse(message="Hello"),
        ROWS[1]: lambda: write(hello),
        ROWS[2]: lambda: parse(HelloRequest, b"\n\x05Alice"),
        ROWS[3]: lambda: parse(NoParam, b""),
        ROWS[4]: lambda: parse(NamesList, names_1k),
        ROWS[5]: lambda: parse(NamesList, names_100k),
        ROWS[6]: lambda: write(many),
        ROWS[7]: lambda: write(HelloResponse(message="Hello")),
    }


def greet_cases() -> Cases:
    from greet._codec import build, decode, encode
    from greet_service import HelloRequest, HelloResponse, NamesList, NoParam

    hello, many = HelloResponse(message="Hello"), NamesList(names=NAMES_1K)
    names_1k, names_100k = bytes(many), bytes(NamesList(names=NAMES_100K))
    return {
        ROWS[0]: lambda: build(HelloResponse, message="Hello"),
        ROWS[1]: lambda: encode(hello),
        ROWS[2]: lambda: decode(HelloRequest, b"\n\x05Alice"),
        ROWS[3]: lambda: decode(NoParam, b""),
        ROWS[4]: lambda: decode(NamesList, names_1k),
        ROWS[5]: lambda: decode(NamesList, names_100k),
        ROWS[6]: lambda: encode(many),
        ROWS[7]: lambda: encode(HelloResponse(message="Hello")),
        ROWS[8]: lambda: encode(build(HelloResponse, message="Hello")),
    }


def betterproto2_cases() -> Cases:
    """The same messages as betterproto2 classes (only where betterproto2 is installed)."""
    from dataclasses import dataclass

    import betterproto2

    @dataclass(eq=False, repr=False)
    class NoParam(betterproto2.Message):
        pass

    @dataclass(eq=False, repr=False)
    class HelloRequest(betterproto2.Message):
        name: str = betterproto2.field(1, betterproto2.TYPE_STRING)

    @dataclass(eq=False, repr=False)
    class HelloResponse(betterproto2.Message):
        message: str = betterproto2.field(1, betterproto2.TYPE_STRING)

    @dataclass(eq=False, repr=False)
    class NamesList(betterproto2.Message):
        names: list[str] = betterproto2.field(1, betterproto2.TYPE_STRING, repeated=True)

    hello, many = HelloResponse(message="Hello"), NamesList(names=NAMES_1K)
    names_1k, names_100k = bytes(many), bytes(NamesList(names=NAMES_100K))
    assert NamesList.parse(names_1k).names == NAMES_1K
    return {
        ROWS[0]: lambda: HelloResponse(message="Hello"),
        ROWS[1]: lambda: bytes(hello),
        ROWS[2]: lambda: HelloRequest.parse(b"\n\x05Alice"),
        ROWS[3]: lambda: NoParam.parse(b""),
        ROWS[4]: lambda: NamesList.parse(names_1k),
        ROWS[5]: lambda: NamesList.parse(names_100k),
        ROWS[6]: lambda: bytes(many),
        ROWS[7]: lambda: bytes(HelloResponse(message="Hello")),
    }


def upb_cases() -> Cases:
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    files = descriptor_pb2.FileDescriptorSet.FromString(
        (ROOT / "generated" / "greet_service" / "descriptor_set.binpb").read_bytes()
    )
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)

    def message_class(name: str) -> Any:
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"greet_service.{name}"))

    hello_request, hello_response = message_class("HelloRequest"), message_class("HelloResponse")
    names_list, no_param = message_class("NamesList"), message_class("NoParam")
    hello, many = hello_response(message="Hello"), names_list(names=NAMES_1K)
    names_1k = many.SerializeToString()
    names_100k = names_list(names=NAMES_100K).SerializeToString()
    return {
        ROWS[0]: lambda: hello_response(message="Hello"),
        ROWS[1]: hello.SerializeToString,
        ROWS[2]: lambda: hello_request.FromString(b"\n\x05Alice"),
        ROWS[3]: lambda: no_param.FromString(b""),
        ROWS[4]: lambda: names_list.FromString(names_1k),
        ROWS[5]: lambda: names_list.FromString(names_100k),
        ROWS[6]: many.SerializeToString,
        ROWS[7]: lambda: hello_response(message="Hello").SerializeToString(),
    }


def per_call_us(call: Callable[[], object], repeats: int, seconds: float) -> float:
    timer = timeit.Timer(call, timer=time.process_time)
    number, elapsed = timer.autorange()
    number = max(1, int(number * seconds / max(elapsed, 1e-9)))
    runs = timer.repeat(repeat=repeats, number=number)
    return statistics.median(runs) / number * 1e6


def measure(cases: Cases, repeats: int, seconds: float) -> dict[str, float]:
    return {row: per_call_us(call, repeats, seconds) for row, call in cases.items()}


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in ("betterproto", "betterproto-rust-codec", "betterproto2", "protobuf"):
        with contextlib.suppress(PackageNotFoundError):
            found.append(f"{name} {version(name)}")
    return ", ".join(found)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="timing runs per figure")
    parser.add_argument("--seconds", type=float, default=0.2, help="length of one timing run")
    parser.add_argument(
        "--betterproto2-python", help="the Python of a venv where betterproto2 is installed"
    )
    parser.add_argument("--only-betterproto2", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only_betterproto2:  # the child run in betterproto2's venv
        figures = measure(betterproto2_cases(), args.repeats, args.seconds)
        print(json.dumps({"figures": figures, "versions": versions()}))
        return 0

    sys.path.insert(0, str(ROOT))
    from greet._codec import rust_codec_active

    if not rust_codec_active():
        print("betterproto-rust-codec is not active here: the bp+rust column is pure Python")
    table: dict[str, dict[str, float]] = {
        "greet": measure(greet_cases(), args.repeats, args.seconds),
        "bp+rust": measure(betterproto_cases(pure=False), args.repeats, args.seconds),
        "bp pure": measure(betterproto_cases(pure=True), args.repeats, args.seconds),
        "upb": measure(upb_cases(), args.repeats, args.seconds),
    }
    print(f"Python {sys.version.split()[0]}: {versions()}")
    if args.betterproto2_python:
        command = [args.betterproto2_python, __file__, "--only-betterproto2"]
        command += ["--repeats", str(args.repeats), "--seconds", str(args.seconds)]
        child = json.loads(subprocess.run(command, check=True, capture_output=True).stdout)
        table["betterproto2"] = child["figures"]
        print(f"betterproto2 column: {args.betterproto2_python}: {child['versions']}")
    print(f"median of {args.repeats} runs, microseconds of CPU time per operation\n")
    header = f"{'operation':44}" + "".join(f"{column:>13}" for column in COLUMNS)
    print(header)
    print("-" * len(header))
    for row in ROWS:
        cells = [table.get(column, {}).get(row) for column in COLUMNS]
        print(f"{row:44}" + "".join("-".rjust(13) if x is None else f"{x:13.2f}" for x in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
