"""Per-message cost of greet.messages beside betterproto's (Rust codec and pure Python).

    python benchmarks/messages_microbench.py [--repeats 7] [--seconds 0.2]

Each figure is the median over `--repeats` timing runs of microseconds per operation; each run
loops for about `--seconds` of this process's CPU time (`time.process_time`, so that time spent
waiting for a core on a shared machine does not count). "betterproto" is what betterproto does
as installed (with betterproto-rust-codec where it is importable); "pure" calls
betterproto.Message's own pure-Python `load`/`dump`, which the Rust codec leaves in place.
Construction has no Rust variant, so its two betterproto columns are the same code. A speed
measurement, not a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import timeit
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import betterproto  # noqa: E402

from greet import messages  # noqa: E402
from greet_service import HelloRequest, HelloResponse, NamesList, NoParam  # noqa: E402

RUST_ACTIVE = betterproto.Message.parse.__qualname__ != "Message.parse"

TARGETS_US = {
    "build(HelloResponse, message='Hello')": 1.5,
    "decode(HelloRequest, b'\\n\\x05Alice')": 2.0,
    "decode(NoParam, b'')": 1.0,
    "encode(HelloResponse)": 1.5,
    "decode(NamesList, 1,000 names)": 300.0,
}


def pure_parse(cls: type[betterproto.Message], data: bytes) -> betterproto.Message:
    with BytesIO(data) as stream:
        return cls().load(stream)


def pure_bytes(message: betterproto.Message) -> bytes:
    with BytesIO() as stream:
        message.dump(stream)
        return stream.getvalue()


def per_call_us(statement: str, namespace: dict[str, Any], repeats: int, seconds: float) -> float:
    timer = timeit.Timer(statement, globals=namespace, timer=time.process_time)
    number, elapsed = timer.autorange()
    number = max(1, int(number * seconds / max(elapsed, 1e-9)))
    runs = timer.repeat(repeat=repeats, number=number)
    return statistics.median(runs) / number * 1e6


NAMESPACE: dict[str, Any] = {
    "messages": messages,
    "pure_parse": pure_parse,
    "pure_bytes": pure_bytes,
    "HelloRequest": HelloRequest,
    "HelloResponse": HelloResponse,
    "NamesList": NamesList,
    "NoParam": NoParam,
    "hello": HelloResponse(message="Hello"),
    "alice": b"\n\x05Alice",
    "many": NamesList(names=[f"name-{index:04d}" for index in range(1000)]),
}
NAMESPACE["names"] = bytes(NAMESPACE["many"])

CASES: dict[str, tuple[str, str, str]] = {
    # name: (greet.messages, betterproto as installed, pure-Python betterproto)
    "build(HelloResponse, message='Hello')": (
        "messages.build(HelloResponse, message='Hello')",
        "HelloResponse(message='Hello')",
        "HelloResponse(message='Hello')",
    ),
    "decode(HelloRequest, b'\\n\\x05Alice')": (
        "messages.decode(HelloRequest, alice)",
        "HelloRequest.FromString(alice)",
        "pure_parse(HelloRequest, alice)",
    ),
    "decode(NoParam, b'')": (
        "messages.decode(NoParam, b'')",
        "NoParam.FromString(b'')",
        "pure_parse(NoParam, b'')",
    ),
    "encode(HelloResponse)": (
        "messages.encode(hello)",
        "bytes(hello)",
        "pure_bytes(hello)",
    ),
    "decode(NamesList, 1,000 names)": (
        "messages.decode(NamesList, names)",
        "NamesList.FromString(names)",
        "pure_parse(NamesList, names)",
    ),
    "encode(NamesList, 1,000 names)": (
        "messages.encode(many)",
        "bytes(many)",
        "pure_bytes(many)",
    ),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="timing runs per figure")
    parser.add_argument("--seconds", type=float, default=0.2, help="length of one timing run")
    args = parser.parse_args()

    codec = "betterproto-rust-codec" if RUST_ACTIVE else "pure Python (Rust codec not installed)"
    print(f"Python {sys.version.split()[0]}, betterproto {betterproto.__version__}, {codec}")
    print(f"median of {args.repeats} runs, microseconds of CPU time per operation\n")
    header = f"{'operation':40} {'greet':>9} {'target':>8} {'betterproto':>12} {'pure':>9}"
    print(header)
    print("-" * len(header))
    for name, statements in CASES.items():
        figures = [
            per_call_us(statement, NAMESPACE, args.repeats, args.seconds)
            for statement in statements
        ]
        target = TARGETS_US.get(name)
        target_text = f"<= {target:g}" if target is not None else ""
        print(f"{name:40} {figures[0]:9.2f} {target_text:>8} {figures[1]:12.2f} {figures[2]:9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
