"""Lifecycle over HTTP on every backend variant: retention, PATCH with ETags, soft delete, job delete.

Sweeps run as the real ``fleet-artifacts gc`` process; the server's clock is moved back to make
artifacts that are already past their retention (``World.ago``).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import msgspec
import pytest

from fleet_artifacts.app import create_app
from fleet_artifacts.core.errors import Unavailable
from fleet_artifacts.core.ports import BlobStore, PointerStore
from fleet_artifacts.settings import Settings
from tests.conftest import TOKEN_B
from tests.fakes.delegating import DelegatingPointerStore
from tests.helpers import assert_problem, blob_bytes, blob_names, finalize, start, upload_raw, write
from tests.lifecycle_kit import DAY, VARIANTS, World, blob_tags, gc, gc_items, make_world, when
from tests.servers import ThreadedServer


@pytest.fixture(scope="module", params=VARIANTS)
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A server per variant with a 7-day soft-delete window and the default retention rules."""
    yield from make_world(request, tmp_path_factory.mktemp("life"), soft_delete_days="7")


@pytest.fixture
def w(world: World) -> Iterator[World]:
    """The module's world, its clock back at now after each test."""
    yield world
    world.ago(0)


def new_job() -> str:
    return "job-" + secrets.token_hex(5)


def retention_of(out: dict[str, object]) -> timedelta | None:
    expires = out["expiresAt"]
    return None if expires is None else when(expires) - when(out["createdAt"])


def test_retention_defaults_bounds_and_keep_forever_on_every_create_path(w: World) -> None:
    c, job = w.client, new_job()
    plain = upload_raw(c, job, b"default").json()
    assert retention_of(plain) == 30 * DAY and plain["retentionDays"] == 30 and plain["keepForever"] is False
    assert retention_of(upload_raw(c, job, b"q", retentionDays="5").json()) == 5 * DAY
    multipart = c.post(
        f"/fleet/jobs/{job}/artifacts",
        data={"kind": "log", "retentionDays": "7"},
        files={"file": ("m.log", b"multipart", "text/plain")},
    )
    assert multipart.status_code == 201, multipart.text
    assert retention_of(multipart.json()) == 7 * DAY
    envelope = c.post(
        f"/fleet/jobs/{job}/artifacts",
        content=msgspec.json.encode(
            {
                "kind": "log",
                "fileName": "e.log",
                "content": base64.b64encode(b"env").decode(),
                "retentionDays": 9,
            }
        ),
        headers={"Content-Type": "application/vnd.fleet-artifact+json"},
    )
    assert envelope.status_code == 201, envelope.text
    assert retention_of(envelope.json()) == 9 * DAY
    data = b"direct bytes"
    ticket = start(c, job, retentionDays=11)
    assert ticket["status"] == "UPLOADING" and ticket["retentionDays"] == 11
    write(ticket["uploadUrl"], data, blocks=False)
    finalized = finalize(c, ticket, data)
    assert finalized.status_code == 200, finalized.text
    assert retention_of(finalized.json()) == 11 * DAY
    opened = c.post("/uploads", json={"jobId": job, "kind": "log", "fileName": "s.log", "keepForever": True})
    assert opened.status_code == 201, opened.text
    url = opened.json()["url"]
    assert c.patch(url, content=b"abc", headers={"Content-Range": "bytes 0-2/3"}).status_code == 200
    kept = c.post(url + "/complete").json()
    assert kept["keepForever"] is True and kept["expiresAt"] is None and kept["retentionDays"] is None

    before = {a["id"] for a in c.get(f"/fleet/jobs/{job}/artifacts").json()["items"]}
    for bad in ({"retentionDays": "0"}, {"retentionDays": "366"}, {"retentionDays": "x"},
                {"retentionDays": "3", "keepForever": "true"}, {"keepForever": "maybe"},
                {"retentionDays": "\u00b2"}, {"retentionDays": "\u0661\u0662"}):  # fmt: skip
        problem = assert_problem(upload_raw(c, job, b"refused", **bad), 400)
        assert problem["field"] in ("retentionDays", "keepForever")
    refused = c.post("/uploads", json={"jobId": job, "kind": "log", "fileName": "x", "retentionDays": 400})
    assert assert_problem(refused, 400)["field"] == "retentionDays"
    direct = {"kind": "log", "fileName": "x", "retentionDays": 0}
    refused = c.post(f"/fleet/jobs/{job}/artifacts/uploads", json=direct)
    assert assert_problem(refused, 400)["field"] == "retentionDays"
    assert {a["id"] for a in c.get(f"/fleet/jobs/{job}/artifacts").json()["items"]} == before


async def test_job_retention_sets_later_uploads_and_redates_the_rest(w: World) -> None:
    c, job = w.client, new_job()
    assert c.get(f"/fleet/jobs/{job}/retention").json() == {
        "jobId": job, "retentionDays": None, "keepForever": False, "defaultRetentionDays": 30,
        "updatedAt": None, "updated": None,
    }  # fmt: skip
    a = upload_raw(c, job, b"a").json()
    put = c.put(f"/fleet/jobs/{job}/retention", json={"retentionDays": 3})
    assert put.status_code == 200, put.text
    assert put.json()["retentionDays"] == 3 and put.json()["updated"] is None
    assert c.get(f"/fleet/jobs/{job}/retention").json()["retentionDays"] == 3
    b = upload_raw(c, job, b"b").json()
    own = upload_raw(c, job, b"c", retentionDays="10").json()
    assert (retention_of(a), retention_of(b), retention_of(own)) == (30 * DAY, 3 * DAY, 10 * DAY)
    # Another product's uploads to a job of the same name keep their own rules.
    other = httpx.get(
        f"{w.server.url}/fleet/jobs/{job}/retention", headers={"Authorization": f"Bearer {TOKEN_B}"}
    )
    assert other.json()["retentionDays"] is None

    everything = c.put(f"/fleet/jobs/{job}/retention", json={"keepForever": True, "applyToExisting": True})
    assert everything.json()["updated"] == 3 and everything.json()["keepForever"] is True
    for item in c.get(f"/fleet/jobs/{job}/artifacts").json()["items"]:
        assert item["keepForever"] is True and item["expiresAt"] is None
        assert (await blob_tags(w.settings, item["blobKey"]))["keep"] == "true"
    again = c.put(f"/fleet/jobs/{job}/retention", json={"keepForever": True, "applyToExisting": True})
    assert again.json()["updated"] == 0  # a repeat finds nothing left to change
    later = upload_raw(c, job, b"later").json()
    assert later["keepForever"] is True and (await blob_tags(w.settings, later["blobKey"]))["keep"] == "true"
    back = c.put(f"/fleet/jobs/{job}/retention", json={"retentionDays": 5, "applyToExisting": True})
    assert back.json()["updated"] == 4
    assert (await blob_tags(w.settings, later["blobKey"])) == {
        "productId": "prod-a", "jobId": job, "kind": "log", "keep": "false",
    }  # fmt: skip
    for bad in ({}, {"retentionDays": 999}, {"retentionDays": "3"}, {"retentionDays": 3, "keepForever": True},
                {"retention": 3}):  # fmt: skip
        assert_problem(c.put(f"/fleet/jobs/{job}/retention", json=bad), 400)


def test_patch_is_guarded_by_the_etag_and_a_past_expiry_hides_then_the_sweep_removes(w: World) -> None:
    c, job = w.client, new_job()
    out = upload_raw(c, job, b"patch me", tag="a:1").json()
    where = f"/fleet/jobs/{job}/artifacts/{out['id']}"
    got = c.get(where)
    assert got.headers["etag"] == got.json()["etag"] == out["etag"]
    listed = c.get(f"/fleet/jobs/{job}/artifacts").json()["items"]
    assert [item["etag"] for item in listed] == [out["etag"]]
    assert_problem(c.patch(where, json={"tags": {"b": "2"}}, headers={"If-Match": '"nope"'}), 412)
    patched = c.patch(where, json={"tags": {"b": "2"}}, headers={"If-Match": out["etag"]})
    assert patched.status_code == 200, patched.text
    assert patched.json()["tags"] == {"b": "2"} and patched.headers["etag"] != out["etag"]
    assert_problem(c.patch(where, json={"tags": {}}, headers={"If-Match": out["etag"]}), 412)  # stale
    two_days = c.patch(f"/fleet/artifacts/{out['id']}", json={"retentionDays": 2}).json()
    assert retention_of(two_days) == 2 * DAY and two_days["retentionDays"] == 2
    bad_patches = [
        {"retentionDays": 2, "keepForever": True},
        {"retentionDays": 0},
        {"expiresAt": "soon"},
        {"expiresAt": "2026-01-01T00:00:00"},  # no time zone
        {"expiresAt": "2099-01-01T00:00:00Z"},  # past the longest retention
        {"size": 1},
    ]
    for bad in bad_patches:
        assert_problem(c.patch(where, json=bad), 400)
    assert_problem(c.patch(where, json={}, headers={"If-Match": "not-quoted"}), 400)

    past = (when(out["createdAt"]) - timedelta(seconds=1)).isoformat()
    assert c.patch(where, json={"expiresAt": past}).status_code == 200
    assert_problem(c.get(where), 404)
    assert_problem(c.get(f"/fleet/artifacts/{out['id']}"), 404)
    assert_problem(c.get(where + "/content"), 404)
    assert c.get(f"/fleet/jobs/{job}/artifacts").json()["items"] == []
    assert_problem(c.patch(where, json={"keepForever": True}), 404)  # gone for every reader

    assert out["blobKey"] in gc_items(gc(w.settings, "--expired"), "expired")
    assert blob_bytes_sync(w.settings, out["blobKey"]) is None
    assert c.get(f"/fleet/jobs/{job}/artifacts", params={"status": "DELETED"}).json()["items"] == []


def blob_bytes_sync(settings: Settings, key: str) -> bytes | None:
    import asyncio

    return asyncio.run(blob_bytes(settings, key))


def test_soft_delete_hides_undelete_brings_back_and_purge_or_the_window_removes(w: World) -> None:
    c, job = w.client, new_job()
    data = secrets.token_bytes(3000)
    a = upload_raw(c, job, data, _ct="application/octet-stream", kind="build", fileName="a.bin").json()
    where = f"/fleet/jobs/{job}/artifacts/{a['id']}"
    assert c.delete(where).status_code == 204
    assert_problem(c.get(where), 404)
    assert_problem(c.get(where + "/content"), 404)
    assert_problem(c.delete(where), 404)  # deleted already (a purge still works)
    assert c.get(f"/fleet/jobs/{job}/artifacts").json()["items"] == []
    [deleted] = c.get(f"/fleet/jobs/{job}/artifacts", params={"status": "DELETED"}).json()["items"]
    assert deleted["status"] == "DELETED" and deleted["downloadUrl"] is None
    undone = c.post(where + "/undelete")
    assert undone.status_code == 200, undone.text
    assert undone.json()["status"] == "ACTIVE" and undone.json()["expiresAt"] == a["expiresAt"]
    assert c.get(where + "/content").content == data
    assert c.post(where + "/undelete").status_code == 200  # a repeat answers it as it is

    assert c.delete(where).status_code == 204
    assert c.delete(where, params={"purge": "true"}).status_code == 204
    assert c.get(f"/fleet/jobs/{job}/artifacts", params={"status": "DELETED"}).json()["items"] == []
    assert_problem(c.post(where + "/undelete"), 404)
    assert blob_bytes_sync(w.settings, a["blobKey"]) is None

    # A delete whose window ended is purged by the sweep.
    w.ago(8)
    b = upload_raw(c, job, b"old").json()
    assert c.delete(f"/fleet/artifacts/{b['id']}").status_code == 204
    w.ago(0)
    ended = assert_problem(c.post(f"/fleet/jobs/{job}/artifacts/{b['id']}/undelete"), 404)
    assert "window ended" in str(ended["detail"])
    assert b["blobKey"] in gc_items(gc(w.settings, "--expired"), "expired")
    assert blob_bytes_sync(w.settings, b["blobKey"]) is None

    # A job delete follows the same rule.
    ids = [upload_raw(c, job, f"j{n}".encode()).json()["id"] for n in range(3)]
    assert c.delete(f"/fleet/jobs/{job}/artifacts").json() == {"deleted": 3}
    assert c.get(f"/fleet/jobs/{job}/artifacts").json()["items"] == []
    assert len(c.get(f"/fleet/jobs/{job}/artifacts", params={"status": "DELETED"}).json()["items"]) == 3
    assert c.post(f"/fleet/jobs/{job}/artifacts/{ids[0]}/undelete").json()["status"] == "ACTIVE"
    assert c.delete(f"/fleet/jobs/{job}/artifacts", params={"purge": "true"}).json() == {"deleted": 3}
    assert c.get(f"/fleet/jobs/{job}/artifacts", params={"status": "DELETED"}).json()["items"] == []


class DeletesDieAfter(DelegatingPointerStore):
    """A real pointer store whose pointer deletes fail after ``left`` of them (an outage mid-run)."""

    def __init__(self, inner: PointerStore, left: int) -> None:
        super().__init__(inner)
        self.left = left

    async def delete(self, job_id: str, artifact_id: str) -> bool:
        if self.left <= 0:
            raise Unavailable("pointer store went away (injected)")
        self.left -= 1
        return await self.inner.delete(job_id, artifact_id)


async def test_a_job_delete_of_pages_leaves_none_and_an_interrupted_one_finishes_on_repeat(w: World) -> None:
    c, job = w.client, new_job()
    many = 250  # three pages of the delete's 100: full pages, then a short last one

    def one(n: int) -> str:
        r = upload_raw(
            c, job, f"artifact {n}".encode(), kind="log" if n % 2 else "coverage", fileName=f"{n}.txt"
        )
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(one, range(many)))
    assert len(set(ids)) == many
    assert c.delete(f"/fleet/jobs/{job}/artifacts", params={"purge": "true"}).json() == {"deleted": many}
    assert c.get(f"/fleet/jobs/{job}/artifacts", params={"limit": 1000}).json()["items"] == []
    assert await blob_names(w.settings, f"fleet/prod-a/{job}/") == []

    job2 = new_job()
    for n in range(30):
        upload_raw(c, job2, f"again {n}".encode())

    from contextlib import asynccontextmanager

    from fleet_artifacts.app import open_stores

    @asynccontextmanager
    async def dying(settings: Settings) -> AsyncIterator[tuple[BlobStore, PointerStore]]:
        async with open_stores(settings) as (blobs, pointers):
            yield blobs, DeletesDieAfter(pointers, 12)

    broken = ThreadedServer(create_app(w.settings, open_stores=dying)).start()
    try:
        cut = httpx.delete(
            f"{broken.url}/fleet/jobs/{job2}/artifacts",
            params={"purge": "true"},
            headers=dict(c.headers),
        )
        assert_problem(cut, 503)
    finally:
        broken.stop()
    # 12 went; the one cut mid-protocol is DELETING (hidden, its blob gone), the rest untouched.
    assert len(c.get(f"/fleet/jobs/{job2}/artifacts").json()["items"]) == 30 - 13
    again = c.delete(f"/fleet/jobs/{job2}/artifacts", params={"purge": "true"}).json()["deleted"]
    assert again == 30 - 12
    assert c.get(f"/fleet/jobs/{job2}/artifacts").json()["items"] == []
    assert await blob_names(w.settings, f"fleet/prod-a/{job2}/") == []
