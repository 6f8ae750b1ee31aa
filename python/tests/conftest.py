"""The package's tests run against a real pool (see `pool.py`): one shared by the session,
and a TLS coordinator per module."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List

import pytest

from pool import Coordinator, Pool, eventually, guest  # noqa: F401 (tests import them from here)
from pool import report_pool_logs

_POOLS: List[Pool] = []


@pytest.fixture(autouse=True)
def no_connection_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests say where to connect; the machine's own pool and variables are not theirs."""
    for name in ("CROWDCLOUD_COORDINATOR", "CROWDCLOUD_TOKEN", "CROWDCLOUD_FINGERPRINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CROWDCLOUD_DATA_DIR", str(tmp_path / "no-pool-here"))


@pytest.fixture(scope="session")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Any:
    started = Pool(tmp_path_factory.mktemp("pool"))
    _POOLS.append(started)
    yield started
    started.stop()


@pytest.fixture
def client(pool: Pool) -> Any:
    with pool.client() as opened:
        yield opened


@pytest.fixture(scope="module")
def tls_coordinator(tmp_path_factory: pytest.TempPathFactory) -> Any:
    started = Coordinator(tmp_path_factory.mktemp("tls"), tls=True)
    assert started.url.startswith("https://") and started.fingerprint
    yield started
    started.process.stop()


# A failed test shows the pools' logs.
pytest_runtest_makereport = report_pool_logs(_POOLS)
