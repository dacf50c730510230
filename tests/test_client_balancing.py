"""GreetClient over several endpoints: round-robin, pools, failover, backups, dns:/// names.

Every server is a real GreetServer on a loopback socket; calls are counted at the servers with a
grpclib RecvRequest listener (and connections by the peer address each call arrived from).
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter

import pytest
from grpclib.events import RecvRequest, listen
from loopback import StartServer, bound_socket

from greet.client import Endpoint, GreetClient, PoolOptions, RetryPolicy, RpcError
from greet.server import GreetServer, ServerConfig

FAST_PROBES = PoolOptions(reconnect_initial_backoff=0.02, reconnect_max_backoff=0.1)


class CallLog:
    """Calls a server received, and the client connections (peer addresses) they came on."""

    def __init__(self, server: GreetServer) -> None:
        self.calls = 0
        self.peers: set[tuple[str, int]] = set()
        listen(server.grpc_server, RecvRequest, self.on_request)

    async def on_request(self, event: RecvRequest) -> None:
        self.calls += 1
        address = event.peer.addr()
        assert address is not None
        self.peers.add((str(address[0]), int(address[1])))


async def call_until(client: GreetClient, log: CallLog, timeout: float = 10.0) -> None:
    """Call until `log`'s server has received a call (it is back in the client's pool)."""

    async def calls() -> None:
        while log.calls == 0:
            await client.say_hello()

    await asyncio.wait_for(calls(), timeout)


async def logged_servers(
    start_server: StartServer, count: int
) -> list[tuple[GreetServer, CallLog]]:
    servers = [await start_server() for _ in range(count)]
    return [(server, CallLog(server)) for server in servers]


async def test_round_robin_spreads_calls_evenly(start_server: StartServer) -> None:
    servers = await logged_servers(start_server, 3)
    async with GreetClient([server.target for server, _ in servers], timeout=10) as client:
        for _ in range(30):
            assert (await client.say_hello()).message == "Hello"
        assert [log.calls for _, log in servers] == [10, 10, 10]
        assert client.served == Counter({server.target: 10 for server, _ in servers})


async def test_a_comma_separated_string_is_several_targets(start_server: StartServer) -> None:
    servers = await logged_servers(start_server, 2)
    targets = ",".join(server.target for server, _ in servers)
    async with GreetClient(targets, timeout=10) as client:
        names = [r.message async for r in client.say_hello_server_streaming(["a"])]
        names += [r.message async for r in client.say_hello_server_streaming(["b"])]
    assert names == ["Hello a", "Hello b"]
    assert [log.calls for _, log in servers] == [1, 1]


@pytest.mark.parametrize("size", [1, 3])
async def test_pool_opens_the_configured_connections_per_endpoint(
    start_server: StartServer, size: int
) -> None:
    servers = await logged_servers(start_server, 2)
    options = PoolOptions(connections_per_endpoint=size)
    async with GreetClient([s.target for s, _ in servers], timeout=10, pool=options) as client:
        await asyncio.gather(*(client.say_hello() for _ in range(60)))
        for _ in range(12):
            await client.say_hello()
    assert [len(log.peers) for _, log in servers] == [size, size]


async def test_calls_go_around_a_dead_endpoint(start_server: StartServer) -> None:
    live = await logged_servers(start_server, 2)
    with bound_socket() as dead:  # bound, not listening: connections are refused
        dead_target = f"127.0.0.1:{dead.getsockname()[1]}"
        targets = [live[0][0].target, dead_target, live[1][0].target]
        async with GreetClient(targets, timeout=10) as client:
            replies = await asyncio.gather(*(client.say_hello() for _ in range(40)))
            for _ in range(20):
                replies.append(await client.say_hello())
            assert [reply.message for reply in replies] == ["Hello"] * 60
            assert dead_target not in client.served
            down = [state.name for state in client.pool.endpoints if state.down]
    assert down == [dead_target]
    assert sum(log.calls for _, log in live) == 60
    assert all(log.calls >= 20 for _, log in live)


async def test_a_stopped_server_is_taken_out_and_readmitted_when_back(
    start_server: StartServer,
) -> None:
    ((steady, steady_log),) = await logged_servers(start_server, 1)
    sock = bound_socket()
    port = sock.getsockname()[1]
    flapping = GreetServer(ServerConfig())
    async with GreetClient(
        [steady.target, f"127.0.0.1:{port}"], timeout=10, pool=FAST_PROBES
    ) as client:
        for _ in range(10):  # the second endpoint refuses: every call lands on the first
            await client.say_hello()
        assert steady_log.calls == 10
        await flapping.start(sock=sock)
        flapping_log = CallLog(flapping)
        try:
            await call_until(client, flapping_log)  # the probe finds it listening: back in
            before = steady_log.calls
            for _ in range(10):
                await client.say_hello()
            assert (steady_log.calls - before, flapping_log.calls) == (5, 6)
        finally:
            await flapping.stop()


async def test_backup_serves_only_while_every_primary_is_down(start_server: StartServer) -> None:
    primaries = await logged_servers(start_server, 2)
    ((backup, backup_log),) = await logged_servers(start_server, 1)
    async with GreetClient(
        [s.target for s, _ in primaries], backup=[backup.target], timeout=10, pool=FAST_PROBES
    ) as client:
        for _ in range(10):
            await client.say_hello()
        assert backup_log.calls == 0
        await primaries[0][0].stop()
        for _ in range(10):
            await client.say_hello()
        assert backup_log.calls == 0  # one primary is still up
        await primaries[1][0].stop()
        for _ in range(10):
            assert (await client.say_hello()).message == "Hello"
    assert backup_log.calls == 10
    assert client.served[backup.target] == 10


async def test_primary_is_preferred_again_when_it_comes_back(start_server: StartServer) -> None:
    ((backup, backup_log),) = await logged_servers(start_server, 1)
    sock = bound_socket()  # the primary's port, refusing until the primary starts on it
    primary = GreetServer(ServerConfig())
    primary_target = f"127.0.0.1:{sock.getsockname()[1]}"
    async with GreetClient(
        primary_target, backup=backup.target, timeout=10, pool=FAST_PROBES
    ) as client:
        for _ in range(5):
            assert (await client.say_hello()).message == "Hello"
        assert backup_log.calls == 5
        await primary.start(sock=sock)
        primary_log = CallLog(primary)
        try:
            await call_until(client, primary_log)
            backup_calls = backup_log.calls
            for _ in range(10):
                await client.say_hello()
            assert backup_log.calls == backup_calls
            assert primary_log.calls == 11
        finally:
            await primary.stop()


async def test_dns_name_resolves_to_the_server(start_server: StartServer) -> None:
    ((server, log),) = await logged_servers(start_server, 1)
    port = server.address[1]
    async with GreetClient(f"dns:///localhost:{port}", timeout=10) as client:
        assert (await client.say_hello()).message == "Hello"
        assert Endpoint("127.0.0.1", port) in client.endpoints
    assert log.calls == 1


def ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


async def test_dns_name_with_ipv4_and_ipv6_addresses_uses_both(
    start_server: StartServer,
) -> None:
    """`dns:///` balances over every address of a name: here 127.0.0.1 and ::1, one port."""
    v4 = bound_socket()
    port = v4.getsockname()[1]
    families = [v4]
    if ipv6_loopback_available():
        v6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            v6.bind(("::1", port))
            families.append(v6)
        except OSError:  # the port is taken on ::1: test with the IPv4 address alone
            v6.close()
    servers = []
    for sock in families:
        server = GreetServer(ServerConfig())
        await server.start(sock=sock)
        servers.append((server, CallLog(server)))

    async def resolve(host: str, port: int) -> list[Endpoint]:
        """What a resolver answers for a name with an A and an AAAA record."""
        assert host == "greet.test"
        return [Endpoint(str(sock.getsockname()[0]), port) for sock in families]

    try:
        async with GreetClient(f"dns:///greet.test:{port}", timeout=10, resolve=resolve) as c:
            for _ in range(4 * len(servers)):
                await c.say_hello()
        assert [log.calls for _, log in servers] == [4] * len(servers)
    finally:
        for server, _ in servers:
            await server.stop()


async def test_dns_name_is_resolved_again_periodically(start_server: StartServer) -> None:
    servers = await logged_servers(start_server, 2)
    answer = [Endpoint(*servers[0][0].address)]

    async def resolve(host: str, port: int) -> list[Endpoint]:
        return list(answer)

    options = PoolOptions(resolve_interval=0.05)
    async with GreetClient(
        "dns:///replicas.greet.test:1", timeout=10, pool=options, resolve=resolve
    ) as client:
        await client.say_hello()
        answer[:] = [Endpoint(*servers[1][0].address)]  # the name now points elsewhere
        await call_until(client, servers[1][1])
        first_calls = servers[0][1].calls
        for _ in range(5):
            await client.say_hello()
        assert servers[0][1].calls == first_calls  # the old address was dropped
        assert client.endpoints == [Endpoint(*servers[1][0].address)]


async def test_unresolvable_name_is_unavailable() -> None:
    async def resolve(host: str, port: int) -> list[Endpoint]:
        raise OSError("no such host")

    async with GreetClient(
        "dns:///nowhere.greet.test:1", resolve=resolve, retry=RetryPolicy(max_attempts=2)
    ) as client:
        with pytest.raises(RpcError) as caught:
            await client.say_hello()
    assert caught.value.status.name == "UNAVAILABLE"
    assert "no such host" in str(caught.value)


@pytest.fixture
async def two_replicas(start_server: StartServer) -> list[GreetServer]:
    return [await start_server(), await start_server()]


@pytest.mark.parametrize("kind", ["server", "client", "bidi"])
async def test_streaming_calls_are_balanced(two_replicas: list[GreetServer], kind: str) -> None:
    async with GreetClient([s.target for s in two_replicas], timeout=10) as client:
        for _ in range(4):
            if kind == "server":
                got = [r.message async for r in client.say_hello_server_streaming(["x", "y"])]
            elif kind == "client":
                got = list((await client.say_hello_client_streaming(["x", "y"])).messages)
            else:
                got = [
                    r.message async for r in client.say_hello_bidirectional_streaming(["x", "y"])
                ]
            assert got == ["Hello x", "Hello y"]
    assert client.served == Counter({s.target: 2 for s in two_replicas})
