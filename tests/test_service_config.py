"""The service config: grpc-go's JSON form read into typed, frozen dataclasses, validated as
gRFC A6 says, and the lookup of a method's policy (method, then service, then default)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from grpclib.const import Status

from greet.client import (
    GreetClient,
    MethodConfig,
    MethodName,
    RetryPolicy,
    RetryThrottling,
    ServiceConfig,
)

SERVICE = "greet_service.GreetService"
SAY_HELLO = f"/{SERVICE}/SayHello"
SERVER_STREAMING = f"/{SERVICE}/SayHelloServerStreaming"

POLICY = {
    "maxAttempts": 3,
    "initialBackoff": "0.1s",
    "maxBackoff": "1.5s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"],
}


def config_with(policy: dict[str, Any]) -> dict[str, Any]:
    return {"methodConfig": [{"name": [{"service": SERVICE}], "retryPolicy": policy}]}


def test_a_grpc_go_service_config_becomes_typed_config() -> None:
    text = json.dumps(
        {
            "methodConfig": [
                {"name": [{"service": SERVICE, "method": "SayHello"}], "retryPolicy": POLICY},
                {"name": [{"service": "other.Service"}, {}]},
            ],
            "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1},
        }
    )
    assert ServiceConfig.from_json(text) == ServiceConfig(
        method_configs=(
            MethodConfig(
                names=(MethodName(SERVICE, "SayHello"),),
                retry_policy=RetryPolicy(
                    max_attempts=3,
                    initial_backoff=0.1,
                    max_backoff=1.5,
                    multiplier=2.0,
                    retryable_statuses=frozenset({Status.UNAVAILABLE, Status.RESOURCE_EXHAUSTED}),
                ),
            ),
            MethodConfig(names=(MethodName("other.Service"), MethodName())),
        ),
        retry_throttling=RetryThrottling(max_tokens=10, token_ratio=0.1),
    )


def test_the_dict_and_the_text_give_the_same_config() -> None:
    config = config_with(POLICY)
    assert ServiceConfig.from_json(config) == ServiceConfig.from_json(json.dumps(config))
    assert ServiceConfig.from_json(json.dumps(config).encode()) == ServiceConfig.from_json(config)


def test_max_attempts_above_five_is_taken_as_five() -> None:
    config = ServiceConfig.from_json(config_with({**POLICY, "maxAttempts": 50}))
    policy = config.retry_policy(SAY_HELLO)
    assert policy is not None
    assert policy.max_attempts == 5


def test_proto_field_names_and_status_numbers_are_accepted() -> None:
    snake = {
        "method_config": [
            {
                "name": [{"service": SERVICE}],
                "retry_policy": {
                    "max_attempts": 2,
                    "initial_backoff": "0.000001s",
                    "max_backoff": "3s",
                    "backoff_multiplier": 1.5,
                    "retryable_status_codes": [14, "ABORTED"],
                },
            }
        ],
        "retry_throttling": {"max_tokens": 1000, "token_ratio": 2},
    }
    config = ServiceConfig.from_json(snake)
    policy = config.retry_policy(SAY_HELLO)
    assert policy is not None
    assert (policy.max_attempts, policy.initial_backoff, policy.max_backoff) == (2, 1e-6, 3.0)
    assert policy.retryable_statuses == {Status.UNAVAILABLE, Status.ABORTED}
    assert config.retry_throttling == RetryThrottling(max_tokens=1000, token_ratio=2)


def test_lookup_prefers_the_method_then_the_service_then_the_default() -> None:
    by_method = RetryPolicy(max_attempts=2)
    by_service = RetryPolicy(max_attempts=3)
    by_default = RetryPolicy(max_attempts=4)
    config = ServiceConfig(
        method_configs=(
            MethodConfig((MethodName(),), by_default),
            MethodConfig((MethodName(SERVICE),), by_service),
            MethodConfig((MethodName(SERVICE, "SayHello"),), by_method),
        )
    )
    assert config.retry_policy(SAY_HELLO) is by_method
    assert config.retry_policy(SERVER_STREAMING) is by_service
    assert config.retry_policy("/other.Service/Call") is by_default
    assert ServiceConfig().retry_policy(SAY_HELLO) is None


def test_a_method_config_without_retry_policy_turns_retries_off_for_its_methods() -> None:
    config = ServiceConfig(
        method_configs=(
            MethodConfig((MethodName(),), RetryPolicy()),
            MethodConfig((MethodName(SERVICE, "SayHello"),)),
        )
    )
    assert config.retry_policy(SAY_HELLO) is None
    assert config.retry_policy(SERVER_STREAMING) == RetryPolicy()


def test_uniform_is_todays_default_every_method_with_the_policy_and_its_budget() -> None:
    config = ServiceConfig.uniform(RetryPolicy(max_attempts=7))
    assert config.retry_policy(SAY_HELLO) == RetryPolicy(max_attempts=7)
    assert config.retry_throttling == RetryThrottling()
    budget = RetryThrottling(max_tokens=3)
    assert ServiceConfig.uniform(RetryPolicy(throttling=budget)).retry_throttling == budget


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("{", "service config: not JSON"),
        ([], "service config must be a JSON object, not list"),
        (
            {"loadBalancingConfig": []},
            "service config has an unsupported field 'loadBalancingConfig' "
            "(greet reads methodConfig, retryThrottling)",
        ),
        ({"methodConfig": {}}, "methodConfig must be a JSON array"),
        ({"methodConfig": [{}]}, "methodConfig[0] needs a name"),
        ({"methodConfig": [{"name": []}]}, "methodConfig[0].name must name at least one"),
        (
            {"methodConfig": [{"name": [{}], "timeout": "1s"}]},
            "methodConfig[0] has an unsupported field 'timeout' (greet reads name, retryPolicy)",
        ),
        (
            {"methodConfig": [{"name": [{"method": "SayHello"}]}]},
            "methodConfig[0].name[0] a method name ('SayHello') needs its service",
        ),
        (
            {"methodConfig": [{"name": [{"service": 1}]}]},
            "methodConfig[0].name[0].service must be a string",
        ),
        (
            {"methodConfig": [{"name": [{}]}, {"name": [{}]}]},
            "service config: {} (every method) is named by two method configs",
        ),
        (
            config_with({k: v for k, v in POLICY.items() if k != "maxBackoff"}),
            "retryPolicy needs maxBackoff (gRFC A6: every field is required)",
        ),
        (
            config_with({**POLICY, "maxAttempts": 1}),
            "retryPolicy.maxAttempts must be an integer of at least 2, not 1",
        ),
        (
            config_with({**POLICY, "maxAttempts": 2.5}),
            "retryPolicy.maxAttempts must be an integer of at least 2, not 2.5",
        ),
        (config_with({**POLICY, "initialBackoff": "0s"}), "initialBackoff must be above 0"),
        (config_with({**POLICY, "initialBackoff": 0.1}), 'must be a duration such as "0.1s"'),
        (config_with({**POLICY, "maxBackoff": "-1s"}), 'must be a duration such as "0.1s"'),
        (config_with({**POLICY, "initialBackoff": "2s"}), "(2s) is above maxBackoff (1.5s)"),
        (
            config_with({**POLICY, "backoffMultiplier": 0}),
            "backoffMultiplier must be a number above 0, not 0",
        ),
        (
            config_with({**POLICY, "retryableStatusCodes": []}),
            "retryableStatusCodes must list at least one status code",
        ),
        (
            config_with({**POLICY, "retryableStatusCodes": ["Unavailable"]}),
            "retryableStatusCodes[0] 'Unavailable' is not a status code",
        ),
        (
            config_with({**POLICY, "retryableStatusCodes": [17]}),
            "retryableStatusCodes[0] 17 is not a status code",
        ),
        (config_with({**POLICY, "hedgingDelay": "1s"}), "unsupported field 'hedgingDelay'"),
        (
            {"retryThrottling": {"maxTokens": 0, "tokenRatio": 1}},
            "retryThrottling.maxTokens must be a number in (0, 1000], not 0",
        ),
        (
            {"retryThrottling": {"maxTokens": 1001, "tokenRatio": 1}},
            "retryThrottling.maxTokens must be a number in (0, 1000], not 1001",
        ),
        ({"retryThrottling": {"maxTokens": 10}}, "retryThrottling needs tokenRatio"),
        (
            {"retryThrottling": {"maxTokens": 10, "tokenRatio": -1}},
            "retryThrottling.tokenRatio must be a number above 0, not -1",
        ),
        (
            {"retryThrottling": {"maxTokens": 10, "tokenRatio": 1, "max_tokens": 3}},
            "retryThrottling maxTokens is given twice",
        ),
    ],
)
def test_invalid_service_configs_are_refused_naming_the_field(config: Any, message: str) -> None:
    text = config if isinstance(config, str) else json.dumps(config)
    with pytest.raises(ValueError, match=r"^service config") as refused:
        ServiceConfig.from_json(text)
    assert message in str(refused.value)


def test_typed_configs_are_checked_too() -> None:
    with pytest.raises(ValueError, match="needs its service"):
        MethodName(method="SayHello")
    with pytest.raises(ValueError, match="at least one name"):
        MethodConfig(names=())
    with pytest.raises(ValueError, match=r"set ServiceConfig\.retry_throttling"):
        MethodConfig((MethodName(),), RetryPolicy(throttling=RetryThrottling()))
    with pytest.raises(ValueError, match="named by two method configs"):
        ServiceConfig((MethodConfig((MethodName(SERVICE),)), MethodConfig((MethodName(SERVICE),))))
    with pytest.raises(ValueError, match="Status members"):
        RetryPolicy(retryable_statuses=frozenset({14}))  # type: ignore[arg-type]


async def test_the_client_takes_a_json_service_config_and_refuses_a_bad_one() -> None:
    client = GreetClient("127.0.0.1:1", service_config=json.dumps(config_with(POLICY)))
    policy = client.service_config.retry_policy(SAY_HELLO)
    assert policy is not None
    assert policy.max_attempts == 3
    client.close()
    with pytest.raises(ValueError, match="maxAttempts must be an integer of at least 2"):
        GreetClient("127.0.0.1:1", service_config=config_with({**POLICY, "maxAttempts": 0}))
    with pytest.raises(ValueError, match="not both"):
        GreetClient("127.0.0.1:1", retry=RetryPolicy(), service_config=ServiceConfig())
