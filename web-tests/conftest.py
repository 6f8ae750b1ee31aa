"""The web app in headless Chromium against a real pool over TLS, as a phone on the LAN sees
it. Pools come from the package's test helpers (`python/tests/pool.py`); the browser is the
system's Chromium (`CROWDCLOUD_CHROMIUM`), driven by Playwright.

Nothing sleeps and hopes: Playwright's waits and `eventually` poll conditions up to a deadline.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Iterator, List, Optional

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "python" / "tests"))

from pool import Pool, binary, report_pool_logs  # noqa: E402

from playwright.sync_api import Browser, Page, sync_playwright  # noqa: E402

# Chromium as root in a container, with no GPU, and no calls home: this machine's network is
# closed, and background requests would only fail.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}

_POOLS: List[Pool] = []


def artifacts() -> Path:
    path = Path(os.environ.get("CROWDCLOUD_WEB_ARTIFACTS") or REPO / "target" / "web-tests")
    path.mkdir(parents=True, exist_ok=True)
    return path


def python_runtime() -> Optional[Path]:
    """CPython for WASI (`CROWDCLOUD_TEST_PYTHON_WASM`, which scripts/web-test sets from
    scripts/python-runtime); the pool offers it as a preset when it is there."""
    path = os.environ.get("CROWDCLOUD_TEST_PYTHON_WASM")
    return Path(path) if path else None


@pytest.fixture(scope="session")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    started = Pool(tmp_path_factory.mktemp("pool"), slots=2, tls=True, python=python_runtime())
    _POOLS.append(started)
    yield started
    started.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    executable = os.environ.get("CROWDCLOUD_CHROMIUM", "/usr/bin/chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


def sign_in_link(pool: Pool) -> str:
    """A new device's link, as `crowdcloud join-code --web` gives it to the owner."""
    coordinator = pool.coordinator
    done = coordinator.cli(
        [
            "join-code",
            "--web",
            "--json",
            "--coordinator",
            coordinator.url,
            "--token",
            coordinator.owner_token,
            "--fingerprint",
            coordinator.fingerprint or "",
        ],
        coordinator.data_dir.parent / "cli",
    )
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)["link"]


class Device:
    """A browser context as one phone or laptop: its own storage, its own sign-in."""

    def __init__(self, browser: Browser, viewport: dict) -> None:
        # The pool's certificate is its own, as on a LAN: the user accepts it once.
        self.context = browser.new_context(viewport=viewport, ignore_https_errors=True)
        self.page: Page = self.context.new_page()
        self.dialogs: List[str] = []
        self.policy_violations: List[str] = []
        self.page.on("dialog", self._dialog)
        self.page.on("console", self._console)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _console(self, message: Any) -> None:
        if "Content Security Policy" in message.text:
            self.policy_violations.append(message.text)

    def sign_in(self, link: str) -> Page:
        self.page.goto(link)
        self.page.wait_for_selector('a[data-nav="jobs"]')
        return self.page

    def close(self) -> None:
        self.context.close()


def opened_device(browser: Browser, pool: Pool, viewport: dict) -> Iterator[Device]:
    """A device signed in through a link of its own, checked for policy violations at the end."""
    opened = Device(browser, viewport)
    opened.sign_in(sign_in_link(pool))
    yield opened
    assert opened.policy_violations == [], "the page broke its own Content-Security-Policy"
    opened.close()


@pytest.fixture
def device(browser: Browser, pool: Pool) -> Iterator[Device]:
    yield from opened_device(browser, pool, DESKTOP)


@pytest.fixture
def phone(browser: Browser, pool: Pool) -> Iterator[Device]:
    yield from opened_device(browser, pool, PHONE)


# A failed test shows the pools' logs.
pytest_runtest_makereport = report_pool_logs(_POOLS)


__all__ = ["binary"]
