"""TLS for gRPC: server and client SSLContexts (TLS 1.2+, ALPN "h2"), and the plaintext warning.

gRPC runs over HTTP/2, which over TLS needs ALPN "h2" and TLS 1.2 or later with an AEAD cipher
(RFC 9113 section 9.2); grpclib leaves all of that to the SSLContext it is given.

    server_ssl_context(cert, key)             TLS: clients check the server
    server_ssl_context(cert, key, client_ca)  mutual TLS: only clients with a certificate issued
                                              by `client_ca` get past the handshake
    client_ssl_context(ca, cert, key)         for GreetClient(..., ssl=...) and `--tls-ca`
"""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path

__all__ = [
    "ALL_INTERFACES",
    "client_ssl_context",
    "exposure_warning",
    "server_ssl_context",
]

ALPN_PROTOCOLS = ["h2"]
H2_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20"
"""TLS 1.2 ciphers HTTP/2 allows (TLS 1.3 suites are all allowed and set separately)."""

ALL_INTERFACES = frozenset({"", "0.0.0.0", "::", "[::]"})


def configure_for_grpc(context: ssl.SSLContext) -> ssl.SSLContext:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(H2_CIPHERS)
    context.set_alpn_protocols(ALPN_PROTOCOLS)
    return context


def server_ssl_context(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    """The server's context; with `client_ca`, clients must present a certificate it issued."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    if client_ca is not None:
        context.load_verify_locations(cafile=client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return configure_for_grpc(context)


def client_ssl_context(
    ca: Path | None, cert: Path | None = None, key: Path | None = None
) -> ssl.SSLContext:
    """A client's context: trust `ca` (None: the system's CAs); `cert`/`key` for mutual TLS.

    The server's certificate must name the host the client connects to (hostname check on).
    """
    if key is not None and cert is None:
        raise ValueError("a client key needs its certificate")
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    if cert is not None:
        context.load_cert_chain(cert, key)
    return configure_for_grpc(context)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, *, tls: bool, auth: bool = False) -> str | None:
    """What to warn about when serving plaintext beyond this machine; None when there is nothing.

    Only a loopback address (127.0.0.0/8, ::1, localhost) is quiet without TLS.
    """
    if tls or is_loopback(host):
        return None
    where = "all interfaces" if host in ALL_INTERFACES else f"non-loopback address {host!r}"
    warning = f"listening on {where} without TLS: anyone who can reach the port can read the calls"
    if auth:
        warning += ", bearer tokens included"
    return warning + "; use --tls-cert/--tls-key, or --host 127.0.0.1 behind a TLS proxy"
