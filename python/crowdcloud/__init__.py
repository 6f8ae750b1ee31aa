"""Drive a crowdcloud pool from Python: submit jobs, follow them, fetch their results.

    import crowdcloud

    with crowdcloud.Client() as pool:          # the pool the CLI would reach
        job = pool.submit("wordcount.wasm", inputs="texts/")
        status = pool.wait(job, progress=lambda s: print(s.tasks.ended, "/", s.tasks.total))
        for task in pool.tasks(job):
            print(task.index, pool.stdout(task).decode())

`Client` blocks; `AsyncClient` has the same methods, awaited. Both speak only the coordinator's
HTTP API (`/v1/`), authenticate with the CLI's tokens and pin the coordinator's certificate as
the CLI does. Every error is a `CrowdcloudError`.
"""

from .aio import AsyncClient
from .client import Client
from .connection import Connection, default_data_dir, resolve
from .errors import (
    ApiError,
    BlobTooLargeError,
    ConflictError,
    ConnectionSettingsError,
    CorruptBlobError,
    CrowdcloudError,
    ForbiddenError,
    NotFoundError,
    ProtocolError,
    TooLargeError,
    TooManyRequestsError,
    UnauthorizedError,
    UnavailableError,
    UnreachableError,
    UsageError,
    WaitTimeoutError,
    WrongCertificateError,
)
from .jobs import PYTHON, GiB, KiB, Limits, MiB, Plan, Requirements, Task, Validator
from .pinning import PinnedContext, parse_fingerprint
from .types import (
    BlobRef,
    JobStatus,
    Node,
    NodeShare,
    Outcome,
    OutputFile,
    Submitted,
    TaskCounts,
    TaskStatus,
    Usage,
)

__version__ = "0.1.0"

__all__ = [
    "ApiError",
    "AsyncClient",
    "BlobRef",
    "BlobTooLargeError",
    "Client",
    "ConflictError",
    "Connection",
    "ConnectionSettingsError",
    "CorruptBlobError",
    "CrowdcloudError",
    "ForbiddenError",
    "GiB",
    "JobStatus",
    "KiB",
    "Limits",
    "MiB",
    "Node",
    "NodeShare",
    "NotFoundError",
    "Outcome",
    "OutputFile",
    "PYTHON",
    "PinnedContext",
    "Plan",
    "ProtocolError",
    "Requirements",
    "Submitted",
    "Task",
    "TaskCounts",
    "TaskStatus",
    "TooLargeError",
    "TooManyRequestsError",
    "UnauthorizedError",
    "UnavailableError",
    "UnreachableError",
    "Usage",
    "UsageError",
    "Validator",
    "WaitTimeoutError",
    "WrongCertificateError",
    "default_data_dir",
    "parse_fingerprint",
    "resolve",
]
