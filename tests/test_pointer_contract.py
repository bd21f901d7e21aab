"""PointerStore contract: every adapter must pass these (SQLite, Cosmos, and the in-memory fake)."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from fleet_artifacts.core.errors import Conflict, InvalidInput, NotFound, PreconditionFailed
from fleet_artifacts.core.models import ArtifactKind, ArtifactStatus, Pointer
from fleet_artifacts.core.ports import IdempotencyRecord, ListQuery, PointerStore, UploadSession
from fleet_artifacts.stores.cosmos import CosmosPointerStore
from fleet_artifacts.stores.sqlite import SqlitePointerStore
from tests.conftest import make_settings
from tests.fakes import MemoryPointerStore

T0 = datetime(2026, 11, 1, tzinfo=UTC)


EMULATOR = (
    os.environ.get("FLEET_ARTIFACTS_TEST_COSMOS_ENDPOINT"),
    os.environ.get("FLEET_ARTIFACTS_TEST_COSMOS_KEY"),
)


@pytest.fixture(params=["sqlite", "cosmos-gateway", "cosmos-emulator", "memory"])
async def pointers(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[PointerStore]:
    """Each PointerStore adapter in turn, empty, and the in-memory fake that stands in for them.

    Cosmos runs on the test gateway always, and on a real emulator or account when
    FLEET_ARTIFACTS_TEST_COSMOS_ENDPOINT and ..._KEY are set (a database of its own, dropped after).
    """
    if request.param == "memory":
        yield MemoryPointerStore()
        return
    if request.param == "sqlite":
        sqlite = SqlitePointerStore(tmp_path / "p.sqlite3")
        yield sqlite
        await sqlite.close()
        return
    if request.param == "cosmos-gateway":
        settings = make_settings(None, tmp_path, cosmos=request.getfixturevalue("cosmos_gateway"))
    else:
        endpoint, key = EMULATOR
        if not (endpoint and key):
            pytest.skip("set FLEET_ARTIFACTS_TEST_COSMOS_ENDPOINT and _KEY to run against a real Cosmos")
        settings = msgspec.structs.replace(
            make_settings(None, tmp_path),
            pointer_backend="cosmos",
            cosmos_endpoint=endpoint,
            cosmos_key=key,
            cosmos_database="contract-" + secrets.token_hex(6),
            cosmos_init_on_start=True,
        )
    store = CosmosPointerStore.from_settings(settings)
    await store.open()
    try:
        yield store
    finally:
        await store.close()
        if request.param == "cosmos-emulator":
            from azure.cosmos.aio import CosmosClient

            async with CosmosClient(settings.cosmos_endpoint or "", settings.cosmos_key or "") as client:
                await client.delete_database(settings.cosmos_database)


def make(job: str, n: int = 0, *, product: str = "prod-a", **changes: object) -> Pointer:
    artifact_id = secrets.token_hex(8)
    pointer = Pointer(
        id=artifact_id,
        product_id=product,
        job_id=job,
        kind=ArtifactKind.LOG,
        file_name="a.log",
        blob_key=f"fleet/{product}/{job}/{artifact_id}-log",
        content_type="text/plain",
        size_bytes=1,
        sha256="0" * 64,
        created_at=T0 + timedelta(microseconds=n),
    )
    return msgspec.structs.replace(pointer, **changes)


async def test_create_get_find_roundtrip(pointers: PointerStore) -> None:
    p = make("job-1", tags={"os": "linux"}, run_id="r1")
    etag = await pointers.create(p)
    got = await pointers.get("job-1", p.id)
    assert got is not None and got.pointer == p and got.etag == etag
    found = await pointers.find(p.id)
    assert found is not None and found.pointer == p
    assert await pointers.get("job-2", p.id) is None  # partition-scoped
    assert await pointers.find("missing") is None


async def test_check_passes_on_a_working_store_and_changes_nothing(pointers: PointerStore) -> None:
    p = make("job-ready")
    etag = await pointers.create(p)
    for _ in range(3):  # a probe asks every few seconds: each ask leaves the store as it was
        await pointers.check()
    got = await pointers.get("job-ready", p.id)
    assert got is not None and got.pointer == p and got.etag == etag
    page = await pointers.list(ListQuery(job_id="job-ready", product_id="prod-a"))
    assert [item.pointer.id for item in page.items] == [p.id]


async def test_duplicate_create_conflicts(pointers: PointerStore) -> None:
    p = make("job-1")
    await pointers.create(p)
    with pytest.raises(Conflict):
        await pointers.create(p)


async def test_replace_is_compare_and_swap(pointers: PointerStore) -> None:
    p = make("job-1")
    etag = await pointers.create(p)
    new_etag = await pointers.replace(msgspec.structs.replace(p, status=ArtifactStatus.DELETING), etag=etag)
    assert new_etag != etag
    with pytest.raises(PreconditionFailed):
        await pointers.replace(p, etag=etag)  # stale
    got = await pointers.get("job-1", p.id)
    assert got is not None and got.pointer.status is ArtifactStatus.DELETING
    await pointers.delete("job-1", p.id)
    with pytest.raises(NotFound):
        await pointers.replace(p, etag=new_etag)


async def test_delete(pointers: PointerStore) -> None:
    p = make("job-1")
    await pointers.create(p)
    assert await pointers.delete("job-2", p.id) is False
    assert await pointers.delete("job-1", p.id) is True
    assert await pointers.delete("job-1", p.id) is False
    assert await pointers.get("job-1", p.id) is None


async def test_list_newest_first_exactly_once_and_isolated(pointers: PointerStore) -> None:
    created = [make("job-1", n % 40) for n in range(250)]  # many equal timestamps: ties by id
    for p in created:
        await pointers.create(p)
    await pointers.create(make("job-2", 5))
    await pointers.create(make("job-1", 5, product="prod-b"))
    seen: list[Pointer] = []
    token = None
    while True:
        page = await pointers.list(
            ListQuery(job_id="job-1", product_id="prod-a", limit=17, continuation=token)
        )
        assert len(page.items) <= 17
        seen += [stored.pointer for stored in page.items]
        token = page.continuation
        if token is None:
            break
    assert sorted(p.id for p in seen) == sorted(p.id for p in created)
    assert len({p.id for p in seen}) == len(seen)
    keys = [(p.created_at, p.id) for p in seen]
    assert keys == sorted(keys, reverse=True)


async def test_list_filters_and_hides_non_active(pointers: PointerStore) -> None:
    a = make("j", 1, kind=ArtifactKind.LOG, run_id="r1", tags={"os": "linux", "arch": "x64"})
    b = make("j", 2, kind=ArtifactKind.COVERAGE, run_id="r1", tags={"os": "windows"})
    c = make("j", 3, kind=ArtifactKind.LOG, run_id="r2", status=ArtifactStatus.DELETING)
    for p in (a, b, c):
        await pointers.create(p)

    async def ids(**kw: object) -> list[str]:
        page = await pointers.list(msgspec.convert({"job_id": "j", "product_id": "prod-a", **kw}, ListQuery))
        return [s.pointer.id for s in page.items]

    assert await ids() == [b.id, a.id]
    assert await ids(kind="log") == [a.id]
    assert await ids(run_id="r1") == [b.id, a.id]
    assert await ids(run_id="r2") == []
    assert await ids(tags={"os": "linux"}) == [a.id]
    assert await ids(tags={"os": "linux", "arch": "arm"}) == []
    assert await ids(statuses=["DELETING"]) == [c.id]
    assert await ids(statuses=["ACTIVE", "DELETING"]) == [c.id, b.id, a.id]
    assert await ids(statuses=["DELETING", "ACTIVE"]) == [c.id, b.id, a.id]


async def test_foreign_continuation_token_is_invalid_input(pointers: PointerStore) -> None:
    for token in ("garbage!", "e30", "WzEsMl0"):
        with pytest.raises(InvalidInput):
            await pointers.list(ListQuery(job_id="j", product_id="p", continuation=token))


async def test_a_token_is_bound_to_the_filters_it_was_issued_for(pointers: PointerStore) -> None:
    for n in range(3):
        await pointers.create(make("job-f", n, run_id="r1", tags={"os": "linux"}))
    first = await pointers.list(ListQuery(job_id="job-f", product_id="prod-a", run_id="r1", limit=1))
    assert first.continuation is not None
    same = ListQuery(
        job_id="job-f", product_id="prod-a", run_id="r1", limit=2, continuation=first.continuation
    )
    assert len((await pointers.list(same)).items) == 2  # another page size is the same listing
    for other in (
        {"run_id": "r2"},
        {"run_id": None},
        {"kind": ArtifactKind.LOG},
        {"tags": {"os": "linux"}},
        {"job_id": "job-g"},
        {"product_id": "prod-b"},
    ):
        with pytest.raises(InvalidInput):
            await pointers.list(msgspec.structs.replace(same, **other))


async def test_idempotency_records_are_created_once_and_swapped_by_etag(pointers: PointerStore) -> None:
    record = IdempotencyRecord(
        id="idem-" + secrets.token_hex(8),
        job_id="job-1",
        fingerprint="f" * 64,
        claimed_at=T0,
        expires_at=T0 + timedelta(days=1),
    )
    assert await pointers.get_record("job-1", record.id, IdempotencyRecord) is None
    etag = await pointers.put_record(record, etag=None)
    with pytest.raises(Conflict):
        await pointers.put_record(record, etag=None)
    got = await pointers.get_record("job-1", record.id, IdempotencyRecord)
    assert got is not None and got.record == record and got.etag == etag
    assert await pointers.get_record("job-2", record.id, IdempotencyRecord) is None  # partition-scoped
    done = msgspec.structs.replace(record, artifact_id="a" * 32)
    new_etag = await pointers.put_record(done, etag=etag)
    with pytest.raises(PreconditionFailed):
        await pointers.put_record(record, etag=etag)
    await pointers.delete_record("job-1", record.id, etag=etag)  # stale etag: left as it is
    got = await pointers.get_record("job-1", record.id, IdempotencyRecord)
    assert got is not None and got.record.artifact_id == "a" * 32
    # A record is read back only as its own kind, and never shows up as a pointer.
    assert await pointers.get_record("job-1", record.id, UploadSession) is None
    assert (await pointers.list(ListQuery(job_id="job-1", product_id="prod-a"))).items == []
    assert await pointers.find(record.id) is None
    assert await pointers.get("job-1", record.id) is None
    await pointers.delete_record("job-1", record.id, etag=new_etag)
    assert await pointers.get_record("job-1", record.id, IdempotencyRecord) is None
