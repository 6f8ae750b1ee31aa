"""`AsyncClient`: the client of a pool for asyncio (or trio) programs.

The same methods as `Client`, awaited; `watch` is an async iterator, and `wait`'s `progress`
may be a plain function or a coroutine function. Both clients run the same protocol
(`_protocol`), so they send the same requests.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, AsyncIterator, Callable, List, Optional, Union

import httpx

from . import _protocol
from ._base import ClientBase, blob_of, out_dir_of, output_of, timeout_of
from ._protocol import Call, Download, Emit, Steps
from .connection import PathLike
from .errors import CrowdcloudError
from .jobs import Plan
from .types import BlobRef, JobStatus, Node, OutputFile, Submitted, TaskStatus

Job = Any  # a job id, a `Submitted` or a `JobStatus`


class AsyncClient(ClientBase):
    """A client of one coordinator, made as the CLI would connect (see `connection`).
    Close it with `await client.aclose()`, or use it in an `async with` block."""

    def __init__(
        self,
        url: Optional[str] = None,
        *,
        token: Optional[str] = None,
        fingerprint: Optional[str] = None,
        data_dir: Optional[PathLike] = None,
    ) -> None:
        super().__init__(url, token=token, fingerprint=fingerprint, data_dir=data_dir)
        self._http = httpx.AsyncClient(**self._http_options())

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    # The operations, as `Client`'s.

    async def health(self) -> dict:
        return await self._perform(Call("GET", "/v1/health"))

    async def submit(self, program: Union[PathLike, Plan], **options: Any) -> Submitted:
        """Uploads the job's files (each once, none the coordinator already holds) and submits
        it. `program` and `options` are as for `plan`, or `program` is a `Plan`."""
        return await self._run(_protocol.submit(self._plan_of(program, options)))

    async def run(
        self,
        program: Union[PathLike, Plan],
        timeout_secs: Optional[float] = None,
        **options: Any,
    ) -> JobStatus:
        """Submits the job (as `submit`) and returns its status once it has ended; a short job
        takes one exchange once its files are uploaded. Past `timeout_secs` (None: no limit)
        `WaitTimeoutError` is raised."""
        plan = self._plan_of(program, options)
        return await self._run(_protocol.run(plan, timeout_secs))

    async def status(self, job: Job) -> JobStatus:
        answer = await self._perform(Call("GET", f"/v1/jobs/{_protocol.job_id_of(job)}"))
        return JobStatus.from_json(answer)

    async def jobs(self, limit: int = 100) -> List[JobStatus]:
        answer = await self._perform(Call("GET", "/v1/jobs", params={"limit": limit}))
        return [JobStatus.from_json(job) for job in answer["jobs"]]

    async def wait(
        self,
        job: Job,
        progress: Optional[Callable[[JobStatus], Any]] = None,
        timeout_secs: Optional[float] = None,
    ) -> JobStatus:
        """The job once it has ended; `progress` (maybe a coroutine function) is called with
        its status now and at every change; past `timeout_secs` `WaitTimeoutError` is raised."""
        return await self._run(_protocol.watch(_protocol.job_id_of(job), timeout_secs), progress)

    async def watch(
        self, job: Job, timeout_secs: Optional[float] = None
    ) -> AsyncIterator[JobStatus]:
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
                answer = await self._perform(step)

    async def tasks(self, job: Job) -> List[TaskStatus]:
        return await self._run(_protocol.tasks(_protocol.job_id_of(job)))

    async def why(self, job: Job) -> List[str]:
        answer = await self._perform(Call("GET", f"/v1/jobs/{_protocol.job_id_of(job)}/why"))
        return list(answer["reasons"])

    async def results(self, job: Job, out_dir: PathLike) -> List[TaskStatus]:
        """Writes every task's `stdout`, `stderr` and `output/…` into `OUT/INDEX/`."""
        return await self._run(_protocol.results(_protocol.job_id_of(job), out_dir_of(out_dir)))

    async def read(
        self, blob: Union[BlobRef, OutputFile], bytes_max: int = _protocol.IN_MEMORY_BYTES_MAX
    ) -> bytes:
        ref = blob_of(blob, bytes_max)
        return await self._perform(Download(ref.hash, ref.size_bytes))

    async def stdout(self, task: TaskStatus) -> bytes:
        return b"" if task.stdout is None else await self.read(task.stdout)

    async def stderr(self, task: TaskStatus) -> bytes:
        return b"" if task.stderr is None else await self.read(task.stderr)

    async def output(self, task: TaskStatus, path: str) -> bytes:
        return await self.read(output_of(task, path))

    async def cancel(self, job: Job) -> JobStatus:
        path = f"/v1/jobs/{_protocol.job_id_of(job)}/cancel"
        return JobStatus.from_json(await self._perform(Call("POST", path, body={})))

    async def nodes(self) -> List[Node]:
        answer = await self._perform(Call("GET", "/v1/nodes"))
        return [Node.from_json(node) for node in answer["nodes"]]

    # Performing the protocol's steps.

    async def _run(self, steps: Steps, on_emit: Optional[Callable[[Any], Any]] = None) -> Any:
        answer = None
        while True:
            try:
                step = steps.send(answer)
            except StopIteration as end:
                return end.value
            if isinstance(step, Emit):
                answer = None
                if on_emit is not None:
                    called = on_emit(step.value)
                    if inspect.isawaitable(called):
                        await called
            else:
                answer = await self._perform(step)

    async def _perform(self, step: Union[Call, Download]) -> Any:
        tries_left = len(self._urls)
        while True:
            tries_left -= 1
            used = self._current
            try:
                if isinstance(step, Download):
                    return await self._download(step)
                return await self._call(step)
            except (httpx.RequestError, CrowdcloudError) as error:
                if not self._moved_on(error, tries_left, used):
                    raise self._failure(step, error) from None

    async def _call(self, call: Call) -> Any:
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
        response = await self._http.send(request, stream=True)
        try:
            body = _protocol.Capped(_protocol.JSON_BYTES_MAX)
            async for chunk in response.aiter_bytes():
                body.add(chunk)
        finally:
            await response.aclose()
        return _protocol.answer_of(call, response.status_code, body.bytes())

    async def _download(self, download: Download) -> Optional[bytes]:
        request = self._http.build_request(
            "GET",
            self._url(f"/v1/blobs/{download.hash}"),
            headers=_protocol.request_headers(self.connection.token, None, None),
            timeout=timeout_of(_protocol.TRANSFER_TIMEOUT_SECS),
        )
        sink = _protocol.Sink(download)
        try:
            response = await self._http.send(request, stream=True)
            try:
                if response.status_code != 200:
                    body = _protocol.Capped(_protocol.JSON_BYTES_MAX)
                    async for chunk in response.aiter_bytes():
                        body.add(chunk)
                    raise _protocol.error_of(response.status_code, body.bytes())
                sink.expect(response.headers.get("content-length"))
                async for chunk in response.aiter_bytes():
                    sink.add(chunk)
            finally:
                await response.aclose()
            return sink.finish()
        except BaseException:
            sink.abort()
            raise


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    # Local reads of one chunk are short next to sending it; no thread is needed.
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(_protocol.CHUNK_BYTES), b""):
            yield chunk
