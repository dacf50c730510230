"""docs/your-service.md, taken as written, and the server for any service it relies on.

The guide is read in document order. A `<!-- file: PATH -->` comment right above a code block
says that the block is the file PATH of the new project; a console block's `$ ` lines are run, in
a temporary folder, and the lines under a command are what it must print. Known commands:
`python -m pip install ...` (the test's own environment already has greet and the codegen tools:
the test group includes the codegen group), `python -m greet.codegen ...`, `export NAME=VALUE`,
`python -m greet.server ... &` (a server process; the guide's fixed port is replaced by one the
kernel picks, and the client's targets follow), `python client.py` and `kill %N` (SIGTERM to the
N-th server started). Anything else fails the test, so the guide cannot gain a step this test
does not take. It takes seconds: no venv is built; this interpreter runs every step.

The guide's client runs on greet.client.Channel; the server side is also checked here without it,
with the generated stub on greet.transport.Channel (one connection), grpcio, health and a
reflection client that knows nothing but what reflection tells it.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc.error_details_pb2 import ErrorInfo
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from loopback import bound_socket
from reflection_client import describe_and_call
from server_process import ServerProcess

from greet._settings import ConfigError
from greet.errors import LimitExceeded, Violation, to_grpc_error
from greet.server import GreetServer, ServerConfig, parse_config
from greet.server.reflection import load_descriptor_set, with_reflection
from greet.server.services import make_services, service_names
from greet.service import GreetService
from greet.transport import Channel as TransportChannel

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "your-service.md"
FILE = re.compile(r"<!-- file: (?P<path>\S+) -->")
BLOCK = re.compile(r"^```(?P<lang>\w*)\n(?P<body>.*?)^```$", re.M | re.S)
SERVICE = "inventory.v1.InventoryService"
CLIENT_OUTPUT = ("bolts 120", "A-1 bolts 120", "C-3 washers 42")


@dataclass(frozen=True)
class File:
    """A code block that is a file of the project."""

    path: str
    text: str


@dataclass(frozen=True)
class Command:
    """A `$ ` line of a console block and the lines it must print."""

    line: str
    output: tuple[str, ...]


Step = File | Command


def guide_steps(text: str) -> Iterator[Step]:
    for block in BLOCK.finditer(text):
        lang, body = block.group("lang"), block.group("body")
        last_line = text[: block.start()].rstrip("\n").rsplit("\n", 1)[-1]
        if (directive := FILE.fullmatch(last_line)) is not None:
            yield File(directive.group("path"), body)
        elif lang == "console":
            command: str | None = None
            output: list[str] = []
            for line in [*body.splitlines(), "$ "]:
                if line.startswith("$ "):
                    if command is not None:
                        yield Command(command, tuple(output))
                    command, output = line[2:], []
                else:
                    output.append(line)
        else:
            assert lang not in ("python", "sh", "shell", "bash"), f"a {lang} block unaccounted"


STEPS = list(guide_steps(GUIDE.read_text()))
FILES = {step.path: step.text for step in STEPS if isinstance(step, File)}
COMMANDS = [step for step in STEPS if isinstance(step, Command)]


def server_arguments(line: str) -> list[str] | None:
    """The arguments of a `python -m greet.server ... &` line; None for another line."""
    words = shlex.split(line)
    if words[:3] != ["python", "-m", "greet.server"]:
        return None
    assert words[-1] == "&", f"a server the guide does not start in the background: {line}"
    return words[3:-1]


def guide_port(arguments: list[str]) -> str:
    return arguments[arguments.index("--port") + 1]


def with_port(arguments: list[str], port: str) -> list[str]:
    changed = list(arguments)
    changed[changed.index("--port") + 1] = port
    return changed


def run(folder: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@dataclass
class GuideRun:
    """Takes the guide's steps in `folder`, in order."""

    folder: Path
    stack: AsyncExitStack
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    servers: list[tuple[str, ServerProcess]] = field(default_factory=list)
    """(the port the guide gives, the server process), in the order started."""
    client_outputs: list[tuple[str, ...]] = field(default_factory=list)

    def targets(self, text: str) -> str:
        for port, server in self.servers:
            text = text.replace(f"127.0.0.1:{port}", server.target)
        return text

    async def take(self, step: Step, *, client: bool = True) -> None:
        if isinstance(step, File):
            path = self.folder / step.path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(step.text)
            return
        words = shlex.split(step.line)
        if words[:4] == ["python", "-m", "pip", "install"]:
            for module in ("greet", "grpc_tools", "betterproto"):
                assert importlib.util.find_spec(module) is not None, f"{module} is not installed"
        elif words[:3] == ["python", "-m", "greet.codegen"]:
            done = await asyncio.to_thread(run, self.folder, self.env, *words[1:])
            assert done.returncode == 0, done.stderr
        elif words[0] == "export" and len(words) == 2:
            name, _, value = words[1].partition("=")
            self.env[name] = value
        elif (arguments := server_arguments(step.line)) is not None:
            process = ServerProcess(with_port(arguments, "0"), env=self.env, cwd=str(self.folder))
            server = await self.stack.enter_async_context(process)
            self.servers.append((guide_port(arguments), server))
        elif words == ["python", "client.py"]:
            if client:
                code = self.targets((self.folder / "client.py").read_text())
                done = await asyncio.to_thread(run, self.folder, self.env, "-c", code)
                assert done.returncode == 0, done.stderr
                assert tuple(done.stdout.splitlines()) == step.output
                self.client_outputs.append(step.output)
        elif words[0] == "kill" and len(words) == 2 and words[1].startswith("%"):
            _, server = self.servers[int(words[1][1:]) - 1]
            assert await server.stop(signal.SIGTERM) == 0
        else:
            raise AssertionError(f"the guide runs a command this test does not know: {step.line}")


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as exits:
        yield exits


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The guide's files and generated code (its codegen command, as written) in a folder,
    importable from this process while the module's tests run."""
    folder = tmp_path_factory.mktemp("inventory")
    for path, text in FILES.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(text)
    [codegen] = [c for c in COMMANDS if c.line.startswith("python -m greet.codegen")]
    done = run(folder, dict(os.environ), *shlex.split(codegen.line)[1:])
    assert done.returncode == 0, done.stderr
    sys.path[:0] = [str(folder), str(folder / "generated")]
    try:
        yield folder
    finally:
        sys.path.remove(str(folder))
        sys.path.remove(str(folder / "generated"))
        for name in [name for name in sys.modules if name.split(".")[0] in PROJECT_MODULES]:
            del sys.modules[name]


PROJECT_MODULES = {"inventory", "inventory_service", "stock"}


def project_module(name: str) -> Any:
    return importlib.import_module(name)


def server_lines() -> list[list[str]]:
    lines = [server_arguments(command.line) for command in COMMANDS]
    return [arguments for arguments in lines if arguments is not None]


# --- the guide itself ----------------------------------------------------------------------------


def test_the_guide_has_every_step_of_the_route() -> None:
    assert set(FILES) == {"proto/inventory.proto", "stock.py", "inventory_service.py", "client.py"}
    assert "package inventory.v1;" in FILES["proto/inventory.proto"]
    assert "from greet.client import Channel" in FILES["client.py"]
    assert '"retryPolicy"' in FILES["client.py"]
    lines = [command.line for command in COMMANDS]
    assert lines.count("python client.py") == 2
    assert "kill %1" in lines
    assert lines.index("kill %1") > lines.index("python client.py")
    servers = server_lines()
    assert len(servers) == 2
    assert all("--service" in arguments for arguments in servers)
    assert "--workers" in servers[1]  # worker processes import the service too
    outputs = [command.output for command in COMMANDS if command.line == "python client.py"]
    assert outputs == [CLIENT_OUTPUT, CLIENT_OUTPUT]


async def test_the_guide_as_written(tmp_path: Path, stack: AsyncExitStack) -> None:
    guide = GuideRun(tmp_path, stack)
    for step in STEPS:
        await guide.take(step)
    assert guide.client_outputs == [CLIENT_OUTPUT, CLIENT_OUTPUT]
    assert (tmp_path / "generated" / "inventory" / "v1" / "descriptor_set.binpb").is_file()


# --- its servers, without greet.client.Channel ---------------------------------------------------


async def call_inventory(target: str, sku: str = "A-1") -> tuple[Any, list[Any]]:
    """GetItem(sku) and ListItems(1) with the generated stub on greet.transport.Channel."""
    inventory = project_module("inventory.v1")
    host, _, port = target.rpartition(":")
    channel = TransportChannel(host, int(port))
    try:
        stub = inventory.InventoryServiceStub(channel, timeout=10)
        item = await stub.get_item(inventory.GetItemRequest(sku=sku))
        items = [each async for each in stub.list_items(inventory.ListItemsRequest(min_quantity=1))]
    finally:
        channel.close()
    return item, items


async def test_the_guides_two_replicas_serve_the_stub_until_one_is_killed(
    project: Path, stack: AsyncExitStack
) -> None:
    guide = GuideRun(project, stack)
    for step in STEPS:
        if isinstance(step, Command) and not step.line.startswith("python -m greet.codegen"):
            await guide.take(step, client=False)  # everything but the client script
        if isinstance(step, Command) and step.line == "kill %1":
            break
        if isinstance(step, Command) and step.line == "python client.py":
            for _, server in guide.servers:
                item, items = await call_inventory(server.target)
                assert (item.sku, item.name, item.quantity) == ("A-1", "bolts", 120)
                assert [each.sku for each in items] == ["A-1", "C-3"]
    (_, first), (_, second) = guide.servers
    assert first.process is not None
    assert first.process.returncode == 0  # `kill %1` drained it
    item, _ = await call_inventory(second.target)
    assert item.name == "bolts"
    with pytest.raises(ConnectionRefusedError):  # nothing listens there any more
        await call_inventory(first.target)
    with pytest.raises(GRPCError) as refused:
        await call_inventory(second.target, sku="Z-9")
    assert refused.value.status == Status.NOT_FOUND
    assert any(f"/{SERVICE}/GetItem OK" in line for line in second.log_lines)  # --access-log


@pytest.fixture
async def inventory_server(project: Path) -> AsyncIterator[GreetServer]:
    """The guide's servicer on an in-process GreetServer, with metrics."""
    servicer = project_module("inventory_service").InventoryService()
    server = GreetServer(ServerConfig(port=0, metrics_port=0), services=[servicer])
    await server.start(sock=bound_socket())
    try:
        yield server
    finally:
        await server.stop()


async def test_a_reflection_client_describes_and_calls_the_new_service(
    inventory_server: GreetServer,
) -> None:
    requests: dict[str, list[dict[str, Any]]] = {
        "GetItem": [{"sku": "C-3"}],
        "ListItems": [{"minQuantity": 50}],
    }
    out = await describe_and_call(inventory_server.target, SERVICE, requests)
    assert SERVICE in out["services"]
    assert "greet_service.GreetService" not in out["services"]
    assert out["file"] == "inventory.proto"
    assert out["calls"] == {
        "GetItem": {
            "streaming": [False, False],
            "replies": [{"sku": "C-3", "name": "washers", "quantity": 42}],
        },
        "ListItems": {
            "streaming": [False, True],
            "replies": [{"sku": "A-1", "name": "bolts", "quantity": 120}],
        },
    }


def grpcio_calls(target: str, inventory: Any) -> tuple[Any, list[Any], grpc.StatusCode]:
    with grpc.insecure_channel(target) as channel:
        get_item = channel.unary_unary(
            f"/{SERVICE}/GetItem",
            request_serializer=bytes,
            response_deserializer=inventory.Item().parse,
        )
        list_items = channel.unary_stream(
            f"/{SERVICE}/ListItems",
            request_serializer=bytes,
            response_deserializer=lambda data: inventory.Item().parse(data),
        )
        item = get_item(inventory.GetItemRequest(sku="A-1"), timeout=10)
        items = list(list_items(inventory.ListItemsRequest(min_quantity=0), timeout=10))
        try:
            get_item(inventory.GetItemRequest(sku="nope"), timeout=10)
        except grpc.RpcError as error:
            code: grpc.StatusCode = error.code()
        else:
            raise AssertionError("an unknown SKU was found")
    return item, items, code


async def test_grpcio_calls_the_new_service_on_greets_server(
    inventory_server: GreetServer,
) -> None:
    inventory = project_module("inventory.v1")
    item, items, code = await asyncio.to_thread(grpcio_calls, inventory_server.target, inventory)
    assert (item.sku, item.quantity) == ("A-1", 120)
    assert [each.sku for each in items] == ["A-1", "C-3"]
    assert code == grpc.StatusCode.NOT_FOUND


async def test_health_answers_for_the_new_service_and_metrics_label_it(
    inventory_server: GreetServer,
) -> None:
    assert inventory_server.service_names == (SERVICE,)
    await call_inventory(inventory_server.target)
    channel = TransportChannel(*inventory_server.address)
    try:
        health = HealthStub(channel)
        for name in ("", SERVICE):
            reply = await health.Check(HealthCheckRequest(service=name), timeout=10)
            assert reply.status == HealthCheckResponse.SERVING
        with pytest.raises(GRPCError) as unknown:
            await health.Check(HealthCheckRequest(service="greet_service.GreetService"))
        assert unknown.value.status == Status.NOT_FOUND
    finally:
        channel.close()
    assert inventory_server.metrics is not None
    registry = inventory_server.metrics.registry
    labels = {"grpc_service": SERVICE, "grpc_method": "GetItem", "grpc_type": "unary"}
    assert registry.get_sample_value("grpc_server_started_total", labels) == 1


async def test_greet_service_and_yours_on_one_server_each_described_and_checked(
    project: Path,
) -> None:
    servicer = project_module("inventory_service").InventoryService()
    server = GreetServer(ServerConfig(port=0), services=[GreetService(), servicer])
    await server.start(sock=bound_socket())
    try:
        requests: dict[str, list[dict[str, Any]]] = {
            "GetItem": [{"sku": "A-1"}],
            "ListItems": [{"minQuantity": 100}],
        }
        out = await describe_and_call(server.target, SERVICE, requests)
        assert {SERVICE, "greet_service.GreetService"} <= set(out["services"])
        assert out["calls"]["GetItem"]["replies"] == [
            {"sku": "A-1", "name": "bolts", "quantity": 120}
        ]
        channel = TransportChannel(*server.address)
        try:
            health = HealthStub(channel)
            for name in ("", SERVICE, "greet_service.GreetService"):
                reply = await health.Check(HealthCheckRequest(service=name), timeout=10)
                assert reply.status == HealthCheckResponse.SERVING
        finally:
            channel.close()
    finally:
        await server.stop()


async def test_tokens_guard_your_service_as_they_guard_greet_service(
    project: Path, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("s3cret\n")
    servicer = project_module("inventory_service").InventoryService()
    server = GreetServer(ServerConfig(port=0, auth_token_file=tokens), services=[servicer])
    await server.start(sock=bound_socket())
    inventory = project_module("inventory.v1")
    channel = TransportChannel(*server.address)
    try:
        stub = inventory.InventoryServiceStub(channel, timeout=10)
        with pytest.raises(GRPCError) as refused:
            await stub.get_item(inventory.GetItemRequest(sku="A-1"))
        assert refused.value.status == Status.UNAUTHENTICATED
        token = {"authorization": "Bearer s3cret"}
        item = await stub.get_item(inventory.GetItemRequest(sku="A-1"), metadata=token)
        assert item.quantity == 120
    finally:
        channel.close()
        await server.stop()


class HandWritten:
    """A grpclib servicer written by hand: no generated base class, so no descriptor set."""

    def __mapping__(self) -> dict[str, Any]:
        return {f"/{SERVICE}/GetItem": None}


def test_a_service_without_a_descriptor_set_is_described_from_one_given(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="greet.server"):
        with_reflection([HandWritten()])
    assert f"reflection cannot describe {SERVICE}: no descriptor_set.binpb" in caplog.text
    caplog.clear()
    given = load_descriptor_set(project / "generated" / "inventory" / "v1" / "descriptor_set.binpb")
    with caplog.at_level(logging.WARNING, logger="greet.server"):
        with_reflection([HandWritten()], [given])
    assert caplog.text == ""


NAMING_GREET_SERVICE = ("greet/service.py", "greet/client/", "greet/examples/")
"""The runtime code that may name greet_service: GreetService, its client face, examples."""


def docstrings(tree: ast.AST) -> set[int]:
    """The ids of the docstring nodes of a module, its classes and functions."""
    found: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            found.add(id(body[0].value))
    return found


def test_the_runtime_names_greet_service_only_in_greet_service_and_its_client() -> None:
    naming = []
    for path in sorted((ROOT / "greet").rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        if name.startswith(NAMING_GREET_SERVICE):
            continue
        tree = ast.parse(path.read_text())
        skip = docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            elif isinstance(node, ast.Constant) and id(node) not in skip:
                modules = [node.value] if isinstance(node.value, str) else []
            else:
                continue
            naming += [f"{name}:{node.lineno}" for m in modules if "greet_service" in m]
    assert naming == []


# --- codegen -------------------------------------------------------------------------------------


def test_codegen_writes_a_typed_package_with_its_descriptor_set(project: Path) -> None:
    package = project / "generated" / "inventory" / "v1"
    assert (package / "descriptor_set.binpb").is_file()
    assert (project / "generated" / "inventory" / "py.typed").is_file()
    assert "class InventoryServiceStub" in (package / "__init__.py").read_text()


def test_codegen_check_finds_a_stale_folder_and_codegen_rewrites_it_whole(project: Path) -> None:
    env = dict(os.environ)
    check = run(project, env, "-m", "greet.codegen", "proto", "generated", "--check")
    assert check.returncode == 0, check.stderr
    changed = project / "changed"
    (changed / "proto").mkdir(parents=True)
    proto = FILES["proto/inventory.proto"].replace("int32 quantity = 3;", "int32 quantity = 4;")
    (changed / "proto" / "inventory.proto").write_text(proto)
    shutil.copytree(project / "generated", changed / "generated")
    (changed / "generated" / "inventory" / "v0.py").write_text("# left from an older proto")
    done = run(changed, env, "-m", "greet.codegen", "proto", "generated", "--check")
    assert done.returncode == 1
    assert "differs: inventory/v1/__init__.py" in done.stderr
    assert "differs: inventory/v1/descriptor_set.binpb" in done.stderr
    assert "extra: inventory/v0.py" in done.stderr
    done = run(changed, env, "-m", "greet.codegen", "proto", "generated")
    assert done.returncode == 0, done.stderr
    assert not (changed / "generated" / "inventory" / "v0.py").exists()
    done = run(changed, env, "-m", "greet.codegen", "proto", "generated", "--check")
    assert done.returncode == 0, done.stderr


def test_codegen_says_what_is_wrong_with_its_input(tmp_path: Path) -> None:
    env = dict(os.environ)
    done = run(tmp_path, env, "-m", "greet.codegen", "nowhere", "out")
    assert (done.returncode, done.stderr) == (1, "greet.codegen: nowhere: not a folder\n")
    (tmp_path / "proto").mkdir()
    done = run(tmp_path, env, "-m", "greet.codegen", "proto", "out")
    assert (done.returncode, done.stderr) == (1, "greet.codegen: proto: no .proto files\n")
    (tmp_path / "proto" / "broken.proto").write_text('syntax = "proto3";\nmessage {\n')
    done = run(tmp_path, env, "-m", "greet.codegen", "proto", "out")
    assert done.returncode == 1
    assert "broken.proto:2" in done.stderr
    assert "greet.codegen: protoc failed" in done.stderr
    for out, problem in ((".", "it holds the working directory"), ("..", "it holds")):
        done = run(tmp_path / "proto", env, "-m", "greet.codegen", ".", out)
        assert done.returncode == 1
        assert f"not a folder for generated code alone ({problem}" in done.stderr
    assert (tmp_path / "proto" / "broken.proto").exists()


def test_the_codegen_extra_pins_what_the_codegen_group_pins() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()  # (tomllib is Python 3.11+)
    extra, group = re.findall(r"^codegen = \[\n(.*?)^\]", pyproject, re.M | re.S)
    assert extra == group
    requirements = re.findall(r'^    "([^"]+)",$', extra, re.M)
    assert len(requirements) == 4
    assert all("==" in requirement for requirement in requirements)


# --- naming the services -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("inventory_service", "--service: must be MODULE:ATTR"),
        ("no_such_module:Service", "--service no_such_module:Service: cannot import"),
        ("inventory_service:Nope", "--service inventory_service:Nope: inventory_service has no"),
        ("stock:STOCK", "STOCK is neither a servicer class, a function returning servicers"),
    ],
)
def test_a_service_flag_that_names_nothing_to_serve_is_a_usage_error(
    project: Path, spec: str, message: str
) -> None:
    env = {**os.environ, "PYTHONPATH": "generated"}
    done = run(project, env, "-m", "greet.server", "--service", spec, "--port", "0")
    assert done.returncode == 2
    assert message in done.stderr


def test_greet_service_variable_lists_services_comma_separated() -> None:
    both = "greet.service:GreetService, greet.service:GreetService"
    config = parse_config([], environ={"GREET_SERVICE": both})
    assert config.services == ("greet.service:GreetService", "greet.service:GreetService")
    flags = ["--service", "greet.service:GreetService", "--service", "greet.service:ERROR_DOMAIN"]
    with pytest.raises(SystemExit):  # a string is nothing to serve
        parse_config(flags, environ={})
    assert len(make_services(config.services)) == 2


async def test_without_services_the_server_serves_greet_service() -> None:
    server = GreetServer(ServerConfig())
    assert server.service_names == ("greet_service.GreetService",)
    assert isinstance(server.services[0], GreetService)


async def test_a_service_given_twice_or_backend_with_services_is_refused() -> None:
    with pytest.raises(ValueError, match="a service is given twice"):
        GreetServer(ServerConfig(), services=[GreetService(), GreetService()])
    with pytest.raises(ValueError, match="backend= is GreetService's"):
        GreetServer(ServerConfig(), services=[GreetService()], backend=GreetService().greeter)
    with pytest.raises(ValueError, match="nothing to serve"):
        GreetServer(ServerConfig(), services=[])


def greet_services() -> list[GreetService]:
    return [GreetService()]


NOT_A_SERVICER = 42


def test_a_factory_may_return_a_list_and_must_return_servicers() -> None:
    [made] = make_services([f"{__name__}:greet_services"])
    assert service_names(made) == ("greet_service.GreetService",)
    with pytest.raises(ConfigError, match="neither a servicer class"):
        make_services([f"{__name__}:NOT_A_SERVICER"])


def test_the_error_domain_is_the_service_that_refused() -> None:
    violation = Violation("NAME_TOO_LONG", "sku", 3, 5, "--max-sku-chars")
    error = to_grpc_error(LimitExceeded("too long", violation=violation), domain=SERVICE)
    infos = [detail for detail in error.details or () if isinstance(detail, ErrorInfo)]
    assert [info.domain for info in infos] == [SERVICE]
