"""The pure parts of `bench`: load schedules, request data, latency figures and the histogram."""

from __future__ import annotations

import itertools

import pytest

from greet.bench import (
    CALL_BACKOFF,
    BenchOptions,
    BenchResult,
    CallData,
    CallLog,
    CallRecord,
    LatencySummary,
    LoadSchedule,
    call_data_from_json,
    default_call_data,
    latency_histogram,
    load_schedule_from_flags,
    merge_results,
    split_run,
)


def schedule(kind: str, **flags: float) -> LoadSchedule:
    values: dict[str, float | None] = {
        "rps": None,
        "start": None,
        "step": None,
        "step_duration": None,
        "end": None,
        "max_duration": None,
    }
    values.update(flags)
    result = load_schedule_from_flags(kind, **values)
    assert result is not None
    return result


def test_no_rate_flags_is_no_limit() -> None:
    assert (
        load_schedule_from_flags(
            "const",
            rps=None,
            start=None,
            step=None,
            step_duration=None,
            end=None,
            max_duration=None,
        )
        is None
    )


def test_const_is_the_rps_throughout() -> None:
    const = schedule("const", rps=20)
    assert [const.rate_at(t) for t in (0, 1.5, 1000)] == [20, 20, 20]


def test_step_rises_every_step_until_the_end_rate() -> None:
    step = schedule("step", start=50, step=50, step_duration=2, end=300)
    assert [step.rate_at(t) for t in (0, 1.99, 2, 5.9, 6, 9, 10, 60)] == [
        50, 50, 100, 150, 200, 250, 300, 300,
    ]  # fmt: skip


def test_step_holds_after_the_max_duration() -> None:
    step = schedule("step", start=200, step=-10, step_duration=5, max_duration=40)
    assert step.rate_at(0) == 200
    assert step.rate_at(39) == 130
    assert step.rate_at(40) == step.rate_at(400) == 120


def test_line_changes_every_moment_and_stops_at_the_end_rate() -> None:
    line = schedule("line", start=200, step=-2, end=100)
    assert line.rate_at(0) == 200
    assert line.rate_at(10.5) == 179
    assert line.rate_at(50) == line.rate_at(500) == 100


@pytest.mark.parametrize(
    ("kind", "flags", "message"),
    [
        ("const", {"rps": 5, "load_start": 1}, "--load-start is for --load-schedule step or line"),
        ("step", {"start": 5, "step": 1}, "step needs --load-step-duration"),
        ("line", {"start": 5, "step": 1, "step_duration": 2}, "--load-step-duration is for"),
        ("step", {"start": 5, "step_duration": 1}, "needs --load-start and --load-step"),
        ("line", {"start": 50, "step": 5, "end": 10}, "--load-end must be above --load-start"),
        ("line", {"start": 50, "step": -5, "end": 60}, "--load-end must be below --load-start"),
        ("line", {"start": 50, "step": -5}, "a falling load needs --load-end"),
        ("line", {"start": 50, "step": -5, "max_duration": 10}, "the rate would reach 0"),
        ("step", {"rps": 3, "start": 5, "step": 1, "step_duration": 1}, "--rps is the constant"),
    ],
)
def test_flags_that_do_not_make_a_schedule(
    kind: str, flags: dict[str, float], message: str
) -> None:
    flags = {("start" if name == "load_start" else name): value for name, value in flags.items()}
    with pytest.raises(ValueError, match=message):
        schedule(kind, **flags)


def test_default_data_is_generated_names() -> None:
    data = default_call_data(3)
    assert data.stream == ("name-0", "name-1", "name-2")
    assert data.names_lists == (data.stream,)


@pytest.mark.parametrize(
    ("rpc", "text", "expected"),
    [
        ("unary", "{}", CallData()),
        ("unary", "[{}, {}]", CallData()),
        ("server-stream", '{"names": ["a", "b"]}', CallData(names_lists=(("a", "b"),))),
        ("server-stream", '[{"names": ["a"]}, {}]', CallData(names_lists=(("a",), ()))),
        ("client-stream", '[{"name": "a"}, {"name": "b"}]', CallData(stream=("a", "b"))),
        ("bidi", '{"name": "solo"}', CallData(stream=("solo",))),
        ("bidi", "[{}]", CallData(stream=("",))),
        ("bidi", "[]", CallData(stream=())),
    ],
)
def test_data_shaped_like_the_messages(rpc: str, text: str, expected: CallData) -> None:
    assert call_data_from_json(rpc, text) == expected


@pytest.mark.parametrize(
    ("rpc", "text", "message"),
    [
        ("unary", "nope", "not JSON"),
        ("unary", '{"names": []}', "NoParam has no field 'names'"),
        ("server-stream", "[]", "an empty list"),
        ("server-stream", '{"names": "ab"}', "NamesList.names is a list of strings"),
        ("server-stream", '{"name": "a"}', r"NamesList has no field 'name' \(it has names\)"),
        ("client-stream", '[{"name": 3}]', "HelloRequest.name is a string"),
        ("bidi", '["a"]', "a HelloRequest is a JSON object"),
    ],
)
def test_data_of_the_wrong_shape(rpc: str, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call_data_from_json(rpc, text)


def test_latency_figures() -> None:
    latencies = [n / 1000 for n in range(1, 101)]  # 1 ms .. 100 ms
    figures = LatencySummary.of(latencies)
    assert (figures.min, figures.max, figures.count) == (1, 100, 100)
    assert (figures.p50, figures.p90, figures.p95, figures.p99) == (50, 90, 95, 99)
    assert figures.mean == pytest.approx(50.5)
    assert figures.stddev == pytest.approx(28.866, abs=0.001)
    assert LatencySummary.of([]).as_dict() == dict.fromkeys(
        ["p50", "p90", "p95", "p99", "max", "min", "mean", "stddev"]
    )  # not available: no call succeeded


def test_histogram_puts_every_call_in_one_bucket() -> None:
    latencies = sorted([0.0005, 0.001, 0.001, 0.002, 0.004, 0.008, 0.1, 0.25])
    buckets = latency_histogram(latencies, buckets=8)
    assert len(buckets) == 8
    assert sum(bucket.calls for bucket in buckets) == len(latencies)
    assert buckets[0].low_ms == 0.5
    assert buckets[-1].high_ms == 250
    assert buckets[-1].calls >= 1  # the slowest call is in the last bucket
    for lower, upper in itertools.pairwise(buckets):
        assert lower.high_ms == upper.low_ms


def test_histogram_of_equal_latencies_is_one_bucket() -> None:
    assert [tuple(bucket) for bucket in latency_histogram([0.002] * 5)] == [(2.0, 2.0, 5)]
    assert latency_histogram([]) == []


def test_call_log_keeps_every_call() -> None:
    log = CallLog()
    calls = [
        CallRecord(0.5, 0.003, "OK", 2),
        CallRecord(0.1, 0.2, "UNAVAILABLE", 0, "UNAVAILABLE: cannot connect"),
        CallRecord(0.3, 0.001, "OK", 2),
        CallRecord(0.2, 0.05, "UNAVAILABLE", 0, "UNAVAILABLE: cannot connect"),
    ]
    for call in calls:
        log.append(call)
    assert list(log) == calls
    assert [call.start for call in log.in_start_order()] == [0.1, 0.2, 0.3, 0.5]
    assert log.ok_latencies() == [0.001, 0.003]
    assert CallLog().ok_latencies() == []


def test_results_of_several_processes_merge_into_every_call() -> None:
    options = BenchOptions(requests=10, concurrency=4)
    first, second = BenchResult(options), BenchResult(options)
    for index, result in enumerate((first, second, first, second, first)):
        status = "OK" if index != 3 else "UNAVAILABLE"
        result.calls.append(CallRecord(index / 10, (index + 1) / 1000, status, 1))
        result.ok += status == "OK"
        result.failed += status != "OK"
    first.elapsed, second.elapsed = 1.0, 1.5
    first.by_target, second.by_target = {"a:1": 3}, {"a:1": 1, "b:2": 0}
    merged = merge_results(options, [first, second])
    assert (merged.ok, merged.failed, merged.elapsed) == (4, 1, 1.5)
    assert merged.by_target == {"a:1": 4, "b:2": 0}
    assert merged.ok_latencies() == [0.001, 0.002, 0.003, 0.005]  # the calls, not averages
    assert merged.errors == {"UNAVAILABLE": 1}


def test_a_run_splits_into_shares_that_add_up() -> None:
    options = BenchOptions(
        requests=11, concurrency=5, skip_first=3, schedule=LoadSchedule("const", 90.0)
    )
    parts = split_run(options, 3)
    assert [part.concurrency for part in parts] == [2, 2, 1]
    assert [part.requests for part in parts] == [4, 4, 3]
    assert [part.skip_first for part in parts] == [1, 1, 1]
    assert {part.schedule for part in parts} == {LoadSchedule("const", 30.0)}
    assert len(split_run(BenchOptions(requests=2, concurrency=8, skip_first=1), 4)) == 1


def test_backoff_doubles_up_to_its_most() -> None:
    waits = [0.0]
    for _ in range(8):
        waits.append(CALL_BACKOFF.after(waits[-1]))
    assert waits[1:] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]
