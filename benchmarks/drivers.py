"""Small load helpers the harness runs as separate (pinned) processes, on greet's own client.

    python benchmarks/drivers.py check TARGET [--long-names]
        one call of each kind; exits non-zero unless every reply is right (with --long-names the
        server stream carries the names of the compressed workload).
    python benchmarks/drivers.py pingpong TARGET --duration S [--streams N]
        bidi ping-pong: each of N streams sends one name and waits for its greeting before the
        next; prints {"round_trips": int, "seconds": float, "rps": float} as JSON.
    python benchmarks/drivers.py hold TARGET --streams N --connections C
        opens N bidi streams over C connections, gets one reply on each, prints "holding N" and
        keeps them open until stdin closes.

The client is `greet.client.GreetClient` on the nghttp2 engine (`--http2-engine` to change it);
it accepts gzip replies, so it also checks servers that compress.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workloads import long_names

from greet.client import GreetClient, PoolOptions
from greet.transport import ChannelConfig


async def check(client: GreetClient, long: bool) -> None:
    assert (await client.say_hello()).message == "Hello"
    names = long_names(3) if long else ["a", "b"]
    replies = [r.message async for r in client.say_hello_server_streaming(names)]
    assert replies == [f"Hello {name}" for name in names], replies
    listed = await client.say_hello_client_streaming(["a", "b"])
    assert listed.messages == ["Hello a", "Hello b"], listed
    replies = [r.message async for r in client.say_hello_bidirectional_streaming(["a", "b"])]
    assert replies == ["Hello a", "Hello b"], replies


async def pingpong(client: GreetClient, duration: float, streams: int) -> dict[str, Any]:
    count = 0

    async def one_stream(stop_at: float) -> None:
        nonlocal count
        turn: asyncio.Queue[bool] = asyncio.Queue()

        async def requests() -> AsyncIterator[str]:
            while await turn.get():
                yield "ping"

        turn.put_nowait(True)
        async for _ in client.say_hello_bidirectional_streaming(requests()):
            count += 1
            turn.put_nowait(time.perf_counter() < stop_at)

    start = time.perf_counter()
    await asyncio.gather(*(one_stream(start + duration) for _ in range(streams)))
    seconds = time.perf_counter() - start
    return {"round_trips": count, "seconds": seconds, "rps": count / seconds}


async def hold(client: GreetClient, streams: int) -> None:
    release = asyncio.Event()
    opened = 0
    all_open = asyncio.Event()

    async def one_stream(index: int) -> None:
        nonlocal opened

        async def requests() -> AsyncIterator[str]:
            yield f"n{index}"
            await release.wait()

        async for _ in client.say_hello_bidirectional_streaming(requests()):
            opened += 1
            if opened == streams:
                all_open.set()

    tasks = [asyncio.create_task(one_stream(index)) for index in range(streams)]
    await all_open.wait()
    print(f"holding {opened}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    release.set()
    await asyncio.gather(*tasks)


async def main_async(args: argparse.Namespace) -> None:
    client = GreetClient(
        args.target,
        pool=PoolOptions(connections_per_endpoint=args.connections),
        transport=ChannelConfig(engine=args.http2_engine),
    )
    try:
        if args.command == "check":
            await check(client, args.long_names)
            print("ok")
        elif args.command == "pingpong":
            print(json.dumps(await pingpong(client, args.duration, args.streams)))
        else:
            await hold(client, args.streams)
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="load helpers for the benchmarks")
    parser.add_argument("command", choices=("check", "pingpong", "hold"))
    parser.add_argument("target")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--long-names", action="store_true")
    parser.add_argument("--http2-engine", choices=("nghttp2", "h2"), default="nghttp2")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
