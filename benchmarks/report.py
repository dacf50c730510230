"""The Markdown report (benchmarks/RESULTS.md) of a results file (benchmarks/results.json).

    python benchmarks/report.py [benchmarks/results.json] [--out benchmarks/RESULTS.md]

compare.py calls `render` after a run; run alone, this rewrites the report from a results file.
Every figure has next to it the commands that produced it: the server's (`taskset -c 0 ...`) and
the load generator's (`taskset -c 1 h2load ...`), with PORT for the server's port and the request
bodies that `python benchmarks/workloads.py /tmp/greet-bodies` writes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from results import (
    BENCH_TOOL_FRACTION,
    ENGINE_SERVERS,
    Results,
    load,
    median_of,
    ratio,
    targets,
)
from workloads import MESSAGES_PER_STREAM, WORKLOADS

__all__ = ["fmt_rate", "render"]

HERE = Path(__file__).resolve().parent
BUSY_CORE = 0.05  # other processes on the server core above this share of it: flagged
SERVER_ORDER = ("greet-nghttp2", "greet-h2", "grpcio", "grpc-go")


def fmt_rate(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    return f"{value / 1000:.1f}k" if value >= 1000 else f"{value:.0f}"


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"**{value:.2f}**"


def spread(figure: Mapping[str, Any] | None, key: str = "rate") -> str:
    values = [run[key] for run in (figure or {}).get("runs", []) if run.get(key) is not None]
    return f"{fmt_rate(min(values))}-{fmt_rate(max(values))}" if values else "-"


def highest(figure: Mapping[str, Any] | None, key: str) -> float | None:
    values = [run[key] for run in (figure or {}).get("runs", []) if run.get(key) is not None]
    return max(values) if values else None


def code(text: str) -> str:
    return f"`{text}`"


def label(results: Results, name: str) -> str:
    return str(results.get("servers", {}).get(name, {}).get("label", name))


def ordered(names: Sequence[str]) -> list[str]:
    known = [name for name in SERVER_ORDER if name in names]
    return known + [name for name in names if name not in known]


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


# --------------------------------------------------------------------------------------------


def header(results: Results) -> list[str]:
    settings = results.get("settings", {})
    machine = results.get("machine", {})
    versions = results.get("versions", {})
    loads = results.get("load_average", {})
    pinned = settings.get("pinned", True)
    started = ", ".join(map(str, loads.get("start", [])))
    ended = ", ".join(map(str, loads.get("end", [])))
    method = (
        f"Per core: each server pinned with `taskset -c {settings.get('server_cpus')}`, h2load "
        f"(one thread) and the other drivers with `taskset -c {settings.get('load_cpus')}`. The "
        "servers are driven in alternation (order rotating each round) and only the measured one "
        "runs: the others are paused (SIGSTOP)."
        if pinned
        else "Nothing pinned (--no-pin): the per-core tables are not per core."
    )
    return [
        "# Benchmark results: greet (nghttp2 and h2 engines) vs grpcio asyncio vs grpc-go",
        "",
        f"- Date: {results.get('date', '?')}; took {results.get('elapsed_seconds', 0):.0f} s.",
        f"- Command: `{results.get('command', '?')}`",
        f"- Machine: {machine.get('arch')}, {machine.get('cpus')} cores "
        f"({machine.get('cpu_model')}), Linux {machine.get('kernel')}, "
        f"Python {machine.get('python')}; load average at start {started}, at the end {ended}.",
        "- Versions: " + ", ".join(f"{name} {value}" for name, value in versions.items()) + ".",
        f"- {method} Figures are medians over {settings.get('rounds')} round(s) of "
        f"{settings.get('duration', 0):g} s after {settings.get('warmup', 0):g} s of warm-up; "
        "ranges are min-max over the rounds.",
        "- A figure is h2load's own `req/s` (calls completed in the measurement window / the "
        "window), times the messages per call for msg/s; server CPU is sampled at the start and "
        "the end of that window.",
        "- To run one figure by hand: write the request bodies with "
        f"`{settings.get('bodies_command', 'python benchmarks/workloads.py /tmp/greet-bodies')}`, "
        "start the server with its command (a free port for PORT), then run the load command "
        "printed under its table.",
    ]


def targets_section(results: Results) -> list[str]:
    rows = targets(results)
    engines = [engine for engine in ENGINE_SERVERS if any(r["engine"] == engine for r in rows)]
    if not rows:
        return []
    by_target: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_target.setdefault(row["target"], {})[row["engine"]] = row

    def verdict(row: Mapping[str, Any] | None) -> str:
        if row is None or row["met"] is None:
            return "not measured"
        return "met" if row["met"] else "**not met**"

    body = [
        [
            target,
            *[
                cell
                for e in engines
                for cell in (r.get(e, {}).get("value", "-"), verdict(r.get(e)))
            ],
        ]
        for target, r in by_target.items()
    ]
    head = ["target (issues 8 and 14)"]
    for engine in engines:
        head += [f"greet ({engine})", "met?"]
    return ["", "## Targets", "", *table(head, body)]


def per_core_summary(results: Results) -> list[str]:
    per_core = results.get("per_core", {})
    if not per_core:
        return []
    names = ordered(sorted({n for w in per_core.values() for n in w.get("figures", {})}))
    engines = [e for e, name in ENGINE_SERVERS.items() if name in names]
    head = ["workload", *[label(results, n) for n in names]]
    head += [f"{e} / grpcio" for e in engines if "grpcio" in names]
    head += [f"{e} / grpc-go" for e in engines if "grpc-go" in names]
    rows = []
    for workload in per_core.values():
        figures = workload.get("figures", {})
        rates = {n: median_of(figures.get(n), "rate") for n in names}
        row = [f"{workload['title']} ({workload['unit']})", *[fmt_rate(rates[n]) for n in names]]
        for peer in ("grpcio", "grpc-go"):
            if peer in names:
                row += [fmt_ratio(ratio(rates[ENGINE_SERVERS[e]], rates[peer])) for e in engines]
        rows.append(row)
    return ["", "## Per core", "", *table(head, rows)]


def per_core_details(results: Results) -> list[str]:
    lines: list[str] = []
    for key, workload in results.get("per_core", {}).items():
        figures = workload.get("figures", {})
        names = ordered(list(figures))
        grpcio_rate = median_of(figures.get("grpcio"), "rate")
        latency = workload.get("in_flight") == 1
        compressed = workload.get("compressed", False)
        per_message = workload.get("unit") == "msg/s"
        messages = WORKLOADS[key].messages_per_call if key in WORKLOADS else 1
        head = ["server", f"{workload['unit']} (median)", "range", "/ grpcio",
                "CPU per message" if per_message else "CPU per call", "server cores",
                "others on server / load core (max)"]  # fmt: skip
        head += ["p50", "p99"] if latency else []
        head += ["reply DATA per call"] if compressed else []
        head += ["server command"]
        rows = []
        for name in names:
            figure = figures[name]
            rate = median_of(figure, "rate")
            other = highest(figure, "other_load")
            other_load_core = highest(figure, "load_core_other")
            row = [
                label(results, name),
                fmt_rate(rate),
                spread(figure),
                fmt_ratio(ratio(rate, grpcio_rate)) if name != "grpcio" else "1.00",
                f"{(median_of(figure, 'cpu_per_call_us') or 0) / messages:.1f} us"
                if per_message
                else f"{median_of(figure, 'cpu_per_call_us') or 0:.0f} us",
                f"{median_of(figure, 'server_cores') or 0:.2f}",
                "-" if other is None else f"{other:.0%} / {other_load_core or 0:.0%}",
            ]
            if latency:
                row += [f"{median_of(figure, key) or 0:.0f} us" for key in ("p50_us", "p99_us")]
            if compressed:
                sent = figure.get("reply_bytes_per_call")
                row.append("-" if sent is None else f"{sent / 1024:,.0f} KiB")
            rows.append([*row, code(figure.get("server_command", "?"))])
        lines += ["", f"### {workload['title']} ({workload['unit']})", "", *table(head, rows)]
        lines += ["", f"Load: {code(workload.get('load_command', '?'))}"]
        if compressed and key in WORKLOADS:
            plain = sum(
                5 + len(bytes(message))
                for message in replies_of(WORKLOADS[key].body(), MESSAGES_PER_STREAM)
            )
            lines += [
                "",
                f"Uncompressed, one call's replies are {plain / 1024:,.0f} KiB of DATA. greet "
                "compresses a reply when the client accepts gzip and the message is at least "
                "1 KiB (every reply here); grpcio and grpc-go compress every reply, also to "
                "clients that do not accept gzip.",
            ]
    return lines


def replies_of(body: bytes, count: int) -> list[Any]:
    """The replies a server sends to a server-streaming request body (for their size)."""
    from greet_service import HelloResponse, NamesList

    request = NamesList().parse(body[5:])
    return [HelloResponse(message=f"Hello {name}") for name in request.names[:count]]


def pingpong_section(results: Results) -> list[str]:
    section = results.get("pingpong", {})
    figures = section.get("figures", {})
    if not figures:
        return []
    rows = [
        [
            label(results, name),
            fmt_rate(median_of(figures[name], "rps")),
            spread(figures[name], "rps"),
            f"{median_of(figures[name], 'server_cores') or 0:.2f}",
        ]
        for name in ordered(list(figures))
    ]
    return [
        "",
        "## Bidi ping-pong (one stream; the client waits for each reply)",
        "",
        *table(["server", "round trips/s (median)", "range", "server cores"], rows),
        "",
        f"Load: {code(section.get('command', '?'))} (greet's Python client on the load core; "
        "a server using well under one core means the client bounds the figure).",
    ]


def bench_tool_section(results: Results) -> list[str]:
    section = results.get("bench_tool", {})
    figures = section.get("figures", {})
    if not figures:
        return []
    per_core = results.get("per_core", {}).get("unary128", {}).get("figures", {})
    rows = []
    for name in ordered(list(figures)):
        bench = median_of(figures[name], "rps")
        h2load = median_of(per_core.get(name), "rate")
        share = ratio(bench, h2load)
        if share is None:
            verdict = "-"
        elif share >= BENCH_TOOL_FRACTION:
            verdict = "the server"
        else:
            verdict = "**itself** (client-bound)"
        rows.append(
            [
                label(results, name),
                fmt_rate(bench),
                fmt_rate(h2load),
                "-" if share is None else f"{share:.2f}",
                f"{median_of(figures[name], 'server_cores') or 0:.2f}",
                f"{median_of(figures[name], 'p50_ms') or 0:.2f} ms",
                f"{median_of(figures[name], 'p99_ms') or 0:.2f} ms",
                verdict,
            ]
        )
    head = ["server", "bench req/s", "h2load req/s (per-core table)", "bench / h2load",
            "server cores during bench", "bench p50", "bench p99", "bench measures"]  # fmt: skip
    return [
        "",
        "## The bench tool beside h2load (unary, 128 in flight over 4 connections)",
        "",
        *table(head, rows),
        "",
        f"Load: {code(section.get('command', '?'))}; h2load's figure is the unary 128-in-flight "
        f"row of the per-core table. Below {BENCH_TOOL_FRACTION:.0%} of h2load's rate the bench "
        "client is what is measured (the server then also has time to spare on its core).",
    ]


def rss_section(results: Results) -> list[str]:
    section = results.get("rss", {})
    figures = section.get("figures", {})
    if not figures:
        return []
    rows = [
        [
            label(results, name),
            f"{figures[name]['idle_kib'] / 1024:.1f} MiB",
            f"{figures[name]['loaded_kib'] / 1024:.1f} MiB",
        ]
        for name in ordered(list(figures))
    ]
    return [
        "",
        f"## Peak RSS (VmHWM), fresh pinned process, {section['streams']:,} bidi streams held open "
        f"over {section['connections']} connections",
        "",
        *table(["server", "idle", "with open streams"], rows),
    ]


def whole_machine_section(results: Results) -> list[str]:
    section = results.get("whole_machine", {})
    figures = section.get("figures", {})
    if not figures:
        return []
    grpcio_rate = median_of(figures.get("grpcio"), "rate")
    rows = []
    for name, figure in figures.items():
        rate = median_of(figure, "rate")
        rows.append(
            [
                str(figure.get("label", name)),
                fmt_rate(rate),
                spread(figure),
                fmt_ratio(ratio(rate, grpcio_rate)) if name != "grpcio" else "1.00",
                f"{median_of(figure, 'server_cores') or 0:.2f}",
                code(figure.get("server_command", "?")),
            ]
        )
    lines = [
        "",
        f"## Whole machine ({section.get('title', '')})",
        "",
        *table(
            ["server", "req/s (median)", "range", "/ grpcio", "server cores", "server command"],
            rows,
        ),
        "",
        f"Load: {code(section.get('load_command', '?'))} (more connections than per core so "
        "that SO_REUSEPORT spreads them over the workers; h2load shares the two cores).",
    ]
    scaling = []
    for engine, name in ENGINE_SERVERS.items():
        two = median_of(figures.get(f"{name}-w2"), "rate")
        one = median_of(figures.get(f"{name}-w1"), "rate")
        if two and one:
            scaling.append(f"greet ({engine}) --workers 2 / --workers 1: **{two / one:.2f}**")
    return lines + (["", "; ".join(scaling) + "."] if scaling else [])


def notes_section(results: Results) -> list[str]:
    per_core = results.get("per_core", {})
    failed = sum(
        run.get("failed", 0)
        for workload in per_core.values()
        for figure in workload.get("figures", {}).values()
        for run in figure.get("runs", [])
    )
    figures = [f for workload in per_core.values() for f in workload.get("figures", {}).values()]
    shared = [
        f
        for f in figures
        if max(highest(f, "other_load") or 0, highest(f, "load_core_other") or 0) > BUSY_CORE
    ]
    go_bounded = [
        workload["title"]
        for workload in per_core.values()
        if workload.get("in_flight", 1) > 1
        and (median_of(workload.get("figures", {}).get("grpc-go"), "server_cores") or 1) < 0.85
    ]
    notes = [
        f"Failed or errored h2load requests over all runs: {failed}.",
        "h2load counts HTTP status 200 as success; every server first answers one call of each "
        "kind correctly (`benchmarks/drivers.py check`), and all get the same request bodies.",
        "bidi with h2load: the client sends all 1,000 messages of a call at once and reads the "
        "replies as they come, so the figure is the server's per-message throughput on a bidi "
        "stream (receive, greet, reply), not a round-trip rate; the ping-pong table is that.",
        "Streaming workloads run 4 calls in flight on one connection; msg/s counts request "
        "messages (client stream, bidi) or reply messages (server stream).",
        '"Server cores" is the server\'s CPU time per second of the window: below about 0.9 on a '
        "per-core row, something other than the server (usually the load generator) bounds it.",
    ]
    if go_bounded:
        notes.append(
            "grpc-go used well under its core on: " + "; ".join(go_bounded) + ". There h2load "
            "(one thread, one core) is the bound: grpc-go's figure understates it."
        )
    if shared:
        notes.append(
            f"{len(shared)} of the {len(figures)} per-core figures were measured while other "
            f"processes took more than {BUSY_CORE:.0%} of the server's or the load generator's "
            'core (the "others" column): the machine was not quiet; rerun those on a quiet one.'
        )
    elif figures:
        notes.append(
            f"No per-core measurement saw other processes take more than {BUSY_CORE:.0%} of the "
            "server's core or of the load generator's."
        )
    notes.append(
        "Where the time goes and what bounds the rest: benchmarks/PROFILE.md "
        "(`python benchmarks/profile.py --workload unary1`)."
    )
    notes += list(results.get("notes", []))
    return ["", "## Notes", "", *[f"- {note}" for note in notes]]


def render(results: Results) -> str:
    lines = header(results)
    for section in (
        targets_section,
        per_core_summary,
        per_core_details,
        pingpong_section,
        bench_tool_section,
        rss_section,
        whole_machine_section,
        notes_section,
    ):
        lines += section(results)
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="write RESULTS.md from a results file")
    parser.add_argument("results", type=Path, nargs="?", default=HERE / "results.json")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)
    args.out.write_text(render(load(args.results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
