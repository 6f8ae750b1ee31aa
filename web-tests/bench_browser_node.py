"""One browser tab lending one core against one agent with one slot, on the same machine and
the same kernels guest: the same job of mandelbrot, sha-256 and n-body tasks (four each), once
required to run in the tab (`runtime = "browser"`) and once on the agent (`"native"`),
alternated over ROUNDS rounds. Prints each side's median wall time from submit to the job's
end, tasks per second, and the ratio; the two sides' outputs must be the same bytes.

Run it through `scripts/bench-browser`, which sets up the browser and the venv as
`scripts/web-test` does. Not a test: its figures are for comparing within one run.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "python" / "tests"))
sys.path.insert(0, str(REPO / "web-tests"))

import crowdcloud  # noqa: E402
from crowdcloud import Limits, MiB, Requirements  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from conftest import CHROMIUM_ARGS, DESKTOP, Device, sign_in_link  # noqa: E402
from pool import Pool, guest  # noqa: E402

KERNELS = ("mandelbrot", "sha256", "nbody")
LIMITS = Limits(memory_bytes_max=256 * MiB, deadline_ms=600_000, fuel_max=10**15)


def lend_one_core(device: Device) -> None:
    page = device.page
    page.click('a[data-nav="lend"]')
    page.locator("#lend-cores").fill("1")
    page.locator("#lend-start").click()
    page.wait_for_selector('[data-lend][data-state="waiting"]', timeout=30_000)


def run(requester: crowdcloud.Client, runtime: str) -> tuple[float, List[bytes]]:
    tasks = [crowdcloud.Task(args=[kernel]) for kernel in KERNELS for _ in range(4)]
    started = time.monotonic()
    job = requester.submit(guest("kernels"), tasks=tasks, limits=LIMITS,
                           requirements=Requirements(runtime=runtime), name=f"kernels {runtime}")
    status = requester.wait(job, timeout_secs=900)
    took = time.monotonic() - started
    if status.state != "completed":
        raise SystemExit(f"the {runtime} job ended {status.state}")
    return took, [requester.stdout(task) for task in requester.tasks(job)]


def main() -> None:
    rounds = int(os.environ.get("ROUNDS", "3"))
    pool = Pool(Path(tempfile.mkdtemp()), slots=1, tls=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=os.environ.get("CROWDCLOUD_CHROMIUM", "/usr/bin/chromium"),
                headless=True, args=CHROMIUM_ARGS,
            )
            device = Device(browser, DESKTOP)
            device.sign_in(sign_in_link(pool))
            lend_one_core(device)
            token = device.page.evaluate("sessionStorage.getItem('crowdcloud-token')")
            coordinator = pool.coordinator
            times: Dict[str, List[float]] = {"browser": [], "native": []}
            outputs: Dict[str, List[bytes]] = {}
            with crowdcloud.Client(coordinator.url, token=token,
                                   fingerprint=coordinator.fingerprint) as requester:
                for _ in range(rounds):
                    for runtime in times:
                        took, outputs[runtime] = run(requester, runtime)
                        times[runtime].append(took)
            if outputs["browser"] != outputs["native"]:
                raise SystemExit("the tab and the agent gave different outputs")
            for runtime, taken in times.items():
                median = statistics.median(taken)
                print(f"{runtime}: median {median:.2f} s for 12 tasks ({12 / median:.2f} tasks/s); "
                      f"rounds {', '.join(f'{t:.2f}' for t in taken)}")
            ratio = statistics.median(times["browser"]) / statistics.median(times["native"])
            print(f"browser / agent wall time: {ratio:.2f}")
            device.close()
            browser.close()
    finally:
        pool.stop()


if __name__ == "__main__":
    main()
