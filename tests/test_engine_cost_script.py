"""benchmarks/engine_cost.py measures what it says: every exchange it times completes (the request
reaches the server, the reply and its trailers reach the client, both ends see the stream close),
on both engines."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from greet.transport import ENGINE_NAMES, EngineName

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "engine_cost.py"


def engine_cost() -> ModuleType:
    spec = importlib.util.spec_from_file_location("engine_cost", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize("messages", [0, 300])
def test_every_timed_exchange_completes(engine: EngineName, messages: int) -> None:
    script = engine_cost()
    client, server = script.peers(engine, messages)
    total, server_side = script.exchanges(client.engine, server.engine, 25)
    assert total >= server_side >= 0
    assert server.received == 25 * len(script.REQUEST_BODY)
    assert client.received == 25 * max(messages, 1) * len(script.REPLY_BODY)
    assert server.closed == client.closed == 25
