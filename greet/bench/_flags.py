"""The flags of `bench` (`BenchFlags`, declared with greet._settings as every flag of greet's
commands is), and the run they describe (`bench_options`). The connection flags are the client's
(greet.client.cli_flags), given before or after `bench`."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from greet._setting_kinds import FilePath, Number, Switch, Text
from greet._settings import add_arguments, build, check_values, setting, settings_of
from greet.bench._data import CallData, call_data_from_json, default_call_data
from greet.bench._options import DEFAULT_DURATION, RPC_KINDS, BenchOptions
from greet.bench._report import REPORT_FORMATS
from greet.bench._schedule import SCHEDULE_KINDS, load_schedule_from_flags
from greet.client.arguments import Count, Duration, NonZero, Pick, ReadableFile, UsageError
from greet.client.cli_flags import add_connection_flags

__all__ = [
    "DEFAULT_NAMES_PER_CALL",
    "BenchFlags",
    "add_bench_parser",
    "bench_options",
]

DEFAULT_NAMES_PER_CALL = 10

SECONDS = Duration()
RATE = Number(0.0, exclusive=True, metavar="R")
LOAD = "load (calls started per second; default: no limit)"
REPORT = "report"


@dataclass(frozen=True)
class BenchFlags:
    """What the flags of `bench` say (`bench_options` makes the run)."""

    rpc: str = setting(BenchOptions.rpc, Pick(RPC_KINDS), "call kind")
    duration: float | None = setting(
        None,
        SECONDS,
        "how long to run: 30, 500ms, 10s, 2m",
        aliases=("-z",),
        exclusive="length",
        unset_text=f"{DEFAULT_DURATION:g}s",
    )
    requests: int | None = setting(
        None,
        Count(1),
        "number of calls to make",
        aliases=("-n",),
        exclusive="length",
        unset_text="",
    )
    concurrency: int = setting(
        BenchOptions.concurrency, Count(1, metavar="C"), "calls in flight", aliases=("-c",)
    )
    processes: int | None = setting(
        None,
        Count(1, metavar="N"),
        "processes making the calls, each with its share of --concurrency (and of --requests, "
        "--skip-first and the rate)",
        aliases=("-p",),
        unset_text="one per CPU it may run on, at most 4",
    )
    names_per_call: int | None = setting(
        None,
        Count(0),
        "generated names per server-stream call / messages per client-stream or bidi call",
        flag="--names",
        aliases=("--messages",),
        unset_text=str(DEFAULT_NAMES_PER_CALL),
    )
    data: str | None = setting(
        None,
        Text("JSON"),
        'what each call sends, as JSON: {} (unary), {"names": [...]} (server-stream; a list of '
        'them round-robin), [{"name": ...}, ...] (client-stream, bidi)',
        aliases=("-d",),
        exclusive="data",
        unset_text="",
    )
    data_file: Path | None = setting(
        None, ReadableFile(), "--data read from FILE", aliases=("-D",), exclusive="data"
    )
    rps: float | None = setting(
        None, RATE, "at most R calls per second", aliases=("-r",), section=LOAD, unset_text=""
    )
    load_schedule: str = setting(
        "const",
        Pick(SCHEDULE_KINDS),
        "const (--rps), step or line (--load-start, --load-step, ...)",
        section=LOAD,
    )
    load_start: float | None = setting(
        None, RATE, "step/line: first rate", section=LOAD, unset_text=""
    )
    load_step: float | None = setting(
        None,
        NonZero(),
        "step: rate change per step; line: per second (may be negative)",
        section=LOAD,
        unset_text="",
    )
    load_step_duration: float | None = setting(
        None, SECONDS, "step: its length", section=LOAD, unset_text=""
    )
    load_end: float | None = setting(
        None, RATE, "step/line: rate to stop at", section=LOAD, unset_text=""
    )
    load_max_duration: float | None = setting(
        None,
        SECONDS,
        "step/line: stop changing the rate after this long",
        section=LOAD,
        unset_text="",
    )
    skip_first: int = setting(
        BenchOptions.skip_first,
        Count(0),
        "run N warm-up calls first and leave them out of the report (they count towards "
        "--requests)",
    )
    format: str | None = setting(
        None,
        Pick(REPORT_FORMATS),
        "summary (default), json (one object), csv (one row per call) or html (a page with a "
        "histogram chart)",
        aliases=("-O",),
        section=REPORT,
        unset_text="",
    )
    json: bool = setting(
        False, Switch(negatable=False), "the same as --format json", section=REPORT
    )
    output: Path | None = setting(
        None,
        FilePath(),
        "write the report to FILE",
        aliases=("-o",),
        section=REPORT,
        unset_text="stdout",
    )
    no_progress: bool = setting(
        False, Switch(negatable=False), "no progress output on stderr", section=REPORT
    )
    progress_interval: float = setting(
        BenchOptions.progress_interval,
        SECONDS,
        "seconds between progress updates",
        section=REPORT,
    )

    def __post_init__(self) -> None:
        check_values(self)


def add_bench_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the `bench` command and its flags to `commands`; its parser, for the caller to bind."""
    bench: argparse.ArgumentParser = commands.add_parser(
        "bench",
        help="load the service and report rate and latency",
        description="Call one RPC kind from --concurrency workers, back to back or at a --rps "
        "rate or load schedule, for --duration seconds or --requests calls; then report in "
        "--format summary (default), json, csv or html, to stdout or -o FILE. Exits 1 when a "
        "call failed; Ctrl-C reports the calls made so far and exits 130.",
    )
    add_arguments(bench, settings_of(BenchFlags), defaults=True)
    add_connection_flags(bench, after_command=True)
    return bench


def bench_options(args: argparse.Namespace) -> tuple[BenchOptions, BenchFlags]:
    """The run the bench flags describe, and the flags; UsageError naming the flag when one is
    wrong. Sets `args.format` to the report format asked for."""
    flags = build(BenchFlags, vars(args))
    if flags.json and flags.format not in (None, "json"):
        raise UsageError(f"--json is --format json; it cannot go with --format {flags.format}")
    args.format = "json" if flags.json else flags.format or "summary"
    try:
        schedule = load_schedule_from_flags(
            flags.load_schedule,
            rps=flags.rps,
            start=flags.load_start,
            step=flags.load_step,
            step_duration=flags.load_step_duration,
            end=flags.load_end,
            max_duration=flags.load_max_duration,
        )
        length = flags.duration is not None or flags.requests is not None
        options = BenchOptions(
            rpc=flags.rpc,
            duration=flags.duration if length else DEFAULT_DURATION,
            requests=flags.requests,
            concurrency=flags.concurrency,
            data=bench_data(flags),
            schedule=schedule,
            skip_first=flags.skip_first,
            progress_interval=flags.progress_interval,
        )
    except ValueError as error:
        raise UsageError(str(error)) from None
    return options, flags


def bench_data(flags: BenchFlags) -> CallData:
    if flags.data is None and flags.data_file is None:
        count = DEFAULT_NAMES_PER_CALL if flags.names_per_call is None else flags.names_per_call
        return default_call_data(count)
    if flags.names_per_call is not None:
        raise UsageError("--names generates names; with --data or --data-file the JSON has them")
    if flags.data is not None:
        flag, text = "--data", flags.data
    else:
        assert flags.data_file is not None
        flag = f"--data-file {flags.data_file}"
        try:
            text = flags.data_file.read_text()
        except (OSError, UnicodeDecodeError) as error:
            raise UsageError(f"{flag}: cannot read it: {error}") from None
    try:
        return call_data_from_json(flags.rpc, text)
    except ValueError as error:
        raise UsageError(f"{flag}: {error}") from None
