"""`python -m greet.client bench`: load a GreetService server and measure it, in the manner of
ghz (docs/bench.md).

It measures the server, not greet's client library: each call is a plain exchange on a
greet.transport.Channel with its request encoded once before the run, from one or several
processes (`--processes`), whose calls are merged into one report. The command keeps the client's
connection flags (targets, backups, TLS, token, metadata, attempts, connections).

    from greet.bench import BenchOptions, Connect, resolve_targets, run_bench, render_report

    result = await run_bench(BenchOptions(duration=5, concurrency=64),
                             Connect(resolve_targets("127.0.0.1:8080")))
    print(render_report(result, "summary", connections=1))

The implementation modules are private, one concept each:

    _options.py    BenchOptions: call kind, length, concurrency, data, schedule, warm-up
    _data.py       what each call sends (`--names`, `--data`, `--data-file`)
    _schedule.py   load schedules (`--rps`, `--load-schedule step|line`) and their pacer
    _load.py       one process's lean load loop: endpoints, attempts, backoff from a dead target
    _run.py        a whole run: the processes, the progress line, the merged result
    _result.py     BenchResult, the call log, latency figures and histogram
    _report.py     the report formats: summary, json, csv, html (_html.py)
    _flags.py      the flags of `bench` and the run they describe
    _command.py    the command: flags in, report and exit status out
"""

from greet.bench._command import bench_main
from greet.bench._data import CallData, call_data_from_json, default_call_data
from greet.bench._flags import BenchFlags, add_bench_parser, bench_options
from greet.bench._load import CALL_BACKOFF, Connect, EndpointAddress, RawCodec, resolve_targets
from greet.bench._options import DEFAULT_DURATION, RPC_KINDS, BenchOptions
from greet.bench._report import REPORT_FORMATS, json_report, render_report, summary_report
from greet.bench._result import (
    BenchResult,
    CallLog,
    CallRecord,
    HistogramBucket,
    LatencySummary,
    latency_histogram,
)
from greet.bench._run import default_processes, merge_results, run_bench, split_run
from greet.bench._schedule import SCHEDULE_KINDS, LoadSchedule, Pacer, load_schedule_from_flags

__all__ = [
    "CALL_BACKOFF",
    "DEFAULT_DURATION",
    "REPORT_FORMATS",
    "RPC_KINDS",
    "SCHEDULE_KINDS",
    "BenchFlags",
    "BenchOptions",
    "BenchResult",
    "CallData",
    "CallLog",
    "CallRecord",
    "Connect",
    "EndpointAddress",
    "HistogramBucket",
    "LatencySummary",
    "LoadSchedule",
    "Pacer",
    "RawCodec",
    "add_bench_parser",
    "bench_main",
    "bench_options",
    "call_data_from_json",
    "default_call_data",
    "default_processes",
    "json_report",
    "latency_histogram",
    "load_schedule_from_flags",
    "merge_results",
    "render_report",
    "resolve_targets",
    "run_bench",
    "split_run",
    "summary_report",
]
