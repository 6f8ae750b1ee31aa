"""The async client against the same real pool: the same operations awaited, `watch` as an
async iterator, a coroutine as `wait`'s progress, and several jobs followed at once."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import List

import pytest

import crowdcloud
from crowdcloud import Limits, MiB

from conftest import guest

SMALL = Limits(memory_bytes_max=64 * MiB, deadline_ms=60_000)


def test_the_async_client_submits_follows_and_fetches_as_the_blocking_one(
    pool, tmp_path: Path
) -> None:
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "one.txt").write_text("a b c\n")
    (texts / "two.txt").write_text("d e\nf\n")

    async def scenario() -> None:
        async with pool.async_client() as client:
            submitted = await client.submit(guest("wordcount"), inputs=texts, limits=SMALL)
            seen: List[crowdcloud.JobStatus] = []

            async def progress(status: crowdcloud.JobStatus) -> None:
                seen.append(status)

            status = await client.wait(submitted, progress=progress, timeout_secs=120)
            assert status.state == "completed" and seen[-1] == status
            tasks = await client.results(submitted, tmp_path / "out")
            expected = [b"1 3 6 one.txt\n1 3 6 total\n", b"2 3 6 two.txt\n2 3 6 total\n"]
            for task, counts in zip(tasks, expected):
                assert (tmp_path / "out" / str(task.index) / "stdout").read_bytes() == counts
                assert await client.stdout(task) == counts
                assert await client.output(task, "counts.txt") == counts
            assert [node.name for node in await client.nodes()] == ["worker"]
            ran = await client.run(guest("wordcount"), inputs=texts, limits=SMALL)
            assert ran.state == "completed" and ran.tasks.succeeded == 2

    asyncio.run(scenario())


def test_async_jobs_are_followed_at_once_and_one_is_cancelled_while_it_runs(pool) -> None:
    async def scenario() -> None:
        async with pool.async_client() as client:
            quick = await client.submit(guest("probe"), tasks=3, args=["echo", "{i}"], limits=SMALL)
            slow = await client.submit(guest("probe"), args=["sleep", "600000"], limits=SMALL)

            async def cancel_once_running() -> crowdcloud.JobStatus:
                async for status in client.watch(slow, timeout_secs=60):
                    if status.tasks.running > 0:
                        return await client.cancel(slow)
                raise AssertionError("the slow job ended before it ran")

            finished, cancelled = await asyncio.gather(
                client.wait(quick, timeout_secs=120), cancel_once_running()
            )
            assert finished.state == "completed"
            assert cancelled.state == "cancelled"
            assert (await client.wait(slow, timeout_secs=30)).state == "cancelled"
            echoed = [await client.stdout(task) for task in await client.tasks(quick)]
            assert echoed == [b"0\n", b"1\n", b"2\n"]

    asyncio.run(scenario())


def closed_port_url() -> str:
    """A loopback address nothing listens on: a port the system just handed out and took back."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_async_errors_are_the_same_errors(pool) -> None:
    async def scenario() -> None:
        async with pool.async_client() as client:
            with pytest.raises(crowdcloud.NotFoundError) as missing:
                await client.status("j-0000000000000000")
            assert missing.value.code == "not_found"
        async with crowdcloud.AsyncClient(pool.coordinator.url, token="ccr_unknown") as stranger:
            with pytest.raises(crowdcloud.UnauthorizedError):
                await stranger.jobs()
        async with crowdcloud.AsyncClient(closed_port_url(), token="ccr_x") as nowhere:
            with pytest.raises(crowdcloud.UnreachableError, match="is it running"):
                await nowhere.health()

    asyncio.run(scenario())
