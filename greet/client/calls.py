"""What a GreetClient call is, as its interceptors see it: ClientCall and its ClientAttempts.

A ClientCall is one call of the application (`await client.say_hello()`), over all its
attempts; a ClientAttempt is one try of it on one endpoint. Both are records the runner
(greet.client.attempts) fills in and interceptors (greet.client.interceptors) read:

- before `proceed()`: the method, its kind, the metadata (which an interceptor may add to), the
  deadline; an attempt also its endpoint, its number and whether it is a transparent retry;
- after `proceed()`: how it ended (`status`: OK or the failure's status, `error`: the RpcError
  or None), `elapsed` seconds and the messages sent and received.

A call's message counts are those of its last attempt: a retried attempt sends the requests
again, so these are the call's own requests and replies, not what went over the wire in all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from grpclib.const import Cardinality, Status
from grpclib.metadata import Deadline

from greet.errors import MetadataValue, RpcError

if TYPE_CHECKING:
    from greet.client.failures import Failure
    from greet.client.retry import RetryPolicy

__all__ = ["ClientAttempt", "ClientCall", "Method", "Outcome"]

RequestT = TypeVar("RequestT")
ReplyT = TypeVar("ReplyT")


@dataclass(frozen=True)
class Method(Generic[RequestT, ReplyT]):
    """One RPC of a service: its path, kind and message types."""

    path: str
    kind: Cardinality
    request_type: type[RequestT]
    reply_type: type[ReplyT]

    @property
    def service(self) -> str:
        """The full service name, `greet_service.GreetService`."""
        return self.path[1 : self.path.rfind("/")]

    @property
    def name(self) -> str:
        """The method name, `SayHello`."""
        return self.path[self.path.rfind("/") + 1 :]


class Outcome:
    """How a call or an attempt ended, filled in by the runner (see the module docstring)."""

    status: Status | None
    """None while it runs; OK, or the status of `error`; CANCELLED when the caller ended it
    (cancelled it, stopped reading a stream, or its request source raised)."""

    error: RpcError | None

    def __init__(self) -> None:
        self.status = None
        self.error = None
        self.started_at = time.perf_counter()
        self.ended_at: float | None = None

    @property
    def elapsed(self) -> float:
        """Seconds from its start to its end (to now while it runs)."""
        end = time.perf_counter() if self.ended_at is None else self.ended_at
        return end - self.started_at

    @property
    def ended(self) -> bool:
        return self.status is not None

    def end(self, error: RpcError | None = None) -> None:
        """It ended: OK (no error) or with `error`; the first end counts."""
        if self.status is not None:
            return
        self.ended_at = time.perf_counter()
        self.error = error
        self.status = Status.OK if error is None else error.status

    def end_refused(self, error: RpcError) -> None:
        """An interceptor raised `error`: that is the outcome, whatever it was before."""
        self.status = None
        self.end(error)

    def end_cancelled(self) -> None:
        """The caller ended it (see `status`)."""
        if self.status is None:
            self.ended_at = time.perf_counter()
            self.status = Status.CANCELLED


class ClientCall(Outcome):
    """One call of the application, over all its attempts."""

    def __init__(
        self,
        method: Method[Any, Any],
        metadata: dict[str, MetadataValue],
        deadline: Deadline | None,
        retry_policy: RetryPolicy | None,
    ) -> None:
        super().__init__()
        self.definition = method
        self.metadata = metadata
        """Sent with every attempt; a call interceptor may add to it before `proceed()`."""
        self.deadline = deadline
        """One deadline over all attempts (None: none); an interceptor may set a shorter one."""
        self.retry_policy = retry_policy
        """The policy the service config gives this method (None: not retried)."""
        self.attempts: list[ClientAttempt] = []
        self.replies = 0  # replies handed to the application: the call is committed
        self.transparent_retry_used = False

    @property
    def method(self) -> str:
        """The method path, `/greet_service.GreetService/SayHello`."""
        return self.definition.path

    @property
    def kind(self) -> Cardinality:
        """Unary, server streaming, client streaming or bidi."""
        return self.definition.kind

    @property
    def service(self) -> str:
        return self.definition.service

    @property
    def method_name(self) -> str:
        return self.definition.name

    @property
    def messages_sent(self) -> int:
        return self.attempts[-1].messages_sent if self.attempts else 0

    @property
    def messages_received(self) -> int:
        return self.attempts[-1].messages_received if self.attempts else 0

    @property
    def counted_attempts(self) -> int:
        """Attempts that count towards the policy's max_attempts (transparent retries do not)."""
        return sum(1 for attempt in self.attempts if not attempt.transparent)

    def new_attempt(self, endpoint: str, *, transparent: bool) -> ClientAttempt:
        attempt = ClientAttempt(self, len(self.attempts) + 1, endpoint, transparent)
        self.attempts.append(attempt)
        return attempt

    def __repr__(self) -> str:
        return f"<ClientCall {self.method} {self.status.name if self.status else 'running'}>"


class ClientAttempt(Outcome):
    """One attempt of a call, on one endpoint."""

    def __init__(self, call: ClientCall, number: int, endpoint: str, transparent: bool) -> None:
        super().__init__()
        self.call = call
        self.number = number
        """1 for the first attempt, 2 for the first retry, ..."""
        self.endpoint = endpoint
        """The server it went to, `host:port`."""
        self.transparent = transparent
        """A transparent retry: the previous attempt was not processed by its server."""
        self.metadata: dict[str, MetadataValue] = dict(call.metadata)
        """Sent with this attempt: the call's, to which an attempt interceptor may add."""
        self.messages_sent = 0
        self.messages_received = 0
        self.failure: Failure | None = None
        """How the transport failed it (None: it succeeded, or an interceptor refused it)."""

    def fail(self, failure: Failure) -> None:
        self.failure = failure
        self.end(failure.error)

    def end_refused(self, error: RpcError) -> None:
        """An attempt interceptor raised `error`: the call ends with it, not retried."""
        self.failure = None
        super().end_refused(error)

    def __repr__(self) -> str:
        state = self.status.name if self.status else "running"
        return f"<ClientAttempt {self.number} of {self.call.method} on {self.endpoint} {state}>"
