"""The web app as a family member uses it from a phone or a laptop: signing in through the
link `join-code --web` gives, submitting the render preset and watching the picture appear,
following and cancelling jobs, seeing results inline, and a page that fits a phone's width and
shows hostile names as text."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

import crowdcloud
from crowdcloud import Limits, MiB

from conftest import PHONE, Device, artifacts, python_runtime, sign_in_link
from pool import Pool, eventually, guest

SMALL = Limits(memory_bytes_max=64 * MiB, deadline_ms=120_000)
JOB_SECS = 120.0


def token_of(device: Device) -> str:
    return device.page.evaluate("sessionStorage.getItem('crowdcloud-token')")


def client_of(pool: Pool, device: Device) -> crowdcloud.Client:
    """The device's own requester, as the API sees it."""
    coordinator = pool.coordinator
    return crowdcloud.Client(
        coordinator.url, token=token_of(device), fingerprint=coordinator.fingerprint
    )


def open_job(device: Device, job_id: str) -> None:
    device.page.goto(device.page.url.split("#")[0] + f"#/jobs/{job_id}")
    device.page.wait_for_selector("[data-job-page]")


def wait_for_state(device: Device, state: str) -> None:
    device.page.wait_for_selector(
        f'[data-job-page][data-state="{state}"]', timeout=JOB_SECS * 1000
    )


def submitted_with_the_cli(pool: Pool, device: Device, spec: Path) -> str:
    """Submits `spec` with the CLI as the device's requester: the id it prints."""
    coordinator = pool.coordinator
    submitted = coordinator.cli(
        ["submit", str(spec), "--coordinator", coordinator.url,
         "--token", token_of(device), "--fingerprint", coordinator.fingerprint or ""],
        spec.parent / "requester",
    )
    assert submitted.returncode == 0, submitted.stderr.decode()
    return submitted.stdout.decode().strip()


def no_horizontal_overflow(device: Device) -> bool:
    return device.page.evaluate(
        "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )


def test_the_sign_in_link_signs_a_new_device_in_and_takes_the_secret_out_of_the_address(
    browser, pool: Pool
) -> None:
    link = sign_in_link(pool)
    assert "#token=ccr_" in link and link.startswith(pool.coordinator.url)
    device = Device(browser, PHONE)
    try:
        page = device.sign_in(link)
        assert "token" not in page.url, page.url
        # HTTP/2 over TLS, so the browser's few connections per host do not run out.
        protocol = page.evaluate("performance.getEntriesByType('navigation')[0].nextHopProtocol")
        assert protocol == "h2", protocol
        fragment = dict(part.split("=", 1) for part in link.split("#", 1)[1].split("&"))
        assert token_of(device) == fragment["token"]
        assert fragment["join"].startswith("ccj_")
        assert page.evaluate("sessionStorage.getItem('crowdcloud-join')") == fragment["join"]
        # The token is a requester of its own, listed and revocable like any other.
        with pool.client() as owner:
            listed = owner._perform(crowdcloud._protocol.Call("GET", "/v1/tokens"))
        kinds = {entry["name"]: entry["kind"] for entry in listed["tokens"]}
        device_name = next(name for name in kinds if name.startswith("web app ") and
                           kinds[name] == "requester")
        assert kinds[f"{device_name} lending"] == "join", kinds
        # A reload keeps the session; the token lives in sessionStorage, not in the URL.
        page.reload()
        page.wait_for_selector('a[data-nav="jobs"]')
        assert page.locator("form#sign-in").is_hidden()
    finally:
        device.close()


def read_ppm(data: bytes) -> Tuple[int, int, bytes]:
    """A binary PPM (P6, 8-bit) as the renderer writes it: width, height and RGB bytes."""
    fields: List[bytes] = []
    at = 0
    while len(fields) < 4:
        while data[at : at + 1].isspace():
            at += 1
        start = at
        while not data[at : at + 1].isspace():
            at += 1
        fields.append(data[start:at])
    assert fields[0] == b"P6" and fields[3] == b"255", fields
    width, height = int(fields[1]), int(fields[2])
    pixels = data[at + 1 : at + 1 + width * height * 3]
    assert len(pixels) == width * height * 3
    return width, height, pixels


def stitched_by_the_cli(pool: Pool, device: Device, job_id: str, size: Tuple[int, int]) -> bytes:
    """The picture as the CLI's results give it: each tile placed where its task's args say."""
    coordinator = pool.coordinator
    out = coordinator.data_dir.parent / f"results-{job_id}"
    done = coordinator.cli(
        ["results", job_id, "--out", str(out), "--coordinator", coordinator.url,
         "--token", token_of(device), "--fingerprint", coordinator.fingerprint or ""],
        coordinator.data_dir.parent / "cli",
    )
    assert done.returncode == 0, done.stderr.decode()
    width, height = size
    picture = bytearray(width * height * 3)
    with client_of(pool, device) as requester:
        tasks = requester.tasks(job_id)
    for task in tasks:
        args = dict(zip(task.args[::2], task.args[1::2]))
        x0, y0 = int(args["--x0"]), int(args["--y0"])
        tile_width, tile_height, pixels = read_ppm(
            (out / str(task.index) / "output" / "tile.ppm").read_bytes()
        )
        for row in range(tile_height):
            start = ((y0 + row) * width + x0) * 3
            picture[start : start + tile_width * 3] = pixels[
                row * tile_width * 3 : (row + 1) * tile_width * 3
            ]
    return bytes(picture)


def canvas_rgb(device: Device) -> bytes:
    rgba: List[int] = device.page.evaluate(
        """() => {
            const canvas = document.querySelector('canvas#picture');
            const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
            return Array.from(data);
        }"""
    )
    return bytes(value for at, value in enumerate(rgba) if at % 4 != 3)


def test_the_render_preset_submitted_from_the_page_draws_the_picture_the_cli_gets(
    device: Device, pool: Pool
) -> None:
    page = device.page
    page.click('a[data-nav="submit"]')
    form = page.locator("form#render-form")
    form.locator('[name="width"]').fill("192")
    form.locator('[name="height"]').fill("128")
    form.locator('[name="tile"]').fill("64")
    form.locator('[name="samples"]').fill("1")
    form.locator('[type="submit"]').click()
    page.wait_for_selector("[data-job-page]")
    job_id = page.url.split("#/jobs/")[1]
    wait_for_state(device, "completed")
    # Six tiles of 64×64; the page draws each as it arrives.
    page.wait_for_selector('canvas#picture[data-tiles-drawn="6"]', timeout=JOB_SECS * 1000)
    assert page.evaluate("document.querySelector('canvas#picture').width") == 192
    assert canvas_rgb(device) == stitched_by_the_cli(pool, device, job_id, (192, 128))
    page.screenshot(path=str(artifacts() / "render-desktop.png"), full_page=True)
    # The same page as a phone shows it: the README's picture.
    page.set_viewport_size(PHONE)
    page.wait_for_selector('canvas#picture[data-tiles-drawn="6"]')
    assert no_horizontal_overflow(device), "the render's page scrolls sideways at 390 px"
    page.screenshot(path=str(artifacts() / "phone-render.png"))


def png_of_one_colour(width: int, height: int, rgb: Tuple[int, int, int]) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = b"".join(b"\0" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def test_results_show_images_inline_and_scripts_never_run(
    device: Device, pool: Pool, tmp_path: Path
) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    # The probe writes each input back reversed: these become a real PNG and an SVG that
    # carries a script.
    png = png_of_one_colour(7, 5, (200, 30, 60))
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4" onload="alert(1)">' \
          b'<script>alert(2)</script><rect width="4" height="4" fill="red"/></svg>'
    (inputs / "picture.png").write_bytes(png[::-1])
    (inputs / "drawing.svg").write_bytes(svg[::-1])
    (inputs / "notes.txt").write_bytes(b"<b>not bold</b>\n"[::-1])
    files = [inputs / name for name in ("picture.png", "drawing.svg", "notes.txt")]
    with client_of(pool, device) as requester:
        submitted = requester.submit(
            guest("probe"), limits=SMALL, name="pictures",
            tasks=[crowdcloud.Task(args=["copy-inputs"], inputs=files)],
        )
    open_job(device, submitted.job_id)
    wait_for_state(device, "completed")
    page = device.page
    page.locator('[data-task-index="0"]').first.click()
    image = page.locator('[data-file="output/picture.png"] img')
    image.wait_for(timeout=JOB_SECS * 1000)
    assert page.evaluate(
        "(img) => img.complete && img.naturalWidth === 7 && img.naturalHeight === 5",
        image.element_handle(),
    )
    page.locator('[data-file="output/drawing.svg"] img').wait_for()
    text = page.locator('[data-file="output/notes.txt"] pre')
    text.wait_for()
    assert text.inner_text().strip() == "<b>not bold</b>"
    assert page.locator("b", has_text="not bold").count() == 0
    assert device.dialogs == []


def test_a_python_script_picked_on_the_device_runs_under_the_pools_python(
    device: Device, pool: Pool, tmp_path: Path
) -> None:
    if python_runtime() is None:
        pytest.fail(
            "CROWDCLOUD_TEST_PYTHON_WASM is not set; run the tests through scripts/web-test, "
            "which fetches CPython for WASI with scripts/python-runtime",
            pytrace=False,
        )
    script = tmp_path / "greet.py"
    script.write_text("import sys\nprint('hello from python', sys.argv[1])\n")
    page = device.page
    page.click('a[data-nav="submit"]')
    form = page.locator("form#module-form")
    form.locator('[name="module"]').set_input_files(str(script))
    form.locator('[name="args"]').fill("{i}")
    form.locator('[name="count"]').fill("2")
    form.locator('[type="submit"]').click()
    page.wait_for_selector("[data-job-page]", timeout=JOB_SECS * 1000)
    job_id = page.url.split("#/jobs/")[1]
    wait_for_state(device, "completed")
    with client_of(pool, device) as requester:
        tasks = requester.tasks(job_id)
        assert [task.args for task in tasks] == [["/job/greet.py", "0"], ["/job/greet.py", "1"]]
        assert [requester.stdout(task) for task in tasks] == [
            b"hello from python 0\n", b"hello from python 1\n"
        ]


def test_the_whole_job_downloads_as_one_zip(device: Device, pool: Pool) -> None:
    with client_of(pool, device) as requester:
        submitted = requester.submit(
            guest("probe"), tasks=3, args=["echo", "task", "{i}"], limits=SMALL, name="zipped"
        )
    open_job(device, submitted.job_id)
    wait_for_state(device, "completed")
    with device.page.expect_download() as download:
        device.page.locator("#download-zip").click()
    archive = zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes()))
    stdouts: Dict[str, bytes] = {
        name: archive.read(name) for name in archive.namelist() if name.endswith("/stdout")
    }
    assert stdouts == {f"{i}/stdout": f"task {i}\n".encode() for i in range(3)}


def test_a_job_is_cancelled_from_its_page(device: Device, pool: Pool) -> None:
    with client_of(pool, device) as requester:
        submitted = requester.submit(
            guest("probe"), tasks=2, args=["sleep", "600000"], limits=SMALL, name="long"
        )
        open_job(device, submitted.job_id)
        device.page.locator("#cancel-job").click()
        device.page.locator("#cancel-confirm").click()
        wait_for_state(device, "cancelled")
        assert requester.status(submitted.job_id).state == "cancelled"


def test_a_hostile_job_name_shows_as_text(device: Device, pool: Pool) -> None:
    hostile = "<img src=x onerror=alert(1)>"
    with client_of(pool, device) as requester:
        submitted = requester.submit(
            guest("probe"), args=["echo", hostile], limits=SMALL, name=hostile
        )
    page = device.page
    page.click('a[data-nav="jobs"]')
    row = page.locator(f'[data-job-id="{submitted.job_id}"]')
    row.wait_for()
    assert hostile in row.inner_text()
    open_job(device, submitted.job_id)
    wait_for_state(device, "completed")
    assert hostile in page.locator("[data-job-page]").inner_text()
    assert page.locator('img[src="x"]').count() == 0
    assert device.dialogs == []


def test_a_phone_sees_every_page_without_scrolling_sideways(
    phone: Device, pool: Pool
) -> None:
    long_name = "a-job-whose-name-runs-on-" * 8
    with client_of(pool, phone) as requester:
        submitted = requester.submit(
            guest("probe"), tasks=50, args=["echo", "x" * 120, "{i}"], limits=SMALL,
            name=long_name[:200],
        )
        eventually(
            "the job to end", JOB_SECS,
            lambda: requester.status(submitted.job_id).state == "completed",
        )
    page = phone.page
    views = [
        ("jobs", lambda: page.click('a[data-nav="jobs"]'), f'[data-job-id="{submitted.job_id}"]'),
        ("job", lambda: open_job(phone, submitted.job_id), '[data-job-page][data-state="completed"]'),
        ("nodes", lambda: page.click('a[data-nav="nodes"]'), "text=worker"),
        ("pool", lambda: page.click('a[data-nav="pool"]'), ".uplot"),
        ("submit", lambda: page.click('a[data-nav="submit"]'), "form#render-form"),
    ]
    for name, show, ready in views:
        show()
        page.wait_for_selector(ready, timeout=JOB_SECS * 1000)
        page.screenshot(path=str(artifacts() / f"phone-{name}.png"), full_page=True)
        assert no_horizontal_overflow(phone), f"the {name} page scrolls sideways at 390 px"


def test_the_page_refuses_inline_script_by_its_policy(device: Device, pool: Pool) -> None:
    response = device.page.request.get(pool.coordinator.url + "/")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    injected = device.page.evaluate(
        """() => new Promise((done) => {
            window.injectedRan = false;
            document.addEventListener('securitypolicyviolation', () => done('refused'), { once: true });
            const script = document.createElement('script');
            script.textContent = 'window.injectedRan = true';
            document.body.append(script);
            setTimeout(() => done(window.injectedRan ? 'ran' : 'refused'), 2000);
        })"""
    )
    assert injected == "refused"
    # The one violation above was the test's own.
    device.policy_violations.clear()


def test_the_cli_link_and_qr_are_printed(pool: Pool) -> None:
    coordinator = pool.coordinator
    done = coordinator.cli(
        ["join-code", "--web", "--coordinator", coordinator.url, "--token",
         coordinator.owner_token, "--fingerprint", coordinator.fingerprint or ""],
        coordinator.data_dir.parent / "cli",
    )
    assert done.returncode == 0, done.stderr.decode()
    text = done.stdout.decode()
    assert "#token=ccr_" in text and "▀" in text and "certificate" in text, text



def test_a_private_job_says_what_it_is_sealed_from_and_shows_no_ciphertext(
    device: Device, pool: Pool, tmp_path: Path
) -> None:
    # Submitted as the device's requester with the CLI, which seals it on this machine.
    # The secret travels on stdin, which is sealed; args never are.
    (tmp_path / "probe.wasm").write_bytes(guest("probe").read_bytes())
    (tmp_path / "secret.txt").write_text("a family secret\n")
    (tmp_path / "job.toml").write_text(
        'name = "sealed"\nmodule = "probe.wasm"\nprivate = true\n'
        '[[tasks]]\nargs = ["cat"]\nstdin = "secret.txt"\n'
    )
    job_id = submitted_with_the_cli(pool, device, tmp_path / "job.toml")
    open_job(device, job_id)
    wait_for_state(device, "completed")
    page = device.page
    notice = page.locator("#private-job")
    notice.wait_for()
    assert "sealed from the coordinator and the network" in notice.inner_text()
    assert "readable by the owner of the machine that runs it" in notice.inner_text()
    assert not page.locator("#download-zip").is_visible()
    page.locator('[data-task-index="0"]').first.click()
    stdout = page.locator('[data-file="stdout"]')
    stdout.wait_for(timeout=JOB_SECS * 1000)
    # Listed for download, never shown: the page holds ciphertext only.
    assert stdout.locator("pre").count() == 0
    assert "a family secret" not in page.locator("[data-job-page]").inner_text()


def test_a_pipeline_shows_as_a_picture_of_its_stages_and_each_stage_opens_its_job(
    device: Device, pool: Pool, tmp_path: Path
) -> None:
    # A word count: a map per book, a shuffle into two parts, and a gather of the two; its
    # name is hostile, and must show as text.
    name = "count <img src=x onerror=alert(1)>"
    (tmp_path / "wordfreq.wasm").write_bytes(guest("wordfreq").read_bytes())
    (tmp_path / "books").mkdir()
    for index, text in enumerate(["the cat sat", "the dog ran", "a cat ran"]):
        (tmp_path / "books" / f"book-{index}.txt").write_text(text)
    (tmp_path / "count.toml").write_text(
        f'name = "{name}"\n'
        '[[stages]]\nname = "map"\nmodule = "wordfreq.wasm"\n'
        'per_input = { dir = "books", args = ["map", "2"] }\n'
        '[[stages]]\nname = "reduce"\nmodule = "wordfreq.wasm"\n'
        'partition = { stage = "map", parts = 2 }\nargs = ["reduce"]\n'
        '[[stages]]\nname = "gather"\nmodule = "wordfreq.wasm"\nall = "reduce"\n'
        'args = ["reduce"]\n'
    )
    pipeline_id = submitted_with_the_cli(pool, device, tmp_path / "count.toml")
    assert pipeline_id.startswith("p-"), pipeline_id

    page = device.page
    page.goto(page.url.split("#")[0] + f"#/pipelines/{pipeline_id}")
    page.wait_for_selector(
        '[data-pipeline-page][data-state="completed"]', timeout=JOB_SECS * 1000
    )
    graph = page.locator("svg.pipeline-graph")
    stages = graph.locator("g.stage")
    assert stages.count() == 3
    for stage in ["map", "reduce", "gather"]:
        box = graph.locator(f'g.stage[data-stage="{stage}"]')
        assert box.get_attribute("data-state") == "completed", stage
    assert "3 / 3 done" in graph.locator('g.stage[data-stage="map"]').text_content()
    arrows = {
        (arrow.get_attribute("data-from"), arrow.get_attribute("data-to")): arrow.text_content()
        for arrow in graph.locator("g.reads").all()
    }
    assert arrows == {("map", "reduce"): "partition ×2", ("reduce", "gather"): "all"}, arrows
    # Later stages sit right of what they read.
    boxes = [graph.locator(f'g.stage[data-stage="{s}"] rect.stage-box') for s in
             ["map", "reduce", "gather"]]
    lefts = [float(box.get_attribute("x")) for box in boxes]
    assert lefts == sorted(lefts) and len(set(lefts)) == 3, lefts
    assert name in page.locator("[data-pipeline-page] h1").inner_text()
    assert page.locator('img[src="x"]').count() == 0
    assert no_horizontal_overflow(device)
    page.screenshot(path=str(artifacts() / "pipeline.png"), full_page=True)

    # The jobs list links each of its three stages' jobs to it.
    page.click('a[data-nav="jobs"]')
    to_pipeline = page.locator(f'.job-card a[href="#/pipelines/{pipeline_id}"]')
    to_pipeline.first.wait_for()
    assert to_pipeline.count() == 3
    to_pipeline.first.click()
    page.wait_for_selector(f'[data-pipeline-page="{pipeline_id}"][data-state="completed"]')

    # A stage's box opens its job, whose page leads back to the pipeline.
    graph.locator('g.stage[data-stage="reduce"]').click()
    page.wait_for_selector('[data-job-page][data-state="completed"]')
    link = page.locator("#pipeline-link")
    assert link.inner_text() == name
    assert "Stage reduce of pipeline" in page.locator(".stage-of").inner_text()
    link.click()
    page.wait_for_selector(f'[data-pipeline-page="{pipeline_id}"][data-state="completed"]')
    assert device.dialogs == []
