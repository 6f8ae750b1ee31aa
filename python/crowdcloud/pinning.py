"""Pinning the coordinator's certificate by its SHA-256 fingerprint, as the CLI does.

A pool's coordinator serves a self-signed certificate; clients trust exactly the certificate
whose SHA-256 (of its DER bytes) they were given, by `crowdcloud join`, by `crowdcloud up`'s
output, or by hand. No certificate authority and no host name is involved.

The check runs inside the TLS handshake: `PinnedContext` is an `ssl.SSLContext` whose sockets
and memory-BIO objects (the documented `sslsocket_class` and `sslobject_class` hooks, used by
httpx's sync and async transports alike) compare the fingerprint as soon as the handshake
completes and fail it otherwise. So a peer with another certificate is refused before any
request, and with it the token, is written. OpenSSL still checks the handshake's signature
against the certificate's key, so only the holder of the pinned certificate's key gets through.
"""

from __future__ import annotations

import hashlib
import re
import ssl
from typing import Optional

from .errors import UsageError

_HEX_DIGITS = re.compile(r"^[0-9a-fA-F]{64}$")


def parse_fingerprint(text: str) -> str:
    """`sha256:HEX`, bare `HEX`, or hex with `:` or space separators (as tools print it),
    as `sha256:` and 64 lowercase hex digits."""
    body = text.strip()
    for prefix in ("sha256:", "SHA256:"):
        if body.startswith(prefix):
            body = body[len(prefix) :]
            break
    digits = body.replace(":", "").replace(" ", "")
    if not _HEX_DIGITS.match(digits):
        raise UsageError(
            f"{text[:100]!r} is not a certificate fingerprint: give sha256: and 64 hex digits, "
            "as `crowdcloud up` prints it"
        )
    return "sha256:" + digits.lower()


def fingerprint_of_der(der: bytes) -> str:
    """The fingerprint of a DER-encoded certificate."""
    return "sha256:" + hashlib.sha256(der).hexdigest()


class CertificateMismatch(ssl.SSLCertVerificationError):
    """The handshake's certificate is not the pinned one."""

    def __init__(self, pinned: str, presented: Optional[str]) -> None:
        # Two arguments, so `strerror` is set: async TLS layers read it.
        super().__init__(1, f"certificate {presented or 'missing'} is not the pinned {pinned}")
        self.pinned = pinned
        self.presented = presented


def _check(context: ssl.SSLContext, der: Optional[bytes]) -> None:
    pinned = getattr(context, "pinned", None)
    if pinned is None:
        raise CertificateMismatch("(nothing pinned)", None)
    presented = fingerprint_of_der(der) if der else None
    if presented != pinned:
        raise CertificateMismatch(pinned, presented)


class _PinnedSocket(ssl.SSLSocket):
    """A TLS socket (sync transports) whose handshake fails unless the pin holds."""

    def do_handshake(self, block: bool = False) -> None:
        super().do_handshake(block)
        _check(self.context, self.getpeercert(binary_form=True))


class _PinnedObject(ssl.SSLObject):
    """A memory-BIO TLS object (async transports) whose handshake fails unless the pin holds."""

    def do_handshake(self) -> None:
        super().do_handshake()
        _check(self.context, self.getpeercert(binary_form=True))


class PinnedContext(ssl.SSLContext):
    """A client TLS context that trusts exactly the certificate with `fingerprint`."""

    pinned: str

    def __new__(cls, fingerprint: str) -> "PinnedContext":
        return super().__new__(cls, ssl.PROTOCOL_TLS_CLIENT)

    def __init__(self, fingerprint: str) -> None:
        self.pinned = parse_fingerprint(fingerprint)
        # The pin replaces names and authorities; OpenSSL's chain check would refuse a
        # self-signed certificate before the pin is looked at.
        self.check_hostname = False
        self.verify_mode = ssl.CERT_NONE
        self.minimum_version = ssl.TLSVersion.TLSv1_2
        self.sslsocket_class = _PinnedSocket
        self.sslobject_class = _PinnedObject
        self.set_alpn_protocols(["http/1.1"])


def mismatch_in(error: BaseException) -> Optional[CertificateMismatch]:
    """The `CertificateMismatch` behind an error of the HTTP stack, if one is."""
    seen = set()
    pending = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, CertificateMismatch):
            return current
        for linked in (current.__cause__, current.__context__, *current.args):
            if isinstance(linked, BaseException):
                pending.append(linked)
    return None
