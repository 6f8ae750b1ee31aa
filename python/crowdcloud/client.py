"""`Client`: the blocking client of a pool, for scripts and notebooks.

Each method is one operation of the CLI's: `submit`, `status`, `wait` (with progress), `watch`
(every change, as it happens), `tasks`, `results` (into a directory) and `read`/`stdout`/
`output` (as bytes), `cancel`, `nodes`. `AsyncClient` has the same methods, awaited.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Union

import httpx

from . import _protocol
from ._base import ClientBase, blob_of, out_dir_of, output_of, timeout_of
from ._protocol import Call, Download, Emit, Steps
from .connection import PathLike
from .errors import CrowdcloudError
from .jobs import Plan
from .types import BlobRef, JobStatus, Node, OutputFile, Submitted, TaskStatus

Job = Any  # a job id, a `Submitted` or a `JobStatus`


class Client(ClientBase):
    """A client of one coordinator, made as the CLI would connect (see `connection`):
    `Client()` finds the local `crowdcloud up` or the pool this machine joined; `url=`,
    `token=` and `fingerprint=` say it explicitly. Close it, or use it in a `with` block."""

    def __init__(
        self,
        url: Optional[str] = None,
        *,
        token: Optional[str] = None,
        fingerprint: Optional[str] = None,
        data_dir: Optional[PathLike] = None,
    ) -> None:
        super().__init__(url, token=token, fingerprint=fingerprint, data_dir=data_dir)
        self._http = httpx.Client(**self._http_options())

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # The operations.

    def health(self) -> dict:
        """The coordinator's name, version and pool name."""
        return self._perform(Call("GET", "/v1/health"))

    def submit(self, program: Union[PathLike, Plan], **options: Any) -> Submitted:
        """Uploads the job's files (each once, none the coordinator already holds) and submits
        it. `program` and `options` are as for `plan`, or `program` is a `Plan`."""
        return self._run(_protocol.submit(self._plan_of(program, options)))

    def run(
        self,
        program: Union[PathLike, Plan],
        timeout_secs: Optional[float] = None,
        **options: Any,
    ) -> JobStatus:
        """Submits the job (as `submit`) and returns its status once it has ended; a short job
        takes one exchange once its files are uploaded. Past `timeout_secs` (None: no limit)
        `WaitTimeoutError` is raised."""
        return self._run(_protocol.run(self._plan_of(program, options), timeout_secs))

    def status(self, job: Job) -> JobStatus:
        answer = self._perform(Call("GET", f"/v1/jobs/{_protocol.job_id_of(job)}"))
        return JobStatus.from_json(answer)

    def jobs(self, limit: int = 100) -> List[JobStatus]:
        """Your jobs, newest first."""
        answer = self._perform(Call("GET", "/v1/jobs", params={"limit": limit}))
        return [JobStatus.from_json(job) for job in answer["jobs"]]

    def wait(
        self,
        job: Job,
        progress: Optional[Callable[[JobStatus], Any]] = None,
        timeout_secs: Optional[float] = None,
    ) -> JobStatus:
        """The job once it has ended. `progress` is called with its status now and at every
        change; past `timeout_secs` (None: no limit) `WaitTimeoutError` is raised."""
        return self._run(_protocol.watch(_protocol.job_id_of(job), timeout_secs), progress)

    def watch(self, job: Job, timeout_secs: Optional[float] = None) -> Iterator[JobStatus]:
        """The job's status now and at every change, until it has ended."""
        steps = _protocol.watch(_protocol.job_id_of(job), timeout_secs)
        answer = None
        while True:
            try:
                step = steps.send(answer)
            except StopIteration:
                return
            if isinstance(step, Emit):
                yield step.value
                answer = None
            else:
                answer = self._perform(step)

    def tasks(self, job: Job) -> List[TaskStatus]:
        """Every task of the job with its latest result."""
        return self._run(_protocol.tasks(_protocol.job_id_of(job)))

    def why(self, job: Job) -> List[str]:
        """Why the job's pending tasks are not placed."""
        answer = self._perform(Call("GET", f"/v1/jobs/{_protocol.job_id_of(job)}/why"))
        return list(answer["reasons"])

    def results(self, job: Job, out_dir: PathLike) -> List[TaskStatus]:
        """Writes every task's `stdout`, `stderr` and `output/…` into `OUT/INDEX/`, as
        `crowdcloud results` does, each file checked against its hash; returns the tasks."""
        return self._run(_protocol.results(_protocol.job_id_of(job), out_dir_of(out_dir)))

    def read(
        self, blob: Union[BlobRef, OutputFile], bytes_max: int = _protocol.IN_MEMORY_BYTES_MAX
    ) -> bytes:
        """A blob's bytes (a task's stdout, stderr or output), checked against its hash."""
        ref = blob_of(blob, bytes_max)
        return self._perform(Download(ref.hash, ref.size_bytes))

    def stdout(self, task: TaskStatus) -> bytes:
        return b"" if task.stdout is None else self.read(task.stdout)

    def stderr(self, task: TaskStatus) -> bytes:
        return b"" if task.stderr is None else self.read(task.stderr)

    def output(self, task: TaskStatus, path: str) -> bytes:
        """The file the task left at `path` below `/output`."""
        return self.read(output_of(task, path))

    def cancel(self, job: Job) -> JobStatus:
        """Cancels the job's unfinished tasks; an error if it has already ended."""
        answer = self._perform(Call("POST", f"/v1/jobs/{_protocol.job_id_of(job)}/cancel", body={}))
        return JobStatus.from_json(answer)

    def nodes(self) -> List[Node]:
        answer = self._perform(Call("GET", "/v1/nodes"))
        return [Node.from_json(node) for node in answer["nodes"]]

    # Performing the protocol's steps.

    def _run(self, steps: Steps, on_emit: Optional[Callable[[Any], Any]] = None) -> Any:
        answer = None
        while True:
            try:
                step = steps.send(answer)
            except StopIteration as end:
                return end.value
            if isinstance(step, Emit):
                answer = None
                if on_emit is not None:
                    on_emit(step.value)
            else:
                answer = self._perform(step)

    def _perform(self, step: Union[Call, Download]) -> Any:
        tries_left = len(self._urls)
        while True:
            tries_left -= 1
            used = self._current
            try:
                if isinstance(step, Download):
                    return self._download(step)
                return self._call(step)
            except (httpx.RequestError, CrowdcloudError) as error:
                if not self._moved_on(error, tries_left, used):
                    raise self._failure(step, error) from None

    def _call(self, call: Call) -> Any:
        size = call.upload.stat().st_size if call.upload is not None else None
        request = self._http.build_request(
            call.method,
            self._url(call.path),
            params=call.params,
            json=call.body,
            content=_chunks(call.upload) if call.upload is not None else None,
            headers=_protocol.request_headers(self.connection.token, call, size),
            timeout=timeout_of(call.timeout_secs),
        )
        response = self._http.send(request, stream=True)
        try:
            body = _protocol.Capped(_protocol.JSON_BYTES_MAX)
            for chunk in response.iter_bytes():
                body.add(chunk)
        finally:
            response.close()
        return _protocol.answer_of(call, response.status_code, body.bytes())

    def _download(self, download: Download) -> Optional[bytes]:
        request = self._http.build_request(
            "GET",
            self._url(f"/v1/blobs/{download.hash}"),
            headers=_protocol.request_headers(self.connection.token, None, None),
            timeout=timeout_of(_protocol.TRANSFER_TIMEOUT_SECS),
        )
        sink = _protocol.Sink(download)
        try:
            response = self._http.send(request, stream=True)
            try:
                if response.status_code != 200:
                    body = _protocol.Capped(_protocol.JSON_BYTES_MAX)
                    for chunk in response.iter_bytes():
                        body.add(chunk)
                    raise _protocol.error_of(response.status_code, body.bytes())
                sink.expect(response.headers.get("content-length"))
                for chunk in response.iter_bytes():
                    sink.add(chunk)
            finally:
                response.close()
            return sink.finish()
        except BaseException:
            sink.abort()
            raise


def _chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(_protocol.CHUNK_BYTES), b""):
            yield chunk
