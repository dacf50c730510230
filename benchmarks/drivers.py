"""Small grpclib-based load helpers the harness runs as separate (pinned) processes.

    python benchmarks/drivers.py check TARGET
        one call of each kind; exits non-zero unless every reply is right.
    python benchmarks/drivers.py pingpong TARGET --duration S [--streams N]
        bidi ping-pong: each of N streams sends one name and waits for its greeting before the
        next; prints {"round_trips": int, "seconds": float, "rps": float} as JSON.
    python benchmarks/drivers.py hold TARGET --streams N --connections C
        opens N bidi streams over C connections, gets one reply on each, prints "holding N" and
        keeps them open until stdin closes.

Used when `python -m greet.client bench` is not available, and for things it does not do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from grpclib.client import Channel
from grpclib.const import Cardinality

from greet_service import (
    GreetServiceStub,
    HelloRequest,
    HelloResponse,
    NamesList,
    NoParam,
)

BIDI_PATH = "/greet_service.GreetService/SayHelloBidirectionalStreaming"


def split_target(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    return host.strip("[]"), int(port)


async def check(target: str) -> None:
    host, port = split_target(target)
    channel = Channel(host, port)
    try:
        stub = GreetServiceStub(channel)
        assert (await stub.say_hello(NoParam())).message == "Hello"
        replies = [r.message async for r in stub.say_hello_server_streaming(NamesList(["a", "b"]))]
        assert replies == ["Hello a", "Hello b"], replies
        requests = [HelloRequest(name=n) for n in ("a", "b")]
        listed = await stub.say_hello_client_streaming(requests)
        assert listed.messages == ["Hello a", "Hello b"], listed
        replies = [r.message async for r in stub.say_hello_bidirectional_streaming(requests)]
        assert replies == ["Hello a", "Hello b"], replies
    finally:
        channel.close()


async def pingpong(target: str, duration: float, streams: int) -> dict[str, Any]:
    host, port = split_target(target)
    channel = Channel(host, port)
    count = 0
    request = HelloRequest(name="ping")

    async def one_stream(stop_at: float) -> None:
        nonlocal count
        async with channel.request(
            BIDI_PATH, Cardinality.STREAM_STREAM, HelloRequest, HelloResponse
        ) as stream:
            await stream.send_request()
            while time.perf_counter() < stop_at:
                await stream.send_message(request)
                await stream.recv_message()
                count += 1
            await stream.end()
            async for _ in stream:
                pass

    start = time.perf_counter()
    try:
        await asyncio.gather(*(one_stream(start + duration) for _ in range(streams)))
    finally:
        channel.close()
    seconds = time.perf_counter() - start
    return {"round_trips": count, "seconds": seconds, "rps": count / seconds}


async def hold(target: str, streams: int, connections: int) -> None:
    host, port = split_target(target)
    channels = [Channel(host, port) for _ in range(connections)]
    opened: list[Any] = []
    try:
        for index in range(streams):
            channel = channels[index % connections]
            stream = channel.request(
                BIDI_PATH, Cardinality.STREAM_STREAM, HelloRequest, HelloResponse
            )
            await stream.__aenter__()
            await stream.send_message(HelloRequest(name=f"n{index}"))
            opened.append(stream)
        for stream in opened:
            await stream.recv_message()
        print(f"holding {len(opened)}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    finally:
        for channel in channels:
            channel.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="grpclib load helpers for the benchmarks")
    parser.add_argument("command", choices=("check", "pingpong", "hold"))
    parser.add_argument("target")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--connections", type=int, default=10)
    args = parser.parse_args()
    if args.command == "check":
        asyncio.run(check(args.target))
        print("ok")
    elif args.command == "pingpong":
        print(json.dumps(asyncio.run(pingpong(args.target, args.duration, args.streams))))
    else:
        asyncio.run(hold(args.target, args.streams, args.connections))


if __name__ == "__main__":
    main()
