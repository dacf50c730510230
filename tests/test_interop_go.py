"""Interop with grpc-go: a real grpc-go client against `python -m greet.server`, and back.

The Go client (tests/interop/go/) does what the original Go demo's client did and prints each reply
and each status as one JSON line; it can also send metadata (bearer tokens, binary `-bin` keys),
print the response headers and trailers grpc-go read, and cancel streaming calls midway. It and the
grpc-go reference server (benchmarks/go_server/) are built once per session by
tests/interop/build_go.sh, offline, from Debian's Go library packages.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from go_interop import GoBinaries
from go_interop import go_server as start_go_server
from prometheus_client.parser import text_string_to_metric_families
from server_process import ServerProcess

from greet.client import GreetClient

NAMES = ["Akhil", "Alice", "Bob"]
UNUSUAL_NAMES = ["Zoë", "Ærøskøbing", "世界", "Привет", "👋🏽", "a b\tc", "", 'q"uote\\']
GRPC_CANCELLED = 1
GRPC_DEADLINE_EXCEEDED = 4
GRPC_UNIMPLEMENTED = 12
GRPC_UNAUTHENTICATED = 16
CALL_KINDS = ("unary", "server-stream", "client-stream", "bidi")
GOOD_TOKEN = "go-interop-token-7f3a"
METRICS_LINE = re.compile(r"metrics on (http://\S+)")
GRPC_CT = {"content-type": ["application/grpc"]}


@dataclass(frozen=True)
class CallMetadata:
    """The response headers and trailers grpc-go read for one call (-show-metadata)."""

    call: str
    headers: dict[str, list[str]]
    trailers: dict[str, list[str]]


@dataclass(frozen=True)
class GoRun:
    """What the Go client printed: (call, message) replies, status lines, its exit status, with
    -show-metadata the response metadata of each call and with -show-details the status details
    of each failed call."""

    returncode: int
    replies: list[tuple[str, str]]
    statuses: list[dict[str, object]]
    metadata: list[CallMetadata] = field(default_factory=list)
    details: list[dict[str, object]] = field(default_factory=list)

    def status_codes(self) -> list[tuple[object, object, object]]:
        """(call, code, status name) of each call that ended in a non-OK status."""
        return [(s["call"], s["code"], s["status"]) for s in self.statuses]


async def run_go_client(
    binaries: GoBinaries, target: str, mode: str, names: Sequence[str] = (), *extra: str
) -> GoRun:
    process = await asyncio.create_subprocess_exec(
        str(binaries.client),
        "-addr",
        target,
        "-mode",
        mode,
        *extra,
        "--",
        *names,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    replies: list[tuple[str, str]] = []
    statuses: list[dict[str, object]] = []
    metadata: list[CallMetadata] = []
    details: list[dict[str, object]] = []
    for line in stdout.decode().splitlines():
        record = json.loads(line)
        if "code" in record:
            statuses.append(record)
        elif "headers" in record:
            metadata.append(CallMetadata(record["call"], record["headers"], record["trailers"]))
        elif "details" in record:
            details.append(record)
        else:
            replies.append((record["call"], record["message"]))
    assert not stderr, stderr.decode()
    return GoRun(process.returncode, replies, statuses, metadata, details)


def all_four(names: Sequence[str]) -> list[tuple[str, str]]:
    """The replies the original client shows for all four call kinds, in order."""
    greetings = [f"Hello {name}" for name in names]
    return [
        ("unary", "Hello"),
        *(("server-stream", greeting) for greeting in greetings),
        *(("client-stream", greeting) for greeting in greetings),
        *(("bidi", greeting) for greeting in greetings),
    ]


@pytest.fixture
async def python_server(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    """`python -m greet.server --port 0` as a real process."""
    async with ServerProcess(cwd=str(tmp_path)) as server:
        yield server


@pytest.fixture
async def go_server(go_binaries: GoBinaries) -> AsyncIterator[str]:
    """The grpc-go reference server on a free port; yields its host:port."""
    async with start_go_server(go_binaries) as (_, target):
        yield target


async def test_go_client_gets_all_four_call_kinds(
    go_binaries: GoBinaries, python_server: ServerProcess
) -> None:
    run = await run_go_client(go_binaries, python_server.target, "all")
    assert run.statuses == []
    assert run.replies == all_four(NAMES)
    assert run.returncode == 0


async def test_go_client_with_unusual_and_many_names(
    go_binaries: GoBinaries, python_server: ServerProcess
) -> None:
    names = UNUSUAL_NAMES + [f"name-{i}" for i in range(1000)]
    run = await run_go_client(go_binaries, python_server.target, "all", names)
    assert run.statuses == []
    assert run.replies == all_four(names)


@pytest.mark.parametrize("mode", ["unknown-method", "unknown-service"])
async def test_go_client_reads_unknown_method_as_unimplemented(
    go_binaries: GoBinaries, python_server: ServerProcess, mode: str
) -> None:
    run = await run_go_client(go_binaries, python_server.target, mode)
    assert [(s["code"], s["status"]) for s in run.statuses] == [
        (GRPC_UNIMPLEMENTED, "Unimplemented")
    ]
    # The server keeps serving that same client afterwards.
    after = await run_go_client(go_binaries, python_server.target, "unary")
    assert after.replies == [("unary", "Hello")]


async def test_go_client_deadline_is_deadline_exceeded(
    go_binaries: GoBinaries, tmp_path: Path
) -> None:
    async with ServerProcess(["--work-delay", "5"], cwd=str(tmp_path)) as slow_server:
        run = await run_go_client(
            go_binaries, slow_server.target, "deadline", NAMES, "-timeout", "300ms"
        )
        assert run.replies == []
        assert [(s["call"], s["code"], s["status"]) for s in run.statuses] == [
            (call, GRPC_DEADLINE_EXCEEDED, "DeadlineExceeded")
            for call in ("server-stream", "client-stream", "bidi")
        ]
        assert run.returncode == 1
        after = await run_go_client(go_binaries, slow_server.target, "unary")
        assert after.replies == [("unary", "Hello")]


async def test_go_reference_server_answers_like_ours(
    go_binaries: GoBinaries, go_server: str, python_server: ServerProcess
) -> None:
    """The benchmark's grpc-go server gives the Go client exactly what our server gives it."""
    names = ["Akhil", "Zoë", "世界", ""]
    theirs = await run_go_client(go_binaries, go_server, "all", names)
    ours = await run_go_client(go_binaries, python_server.target, "all", names)
    assert theirs == ours == GoRun(0, all_four(names), [])


async def test_greet_client_against_grpc_go_server(go_server: str) -> None:
    """Our typed client talks to a grpc-go server: all four call kinds."""
    names = ["Akhil", "Zoë", "世界"]
    greetings = [f"Hello {name}" for name in names]
    async with GreetClient(go_server, timeout=30) as client:
        assert (await client.say_hello()).message == "Hello"
        streamed = [r.message async for r in client.say_hello_server_streaming(names)]
        assert streamed == greetings
        assert (await client.say_hello_client_streaming(names)).messages == greetings
        bidi = [r.message async for r in client.say_hello_bidirectional_streaming(names)]
        assert bidi == greetings


def metadata_flags(*pairs: str) -> list[str]:
    """Go client flags that send each key=value pair as metadata on every call."""
    return [arg for pair in pairs for arg in ("-metadata", pair)]


@pytest.fixture
async def token_server(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    """`python -m greet.server --auth-token-file F --access-log`; F holds GOOD_TOKEN and another."""
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# tokens for the grpc-go interop tests\nsomeone-else\n{GOOD_TOKEN}\n")
    args = ["--auth-token-file", str(tokens), "--access-log"]
    async with ServerProcess(args, cwd=str(tmp_path)) as server:
        yield server


async def test_go_client_with_bearer_token_and_binary_metadata(
    go_binaries: GoBinaries, token_server: ServerProcess
) -> None:
    """grpc-go sends `authorization: Bearer <token>`, a binary key (base64 without padding on the
    wire) and a plain key on every call: all four call kinds are answered correctly."""
    run = await run_go_client(
        go_binaries,
        token_server.target,
        "all",
        NAMES,
        *metadata_flags(
            f"authorization=Bearer {GOOD_TOKEN}",
            "trace-context-bin=00ff0a80fe",
            "x-request-id=go-interop-1",
        ),
    )
    assert run.statuses == []
    assert run.replies == all_four(NAMES)
    assert run.returncode == 0


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        (None, "missing 'authorization' metadata"),
        ("Bearer wrong-token-5c1d", "bearer token is not valid"),
        (f"Basic {GOOD_TOKEN}", "must be 'Bearer <token>'"),
    ],
    ids=["missing", "wrong-token", "wrong-scheme"],
)
async def test_go_client_without_valid_token_is_unauthenticated(
    go_binaries: GoBinaries, token_server: ServerProcess, authorization: str | None, reason: str
) -> None:
    extra = [] if authorization is None else metadata_flags(f"authorization={authorization}")
    run = await run_go_client(
        go_binaries, token_server.target, "all", NAMES, "-show-metadata", *extra
    )
    assert run.replies == []
    assert run.status_codes() == [
        (call, GRPC_UNAUTHENTICATED, "Unauthenticated") for call in CALL_KINDS
    ]
    assert all(reason in str(status["error"]) for status in run.statuses), run.statuses
    assert run.returncode == 1
    # Each refusal is a trailers-only response; grpc-go read its status because it carries a gRPC
    # content-type (without one grpc-go would report Unknown or Internal instead).
    assert [(m.call, m.headers, grpc_content_type(m.trailers)) for m in run.metadata] == [
        (call, {}, True) for call in CALL_KINDS
    ]
    # Refusals are in the access log; the token sent is not, and the server keeps serving.
    await token_server.wait_for_log(
        re.compile(r"/greet_service\.GreetService/SayHelloBidirectionalStreaming UNAUTHENTICATED ")
    )
    assert "wrong-token-5c1d" not in "\n".join(token_server.log_lines)
    assert GOOD_TOKEN not in "\n".join(token_server.log_lines)
    after = await run_go_client(
        go_binaries,
        token_server.target,
        "unary",
        (),
        *metadata_flags(f"authorization=Bearer {GOOD_TOKEN}"),
    )
    assert after.replies == [("unary", "Hello")]


def go_details(
    call: str, field_path: str, message: str, reason: str, limit: int, actual: int, flag: str
) -> dict[str, object]:
    """The details line the Go client prints for one broken limit (-show-details)."""
    return {
        "call": call,
        "details": [
            {
                "type": "google.rpc.BadRequest",
                "field_violations": [{"field": field_path, "description": message}],
            },
            {
                "type": "google.rpc.ErrorInfo",
                "reason": reason,
                "domain": "greet_service.GreetService",
                "metadata": {"limit": str(limit), "actual": str(actual), "flag": flag},
            },
        ],
    }


async def test_go_client_reads_status_details_with_status_from_error(
    go_binaries: GoBinaries, tmp_path: Path
) -> None:
    """grpc-go's status.FromError(err).Details() decodes greet's google.rpc.Status into typed
    errdetails.BadRequest and errdetails.ErrorInfo for each opt-in limit."""
    limits = ["--max-name-chars", "5", "--max-names", "3", "--max-stream-messages", "4"]
    long_name = "name is 6 characters long; the limit (--max-name-chars) is 5"
    long_listed = "names[2] is 7 characters long; the limit (--max-name-chars) is 5"
    too_many = "4 names in one list; the limit (--max-names) is 3"
    long_stream = "more than 4 messages in one stream; the limit (--max-stream-messages) is 4"
    cases = [
        ("client-stream", ["Alice", "Bobbie"], "name", long_name, "NAME_TOO_LONG", 5, 6),
        (
            "server-stream",
            ["Ann", "Bob", "Rebecca"],
            "names[2]",
            long_listed,
            "NAME_TOO_LONG",
            5,
            7,
        ),
        ("server-stream", ["a", "b", "c", "d"], "names", too_many, "TOO_MANY_NAMES", 3, 4),
        ("bidi", ["a", "b", "c", "d", "e"], "requests", long_stream, "TOO_MANY_MESSAGES", 4, 5),
    ]
    flags = {
        "NAME_TOO_LONG": "--max-name-chars",
        "TOO_MANY_NAMES": "--max-names",
        "TOO_MANY_MESSAGES": "--max-stream-messages",
    }
    async with ServerProcess(limits, cwd=str(tmp_path)) as server:
        for mode, names, field_path, message, reason, limit, actual in cases:
            run = await run_go_client(go_binaries, server.target, mode, names, "-show-details")
            assert [s["error"] for s in run.statuses] == [message]
            assert run.details == [
                go_details(mode, field_path, message, reason, limit, actual, flags[reason])
            ]
        # A status without details has none (grpc-go reads no grpc-status-details-bin).
        run = await run_go_client(go_binaries, server.target, "unknown-method", (), "-show-details")
        assert run.details == [{"call": "unknown-method", "details": []}]


def grpc_content_type(metadata: dict[str, list[str]]) -> bool:
    """Whether metadata holds exactly one gRPC content-type (application/grpc, +proto, ...)."""
    values = metadata.get("content-type", [])
    return len(values) == 1 and re.fullmatch(r"application/grpc(\+proto)?", values[0]) is not None


def normalised(run: GoRun) -> list[CallMetadata]:
    """Response metadata with `application/grpc+proto` written as its synonym `application/grpc`
    (grpc-go's server sends the short form, grpclib the long one), and without
    `grpc-accept-encoding`: greet announces the compression it decodes, the reference grpc-go
    server registers no compressor and announces none."""

    def fix(metadata: dict[str, list[str]]) -> dict[str, list[str]]:
        return {
            key: ["application/grpc" if v == "application/grpc+proto" else v for v in values]
            for key, values in metadata.items()
            if key != "grpc-accept-encoding"
        }

    return [CallMetadata(m.call, fix(m.headers), fix(m.trailers)) for m in run.metadata]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("all", [CallMetadata(call, GRPC_CT, {}) for call in CALL_KINDS]),
        ("unknown-method", [CallMetadata("unknown-method", {}, GRPC_CT)]),
    ],
)
async def test_go_client_reads_response_metadata_like_from_grpc_go(
    go_binaries: GoBinaries,
    go_server: str,
    python_server: ServerProcess,
    mode: str,
    expected: list[CallMetadata],
) -> None:
    """grpc-go reads the same response headers and trailers (grpc.Header / grpc.Trailer) from our
    server as from a grpc-go server: a gRPC content-type in the headers of a call that answers (in
    the trailers of a trailers-only error), nothing else."""
    theirs = await run_go_client(go_binaries, go_server, mode, NAMES, "-show-metadata")
    ours = await run_go_client(go_binaries, python_server.target, mode, NAMES, "-show-metadata")
    assert normalised(ours) == normalised(theirs) == expected
    assert ours.replies == theirs.replies
    assert ours.status_codes() == theirs.status_codes()


async def scrape(url: str) -> dict[tuple[str, str], float]:
    """The server's Prometheus counters as {(sample name, grpc_method label or ""): value}."""

    def get() -> str:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url, timeout=30) as response:
            body: bytes = response.read()
        return body.decode()

    return {
        (sample.name, sample.labels.get("grpc_method", "")): sample.value
        for family in text_string_to_metric_families(await asyncio.to_thread(get))
        for sample in family.samples
        if sample.labels.get("grpc_service", "greet_service.GreetService")
        == "greet_service.GreetService"
    }


async def test_go_client_cancels_streams_and_the_server_stops_their_work(
    go_binaries: GoBinaries, tmp_path: Path
) -> None:
    """grpc-go cancels a server-stream and a bidi call after their first reply: it sees Canceled,
    the server logs each call as CANCELLED, stops greeting its names, and keeps serving."""
    names = [f"name-{i}" for i in range(1000)]  # 200 s of work per call at --work-delay 0.2
    # --cache-size makes the cache count every greeting the backend starts (cache misses).
    args = ["--work-delay", "0.2", "--access-log", "--metrics-port", "0", "--cache-size", "5000"]
    async with ServerProcess(args, cwd=str(tmp_path)) as server:
        metrics_url = (await server.wait_for_log(METRICS_LINE)).group(1)
        run = await run_go_client(go_binaries, server.target, "cancel", names)
        assert run.replies == [("server-stream", "Hello name-0"), ("bidi", "Hello name-0")]
        assert run.status_codes() == [
            ("server-stream", GRPC_CANCELLED, "Canceled"),
            ("bidi", GRPC_CANCELLED, "Canceled"),
        ]
        assert run.returncode == 1
        for method in ("SayHelloServerStreaming", "SayHelloBidirectionalStreaming"):
            await server.wait_for_log(
                re.compile(rf"/greet_service\.GreetService/{method} CANCELLED ")
            )
        # A fresh call with eight names is served (its 1.6 s of work is also time in which a
        # server still working on the cancelled calls would start more greetings and count them).
        fresh = [*NAMES, "Zoë", "世界", "Привет", "Ærøskøbing", "👋🏽"]
        after = await run_go_client(go_binaries, server.target, "client-stream", fresh)
        assert after.replies == [("client-stream", f"Hello {name}") for name in fresh]
        counters = await scrape(metrics_url)
    # Each cancelled call sent its one reply, and at most the greeting under way when the cancel
    # arrived (plus one for a slow machine): nowhere near its 1000 names.
    for method in ("SayHelloServerStreaming", "SayHelloBidirectionalStreaming"):
        assert 1 <= counters[("grpc_server_msg_sent_total", method)] <= 3
    # Backend greetings started: name-0 (the bidi call's is a cache hit), name-1 under way at each
    # cancel, the eight names of the fresh call: 11; two more allowed for a slow machine. (A server
    # that kept greeting the names of a cancelled call would have started some 8 more.)
    assert 9 <= counters[("greet_cache_misses_total", "")] <= 13
