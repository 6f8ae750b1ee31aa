"""The one exception hierarchy of the package: every error it raises is a `CrowdcloudError`.

Messages follow the CLI's: lowercase, saying what is wrong and what to do. An error the
coordinator answered with is an `ApiError` carrying the API's status and stable error `code`
(`"not_found"`, `"unauthorized"`, ...); the subclasses name the codes callers most often act on.
"""

from __future__ import annotations

from typing import Any, Optional


class CrowdcloudError(Exception):
    """Anything this package refuses or could not do.

    `code` is the coordinator's error code when the coordinator answered, else None.
    """

    code: Optional[str] = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def _within(self, context: str) -> "CrowdcloudError":
        """The same error, its message prefixed by what was being done."""
        self.message = f"{context}: {self.message}"
        self.args = (self.message,)
        return self


class UsageError(CrowdcloudError, ValueError):
    """An argument this package refuses before anything is sent (a job that cannot be built,
    a malformed job id or fingerprint, a missing runtime)."""


class ConnectionSettingsError(CrowdcloudError):
    """No coordinator, token or fingerprint could be found, or they do not fit together."""


class UnreachableError(CrowdcloudError, ConnectionError):
    """The coordinator did not answer: it is down, the address is wrong, or the network is."""


class WrongCertificateError(CrowdcloudError):
    """The server presented another certificate than the pinned one; nothing was sent to it."""

    def __init__(self, url: str, pinned: str, presented: Optional[str]) -> None:
        shown = presented or "no certificate"
        super().__init__(
            f"the coordinator at {url} presented certificate {shown}, not the pinned {pinned}: "
            "someone on the network may be impersonating it, or its owner made a new "
            "certificate; if the owner confirms the new fingerprint, run `crowdcloud join` "
            "again (or pass fingerprint=)"
        )
        self.url = url
        self.pinned = pinned
        self.presented = presented


class ApiError(CrowdcloudError):
    """The coordinator refused the request; `message` is its sentence, `code` its code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class UnauthorizedError(ApiError):
    """401: the token is missing, unknown or revoked."""


class ForbiddenError(ApiError):
    """403: the token may not do this (an owner-only call, a banned owner)."""


class NotFoundError(ApiError):
    """404: no such job or blob for this token."""


class ConflictError(ApiError):
    """409: the request does not fit the state (a job that already ended)."""


class TooLargeError(ApiError):
    """413: an upload past the quota or a body past its cap."""


class TooManyRequestsError(ApiError):
    """429: past a bound of the pool (unfinished tasks or bytes); try again later."""


class UnavailableError(ApiError):
    """503: the coordinator cannot take this now; try again later."""


_BY_CODE = {
    "unauthorized": UnauthorizedError,
    "forbidden": ForbiddenError,
    "not_found": NotFoundError,
    "conflict": ConflictError,
    "payload_too_large": TooLargeError,
    "too_many_requests": TooManyRequestsError,
    "unavailable": UnavailableError,
    # A standby coordinator: another one leads; try it, or again once this one leads.
    "standby": UnavailableError,
}


def api_error(status: int, code: str, message: str) -> ApiError:
    """The `ApiError` subclass of `code`."""
    return _BY_CODE.get(code, ApiError)(status, code, message)


class ProtocolError(CrowdcloudError):
    """The coordinator's answer is not understood: another version, or not a coordinator."""


class CorruptBlobError(CrowdcloudError):
    """Downloaded bytes do not match the blob's hash (nothing was kept)."""


class BlobTooLargeError(CrowdcloudError):
    """A download grew past what was asked for or what the API allows (nothing was kept)."""


class WaitTimeoutError(CrowdcloudError, TimeoutError):
    """`wait` or `watch` ran out of time before the job ended; `status` is the job as last seen."""

    def __init__(self, message: str, status: Any) -> None:
        super().__init__(message)
        self.status = status
