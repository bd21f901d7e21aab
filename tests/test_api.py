"""The HTTP API over a real uvicorn server, Azure Blob on Azurite, SQLite pointers."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import secrets
import socket
from collections.abc import Iterator

import httpx
import pytest

from fleet_artifacts.settings import Settings
from tests.conftest import TOKEN_B
from tests.helpers import assert_problem, blob_bytes, blob_names, stored_doc, upload_raw
from tests.servers import ThreadedServer

POINTER_FIELDS = {
    "id",
    "productId",
    "jobId",
    "runId",
    "kind",
    "fileName",
    "blobKey",
    "contentType",
    "sizeBytes",
    "sha256",
    "createdAt",
    "expiresAt",
    "tags",
    "status",
    "sha256Verified",
    "keepForever",
    "retentionDays",
    "tier",
    "restoredAt",
    "undeleteTo",
}


def check_pointer(body: dict[str, object], job_id: str, data: bytes, content_type: str) -> None:
    assert body.keys() >= POINTER_FIELDS
    assert body["productId"] == "prod-a"
    assert body["jobId"] == job_id
    assert body["blobKey"] == f"fleet/prod-a/{job_id}/{body['id']}-{body['kind']}"
    assert body["sizeBytes"] == len(data)
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["contentType"] == content_type
    assert body["status"] == "ACTIVE"
    assert isinstance(body["downloadUrl"], str) and "sig=" in body["downloadUrl"]


# -- upload forms --------------------------------------------------------------------------------


async def test_raw_upload_stores_bytes_in_blob_and_a_payload_free_pointer(
    client: httpx.Client, settings: Settings, job_id: str
) -> None:
    data = b'{"coverage": 0.93}\n'
    r = upload_raw(
        client,
        job_id,
        data,
        kind="coverage",
        fileName="cov.json",
        runId="run-7",
        tag="branch:main",
        _ct="application/json",
    )
    assert r.status_code == 201, r.text
    body = r.json()
    check_pointer(body, job_id, data, "application/json")
    assert body["runId"] == "run-7" and body["tags"] == {"branch": "main"}
    assert r.headers["location"] == f"/fleet/jobs/{job_id}/artifacts/{body['id']}"
    assert await blob_bytes(settings, body["blobKey"]) == data
    # No payload, no URL stored (Cosmos adds its ttl backstop).
    assert set(stored_doc(settings, body["id"])) - {"ttl"} == POINTER_FIELDS


async def test_multipart_upload(client: httpx.Client, settings: Settings, job_id: str) -> None:
    data = secrets.token_bytes(300_000)
    r = client.post(
        f"/fleet/jobs/{job_id}/artifacts",
        data={"kind": "screenshot", "runId": "r1", "tags": ["os:linux", "arch:x64"]},
        files={"file": ("shot 1.png", data, "image/png")},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    check_pointer(body, job_id, data, "image/png")
    assert body["fileName"] == "shot 1.png"
    assert body["tags"] == {"os": "linux", "arch": "x64"}
    assert await blob_bytes(settings, body["blobKey"]) == data
    assert set(stored_doc(settings, body["id"])) - {"ttl"} == POINTER_FIELDS


async def test_json_envelope_upload(client: httpx.Client, settings: Settings, job_id: str) -> None:
    data = "résumé ✓\n".encode()
    envelope = {
        "kind": "document",
        "fileName": "notes.txt",
        "contentType": "text/plain; charset=utf-8",
        "content": base64.b64encode(data).decode(),
        "tags": {"team": "qa"},
    }
    r = client.post(
        f"/fleet/jobs/{job_id}/artifacts",
        content=json.dumps(envelope),
        headers={"Content-Type": "application/vnd.fleet-artifact+json"},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    check_pointer(body, job_id, data, "text/plain; charset=utf-8")
    assert await blob_bytes(settings, body["blobKey"]) == data


async def test_raw_json_file_is_stored_as_is_not_read_as_envelope(
    client: httpx.Client, settings: Settings, job_id: str
) -> None:
    # Looks exactly like an envelope, but application/json means "this is the file".
    data = json.dumps({"kind": "log", "fileName": "x", "content": "aGk="}).encode()
    r = upload_raw(
        client, job_id, data, kind="data", fileName="envelope-lookalike.json", _ct="application/json"
    )
    assert r.status_code == 201, r.text
    assert r.json()["sizeBytes"] == len(data)
    assert await blob_bytes(settings, r.json()["blobKey"]) == data


@pytest.mark.slow
async def test_64_mib_streamed_raw_upload_is_byte_exact(
    client: httpx.Client, settings: Settings, job_id: str
) -> None:
    block = secrets.token_bytes(1024 * 1024)
    digest = hashlib.sha256()

    def body() -> Iterator[bytes]:  # chunked transfer: the server never sees a Content-Length
        for i in range(64):
            piece = block[i:] + block[:i]
            digest.update(piece)
            yield piece

    r = client.post(
        f"/fleet/jobs/{job_id}/artifacts",
        params={"kind": "build", "fileName": "big.bin"},
        content=body(),
        headers={"Content-Type": "application/octet-stream"},
        timeout=300,
    )
    assert r.status_code == 201, r.text
    assert r.json()["sizeBytes"] == 64 * 1024 * 1024
    assert r.json()["sha256"] == digest.hexdigest()
    with httpx.stream("GET", r.json()["downloadUrl"], timeout=300) as download:
        assert download.status_code == 200
        got = hashlib.sha256()
        for chunk in download.iter_bytes():
            got.update(chunk)
    assert got.hexdigest() == digest.hexdigest()


# -- fetch and download --------------------------------------------------------------------------


def test_fetch_returns_fresh_sas_that_downloads_byte_exact(client: httpx.Client, job_id: str) -> None:
    data = secrets.token_bytes(10_000)
    created = upload_raw(
        client, job_id, data, kind="build", fileName='rés "v2".tar', _ct="application/x-tar"
    ).json()
    for path in (f"/fleet/jobs/{job_id}/artifacts/{created['id']}", f"/fleet/artifacts/{created['id']}"):
        r = client.get(path)
        assert r.status_code == 200, r.text
        fetched = r.json()
        assert {k: fetched[k] for k in POINTER_FIELDS} == {k: created[k] for k in POINTER_FIELDS}
        url = fetched["downloadUrl"]
        assert "sr=b" in url and "sp=r" in url and "&sp=rw" not in url
        download = httpx.get(url)  # plain HTTP, no SDK
        assert download.status_code == 200
        assert download.content == data
        assert download.headers["content-type"] == "application/x-tar"
        disposition = download.headers["content-disposition"]
        assert disposition.startswith("attachment;")
        assert "filename*=UTF-8''r%C3%A9s%20%22v2%22.tar" in disposition
        assert 'filename="r_s _v2_.tar"' in disposition


def test_each_fetch_signs_a_new_url(client: httpx.Client, job_id: str) -> None:
    created = upload_raw(client, job_id, b"x").json()
    import time

    time.sleep(1.1)  # SAS times have one-second resolution
    again = client.get(f"/fleet/jobs/{job_id}/artifacts/{created['id']}").json()
    assert again["downloadUrl"] != created["downloadUrl"]
    assert again["downloadUrlExpiresAt"] > created["downloadUrlExpiresAt"]


def test_tampered_sas_is_refused(client: httpx.Client, job_id: str) -> None:
    a = upload_raw(client, job_id, b"secret-a").json()
    b = upload_raw(client, job_id, b"secret-b").json()
    url = a["downloadUrl"]
    # Point A's signature at B's blob, and widen A's permissions.
    assert httpx.get(url.replace(a["blobKey"], b["blobKey"])).status_code == 403
    assert httpx.get(url.replace("sp=r", "sp=rw")).status_code == 403
    sig = url.rsplit("sig=", 1)[1]
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    assert httpx.get(url.replace("sig=" + sig, "sig=" + flipped)).status_code == 403


# -- list ----------------------------------------------------------------------------------------


def test_list_is_scoped_to_the_job_and_paginates_exactly_once(client: httpx.Client, job_id: str) -> None:
    other_job = job_id + "-other"
    ids = [upload_raw(client, job_id, f"item {i}".encode()).json()["id"] for i in range(23)]
    upload_raw(client, other_job, b"elsewhere")
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 5}
        if token:
            params["continuationToken"] = token
        page = client.get(f"/fleet/jobs/{job_id}/artifacts", params=params).json()
        pages += 1
        assert len(page["items"]) <= 5
        seen += [item["id"] for item in page["items"]]
        assert all(item["jobId"] == job_id and item["downloadUrl"] for item in page["items"])
        token = page["continuationToken"]
        if not token:
            break
    assert pages == 5
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))
    assert seen == list(reversed(ids))  # newest first


def test_list_filters_by_kind_run_and_tag(client: httpx.Client, job_id: str) -> None:
    log = upload_raw(client, job_id, b"1", kind="log", runId="r1", tag="os:linux").json()
    cov = upload_raw(client, job_id, b"2", kind="coverage", runId="r2", tag="os:linux").json()
    win = upload_raw(client, job_id, b"3", kind="log", runId="r2", tag="os:windows").json()

    def ids(**params: str) -> set[str]:
        r = client.get(f"/fleet/jobs/{job_id}/artifacts", params=params)
        assert r.status_code == 200, r.text
        return {item["id"] for item in r.json()["items"]}

    assert ids(kind="log") == {log["id"], win["id"]}
    assert ids(runId="r2") == {cov["id"], win["id"]}
    assert ids(tag="os:linux") == {log["id"], cov["id"]}
    assert ids(kind="log", tag="os:linux") == {log["id"]}
    assert ids(tag="os:mac") == set()


def test_list_rejects_a_forged_continuation_token(client: httpx.Client, job_id: str) -> None:
    r = client.get(f"/fleet/jobs/{job_id}/artifacts", params={"continuationToken": "not-a-token"})
    assert assert_problem(r, 400)["field"] == "continuationToken"
    assert_problem(client.get(f"/fleet/jobs/{job_id}/artifacts", params={"limit": 0}), 400)
    assert_problem(client.get(f"/fleet/jobs/{job_id}/artifacts", params={"kind": "movie"}), 400)


def test_a_continuation_token_reused_with_other_filters_is_400(client: httpx.Client, job_id: str) -> None:
    for n in range(2):
        assert upload_raw(client, job_id, b"x", runId="r1", fileName=f"{n}.log").status_code == 201
    first = client.get(f"/fleet/jobs/{job_id}/artifacts", params={"runId": "r1", "limit": 1}).json()
    token = first["continuationToken"]
    same = client.get(f"/fleet/jobs/{job_id}/artifacts", params={"runId": "r1", "continuationToken": token})
    assert same.status_code == 200 and len(same.json()["items"]) == 1
    other = client.get(f"/fleet/jobs/{job_id}/artifacts", params={"kind": "log", "continuationToken": token})
    assert assert_problem(other, 400)["field"] == "continuationToken"


# -- delete --------------------------------------------------------------------------------------


@pytest.mark.parametrize("scoped", [True, False])
async def test_delete_removes_pointer_and_blob(
    client: httpx.Client, settings: Settings, job_id: str, scoped: bool
) -> None:
    created = upload_raw(client, job_id, b"to be deleted").json()
    path = (
        f"/fleet/jobs/{job_id}/artifacts/{created['id']}" if scoped else f"/fleet/artifacts/{created['id']}"
    )
    assert client.delete(path).status_code == 204
    assert await blob_bytes(settings, created["blobKey"]) is None
    assert_problem(client.get(f"/fleet/artifacts/{created['id']}"), 404)
    assert_problem(client.delete(path), 404)
    assert httpx.get(created["downloadUrl"]).status_code == 404


# -- auth and isolation --------------------------------------------------------------------------


async def test_a_job_wide_delete_removes_what_it_names_and_can_be_repeated(
    client: httpx.Client, server: ThreadedServer, settings: Settings, job_id: str
) -> None:
    ids = [upload_raw(client, job_id, b"r1", runId="r1").json()["id"] for _ in range(3)]
    kept = upload_raw(client, job_id, b"r2", runId="r2").json()
    data = upload_raw(client, job_id, b"{}", kind="data", runId="r1", fileName="d.json").json()
    uploading = client.post(
        f"/fleet/jobs/{job_id}/artifacts/uploads", json={"kind": "log", "fileName": "u.log", "runId": "r1"}
    ).json()
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN_B}"}) as other:
        theirs = upload_raw(other, job_id, b"product b", runId="r1").json()  # same job, another product
        r = client.delete(f"/fleet/jobs/{job_id}/artifacts", params={"runId": "r1", "kind": "log"})
        assert r.status_code == 200 and r.json() == {"deleted": 4}  # three logs and the unfinished upload
        assert client.delete(
            f"/fleet/jobs/{job_id}/artifacts", params={"runId": "r1", "kind": "log"}
        ).json() == {"deleted": 0}
        listed = {item["id"] for item in client.get(f"/fleet/jobs/{job_id}/artifacts").json()["items"]}
        assert listed == {kept["id"], data["id"]}
        for artifact_id in [*ids, uploading["id"]]:
            assert_problem(client.get(f"/fleet/artifacts/{artifact_id}"), 404)
        assert other.get(f"/fleet/artifacts/{theirs['id']}").status_code == 200  # never another product's
        assert client.delete(f"/fleet/jobs/{job_id}/artifacts").json() == {"deleted": 2}
    assert await blob_names(settings, f"fleet/prod-a/{job_id}/") == []
    assert_problem(client.delete(f"/fleet/jobs/{job_id}/artifacts", params={"runId": "../x"}), 400)


def test_missing_or_wrong_token_is_401_with_challenge(server: ThreadedServer, job_id: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong-token-000000000"}, {"Authorization": "Basic abc"}):
        r = httpx.get(f"{server.url}/fleet/jobs/{job_id}/artifacts", headers=headers)
        assert_problem(r, 401)
        assert r.headers["www-authenticate"].startswith("Bearer")
    r = httpx.post(f"{server.url}/fleet/jobs/{job_id}/artifacts?kind=log&fileName=a", content=b"x")
    assert_problem(r, 401)
    # Refused before the body is parsed: malformed JSON still answers 401, not 400.
    for path in ("/uploads", f"/fleet/jobs/{job_id}/artifacts/uploads"):
        assert_problem(
            httpx.post(f"{server.url}{path}", content=b"{", headers={"Content-Type": "application/json"}), 401
        )


def test_health_and_docs_are_anonymous(server: ThreadedServer) -> None:
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
    spec = httpx.get(f"{server.url}/docs/openapi.json").json()
    assert "/fleet/jobs/{job_id}/artifacts" in spec["paths"]
    assert httpx.get(f"{server.url}/docs").status_code == 200


def test_the_docs_page_loads_everything_from_the_service(server: ThreadedServer) -> None:
    page = httpx.get(f"{server.url}/docs").text
    assets = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page)
    assert assets, page[:500]
    for asset in assets:  # no CDN: the page works on a machine with no internet access
        assert asset.startswith("/"), asset
        fetched = httpx.get(server.url + asset)
        assert fetched.status_code == 200 and len(fetched.content) > 1000, asset
    assert "http://" not in page and "https://" not in page.replace(server.url, "")


def test_the_openapi_document_says_what_each_operation_needs_and_answers(server: ThreadedServer) -> None:
    spec = httpx.get(f"{server.url}/docs/openapi.json").json()
    assert "security" not in spec  # no global requirement: each operation states its own
    operations = {
        op["operationId"]: op
        for item in spec["paths"].values()
        for op in item.values()
        if isinstance(op, dict)
    }
    for op_id, op in operations.items():
        needs_token = not op_id.startswith(
            ("health", "readiness", "getSignedBlob", "putSignedBlob", "followShare")
        )
        assert bool(op.get("security")) == needs_token, op_id
        for status, answer in op["responses"].items():
            if int(status) >= 400:
                assert "application/problem+json" in answer["content"], (op_id, status)
    upload = operations["uploadArtifact"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/vnd.fleet-artifact+json", "*/*"} <= set(upload)
    assert "application/octet-stream" in operations["sendUploadChunk"]["requestBody"]["content"]
    job_param = next(p for p in operations["listArtifacts"]["parameters"] if p["name"] == "job_id")
    assert job_param["schema"]["pattern"] and job_param["schema"]["maxLength"] == 128


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/no/such/route", 404),
        ("PUT", "/health", 405),
        ("GET", "/fleet/jobs/j/artifacts?limit=abc", 400),
    ],
)
def test_framework_errors_are_problems_of_the_same_shape(
    client: httpx.Client, method: str, path: str, status: int
) -> None:
    body = assert_problem(client.request(method, path), status)
    assert {"type", "title", "status", "detail", "instance"} <= set(body)
    if status == 400:
        assert body["field"] == "limit"
        assert body["invalidParams"] == [
            {"name": "limit", "reason": "Expected `int`, got `str`", "in": "query"}
        ]


def test_other_products_artifact_is_404(client: httpx.Client, server: ThreadedServer, job_id: str) -> None:
    created = upload_raw(client, job_id, b"product a only").json()
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN_B}"}) as other:
        assert_problem(other.get(f"/fleet/jobs/{job_id}/artifacts/{created['id']}"), 404)
        assert_problem(other.get(f"/fleet/artifacts/{created['id']}"), 404)
        assert_problem(other.delete(f"/fleet/artifacts/{created['id']}"), 404)
        assert other.get(f"/fleet/jobs/{job_id}/artifacts").json()["items"] == []
    assert client.get(f"/fleet/artifacts/{created['id']}").status_code == 200  # untouched


def test_unknown_id_is_404(client: httpx.Client, job_id: str) -> None:
    assert_problem(client.get(f"/fleet/jobs/{job_id}/artifacts/{'0' * 32}"), 404)
    assert_problem(client.get(f"/fleet/artifacts/{'0' * 32}"), 404)
    assert_problem(client.get("/no/such/route"), 404)


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"kind": "log", "fileName": "../etc/passwd"}, "fileName"),
        ({"kind": "log", "fileName": "a/b.txt"}, "fileName"),
        ({"kind": "log", "fileName": "a\\b.txt"}, "fileName"),
        ({"kind": "log", "fileName": ".."}, "fileName"),
        ({"kind": "log", "fileName": "bell\x07.txt"}, "fileName"),
        ({"kind": "log", "fileName": "x" * 256}, "fileName"),
        ({"kind": "log", "fileName": "a", "runId": "../r"}, "runId"),
        ({"kind": "log", "fileName": "a", "runId": "r/1"}, "runId"),
        ({"kind": "log", "fileName": "a", "tag": "a/b:c"}, "tags"),
        ({"kind": "log", "fileName": "a", "tag": "novalue"}, "tag"),
        ({"kind": "movie", "fileName": "a"}, "kind"),
        ({"fileName": "a"}, "kind"),
        ({"kind": "log"}, "fileName"),
        ({"kind": "log", "fileName": "a", "contentType": "not a type"}, "contentType"),
        ({"kind": "log", "fileName": "a", "tags": "os:linux"}, "tags"),  # the parameter is `tag`
        ({"kind": "log", "fileName": "a", "colour": "red"}, "colour"),
    ],
)
async def test_invalid_metadata_is_400_and_stores_nothing(
    client: httpx.Client, settings: Settings, job_id: str, params: dict[str, str], field: str
) -> None:
    r = client.post(f"/fleet/jobs/{job_id}/artifacts", params=params, content=b"payload")
    assert assert_problem(r, 400)["field"] == field
    assert client.get(f"/fleet/jobs/{job_id}/artifacts").json()["items"] == []
    assert await blob_names(settings, f"fleet/prod-a/{job_id}/") == []


async def test_a_form_encoded_body_is_refused_with_a_hint(
    client: httpx.Client, settings: Settings, job_id: str
) -> None:
    r = client.post(
        f"/fleet/jobs/{job_id}/artifacts",
        params={"kind": "log", "fileName": "a.log"},
        content=b"line one&line two",  # what `curl -d @a.log` sends
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert "--data-binary" in str(assert_problem(r, 415)["detail"])
    assert await blob_names(settings, f"fleet/prod-a/{job_id}/") == []


def test_fields_after_the_file_part_are_named_in_the_error(client: httpx.Client, job_id: str) -> None:
    r = client.post(
        f"/fleet/jobs/{job_id}/artifacts",
        content=multipart_body([("file", b"data", "a.txt"), ("kind", b"log", None)]),
        headers={"Content-Type": "multipart/form-data; boundary=b0undary"},
    )
    assert "before the file part" in str(assert_problem(r, 400)["detail"])


@pytest.mark.parametrize(
    ("file_name", "expected"),
    [
        ("report.json", "application/json"),
        ("run.log", "text/plain"),
        ("dist.tar.gz", "application/gzip"),
        ("LICENSE", "application/octet-stream"),
    ],
)
def test_a_missing_content_type_is_guessed_from_the_file_name(
    client: httpx.Client, job_id: str, file_name: str, expected: str
) -> None:
    raw = client.post(  # no Content-Type header at all
        f"/fleet/jobs/{job_id}/artifacts", params={"kind": "data", "fileName": file_name}, content=b"{}"
    )
    assert raw.status_code == 201, raw.text
    assert raw.json()["contentType"] == expected
    part = client.post(  # a file part without its own Content-Type
        f"/fleet/jobs/{job_id}/artifacts",
        content=multipart_body([("kind", b"data", None), ("file", b"{}", file_name)]),
        headers={"Content-Type": "multipart/form-data; boundary=b0undary"},
    )
    assert part.status_code == 201, part.text
    assert part.json()["contentType"] == expected
    envelope = client.post(
        f"/fleet/jobs/{job_id}/artifacts",
        json={"kind": "data", "fileName": file_name, "content": "e30="},
        headers={"Content-Type": "application/vnd.fleet-artifact+json"},
    )
    assert envelope.status_code == 201, envelope.text
    assert envelope.json()["contentType"] == expected


def test_traversal_job_ids_are_400(client: httpx.Client) -> None:
    # Sent raw: the server decodes them into the path parameter ('..' itself never leaves httpx).
    for bad_job in ("%2e%2e", "a..b", "x" * 129, "j%00b", "a%5Cb", "a%0Ab", "-lead"):
        for method in ("GET", "POST"):
            r = client.request(
                method,
                httpx.URL(f"/fleet/jobs/{bad_job}/artifacts"),
                params={"kind": "log", "fileName": "a"},
                content=b"x",
            )
            assert assert_problem(r, 400)["field"] == "jobId", bad_job


async def test_encoded_slash_in_job_id_never_stores(client: httpx.Client, settings: Settings) -> None:
    r = client.post(
        httpx.URL("/fleet/jobs/a%2F..%2Fb/artifacts"), params={"kind": "log", "fileName": "a"}, content=b"x"
    )
    assert r.status_code in (400, 404), r.text  # a decoded '/' may not even route
    assert r.headers["content-type"].startswith("application/problem+json")
    assert await blob_names(settings, "fleet/") == [] or all(
        "/../" not in name and "%2F" not in name for name in await blob_names(settings, "fleet/")
    )


def test_traversal_artifact_ids_are_400(client: httpx.Client, job_id: str) -> None:
    for bad_id in ("%2e%2e", "a..b", "x" * 129, "j%00b"):
        assert (
            assert_problem(client.get(httpx.URL(f"/fleet/artifacts/{bad_id}")), 400)["field"] == "artifactId"
        )
        r = client.get(httpx.URL(f"/fleet/jobs/{job_id}/artifacts/{bad_id}"))
        assert assert_problem(r, 400)["field"] == "artifactId"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/vnd.fleet-artifact+json", b"{not json"),
        ("application/vnd.fleet-artifact+json", b'{"kind":"log","fileName":"a","content":"***"}'),
        ("application/vnd.fleet-artifact+json", b'{"kind":"log","content":"aGk="}'),
        ("application/vnd.fleet-artifact+json", b'{"kind":"log","fileName":"a","content":"aGk=","x":1}'),
        (
            "multipart/form-data; boundary=xyz",
            b'--xyz\r\nContent-Disposition: form-data; name="kind"\r\n\r\nlog',
        ),
        ("multipart/form-data", b"no boundary"),
    ],
)
async def test_invalid_bodies_are_400_and_store_nothing(
    client: httpx.Client, settings: Settings, job_id: str, content_type: str, body: bytes
) -> None:
    r = client.post(f"/fleet/jobs/{job_id}/artifacts", content=body, headers={"Content-Type": content_type})
    assert_problem(r, 400)
    assert client.get(f"/fleet/jobs/{job_id}/artifacts").json()["items"] == []
    assert await blob_names(settings, f"fleet/prod-a/{job_id}/") == []


def multipart_body(parts: list[tuple[str, bytes, str | None]], boundary: str = "b0undary") -> bytes:
    out = b""
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


@pytest.mark.parametrize(
    "parts",
    [
        [("file", b"data", "a.txt"), ("kind", b"log", None)],  # fields after the file
        [("kind", b"log", None), ("colour", b"red", None), ("file", b"d", "a.txt")],  # unknown field
        [("kind", b"log", None), ("kind", b"build", None), ("file", b"d", "a.txt")],  # repeated field
        [("kind", b"log", None), ("fileName", b"../x", None), ("file", b"d", "a.txt")],
        [("kind", b"log", None)],  # no file part
    ],
)
async def test_malformed_multipart_is_400_and_commits_nothing(
    client: httpx.Client, settings: Settings, job_id: str, parts: list[tuple[str, bytes, str | None]]
) -> None:
    r = client.post(
        f"/fleet/jobs/{job_id}/artifacts",
        content=multipart_body(parts),
        headers={"Content-Type": "multipart/form-data; boundary=b0undary"},
    )
    assert_problem(r, 400)
    await asyncio.sleep(0)
    assert await blob_names(settings, f"fleet/prod-a/{job_id}/") == []
    assert client.get(f"/fleet/jobs/{job_id}/artifacts").json()["items"] == []


def test_metadata_in_query_with_a_body_form_is_ambiguous_400(client: httpx.Client, job_id: str) -> None:
    r = client.post(
        f"/fleet/jobs/{job_id}/artifacts",
        params={"kind": "log"},
        files={"file": ("a.txt", b"x", "text/plain")},
        data={"kind": "log"},
    )
    assert_problem(r, 400)


# -- size limit ----------------------------------------------------------------------------------


async def test_over_limit_upload_is_413_and_leaves_nothing(
    client: httpx.Client, settings: Settings, job_id: str
) -> None:
    limit = settings.max_upload_bytes
    # Declared length over the limit: refused before any body byte is sent (raw socket, since
    # httpx will not announce a length it does not send).
    port = httpx.URL(str(client.base_url)).port
    assert port is not None
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            f"POST /fleet/jobs/{job_id}/artifacts?kind=log&fileName=a HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: {client.headers['authorization']}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {limit + 1}\r\n\r\n".encode()
        )
        head = sock.recv(65536).decode(errors="replace")
    assert head.startswith("HTTP/1.1 413"), head
    assert "application/problem+json" in head

    # Streamed (chunked) past the limit: refused as soon as it crosses.
    chunk = b"\0" * (1024 * 1024)
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        while sent <= limit + 8 * len(chunk):
            sent += len(chunk)
            yield chunk

    try:
        r = client.post(
            f"/fleet/jobs/{job_id}/artifacts",
            params={"kind": "log", "fileName": "b"},
            headers={"Content-Type": "text/plain"},
            content=body(),
            timeout=120,
        )
        assert_problem(r, 413)
    except httpx.TransportError:
        pass  # the server may close the connection while the client still sends; both refuse
    # multipart: the file part crosses the limit
    r = client.post(
        f"/fleet/jobs/{job_id}/artifacts",
        data={"kind": "log"},
        files={"file": ("c.bin", b"\0" * (limit + 1), "application/octet-stream")},
        timeout=120,
    )
    assert_problem(r, 413)
    assert client.get(f"/fleet/jobs/{job_id}/artifacts").json()["items"] == []
    assert await blob_names(settings, f"fleet/prod-a/{job_id}/") == []


async def test_over_limit_envelope_is_413(client: httpx.Client, settings: Settings, job_id: str) -> None:
    big = base64.b64encode(b"\0" * settings.max_envelope_bytes).decode()
    body = json.dumps({"kind": "log", "fileName": "a", "content": big})
    r = client.post(
        f"/fleet/jobs/{job_id}/artifacts",
        content=body,
        headers={"Content-Type": "application/vnd.fleet-artifact+json"},
    )
    assert_problem(r, 413)
    assert await blob_names(settings, f"fleet/prod-a/{job_id}/") == []


async def test_unencodable_file_name_in_envelope_is_400(client: httpx.Client, job_id: str) -> None:
    body = '{"kind": "log", "fileName": "a\\udc00.txt", "content": "aGk="}'  # lone surrogate
    r = client.post(
        f"/fleet/jobs/{job_id}/artifacts",
        content=body,
        headers={"Content-Type": "application/vnd.fleet-artifact+json"},
    )
    assert_problem(r, 400)  # msgspec refuses the lone surrogate as malformed JSON
    r = client.post(
        f"/fleet/jobs/{job_id}/artifacts",
        data={"kind": "log", "fileName": "a\ufdd0"},
        files={"file": ("x", b"hi", "text/plain")},
    )  # a noncharacter, via multipart
    assert assert_problem(r, 400)["field"] == "fileName"
