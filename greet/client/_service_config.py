"""Which methods are retried how: RetryPolicy, RetryThrottling and a service config shaped
like grpc-go's.

    config = ServiceConfig(
        method_configs=(
            MethodConfig(
                names=(MethodName("greet_service.GreetService", "SayHello"),),
                retry_policy=RetryPolicy(max_attempts=3),
            ),
        ),
        retry_throttling=RetryThrottling(max_tokens=10, token_ratio=0.1),
    )
    config = ServiceConfig.from_json('{"methodConfig": [...], "retryThrottling": {...}}')
    client = GreetClient(targets, service_config=config)   # or the JSON text, or its dict

A call's policy is that of the MethodConfig naming its method, looked up as grpc-go does: the
exact `service/method`, else the service (a name with no method), else the default (a name with
neither); a method no MethodConfig names, or one whose MethodConfig has no retry policy, is not
retried (except A6's transparent retry, below). `retry_throttling` is the retry budget of the
whole client; None: retries are not throttled. A client looks each method's policy up once
(MethodPolicies), not on every call.

Without a service config a client retries every method with `GreetClient(retry=...)`, by default
RetryPolicy(), with its throttling (by default RetryThrottling()): `ServiceConfig.uniform(policy)`.

`ServiceConfig.from_json` reads grpc-go's JSON form (lowerCamelCase field names, or the proto
names in snake_case) and validates it as gRFC A6 says: a retryPolicy needs every field,
maxAttempts of at least 2 (above 5 it is taken as 5, gRPC's cap), backoffs above 0 (durations
as proto JSON writes them, "0.1s"), a backoffMultiplier above 0 and at least one known status
code (a name such as "UNAVAILABLE", or its number); retryThrottling needs maxTokens in (0, 1000]
and a tokenRatio above 0. A name is named once only. greet also refuses an initialBackoff above
maxBackoff and every field it does not implement (timeout, waitForReady, hedgingPolicy,
loadBalancingConfig, ...), so that no setting is silently ignored. Each refusal is a ValueError
that names the field.

A RetryPolicy follows gRPC's own retry design (gRFC A6):

- Only `RetryPolicy.retryable_statuses` are retried; by default UNAVAILABLE alone, the status of
  "the call was not served: connection refused, reset, GOAWAY, no endpoint, 502/503/504 from a
  proxy". DEADLINE_EXCEEDED is never retried (the caller's time is spent and the server may still
  be working), RESOURCE_EXHAUSTED is not (retrying an overloaded server or a too-large message
  makes things worse), nor INTERNAL/UNKNOWN (bugs do not fix themselves) nor the client's own
  mistakes (INVALID_ARGUMENT, UNAUTHENTICATED, ...). Every GreetService call is idempotent, so a
  retried call that did reach a server before its connection broke is harmless.
- The pause before attempt n+1 is `initial_backoff * multiplier**(n-1)`, capped at `max_backoff`,
  multiplied by a random factor in [1 - jitter, 1 + jitter] so clients do not retry in lockstep.
- The retry budget (gRPC's retryThrottling token bucket, sized by RetryThrottling; its live
  tokens are greet.client._attempts' RetryBudget) is shared by all calls of one client: every
  failed attempt with a retryable status takes one token, every successful call gives back
  `token_ratio`; while the tokens are at or below half of `max_tokens`, failed calls are not
  retried. In an outage the extra load from retries is thus bounded by about `max_tokens / 2`
  attempts, then by `token_ratio` times the successful calls.
- An attempt the server did not process (REFUSED_STREAM, or a GOAWAY that left it out) is
  retried once per call at once, whatever the policy (A6's transparent retry): no backoff, no
  token, not counted in `max_attempts`.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from grpclib.const import Status

__all__ = [
    "DEFAULT_RETRYABLE_STATUSES",
    "MethodConfig",
    "MethodName",
    "MethodPolicies",
    "RetryPolicy",
    "RetryThrottling",
    "ServiceConfig",
]


DEFAULT_RETRYABLE_STATUSES = frozenset({Status.UNAVAILABLE})


@dataclass(frozen=True)
class RetryThrottling:
    """The retry budget's size (gRPC's `retryThrottling` service-config field).

    The default of 100 tokens lets a client retry every call that was in flight on one replica
    when that replica dies (a 32-call bench over three replicas loses about 11 at once); gRPC
    allows up to 1000. `max_tokens=0` disables retries altogether.
    """

    max_tokens: float = 100.0
    token_ratio: float = 0.1

    def __post_init__(self) -> None:
        if not 0 <= self.max_tokens <= 1000:
            raise ValueError("max_tokens must be 0..1000")
        if not self.token_ratio > 0:
            raise ValueError("token_ratio must be greater than 0")


@dataclass(frozen=True)
class RetryPolicy:
    """How a client retries failed calls of a method (the module docstring has the rules).

    `max_attempts` counts the first attempt (1: never retry); unlike a JSON service config,
    whose maxAttempts gRPC caps at 5, a policy built here is taken as given. `multiplier` is
    gRPC's backoffMultiplier; `jitter` is greet's own (gRPC draws the pause at random below the
    backoff). `replay_buffer_messages` is how many request messages of a client- or
    bidi-streaming call are kept so the call can be replayed on another endpoint; a call that
    has sent more than that (or has received a reply) is committed and no longer retried.

    `throttling` applies when the policy is the client's `retry=` (the policy of every method):
    it is then the client's retry budget (None: RetryThrottling()). In a ServiceConfig the budget
    is `ServiceConfig.retry_throttling`, and a method's policy leaves this None.
    """

    max_attempts: int = 5
    initial_backoff: float = 0.02
    max_backoff: float = 1.0
    multiplier: float = 2.0
    jitter: float = 0.2
    retryable_statuses: frozenset[Status] = DEFAULT_RETRYABLE_STATUSES
    throttling: RetryThrottling | None = None
    replay_buffer_messages: int = 1000

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0 < self.initial_backoff <= self.max_backoff:
            raise ValueError("backoffs must satisfy 0 < initial_backoff <= max_backoff")
        if not self.multiplier > 0:
            raise ValueError("multiplier must be greater than 0")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        if self.replay_buffer_messages < 0:
            raise ValueError("replay_buffer_messages must not be negative")
        statuses = frozenset(self.retryable_statuses)
        unknown = [status for status in statuses if not isinstance(status, Status)]
        if unknown:
            raise ValueError(f"retryable_statuses must be grpclib Status members, not {unknown}")
        object.__setattr__(self, "retryable_statuses", statuses)

    def backoff(self, failed_attempts: int) -> float:
        """Seconds to wait after `failed_attempts` failed attempts (>= 1), jittered."""
        growth = self.multiplier ** (failed_attempts - 1)
        base = min(self.initial_backoff * growth, self.max_backoff)
        return base * random.uniform(1 - self.jitter, 1 + self.jitter)

    def retries(self, status: Status) -> bool:
        return status in self.retryable_statuses


@dataclass(frozen=True, order=True)
class MethodName:
    """Which methods a MethodConfig applies to: one method, every method of a service (no
    `method`), or every method (neither). `service` is the full name,
    `greet_service.GreetService`."""

    service: str = ""
    method: str = ""

    def __post_init__(self) -> None:
        if not self.service and self.method:
            raise ValueError(f"a method name ({self.method!r}) needs its service")
        if "/" in self.service or "/" in self.method:
            raise ValueError("service and method are names, not paths: no '/'")

    @property
    def key(self) -> str:
        """The lookup key: `/service/method`, `/service/` or `` (the default), as grpc-go's."""
        if not self.service:
            return ""
        return f"/{self.service}/{self.method}"


@dataclass(frozen=True)
class MethodConfig:
    """The retry policy of the methods `names` names (None: those methods are not retried)."""

    names: tuple[MethodName, ...]
    retry_policy: RetryPolicy | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(self.names))
        if not self.names:
            raise ValueError("a MethodConfig needs at least one name")
        if self.retry_policy is not None and self.retry_policy.throttling is not None:
            raise ValueError(
                "retry throttling is one budget per client: set ServiceConfig.retry_throttling, "
                "not RetryPolicy.throttling"
            )


@dataclass(frozen=True)
class ServiceConfig:
    """The methodConfig list and the retryThrottling of a client (see the module docstring)."""

    method_configs: tuple[MethodConfig, ...] = ()
    retry_throttling: RetryThrottling | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "method_configs", tuple(self.method_configs))
        seen: set[str] = set()
        for config in self.method_configs:
            for name in config.names:
                if name.key in seen:
                    raise ValueError(
                        f"{name.key or '{} (every method)'} is named by two method configs"
                    )
                seen.add(name.key)
        self._by_key: dict[str, MethodConfig]
        object.__setattr__(
            self,
            "_by_key",
            {name.key: config for config in self.method_configs for name in config.names},
        )

    @classmethod
    def uniform(cls, policy: RetryPolicy) -> ServiceConfig:
        """Every method retried with `policy`, its throttling the client's budget."""
        return cls(
            method_configs=(MethodConfig((MethodName(),), replace(policy, throttling=None)),),
            retry_throttling=policy.throttling or RetryThrottling(),
        )

    @classmethod
    def from_json(cls, config: str | bytes | Mapping[str, Any]) -> ServiceConfig:
        """A grpc-go service config: its JSON text or the dict json.loads made of it.

        Reads `methodConfig` (each `name` and `retryPolicy`) and `retryThrottling`; any other
        field, and any value gRFC A6 does not allow, is refused with a ValueError naming it.
        """
        return parse_service_config(config)

    def method_config(self, path: str) -> MethodConfig | None:
        """The MethodConfig of a method path (`/service/Method`), or None."""
        by_key = self._by_key
        config = by_key.get(path)
        if config is None:
            config = by_key.get(path[: path.rfind("/") + 1])
        if config is None:
            config = by_key.get("")
        return config

    def retry_policy(self, path: str) -> RetryPolicy | None:
        """The retry policy of a method path, or None (not retried)."""
        config = self.method_config(path)
        return None if config is None else config.retry_policy


class MethodPolicies(dict[str, RetryPolicy | None]):
    """The retry policy of each method path (None: not retried), looked up in `config` once per
    path, so that a call reads it from this dict."""

    def __init__(self, config: ServiceConfig) -> None:
        super().__init__()
        self.config = config

    def __missing__(self, path: str) -> RetryPolicy | None:
        policy = self[path] = self.config.retry_policy(path)
        return policy


# -- the JSON form -------------------------------------------------------------------------------

MAX_ATTEMPTS_CAP = 5
"""gRPC's cap on a service config's maxAttempts (gRFC A6)."""

DURATION = re.compile(r"(\d+)(?:\.(\d{1,9}))?s")
"""A google.protobuf.Duration in proto JSON: seconds with up to nine decimals and an `s`."""

STATUS_NAMES = {status.name: status for status in Status}


def parse_service_config(config: str | bytes | Mapping[str, Any]) -> ServiceConfig:
    """ServiceConfig.from_json (see the module docstring)."""
    if isinstance(config, (str, bytes)):
        try:
            config = json.loads(config)
        except ValueError as error:
            raise ValueError(f"service config: not JSON: {error}") from None
    fields = _fields(config, "", ("methodConfig", "retryThrottling"))
    configs = _list(fields.get("methodConfig", []), "methodConfig")
    method_configs = tuple(
        _method_config(each, f"methodConfig[{index}]") for index, each in enumerate(configs)
    )
    throttling = None
    if "retryThrottling" in fields:
        throttling = _retry_throttling(fields["retryThrottling"], "retryThrottling")
    try:
        return ServiceConfig(method_configs, throttling)
    except ValueError as error:
        raise ValueError(f"service config: {error}") from None


def _method_config(value: object, where: str) -> MethodConfig:
    fields = _fields(value, where, ("name", "retryPolicy"))
    if "name" not in fields:
        raise _invalid(where, "needs a name")
    names = _list(fields["name"], f"{where}.name")
    if not names:
        raise _invalid(f"{where}.name", "must name at least one method")
    policy = None
    if "retryPolicy" in fields:
        policy = _retry_policy(fields["retryPolicy"], f"{where}.retryPolicy")
    return MethodConfig(
        tuple(_method_name(name, f"{where}.name[{index}]") for index, name in enumerate(names)),
        policy,
    )


def _method_name(value: object, where: str) -> MethodName:
    fields = _fields(value, where, ("service", "method"))
    service = _string(fields.get("service", ""), f"{where}.service")
    method = _string(fields.get("method", ""), f"{where}.method")
    try:
        return MethodName(service, method)
    except ValueError as error:
        raise _invalid(where, str(error)) from None


RETRY_POLICY_FIELDS = (
    "maxAttempts",
    "initialBackoff",
    "maxBackoff",
    "backoffMultiplier",
    "retryableStatusCodes",
)


def _retry_policy(value: object, where: str) -> RetryPolicy:
    fields = _fields(value, where, RETRY_POLICY_FIELDS)
    missing = [name for name in RETRY_POLICY_FIELDS if name not in fields]
    if missing:
        raise _invalid(where, f"needs {', '.join(missing)} (gRFC A6: every field is required)")
    attempts = fields["maxAttempts"]
    if not _is_integer(attempts) or attempts < 2:
        raise _invalid(
            f"{where}.maxAttempts", f"must be an integer of at least 2, not {attempts!r}"
        )
    initial = _duration(fields["initialBackoff"], f"{where}.initialBackoff")
    maximum = _duration(fields["maxBackoff"], f"{where}.maxBackoff")
    if initial > maximum:
        raise _invalid(
            f"{where}.initialBackoff", f"({initial:g}s) is above maxBackoff ({maximum:g}s)"
        )
    multiplier = fields["backoffMultiplier"]
    if not _is_number(multiplier) or not multiplier > 0:
        raise _invalid(
            f"{where}.backoffMultiplier", f"must be a number above 0, not {multiplier!r}"
        )
    codes = _list(fields["retryableStatusCodes"], f"{where}.retryableStatusCodes")
    if not codes:
        raise _invalid(f"{where}.retryableStatusCodes", "must list at least one status code")
    statuses = frozenset(
        _status(code, f"{where}.retryableStatusCodes[{index}]") for index, code in enumerate(codes)
    )
    return RetryPolicy(
        max_attempts=min(int(attempts), MAX_ATTEMPTS_CAP),
        initial_backoff=initial,
        max_backoff=maximum,
        multiplier=float(multiplier),
        retryable_statuses=statuses,
    )


def _retry_throttling(value: object, where: str) -> RetryThrottling:
    fields = _fields(value, where, ("maxTokens", "tokenRatio"))
    for name in ("maxTokens", "tokenRatio"):
        if name not in fields:
            raise _invalid(where, f"needs {name}")
    tokens, ratio = fields["maxTokens"], fields["tokenRatio"]
    if not _is_number(tokens) or not 0 < tokens <= 1000:
        raise _invalid(f"{where}.maxTokens", f"must be a number in (0, 1000], not {tokens!r}")
    if not _is_number(ratio) or not ratio > 0:
        raise _invalid(f"{where}.tokenRatio", f"must be a number above 0, not {ratio!r}")
    return RetryThrottling(max_tokens=float(tokens), token_ratio=float(ratio))


def _status(value: object, where: str) -> Status:
    if isinstance(value, str) and value in STATUS_NAMES:
        return STATUS_NAMES[value]
    if _is_integer(value) and value in {status.value for status in Status}:
        return Status(value)
    raise _invalid(
        where, f"{value!r} is not a status code (one of {', '.join(STATUS_NAMES)}, or its number)"
    )


def _duration(value: object, where: str) -> float:
    match = DURATION.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise _invalid(where, f'must be a duration such as "0.1s", not {value!r}')
    seconds = int(match.group(1)) + int((match.group(2) or "0").ljust(9, "0")) / 1e9
    if not seconds > 0:
        raise _invalid(where, f"must be above 0, not {value!r}")
    return seconds


def _fields(value: object, where: str, known: tuple[str, ...]) -> dict[str, Any]:
    """A JSON object's fields under their lowerCamelCase names; unknown fields are refused."""
    if not isinstance(value, Mapping):
        raise _invalid(where, f"must be a JSON object, not {type(value).__name__}")
    by_alias = {_snake_case(name): name for name in known} | {name: name for name in known}
    fields: dict[str, Any] = {}
    for key, item in value.items():
        name = by_alias.get(key) if isinstance(key, str) else None
        if name is None:
            raise _invalid(
                where, f"has an unsupported field {key!r} (greet reads {', '.join(known)})"
            )
        if name in fields:
            raise _invalid(where, f"{name} is given twice")
        fields[name] = item
    return fields


def _list(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise _invalid(where, f"must be a JSON array, not {type(value).__name__}")
    return value


def _string(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise _invalid(where, f"must be a string, not {value!r}")
    return value


def _is_integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _snake_case(name: str) -> str:
    return re.sub(r"[A-Z]", lambda upper: "_" + upper.group().lower(), name)


def _invalid(where: str, problem: str) -> ValueError:
    return ValueError(
        f"service config: {where} {problem}" if where else f"service config {problem}"
    )
