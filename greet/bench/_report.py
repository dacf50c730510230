"""The reports of `bench`: `--format summary|json|csv|html`.

summary  for people: rate, latency figures, a text histogram, status codes, errors, endpoints
json     one object; the first six fields are the documented ones and stay:
             {"ok": int, "failed": int, "rps": float,
              "latency_ms": {"p50", "p90", "p95", "p99", "max", "min", "mean", "stddev"}
                  (each null when no call succeeded),
              "errors": {"STATUS": int}, "by_target": {"host:port": int},
         then "rpc", "concurrency", "connections", "load" (the schedule, null when unlimited),
         "elapsed_s", "calls" (counted), "skipped", "interrupted", "msgs_per_s",
         "client_cpu_us_per_call" (the bench's own CPU per counted call, all its processes),
         "status_codes" ({"OK": int, "STATUS": int}), "error_messages" (the most frequent
         error texts), and "histogram" ([{"from_ms", "to_ms", "count"}], every bucket)
csv      one row per counted call: start_s, latency_ms, status, messages, error
html     a self-contained page (inline CSS and SVG, no scripts, nothing fetched) with the
         figures and a latency histogram chart (greet.bench._html)
"""

from __future__ import annotations

import csv
import io
import json

from greet.bench._html import html_report
from greet.bench._result import BenchResult, LatencySummary, latency_histogram

__all__ = ["REPORT_FORMATS", "json_report", "render_report", "summary_report"]

REPORT_FORMATS = ("summary", "json", "csv", "html")
TOP_ERROR_MESSAGES = 10
TEXT_BAR_WIDTH = 40


def render_report(result: BenchResult, report_format: str, connections: int) -> str:
    """The report in `report_format`, ending in a newline."""
    if report_format == "json":
        return json.dumps(json_report(result, connections)) + "\n"
    if report_format == "csv":
        return csv_report(result)
    if report_format == "html":
        return html_report(result, connections)
    return summary_report(result, connections) + "\n"


def json_report(result: BenchResult, connections: int) -> dict[str, object]:
    latencies = result.ok_latencies()
    options = result.options
    return {
        "ok": result.ok,
        "failed": result.failed,
        "rps": round(result.rps, 1),
        "latency_ms": LatencySummary.of(latencies).as_dict(),
        "errors": dict(sorted(result.errors.items())),
        "by_target": dict(sorted(result.by_target.items())),
        "rpc": options.rpc,
        "concurrency": options.concurrency,
        "connections": connections,
        "load": options.schedule.describe() if options.schedule is not None else None,
        "elapsed_s": round(result.elapsed, 3),
        "calls": result.counted,
        "skipped": result.skipped,
        "interrupted": result.interrupted,
        "msgs_per_s": round(result.messages_per_second, 1),
        "client_cpu_us_per_call": round(result.cpu_per_call * 1e6, 1),
        "status_codes": dict(sorted(result.status_codes.items())),
        "error_messages": dict(result.error_messages.most_common(TOP_ERROR_MESSAGES)),
        "histogram": [
            {"from_ms": round(low, 3), "to_ms": round(high, 3), "count": count}
            for low, high, count in latency_histogram(latencies)
        ],
    }


def csv_report(result: BenchResult) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["start_s", "latency_ms", "status", "messages", "error"])
    for call in result.calls.in_start_order():
        writer.writerow(
            [
                f"{call.start:.6f}",
                f"{call.latency * 1000:.3f}",
                call.status,
                call.messages,
                call.error,
            ]
        )
    return out.getvalue()


def summary_report(result: BenchResult, connections: int) -> str:
    """The human-readable report."""
    options = result.options
    latencies = result.ok_latencies()
    latency = LatencySummary.of(latencies).as_dict()
    heading = "Summary (interrupted: partial results)" if result.interrupted else "Summary"
    setup = [
        f"{options.rpc}",
        f"{result.elapsed:.2f} s",
        f"concurrency {options.concurrency}",
        f"{connections} connection(s) per endpoint",
    ]
    if options.schedule is not None:
        setup.append(f"load {options.schedule.label()}")
    if result.skipped:
        setup.append(f"first {result.skipped} calls skipped")
    rate = f"  rate:    {result.rps:.1f} calls/s"
    if options.rpc != "unary":
        rate += f", {result.messages_per_second:.0f} messages/s"
    lines = [
        f"{heading}: " + ", ".join(setup),
        f"  ok:      {result.ok}",
        f"  failed:  {result.failed}",
        rate,
        "Latency (ms): " + latency_line(latency),
        "Histogram:",
        *histogram_lines(latencies),
        "Status codes:",
        *(f"  {status}: {count}" for status, count in sorted(result.status_codes.items())),
    ]
    if result.failed:
        lines.append("Errors:")
        lines += [
            f"  {count:>6}  {text}"
            for text, count in result.error_messages.most_common(TOP_ERROR_MESSAGES)
        ]
    lines.append("Served by:")
    lines += [f"  {name}: {count}" for name, count in sorted(result.by_target.items())]
    return "\n".join(lines)


def latency_line(latency: dict[str, float | None]) -> str:
    """`p50 0.412  p90 ...`, or `n/a` when no call succeeded (there is no latency to show)."""
    if any(value is None for value in latency.values()):
        return "n/a (no call succeeded)"
    return "  ".join(f"{key} {value:.3f}" for key, value in latency.items())


def histogram_lines(latencies: list[float]) -> list[str]:
    """A text histogram: `  low - high ms | ### count` per bucket."""
    buckets = latency_histogram(latencies)
    widest = max((bucket.calls for bucket in buckets), default=0)
    lines = []
    for low, high, count in buckets:
        bar = "#" * (round(TEXT_BAR_WIDTH * count / widest) if widest else 0)
        lines.append(f"  {low:9.3f} - {high:9.3f} ms | {bar} {count}")
    return lines
