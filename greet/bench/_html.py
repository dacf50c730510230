"""The `--format html` report of `bench`: one self-contained page.

Inline CSS and an inline SVG latency histogram (one bar per bucket, log-spaced buckets, a
tooltip with the range and count on each bar); no scripts and no links, so the file opens the
same offline, from an e-mail or from a CI artifact.
"""

from __future__ import annotations

from html import escape

from greet.bench._result import (
    BenchResult,
    HistogramBucket,
    LatencySummary,
    latency_histogram,
)

__all__ = ["histogram_svg", "html_report"]

CHART_WIDTH = 760
CHART_HEIGHT = 320
MARGIN_LEFT = 64
MARGIN_RIGHT = 16
MARGIN_TOP = 16
MARGIN_BOTTOM = 56
Y_TICKS = 4

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.4em; }
h2 { font-size: 1.1em; margin-top: 1.6em; }
table { border-collapse: collapse; }
td, th { padding: 0.2em 0.8em; border-bottom: 1px solid #ddd; text-align: left; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
.interrupted { color: #a40; font-weight: bold; }
svg text { font-size: 11px; fill: #444; }
svg .bar { fill: #3b78c2; }
svg .axis { stroke: #888; }
svg .grid { stroke: #eee; }
"""


def table(rows: list[tuple[str, object]], headers: tuple[str, str] | None = None) -> str:
    head = ""
    if headers is not None:
        head = f"<tr><th>{escape(headers[0])}</th><th>{escape(headers[1])}</th></tr>"
    body = "".join(
        f'<tr><td>{escape(str(name))}</td><td class="number">{escape(str(value))}</td></tr>'
        for name, value in rows
    )
    return f"<table>{head}{body}</table>"


def histogram_svg(buckets: list[HistogramBucket]) -> str:
    """A bar chart of the buckets: x the latency buckets (ms), y the number of calls."""
    plot_width = CHART_WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_height = CHART_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    bottom = MARGIN_TOP + plot_height
    tallest = max((bucket.calls for bucket in buckets), default=0)
    parts = [
        f'<svg role="img" aria-label="latency histogram" width="{CHART_WIDTH}" '
        f'height="{CHART_HEIGHT}" viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}">'
    ]
    for tick in range(Y_TICKS + 1):
        value = tallest * tick / Y_TICKS
        y = bottom - plot_height * tick / Y_TICKS
        parts.append(
            f'<line class="grid" x1="{MARGIN_LEFT}" y1="{y:.1f}" '
            f'x2="{MARGIN_LEFT + plot_width}" y2="{y:.1f}"/>'
            f'<text x="{MARGIN_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{value:.0f}</text>'
        )
    slot = plot_width / max(1, len(buckets))
    label_every = max(1, len(buckets) // 5)
    for index, (low, high, count) in enumerate(buckets):
        height = plot_height * count / tallest if tallest else 0.0
        x = MARGIN_LEFT + index * slot
        parts.append(
            f'<rect class="bar" x="{x + 1:.1f}" y="{bottom - height:.1f}" '
            f'width="{max(slot - 2, 1):.1f}" height="{height:.1f}" data-count="{count}">'
            f"<title>{low:.3f} - {high:.3f} ms: {count} calls</title></rect>"
        )
        if index % label_every == 0:
            parts.append(
                f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{low:.3g}</text>'
            )
    if buckets:
        parts.append(
            f'<text x="{MARGIN_LEFT + plot_width:.1f}" y="{bottom + 16}" '
            f'text-anchor="middle">{buckets[-1].high_ms:.3g}</text>'
        )
    parts += [
        f'<line class="axis" x1="{MARGIN_LEFT}" y1="{bottom}" '
        f'x2="{MARGIN_LEFT + plot_width}" y2="{bottom}"/>',
        f'<line class="axis" x1="{MARGIN_LEFT}" y1="{MARGIN_TOP}" '
        f'x2="{MARGIN_LEFT}" y2="{bottom}"/>',
        f'<text x="{MARGIN_LEFT + plot_width / 2:.1f}" y="{CHART_HEIGHT - 12}" '
        'text-anchor="middle">latency (ms, log scale)</text>',
        f'<text x="14" y="{MARGIN_TOP + plot_height / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {MARGIN_TOP + plot_height / 2:.1f})">calls</text>',
        "</svg>",
    ]
    return "".join(parts)


def html_report(result: BenchResult, connections: int) -> str:
    options = result.options
    latencies = result.ok_latencies()
    latency = LatencySummary.of(latencies).as_dict()
    load = options.schedule.label() if options.schedule is not None else "unlimited"
    summary: list[tuple[str, object]] = [
        ("call kind", options.rpc),
        ("elapsed", f"{result.elapsed:.3f} s"),
        ("concurrency", options.concurrency),
        ("connections per endpoint", connections),
        ("load", load),
        ("calls counted", result.counted),
        ("warm-up calls skipped", result.skipped),
        ("ok", result.ok),
        ("failed", result.failed),
        ("successful calls/s", f"{result.rps:.1f}"),
        ("messages/s", f"{result.messages_per_second:.1f}"),
    ]
    title = f"greet bench: {options.rpc}"
    sections = [
        f"<h1>{escape(title)}</h1>",
        '<p class="interrupted">Interrupted: partial results.</p>' if result.interrupted else "",
        "<h2>Summary</h2>",
        table(summary),
        "<h2>Latency of successful calls (ms)</h2>",
        table(
            [(name, "n/a" if value is None else f"{value:.3f}") for name, value in latency.items()]
        ),
        "<h2>Latency histogram</h2>",
        histogram_svg(latency_histogram(latencies)) if latencies else "<p>No successful calls.</p>",
        "<h2>Status codes</h2>",
        table(sorted(result.status_codes.items()), ("status", "calls")),
    ]
    if result.failed:
        sections += [
            "<h2>Errors</h2>",
            table(
                [(text, count) for text, count in result.error_messages.most_common(10)],
                ("error", "calls"),
            ),
        ]
    sections += [
        "<h2>Served by</h2>",
        table(sorted(result.by_target.items()), ("endpoint", "successful calls")),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        + "\n".join(section for section in sections if section)
        + "</body></html>\n"
    )
