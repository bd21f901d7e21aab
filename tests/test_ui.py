"""The browse page over plain HTTP: sign-in and its cookie, CSRF, escaping, headers, previews.

One local-backend server for the module; the browser tests (test_ui_browser.py) drive the same
pages in Chromium.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
import secrets
import struct
import zipfile
import zlib
from collections.abc import Iterator

import httpx
import pytest

from fleet_artifacts.app import create_app
from tests.conftest import TOKEN_A, TOKEN_B, make_settings
from tests.servers import ThreadedServer

READ_TOKEN = "ui-read-token-" + "2" * 16
WRITE_ONLY = "ui-write-token-" + "3" * 16
SHARE_TOKEN = "ui-share-token-" + "4" * 16
EVIL = "<img src=x onerror=alert(1)>.txt"


def ui_tokens() -> str:
    """Product A with every scope, read only, write only, and read+share; product B (every scope)."""
    return (
        f"{TOKEN_A}:prod-a,{READ_TOKEN}:prod-a:read,{WRITE_ONLY}:prod-a:write,{SHARE_TOKEN}:prod-a:read+share,"
        f"{TOKEN_B}:prod-b"
    )


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    settings = make_settings(None, tmp_path_factory.mktemp("ui"), tokens=ui_tokens())
    srv = ThreadedServer(create_app(settings)).start()
    yield srv
    srv.stop()


@pytest.fixture
def api(ui_server: ThreadedServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {TOKEN_A}"}
    with httpx.Client(base_url=ui_server.url, headers=headers, timeout=30) as client:
        yield client


@pytest.fixture
def browser(ui_server: ThreadedServer) -> Iterator[httpx.Client]:
    """A cookie-keeping client, as a browser (no redirects followed: tests look at them)."""
    with httpx.Client(base_url=ui_server.url, timeout=30) as client:
        yield client


def upload(api: httpx.Client, job: str, name: str, body: bytes, **query: str) -> dict[str, object]:
    answer = api.post(
        f"/fleet/jobs/{job}/artifacts",
        params={"fileName": name, "kind": "other", **query},
        content=body,
        headers={"Content-Type": ""},
    )
    assert answer.status_code == 201, answer.text
    out: dict[str, object] = answer.json()
    return out


def csrf_of(html: str) -> str:
    found = re.search(r'name="_csrf_token" value="([^"]+)"', html)
    assert found, "the form carries no CSRF token"
    return found.group(1)


def sign_in(browser: httpx.Client, token: str = READ_TOKEN, next_: str = "/ui") -> httpx.Response:
    form = browser.get("/ui/sign-in")
    assert form.status_code == 200
    return browser.post(
        "/ui/sign-in", data={"token": token, "next": next_, "_csrf_token": csrf_of(form.text)}
    )


def test_the_root_and_the_page_send_an_unsigned_browser_to_sign_in(browser: httpx.Client) -> None:
    assert browser.get("/").headers["location"] == "/ui"
    refused = browser.get("/ui/jobs/nightly-1?kind=log")
    assert refused.status_code == 303
    assert refused.headers["location"] == "/ui/sign-in?next=%2Fui%2Fjobs%2Fnightly-1%3Fkind%3Dlog"


def test_pages_send_a_strict_csp_and_no_inline_script(browser: httpx.Client) -> None:
    form = browser.get("/ui/sign-in")
    csp = form.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert form.headers["x-content-type-options"] == "nosniff"
    assert form.headers["cache-control"] == "no-store"
    assert re.findall(r"<script[^>]*>", form.text) == ['<script src="/ui/static/ui.js" defer>']
    assert "style=" not in form.text and "<style" not in form.text
    assert browser.get("/ui/static/ui.js").status_code == 200
    assert browser.get("/ui/static/ui.css").headers["content-type"].startswith("text/css")


def test_signing_in_keeps_the_token_in_a_strict_httponly_cookie_of_ui(browser: httpx.Client) -> None:
    answer = sign_in(browser, next_="/ui/jobs/x")
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/jobs/x"
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("fa_ui_token="))
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/ui"} <= flags
    assert READ_TOKEN not in cookie  # encoded, never the raw token in a header log
    assert browser.get("/ui").status_code == 200
    # The token never reaches the API by cookie: the API stays bearer-only.
    assert browser.get("/fleet/jobs").status_code == 401


def test_sign_in_refuses_a_bad_token_and_a_token_without_read(browser: httpx.Client) -> None:
    bad = sign_in(browser, token="not-a-token-of-this-service")
    assert bad.status_code == 401 and "not valid" in bad.text
    assert "fa_ui_token" not in bad.headers.get("set-cookie", "")
    write_only = sign_in(browser, token=WRITE_ONLY)
    assert write_only.status_code == 403 and "read" in write_only.text


def test_sign_in_goes_only_to_a_page_of_ui(browser: httpx.Client) -> None:
    for target in ("https://evil.example/", "//evil.example/ui", "/fleet/jobs", "/uix"):
        assert sign_in(browser, next_=target).headers["location"] == "/ui"


def test_forms_without_the_csrf_token_are_refused(browser: httpx.Client) -> None:
    browser.get("/ui/sign-in")  # the CSRF cookie is set, but the form's token is left out
    assert browser.post("/ui/sign-in", data={"token": READ_TOKEN}).status_code == 403
    assert browser.post("/ui/sign-in", data={"token": READ_TOKEN, "_csrf_token": "forged"}).status_code == 403
    sign_in(browser)
    assert browser.post("/ui/sign-out").status_code == 403
    assert browser.get("/ui").status_code == 200  # still signed in: the forged sign-out did nothing


def test_signing_out_forgets_the_token_and_the_page_refuses(browser: httpx.Client) -> None:
    page = sign_in(browser) and browser.get("/ui")
    out = browser.post("/ui/sign-out", data={"_csrf_token": csrf_of(page.text)})
    assert out.status_code == 303 and out.headers["location"] == "/ui/sign-in"
    assert "max-age=0" in out.headers["set-cookie"].lower()
    assert browser.get("/ui").status_code == 303


def test_a_cookie_with_a_revoked_token_is_refused_and_dropped(browser: httpx.Client) -> None:
    browser.cookies.set("fa_ui_token", "bm90LWEtdG9rZW4tYXQtYWxsLTEyMzQ", path="/ui")
    refused = browser.get("/ui")
    assert refused.status_code == 303 and "max-age=0" in refused.headers["set-cookie"].lower()
    # A form sent with it (the CSRF token is good) goes to sign in, not back to the form's target.
    csrf = csrf_of(browser.get("/ui/sign-in").text)
    browser.cookies.set("fa_ui_token", "bm90LWEtdG9rZW4tYXQtYWxsLTEyMzQ", path="/ui")
    posted = browser.post("/ui/jobs/j/artifacts/a/share", data={"_csrf_token": csrf})
    assert posted.status_code == 303 and posted.headers["location"] == "/ui/sign-in"


def test_a_cookie_whose_token_lost_the_read_scope_is_dropped(browser: httpx.Client) -> None:
    """A token whose scopes changed after sign-in (no ``read`` now) is forgotten, as a revoked one.

    As after a tokens file is rewritten: the cookie holds a valid token without ``read``. Every
    page would be a 403 with no way to sign out.
    """
    browser.cookies.set("fa_ui_token", base64.urlsafe_b64encode(WRITE_ONLY.encode()).decode(), path="/ui")
    refused = browser.get("/ui/jobs/j")
    assert refused.status_code == 303, refused.text[:200]
    assert refused.headers["location"] == "/ui/sign-in?next=%2Fui%2Fjobs%2Fj"
    assert "max-age=0" in refused.headers["set-cookie"].lower()


def test_errors_of_pages_are_pages(browser: httpx.Client) -> None:
    """A bad sort, a failed CSRF check: HTML with the page's CSP, never problem+json."""
    sign_in(browser)
    for answer, status, words in (
        (browser.get("/ui/jobs/j", params={"sort": "bogus"}), 400, "sort"),
        (browser.get("/ui/jobs/j", params={"order": "up"}), 400, "order"),
        (browser.post("/ui/sign-out"), 403, "CSRF"),
    ):
        assert answer.status_code == status
        assert answer.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in answer.headers["content-security-policy"]
        assert answer.headers["cache-control"] == "no-store"
        assert words in answer.text and "Request id" in answer.text


def test_everything_a_client_sent_is_escaped(api: httpx.Client, browser: httpx.Client) -> None:
    job = "job-" + secrets.token_hex(4)
    body = b"</pre><script>alert(3)</script>\n"
    made = upload(api, job, EVIL, body, tag="note:<b>bold</b>", runId="run-1")
    sign_in(browser)
    table = browser.get(f"/ui/jobs/{job}")
    assert table.status_code == 200
    assert "&lt;img src=x onerror=alert(1)&gt;.txt" in table.text
    assert "<img src=x" not in table.text
    one = browser.get(f"/ui/jobs/{job}/artifacts/{made['id']}")
    assert one.status_code == 200
    assert "&lt;/pre&gt;&lt;script&gt;alert(3)&lt;/script&gt;" in one.text
    assert "&lt;b&gt;bold&lt;/b&gt;" in one.text
    assert "<script>alert" not in one.text and "<b>bold" not in one.text


def test_the_job_table_filters_sorts_and_allows_the_blob_origin_for_thumbnails(
    api: httpx.Client, browser: httpx.Client, ui_server: ThreadedServer
) -> None:
    job = "job-" + secrets.token_hex(4)
    upload(api, job, "b.log", b"x" * 3000, kind="log", runId="r1")
    upload(api, job, "a.png", PNG, kind="screenshot", runId="r2")
    upload(api, job, "c.txt", b"y", kind="log", runId="r2")
    sign_in(browser)
    by_name = browser.get(f"/ui/jobs/{job}", params={"sort": "name", "order": "asc"})
    names = re.findall(r'">([abc]\.(?:log|png|txt))</a>', by_name.text)
    assert names == ["a.png", "b.log", "c.txt"]
    by_size = browser.get(f"/ui/jobs/{job}", params={"sort": "size", "order": "desc"})
    assert re.findall(r'">([abc]\.(?:log|png|txt))</a>', by_size.text)[0] == "b.log"
    logs = browser.get(f"/ui/jobs/{job}", params={"kind": "log", "run": "r2"})
    assert re.findall(r'">([abc]\.(?:log|png|txt))</a>', logs.text) == ["c.txt"]
    img_src = by_name.headers["content-security-policy"].split("img-src ")[1].split(";")[0]
    assert img_src == f"'self' {ui_server.url}"  # the local backend's signed URLs are its own /blobs
    assert browser.get(f"/ui/jobs/{job}", params={"kind": "nope"}).status_code == 400


def test_previews_tail_a_log_and_pretty_print_json(api: httpx.Client, browser: httpx.Client) -> None:
    job = "job-" + secrets.token_hex(4)
    log = "".join(f"line {i:06d}\n" for i in range(20000)).encode()  # 240 KB: only the end is read
    made_log = upload(api, job, "build.log", log, kind="log")
    made_json = upload(api, job, "summary.json", json.dumps({"ok": True, "n": [1, 2]}).encode())
    sign_in(browser)
    tail = browser.get(f"/ui/jobs/{job}/artifacts/{made_log['id']}").text
    assert "line 019999" in tail and "line 000000" not in tail and "whole file" in tail
    pretty = browser.get(f"/ui/jobs/{job}/artifacts/{made_json['id']}").text
    assert "{\n  &#34;ok&#34;: true," in pretty


def test_a_log_tail_starts_at_its_first_whole_line_without_terminal_escapes(
    api: httpx.Client, browser: httpx.Client
) -> None:
    job = "job-" + secrets.token_hex(4)
    # 16-byte lines: the last 64 KiB begins exactly at a line, which must be shown, not dropped.
    lines = [f"L{i:014d}\n" for i in range(5000)]
    aligned = upload(api, job, "aligned.log", "".join(lines).encode(), kind="log")
    coloured = upload(api, job, "ci.log", b"\x1b[31mFAILED\x1b[0m \x1b]0;title\x07step\x1b[201~ \x00end\n")
    one_line = upload(api, job, "minified.log", b"x" * 70_000 + b"!\n")  # no line starts in the tail
    sign_in(browser)
    tail = pre_text(browser.get(f"/ui/jobs/{job}/artifacts/{aligned['id']}").text)
    assert tail.splitlines()[0] == lines[-(64 * 1024 // 16)].strip()
    assert tail.endswith(lines[-1])
    shown = pre_text(browser.get(f"/ui/jobs/{job}/artifacts/{coloured['id']}").text)
    assert shown == "FAILED step \ufffdend\n"
    assert pre_text(browser.get(f"/ui/jobs/{job}/artifacts/{one_line['id']}").text).endswith("xx!\n")


def test_json_previews_stay_bounded_and_never_fail(api: httpx.Client, browser: httpx.Client) -> None:
    job = "job-" + secrets.token_hex(4)
    # 240 KB nested 60 deep pretty-prints as 15 MB (each line indented by its depth): too much
    # for a page and for the server's memory; its end is shown as text instead.
    deep = b"[" * 60 + b"0," * 120_000 + b"0" + b"]" * 60
    bomb = upload(api, job, "deep.json", deep)
    surrogate = upload(api, job, "lone.json", b'{"a": "\\ud800 ok"}')
    broken = upload(api, job, "cut.json", b"[" + b"1," * 200_000)
    sign_in(browser)
    page = browser.get(f"/ui/jobs/{job}/artifacts/{bomb['id']}")
    assert page.status_code == 200 and len(page.content) < 200_000
    assert "whole file" in page.text and pre_text(page.text).endswith("0" + "]" * 60)
    lone = browser.get(f"/ui/jobs/{job}/artifacts/{surrogate['id']}")
    assert lone.status_code == 200 and '"a": "\\ud800 ok"' in pre_text(lone.text)
    cut = browser.get(f"/ui/jobs/{job}/artifacts/{broken['id']}")
    assert cut.status_code == 200 and len(cut.content) < 200_000 and "whole file" in cut.text


def pre_text(page: str) -> str:
    found = re.search(r"<pre[^>]*>(.*?)</pre>", page, re.S)
    assert found, "the page shows no text"
    return html.unescape(found.group(1))


def test_binaries_broken_json_and_archived_artifacts_preview_honestly(
    api: httpx.Client, browser: httpx.Client
) -> None:
    job = "job-" + secrets.token_hex(4)
    binary = upload(api, job, "dist.bin", b"\x00\x01" * 600)
    broken = upload(api, job, "half.json", b'{"ok": tr')
    archived = upload(api, job, "old.log", b"gone offline\n", kind="log")
    assert api.post(f"/fleet/artifacts/{archived['id']}/archive").status_code == 200
    sign_in(browser)
    one = browser.get(f"/ui/jobs/{job}/artifacts/{binary['id']}").text
    assert "No preview for application/octet-stream (1.2 KiB)" in one
    assert "{&#34;ok&#34;: tr" in browser.get(f"/ui/jobs/{job}/artifacts/{broken['id']}").text
    offline = browser.get(f"/ui/jobs/{job}/artifacts/{archived['id']}").text
    assert "archived" in offline and "gone offline" not in offline and "Open / download" not in offline


def test_the_zip_and_a_missing_artifact(api: httpx.Client, browser: httpx.Client) -> None:
    job = "job-" + secrets.token_hex(4)
    upload(api, job, "one.txt", b"1")
    upload(api, job, "two.log", b"2", kind="log", runId="r2")
    sign_in(browser)
    archive = browser.get(f"/ui/jobs/{job}/archive.zip")
    assert archive.status_code == 200
    assert zipfile.ZipFile(io.BytesIO(archive.content)).read("one.txt") == b"1"
    table = browser.get(f"/ui/jobs/{job}", params={"kind": "log", "run": "r2"})
    link = re.search(r'href="(/ui/jobs/[^"]+/archive\.zip[^"]*)"', table.text)
    assert link is not None
    narrowed = browser.get(link.group(1).replace("&amp;", "&"))
    assert zipfile.ZipFile(io.BytesIO(narrowed.content)).namelist() == ["two.log"]
    missing = browser.get(f"/ui/jobs/{job}/artifacts/nosuchartifact")
    assert missing.status_code == 404 and "text/html" in missing.headers["content-type"]


def test_a_share_link_needs_the_share_scope(api: httpx.Client, browser: httpx.Client) -> None:
    job = "job-" + secrets.token_hex(4)
    made = upload(api, job, "one.txt", b"shared bytes")
    page = sign_in(browser) and browser.get(f"/ui/jobs/{job}/artifacts/{made['id']}")
    assert "Make a share link" not in page.text
    refused = browser.post(
        f"/ui/jobs/{job}/artifacts/{made['id']}/share", data={"_csrf_token": csrf_of(page.text)}
    )
    assert refused.status_code == 403
    page = sign_in(browser, token=SHARE_TOKEN) and browser.get(f"/ui/jobs/{job}/artifacts/{made['id']}")
    shared = browser.post(
        f"/ui/jobs/{job}/artifacts/{made['id']}/share", data={"_csrf_token": csrf_of(page.text)}
    )
    assert shared.status_code == 200
    link = re.search(r'value="(http://[^"]+/s/[^"]+)"', shared.text)
    assert link is not None
    assert httpx.get(link.group(1), follow_redirects=True).content == b"shared bytes"


def test_the_ui_is_not_in_the_api_document(api: httpx.Client) -> None:
    paths = api.get("/docs/openapi.json").json()["paths"]
    assert not [p for p in paths if p == "/" or p.startswith("/ui")]


def png(width: int = 4, height: int = 3) -> bytes:
    """A real PNG (a red-to-blue gradient), made with zlib: no image library needed."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(
        b"\x00"
        + b"".join(
            bytes((255 * x // max(1, width - 1), 40, 255 - 255 * x // max(1, width - 1)))
            for x in range(width)
        )
        for _ in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


PNG = png()
