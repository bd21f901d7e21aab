"""Regression tests for defects found in review: each would have failed before its fix."""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobClient

from fleet_artifacts.app import create_app
from fleet_artifacts.core.errors import Unavailable
from fleet_artifacts.core.idempotency import Idempotency
from fleet_artifacts.core.kernel import Kernel
from fleet_artifacts.core.models import ArtifactKind, ArtifactStatus, Pointer
from fleet_artifacts.core.ports import IdempotencyRecord, SideRecord
from fleet_artifacts.settings import Settings
from fleet_artifacts.stores.local_blob import LocalBlobStore
from fleet_artifacts.stores.signing import UrlSigner
from fleet_artifacts.stores.sqlite import SqlitePointerStore
from tests.conftest import TOKEN_A, make_settings
from tests.helpers import BLOBS, assert_problem, blob_names, finalize, start, upload_raw, write
from tests.servers import Azurite, ThreadedServer


def test_local_write_url_dies_with_its_upload(client: httpx.Client, settings: Settings, job_id: str) -> None:
    if settings.blob_backend != "local":
        pytest.skip("an Azure SAS cannot be revoked before it expires (README: Limits)")
    finished = start(client, job_id)
    write(finished["uploadUrl"], b"final bytes")
    assert finalize(client, finished, b"final bytes").status_code == 200
    deleted = start(client, job_id)
    assert client.delete(f"/fleet/jobs/{job_id}/artifacts/{deleted['id']}").status_code == 204
    for ticket in (finished, deleted):
        with pytest.raises(HttpResponseError) as refused:
            write(ticket["uploadUrl"], b"EVIL", blocks=False)
        assert refused.value.status_code == 403
    assert client.get(f"/fleet/artifacts/{finished['id']}/content").content == b"final bytes"


class PausedBody:
    """A request body that sends its first chunk, then waits for ``release`` before the rest."""

    def __init__(self, first: bytes, rest: bytes) -> None:
        self.first, self.rest = first, rest
        self.sent, self.release = threading.Event(), threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        yield self.first
        self.sent.set()
        assert self.release.wait(timeout=30)
        yield self.rest


def put_paused(url: str, body: PausedBody) -> tuple[threading.Thread, list[httpx.Response]]:
    """A Put Blob whose body is still streaming until ``body.release`` is set."""
    answers: list[httpx.Response] = []
    headers = {"x-ms-blob-type": "BlockBlob"}
    thread = threading.Thread(
        target=lambda: answers.append(httpx.put(url, content=body, headers=headers, timeout=60))
    )
    thread.start()
    assert body.sent.wait(timeout=30)
    time.sleep(0.5)  # the server has checked the URL and is reading the body
    return thread, answers


@pytest.mark.parametrize("ending", ["finalize", "delete"])
async def test_a_write_still_streaming_when_the_upload_ends_never_lands(
    client: httpx.Client, settings: Settings, job_id: str, ending: str
) -> None:
    if settings.blob_backend != "local":
        pytest.skip("an Azure SAS cannot be revoked before it expires (README: Limits)")
    ticket = start(client, job_id)
    write(ticket["uploadUrl"], b"verified bytes", blocks=False)
    body = PausedBody(b"EVIL ", b"bytes that arrive late")
    thread, answers = put_paused(ticket["uploadUrl"], body)
    if ending == "finalize":
        assert finalize(client, ticket, b"verified bytes").status_code == 200
    else:
        assert client.delete(f"/fleet/jobs/{job_id}/artifacts/{ticket['id']}").status_code == 204
    body.release.set()
    thread.join(timeout=60)
    assert answers and answers[0].status_code == 403, answers
    if ending == "finalize":
        assert client.get(f"/fleet/artifacts/{ticket['id']}/content").content == b"verified bytes"
    else:  # nothing recreated the deleted blob: no orphan
        assert await blob_names(settings, ticket["blobKey"]) == []


def test_finalize_checks_the_size_announced_at_start(client: httpx.Client, job_id: str) -> None:
    ticket = start(client, job_id, sizeBytes=10)
    write(ticket["uploadUrl"], b"twenty bytes, not 10")
    assert_problem(finalize(client, ticket, b"twenty bytes, not 10"), 422)


def test_finalize_enforces_the_size_limit_a_sas_cannot(azurite: Azurite, tmp_path: Path) -> None:
    server = ThreadedServer(create_app(make_settings(azurite, tmp_path, max_upload_bytes="1000"))).start()
    try:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN_A}"}) as c:
            ticket = start(c, "job-big")
            write(ticket["uploadUrl"], b"x" * 5000)
            assert_problem(finalize(c, ticket, b"x" * 5000), 413)
            assert_problem(finalize(c, ticket, b"x" * 5000), 404)  # discarded
    finally:
        server.stop()


async def test_discarding_an_upload_never_touches_one_finalized_meanwhile(tmp_path: Path) -> None:
    pointers = SqlitePointerStore(tmp_path / "p.sqlite3")
    blobs = LocalBlobStore(tmp_path / "blobs", UrlSigner(b"k" * 32), url_prefix=BLOBS)
    pointer = Pointer(
        id="a" * 32,
        product_id="p",
        job_id="j",
        kind=ArtifactKind.LOG,
        file_name="a",
        blob_key="fleet/p/j/a-log",
        content_type="text/plain",
        size_bytes=0,
        sha256="",
        created_at=datetime.now(UTC),
        status=ArtifactStatus.UPLOADING,
        expires_at=datetime.now(UTC),
    )
    etag = await pointers.create(pointer)
    stale = await pointers.get("j", pointer.id)
    assert stale is not None

    async def once() -> AsyncIterator[bytes]:
        yield b"done"

    await blobs.write(pointer.blob_key, once(), content_type="text/plain", max_bytes=10)
    await pointers.replace(
        msgspec.structs.replace(pointer, status=ArtifactStatus.ACTIVE), etag=etag
    )  # finalize won
    assert await Kernel(blobs, pointers).retire(stale) is False
    got = await pointers.get("j", pointer.id)
    assert got is not None and got.pointer.status is ArtifactStatus.ACTIVE
    assert await blobs.info(pointer.blob_key) is not None
    await pointers.close()


class RecordWritesFail(SqlitePointerStore):
    """Records can be claimed but not completed, as during a Cosmos outage."""

    async def put_record(self, record: SideRecord, *, etag: str | None) -> str:
        if etag is not None:
            raise Unavailable("pointer store is down (injected)")
        return await super().put_record(record, etag=etag)


async def test_an_unrecorded_idempotent_create_is_undone_and_frees_its_key(tmp_path: Path) -> None:
    store = RecordWritesFail(tmp_path / "p.sqlite3")
    guard = Idempotency(store, retention=timedelta(days=1), clock=lambda: datetime.now(UTC))
    undone: list[str] = []

    async def create() -> str:
        return "artifact-1"

    async def undo(result: str) -> None:
        undone.append(result)

    async def replay(result: str) -> str:
        return result

    with pytest.raises(Unavailable):
        await guard.run(
            product_id="p",
            job_id="j",
            key="k",
            operation="f",
            request={},
            create=create,
            created_id=lambda r: r,
            replay=replay,
            undo=undo,
        )
    assert undone == ["artifact-1"]
    assert await store.get_record("j", Idempotency.record_id("p", "k"), IdempotencyRecord) is None
    await store.close()


@pytest.mark.parametrize(
    "header", [b"bytes=\xb2-", b"bytes=0-\xb2", b"bytes=" + b"9" * 5000 + b"-", b"bytes=1-" + b"9" * 30]
)
def test_odd_range_headers_never_fail_the_server(client: httpx.Client, job_id: str, header: bytes) -> None:
    created = upload_raw(client, job_id, b"0123456789").json()
    r = client.get(f"/fleet/artifacts/{created['id']}/content", headers={b"Range": header})
    assert r.status_code in (200, 206), r.text
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-security-policy"] == "sandbox"


def test_non_ascii_content_type_parameters_are_refused(client: httpx.Client, job_id: str) -> None:
    r = upload_raw(client, job_id, b"x", contentType='text/plain; x="\u20ac"')
    assert assert_problem(r, 400)["field"] == "contentType"


def test_out_of_range_cursor_is_400_not_500(client: httpx.Client, settings: Settings, job_id: str) -> None:
    if settings.pointer_backend != "sqlite":
        pytest.skip(
            "the keyset cursor is the SQLite adapter's; Cosmos tokens are covered in test_cosmos_pointers"
        )
    token = base64.urlsafe_b64encode(b'[18446744073709551615,"zz"]').decode().rstrip("=")
    assert_problem(client.get(f"/fleet/jobs/{job_id}/artifacts", params={"continuationToken": token}), 400)


def test_tag_keys_cannot_hold_the_filter_separator(client: httpx.Client, job_id: str) -> None:
    body: dict[str, Any] = {"kind": "log", "fileName": "a", "content": "aGk=", "tags": {"a:b": "c"}}
    r = client.post(
        f"/fleet/jobs/{job_id}/artifacts",
        json=body,
        headers={"Content-Type": "application/vnd.fleet-artifact+json"},
    )
    assert_problem(r, 400)


def test_deleting_an_unfinished_local_upload_drops_its_staged_blocks(
    client: httpx.Client, settings: Settings, job_id: str
) -> None:
    if settings.blob_backend != "local":
        pytest.skip("Azure discards uncommitted blocks itself after seven days")
    ticket = start(client, job_id)
    with BlobClient.from_blob_url(ticket["uploadUrl"]) as blob:
        blob.stage_block("YmxvY2stMDAwMQ==", b"half")
    staged_key = "staging/" + ticket["blobKey"].removeprefix("fleet/")  # the write URL's blob
    staging = settings.data_dir / "staging" / hashlib.sha256(staged_key.encode()).hexdigest()
    assert staging.is_dir()
    assert client.delete(f"/fleet/jobs/{job_id}/artifacts/{ticket['id']}").status_code == 204
    assert not staging.exists()
