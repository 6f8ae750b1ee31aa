"""A real pool for tests: the `crowdcloud` binary (`CROWDCLOUD_BIN`, or
`target/debug/crowdcloud`) as a coordinator and an agent on loopback, each with its own data
dir, as the Rust end-to-end tests and `scripts/api-contract` start them. The package's tests and
the web app's browser tests (`web-tests/`) both start their pools with it.

No test sleeps and hopes: `eventually` polls a condition up to a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, List, Optional

import pytest

import crowdcloud

REPO = Path(__file__).resolve().parents[2]
GUESTS = REPO / "crates" / "guests" / "prebuilt"
START_SECS = 30.0
ONLINE_SECS = 60.0


def binary() -> Path:
    path = Path(os.environ.get("CROWDCLOUD_BIN") or REPO / "target" / "debug" / "crowdcloud")
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"{path} is not an executable; build it with `cargo build -p crowdcloud` or set "
            "CROWDCLOUD_BIN",
            pytrace=False,
        )
    return path.resolve()


def guest(name: str) -> Path:
    """An example guest module, as committed (`scripts/refresh-guests` keeps them current)."""
    return GUESTS / f"{name}.wasm"


def eventually(what: str, limit_secs: float, check: Callable[[], Any]) -> Any:
    """`check()` once it gives something other than None or False, polled every 50 ms for at
    most `limit_secs`."""
    deadline = time.monotonic() + limit_secs
    while True:
        value = check()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit_secs} s waiting for {what}")
        time.sleep(0.05)


class Process:
    """A child process of the binary with its log file."""

    def __init__(self, args: List[str], log: Path) -> None:
        self.log = log
        with open(log, "ab") as log_file:
            self.child = subprocess.Popen(
                [str(binary()), *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log_file,
                env={**os.environ, "CROWDCLOUD_LOG": "info"},
            )

    def alive(self) -> bool:
        return self.child.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.alive():
            self.child.send_signal(signal.SIGTERM)
            try:
                self.child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.child.kill()
                self.child.wait()


class Coordinator:
    """`crowdcloud coordinator` on 127.0.0.1, port 0, plain or TLS."""

    def __init__(
        self,
        work: Path,
        tls: bool = False,
        python: Optional[Path] = None,
        more_args: Optional[List[str]] = None,
        tokens_from: Optional[Path] = None,
    ) -> None:
        self.data_dir = work / "coordinator"
        self.data_dir.mkdir(parents=True)
        # A second coordinator of one pool serves it with the same tokens.
        for name in ("owner.token", "join.token"):
            if tokens_from is not None:
                (self.data_dir / name).write_bytes((tokens_from / name).read_bytes())
                (self.data_dir / name).chmod(0o600)
        if python is not None:
            # Installed where the coordinator keeps its state, it offers it as a preset.
            done = subprocess.run(
                [str(binary()), "runtimes", "add", "python", str(python),
                 "--data-dir", str(self.data_dir)],
                stdin=subprocess.DEVNULL, capture_output=True, timeout=120,
            )
            assert done.returncode == 0, done.stderr.decode()
        args = ["coordinator", "--data-dir", str(self.data_dir), "--listen", "127.0.0.1:0"]
        # `process` durability: nothing here must survive a power cut, and fsyncs are slow.
        args += ["--durability", "process", "--no-advertise", "--lease-ms", "5000"]
        args += more_args or []
        self.process = Process(args + (["--tls"] if tls else []), work / "coordinator.log")
        announced = eventually("the coordinator to announce itself", START_SECS, self._announced)
        self.url: str = announced["url"]
        self.fingerprint: Optional[str] = announced.get("fingerprint")
        self.owner_token = (self.data_dir / "owner.token").read_text().strip()
        self.join_token = (self.data_dir / "join.token").read_text().strip()

    def _announced(self) -> Optional[dict]:
        if not self.process.alive():
            raise AssertionError(f"the coordinator stopped at start:\n{self.process.log_tail()}")
        try:
            return json.loads((self.data_dir / "coordinator.json").read_text())
        except (OSError, ValueError):
            return None

    def client(self, **options: Any) -> crowdcloud.Client:
        return crowdcloud.Client(
            self.url, token=self.owner_token, fingerprint=self.fingerprint, **options
        )

    def async_client(self) -> crowdcloud.AsyncClient:
        return crowdcloud.AsyncClient(
            self.url, token=self.owner_token, fingerprint=self.fingerprint
        )

    def cli(self, args: List[str], data_dir: Path) -> subprocess.CompletedProcess:
        """The CLI on this machine, with `data_dir` as its data dir."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("CROWDCLOUD_")}
        env["CROWDCLOUD_DATA_DIR"] = str(data_dir)
        return subprocess.run(
            [str(binary()), *args],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=60,
        )


class Pool:
    """A coordinator and one dedicated agent with `slots` slots, online."""

    def __init__(
        self,
        work: Path,
        slots: int = 2,
        tls: bool = False,
        python: Optional[Path] = None,
        coordinator_args: Optional[List[str]] = None,
    ) -> None:
        self.coordinator = Coordinator(work, tls=tls, python=python, more_args=coordinator_args)
        agent_dir = work / "worker"
        agent_dir.mkdir()
        self.agent = Process(
            [
                "agent",
                "--coordinator",
                self.coordinator.url,
                "--join-token",
                self.coordinator.join_token,
                "--data-dir",
                str(agent_dir),
                "--slots",
                str(slots),
                "--name",
                "worker",
                "--drain-secs",
                "5",
                # Test machines have no owner at the keyboard to wait for.
                "--dedicated",
                *(["--fingerprint", self.coordinator.fingerprint] if tls else []),
            ],
            agent_dir / "agent.log",
        )
        with self.client() as owner:
            eventually("the agent to come online", ONLINE_SECS, lambda: self._online(owner))

    def _online(self, owner: crowdcloud.Client) -> bool:
        if not self.agent.alive():
            raise AssertionError(f"the agent stopped:\n{self.agent.log_tail()}")
        return any(node.name == "worker" and node.state == "online" for node in owner.nodes())

    def client(self) -> crowdcloud.Client:
        return self.coordinator.client()

    def async_client(self) -> crowdcloud.AsyncClient:
        return self.coordinator.async_client()

    def stop(self) -> None:
        self.agent.stop()
        self.coordinator.process.stop()

    def logs(self) -> str:
        return (
            f"--- coordinator ---\n{self.coordinator.process.log_tail()}\n"
            f"--- agent ---\n{self.agent.log_tail()}"
        )


def report_pool_logs(pools: List["Pool"]) -> Any:
    """A `pytest_runtest_makereport` hook that adds the logs of `pools` to a failed test's
    report, as the Rust harness prints its pool's logs; a conftest assigns it by that name."""

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Any:
        outcome = yield
        report = outcome.get_result()
        if report.when == "call" and report.failed:
            for started in pools:
                report.sections.append(("crowdcloud pool logs", started.logs()))

    return pytest_runtest_makereport
