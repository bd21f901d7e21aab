"""Resumable upload sessions: chunks in any order, retries, a restart in the middle, abort."""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest

from fleet_artifacts.app import create_app
from fleet_artifacts.settings import Settings
from tests.conftest import TOKEN_A, TOKEN_B, make_settings
from tests.helpers import assert_problem, blob_names
from tests.servers import Azurite, ThreadedServer

DATA = secrets.token_bytes(1_000_003)


def open_session(client: httpx.Client, job_id: str, **fields: Any) -> dict[str, Any]:
    body = {
        "jobId": job_id,
        "kind": "build",
        "fileName": "big.tar",
        "contentType": "application/x-tar",
        **fields,
    }
    r = client.post("/uploads", json=body)
    assert r.status_code == 201, r.text
    session: dict[str, Any] = r.json()
    return session


def send(
    client: httpx.Client,
    session: dict[str, Any],
    first: int,
    last: int,
    *,
    data: bytes = DATA,
    total: int | str = len(DATA),
) -> httpx.Response:
    return client.patch(
        f"/uploads/{session['id']}",
        content=data[first : last + 1],
        headers={"Content-Range": f"bytes {first}-{last}/{total}"},
    )


def download(client: httpx.Client, artifact: dict[str, Any]) -> bytes:
    return client.get(f"/fleet/artifacts/{artifact['id']}/content").content


async def test_chunks_out_of_order_and_repeated_complete_byte_exact(
    client: httpx.Client, settings: Settings, job_id: str
) -> None:
    session = open_session(client, job_id, runId="r9", tags={"os": "linux"})
    assert session["url"].endswith(f"/uploads/{session['id']}") and session["missing"] == []
    assert session["totalBytes"] is None
    cuts = [(600_000, 1_000_002), (0, 299_999), (300_000, 599_999)]
    for first, last in cuts:
        r = send(client, session, first, last)
        assert r.status_code == 200, r.text
    again = send(client, session, 0, 299_999)  # a retried chunk, same bytes: fine
    assert again.status_code == 200 and again.json()["receivedBytes"] == len(DATA)
    progress = client.get(f"/uploads/{session['id']}").json()
    assert progress["missing"] == [] and progress["totalBytes"] == len(DATA)
    assert client.get(f"/fleet/jobs/{job_id}/artifacts").json()["items"] == []  # nothing before complete
    done = client.post(f"/uploads/{session['id']}/complete")
    assert done.status_code == 201, done.text
    artifact = done.json()
    assert artifact["id"] == session["artifactId"] and artifact["status"] == "ACTIVE"
    assert artifact["sha256"] == hashlib.sha256(DATA).hexdigest() and artifact["sizeBytes"] == len(DATA)
    assert artifact["runId"] == "r9" and artifact["tags"] == {"os": "linux"}
    assert download(client, artifact) == DATA
    assert httpx.get(artifact["downloadUrl"]).content == DATA
    assert client.post(f"/uploads/{session['id']}/complete").status_code in (
        201,
        404,
    )  # a retry never duplicates
    assert [i["id"] for i in client.get(f"/fleet/jobs/{job_id}/artifacts").json()["items"]] == [
        artifact["id"]
    ]


def test_progress_lists_missing_ranges_and_complete_refuses_gaps(client: httpx.Client, job_id: str) -> None:
    session = open_session(client, job_id, sizeBytes=len(DATA))
    send(client, session, 100, 199)
    send(client, session, 500, 999)
    progress = client.get(f"/uploads/{session['id']}").json()
    assert progress["receivedBytes"] == 600
    assert progress["missing"] == [[0, 99], [200, 499], [1000, len(DATA) - 1]]
    r = client.post(f"/uploads/{session['id']}/complete")
    assert_problem(r, 409)
    assert "0-99" in r.json()["detail"]


def test_conflicting_chunks_are_409(client: httpx.Client, job_id: str) -> None:
    session = open_session(client, job_id)
    assert send(client, session, 0, 999).status_code == 200
    other = bytes(b ^ 0xFF for b in DATA)
    assert_problem(send(client, session, 0, 999, data=other), 409)  # same range, other bytes
    assert_problem(send(client, session, 500, 1499), 409)  # partial overlap
    assert_problem(send(client, session, 1000, 1999, total=len(DATA) + 1), 409)  # another total
    assert client.get(f"/uploads/{session['id']}").json()["receivedBytes"] == 1000


@pytest.mark.parametrize(
    ("content_range", "body", "status"),
    [
        (None, b"x", 400),
        ("bytes 0-9/*", b"short", 400),  # body shorter than the range
        ("bytes 9-0/10", b"x", 400),
        ("bytes 0-9/5", b"0123456789", 400),
        ("items 0-9/10", b"0123456789", 400),
        (f"bytes 0-9/{10**13}", b"0123456789", 413),
    ],
)
def test_bad_chunks_are_refused(
    client: httpx.Client, job_id: str, content_range: str | None, body: bytes, status: int
) -> None:
    session = open_session(client, job_id)
    headers = {"Content-Range": content_range} if content_range else {}
    assert_problem(client.patch(f"/uploads/{session['id']}", content=body, headers=headers), status)
    assert client.get(f"/uploads/{session['id']}").json()["receivedBytes"] == 0


async def test_abort_leaves_nothing(client: httpx.Client, settings: Settings, job_id: str) -> None:
    session = open_session(client, job_id)
    send(client, session, 0, 99_999)
    assert client.delete(f"/uploads/{session['id']}").status_code == 204
    assert_problem(client.get(f"/uploads/{session['id']}"), 404)
    assert_problem(send(client, session, 100_000, 199_999), 404)
    assert_problem(client.post(f"/uploads/{session['id']}/complete"), 404)
    assert await blob_names(settings, f"fleet/prod-a/{job_id}/") == []
    if settings.blob_backend == "local":
        key = f"fleet/prod-a/{job_id}/{session['artifactId']}-build"
        assert not (settings.data_dir / "staging" / hashlib.sha256(key.encode()).hexdigest()).exists()


def test_sessions_are_private_and_ids_are_checked(client: httpx.Client, server_url: str, job_id: str) -> None:
    session = open_session(client, job_id)
    with httpx.Client(base_url=server_url, headers={"Authorization": f"Bearer {TOKEN_B}"}) as other:
        assert_problem(other.get(f"/uploads/{session['id']}"), 404)
        assert_problem(send(other, session, 0, 9), 404)
        assert_problem(other.delete(f"/uploads/{session['id']}"), 404)
    assert_problem(httpx.get(f"{server_url}/uploads/{session['id']}"), 401)
    for bogus in ("nope", "Li4.us-" + "0" * 32, session["id"][:-1] + "x", "%2e%2e"):
        assert_problem(client.get(httpx.URL(f"/uploads/{bogus}")), 404)
    assert_problem(client.post("/uploads", json={"jobId": "../x", "kind": "log", "fileName": "a"}), 400)
    assert_problem(
        client.post("/uploads", json={"jobId": job_id, "kind": "log", "fileName": "a", "sizeBytes": 10**13}),
        413,
    )


def test_open_is_idempotent(client: httpx.Client, job_id: str) -> None:
    body = {"jobId": job_id, "kind": "log", "fileName": "a.log"}
    first = client.post("/uploads", json=body, headers={"Idempotency-Key": "open-1"})
    again = client.post("/uploads", json=body, headers={"Idempotency-Key": "open-1"})
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"] and again.headers["idempotent-replayed"] == "true"


@pytest.mark.parametrize("blob_backend", ["azure", "local"])
async def test_a_session_survives_a_restart_of_the_service(
    request: pytest.FixtureRequest, tmp_path: Path, blob_backend: str
) -> None:
    azurite: Azurite | None = request.getfixturevalue("azurite") if blob_backend == "azure" else None
    settings = make_settings(azurite, tmp_path)
    headers = {"Authorization": f"Bearer {TOKEN_A}"}
    before = ThreadedServer(create_app(settings)).start()
    with httpx.Client(base_url=before.url, headers=headers) as c:
        session = open_session(c, "job-restart", sizeBytes=len(DATA))
        send(c, session, 500_000, len(DATA) - 1)
    before.stop()  # the service goes away with half the bytes staged

    after = ThreadedServer(create_app(settings)).start()
    try:
        with httpx.Client(base_url=after.url, headers=headers) as c:
            assert c.get(f"/uploads/{session['id']}").json()["missing"] == [[0, 499_999]]
            send(c, session, 0, 499_999)
            artifact = c.post(f"/uploads/{session['id']}/complete").json()
            assert download(c, artifact) == DATA
    finally:
        after.stop()


async def test_gc_drops_expired_sessions_and_their_staged_bytes(
    client: httpx.Client, settings: Settings, job_id: str
) -> None:
    from datetime import timedelta

    from fleet_artifacts.app import open_stores
    from fleet_artifacts.core.clock import utcnow
    from fleet_artifacts.core.gc import sweep_expired_keys, sweep_expired_sessions
    from fleet_artifacts.core.kernel import Kernel

    session = open_session(client, job_id)
    send(client, session, 0, 99_999)
    keyed = client.post(
        f"/fleet/jobs/{job_id}/artifacts",
        params={"kind": "log", "fileName": "k.log"},
        content=b"once",
        headers={"Idempotency-Key": "sweep-me"},
    ).json()
    key = f"fleet/prod-a/{job_id}/{session['artifactId']}-build"
    staging = settings.data_dir / "staging" / hashlib.sha256(key.encode()).hexdigest()
    async with open_stores(settings) as (blobs, pointers):
        assert key not in await sweep_expired_sessions(Kernel(blobs, pointers), now=utcnow())  # none yet
        later = utcnow() + timedelta(seconds=settings.session_ttl_seconds + 60)
        later = max(later, utcnow() + timedelta(seconds=settings.idempotency_retention_seconds + 60))
        assert key in await sweep_expired_sessions(Kernel(blobs, pointers), now=later)
        assert await sweep_expired_keys(Kernel(blobs, pointers), now=later)  # ours among them
    assert_problem(client.get(f"/uploads/{session['id']}"), 404)
    if settings.blob_backend == "local":
        assert not staging.exists()
    # The idempotency key is free again: the same key now makes a new artifact.
    again = client.post(
        f"/fleet/jobs/{job_id}/artifacts",
        params={"kind": "log", "fileName": "k.log"},
        content=b"once",
        headers={"Idempotency-Key": "sweep-me"},
    )
    assert again.status_code == 201 and "idempotent-replayed" not in again.headers
    assert again.json()["id"] != keyed["id"]
