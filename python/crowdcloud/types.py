"""What the coordinator answers, as plain dataclasses read from the API's JSON.

They follow the wire types (`crates/wire`: `JobStatus`, `TaskStatus`, `NodeView`, ...), field
for field. Fields a newer coordinator adds are kept in `raw`, so an older package still reads
its answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from .errors import ProtocolError

JOB_STATES = ("running", "completed", "failed", "cancelled")
TASK_STATES = ("pending", "running", "succeeded", "failed", "cancelled")


def _read(kind: str, data: Any, build: Any) -> Any:
    """`build(data)`, or a `ProtocolError` that names what could not be read."""
    try:
        return build(data)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ProtocolError(
            f"the coordinator's {kind} is not understood ({error!r}); are this package and "
            "the coordinator the same version?"
        ) from None


@dataclass(frozen=True)
class Submitted:
    """The answer to a submission."""

    job_id: str
    tasks: int

    @staticmethod
    def from_json(data: Any) -> "Submitted":
        return _read("submission answer", data, lambda d: Submitted(d["job_id"], int(d["tasks"])))


@dataclass(frozen=True)
class TaskCounts:
    total: int
    pending: int
    running: int
    succeeded: int
    failed: int
    cancelled: int

    @property
    def ended(self) -> int:
        return self.succeeded + self.failed + self.cancelled


@dataclass(frozen=True)
class NodeShare:
    """How many tasks of a job one node finished."""

    node_id: str
    node_name: str
    tasks_succeeded: int


@dataclass(frozen=True)
class JobStatus:
    job_id: str
    name: str
    state: str
    tasks: TaskCounts
    attempts: int
    fuel_used: int
    created_at_ms: int
    finished_at_ms: Optional[int]
    #: Grows with every change of the job.
    version: int
    nodes: List[NodeShare]
    verifying: int = 0
    recalled: int = 0
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ended(self) -> bool:
        return self.state != "running"

    @property
    def succeeded(self) -> bool:
        return self.state == "completed"

    @staticmethod
    def from_json(data: Any) -> "JobStatus":
        return _read("job status", data, _job_status)


def _job_status(data: Dict[str, Any]) -> JobStatus:
    counts = data["tasks"]
    return JobStatus(
        job_id=data["job_id"],
        name=data["name"],
        state=data["state"],
        tasks=TaskCounts(
            total=counts["total"],
            pending=counts["pending"],
            running=counts["running"],
            succeeded=counts["succeeded"],
            failed=counts["failed"],
            cancelled=counts["cancelled"],
        ),
        attempts=data["attempts"],
        fuel_used=data["fuel_used"],
        created_at_ms=data["created_at_ms"],
        finished_at_ms=data.get("finished_at_ms"),
        version=data["version"],
        nodes=[
            NodeShare(share["node_id"], share["node_name"], share["tasks_succeeded"])
            for share in data.get("nodes", [])
        ],
        verifying=data.get("verifying", 0),
        recalled=data.get("recalled", 0),
        raw=data,
    )


@dataclass(frozen=True)
class BlobRef:
    """A blob the task left (stdout or stderr), with its size."""

    hash: str
    size_bytes: int


@dataclass(frozen=True)
class OutputFile:
    """A file the task left in `/output`, at `path` below it."""

    path: str
    hash: str
    size_bytes: int


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended: `kind` is `succeeded`, `exit_code`, `trap`, `out_of_fuel`,
    `deadline_exceeded`, `memory_limit`, `output_too_large`, `invalid_output`,
    `module_rejected`, `node_error`, `cancelled`, `lost` or `inconclusive`; the other fields
    are set for the kinds that carry them."""

    kind: str
    code: Optional[int] = None
    message: Optional[str] = None
    what: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __str__(self) -> str:
        if self.kind == "exit_code":
            return f"exited with code {self.code}"
        if self.message is not None:
            return f"{self.kind.replace('_', ' ')}: {self.message}"
        if self.what is not None:
            return f"too much output on {self.what}"
        return self.kind.replace("_", " ")


@dataclass(frozen=True)
class Usage:
    fuel_used: int
    wall_ms: int
    memory_peak_bytes: int
    output_bytes: int
    compile_ms: int = 0


@dataclass(frozen=True)
class TaskStatus:
    """One task with its latest attempt's result."""

    index: int
    state: str
    args: List[str]
    attempts: int
    attempt_id: Optional[str]
    node_id: Optional[str]
    outcome: Optional[Outcome]
    usage: Optional[Usage]
    stdout: Optional[BlobRef]
    stderr: Optional[BlobRef]
    outputs: List[OutputFile]
    # For a task another pool ran (federation): that pool and its node, "pool/node".
    ran_on: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ended(self) -> bool:
        return self.state in ("succeeded", "failed", "cancelled")

    def output_file(self, path: str) -> Optional[OutputFile]:
        """The output at `path` below `/output`, if the task left one."""
        return next((output for output in self.outputs if output.path == path), None)

    @staticmethod
    def from_json(data: Any) -> "TaskStatus":
        return _read("task status", data, _task_status)


def _blob_ref(data: Optional[Dict[str, Any]]) -> Optional[BlobRef]:
    return None if data is None else BlobRef(data["hash"], data["size_bytes"])


def _task_status(data: Dict[str, Any]) -> TaskStatus:
    outcome = data.get("outcome")
    usage = data.get("usage")
    return TaskStatus(
        index=data["index"],
        state=data["state"],
        args=list(data["args"]),
        attempts=data["attempts"],
        attempt_id=data.get("attempt_id"),
        node_id=data.get("node_id"),
        ran_on=data.get("ran_on"),
        outcome=(
            None
            if outcome is None
            else Outcome(
                kind=outcome["kind"],
                code=outcome.get("code"),
                message=outcome.get("message"),
                what=outcome.get("what"),
                raw=outcome,
            )
        ),
        usage=(
            None
            if usage is None
            else Usage(
                fuel_used=usage["fuel_used"],
                wall_ms=usage["wall_ms"],
                memory_peak_bytes=usage["memory_peak_bytes"],
                output_bytes=usage["output_bytes"],
                compile_ms=usage.get("compile_ms", 0),
            )
        ),
        stdout=_blob_ref(data.get("stdout")),
        stderr=_blob_ref(data.get("stderr")),
        outputs=[
            OutputFile(output["path"], output["hash"], output["size_bytes"])
            for output in data.get("outputs", [])
        ],
        raw=data,
    )


@dataclass(frozen=True)
class Node:
    """A node of the pool, as `crowdcloud nodes` shows it."""

    node_id: str
    name: str
    state: str
    state_reason: Optional[str]
    slots: int
    running: int
    tasks_succeeded: int
    labels: Dict[str, str]
    capabilities: Dict[str, Any]
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @staticmethod
    def from_json(data: Any) -> "Node":
        return _read(
            "node",
            data,
            lambda d: Node(
                node_id=d["node_id"],
                name=d["name"],
                state=d["state"],
                state_reason=d.get("state_reason"),
                slots=d["slots"],
                running=d["running"],
                tasks_succeeded=d["tasks_succeeded"],
                labels=dict(d.get("labels", {})),
                capabilities=dict(d["capabilities"]),
                raw=d,
            ),
        )
