"""Request header checks of RFC 9113 sections 8.2 and 8.3, for engines that do not make them.

libnghttp2 checks every received header block itself. The h2 engine runs with h2's own
validation off (h2 raises a connection error for a malformed request, where RFC 9113 section
8.1.1 asks for a stream error) and uses `request_problem` and `trailers_problem` instead: a
malformed request is reset with PROTOCOL_ERROR and never reaches the application.
"""

from __future__ import annotations

import re

from greet.transport.engine import Headers

__all__ = ["request_problem", "trailers_problem"]

REQUEST_PSEUDO = frozenset({b":method", b":scheme", b":path", b":authority", b":protocol"})
CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
# RFC 9110 token characters, lower case only (RFC 9113 section 8.2.1)
FIELD_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+\Z")
# No NUL, CR or LF anywhere, no leading or trailing space or tab (RFC 9113 section 8.2.1)
BAD_VALUE = re.compile(rb"[\x00\r\n]|\A[ \t]|[ \t]\Z")


def field_problem(name: bytes, value: bytes) -> str | None:
    if not FIELD_NAME.match(name):
        return f"invalid header name {name[:64]!r}"
    if value and BAD_VALUE.search(value):
        return f"invalid value for header {name[:64]!r}"
    if name in CONNECTION_SPECIFIC:
        return f"connection-specific header {name.decode()!r}"
    if name == b"te" and value != b"trailers":
        return "te header other than 'trailers'"
    return None


def request_problem(headers: Headers) -> str | None:
    """Why a request header block is malformed, or None when it is well formed."""
    seen: set[bytes] = set()
    regular = False
    for name, value in headers:
        if name[:1] == b":":
            if regular:
                return f"pseudo-header {name.decode(errors='replace')!r} after regular headers"
            if name not in REQUEST_PSEUDO:
                return f"unknown pseudo-header {name[:64]!r}"
            if name in seen:
                return f"duplicate pseudo-header {name.decode()!r}"
            seen.add(name)
            continue
        regular = True
        problem = field_problem(name, value)
        if problem is not None:
            return problem
    pseudo = dict(header for header in headers if header[0][:1] == b":")
    if pseudo.get(b":method") == b"CONNECT":
        return None if b":authority" in pseudo and b":path" not in pseudo else "bad CONNECT"
    for required in (b":method", b":scheme", b":path"):
        if not pseudo.get(required):
            return f"missing or empty {required.decode()}"
    return None


def trailers_problem(headers: Headers) -> str | None:
    """Why a trailer block is malformed (pseudo-headers, bad fields), or None."""
    for name, value in headers:
        if name[:1] == b":":
            return f"pseudo-header {name[:64]!r} in trailers"
        problem = field_problem(name, value)
        if problem is not None:
            return problem
    return None
