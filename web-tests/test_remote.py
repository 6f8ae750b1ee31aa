"""The web app away from home: a laptop that joined the pool by its remote address (iroh)
opens the web app with `crowdcloud web`, which carries the browser's HTTPS to the pool over
the remote path from a loopback port of the laptop's, and follows its job there to the end."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Iterator, Optional

import pytest

from conftest import DESKTOP, PHONE, Device, _POOLS, artifacts
from pool import Pool, binary, eventually, guest

from playwright.sync_api import Browser

JOB_SECS = 120.0


@pytest.fixture(scope="module")
def remote_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    # No relay: the laptop reaches the pool's own address, as from the same network.
    started = Pool(
        tmp_path_factory.mktemp("remote"),
        slots=1,
        tls=True,
        coordinator_args=["--remote", "--remote-port", "0"],
    )
    _POOLS.append(started)
    yield started
    started.stop()


def remote_address(pool: Pool) -> str:
    """The pool's remote address, as `up --remote` prints it and announces it."""
    announced = json.loads((pool.coordinator.data_dir / "coordinator.json").read_text())
    address = announced["remote"]
    assert address.startswith("iroh:"), address
    return address


def owner_args(pool: Pool) -> list:
    coordinator = pool.coordinator
    return ["--coordinator", coordinator.url, "--token", coordinator.owner_token,
            "--fingerprint", coordinator.fingerprint or ""]


def laptop_joins(pool: Pool, laptop: Path) -> None:
    """The owner makes a code that lets the laptop submit; the laptop joins by the pool's
    remote address, as `up --remote` prints it (and announces it to local commands)."""
    coordinator = pool.coordinator
    address = remote_address(pool)
    made = coordinator.cli(
        ["join-code", "--requests", "--json", *owner_args(pool)], laptop.parent / "owner"
    )
    assert made.returncode == 0, made.stderr.decode()
    code = json.loads(made.stdout)["code"]
    joined = coordinator.cli(["join", "--code", code, "--coordinator", address], laptop)
    assert joined.returncode == 0, joined.stderr.decode()


def laptop_submits(pool: Pool, laptop: Path) -> str:
    """A job from the laptop's own CLI, over the remote path; its id."""
    done = pool.coordinator.cli(
        ["submit", str(guest("probe")), "--json", "--", "echo", "far"], laptop
    )
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)["job_id"]


def web_link(out: Path, web: subprocess.Popen) -> Optional[str]:
    if web.poll() is not None:
        raise AssertionError(f"crowdcloud web stopped: {out.with_suffix('.err').read_text()}")
    try:
        return json.loads(out.read_text())["link"]
    except (OSError, ValueError, KeyError):
        return None


def test_a_laptop_away_follows_its_job_in_the_web_app_over_the_remote_path(
    browser: Browser, remote_pool: Pool, tmp_path: Path
) -> None:
    laptop = tmp_path / "laptop"
    laptop_joins(remote_pool, laptop)
    job_id = laptop_submits(remote_pool, laptop)
    out = tmp_path / "web.out"
    with open(out, "wb") as stdout, open(out.with_suffix(".err"), "wb") as stderr:
        web = subprocess.Popen(
            [str(binary()), "web", "--json", "--port", "0", "--data-dir", str(laptop)],
            stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
        )
    device = Device(browser, DESKTOP)
    try:
        link = eventually("crowdcloud web to give its link", 30, lambda: web_link(out, web))
        # The browser talks to the laptop's own loopback port, never to the pool's address.
        assert link.startswith("https://127.0.0.1:"), link
        page = device.sign_in(link)
        page.goto(page.url.split("#")[0] + f"#/jobs/{job_id}")
        page.wait_for_selector(
            '[data-job-page][data-state="completed"]', timeout=JOB_SECS * 1000
        )
        page.screenshot(path=str(artifacts() / "remote-job.png"))
        assert device.policy_violations == []
    finally:
        device.close()
        web.terminate()
        web.wait(timeout=15)


def forward_url(out: Path, forward: subprocess.Popen) -> Optional[str]:
    if forward.poll() is not None:
        raise AssertionError(f"crowdcloud forward stopped: {out.with_suffix('.err').read_text()}")
    for line in out.read_text().splitlines() if out.exists() else []:
        if line.startswith("crowdcloud forward listening on "):
            return line.split()[-1]
    return None


def test_a_phone_away_signs_in_at_a_public_forward_of_the_pool(
    browser: Browser, remote_pool: Pool, tmp_path: Path
) -> None:
    out = tmp_path / "forward.out"
    with open(out, "wb") as stdout, open(out.with_suffix(".err"), "wb") as stderr:
        forward = subprocess.Popen(
            [str(binary()), "forward", "127.0.0.1:0", remote_address(remote_pool)],
            stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
        )
    phone = Device(browser, PHONE)
    try:
        url = eventually("crowdcloud forward to listen", 30, lambda: forward_url(out, forward))
        made = remote_pool.coordinator.cli(
            ["join-code", "--web", "--url", url, "--json", *owner_args(remote_pool)],
            tmp_path / "owner",
        )
        assert made.returncode == 0, made.stderr.decode()
        link = json.loads(made.stdout)["link"]
        assert link.startswith(url + "/#token="), link
        page = phone.sign_in(link)
        page.screenshot(path=str(artifacts() / "remote-phone.png"))
        assert phone.policy_violations == []
    finally:
        phone.close()
        forward.terminate()
        forward.wait(timeout=15)
