"""What `Client` and `AsyncClient` share: every call of the API as data, and the multi-step
operations (submit, watch, paging, results) as generators that yield the calls they need and
receive the answers. The two clients only perform the calls, one blocking, one awaiting, so
both speak the API exactly alike.

Everything that grows has a bound here: JSON answers (`JSON_BYTES_MAX`, the API's own cap on
bodies), downloads (the size the coordinator reported, and never past `BLOB_BYTES_MAX`),
long-polls (`POLL_SECS` each, the API allows at most 60 s) and every request's time.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Dict, Generator, Iterator, List, Mapping, Optional, Union

import blake3

from .errors import (
    BlobTooLargeError,
    CorruptBlobError,
    CrowdcloudError,
    ProtocolError,
    UnreachableError,
    UsageError,
    WaitTimeoutError,
    WrongCertificateError,
    api_error,
)
from .jobs import MiB, Plan
from .pinning import mismatch_in
from .types import JobStatus, Submitted, TaskStatus

#: A JSON answer, at most (`wire::limits::JSON_BODY_BYTES_MAX`).
JSON_BYTES_MAX = 256 * MiB
#: One blob, at most (`wire::limits::BLOB_BYTES_MAX`).
BLOB_BYTES_MAX = 1024 * MiB
#: What `read` keeps in memory unless told otherwise; larger outputs go to files (`results`).
IN_MEMORY_BYTES_MAX = 256 * MiB
#: One long-poll of a job; the API's bound is 60 s.
POLL_SECS = 30.0
#: Time an answer has to arrive beyond a long-poll's own wait.
POLL_SLACK_SECS = 10.0
#: Any other request.
REQUEST_TIMEOUT_SECS = 120.0
#: Uploads and downloads of one blob, which may be large.
TRANSFER_TIMEOUT_SECS = 1200.0
#: Tasks read per page (the API's page limit).
TASKS_PAGE = 1000
CHUNK_BYTES = MiB

_JOB_ID = re.compile(r"^j-[0-9a-fA-F]{16}$")


@dataclass(frozen=True)
class Call:
    """One request. `answer` says what comes back: `json`, or `exists` (a HEAD: 404 is False)."""

    method: str
    path: str
    params: Optional[Dict[str, Any]] = None
    body: Any = None
    upload: Optional[Path] = None
    answer: str = "json"
    timeout_secs: float = REQUEST_TIMEOUT_SECS
    #: What the call was for, put before its error's message.
    context: Optional[str] = None


@dataclass(frozen=True)
class Download:
    """A blob, checked against its hash, into `path` (or into memory when None)."""

    hash: str
    bytes_max: int
    path: Optional[Path] = None


@dataclass(frozen=True)
class Emit:
    """A value a streaming operation hands to its caller (a status of `watch`)."""

    value: Any


Step = Union[Call, Download, Emit]
Steps = Generator[Step, Any, Any]


def job_id_of(job: Any) -> str:
    """A job id from an id, a `Submitted` or a `JobStatus`."""
    job_id = getattr(job, "job_id", job)
    if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
        raise UsageError(
            f"{job_id!r} is not a job id (j- and 16 hex digits), as `submit` returns it"
        )
    return job_id


# The answers.


def error_of(status: int, body: bytes) -> CrowdcloudError:
    """The error of a non-2xx answer: the coordinator's `ApiError` body when it sent one."""
    try:
        parsed = json.loads(body)
        return api_error(status, str(parsed["code"]), str(parsed["message"]))
    except (ValueError, KeyError, TypeError):
        text = body.decode("utf-8", "replace")[:200]
        return api_error(status, _code_of(status), f"the coordinator answered {status}: {text}")


def _code_of(status: int) -> str:
    return {
        400: "bad_request",
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        409: "conflict",
        413: "payload_too_large",
        429: "too_many_requests",
        503: "unavailable",
    }.get(status, "internal")


def answer_of(call: Call, status: int, body: bytes) -> Any:
    """What a call's answer means: its JSON, whether a blob exists, or nothing."""
    if call.answer == "exists" and status == 404:
        return False
    if not 200 <= status < 300:
        raise error_of(status, body)
    if call.answer == "json":
        return parse_json(body)
    return True if call.answer == "exists" else None


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError as error:
        raise ProtocolError(
            f"the coordinator's answer is not understood: {error}; are this package and the "
            "coordinator the same version?"
        ) from None


class Capped:
    """An answer's body, gathered up to `bytes_max`."""

    def __init__(self, bytes_max: int) -> None:
        self.bytes_max = bytes_max
        self.parts: List[bytes] = []
        self.size = 0

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.bytes_max:
            raise ProtocolError(
                f"the coordinator's answer is larger than {self.bytes_max} bytes; is this a "
                "crowdcloud coordinator?"
            )
        self.parts.append(chunk)

    def bytes(self) -> bytes:
        return b"".join(self.parts)


class Sink:
    """Where a download goes, hashed as it comes: a temporary file beside `path`, renamed only
    once the hash matched, or memory. More than `bytes_max` stops it."""

    def __init__(self, download: Download) -> None:
        self.download = download
        self.hasher = blake3.blake3()
        self.size = 0
        self.partial: Optional[Path] = None
        self.file = None
        self.parts: List[bytes] = []
        if download.path is not None:
            self.partial = download.path.with_name(f"{download.path.name}.partial-{os.getpid()}")
            self.file = open(self.partial, "wb")

    def expect(self, content_length: Optional[str]) -> None:
        if content_length is not None and int(content_length) > self.download.bytes_max:
            self._too_large(int(content_length))

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.download.bytes_max:
            self._too_large(self.size)
        self.hasher.update(chunk)
        if self.file is not None:
            self.file.write(chunk)
        else:
            self.parts.append(chunk)

    def _too_large(self, size: int) -> None:
        raise BlobTooLargeError(
            f"blob {self.download.hash} is larger than the {self.download.bytes_max} bytes "
            f"expected (at least {size}); nothing was kept"
            + ("" if self.file is not None else "; fetch large outputs with results(job, dir)")
        )

    def finish(self) -> Optional[bytes]:
        if self.hasher.hexdigest() != self.download.hash:
            raise CorruptBlobError(
                f"the downloaded bytes of blob {self.download.hash} do not match its hash; "
                "try again"
            )
        if self.file is None:
            return b"".join(self.parts)
        self.file.close()
        assert self.partial is not None and self.download.path is not None
        os.replace(self.partial, self.download.path)
        return None

    def abort(self) -> None:
        if self.file is not None:
            self.file.close()
            if self.partial is not None and self.partial.exists():
                self.partial.unlink()


def network_error(error: Exception, url: str, pinned: Optional[str]) -> CrowdcloudError:
    """A request that failed before an answer: a refused certificate, or the network."""
    mismatch = mismatch_in(error)
    if mismatch is not None and pinned is not None:
        return WrongCertificateError(url, pinned, mismatch.presented)
    detail = str(error) or type(error).__name__
    return UnreachableError(
        f"cannot reach the coordinator at {url}: {detail}; is it running (`crowdcloud up`)?"
    )


# The operations.


def hash_file(path: Path) -> str:
    """The BLAKE3 hash of a file, as the API names blobs."""
    hasher = blake3.blake3()
    try:
        with open(path, "rb") as file:
            for chunk in iter(lambda: file.read(CHUNK_BYTES), b""):
                hasher.update(chunk)
    except OSError as error:
        raise UsageError(f"cannot upload {path}: {error.strerror or error}") from None
    return hasher.hexdigest()


def upload(job: Plan) -> Steps:
    """Uploads every file the plan names, each once and none the coordinator holds for this
    caller; returns each file's hash."""
    hashes: Dict[Path, str] = {}
    for path in job.files():
        blob = hash_file(path)
        held = yield Call("HEAD", f"/v1/blobs/{blob}", answer="exists")
        if not held:
            yield Call(
                "PUT",
                f"/v1/blobs/{blob}",
                upload=path,
                answer="none",
                timeout_secs=TRANSFER_TIMEOUT_SECS,
                context=f"cannot upload {path}",
            )
        hashes[path] = blob
    return hashes


def submit(job: Plan) -> Steps:
    """Uploads every file the plan names, then submits the job (`client::submit`)."""
    hashes = yield from upload(job)
    answer = yield Call("POST", "/v1/jobs", body=job.submission(hashes))
    return Submitted.from_json(answer)


def run(job: Plan, timeout_secs: Optional[float]) -> Steps:
    """Uploads and submits the job and returns its status once it has ended. The submission
    itself waits (`POST /v1/jobs?wait_ms=`), so a short job takes one exchange; a longer one
    is then followed as `watch` does. Past `timeout_secs` it raises `WaitTimeoutError`."""
    started = time.monotonic()
    hashes = yield from upload(job)
    wait_secs = POLL_SECS if timeout_secs is None else max(0.001, min(POLL_SECS, timeout_secs))
    answer = yield Call(
        "POST",
        "/v1/jobs",
        params={"wait_ms": max(1, int(wait_secs * 1000))},
        body=job.submission(hashes),
        timeout_secs=wait_secs + POLL_SLACK_SECS,
    )
    submitted = Submitted.from_json(answer)
    status = answer.get("status") if isinstance(answer, dict) else None
    if status is not None and JobStatus.from_json(status).ended:
        return JobStatus.from_json(status)
    remaining = None if timeout_secs is None else timeout_secs - (time.monotonic() - started)
    return (yield from watch(submitted.job_id, remaining))


def watch(job_id: str, timeout_secs: Optional[float]) -> Steps:
    """Emits the job's status now and at every change until it ends (long-polling `wait`);
    returns the last. Past `timeout_secs` it raises `WaitTimeoutError`."""
    deadline = None if timeout_secs is None else time.monotonic() + timeout_secs
    status = JobStatus.from_json((yield Call("GET", f"/v1/jobs/{job_id}")))
    yield Emit(status)
    while not status.ended:
        poll_secs = POLL_SECS
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeoutError(
                    f"job {job_id} is still {status.state} after {timeout_secs} s "
                    f"({status.tasks.ended} of {status.tasks.total} tasks ended); wait "
                    "again, or cancel it",
                    status,
                )
            poll_secs = min(poll_secs, remaining)
        answer = yield Call(
            "GET",
            f"/v1/jobs/{job_id}/wait",
            params={"after": status.version, "timeout_ms": max(1, int(poll_secs * 1000))},
            timeout_secs=poll_secs + POLL_SLACK_SECS,
        )
        changed = JobStatus.from_json(answer)
        if changed.version != status.version:
            yield Emit(changed)
        status = changed
    return status


def tasks(job_id: str) -> Steps:
    """Every task of the job, page by page."""
    found: List[TaskStatus] = []
    offset: Optional[int] = 0
    while offset is not None:
        page = yield Call(
            "GET", f"/v1/jobs/{job_id}/tasks", params={"offset": offset, "limit": TASKS_PAGE}
        )
        try:
            entries, offset = page["tasks"], page.get("next_offset")
        except (KeyError, TypeError, AttributeError):
            raise ProtocolError("the coordinator's task page is not understood") from None
        found += [TaskStatus.from_json(entry) for entry in entries]
    return found


def results(job_id: str, out_dir: Path) -> Steps:
    """Writes `OUT/INDEX/{stdout,stderr,output/…}` for every task, as `crowdcloud results`
    does; returns the tasks."""
    found = yield from tasks(job_id)
    for task in found:
        for path, blob, size in _files_of(task, out_dir / str(task.index)):
            path.parent.mkdir(parents=True, exist_ok=True)
            yield Download(blob, min(size, BLOB_BYTES_MAX), path)
    return found


def _files_of(task: TaskStatus, task_dir: Path) -> Iterator[Any]:
    if task.stdout is not None:
        yield task_dir / "stdout", task.stdout.hash, task.stdout.size_bytes
    if task.stderr is not None:
        yield task_dir / "stderr", task.stderr.hash, task.stderr.size_bytes
    for output in task.outputs:
        # Output paths come from a node; refuse anything that could leave the directory.
        relative = PurePosixPath(output.path)
        if relative.is_absolute() or any(
            part in ("", ".", "..") for part in output.path.split("/")
        ):
            raise ProtocolError(
                f"task {task.index} reports an output path {output.path!r} outside its directory"
            )
        yield task_dir / "output" / Path(*relative.parts), output.hash, output.size_bytes


def request_headers(token: str, call: Optional[Call], size: Optional[int]) -> Mapping[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if call is not None and call.upload is not None:
        headers["Content-Type"] = "application/octet-stream"
        headers["Content-Length"] = str(size)
    return headers
