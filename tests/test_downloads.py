"""Downloads on both blob backends: the proxy and the local backend's signed URLs.

The proxy streams with Range, ETag, 304/206/416, redirect and inline support.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import httpx
import pytest

from fleet_artifacts.settings import Settings
from tests.helpers import assert_problem, upload_raw

DATA = secrets.token_bytes(2 * 1024 * 1024 + 333)


@pytest.fixture
def artifact(client: httpx.Client, job_id: str) -> dict[str, Any]:
    r = upload_raw(client, job_id, DATA, kind="image", fileName="plot ✓.png", _ct="image/png")
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


def content_paths(artifact: dict[str, Any]) -> list[str]:
    return [
        f"/fleet/jobs/{artifact['jobId']}/artifacts/{artifact['id']}/content",
        f"/fleet/artifacts/{artifact['id']}/content",
    ]


def test_proxy_streams_whole_artifact_with_headers(client: httpx.Client, artifact: dict[str, Any]) -> None:
    for path in content_paths(artifact):
        r = client.get(path)
        assert r.status_code == 200
        assert r.content == DATA
        assert r.headers["content-type"] == "image/png"
        assert r.headers["content-length"] == str(len(DATA))
        assert r.headers["etag"] == f'"{hashlib.sha256(DATA).hexdigest()}"'
        assert r.headers["accept-ranges"] == "bytes"
        assert r.headers["content-disposition"].startswith("attachment;")
        assert "filename*=UTF-8''plot%20%E2%9C%93.png" in r.headers["content-disposition"]


def test_if_none_match_answers_304(client: httpx.Client, artifact: dict[str, Any]) -> None:
    etag = f'"{artifact["sha256"]}"'
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        r = client.get(content_paths(artifact)[0], headers={"If-None-Match": header})
        assert r.status_code == 304 and r.content == b""
        assert r.headers["etag"] == etag
    assert client.get(content_paths(artifact)[0], headers={"If-None-Match": '"stale"'}).status_code == 200


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=10-1048586", 10, 1048586),
        ("bytes=1048570-", 1048570, len(DATA) - 1),
        ("bytes=-100", len(DATA) - 100, len(DATA) - 1),
        ("bytes=5-99999999", 5, len(DATA) - 1),
        ("bytes=-99999999", 0, len(DATA) - 1),
    ],
)
def test_single_range_answers_206(
    client: httpx.Client, artifact: dict[str, Any], header: str, first: int, last: int
) -> None:
    r = client.get(content_paths(artifact)[1], headers={"Range": header})
    assert r.status_code == 206, r.text
    assert r.content == DATA[first : last + 1]
    assert r.headers["content-range"] == f"bytes {first}-{last}/{len(DATA)}"
    assert r.headers["content-length"] == str(last - first + 1)


@pytest.mark.parametrize(
    "header", [f"bytes={len(DATA)}-", f"bytes={len(DATA) + 5}-{len(DATA) + 9}", "bytes=-0"]
)
def test_unsatisfiable_range_answers_416(client: httpx.Client, artifact: dict[str, Any], header: str) -> None:
    r = client.get(content_paths(artifact)[0], headers={"Range": header})
    assert_problem(r, 416)
    assert r.headers["content-range"] == f"bytes */{len(DATA)}"


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "items=0-5", "bytes=9-3", "bytes=abc", "bytes=1-x"])
def test_unusable_range_headers_are_ignored(
    client: httpx.Client, artifact: dict[str, Any], header: str
) -> None:
    r = client.get(content_paths(artifact)[0], headers={"Range": header})
    assert r.status_code == 200 and r.content == DATA


def test_if_range_with_a_stale_etag_sends_everything(client: httpx.Client, artifact: dict[str, Any]) -> None:
    fresh = client.get(
        content_paths(artifact)[0], headers={"Range": "bytes=0-9", "If-Range": f'"{artifact["sha256"]}"'}
    )
    assert fresh.status_code == 206 and fresh.content == DATA[:10]
    stale = client.get(content_paths(artifact)[0], headers={"Range": "bytes=0-9", "If-Range": '"old"'})
    assert stale.status_code == 200 and stale.content == DATA


def test_redirect_answers_302_to_a_fresh_signed_url(client: httpx.Client, artifact: dict[str, Any]) -> None:
    for path in content_paths(artifact):
        r = client.get(path, params={"redirect": "true", "disposition": "inline"})
        assert r.status_code == 302
        location = r.headers["location"]
        assert location.startswith("http") and "sig=" in location
        download = httpx.get(location)
        assert download.status_code == 200 and download.content == DATA
        assert download.headers["content-disposition"].startswith("inline;")
        ranged = httpx.get(location, headers={"Range": "bytes=100-199"})  # signed URLs take Range too
        assert ranged.status_code == 206 and ranged.content == DATA[100:200]


def test_inline_disposition_for_proxy_and_signed_url(client: httpx.Client, artifact: dict[str, Any]) -> None:
    r = client.get(content_paths(artifact)[0], params={"disposition": "inline"})
    assert r.headers["content-disposition"].startswith("inline;")
    fetched = client.get(f"/fleet/artifacts/{artifact['id']}", params={"disposition": "inline"}).json()
    assert fetched["downloadDisposition"] == "inline"  # image/png is safe to view inline
    assert httpx.get(fetched["downloadUrl"]).headers["content-disposition"].startswith("inline;")
    assert_problem(client.get(content_paths(artifact)[0], params={"disposition": "download"}), 400)


def test_proxy_needs_the_owner_token(client: httpx.Client, artifact: dict[str, Any]) -> None:
    from tests.conftest import TOKEN_B

    for path in content_paths(artifact):
        assert_problem(httpx.get(str(client.base_url) + path), 401)
        r = httpx.get(str(client.base_url) + path, headers={"Authorization": f"Bearer {TOKEN_B}"})
        assert_problem(r, 404)


def test_empty_artifact_downloads_empty(client: httpx.Client, job_id: str) -> None:
    created = upload_raw(client, job_id, b"").json()
    r = client.get(f"/fleet/artifacts/{created['id']}/content")
    assert r.status_code == 200 and r.content == b"" and r.headers["content-length"] == "0"
    assert_problem(
        client.get(f"/fleet/artifacts/{created['id']}/content", headers={"Range": "bytes=0-"}), 416
    )


# -- local signed URLs ---------------------------------------------------------------------------


def test_local_signed_urls_refuse_tampering_and_traversal(
    client: httpx.Client, settings: Settings, artifact: dict[str, Any]
) -> None:
    if settings.blob_backend != "local":
        pytest.skip("the /blobs/ route exists only on the local backend (Azure serves its own SAS)")
    url = artifact["downloadUrl"]
    base, query = url.split("?", 1)
    assert base == f"{client.base_url}/blobs/{artifact['blobKey']}"
    assert httpx.get(url).status_code == 200
    # another blob, a forged expiry, a dropped signature, a wider permission
    for forged in (
        url.replace(artifact["id"], "0" * 32),
        url.replace("se=", "se=9"),
        base + "?" + "&".join(p for p in query.split("&") if not p.startswith("sig=")),
        url.replace("sp=r", "sp=rw"),
    ):
        assert_problem(httpx.get(forged), 403)
    # traversal in the URL path: refused, never served from outside the blob root
    secret = settings.data_dir / "signing.key"
    assert secret.is_file()
    for path in (
        "/blobs/../signing.key",
        "/blobs/%2e%2e/signing.key",
        "/blobs/fleet/%2e%2e/%2e%2e/signing.key",
        "/blobs/..%2fsigning.key",
        "/blobs/%2Fetc%2Fpasswd",
    ):
        r = httpx.get(httpx.URL(str(client.base_url) + path + "?" + query))
        assert r.status_code in (400, 403, 404), path
        assert secret.read_text().strip().encode() not in r.content


def test_head_answers_the_get_headers_without_a_body(client: httpx.Client, artifact: dict[str, Any]) -> None:
    urls = [str(client.base_url) + path for path in content_paths(artifact)]
    urls.append(client.get(f"/fleet/artifacts/{artifact['id']}").json()["downloadUrl"])  # local or Azure SAS
    for url in urls:
        r = httpx.head(url, headers=dict(client.headers))
        assert r.status_code == 200, url
        assert r.content == b"" and r.headers["content-length"] == str(len(DATA))
        assert r.headers["content-type"] == "image/png"
        # HEAD has no range semantics (RFC 9110), and Azure's Get Blob Properties ignores Range too.
        ranged = httpx.head(url, headers={**client.headers, "Range": "bytes=0-9"})
        assert ranged.status_code == 200 and ranged.headers["content-length"] == str(len(DATA))
        assert "content-range" not in ranged.headers
    etag = f'"{artifact["sha256"]}"'
    r = httpx.head(urls[0], headers={**client.headers, "If-None-Match": etag})
    assert r.status_code == 304


ACTIVE = [
    ("page.html", "text/html", b"<script>alert(document.domain)</script>"),
    ("page.xhtml", "application/xhtml+xml", b"<html xmlns='http://www.w3.org/1999/xhtml'/>"),
    ("pic.svg", "image/svg+xml", b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>"),
    ("feed.xml", "text/xml", b"<x/>"),
    ("app.js", "text/javascript", b"alert(1)"),
    ("blob", "application/x-unknown-thing", b"?"),
]


@pytest.mark.parametrize(("name", "content_type", "body"), ACTIVE)
def test_active_types_are_never_signed_inline(
    client: httpx.Client, job_id: str, name: str, content_type: str, body: bytes
) -> None:
    r = upload_raw(client, job_id, body, kind="document", fileName=name, _ct=content_type)
    assert r.status_code == 201, r.text
    artifact = r.json()
    urls = []
    for path in (f"/fleet/artifacts/{artifact['id']}", f"/fleet/jobs/{job_id}/artifacts/{artifact['id']}"):
        fetched = client.get(path, params={"disposition": "inline"}).json()
        assert fetched["downloadDisposition"] == "attachment"
        urls.append(fetched["downloadUrl"])
    for path in content_paths(artifact):  # the redirect signs the same way
        redirect = client.get(path, params={"redirect": "true", "disposition": "inline"})
        assert redirect.status_code == 302
        urls.append(redirect.headers["location"])
    for url in urls:  # Azure SAS or local signed URL: the storage origin answers attachment
        download = httpx.get(url)
        assert download.status_code == 200 and download.content == body
        assert download.headers["content-disposition"].startswith("attachment;"), url
    # Viewing inline stays possible through the proxy, which sandboxes what it serves.
    proxied = client.get(content_paths(artifact)[0], params={"disposition": "inline"})
    assert proxied.headers["content-disposition"].startswith("inline;")
    assert proxied.headers["content-security-policy"] == "sandbox"
    assert proxied.headers["x-content-type-options"] == "nosniff"


def test_every_answer_of_ours_carries_the_sandbox_headers(
    client: httpx.Client, artifact: dict[str, Any]
) -> None:
    etag = f'"{artifact["sha256"]}"'
    urls = [str(client.base_url) + path for path in content_paths(artifact)]
    signed = client.get(f"/fleet/artifacts/{artifact['id']}").json()["downloadUrl"]
    if signed.startswith(str(client.base_url)):  # the local backend's signed URL is served by us
        urls.append(signed)
    for url in urls:
        answers = {
            200: httpx.get(url, headers=client.headers),
            206: httpx.get(url, headers={**client.headers, "Range": "bytes=0-9"}),
            304: httpx.get(url, headers={**client.headers, "If-None-Match": etag}),
            -1: httpx.head(url, headers=client.headers),  # HEAD: 200
        }
        for status, r in answers.items():
            assert r.status_code == (200 if status == -1 else status), (url, status)
            assert r.headers["content-security-policy"] == "sandbox", (url, status)
            assert r.headers["x-content-type-options"] == "nosniff", (url, status)


def test_if_match_and_if_unmodified_since_answer_412(client: httpx.Client, artifact: dict[str, Any]) -> None:
    etag = f'"{artifact["sha256"]}"'
    path = content_paths(artifact)[0]
    for header in (etag, f'"other", {etag}', "*"):
        assert client.get(path, headers={"If-Match": header}).status_code == 200
    for header in ('"other"', f"W/{etag}"):  # If-Match compares strongly
        assert_problem(client.get(path, headers={"If-Match": header}), 412)
    modified = client.get(path).headers["last-modified"]
    assert client.get(path, headers={"If-Unmodified-Since": modified}).status_code == 200
    before = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert_problem(client.get(path, headers={"If-Unmodified-Since": before}), 412)
    # If-Match wins over If-Unmodified-Since; a malformed date is ignored.
    assert client.get(path, headers={"If-Match": etag, "If-Unmodified-Since": before}).status_code == 200
    assert client.get(path, headers={"If-Unmodified-Since": "yesterday"}).status_code == 200


def test_several_range_fields_are_not_reduced_to_the_first(
    client: httpx.Client, artifact: dict[str, Any], server_url: str
) -> None:
    path = content_paths(artifact)[0]
    headers = [
        ("Authorization", client.headers["authorization"]),
        ("Range", "bytes=0-9"),
        ("Range", "bytes=20-29"),
    ]
    r = httpx.get(server_url + path, headers=headers)
    assert r.status_code == 200 and r.content == DATA  # a multi-range request, served whole
