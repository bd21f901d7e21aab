"""The browse page in a real headless Chromium (Debian's, driven by Playwright; never downloaded).

One browser for the module, a fresh context (cookies) per test. The server is the real app
under uvicorn: the local backend for most tests, Azure Blob (Azurite) + Cosmos (the test gateway)
for one, where images and downloads come from the storage origin.

The jobs and job pages are photographed for the README: into docs/screenshots/ when
FLEET_ARTIFACTS_UPDATE_SCREENSHOTS=1, else into the test's temporary directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fleet_artifacts.app import create_app
from fleet_artifacts.settings import Settings
from tests.conftest import TOKEN_A, TOKEN_B, make_settings
from tests.cosmos_gateway import CosmosGateway
from tests.servers import REPO, Azurite, ThreadedServer
from tests.test_ui import EVIL, READ_TOKEN, png, ui_tokens

CHROMIUM = os.environ.get("FLEET_ARTIFACTS_TEST_CHROMIUM", "/usr/bin/chromium")
if not os.access(CHROMIUM, os.X_OK):
    pytest.skip(
        f"BROWSER TESTS SKIPPED: no Chromium at {CHROMIUM}. ./scripts/test installs Debian's `chromium` "
        "with apt-get when it runs as root; install it, or point FLEET_ARTIFACTS_TEST_CHROMIUM at one.",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="BROWSER TESTS SKIPPED: the playwright package is missing (pip install -e '.[test]')",
)

# The machine's network is closed: without these, Chromium waits on connections it will never make.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = REPO / "docs" / "screenshots"
JOB = "nightly-1042"
LOG_LINES = 6000  # about 100 KB: the preview shows the last 64 KiB
SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40">'
    b'<rect width="40" height="40" fill="#2da44e"/><circle cx="20" cy="20" r="12" fill="#fff"/></svg>'
)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless Chromium for the module (Playwright gives it a fresh temporary profile)."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, timeout=30_000
        )
        yield browser
        browser.close()


def serve(settings: Settings) -> ThreadedServer:
    return ThreadedServer(create_app(settings)).start()


def fill_job(url: str, job: str) -> dict[str, bytes]:
    """A job of 30 artifacts of mixed kinds (the evil name among them); the bytes by file name."""
    files: dict[str, tuple[str, bytes]] = {}
    for i in range(8):
        lines = "".join(f"[{i}] step {n:05d} ok\n" for n in range(LOG_LINES)) + f"[{i}] BUILD FINISHED\n"
        files[f"build-{i}.log"] = ("log", lines.encode())
    for i in range(5):
        files[f"summary-{i}.json"] = (
            "data",
            json.dumps({"suite": i, "passed": 40 + i, "failed": i % 2}).encode(),
        )
    for i in range(4):
        files[f"coverage-{i}.xml"] = ("coverage", f'<coverage line-rate="0.{80 + i}"/>'.encode())
    for i in range(3):
        files[f"dist-{i}.bin"] = ("build", secrets.token_bytes(2048 + i))
    files["notes.txt"] = ("other", b"all good\n")
    files["report.md"] = ("document", b"# Report\n")
    files[EVIL] = ("other", b"just text\n")
    files["diagram.svg"] = ("image", SVG)
    # The images last: newest first, they head the table (and the README's screenshot).
    for i in range(6):
        files[f"screen-{i}.png"] = ("screenshot", png(32 + 8 * i, 24 + 4 * i))
    assert len(files) == 30
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN_A}"}, timeout=30) as api:
        for name, (kind, body) in files.items():
            answer = api.post(
                f"/fleet/jobs/{job}/artifacts",
                params={"fileName": name, "kind": kind, "runId": f"attempt-{len(name) % 2 + 1}"},
                content=body,
                headers={"Content-Type": ""},
            )
            assert answer.status_code == 201, answer.text
    return {name: body for name, (_, body) in files.items()}


def more_jobs(url: str) -> None:
    """A few small jobs (one sealed) for the jobs page."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN_A}"}, timeout=30) as api:
        for job, count in (("pr-311-lint", 3), ("release-2.4.0", 5), ("nightly-1041", 2)):
            for i in range(count):
                api.post(
                    f"/fleet/jobs/{job}/artifacts",
                    params={"fileName": f"out-{i}.txt", "kind": "log"},
                    content=b"x" * (1500 * (i + 1)),
                    headers={"Content-Type": ""},
                ).raise_for_status()
        api.post("/fleet/jobs/release-2.4.0/seal").raise_for_status()


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, bytes]]]:
    server = serve(make_settings(None, tmp_path_factory.mktemp("ui-browser"), tokens=ui_tokens()))
    try:
        files = fill_job(server.url, JOB)
        more_jobs(server.url)
        yield server.url, files
    finally:
        server.stop()


class Watched:
    """A page, and what went wrong on it: dialogs (an injected script ran) and CSP refusals."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.dialogs: list[str] = []
        self.refused: list[str] = []
        page.on("dialog", self._dialog)
        page.on("console", self._console)
        page.set_default_timeout(10_000)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _console(self, message: Any) -> None:
        if "Content Security Policy" in message.text:
            self.refused.append(message.text)

    def clean(self) -> None:
        assert self.dialogs == [], f"a script ran: {self.dialogs}"
        assert self.refused == [], f"the page broke its own CSP: {self.refused}"


@pytest.fixture
def tab(chromium: Any) -> Iterator[Watched]:
    context = chromium.new_context(viewport={"width": 1000, "height": 640}, accept_downloads=True)
    try:
        yield Watched(context.new_page())
    finally:
        context.close()


def sign_in(watched: Watched, url: str, token: str = READ_TOKEN) -> None:
    page = watched.page
    page.goto(f"{url}/ui")
    assert "/ui/sign-in" in page.url  # refused until signed in
    page.fill("#token", token)
    page.click("form.signin button[type=submit]")
    page.wait_for_url(f"{url}/ui")


def shot(page: Any, name: str, tmp_path: Path, *, height: int = 640) -> None:
    where = SCREENSHOTS if os.environ.get("FLEET_ARTIFACTS_UPDATE_SCREENSHOTS") == "1" else tmp_path
    where.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(where / name), clip={"x": 0, "y": 0, "width": 1000, "height": height})
    assert (where / name).stat().st_size > 1000


def wait_until(page: Any, condition: str, timeout: float = 15) -> None:
    """Poll ``condition`` in the page until it holds.

    Not ``page.wait_for_function``: when its first check fails it polls by evaluating a string
    in the page, which the page's CSP (no 'unsafe-eval') refuses. ``evaluate`` goes through the
    debugging protocol, which no CSP governs.
    """
    deadline = time.monotonic() + timeout
    while not page.evaluate(condition):
        assert time.monotonic() < deadline, f"never true: {condition}"
        page.wait_for_timeout(50)


def test_sign_in_see_the_jobs_and_the_table_of_30(
    local: tuple[str, dict[str, bytes]], tab: Watched, tmp_path: Path
) -> None:
    url, _ = local
    page = tab.page
    sign_in(tab, url)
    assert page.locator("table.jobs tbody tr").count() == 4
    shot(page, "jobs.png", tmp_path, height=320)
    page.click(f"text={JOB}")
    page.wait_for_url(f"{url}/ui/jobs/{JOB}")
    rows = page.locator("table.artifacts tbody tr")
    assert rows.count() == 30
    # The hostile name is text: no element made of it, no script run.
    assert page.get_by_text(EVIL, exact=True).count() == 1
    assert page.locator('img[src="x"]').count() == 0
    # The screenshots' thumbnails loaded from the signed URLs (the CSP allowed them).
    wait_until(page, "[...document.querySelectorAll('img.thumb')].every(i => i.complete)")
    widths = page.eval_on_selector_all("img.thumb", "imgs => imgs.map(i => i.naturalWidth)")
    assert len(widths) == 7 and all(w > 0 for w in widths)  # six PNGs and the SVG
    shot(page, "job.png", tmp_path)
    tab.clean()


def test_image_preview_log_tail_and_a_verified_download(
    local: tuple[str, dict[str, bytes]], tab: Watched
) -> None:
    url, files = local
    page = tab.page
    sign_in(tab, url)
    page.goto(f"{url}/ui/jobs/{JOB}?sort=name&order=asc")
    page.click("text=screen-3.png")
    wait_until(page, "document.querySelector('#preview-image').complete")
    assert page.eval_on_selector("#preview-image", "img => img.naturalWidth") == 56
    page.go_back()
    page.click("text=build-5.log")
    tail = page.inner_text("pre.log")
    assert tail.rstrip().endswith("[5] BUILD FINISHED")
    assert "[5] step 00000 ok" not in tail  # only the end was read
    assert page.locator("text=whole file").count() == 1
    page.go_back()
    row = page.locator("tr", has=page.get_by_text("dist-1.bin", exact=True))
    with page.expect_download() as info:
        row.locator("a.download").click()
    download = info.value
    assert download.suggested_filename == "dist-1.bin"
    assert (
        hashlib.sha256(Path(download.path()).read_bytes()).hexdigest()
        == hashlib.sha256(files["dist-1.bin"]).hexdigest()
    )
    tab.clean()


def test_sign_out_and_be_refused(local: tuple[str, dict[str, bytes]], tab: Watched) -> None:
    url, _ = local
    page = tab.page
    sign_in(tab, url)
    page.goto(f"{url}/ui/jobs/{JOB}")
    page.click("form.signout button")
    page.wait_for_url(f"{url}/ui/sign-in")
    page.goto(f"{url}/ui/jobs/{JOB}")
    assert page.url.startswith(f"{url}/ui/sign-in?next=")
    assert page.locator("table.artifacts").count() == 0
    tab.clean()


def test_a_link_on_another_site_opens_the_page_signed_in(
    local: tuple[str, dict[str, bytes]], tab: Watched
) -> None:
    """A link from another site opens the page for a signed-in user, not the sign-in form.

    A SameSite=Strict cookie stays home on a navigation another site starts; the page asks for
    itself again (a same-site navigation now, which carries it).
    """
    url, _ = local
    page = tab.page
    sign_in(tab, url)
    other = url.replace("127.0.0.1", "localhost")  # another site to the browser: a dashboard, say

    def follow_link_from_other_site() -> None:
        page.goto(f"{other}/health")
        page.evaluate(
            "href => { const a = document.createElement('a'); a.id = 'out'; a.href = href;"
            " a.textContent = 'the job'; document.body.append(a); }",
            f"{url}/ui/jobs/{JOB}",
        )
        page.click("#out")

    follow_link_from_other_site()
    page.wait_for_selector("table.artifacts")
    assert page.url == f"{url}/ui/jobs/{JOB}"
    page.context.clear_cookies()
    follow_link_from_other_site()  # signed out: to the sign-in form, once
    page.wait_for_url(f"{url}/ui/sign-in?next=*")
    assert page.locator("#token").count() == 1
    tab.clean()


def test_phone_width_reads_without_sideways_scrolling(
    local: tuple[str, dict[str, bytes]], tab: Watched
) -> None:
    url, _ = local
    page = tab.page
    page.set_viewport_size({"width": 390, "height": 800})
    sign_in(tab, url)
    page.goto(f"{url}/ui/jobs/{JOB}")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert page.locator("table.artifacts tbody tr").first.is_visible()
    # The longest unbroken values a client may send (job and run ids, a tag key, a file name), in
    # product B so that product A's pages (and the README's screenshots) stay as they are.
    job, run = "j" * 128, "r" * 128
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN_B}"}, timeout=30) as api:
        made = api.post(
            f"/fleet/jobs/{job}/artifacts",
            params={"fileName": "n" * 251 + ".log", "kind": "log", "runId": run, "tag": "k" * 128 + ":v"},
            content=b"ok\n",
            headers={"Content-Type": ""},
        )
        assert made.status_code == 201, made.text
    page.context.clear_cookies()
    sign_in(tab, url, TOKEN_B)
    for path in ("/ui", f"/ui/jobs/{job}", f"/ui/jobs/{job}/artifacts/{made.json()['id']}"):
        page.goto(url + path)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
    tab.clean()


def test_on_azure_blob_and_cosmos_images_and_downloads_come_from_storage(
    azurite: Azurite, cosmos_gateway: CosmosGateway, tmp_path: Path, tab: Watched
) -> None:
    server = serve(make_settings(azurite, tmp_path, cosmos=cosmos_gateway, tokens=ui_tokens()))
    try:
        files = fill_job(server.url, "azure-7")
        page = tab.page
        sign_in(tab, server.url)
        page.goto(f"{server.url}/ui/jobs/azure-7?sort=name&order=asc")
        assert page.locator("table.artifacts tbody tr").count() == 30
        page.click("text=screen-0.png")
        assert azurite.endpoint in (page.get_attribute("#preview-image", "src") or "")
        wait_until(page, "document.querySelector('#preview-image').complete")
        assert page.eval_on_selector("#preview-image", "img => img.naturalWidth") == 32
        page.go_back()
        row = page.locator("tr", has=page.get_by_text("notes.txt", exact=True))
        with page.expect_download() as info:
            row.locator("a.download").click()
        assert Path(info.value.path()).read_bytes() == files["notes.txt"]
        tab.clean()
    finally:
        server.stop()
