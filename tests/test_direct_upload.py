"""Direct-to-blob uploads: start, write with azure-storage-blob's own client, finalize; and gc."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobClient

from fleet_artifacts.app import open_stores
from fleet_artifacts.core.clock import utcnow
from fleet_artifacts.core.gc import sweep_orphan_blobs, sweep_stale_uploads
from fleet_artifacts.core.kernel import Kernel
from fleet_artifacts.settings import Settings
from tests.conftest import TOKEN_B
from tests.helpers import assert_problem, blob_bytes, blob_names, finalize, start, write


async def test_direct_upload_then_finalize_is_active_and_downloadable(
    client: httpx.Client, settings: Settings, job_id: str
) -> None:
    data = secrets.token_bytes(200_000)
    ticket = start(client, job_id, runId="r1", tags={"os": "linux"})
    assert ticket["status"] == "UPLOADING" and ticket["uploadUrl"].startswith("http")
    assert ticket["expiresAt"] == ticket["uploadUrlExpiresAt"]
    # No digest is known yet, and none is claimed to be verified.
    assert ticket["sha256"] is None and ticket["sha256Verified"] is False
    # Not offered while uploading: neither fetched nor listed.
    assert_problem(client.get(f"/fleet/jobs/{job_id}/artifacts/{ticket['id']}"), 404)
    assert client.get(f"/fleet/jobs/{job_id}/artifacts").json()["items"] == []

    write(ticket["uploadUrl"], data)
    r = finalize(client, ticket, data)
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["status"] == "ACTIVE" and done["sha256Verified"] is True
    # Finalized, the deadline gives way to the retention (30 days from the start, by default).
    assert datetime.fromisoformat(done["expiresAt"]) - datetime.fromisoformat(done["createdAt"]) == timedelta(
        days=30
    )
    assert done["sizeBytes"] == len(data) and done["tags"] == {"os": "linux"}
    assert httpx.get(done["downloadUrl"]).content == data
    assert await blob_bytes(settings, done["blobKey"]) == data
    listed = client.get(f"/fleet/jobs/{job_id}/artifacts").json()["items"]
    assert [item["id"] for item in listed] == [ticket["id"]]
    # A retried finalize with the same claim answers the same artifact; another claim conflicts.
    assert finalize(client, ticket, data).json()["id"] == ticket["id"]
    assert_problem(finalize(client, ticket, data + b"x"), 409)


def test_single_put_upload_works_too(client: httpx.Client, job_id: str) -> None:
    data = b"small build log\n" * 10
    ticket = start(client, job_id)
    write(ticket["uploadUrl"], data, blocks=False)
    assert finalize(client, ticket, data).json()["status"] == "ACTIVE"


@pytest.mark.parametrize("size", [100, 300 * 1024])  # below and above the suite's VERIFY_MAX_BYTES
def test_a_plain_put_with_the_ticket_headers_and_a_finalize_without_digest(
    client: httpx.Client, job_id: str, size: int
) -> None:
    data = secrets.token_bytes(size)
    ticket = start(client, job_id, contentType="application/gzip")
    assert ticket["uploadHeaders"] == {
        "x-ms-blob-type": "BlockBlob",
        "x-ms-blob-content-type": "application/gzip",
    }
    put = httpx.put(ticket["uploadUrl"], content=data, headers=ticket["uploadHeaders"], timeout=60)  # curl -T
    assert put.status_code == 201, put.text
    r = client.post(f"/fleet/jobs/{job_id}/artifacts/{ticket['id']}/finalize", json={"sizeBytes": size})
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["sha256"] == hashlib.sha256(data).hexdigest() and done["sha256Verified"] is True
    got = httpx.get(done["downloadUrl"], timeout=60)
    assert got.content == data and got.headers["content-type"] == "application/gzip"
    again = client.post(f"/fleet/jobs/{job_id}/artifacts/{ticket['id']}/finalize", json={"sizeBytes": size})
    assert again.status_code == 200 and again.json()["id"] == ticket["id"]  # a retried finalize


@pytest.mark.parametrize("lie", ["size", "sha256"])
async def test_a_wrong_claim_is_422_and_leaves_no_blob(
    client: httpx.Client, settings: Settings, job_id: str, lie: str
) -> None:
    data = secrets.token_bytes(100_000)
    ticket = start(client, job_id)
    write(ticket["uploadUrl"], data)
    body = {
        "sizeBytes": len(data) + (1 if lie == "size" else 0),
        "sha256": hashlib.sha256(b"other").hexdigest(),
    }
    if lie == "size":
        body["sha256"] = hashlib.sha256(data).hexdigest()
    r = client.post(f"/fleet/jobs/{job_id}/artifacts/{ticket['id']}/finalize", json=body)
    assert_problem(r, 422)
    assert await blob_names(settings, ticket["blobKey"]) == []
    assert_problem(finalize(client, ticket, data), 404)  # the upload is gone: start over


def test_large_blob_keeps_the_claimed_digest_unless_verify(client: httpx.Client, job_id: str) -> None:
    data = secrets.token_bytes(300 * 1024)  # above the suite's VERIFY_MAX_BYTES of 256 KiB
    claimed = start(client, job_id)
    write(claimed["uploadUrl"], data)
    r = finalize(client, claimed, data)
    assert r.json()["sha256Verified"] is False and r.json()["sha256"] == hashlib.sha256(data).hexdigest()

    lying = start(client, job_id)
    write(lying["uploadUrl"], data)
    body = {"sizeBytes": len(data), "sha256": "0" * 64, "verify": True}
    assert_problem(client.post(f"/fleet/jobs/{job_id}/artifacts/{lying['id']}/finalize", json=body), 422)

    verified = start(client, job_id)
    write(verified["uploadUrl"], data)
    assert finalize(client, verified, data, verify=True).json()["sha256Verified"] is True


def test_write_url_cannot_read_or_touch_another_blob(client: httpx.Client, job_id: str) -> None:
    ticket = start(client, job_id)
    write(ticket["uploadUrl"], b"mine")
    other = client.post(
        f"/fleet/jobs/{job_id}/artifacts",
        params={"kind": "log", "fileName": "o.log"},
        content=b"someone else's",
    ).json()
    with BlobClient.from_blob_url(ticket["uploadUrl"]) as blob, pytest.raises(HttpResponseError) as read:
        blob.download_blob().readall()
    assert read.value.status_code == 403
    assert httpx.get(ticket["uploadUrl"]).status_code == 403
    # The write URL names the upload's staging blob; aimed at another artifact's blob, it is refused.
    staged = "staging/" + ticket["blobKey"].removeprefix("fleet/")
    stolen = ticket["uploadUrl"].replace(staged, other["blobKey"])
    assert stolen != ticket["uploadUrl"]
    with BlobClient.from_blob_url(stolen) as blob, pytest.raises(HttpResponseError) as overwrite:
        blob.upload_blob(b"overwritten", overwrite=True)
    assert overwrite.value.status_code == 403
    assert httpx.get(other["downloadUrl"]).content == b"someone else's"


def test_finalize_refusals(client: httpx.Client, server_url: str, job_id: str) -> None:
    ticket = start(client, job_id)
    assert_problem(finalize(client, ticket, b"nothing written yet"), 409)
    assert_problem(
        client.post(
            f"/fleet/jobs/{job_id}/artifacts/{ticket['id']}/finalize",
            json={"sizeBytes": 1, "sha256": "NOT-HEX"},
        ),
        400,
    )
    assert_problem(
        client.post(f"/fleet/jobs/{job_id}/artifacts/{ticket['id']}/finalize", json={"size": 1}), 400
    )
    with httpx.Client(base_url=server_url, headers={"Authorization": f"Bearer {TOKEN_B}"}) as other:
        assert_problem(finalize(other, ticket, b"x"), 404)
    assert_problem(finalize(client, {**ticket, "id": "0" * 32}, b"x"), 404)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"kind": "build", "fileName": "../x"}, 400),
        ({"kind": "movie", "fileName": "x"}, 400),
        ({"kind": "build", "fileName": "x", "colour": "red"}, 400),
        ({"kind": "build", "fileName": "x", "sizeBytes": 10**12}, 413),
        ({"kind": "build", "fileName": "x", "sizeBytes": -1}, 400),
    ],
)
def test_bad_upload_requests(client: httpx.Client, job_id: str, body: dict[str, Any], status: int) -> None:
    assert_problem(client.post(f"/fleet/jobs/{job_id}/artifacts/uploads", json=body), status)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "build", "fileName": "x", "sizeBytes": "1"}, "sizeBytes"),  # a number must be a number
        ({"kind": "build", "fileName": "x", "sizeBytes": 1.5}, "sizeBytes"),
        ({"kind": "build", "fileName": "x", "colour": "red"}, "colour"),
        ({"kind": "build", "fileName": "x", "tags": {"os": 1}}, "tags"),
        ({"fileName": "x"}, "kind"),
        ({"kind": "build", "fileName": 7}, "fileName"),
    ],
)
def test_json_bodies_are_decoded_strictly_and_name_the_field(
    client: httpx.Client, job_id: str, body: dict[str, Any], field: str
) -> None:
    started = client.post(f"/fleet/jobs/{job_id}/artifacts/uploads", json=body)
    assert assert_problem(started, 400)["field"] == field
    opened = client.post("/uploads", json={"jobId": job_id, **body})
    assert assert_problem(opened, 400)["field"] == field
    ticket = start(client, job_id)
    claim = {"sizeBytes": "5"} if field != "colour" else {"sizeBytes": 5, "colour": "red"}
    finalized = client.post(f"/fleet/jobs/{job_id}/artifacts/{ticket['id']}/finalize", json=claim)
    assert assert_problem(finalized, 400)["field"] == ("colour" if field == "colour" else "sizeBytes")
    not_json = client.post(
        f"/fleet/jobs/{job_id}/artifacts/uploads", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert_problem(not_json, 400)


async def test_gc_removes_uploads_past_their_deadline(
    client: httpx.Client, settings: Settings, job_id: str
) -> None:
    finished = start(client, job_id)
    write(finished["uploadUrl"], b"done")
    finalize(client, finished, b"done").raise_for_status()
    committed = start(client, job_id)  # written, never finalized
    write(committed["uploadUrl"], b"forgotten")
    staged = start(client, job_id)  # blocks staged, never committed
    with BlobClient.from_blob_url(staged["uploadUrl"]) as blob:
        blob.stage_block("YmxvY2stMDAwMQ==", b"half an upload")
    fresh = start(client, job_id)  # still within its deadline

    async with open_stores(settings) as (blobs, pointers):
        later = utcnow() + timedelta(seconds=settings.upload_url_ttl_seconds + 60)
        stale = {t["blobKey"] for t in (committed, staged, fresh)}  # all three are past `later`
        # (The sweep is global: other tests' unfinished uploads may be swept too.)
        would = await sweep_stale_uploads(Kernel(blobs, pointers), now=later, dry_run=True)
        assert stale <= set(would) and finished["blobKey"] not in would
        assert await pointers.get(job_id, committed["id"]) is not None  # a dry run removes nothing
        removed = await sweep_stale_uploads(Kernel(blobs, pointers), now=utcnow() + timedelta(seconds=5))
        assert not stale & set(removed)  # nothing of ours is past its deadline yet
        removed = await sweep_stale_uploads(Kernel(blobs, pointers), now=later)
        assert stale <= set(removed) and finished["blobKey"] not in removed
        for t in (committed, staged, fresh):
            assert await pointers.get(job_id, t["id"]) is None
            assert await blobs.info(t["blobKey"]) is None
        assert await pointers.get(job_id, finished["id"]) is not None
    assert await blob_names(settings, f"fleet/prod-a/{job_id}/") == [finished["blobKey"]] or (
        settings.blob_backend == "local"
        and await blob_names(settings, f"fleet/prod-a/{job_id}/")
        # Beside the blob: its type and digest (its write URL named the staging blob, gone now).
        == sorted([finished["blobKey"], finished["blobKey"] + ".meta"])
    )
    if settings.blob_backend == "local":
        staging = settings.data_dir / "staging"
        assert not staging.exists() or list(staging.iterdir()) == []


async def test_a_write_through_the_upload_url_after_finalize_never_changes_the_artifact(
    client: httpx.Client, settings: Settings, job_id: str
) -> None:
    data = secrets.token_bytes(150_000)
    ticket = start(client, job_id)
    assert "/staging/" in ticket["uploadUrl"] and ticket["blobKey"].startswith("fleet/")
    write(ticket["uploadUrl"], data)
    done = finalize(client, ticket, data).json()
    assert done["status"] == "ACTIVE"
    forged = secrets.token_bytes(150_000)
    try:
        write(ticket["uploadUrl"], forged, blocks=False)  # an Azure SAS still writes: into staging
        overwritten = True
    except HttpResponseError as refused:  # the local backend refuses a URL whose upload was finalized
        assert refused.status_code == 403
        overwritten = False
    assert overwritten == (settings.blob_backend == "azure")
    again = client.get(f"/fleet/jobs/{job_id}/artifacts/{ticket['id']}").json()
    assert again["sha256"] == done["sha256"] == hashlib.sha256(data).hexdigest()
    assert httpx.get(again["downloadUrl"]).content == data
    assert client.get(f"/fleet/artifacts/{ticket['id']}/content").content == data
    # What the late write left in staging is an orphan: nothing reads it, the sweep removes it.
    async with open_stores(settings) as (blobs, pointers):
        swept = await sweep_orphan_blobs(Kernel(blobs, pointers), older_than=utcnow() + timedelta(seconds=5))
        staged = "staging/" + ticket["blobKey"].removeprefix("fleet/")
        assert (staged in swept) == overwritten and ticket["blobKey"] not in swept
        assert await blobs.info(staged) is None
    assert client.get(f"/fleet/artifacts/{ticket['id']}/content").content == data
