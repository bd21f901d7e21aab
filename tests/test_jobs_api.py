"""Jobs as a whole over HTTP, on the three backend variants: listing, manifest, seal and the event feed."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from typing import Any

import cbor2
import httpx
import rfc8785

from tests.conftest import TOKEN_B
from tests.helpers import assert_problem, upload_raw


def _upload(
    client: httpx.Client, job: str, data: bytes, name: str = "out.log", **params: str
) -> dict[str, Any]:
    response = upload_raw(client, job, data, fileName=name, **params)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _events(client: httpx.Client, **params: str | int | None) -> dict[str, Any]:
    response = client.get("/fleet/events", params={k: v for k, v in params.items() if v is not None})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _drain(
    client: httpx.Client, since: str | None, job: str | None, limit: int = 2
) -> tuple[list[dict[str, Any]], str]:
    seen: list[dict[str, Any]] = []
    while True:
        page = _events(client, since=since, jobId=job, limit=limit)
        items = page["items"]
        assert isinstance(items, list)
        seen += items
        since = str(page["next"])
        if not items:
            return seen, since


def test_jobs_are_listed_newest_activity_first_with_totals(client: httpx.Client, job_id: str) -> None:
    other = job_id + "-b"
    _upload(client, job_id, b"x" * 10)
    _upload(client, other, b"y" * 5)
    gone = _upload(client, job_id, b"z" * 7)
    listed = client.get("/fleet/jobs", params={"limit": 1000}).json()
    by_id = {item["jobId"]: item for item in listed["items"]}
    assert by_id[job_id]["artifactCount"] == 2 and by_id[job_id]["totalBytes"] == 17
    assert by_id[other]["artifactCount"] == 1 and by_id[job_id]["sealed"] is False
    order = [item["jobId"] for item in listed["items"]]
    assert order.index(job_id) < order.index(other)  # job_id had the last upload
    assert client.delete(f"/fleet/jobs/{job_id}/artifacts/{gone['id']}").status_code == 204
    again = {i["jobId"]: i for i in client.get("/fleet/jobs", params={"limit": 1000}).json()["items"]}
    assert (again[job_id]["artifactCount"], again[job_id]["totalBytes"]) == (1, 10)
    first = client.get("/fleet/jobs", params={"limit": 1}).json()
    assert len(first["items"]) == 1 and first["continuationToken"]
    second = client.get("/fleet/jobs", params={"limit": 1, "continuationToken": first["continuationToken"]})
    assert second.status_code == 200 and second.json()["items"][0]["jobId"] != first["items"][0]["jobId"]
    as_b = client.get("/fleet/jobs", headers={"Authorization": f"Bearer {TOKEN_B}"}).json()
    assert job_id not in [item["jobId"] for item in as_b["items"]]  # another product's jobs stay hidden
    assert_problem(client.get("/fleet/jobs", params={"continuationToken": "nonsense"}), 400)
    assert_problem(client.get("/fleet/jobs", params={"limit": 0}), 400)


def test_the_manifest_is_canonical_with_a_stable_digest(client: httpx.Client, job_id: str) -> None:
    made = [_upload(client, job_id, f"line {n}\n".encode(), f"f{n}.log", runId="r1") for n in range(3)]
    first = client.get(f"/fleet/jobs/{job_id}/manifest")
    assert first.status_code == 200 and first.headers["content-type"].startswith("application/json")
    body = first.content
    assert rfc8785.dumps(json.loads(body)) == body  # canonical JSON, byte for byte
    etag = first.headers["etag"]
    assert etag == '"' + hashlib.sha256(body).hexdigest() + '"'
    manifest = json.loads(body)
    assert manifest["jobId"] == job_id and manifest["sealed"] is False
    assert [a["id"] for a in manifest["artifacts"]] == [m["id"] for m in made]  # oldest first
    entry = manifest["artifacts"][0]
    assert set(entry) == {
        "id",
        "fileName",
        "kind",
        "runId",
        "sizeBytes",
        "sha256",
        "contentType",
        "createdAt",
    }
    assert entry["sha256"] == hashlib.sha256(b"line 0\n").hexdigest()
    assert client.get(f"/fleet/jobs/{job_id}/manifest").headers["etag"] == etag  # stable
    unchanged = client.get(f"/fleet/jobs/{job_id}/manifest", headers={"If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.content == b"" and unchanged.headers["etag"] == etag

    as_cbor = client.get(f"/fleet/jobs/{job_id}/manifest", headers={"Accept": "application/cbor"})
    assert as_cbor.status_code == 200 and as_cbor.headers["content-type"] == "application/cbor"
    assert cbor2.loads(as_cbor.content) == manifest
    assert cbor2.dumps(cbor2.loads(as_cbor.content), canonical=True) == as_cbor.content
    assert as_cbor.headers["x-job-digest"] == first.headers["x-job-digest"] == "sha256:" + etag.strip('"')
    assert as_cbor.headers["etag"] != etag  # another representation, another strong tag

    assert client.delete(f"/fleet/jobs/{job_id}/artifacts/{made[1]['id']}").status_code == 204
    after = client.get(f"/fleet/jobs/{job_id}/manifest", headers={"If-None-Match": etag})
    assert after.status_code == 200 and after.headers["etag"] != etag
    assert [a["id"] for a in after.json()["artifacts"]] == [made[0]["id"], made[2]["id"]]
    assert_problem(client.get(f"/fleet/jobs/{job_id}-never/manifest"), 404)
    other = client.get(f"/fleet/jobs/{job_id}/manifest", headers={"Authorization": f"Bearer {TOKEN_B}"})
    assert_problem(other, 404)


def test_a_sealed_job_refuses_every_create_path(client: httpx.Client, job_id: str) -> None:
    kept = _upload(client, job_id, b"kept")
    started = client.post(
        f"/fleet/jobs/{job_id}/artifacts/uploads", json={"kind": "build", "fileName": "big.bin"}
    )
    assert started.status_code == 201, started.text
    sealed = client.post(f"/fleet/jobs/{job_id}/seal")
    assert sealed.status_code == 200, sealed.text
    assert sealed.json()["sealed"] is True
    before = client.get(f"/fleet/jobs/{job_id}/manifest")
    assert before.json()["sealed"] is True

    path = f"/fleet/jobs/{job_id}/artifacts"
    attempts = [
        upload_raw(client, job_id, b"late"),
        client.post(path, files={"file": ("late.txt", b"late", "text/plain")}, data={"kind": "log"}),
        client.post(
            path,
            content=json.dumps({"kind": "data", "fileName": "x.json", "content": "e30="}),
            headers={"Content-Type": "application/vnd.fleet-artifact+json"},
        ),
        client.post(f"{path}/uploads", json={"kind": "build", "fileName": "late.bin"}),
        client.post("/uploads", json={"jobId": job_id, "kind": "build", "fileName": "late.tar"}),
    ]
    for response in attempts:
        problem = assert_problem(response, 409)
        assert "sealed" in str(problem["detail"])
    # The upload started before the seal cannot finish into the sealed job either.
    ticket = started.json()
    put = httpx.put(
        ticket["uploadUrl"]
        if ticket["uploadUrl"].startswith("http")
        else str(client.base_url) + ticket["uploadUrl"],
        content=b"bytes",
        headers=ticket["uploadHeaders"],
    )
    assert put.status_code == 201, put.text
    assert_problem(client.post(f"{path}/{ticket['id']}/finalize", json={"sizeBytes": 5}), 409)
    after = client.get(f"/fleet/jobs/{job_id}/manifest")
    assert after.content == before.content and after.headers["etag"] == before.headers["etag"]

    again = client.post(f"/fleet/jobs/{job_id}/seal")
    assert again.status_code == 200 and again.json()["sealedAt"] == sealed.json()["sealedAt"]
    assert client.delete(f"{path}/{kept['id']}").status_code == 204  # deleting still works
    shrunk = client.get(f"/fleet/jobs/{job_id}/manifest").json()
    assert shrunk["artifacts"] == [] and shrunk["sealed"] is True
    listed = {i["jobId"]: i for i in client.get("/fleet/jobs", params={"limit": 1000}).json()["items"]}
    assert listed[job_id]["sealed"] is True


def test_the_event_feed_resumes_exactly_once_and_long_polls(client: httpx.Client, job_id: str) -> None:
    start = _events(client, jobId=job_id)
    assert start["items"] == []
    a = _upload(client, job_id, b"a")
    b = _upload(client, job_id, b"bb")
    assert client.delete(f"/fleet/jobs/{job_id}/artifacts/{a['id']}").status_code == 204
    assert client.post(f"/fleet/jobs/{job_id}/seal").status_code == 200
    seen, cursor = _drain(client, None, job_id)
    assert [(e["type"], e["artifactId"]) for e in seen] == [
        ("artifact.created", a["id"]),
        ("artifact.created", b["id"]),
        ("artifact.deleted", a["id"]),
        ("job.sealed", None),
    ]
    created = seen[1]
    assert created["artifact"]["sizeBytes"] == 2 and created["jobId"] == job_id
    resumed = _events(client, since=str(seen[1]["cursor"]), jobId=job_id)
    assert [e["type"] for e in resumed["items"]] == ["artifact.deleted", "job.sealed"]

    # A cursor resumes the feed it came from (the same jobId filter): the whole product's, here.
    _, cursor = _drain(client, None, None, limit=1000)
    later = job_id + "-later"
    threading.Timer(1.0, lambda: _upload(client, later, b"late")).start()
    t0 = time.monotonic()
    waited = _events(client, since=cursor, wait=10)
    took = time.monotonic() - t0
    items = waited["items"]
    assert isinstance(items, list) and [e["jobId"] for e in items] == [later]
    assert 0.5 < took < 9  # answered when the event came, not at the end of the wait
    as_cbor = client.get("/fleet/events", params={"since": cursor}, headers={"Accept": "application/cbor"})
    assert as_cbor.headers["content-type"] == "application/cbor"
    assert cbor2.loads(as_cbor.content)["items"][0]["jobId"] == later
    as_b = client.get("/fleet/events", headers={"Authorization": f"Bearer {TOKEN_B}"})
    assert later not in [e["jobId"] for e in as_b.json()["items"]]
    assert_problem(client.get("/fleet/events", params={"wait": 31}), 400)
    assert_problem(client.get("/fleet/events", params={"since": "not-a-cursor!"}), 400)
