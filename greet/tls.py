"""TLS for gRPC: server and client SSLContexts (TLS 1.2+, ALPN "h2"), and the plaintext warning.

gRPC runs over HTTP/2, which over TLS needs ALPN "h2" and TLS 1.2 or later with an AEAD cipher
(RFC 9113 section 9.2); grpclib leaves all of that to the SSLContext it is given.

    server_ssl_context(cert, key)             TLS: clients check the server
    server_ssl_context(cert, key, client_ca)  mutual TLS: only clients with a certificate issued
                                              by `client_ca` get past the handshake
    client_ssl_context(ca, cert, key)         for GreetClient(..., ssl=...) and `--tls-ca`

`refused_client` says why a server ended a TLS connection right after its handshake, before
HTTP/2 started, when that is its refusal of the client's certificate: the one it requires and
did not get, or one it does not accept. Over TLS 1.3 the client finishes its handshake before the
server checks the client's certificate, so the refusal arrives as an alert on the first read, or,
from a server that does not send the alert (asyncio's, hence greet's own), as the connection
closing.

A file that cannot be used raises TLSFileError, which names the file, what it was for (`role`: the
parameter that named it) and the problem, instead of OpenSSL's `[SSL] PEM lib (_ssl.c:3905)` or
an `[Errno 2]` without a file name. An encrypted private key is refused rather than prompted for.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
from pathlib import Path

from greet.addresses import bare_host

__all__ = [
    "ALL_INTERFACES",
    "TLSFileError",
    "client_ssl_context",
    "exposure_warning",
    "refused_client",
    "server_ssl_context",
]

ALPN_PROTOCOLS = ["h2"]
SERVER_ALPN_PROTOCOLS = ["h2", "http/1.1"]  # browsers reach the same port (greet.transport._http1)
H2_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20"
"""TLS 1.2 ciphers HTTP/2 allows (TLS 1.3 suites are all allowed and set separately)."""

ALL_INTERFACES = frozenset({"", "0.0.0.0", "::"})
"""Hosts that mean every interface (IPv6 ones bracketed or not, see `bare_host`)."""

ROLES = {
    "cert": "certificate chain",
    "key": "private key",
    "ca": "CA bundle",
    "client_ca": "client CA bundle",
}
"""What each file is for, by the name of the parameter that gives it."""
CERTIFICATE_MARKER = b"-----BEGIN CERTIFICATE-----"
PRIVATE_KEY_MARKER = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----")
NO_CERTIFICATE = "holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
SSL_LOCATION = re.compile(r"\s*\(_ssl\.c:\d+\)$")


class TLSFileError(OSError):
    """A certificate, key or CA file cannot be used.

    `role` is the parameter that named the file (see ROLES), `path` the file, `problem` what is
    wrong with it ("no such file or directory", "holds no PEM certificate", ...).
    """

    def __init__(self, role: str, path: Path | str, problem: str) -> None:
        super().__init__(f"{ROLES[role]} {path}: {problem}")
        self.role = role
        self.path = Path(path)
        self.problem = problem

    def __reduce__(self) -> tuple[type[TLSFileError], tuple[str, Path, str]]:
        return type(self), (self.role, self.path, self.problem)


def describe(error: OSError) -> str:
    """`no such file or directory`: the OS's words, without the errno and the file name."""
    return (error.strerror or str(error)).lower()


def read_pem(role: str, path: Path | str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise TLSFileError(role, path, describe(error)) from None


def ssl_reason(error: ssl.SSLError) -> str:
    """OpenSSL's reason without the `(_ssl.c:NNNN)` location."""
    return SSL_LOCATION.sub("", str(error.args[1] if len(error.args) > 1 else error))


def load_identity(context: ssl.SSLContext, cert: Path, key: Path | None) -> None:
    """Load the certificate chain `cert` and its private key `key` (None: in the cert file)."""
    key_role, key_path = ("key", key) if key is not None else ("cert", cert)
    if CERTIFICATE_MARKER not in read_pem("cert", cert):
        raise TLSFileError("cert", cert, NO_CERTIFICATE)
    if not PRIVATE_KEY_MARKER.search(read_pem(key_role, key_path)):
        raise TLSFileError(
            key_role, key_path, "holds no PEM private key (-----BEGIN ... PRIVATE KEY-----)"
        )

    def no_password() -> bytes:
        raise TLSFileError(key_role, key_path, "is encrypted; give the key unencrypted")

    try:
        context.load_cert_chain(cert, key, password=no_password)
    except ssl.SSLError as error:
        if error.reason == "KEY_VALUES_MISMATCH":
            raise TLSFileError(
                key_role, key_path, f"is not the key of the certificate in {cert}"
            ) from None
        raise TLSFileError(
            "cert", cert, f"or the key {key_path} is not valid PEM ({ssl_reason(error)})"
        ) from None
    except TLSFileError:
        raise
    except OSError as error:  # the file went away since it was read
        raise TLSFileError("cert", cert, describe(error)) from None


def check_trust(role: str, bundle: Path) -> None:
    """TLSFileError unless `bundle` can be read and holds a PEM certificate."""
    if CERTIFICATE_MARKER not in read_pem(role, bundle):
        raise TLSFileError(role, bundle, NO_CERTIFICATE)


def load_trust(context: ssl.SSLContext, role: str, bundle: Path) -> None:
    """Trust the CA certificates in the PEM file `bundle`."""
    check_trust(role, bundle)
    try:
        context.load_verify_locations(cafile=bundle)
    except ssl.SSLError as error:
        raise TLSFileError(
            role, bundle, f"is not a valid CA bundle ({ssl_reason(error)})"
        ) from None
    except OSError as error:
        raise TLSFileError(role, bundle, describe(error)) from None


def configure_for_grpc(context: ssl.SSLContext, alpn: list[str] = ALPN_PROTOCOLS) -> ssl.SSLContext:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(H2_CIPHERS)
    context.set_alpn_protocols(alpn)
    return context


def server_ssl_context(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    """The server's context; with `client_ca`, clients must present a certificate it issued.

    TLSFileError when a file cannot be used.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    load_identity(context, cert, key)
    if client_ca is not None:
        load_trust(context, "client_ca", client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return configure_for_grpc(context, SERVER_ALPN_PROTOCOLS)


def client_ssl_context(
    ca: Path | None, cert: Path | None = None, key: Path | None = None
) -> ssl.SSLContext:
    """A client's context: trust `ca` (None: the system's CAs); `cert`/`key` for mutual TLS.

    The server's certificate must name the host the client connects to (hostname check on).
    TLSFileError when a file cannot be used.
    """
    if key is not None and cert is None:
        raise ValueError("a client key needs its certificate")
    if ca is not None:
        check_trust("ca", ca)
    try:  # with `ca`, only `ca`: not the system's CAs as well
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    except ssl.SSLError as error:
        raise TLSFileError(
            "ca", ca or "", f"is not a valid CA bundle ({ssl_reason(error)})"
        ) from None
    except OSError as error:
        raise TLSFileError("ca", ca or "", describe(error)) from None
    if cert is not None:
        load_identity(context, cert, key)
    return configure_for_grpc(context)


CERTIFICATE_NEEDED = "the server requires a client certificate (--tls-cert/--tls-key)"
CERTIFICATE_REFUSED = "the server did not accept the client certificate"
REFUSAL_ALERTS = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": CERTIFICATE_NEEDED,
    "SSLV3_ALERT_BAD_CERTIFICATE": CERTIFICATE_REFUSED,
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": CERTIFICATE_REFUSED,
    "TLSV1_ALERT_UNKNOWN_CA": f"{CERTIFICATE_REFUSED}: it does not trust the CA that issued it",
    "TLSV1_ALERT_ACCESS_DENIED": f"{CERTIFICATE_REFUSED} (access denied)",
}
"""OpenSSL's reason for a TLS alert a server refusing a client's certificate sends -> what that
means for the client."""


def refused_client(error: BaseException | None) -> str | None:
    """What the end of a TLS connection before HTTP/2 started says about the client's
    certificate (`error`: how the connection ended, None for a plain close); None when it says
    nothing about it."""
    if isinstance(error, ssl.SSLError):
        return REFUSAL_ALERTS.get(error.reason or "")
    if error is None or isinstance(error, ConnectionResetError):  # closed without an alert
        return f"{CERTIFICATE_NEEDED}, or did not accept the one sent"
    return None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(bare_host(host)).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, *, tls: bool, auth: bool = False) -> str | None:
    """What to warn about when serving plaintext beyond this machine; None when there is nothing.

    Only a loopback address (127.0.0.0/8, ::1, localhost) is quiet without TLS.
    """
    if tls or is_loopback(host):
        return None
    everywhere = bare_host(host) in ALL_INTERFACES
    where = "all interfaces" if everywhere else f"non-loopback address {host!r}"
    warning = f"listening on {where} without TLS: anyone who can reach the port can read the calls"
    if auth:
        warning += ", bearer tokens included"
    return warning + "; use --tls-cert/--tls-key, or --host 127.0.0.1 behind a TLS proxy"
