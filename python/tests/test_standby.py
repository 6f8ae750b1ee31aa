"""A pool with a standby coordinator: a client given both URLs follows the one that leads."""

from __future__ import annotations

import signal
from pathlib import Path

import crowdcloud
from conftest import Coordinator, eventually, guest
from pool import Process


def _leads(url: str, token: str) -> bool:
    try:
        with crowdcloud.Client(url, token=token) as client:
            return client.health().get("role") == "leader"
    except crowdcloud.CrowdcloudError:
        return False


def test_a_client_given_both_coordinators_follows_the_standby_when_the_leader_dies(
    tmp_path: Path,
) -> None:
    database = f"sqlite://{tmp_path / 'shared' / 'state.db'}"
    (tmp_path / "shared").mkdir()
    blobs = str(tmp_path / "shared" / "blobs")
    standby_args = ["--standby", "--database-url", database, "--blobs", blobs]
    first = Coordinator(tmp_path / "first", more_args=standby_args)
    eventually("the first coordinator to lead", 30, lambda: _leads(first.url, first.owner_token))
    second = Coordinator(
        tmp_path / "second", more_args=standby_args, tokens_from=first.data_dir
    )
    both = f"{first.url},{second.url}"
    agent_dir = tmp_path / "worker"
    agent_dir.mkdir()
    agent = Process(
        ["agent", "--coordinator", both, "--join-token", first.join_token,
         "--data-dir", str(agent_dir), "--slots", "2", "--name", "worker", "--dedicated"],
        agent_dir / "agent.log",
    )
    try:
        with crowdcloud.Client(both, token=first.owner_token) as client:
            with crowdcloud.Client(second.url, token=first.owner_token) as alone:
                try:
                    alone.jobs()
                    raise AssertionError("a standby serves nothing but its health")
                except crowdcloud.UnavailableError as refused:
                    assert refused.code == "standby"
            before = client.run(guest("probe"), args=["echo", "before"])
            assert client.stdout(client.tasks(before)[0]) == b"before\n"
            first.process.child.send_signal(signal.SIGKILL)
            first.process.child.wait()
            eventually("the standby to lead", 30, lambda: _leads(second.url, first.owner_token))
            after = client.run(guest("probe"), args=["echo", "after"])
            assert client.stdout(client.tasks(after)[0]) == b"after\n"
            assert client.url == both
    finally:
        agent.stop()
        first.process.stop()
        second.process.stop()
