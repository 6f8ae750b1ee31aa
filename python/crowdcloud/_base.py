"""What `Client` and `AsyncClient` share besides the protocol: how they are made (the
connection, the pinned TLS context, the HTTP settings) and how a job is planned."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import httpx

from . import _protocol, jobs
from ._protocol import Call, Download
from .connection import Connection, PathLike, resolve
from .errors import ApiError, BlobTooLargeError, CrowdcloudError, UsageError
from .pinning import PinnedContext
from .types import BlobRef, OutputFile, TaskStatus

#: Connections kept open between requests, per client.
_IDLE_CONNECTIONS_MAX = 8
#: Well inside the coordinator's idle timeout (60 s), so no request goes out on a connection
#: the coordinator is closing at that moment.
_IDLE_SECS = 20.0
_CONNECT_TIMEOUT_SECS = 5.0


class ClientBase:
    """The connection and the job planning of both clients."""

    connection: Connection

    def __init__(
        self,
        url: Optional[str] = None,
        *,
        token: Optional[str] = None,
        fingerprint: Optional[str] = None,
        data_dir: Optional[PathLike] = None,
    ) -> None:
        self.connection = resolve(url, token, fingerprint, data_dir)
        self._urls = self.connection.url.split(",")
        self._current = 0

    def _url(self, path: str) -> str:
        """`path` at the coordinator this client uses now."""
        return self._urls[self._current] + path

    def _moved_on(self, error: BaseException, tries_left: int, used: int) -> bool:
        """Whether to send a request again to the next coordinator, having moved on from
        coordinator `used` (unless another request already did): when it refused the
        connection or stands by, it surely did not take the request. A pool with a standby is
        given as every coordinator's URL, comma-separated."""
        not_taken = isinstance(error, httpx.ConnectError) or (
            isinstance(error, ApiError) and error.code == "standby"
        )
        if not_taken and tries_left > 0:
            if self._current == used:
                self._current = (used + 1) % len(self._urls)
            return True
        return False

    def _failure(self, step: Union[Call, Download], error: Exception) -> Exception:
        """What a failed step raises: a network failure as the package's error, within the
        step's context."""
        if isinstance(error, httpx.RequestError):
            error = _protocol.network_error(error, self.url, self.connection.fingerprint)
        context = step.context if isinstance(step, Call) else None
        if context and isinstance(error, CrowdcloudError):
            return error._within(context)
        return error

    def _http_options(self) -> Dict[str, Any]:
        pinned = self.connection.fingerprint
        return {
            # A pinned context when the URL is https://; plain http:// has no TLS to verify.
            "verify": PinnedContext(pinned) if pinned is not None else True,
            # No proxies, .netrc or certificate bundles from the environment: the token goes to
            # the coordinator and nowhere else, and only the pin decides trust.
            "trust_env": False,
            "follow_redirects": False,
            "timeout": httpx.Timeout(None, connect=_CONNECT_TIMEOUT_SECS),
            "limits": httpx.Limits(
                max_keepalive_connections=_IDLE_CONNECTIONS_MAX, keepalive_expiry=_IDLE_SECS
            ),
        }

    @property
    def url(self) -> str:
        return self.connection.url

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.connection.url!r})"

    def plan(
        self,
        program: PathLike,
        *,
        args: Sequence[str] = (),
        tasks: Union[None, int, Sequence[jobs.Task]] = None,
        inputs: Optional[PathLike] = None,
        name: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
        mounts: Optional[Mapping[str, PathLike]] = None,
        packages: Optional[PathLike] = None,
        runtime: Optional[PathLike] = None,
        limits: Optional[jobs.Limits] = None,
        requirements: Optional[jobs.Requirements] = None,
        max_attempts: int = 3,
        replicas: int = 1,
        deterministic_seed: Optional[int] = None,
        verify: Optional[str] = None,
        validator: Optional[jobs.Validator] = None,
        success_exit_codes: Sequence[int] = (),
    ) -> jobs.Plan:
        """A job of local files, ready for `submit`; nothing is sent.

        `program` is a WebAssembly module (`.wasm`) or a Python script (`.py`, run under the
        Python runtime: `runtime=` or the one `crowdcloud runtimes add python` installed, with
        `packages=` a directory of pure-Python packages it imports). The tasks come in one of
        three ways: `tasks=N` (`{i}` in `args` is the index), `inputs=DIR` (one task per file,
        the file in `/input`; `{name}` in `args` is its name), or `tasks=[Task(...), ...]`;
        with none, one task of `args`. `mounts` maps guest paths to local directories shared
        read-only by all tasks. `limits`, `requirements`, `max_attempts`, `replicas`,
        `deterministic_seed`, `verify` (`"replicate"`), `validator` and `success_exit_codes`
        are the job spec's fields of the same names.
        """
        return jobs.plan(
            program,
            args=args,
            tasks=tasks,
            inputs=inputs,
            name=name,
            env=env,
            mounts=mounts,
            packages=packages,
            runtime=runtime,
            runtimes_dir=self.connection.data_dir / "runtimes",
            limits=limits,
            requirements=requirements,
            max_attempts=max_attempts,
            replicas=replicas,
            deterministic_seed=deterministic_seed,
            verify=verify,
            validator=validator,
            success_exit_codes=success_exit_codes,
        )

    def _plan_of(self, program: Union[PathLike, jobs.Plan], options: Dict[str, Any]) -> jobs.Plan:
        if isinstance(program, jobs.Plan):
            if options:
                raise UsageError("a Plan is submitted as it is; give options to plan() instead")
            return program
        return self.plan(program, **options)


def blob_of(blob: Union[BlobRef, OutputFile], bytes_max: int) -> BlobRef:
    """A blob to read into memory, refused at once when it is larger than `bytes_max`."""
    if blob.size_bytes > bytes_max:
        raise BlobTooLargeError(
            f"blob {blob.hash} holds {blob.size_bytes} bytes, more than bytes_max={bytes_max}; "
            "fetch it into a file with results(job, dir), or raise bytes_max"
        )
    return BlobRef(blob.hash, blob.size_bytes)


def output_of(task: TaskStatus, path: str) -> OutputFile:
    found = task.output_file(path)
    if found is None:
        left = ", ".join(output.path for output in task.outputs) or "nothing"
        raise UsageError(f"task {task.index} left no output {path!r} in /output; it left {left}")
    return found


def out_dir_of(out_dir: PathLike) -> Path:
    directory = Path(out_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create {directory}: {error.strerror or error}") from None
    return directory


def timeout_of(timeout_secs: float) -> httpx.Timeout:
    """A request's time: `timeout_secs` to read, write and wait, a few seconds to connect."""
    return httpx.Timeout(timeout_secs, connect=_CONNECT_TIMEOUT_SECS)
