"""The README's benchmark chart: an SVG drawn from benchmarks/results.json, no dependencies.

    python benchmarks/chart.py [benchmarks/results.json] [--out benchmarks/chart.svg]

One group of bars per workload (the per-core workloads, then `--workers 2` on the whole machine):
greet on nghttp2, greet on h2, grpcio's asyncio server and grpc-go, each as a multiple of
grpcio's figure on a logarithmic axis, labelled with the figure itself. Lines mark 1x (grpcio)
and issue 8's 2x target. A server or workload missing from the results is left out.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import fmt_rate
from results import TARGET_RATIO, Results, load, median_of

__all__ = ["Bar", "Group", "groups", "render_svg"]

HERE = Path(__file__).resolve().parent
SERIES = (
    ("greet-nghttp2", "greet (nghttp2)", "#1f5fa8"),
    ("greet-h2", "greet (h2)", "#7fb2e5"),
    ("grpcio", "grpcio (asyncio)", "#e8832a"),
    ("grpc-go", "grpc-go", "#3a9a4a"),
)
SHORT_TITLES = {
    "unary128": "unary, 128 in flight",
    "unary1": "unary, 1 in flight",
    "server_stream": "server stream, 1,000 names",
    "client_stream": "client stream, 1,000 messages",
    "bidi": "bidi, 1,000 messages",
    "server_stream_gzip": "server stream, gzip, 1 KiB names",
}
WIDTH = 960
LABEL_WIDTH = 270  # workload names
PLOT_WIDTH = 480
BAR_HEIGHT = 13
BAR_GAP = 3
GROUP_GAP = 18
TOP = 104
TICKS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


@dataclass(frozen=True)
class Bar:
    label: str
    color: str
    rate: float
    ratio: float  # to grpcio


@dataclass(frozen=True)
class Group:
    title: str
    unit: str
    bars: tuple[Bar, ...]


def group_of(title: str, unit: str, rates: dict[str, float | None]) -> Group | None:
    base = rates.get("grpcio")
    if not base:
        return None
    bars = tuple(
        Bar(label, color, rate, rate / base)
        for name, label, color in SERIES
        if (rate := rates.get(name)) is not None and rate > 0
    )
    return Group(title, unit, bars)


def groups(results: Results) -> list[Group]:
    found = []
    for key, workload in results.get("per_core", {}).items():
        figures = workload.get("figures", {})
        rates = {name: median_of(figures.get(name), "rate") for name, _, _ in SERIES}
        group = group_of(SHORT_TITLES.get(key, workload["title"]), workload["unit"], rates)
        if group is not None:
            found.append(group)
    whole = results.get("whole_machine", {}).get("figures", {})
    rates = {
        "greet-nghttp2": median_of(whole.get("greet-nghttp2-w2"), "rate"),
        "greet-h2": median_of(whole.get("greet-h2-w2"), "rate"),
        "grpcio": median_of(whole.get("grpcio"), "rate"),
        "grpc-go": median_of(whole.get("grpc-go"), "rate"),
    }
    group = group_of("unary 128, whole machine, --workers 2", "req/s", rates)
    if group is not None:
        found.append(group)
    return found


def axis_range(ratios: Sequence[float]) -> tuple[float, float]:
    low = min([1.0, *ratios]) / 1.15
    high = max([TARGET_RATIO, *ratios]) * 1.15
    return (
        max([t for t in TICKS if t <= low] or [TICKS[0]]),
        min([t for t in TICKS if t >= high] or [TICKS[-1]]),
    )


def text(x: float, y: float, content: str, **attributes: str) -> str:
    extra = "".join(f' {key.replace("_", "-")}="{value}"' for key, value in attributes.items())
    return f'<text x="{x:.1f}" y="{y:.1f}"{extra}>{escape(content)}</text>'


def render_svg(results: Results) -> str:
    found = groups(results)
    ratios = [bar.ratio for group in found for bar in group.bars]
    low, high = axis_range(ratios or [1.0])
    span = math.log10(high) - math.log10(low)

    def x_of(ratio: float) -> float:
        return LABEL_WIDTH + PLOT_WIDTH * (math.log10(ratio) - math.log10(low)) / span

    heights = [len(g.bars) * (BAR_HEIGHT + BAR_GAP) + GROUP_GAP for g in found]
    plot_height = max(40, sum(heights))
    height = TOP + plot_height + 56
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="Helvetica, Arial, sans-serif" '
        'font-size="12">',
        f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
        text(
            16,
            26,
            "greet vs grpcio vs grpc-go: throughput as a multiple of grpcio's",
            font_size="17",
            font_weight="bold",
        ),
        text(
            16,
            46,
            "server pinned to one core, h2load on the other (last group: whole machine);"
            " logarithmic axis; each bar is labelled with its figure",
            fill="#444444",
        ),
    ]
    legend_x = 16.0
    for _, label, color in SERIES:
        if any(bar.label == label for group in found for bar in group.bars):
            parts.append(f'<rect x="{legend_x:.1f}" y="60" width="12" height="12" fill="{color}"/>')
            parts.append(text(legend_x + 17, 70.5, label))
            legend_x += 30 + 7.2 * len(label)
    bottom = TOP + plot_height
    for tick in TICKS:
        if low <= tick <= high:
            x = x_of(tick)
            strong = tick in (1, TARGET_RATIO)
            parts.append(
                f'<line x1="{x:.1f}" y1="{TOP - 6}" x2="{x:.1f}" y2="{bottom}" '
                f'stroke="{"#888888" if strong else "#e3e3e3"}" stroke-width="1"'
                + (' stroke-dasharray="4 3"' if tick == TARGET_RATIO else "")
                + "/>"
            )
            parts.append(text(x, bottom + 16, f"{tick:g}x", text_anchor="middle", fill="#444444"))
    parts.append(text(x_of(1), TOP - 10, "grpcio", text_anchor="middle", fill="#666666"))
    parts.append(
        text(
            x_of(TARGET_RATIO),
            TOP - 10,
            f"target {TARGET_RATIO:g}x",
            text_anchor="start",
            fill="#666666",
        )
    )
    y = float(TOP)
    for group in found:
        middle = y + (len(group.bars) * (BAR_HEIGHT + BAR_GAP)) / 2
        parts.append(text(LABEL_WIDTH - 10, middle + 4, group.title, text_anchor="end"))
        for bar in group.bars:
            left, right = x_of(low), x_of(bar.ratio)
            parts.append(
                f'<rect x="{left:.1f}" y="{y:.1f}" width="{max(1.0, right - left):.1f}" '
                f'height="{BAR_HEIGHT}" fill="{bar.color}"><title>{escape(bar.label)}: '
                f"{escape(fmt_rate(bar.rate))} {escape(group.unit)}</title></rect>"
            )
            parts.append(
                text(
                    right + 5,
                    y + BAR_HEIGHT - 2.5,
                    f"{fmt_rate(bar.rate)} {group.unit} ({bar.ratio:.2f}x)",
                    font_size="11",
                )
            )
            y += BAR_HEIGHT + BAR_GAP
        y += GROUP_GAP
    footer = (
        f"measured {results.get('date', '?')} by benchmarks/compare.py; every figure with the "
        "commands that produced it: benchmarks/RESULTS.md"
    )
    parts.append(text(16, height - 12, footer, fill="#666666", font_size="11"))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="draw the benchmark chart from a results file")
    parser.add_argument("results", type=Path, nargs="?", default=HERE / "results.json")
    parser.add_argument("--out", type=Path, default=HERE / "chart.svg")
    args = parser.parse_args(argv)
    try:
        results = load(args.results)
    except (OSError, ValueError) as error:
        parser.exit(2, f"chart.py: cannot read {args.results}: {error}\n")
    if not groups(results):
        parser.exit(2, f"chart.py: {args.results} has no figure with a grpcio figure beside it\n")
    args.out.write_text(render_svg(results))
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
