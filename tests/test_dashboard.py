"""deploy/grafana/greet-dashboard.json: it parses, its PromQL is valid (promtool), and every
query uses only metric and label names that a real server process exports."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
from grafana_dashboard import (
    Query,
    concrete,
    dashboard_queries,
    label_names,
    load_dashboard,
    metric_names,
)
from metrics_scrape import metrics_server, scrape

TARGET_LABELS = {"job", "instance"}
"""Labels Prometheus adds to every scraped series."""


@pytest.fixture(scope="module")
def queries() -> list[Query]:
    return dashboard_queries(load_dashboard())


def test_the_name_extraction_sees_through_promql() -> None:
    expr = (
        'histogram_quantile(0.9, sum by (le, grpc_method) (rate(a_bucket{x=~"$job", y!="b"}[5m])))'
        " - on (z) group_left sum without (w) (b_total) / bool c offset 5m * 1e3"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c"}
    assert label_names(expr) == {"le", "grpc_method", "x", "y", "z", "w"}
    assert concrete('rate(a{job=~"$job", m=~"${method}"}[$__rate_interval])') == (
        'rate(a{job=~".*", m=~".*"}[1m])'
    )


def test_the_dashboard_parses_and_has_the_panels_operators_look_for(
    queries: list[Query],
) -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] == "greet-grpc-server"
    assert dashboard["title"]
    panels = {panel["title"]: panel for panel in dashboard["panels"] if panel["type"] != "row"}
    assert {
        "Request rate",
        "Error rate by code",
        "Latency percentiles",
        "In flight",
        "Messages per second",
    } <= panels.keys()
    for panel in panels.values():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    # What each of those panels is built on:
    exprs = {
        title: " ".join(t["expr"] for t in panel["targets"]) for title, panel in panels.items()
    }
    assert "by (grpc_code)" in exprs["Error rate by code"]
    assert "histogram_quantile" in exprs["Latency percentiles"]
    assert metric_names(exprs["In flight"]) == {
        "grpc_server_started_total",
        "grpc_server_handled_total",
    }
    assert metric_names(exprs["Messages per second"]) == {
        "grpc_server_msg_received_total",
        "grpc_server_msg_sent_total",
    }


async def test_every_query_is_valid_promql(queries: list[Query], tmp_path: Path) -> None:
    """promtool (Debian's prometheus package) parses each as a recording rule."""
    if shutil.which("promtool") is None:
        pytest.fail("promtool is missing: install the Debian package prometheus")
    rules = tmp_path / "dashboard-rules.yml"
    records = [
        {"record": f"dashboard:query_{index}", "expr": concrete(query.expr)}
        for index, query in enumerate(queries)
    ]
    rules.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": records}]}))  # YAML
    process = await asyncio.create_subprocess_exec(
        "promtool",
        "check",
        "rules",
        str(rules),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, out.decode()


async def test_every_query_uses_only_names_the_server_exports(
    queries: list[Query], tmp_path: Path
) -> None:
    async with metrics_server("--cache-size", "10", cwd=str(tmp_path)) as (_, url):
        samples = await scrape(url)
    exported = {name for name, _ in samples}
    exported_labels = {label for _, labels in samples for label, _ in labels} | TARGET_LABELS
    used = set()
    for query in queries:
        names = metric_names(query.expr)
        assert names, f"{query.where}: no metric in {query.expr!r}"
        assert names <= exported, f"{query.where}: {sorted(names - exported)} not exported"
        labels = label_names(query.expr)
        assert labels <= exported_labels, (
            f"{query.where}: labels {sorted(labels - exported_labels)}"
        )
        used |= names
    assert {
        "grpc_server_started_total",
        "grpc_server_handled_total",
        "grpc_server_handling_seconds_bucket",
        "grpc_server_msg_received_total",
        "grpc_server_msg_sent_total",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    } <= used
