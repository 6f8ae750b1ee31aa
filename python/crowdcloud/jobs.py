"""A job as the CLI defines it (`jobspec` and `client::submit`), from Python arguments.

`plan` turns `submit`'s arguments into a `Plan` of local files: the module (or, for a `.py`
script, the Python runtime, with the script mounted alone at `/job` and run as
`python /job/NAME ARGS`), the mounts, and the tasks in one of three ways (`tasks=N`, a sweep
with `{i}` in the args; `inputs=DIR`, one task per file with `{name}` and `{i}`; or a list of
`Task`). `JobSubmission`'s checks stay the coordinator's: a job it refuses comes back as an
`ApiError` that names the field.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .errors import UsageError

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

#: Tasks in one job (`wire::limits::TASKS_PER_JOB_MAX`).
TASKS_PER_JOB_MAX = 1_000_000

PathLike = Union[str, "os.PathLike[str]"]
InputLike = Union[PathLike, Tuple[str, PathLike]]


@dataclass(frozen=True)
class Limits:
    """What every attempt runs under; None leaves the coordinator's default (256 MiB of
    memory, 10^11 fuel, a 10 minute deadline, 64 MiB and 1000 files of output, 16 MiB of stdout
    and 1 MiB of stderr)."""

    memory_bytes_max: Optional[int] = None
    fuel_max: Optional[int] = None
    deadline_ms: Optional[int] = None
    output_bytes_max: Optional[int] = None
    output_files_max: Optional[int] = None
    stdout_bytes_max: Optional[int] = None
    stderr_bytes_max: Optional[int] = None

    def to_json(self) -> Dict[str, int]:
        return {name: value for name, value in self.__dict__.items() if value is not None}


@dataclass(frozen=True)
class Requirements:
    """What a node must offer to run the job's tasks."""

    memory_bytes_min: int = 0
    cores_min: int = 0
    arch: Optional[str] = None
    os: Optional[str] = None
    labels: Mapping[str, str] = field(default_factory=dict)
    # "browser" (tabs lending their device from the web app) or "native" (agents); either
    # when None, but a job whose fuel must be metered always runs on agents.
    runtime: Optional[str] = None

    def to_json(self) -> Dict[str, Any]:
        body: Dict[str, Any] = {
            "memory_bytes_min": self.memory_bytes_min,
            "cores_min": self.cores_min,
            "arch": self.arch,
            "os": self.os,
            "labels": dict(self.labels),
        }
        if self.runtime is not None:
            body["runtime"] = self.runtime
        return body


@dataclass(frozen=True)
class Task:
    """One task: its arguments, a file for its stdin, and files placed in its `/input`
    (a path keeps its file name there; `(name, path)` names it)."""

    args: Sequence[str] = ()
    stdin: Optional[PathLike] = None
    inputs: Sequence[InputLike] = ()


@dataclass(frozen=True)
class Validator:
    """A module of the requester's that says whether two results of a task are equivalent."""

    module: PathLike
    args: Sequence[str] = ()


@dataclass(frozen=True)
class Runtime:
    """A language runtime build the CLI takes, pinned by SHA-256 (`commands/runtimes.rs`)."""

    name: str
    file_name: str
    sha256: str


#: CPython 3.12.0 for WASI (VMware's WebAssembly Language Runtimes), as `crowdcloud runtimes`.
PYTHON = Runtime(
    name="python",
    file_name="python-3.12.0.wasm",
    sha256="e5dc5a398b07b54ea8fdb503bf68fb583d533f10ec3f930963e02b9505f7a763",
)


@dataclass
class TaskPlan:
    args: List[str]
    stdin: Optional[Path]
    inputs: List[Tuple[str, Path]]


@dataclass
class Plan:
    """A job ready to upload: `JobSubmission`'s shape with local files for its blobs."""

    name: str
    module: Path
    env: Dict[str, str]
    #: (guest path, [(path below it, local file)]).
    mounts: List[Tuple[str, List[Tuple[str, Path]]]]
    tasks: List[TaskPlan]
    extra: Dict[str, Any]
    validator: Optional[Tuple[Path, List[str]]] = None

    def files(self) -> List[Path]:
        """Every local file the job names, each once, in the order they are uploaded."""
        named = [self.module]
        if self.validator is not None:
            named.append(self.validator[0])
        named += [path for _, files in self.mounts for _, path in files]
        for task in self.tasks:
            named += ([task.stdin] if task.stdin is not None else []) + [p for _, p in task.inputs]
        return list(dict.fromkeys(named))

    def submission(self, hashes: Mapping[Path, str]) -> Dict[str, Any]:
        """The `JobSubmission` body, each file named by its blob hash."""
        body: Dict[str, Any] = {
            "name": self.name,
            "module": hashes[self.module],
            "env": self.env,
            "mounts": [
                {"guest_path": guest, "files": [{"path": p, "blob": hashes[f]} for p, f in files]}
                for guest, files in self.mounts
            ],
            "tasks": [
                {
                    "args": task.args,
                    "stdin": None if task.stdin is None else hashes[task.stdin],
                    "inputs": [{"name": n, "blob": hashes[p]} for n, p in task.inputs],
                }
                for task in self.tasks
            ],
            **self.extra,
        }
        if self.validator is not None:
            module, args = self.validator
            body["validator"] = {"module": hashes[module], "args": args}
        return body


def plan(
    program: PathLike,
    *,
    args: Sequence[str] = (),
    tasks: Union[None, int, Sequence[Task]] = None,
    inputs: Optional[PathLike] = None,
    name: Optional[str] = None,
    env: Optional[Mapping[str, str]] = None,
    mounts: Optional[Mapping[str, PathLike]] = None,
    packages: Optional[PathLike] = None,
    runtime: Optional[PathLike] = None,
    runtimes_dir: Optional[Path] = None,
    limits: Optional[Limits] = None,
    requirements: Optional[Requirements] = None,
    max_attempts: int = 3,
    replicas: int = 1,
    deterministic_seed: Optional[int] = None,
    verify: Optional[str] = None,
    validator: Optional[Validator] = None,
    success_exit_codes: Sequence[int] = (),
) -> Plan:
    """The plan of `Client.submit`'s arguments (see there)."""
    program = Path(program)
    is_script = program.suffix == ".py"
    if not is_script and program.suffix != ".wasm":
        raise UsageError(
            f"{program}: give a WebAssembly module (.wasm) or a Python script (.py) to run"
        )
    if packages is not None and not is_script:
        raise UsageError("packages= goes with a Python script (.py), not a module")
    job = Plan(
        name=name if name is not None else program.stem,
        module=program,
        env={str(key): str(value) for key, value in (env or {}).items()},
        mounts=[(guest, walk(Path(directory))) for guest, directory in (mounts or {}).items()],
        tasks=_tasks(tasks, inputs, [str(arg) for arg in args]),
        extra=_extra(limits, requirements, max_attempts, replicas, deterministic_seed, verify),
        validator=(
            None
            if validator is None
            else (Path(validator.module), [str(arg) for arg in validator.args])
        ),
    )
    if success_exit_codes:
        job.extra["success_exit_codes"] = [int(code) for code in success_exit_codes]
    if is_script:
        _run_under_runtime(job, program, packages, runtime, runtimes_dir)
    return job


def _extra(
    limits: Optional[Limits],
    requirements: Optional[Requirements],
    max_attempts: int,
    replicas: int,
    deterministic_seed: Optional[int],
    verify: Optional[str],
) -> Dict[str, Any]:
    """The fields of the submission that name no file."""
    extra: Dict[str, Any] = {
        "limits": (limits or Limits()).to_json(),
        "requirements": (requirements or Requirements()).to_json(),
        "max_attempts": max_attempts,
        "replicas": replicas,
    }
    if deterministic_seed is not None:
        extra["deterministic"] = {"seed": deterministic_seed}
    if verify is not None:
        extra["verify"] = verify
    return extra


def _tasks(
    tasks: Union[None, int, Sequence[Task]], inputs: Optional[PathLike], args: List[str]
) -> List[TaskPlan]:
    """The tasks, given in exactly one way; one task of `args` when none is given."""
    if inputs is not None:
        if tasks is not None:
            raise UsageError("give either tasks= or inputs=: inputs= makes one task per file")
        return _per_input(Path(inputs), args)
    if tasks is None or isinstance(tasks, int):
        count = 1 if tasks is None else tasks
        if isinstance(count, bool) or not 1 <= count <= TASKS_PER_JOB_MAX:
            raise UsageError(f"tasks=: give 1 to {TASKS_PER_JOB_MAX} tasks")
        return [TaskPlan(_expand(args, index, ""), None, []) for index in range(count)]
    if args:
        raise UsageError(
            "args= is the template of tasks=N or inputs=DIR; give each Task its own args"
        )
    listed = list(tasks)
    if not listed:
        raise UsageError("tasks=: give at least one Task")
    return [_task_plan(task) for task in listed]


def _task_plan(task: Task) -> TaskPlan:
    if not isinstance(task, Task):
        raise UsageError(f"tasks= takes a count or Task entries, not {type(task).__name__}")
    inputs: List[Tuple[str, Path]] = []
    for entry in task.inputs:
        if isinstance(entry, tuple):
            input_name, path = entry
            inputs.append((str(input_name), Path(path)))
        else:
            inputs.append((Path(entry).name, Path(entry)))
    stdin = None if task.stdin is None else Path(task.stdin)
    return TaskPlan([str(arg) for arg in task.args], stdin, inputs)


def _expand(template: List[str], index: int, name: str) -> List[str]:
    return [arg.replace("{i}", str(index)).replace("{name}", name) for arg in template]


def _per_input(directory: Path, args: List[str]) -> List[TaskPlan]:
    """One task per regular file of `directory`, in name order (`jobspec::per_input`)."""
    try:
        entries = sorted(
            (entry.name, Path(entry.path))
            for entry in os.scandir(directory)
            if entry.is_file(follow_symlinks=False)
        )
    except OSError as error:
        raise UsageError(f"{directory}: {error.strerror or error}") from None
    if not entries:
        raise UsageError(f"{directory}: holds no files: one task is made per file")
    for file_name, _ in entries:
        _require_utf8(file_name)
    return [
        TaskPlan(_expand(args, index, file_name), None, [(file_name, path)])
        for index, (file_name, path) in enumerate(entries)
    ]


def walk(directory: Path) -> List[Tuple[str, Path]]:
    """Regular files below `directory` as (`/`-separated relative path, path), sorted, as the
    CLI mounts a directory (symbolic links are left out)."""
    files: List[Tuple[str, Path]] = []
    pending = [(directory, "")]
    while pending:
        current, prefix = pending.pop()
        try:
            entries = list(os.scandir(current))
        except OSError as error:
            raise UsageError(
                f"cannot read the mount directory {current}: {error.strerror or error}"
            ) from None
        for entry in entries:
            _require_utf8(entry.name)
            relative = f"{prefix}/{entry.name}" if prefix else entry.name
            if entry.is_dir(follow_symlinks=False):
                pending.append((Path(entry.path), relative))
            elif entry.is_file(follow_symlinks=False):
                files.append((relative, Path(entry.path)))
    return sorted(files)


def _require_utf8(file_name: str) -> None:
    try:
        file_name.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"the file name {file_name!r} is not UTF-8; rename it") from None


def _run_under_runtime(
    job: Plan,
    script: Path,
    packages: Optional[PathLike],
    runtime: Optional[PathLike],
    runtimes_dir: Optional[Path],
) -> None:
    """Makes a script's job run under Python, as `crowdcloud submit script.py` does: the
    runtime is the module, the script alone is mounted at `/job`, its packages at `/packages`
    on `PYTHONPATH`, and `/job/NAME` comes first in every task's args."""
    job.module = python_runtime(runtime, runtimes_dir)
    _require_utf8(script.name)
    if not script.is_file():
        raise UsageError(f"cannot read the script {script}: it is not a file")
    job.mounts.append(("/job", [(script.name, script)]))
    if packages is not None:
        job.mounts.append(("/packages", walk(Path(packages))))
        job.env["PYTHONPATH"] = "/packages"
    for task in job.tasks:
        task.args.insert(0, f"/job/{script.name}")


def python_runtime(runtime: Optional[PathLike], runtimes_dir: Optional[Path]) -> Path:
    """The Python runtime module: `runtime`, or the one `crowdcloud runtimes add python`
    installed; refused unless it is the build the CLI pins."""
    if runtime is not None:
        path = Path(runtime)
    else:
        path = (runtimes_dir or Path(".")) / PYTHON.file_name
        if runtimes_dir is None or not path.is_file():
            raise UsageError(
                f"the python runtime is not installed: run `crowdcloud runtimes add python FILE` "
                f"with {PYTHON.file_name} (scripts/python-runtime downloads it), or pass runtime="
            )
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as module:
            for chunk in iter(lambda: module.read(MiB), b""):
                digest.update(chunk)
    except OSError as error:
        raise UsageError(f"cannot read the python runtime {path}: {error.strerror}") from None
    if digest.hexdigest() != PYTHON.sha256:
        raise UsageError(
            f"{path} is not the python build crowdcloud takes (its SHA-256 is "
            f"{digest.hexdigest()}, not {PYTHON.sha256}); get it with scripts/python-runtime"
        )
    return path
