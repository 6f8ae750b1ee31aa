"""The blocking client against a real pool: jobs of wasm modules over input files, mounts and
listed tasks, followed with progress and watched, their results fetched as files and as
bytes, cancelled, and the errors a requester meets (a bad token, an unknown job, a job the
coordinator refuses, a mistake caught before anything is sent)."""

from __future__ import annotations

from pathlib import Path

import pytest

import crowdcloud
from crowdcloud import Limits, MiB, Task

from conftest import eventually, guest

TEXTS = {"one.txt": "a b c\n", "two.txt": "d e\nf\n", "three.txt": ""}
# wordcount's report per input, tasks following the files in name order: one, three, two.
COUNTS = [
    b"1 3 6 one.txt\n1 3 6 total\n",
    b"0 0 0 three.txt\n0 0 0 total\n",
    b"2 3 6 two.txt\n2 3 6 total\n",
]
SMALL = Limits(memory_bytes_max=64 * MiB, deadline_ms=60_000)


def write_texts(directory: Path) -> Path:
    texts = directory / "texts"
    texts.mkdir()
    for name, text in TEXTS.items():
        (texts / name).write_text(text)
    return texts


def test_a_module_runs_over_input_files_and_its_results_come_back_byte_for_byte(
    client: crowdcloud.Client, tmp_path: Path
) -> None:
    texts = write_texts(tmp_path)
    submitted = client.submit(guest("wordcount"), inputs=texts, limits=SMALL, name="count")
    assert submitted.tasks == 3

    seen: list = []
    status = client.wait(submitted, progress=seen.append, timeout_secs=120)
    assert status.state == "completed" and status.succeeded, status
    assert status.tasks.succeeded == 3 and status.name == "count"
    assert seen[0].job_id == submitted.job_id and seen[-1] == status
    versions = [each.version for each in seen]
    assert versions == sorted(set(versions)), "each call is a change, in order"

    out = tmp_path / "results"
    tasks = client.results(submitted, out)
    assert [task.index for task in tasks] == [0, 1, 2]
    for task, expected in zip(tasks, COUNTS):
        assert task.state == "succeeded" and task.outcome is not None
        assert task.outcome.kind == "succeeded"
        assert task.ran_on is None, "run by this pool's own node"
        assert task.node_id is not None
        assert (out / str(task.index) / "stdout").read_bytes() == expected
        assert (out / str(task.index) / "output" / "counts.txt").read_bytes() == expected
        assert client.stdout(task) == expected
        assert client.output(task, "counts.txt") == expected
    leftovers = [path.name for path in out.rglob("*") if ".partial-" in path.name]
    assert leftovers == [], "downloads land whole or not at all"


def test_run_submits_and_answers_once_the_job_ended(
    client: crowdcloud.Client, tmp_path: Path
) -> None:
    texts = write_texts(tmp_path)
    status = client.run(guest("wordcount"), inputs=texts, limits=SMALL, name="count")
    assert status.ended and status.state == "completed"
    assert status.tasks.succeeded == 3


def test_mounts_listed_tasks_and_exit_codes_reach_the_guest(
    client: crowdcloud.Client, tmp_path: Path
) -> None:
    (tmp_path / "data" / "nested").mkdir(parents=True)
    (tmp_path / "data" / "nested" / "table.csv").write_text("x,y\n1,2\n")
    (tmp_path / "in.txt").write_bytes(b"from stdin\n")
    tasks = [
        Task(args=["read", "/share/nested/table.csv"]),
        Task(args=["write", "/share/nested/table.csv", "3"]),
        Task(args=["cat"], stdin=tmp_path / "in.txt"),
        Task(args=["exit", "10"]),
        Task(args=["read", "/input/renamed"], inputs=[("renamed", tmp_path / "in.txt")]),
    ]
    submitted = client.submit(
        guest("probe"),
        tasks=tasks,
        mounts={"/share": tmp_path / "data"},
        success_exit_codes=[10],
        limits=SMALL,
    )
    status = client.wait(submitted, timeout_secs=120)
    read, write, cat, exit_ten, renamed = client.tasks(submitted)
    assert client.stdout(read) == b"ok 8\n", "the mount is readable at its guest path"
    assert write.outcome is not None and write.outcome.kind == "exit_code"
    assert write.outcome.code == 3, "and read-only"
    assert client.stdout(cat) == b"from stdin\n"
    assert exit_ten.state == "succeeded" and exit_ten.outcome is not None
    assert exit_ten.outcome.code == 10, "a named exit code succeeds and is still shown"
    assert client.stdout(renamed) == b"ok 11\n"
    assert status.state == "failed" and status.tasks.failed == 1


def test_a_sweep_is_watched_change_by_change_until_it_ends(
    client: crowdcloud.Client,
) -> None:
    submitted = client.submit(guest("probe"), tasks=4, args=["echo", "task", "{i}"], limits=SMALL)
    watched = list(client.watch(submitted, timeout_secs=120))
    assert watched[-1].state == "completed"
    assert all(not each.ended for each in watched[:-1]), "it stops at the end"
    assert [each.version for each in watched] == sorted({each.version for each in watched})
    outputs = [client.stdout(task) for task in client.tasks(submitted)]
    assert outputs == [f"task {i}\n".encode() for i in range(4)]


def test_a_running_job_is_cancelled_and_a_second_cancel_says_it_ended(
    client: crowdcloud.Client,
) -> None:
    submitted = client.submit(guest("probe"), tasks=2, args=["sleep", "600000"], limits=SMALL)
    eventually(
        "a task of the job to run",
        60,
        lambda: client.status(submitted).tasks.running > 0,
    )
    cancelled = client.cancel(submitted)
    assert cancelled.state == "cancelled"
    assert client.wait(submitted, timeout_secs=30).state == "cancelled"
    with pytest.raises(crowdcloud.ConflictError) as refused:
        client.cancel(submitted)
    assert refused.value.code == "conflict" and refused.value.status == 409
    assert "already ended" in str(refused.value)


def test_wait_gives_up_at_its_deadline_with_the_job_as_last_seen(
    client: crowdcloud.Client,
) -> None:
    submitted = client.submit(guest("probe"), args=["sleep", "600000"], limits=SMALL)
    try:
        with pytest.raises(crowdcloud.WaitTimeoutError) as late:
            client.wait(submitted, timeout_secs=0.5)
        assert late.value.status.job_id == submitted.job_id
        assert late.value.status.state == "running"
        assert "wait again, or cancel it" in str(late.value)
    finally:
        client.cancel(submitted)


def test_nodes_shows_the_agent(client: crowdcloud.Client) -> None:
    nodes = client.nodes()
    assert [node.name for node in nodes] == ["worker"]
    assert nodes[0].state == "online" and nodes[0].slots == 2


def test_a_bad_token_is_refused_with_the_api_code(pool) -> None:
    coordinator = pool.coordinator
    with crowdcloud.Client(coordinator.url, token="ccr_" + "0" * 43) as stranger:
        with pytest.raises(crowdcloud.UnauthorizedError) as refused:
            stranger.jobs()
    assert refused.value.code == "unauthorized" and refused.value.status == 401
    assert "not valid" in str(refused.value)
    with pytest.raises(crowdcloud.UsageError, match="takes an API token"):
        crowdcloud.Client(coordinator.url, token=coordinator.join_token)


def test_an_unknown_job_is_not_found_and_a_malformed_one_is_refused_at_once(
    client: crowdcloud.Client,
) -> None:
    with pytest.raises(crowdcloud.NotFoundError) as missing:
        client.status("j-0000000000000000")
    assert missing.value.code == "not_found"
    assert "no job j-0000000000000000" in str(missing.value)
    with pytest.raises(crowdcloud.UsageError, match="not a job id"):
        client.status("../../v1/tokens")


def test_a_job_the_coordinator_refuses_says_which_field(client: crowdcloud.Client) -> None:
    with pytest.raises(crowdcloud.ApiError) as refused:
        client.submit(guest("probe"), args=["echo"], replicas=9)
    assert refused.value.code == "bad_request" and refused.value.status == 400
    assert "replicas" in str(refused.value)


def test_local_mistakes_are_refused_before_anything_is_sent(
    client: crowdcloud.Client, tmp_path: Path
) -> None:
    (tmp_path / "empty").mkdir()
    cases = [
        ({"program": tmp_path / "job.toml"}, "WebAssembly module"),
        ({"program": guest("probe"), "inputs": tmp_path / "empty"}, "holds no files"),
        ({"program": guest("probe"), "inputs": tmp_path, "tasks": 2}, "either tasks= or inputs="),
        ({"program": guest("probe"), "tasks": 0}, "give 1 to"),
        ({"program": guest("probe"), "tasks": [Task()], "args": ["x"]}, "give each Task"),
        ({"program": guest("probe"), "packages": tmp_path}, "goes with a Python script"),
        ({"program": tmp_path / "absent.wasm"}, "cannot upload"),
    ]
    before = len(client.jobs(limit=1000))
    for options, says in cases:
        with pytest.raises(crowdcloud.UsageError, match=says):
            client.submit(**options)
    assert len(client.jobs(limit=1000)) == before, "no job was submitted"
