"""When and how soon a failed call is tried again: RetryPolicy, RetryThrottling and RetryBudget.

The rules follow gRPC's own retry design (gRFC A6); which methods get which policy is the
service config's job (greet.client.service_config):

- Only `RetryPolicy.retryable_statuses` are retried; by default UNAVAILABLE alone, the status of
  "the call was not served: connection refused, reset, GOAWAY, no endpoint, 502/503/504 from a
  proxy". DEADLINE_EXCEEDED is never retried (the caller's time is spent and the server may still
  be working), RESOURCE_EXHAUSTED is not (retrying an overloaded server or a too-large message
  makes things worse), nor INTERNAL/UNKNOWN (bugs do not fix themselves) nor the client's own
  mistakes (INVALID_ARGUMENT, UNAUTHENTICATED, ...). Every GreetService call is idempotent, so a
  retried call that did reach a server before its connection broke is harmless.
- The pause before attempt n+1 is `initial_backoff * multiplier**(n-1)`, capped at `max_backoff`,
  multiplied by a random factor in [1 - jitter, 1 + jitter] so clients do not retry in lockstep.
- A RetryBudget (gRPC's retryThrottling token bucket) is shared by all calls of one client: every
  failed attempt with a retryable status takes one token, every successful call gives back
  `token_ratio`; while the tokens are at or below half of `max_tokens`, failed calls are not
  retried. In an outage the extra load from retries is thus bounded by about `max_tokens / 2`
  attempts, then by `token_ratio` times the successful calls.
- An attempt the server did not process (greet.transport: StreamRefused, NotProcessed) is
  retried once per call at once, whatever the policy (A6's transparent retry): no backoff, no
  token, not counted in `max_attempts`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from grpclib.const import Status

__all__ = ["DEFAULT_RETRYABLE_STATUSES", "RetryBudget", "RetryPolicy", "RetryThrottling"]

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


class RetryBudget:
    """The live token bucket of a RetryThrottling, shared by every call of one client.

    Without a RetryThrottling (a service config with no retryThrottling) retries are never
    throttled.
    """

    def __init__(self, throttling: RetryThrottling | None) -> None:
        self.throttled = throttling is not None
        self.max_tokens = throttling.max_tokens if throttling is not None else 0.0
        self.token_ratio = throttling.token_ratio if throttling is not None else 0.0
        self.tokens = self.max_tokens
        self.threshold = self.max_tokens / 2

    def record_success(self) -> None:
        if self.tokens < self.max_tokens:
            self.tokens = min(self.max_tokens, self.tokens + self.token_ratio)

    def record_failure(self) -> None:
        self.tokens = max(0.0, self.tokens - 1)

    @property
    def allows_retry(self) -> bool:
        return not self.throttled or self.tokens > self.threshold
