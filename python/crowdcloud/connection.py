"""Where a client connects and as whom, found as the CLI finds it (`local::connect`).

In order: explicit arguments, then the CLI's environment variables (`CROWDCLOUD_COORDINATOR`,
`CROWDCLOUD_TOKEN`, `CROWDCLOUD_FINGERPRINT`, `CROWDCLOUD_DATA_DIR`), then the data dir: a
`crowdcloud up` running on this machine (`coordinator.json`, with the owner's token in
`owner.token`), or else the pool this machine joined (`pool.json`, written by `crowdcloud
join`). So `Client()` with no arguments reaches the pool the CLI would.

When a joined pool's address changed, the CLI finds it again on the LAN by its certificate and
updates `pool.json`; this package does not browse the LAN, so running any `crowdcloud` command
once (`crowdcloud status`) brings it up to date.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from .errors import ConnectionSettingsError, UsageError
from .pinning import parse_fingerprint

API_TOKEN_PREFIX = "ccr_"
_DISCOVERY_FILE = "coordinator.json"
_OWNER_TOKEN_FILE = "owner.token"
_POOL_FILE = "pool.json"

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class Connection:
    """A coordinator's URL, the API token to use there, and the certificate to pin (https)."""

    url: str
    token: str
    fingerprint: Optional[str]
    data_dir: Path

    def __repr__(self) -> str:
        # The token is a secret: never in a traceback or a log line.
        return (
            f"Connection(url={self.url!r}, fingerprint={self.fingerprint!r}, "
            f"data_dir={str(self.data_dir)!r})"
        )


def default_data_dir() -> Path:
    """Where the CLI keeps its state: the platform's data dir, then `crowdcloud`."""
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    elif sys.platform == "win32":
        base = Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    else:
        xdg = os.environ.get("XDG_DATA_HOME")
        base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return base / "crowdcloud"


def data_dir_of(data_dir: Optional[PathLike]) -> Path:
    if data_dir is not None:
        return Path(data_dir)
    from_env = os.environ.get("CROWDCLOUD_DATA_DIR")
    return Path(from_env) if from_env else default_data_dir()


def resolve(
    url: Optional[str] = None,
    token: Optional[str] = None,
    fingerprint: Optional[str] = None,
    data_dir: Optional[PathLike] = None,
) -> Connection:
    """The connection the CLI would make with these flags (None: not given)."""
    url = url or os.environ.get("CROWDCLOUD_COORDINATOR") or None
    token = token or os.environ.get("CROWDCLOUD_TOKEN") or None
    fingerprint = fingerprint or os.environ.get("CROWDCLOUD_FINGERPRINT") or None
    directory = data_dir_of(data_dir)
    if token is not None and not token.startswith(API_TOKEN_PREFIX):
        raise UsageError(
            f"token= takes an API token ({API_TOKEN_PREFIX}…); a join or node token cannot "
            "submit or read jobs"
        )
    local_up = directory / _DISCOVERY_FILE
    if url is None and not local_up.exists():
        return _remembered(directory, token, fingerprint)
    pinned = None
    if url is None:
        url, pinned = _local_up(local_up)
    if fingerprint is not None:
        pinned = parse_fingerprint(fingerprint)
    if token is None:
        token = _owner_token(directory)
    return checked(url, token, pinned, directory)


#: How many coordinators one client may be given, as the Rust client allows.
COORDINATOR_URLS_MAX = 8


def checked(url: str, token: str, fingerprint: Optional[str], data_dir: Path) -> Connection:
    """A connection whose URL (or URLs, comma-separated, of a pool with a standby
    coordinator) and pin fit together."""
    urls = [one.strip().rstrip("/") for one in url.split(",") if one.strip()]
    if not urls or len(urls) > COORDINATOR_URLS_MAX:
        raise UsageError(
            f"the coordinator URL {url!r} is not valid; give it as http://HOST:PORT, or up to "
            f"{COORDINATOR_URLS_MAX} such URLs separated by commas"
        )
    for one in urls:
        if not (one.startswith("http://") or one.startswith("https://")):
            raise UsageError(f"the coordinator URL {one!r} is not valid; give it as http://HOST:PORT")
    url = ",".join(urls)
    if any(one.startswith("https://") for one in urls) and fingerprint is None:
        raise ConnectionSettingsError(
            "give fingerprint='sha256:…' with an https:// coordinator (`crowdcloud up` prints "
            "it), or run `crowdcloud join`"
        )
    return Connection(url, token, fingerprint, data_dir)


def _local_up(path: Path) -> "tuple[str, Optional[str]]":
    try:
        discovery = json.loads(path.read_text())
        url = discovery["url"]
        pinned = discovery.get("fingerprint")
    except FileNotFoundError:
        raise ConnectionSettingsError(
            "no coordinator given and none running here; start one with `crowdcloud up` or "
            "pass url="
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConnectionSettingsError(
            f"{path} is damaged ({error}); restart `crowdcloud up`"
        ) from None
    return url, parse_fingerprint(pinned) if pinned else None


def _owner_token(data_dir: Path) -> str:
    try:
        return (data_dir / _OWNER_TOKEN_FILE).read_text().strip()
    except OSError:
        raise ConnectionSettingsError(
            f"no API token given; pass token='{API_TOKEN_PREFIX}…' (or set CROWDCLOUD_TOKEN), "
            "or run this on the machine of `crowdcloud up`"
        ) from None


def _remembered(data_dir: Path, token: Optional[str], fingerprint: Optional[str]) -> Connection:
    path = data_dir / _POOL_FILE
    try:
        pool = json.loads(path.read_text())
        url, pinned, name = pool["url"], pool["fingerprint"], pool["pool_name"]
    except FileNotFoundError:
        raise ConnectionSettingsError(
            "no coordinator given, none running here, and this machine has not joined a pool; "
            "run `crowdcloud join`, start one with `crowdcloud up`, or pass url= and token="
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConnectionSettingsError(
            f"{path} is damaged ({error}); run `crowdcloud join` again to replace it"
        ) from None
    token = token or pool.get("api_token")
    if token is None:
        raise ConnectionSettingsError(
            f"this machine joined the pool {name!r} as a node only; ask its owner for a code "
            "that grants requests (`crowdcloud join-code --requests`) and run `crowdcloud "
            f"join` again, or pass token='{API_TOKEN_PREFIX}…'"
        )
    pin = parse_fingerprint(fingerprint) if fingerprint else parse_fingerprint(pinned)
    return checked(url, token, pin, data_dir)
