"""Browsers lending their device: two "Lend this device" tabs register as nodes, run the tasks
of a real job in the browser's WebAssembly engine and give the same bytes an agent gives; a
hidden tab stops and gives its work back, and a closed tab's task runs again elsewhere."""

from __future__ import annotations

import time
from typing import Dict, Iterator, List

import pytest

import crowdcloud
from crowdcloud import Limits, MiB, Requirements

from conftest import DESKTOP, PHONE, Device, artifacts, sign_in_link
from pool import Pool, eventually, guest

SMALL = Limits(memory_bytes_max=64 * MiB, deadline_ms=120_000)
JOB_SECS = 120.0
BROWSER = Requirements(runtime="browser")
NATIVE = Requirements(runtime="native")


def lend(device: Device, cores: int = 1) -> str:
    """Opens the Lend page, starts lending, and returns the node id once registered."""
    page = device.page
    page.click('a[data-nav="lend"]')
    page.locator("#lend-cores").fill(str(cores))
    page.locator("#lend-start").click()
    page.wait_for_selector('[data-lend][data-node-id]:not([data-node-id=""])', timeout=30_000)
    page.wait_for_selector('[data-lend][data-state="waiting"]', timeout=30_000)
    return page.locator("[data-lend]").get_attribute("data-node-id")


def set_hidden(device: Device, hidden: bool) -> None:
    """The tab hidden or shown, as when its owner switches app and back: headless Chromium has
    no background state of its own, so the page is told as the browser would tell it."""
    device.page.evaluate(
        """(hidden) => {
            Object.defineProperty(document, 'visibilityState',
                { value: hidden ? 'hidden' : 'visible', configurable: true });
            Object.defineProperty(document, 'hidden', { value: hidden, configurable: true });
            document.dispatchEvent(new Event('visibilitychange'));
        }""",
        hidden,
    )


def client_of(pool: Pool, device: Device) -> crowdcloud.Client:
    coordinator = pool.coordinator
    token = device.page.evaluate("sessionStorage.getItem('crowdcloud-token')")
    return crowdcloud.Client(coordinator.url, token=token, fingerprint=coordinator.fingerprint)


@pytest.fixture
def tabs(browser, pool: Pool) -> Iterator[List[Device]]:
    opened = [Device(browser, DESKTOP) for _ in range(2)]
    for device in opened:
        device.sign_in(sign_in_link(pool))
    yield opened
    for device in opened:
        assert device.policy_violations == [], "the page broke its own Content-Security-Policy"
        device.close()


def render_tasks() -> List[crowdcloud.Task]:
    return [
        crowdcloud.Task(args=["--width", "64", "--height", "32", "--x0", str(x0), "--y0", "0",
                              "--w", "16", "--h", "32", "--samples", "1"])
        for x0 in range(0, 64, 16)
    ]


def outputs_by_task(requester: crowdcloud.Client, job_id: str) -> Dict[int, bytes]:
    return {
        task.index: requester.output(task, "tile.ppm") for task in requester.tasks(job_id)
    }


def attempts_of(requester: crowdcloud.Client, job_id: str) -> List[dict]:
    answer = requester._perform(crowdcloud._protocol.Call("GET", f"/v1/jobs/{job_id}/attempts"))
    return answer["attempts"]


def test_two_tabs_run_a_jobs_tasks_and_give_the_bytes_an_agent_gives(
    tabs: List[Device], pool: Pool
) -> None:
    nodes = {lend(device) for device in tabs}
    assert len(nodes) == 2, "each tab is a node of its own"
    with client_of(pool, tabs[0]) as requester:
        listed = {node.node_id: node for node in requester.nodes()}
        for node_id in nodes:
            assert listed[node_id].state == "online"
            assert listed[node_id].capabilities["runtime"] == "browser"
        in_browsers = requester.submit(
            guest("render"), tasks=render_tasks(), limits=SMALL, requirements=BROWSER,
            name="render in browsers",
        )
        on_agent = requester.submit(
            guest("render"), tasks=render_tasks(), limits=SMALL, requirements=NATIVE,
            name="render on the agent",
        )
        for job in (in_browsers, on_agent):
            eventually(
                f"{job.job_id} to complete", JOB_SECS,
                lambda job=job: requester.status(job.job_id).state == "completed",
            )
        ran_on = {attempt["node_id"] for attempt in attempts_of(requester, in_browsers.job_id)}
        assert ran_on <= nodes, ran_on
        browsers = outputs_by_task(requester, in_browsers.job_id)
        agent = outputs_by_task(requester, on_agent.job_id)
        assert browsers == agent and len(browsers) == 4
        shares = requester._perform(
            crowdcloud._protocol.Call("GET", f"/v1/jobs/{in_browsers.job_id}"))["nodes"]
        assert shares and all(share["browser"] for share in shares), shares
        # A browser cannot meter fuel: its tasks count none.
        assert all(task.usage and task.usage.fuel_used == 0
                   for task in requester.tasks(in_browsers.job_id))
    done = sum(int(device.page.locator("[data-lend]").get_attribute("data-done")) for device in tabs)
    assert done >= 4
    # The Lend page as a phone shows it: the README's picture.
    tabs[0].page.set_viewport_size(PHONE)
    tabs[0].page.screenshot(path=str(artifacts() / "phone-lend.png"))


def test_a_hidden_tab_gives_its_work_back_and_a_closed_tabs_task_runs_again_elsewhere(
    tabs: List[Device], pool: Pool
) -> None:
    first, second = tabs
    first_node = lend(first)
    with client_of(pool, first) as requester:
        sleeper = requester.submit(
            guest("probe"), args=["sleep", "600000"], limits=SMALL, requirements=BROWSER,
            name="sleeps in a tab",
        )
        first.page.wait_for_selector('[data-lend][data-state="running"]', timeout=30_000)
        # The tab is hidden, as when its owner switches app: the page stops and gives it back.
        set_hidden(first, True)
        first.page.wait_for_selector('[data-lend][data-state="paused"]', timeout=30_000)
        eventually(
            "the hidden tab's attempt to be given back", 30.0,
            lambda: [a["state"] for a in attempts_of(requester, sleeper.job_id)] == ["released"],
        )
        requester.cancel(sleeper.job_id)

        # A tab that closes mid-task: its task runs again in the other tab.
        second_node = lend(second)
        short = requester.submit(
            guest("probe"), args=["sleep", "8000"], limits=SMALL, requirements=BROWSER,
            name="sleeps, then its tab closes",
        )
        second.page.wait_for_selector('[data-lend][data-state="running"]', timeout=30_000)
        set_hidden(first, False)
        first.page.wait_for_selector('[data-lend][data-state="waiting"]', timeout=30_000)
        second.context.close()
        eventually(
            "the closed tab's task to complete in the other", JOB_SECS,
            lambda: requester.status(short.job_id).state == "completed",
        )
        attempts = attempts_of(requester, short.job_id)
        assert [(a["node_id"], a["state"]) for a in attempts] == [
            (second_node, "expired"), (first_node, "succeeded")
        ], attempts


def test_three_tabs_of_one_browser_each_lend_as_a_node_of_their_own(browser, pool: Pool) -> None:
    # One browser profile: its tabs share its connections to the pool (HTTP/2 keeps three
    # tabs' long-polls and the app within them) and its IndexedDB (a Web Lock gives each tab
    # an identity of its own).
    device = Device(browser, DESKTOP)
    try:
        link = sign_in_link(pool)
        device.sign_in(link)
        # Each tab has its own sessionStorage: each opens the link, as tapping it again would.
        pages = [device.page] + [device.context.new_page() for _ in range(2)]
        for page in pages[1:]:
            page.goto(link)
            page.wait_for_selector('a[data-nav="jobs"]')
        nodes = set()
        for page in pages:
            tab = Device.__new__(Device)
            tab.page = page
            nodes.add(lend(tab))
        assert len(nodes) == 3
        with client_of(pool, device) as requester:
            # Idle, each tab holds a lease long-poll and a presence request open: six requests,
            # as many as a browser opens HTTP/1.1 connections to a host. Their heartbeats must
            # still get through for longer than a lease (5 s here), or the nodes go offline.
            until = time.monotonic() + 8.0
            while time.monotonic() < until:
                states = {n.node_id: n.state for n in requester.nodes() if n.node_id in nodes}
                assert set(states.values()) == {"online"}, states
                time.sleep(0.25)
            job = requester.submit(
                guest("render"), tasks=render_tasks(), limits=SMALL, requirements=BROWSER,
                name="render in three tabs",
            )
            eventually(
                "the job to complete in the tabs", JOB_SECS,
                lambda: requester.status(job.job_id).state == "completed",
            )
            attempts = attempts_of(requester, job.job_id)
            assert {a["node_id"] for a in attempts} <= nodes, attempts
            # No tab starved for a connection: no heartbeat came late, no lease ran out.
            assert [a["state"] for a in attempts] == ["succeeded"] * 4, attempts
    finally:
        device.close()


def test_a_tab_keeps_a_task_to_its_memory_limit(tabs: List[Device], pool: Pool) -> None:
    lend(tabs[0])
    limits = Limits(memory_bytes_max=64 * MiB, deadline_ms=120_000)
    with client_of(pool, tabs[0]) as requester:
        job = requester.submit(
            guest("probe"), args=["alloc", "300"], limits=limits, requirements=BROWSER,
            max_attempts=1, name="asks for too much",
        )
        eventually(
            "the task to end", JOB_SECS,
            lambda: requester.status(job.job_id).state in ("failed", "completed"),
        )
        task = requester._perform(
            crowdcloud._protocol.Call("GET", f"/v1/jobs/{job.job_id}/tasks"))["tasks"][0]
    # It grew past its limit (the module's memory was capped at twice the limit before it
    # compiled, so the device never gave it the 300 MiB it asked for): the same outcome an
    # agent reports, which memory_escalate and retries act on.
    assert task["outcome"] == {"kind": "memory_limit"}, task
