"""deploy/grafana/greet-dashboard.json read as Grafana would: its PromQL queries, with the
dashboard's variables filled in, and the metric and label names each one uses."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DASHBOARD",
    "Query",
    "concrete",
    "dashboard_queries",
    "label_names",
    "load_dashboard",
    "metric_names",
]

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "greet-dashboard.json"

KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
     "group_right", "inf", "nan"}
)  # fmt: skip
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
MATCHERS = re.compile(r"\{([^}]*)\}")
RANGE = re.compile(r"\[[^\]]*\]")
OFFSET = re.compile(r"\boffset\s+-?\w+")
NAME = re.compile(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*")
LABEL_VALUES = re.compile(r"^label_values\((.*),\s*(\w+)\)$")


@dataclass(frozen=True)
class Query:
    where: str  # the panel title (or variable name) and the target's refId
    expr: str  # PromQL, as written in the dashboard (Grafana variables unresolved)


def load_dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return dashboard


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # panels inside a collapsed row


def dashboard_queries(dashboard: dict[str, Any]) -> list[Query]:
    """Every panel target's expression, and the selector of every `label_values` variable."""
    queries = [
        Query(f"{panel['title']} {target['refId']}", target["expr"])
        for panel in _panels(dashboard["panels"])
        for target in panel.get("targets", [])
    ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        match = LABEL_VALUES.match(text)
        assert match is not None, f"variable {variable['name']}: {text!r}"
        queries.append(Query(f"variable {variable['name']}", match.group(1)))
    return queries


def concrete(expr: str, rate_interval: str = "1m") -> str:
    """`expr` as Grafana sends it with every variable at "All": `$__rate_interval` becomes a
    duration, `$job`-style variables (all inside =~ matchers) match anything."""
    expr = expr.replace("$__rate_interval", rate_interval).replace("$__interval", rate_interval)
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (not functions, keywords or label names)."""
    text = STRING.sub('""', expr)
    text = MATCHERS.sub("", text)
    text = RANGE.sub("", text)
    text = OFFSET.sub("", text)
    text = GROUPING.sub("", text)
    names = set()
    for match in NAME.finditer(text):
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or match.group().lower() in KEYWORDS:
            continue
        names.add(match.group())
    return names


def label_names(expr: str) -> set[str]:
    """The label names an expression matches on or groups by."""
    text = STRING.sub('""', expr)
    names = set()
    for block in MATCHERS.findall(text):
        names.update(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", block))
    for block in GROUPING.findall(text):
        names.update(name.strip() for name in block.split(",") if name.strip())
    return names
