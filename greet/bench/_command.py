"""`python -m greet.client bench`: the command, from its flags to its report and exit status.

greet.client.cli parses the command line (the connection flags are the client's, `ClientSetup`)
and hands `bench` here. The report goes to stdout or to `-o FILE` (then stderr says where it
was written); the exit status is 0, 1 when a call failed, 130 after Ctrl-C (the report then
covers the calls made so far).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TextIO

from greet.bench._flags import bench_options
from greet.bench._load import Connect, resolve_targets
from greet.bench._report import render_report
from greet.bench._run import default_processes, run_bench, run_loop
from greet.client.arguments import UsageError
from greet.client.cli_setup import ClientSetup, ConnectionFlagError, interrupt_sets

__all__ = ["INTERRUPTED", "bench_main", "connect_of"]

INTERRUPTED = 130  # the shell's status for a command ended by SIGINT


def connect_of(setup: ClientSetup) -> Connect:
    """Where and how the bench calls, from the connection flags; ConnectionFlagError naming
    the target that is wrong."""
    flags = setup.flags
    try:
        targets = resolve_targets(flags.target)
        backup = resolve_targets(flags.backup)
    except ValueError as error:
        raise ConnectionFlagError(f"--target: {error}") from None
    if not targets:
        raise ConnectionFlagError("--target: no target given")
    metadata = list(setup.metadata.items())
    if setup.token is not None:
        metadata.append(("authorization", f"Bearer {setup.token}"))
    return Connect(
        targets=targets,
        backup=backup,
        config=flags.transport,
        connections=flags.connections,
        metadata=tuple(metadata),
        timeout=flags.timeout,
        max_attempts=flags.max_attempts,
        tls_ca=flags.tls_ca,
        tls_cert=flags.tls_cert,
        tls_key=flags.tls_key,
    )


def open_output(path: Path | None) -> TextIO | None:
    """The `-o FILE`, opened now, so that a path that cannot be written to fails before the run
    rather than after it."""
    if path is None:
        return None
    try:
        return path.open("w", encoding="utf-8", newline="")
    except OSError as error:
        raise UsageError(f"-o {path}: cannot write to it: {error.strerror or error}") from None


def bench_main(setup: ClientSetup, args: argparse.Namespace, out: TextIO) -> int:
    """Run `bench` as the flags in `args` say; its exit status."""
    options, flags = bench_options(args)
    connect = connect_of(setup)
    processes = flags.processes or default_processes(options.concurrency)
    report_file = open_output(flags.output)
    progress = None if flags.no_progress else sys.stderr

    async def run() -> int:
        stop = asyncio.Event()
        with interrupt_sets(stop):
            result = await run_bench(
                options, connect, processes=processes, progress=progress, stop=stop
            )
        report = render_report(result, args.format, connect.connections)
        (report_file or out).write(report)
        (report_file or out).flush()
        if report_file is not None:
            print(f"wrote the {args.format} report to {flags.output}", file=sys.stderr)
        if result.interrupted:
            print("interrupted: the report covers the calls made so far", file=sys.stderr)
            return INTERRUPTED
        if result.failed:
            statuses = ", ".join(f"{status} {n}" for status, n in sorted(result.errors.items()))
            print(
                f"error: {result.failed} of {result.counted} calls failed ({statuses})",
                file=sys.stderr,
            )
            return 1
        return 0

    try:
        return run_loop(run())
    finally:
        if report_file is not None:
            report_file.close()
