"""Bearer-token authentication (`--auth-token-file`): every call needs
`authorization: Bearer <token>` with a token from the file, else it gets UNAUTHENTICATED.

The token file holds one token per line; blank lines and lines starting with `#` are ignored.
It is read at start and again on `TokenFile.reload()` (SIGHUP in `python -m greet.server`); a
reload that fails keeps the tokens already loaded. Tokens are kept only as SHA-256 digests,
compared with `hmac.compare_digest` against every loaded token (no early exit, and equal-length
digests, so the time taken says nothing about how close a guess was), and never logged: log lines
give counts only.

Open without a token: the health service (load balancers and orchestrators probe it without
credentials; it tells nothing but SERVING / NOT_SERVING). Reflection is NOT open: it describes
the whole API, which is for callers that have a token anyway (grpcurl: `-H 'authorization: ...'`).

`BearerTokenAuth` is a server interceptor (greet.middleware): it refuses a call by raising
`GRPCError(UNAUTHENTICATED, reason)` before the rest of the chain, so the handler never runs and
the client gets the status and the reason (trailers-only). GreetServer puts it after metrics and
the access log, which therefore count and log refused calls too.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from pathlib import Path

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from greet.transport import Proceed, ServerCall

__all__ = [
    "OPEN_METHOD_PREFIXES",
    "BearerTokenAuth",
    "TokenFile",
    "TokenSet",
    "parse_tokens",
]

log = logging.getLogger("greet.auth")

OPEN_METHOD_PREFIXES = ("/grpc.health.v1.Health/",)
"""Method paths that need no token."""

AUTHORIZATION = "authorization"
SCHEME = "bearer"


def parse_tokens(text: str) -> list[str]:
    """The tokens in a token file's text: stripped lines, without blanks and #comments."""
    tokens = []
    for line in text.splitlines():
        token = line.strip()
        if token and not token.startswith("#"):
            tokens.append(token)
    return tokens


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class TokenSet:
    """Accepted tokens, held as SHA-256 digests."""

    def __init__(self, tokens: list[str]) -> None:
        self._digests = [digest(token) for token in tokens]

    def __len__(self) -> int:
        return len(self._digests)

    def __repr__(self) -> str:
        return f"TokenSet(<{len(self)} tokens>)"

    def accepts(self, candidate: str) -> bool:
        """Whether `candidate` is one of the tokens; compares against all of them every time."""
        wanted = digest(candidate)
        found = False
        for known in self._digests:
            found |= hmac.compare_digest(known, wanted)
        return found


class TokenFile:
    """The tokens of a token file; `reload()` re-reads it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tokens = self._read()
        log.info("auth tokens loaded: %d from %s", len(self.tokens), path)
        self._warn_if_empty()

    def _read(self) -> TokenSet:
        return TokenSet(parse_tokens(self.path.read_text(encoding="utf-8")))

    def _warn_if_empty(self) -> None:
        if not self.tokens:
            log.warning("auth token file %s has no tokens: every call will be refused", self.path)

    def reload(self) -> bool:
        """Re-read the file; on failure keep the current tokens. Returns whether it worked."""
        try:
            tokens = self._read()
        except (OSError, UnicodeDecodeError) as error:
            log.error("auth tokens NOT reloaded, keeping %d: %s", len(self.tokens), error)
            return False
        self.tokens = tokens
        log.info("auth tokens reloaded: %d from %s", len(tokens), self.path)
        self._warn_if_empty()
        return True


def refusal(authorization: str | None, tokens: TokenSet) -> str | None:
    """Why a call with this `authorization` value is refused; None when it is accepted."""
    if authorization is None:
        return "missing 'authorization' metadata: send 'authorization: Bearer <token>'"
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != SCHEME or not token.strip():
        return "'authorization' metadata must be 'Bearer <token>'"
    if not tokens.accepts(token.strip()):
        return "bearer token is not valid"
    return None


class BearerTokenAuth:
    """The interceptor that refuses calls without a valid bearer token (UNAUTHENTICATED)."""

    def __init__(self, token_file: TokenFile) -> None:
        self.token_file = token_file

    async def intercept(self, call: ServerCall, proceed: Proceed) -> None:
        if not call.method.startswith(OPEN_METHOD_PREFIXES):
            value = call.metadata.get(AUTHORIZATION) if call.metadata is not None else None
            reason = refusal(value if isinstance(value, str) else None, self.token_file.tokens)
            if reason is not None:
                log.debug("refused %s from %s: %s", call.method, call.peer.addr(), reason)
                raise GRPCError(Status.UNAUTHENTICATED, reason)
        await proceed()
