"""The client's TLS context from `--tls-ca`, `--tls-cert` and `--tls-key`, with errors that name
the flag and the file at fault (not OpenSSL's `[SSL] PEM lib`).

The context itself is greet.tls.client_ssl_context; this module only checks the files first.
"""

from __future__ import annotations

import re
import ssl
from pathlib import Path

from greet.client.arguments import UsageError
from greet.tls import TLSFileError, client_ssl_context

TLS_FLAGS = {"ca": "--tls-ca", "cert": "--tls-cert", "key": "--tls-key"}
"""greet.tls.client_ssl_context's parameters (TLSFileError.role) -> the flag that gives them."""

__all__ = ["ssl_context_from_flags"]

CERTIFICATE_PEM = re.compile(r"-----BEGIN CERTIFICATE-----")
PRIVATE_KEY_PEM = re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----")
ENCRYPTED_KEY_PEM = re.compile(r"-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED")


def ssl_reason(error: ssl.SSLError) -> str:
    """OpenSSL's message without the `(_ssl.c:1234)` source location."""
    return re.sub(r"\s*\(_ssl\.c:\d+\)", "", str(error))


def read_pem(path: Path, flag: str) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError as error:
        raise UsageError(f"{flag} {path}: cannot read it: {error.strerror or error}") from None


def ssl_context_from_flags(
    ca: Path | None, cert: Path | None, key: Path | None
) -> ssl.SSLContext | None:
    """The client context the flags ask for; None when none of them is given (plaintext)."""
    if ca is None and cert is None and key is None:
        return None
    if (cert is None) != (key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    if ca is not None:
        if not CERTIFICATE_PEM.search(read_pem(ca, "--tls-ca")):
            raise UsageError(f"--tls-ca {ca}: no PEM certificate in the file")
        try:
            ssl.create_default_context(cafile=ca)
        except ssl.SSLError as error:
            raise UsageError(
                f"--tls-ca {ca}: not a usable CA bundle: {ssl_reason(error)}"
            ) from None
    if cert is not None and key is not None:
        if not CERTIFICATE_PEM.search(read_pem(cert, "--tls-cert")):
            raise UsageError(f"--tls-cert {cert}: no PEM certificate in the file")
        key_text = read_pem(key, "--tls-key")
        if not PRIVATE_KEY_PEM.search(key_text):
            raise UsageError(f"--tls-key {key}: no PEM private key in the file")
        if ENCRYPTED_KEY_PEM.search(key_text):
            raise UsageError(f"--tls-key {key}: the key is encrypted; give an unencrypted key")
    try:
        return client_ssl_context(ca, cert, key)
    except TLSFileError as error:
        raise UsageError(f"{TLS_FLAGS[error.role]} {error.path}: {error.problem}") from None
    except ssl.SSLError as error:
        reason = ssl_reason(error)
        if "KEY_VALUES_MISMATCH" in reason:
            reason = "the key does not belong to the certificate"
        raise UsageError(f"--tls-cert {cert} with --tls-key {key}: {reason}") from None
    except OSError as error:
        raise UsageError(f"TLS files: {error}") from None
