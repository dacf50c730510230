"""Profile the greet server under h2load with py-spy; print where the time goes.

    python benchmarks/profile.py --workload unary128 --seconds 8 [--http2-engine h2]
        [--greet-args "..."]

Starts `python -m greet.server` pinned to core 0, drives it with h2load pinned to core 1 (the
same load shapes as compare.py), records with `py-spy record --format raw` (needs py-spy, in the
`bench` dependency group, and permission to trace the child: root or ptrace_scope 0), and prints
the self time by package and the hottest functions (self and inclusive). The raw profile (folded
stacks) is kept with --out for flame graphs.
"""

from __future__ import annotations

import argparse
import collections
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from h2load import Load, run_h2load  # noqa: E402
from servers import ENGINES, RunningServer, greet_spec  # noqa: E402
from workloads import WORKLOADS, write_body  # noqa: E402

PACKAGES = (
    "ngh2",
    "h2",
    "hpack",
    "hyperframe",
    "grpclib",
    "betterproto",
    "asyncio",
    "greet",
    "logging",
)


def summarize(raw: Path, top: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    by_package: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        total += count
        frames = stack.split(";")
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
        match = re.search(r"\(([^:)]*)", frames[-1])
        path = match.group(1) if match else frames[-1]
        package = path.split("/")[0]
        by_package[package if package in PACKAGES else "other"] += count
    lines = [f"{total} samples", "", "self time by package:"]
    lines += [f"  {100 * n / total:5.1f}% {name}" for name, n in by_package.most_common()]
    lines += ["", "self time:"]
    lines += [f"  {100 * n / total:5.1f}% {name}" for name, n in own.most_common(top)]
    lines += ["", "inclusive time:"]
    lines += [f"  {100 * n / total:5.1f}% {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workload", choices=list(WORKLOADS), default="unary128")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rate", type=int, default=500, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--http2-engine", choices=ENGINES, default=ENGINES[0])
    parser.add_argument("--greet-args", default="")
    parser.add_argument("--out", type=Path, help="keep the raw (folded) profile here")
    args = parser.parse_args()
    workload = WORKLOADS[args.workload]
    with tempfile.TemporaryDirectory(prefix="greet-profile-") as tmp:
        body = write_body(workload, Path(tmp))
        raw = args.out or Path(tmp) / "profile.raw"
        server = RunningServer(
            greet_spec(args.http2_engine, None, shlex.split(args.greet_args)), "0"
        )
        try:
            spy = subprocess.Popen(
                ["py-spy", "record", "-p", str(server.process.pid), "-r", str(args.rate),
                 "-d", str(round(args.seconds)), "-f", "raw", "-o", str(raw)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            load = Load.of(workload, args.seconds, 0.0)
            measured = run_h2load(server, workload, load, body, "1")
            spy.wait(60)
        finally:
            server.stop()
        print(
            f"{workload.title}: {measured.rate:.0f} {workload.unit} under py-spy, "
            f"{measured.cpu_per_call_us:.0f} us server CPU per call\n"
        )
        print(summarize(raw, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
