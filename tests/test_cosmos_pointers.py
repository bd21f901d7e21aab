"""The Cosmos DB pointer adapter, with the real azure-cosmos SDK over HTTP (no mocks).

Runs against the Cosmos test gateway, and again against a real emulator or
account when ``FLEET_ARTIFACTS_TEST_COSMOS_ENDPOINT`` and
``FLEET_ARTIFACTS_TEST_COSMOS_KEY`` are set (in a database of its own, deleted
afterwards). Tests that count requests or inject faults need the gateway.

What the gateway cannot prove: it evaluates ORDER BY itself and does not
enforce included/excluded index paths, so that the indexing policy serves
the listing filters efficiently, and that Cosmos's own continuation tokens
resume exactly once, are shown only by the emulator run.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from azure.cosmos import CosmosClient as SyncCosmosClient
from azure.cosmos import PartitionKey
from azure.cosmos.aio import CosmosClient

from fleet_artifacts.core.errors import Conflict, InvalidInput, NotFound, PreconditionFailed, Unavailable
from fleet_artifacts.core.models import ArtifactKind, ArtifactStatus, Pointer
from fleet_artifacts.core.ports import ListQuery
from fleet_artifacts.cosmos_init import INDEXING_POLICY, cosmos_init, ensure_database_and_container
from fleet_artifacts.settings import Settings, load_settings
from fleet_artifacts.stores.cosmos import CosmosPointerStore
from fleet_artifacts.stores.cosmos_docs import SYSTEM_FIELDS, from_document
from tests.cosmos_gateway import EMULATOR_KEY, CosmosGateway

ENDPOINT_VAR = "FLEET_ARTIFACTS_TEST_COSMOS_ENDPOINT"
KEY_VAR = "FLEET_ARTIFACTS_TEST_COSMOS_KEY"
CONTAINER = "pointers"
T0 = datetime(2026, 11, 1, tzinfo=UTC)
POINTER_FIELDS = {field.encode_name for field in msgspec.structs.fields(Pointer)}


@dataclass
class Target:
    """A Cosmos endpoint to test against, and the database prefix this module owns there."""

    endpoint: str
    key: str
    database: str
    gateway: CosmosGateway | None

    def settings(self, **overrides: str) -> Settings:
        env = {
            "FLEET_ARTIFACTS_POINTER_BACKEND": "cosmos",
            "FLEET_ARTIFACTS_COSMOS_ENDPOINT": self.endpoint,
            "FLEET_ARTIFACTS_COSMOS_KEY": self.key,
            "FLEET_ARTIFACTS_COSMOS_DATABASE": self.database,
            "FLEET_ARTIFACTS_COSMOS_CONTAINER": CONTAINER,
            "FLEET_ARTIFACTS_AZURE_RETRY_TOTAL": "1",  # keep injected faults fast
        }
        env.update({f"FLEET_ARTIFACTS_{k.upper()}": v for k, v in overrides.items()})
        return load_settings(env)

    def client(self) -> CosmosClient:
        return CosmosClient(self.endpoint, self.key)


@pytest.fixture(scope="module", params=["gateway", "emulator"])
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """The test gateway, then a real emulator/account if configured."""
    prefix = "fa-test-" + secrets.token_hex(4)
    if request.param == "gateway":
        with CosmosGateway(key=EMULATOR_KEY) as gw:
            yield Target(gw.url, EMULATOR_KEY, prefix, gw)
        return
    endpoint, key = os.environ.get(ENDPOINT_VAR), os.environ.get(KEY_VAR)
    if not endpoint or not key:
        pytest.skip(f"set {ENDPOINT_VAR} and {KEY_VAR} to run against a real Cosmos emulator or account")
    yield Target(endpoint, key, prefix, None)
    with SyncCosmosClient(endpoint, key) as client:
        for db in list(client.list_databases()):
            if db["id"].startswith(prefix):
                client.delete_database(db["id"])


@pytest.fixture(scope="module")
async def store(target: Target) -> AsyncIterator[CosmosPointerStore]:
    """One store (one client) per module, on a container created at open."""
    pointers = CosmosPointerStore.from_settings(target.settings(cosmos_init_on_start="true"))
    await pointers.open()
    yield pointers
    await pointers.close()


def gateway_of(target: Target) -> CosmosGateway:
    if target.gateway is None:
        pytest.skip("counts requests or injects faults: needs the Cosmos test gateway")
    return target.gateway


def job() -> str:
    return "job-" + secrets.token_hex(6)


def make(job_id: str, at: datetime | int = 0, *, product: str = "prod-a", **changes: object) -> Pointer:
    artifact_id = secrets.token_hex(8)
    pointer = Pointer(
        id=artifact_id,
        product_id=product,
        job_id=job_id,
        kind=ArtifactKind.LOG,
        file_name="a.log",
        blob_key=f"fleet/{product}/{job_id}/{artifact_id}-log",
        content_type="text/plain",
        size_bytes=1,
        sha256="0" * 64,
        created_at=at if isinstance(at, datetime) else T0 + timedelta(microseconds=at),
    )
    return msgspec.structs.replace(pointer, **changes)


async def create_all(store: CosmosPointerStore, pointers: list[Pointer]) -> None:
    gate = asyncio.Semaphore(16)

    async def one(pointer: Pointer) -> None:
        async with gate:
            await store.create(pointer)

    await asyncio.gather(*(one(p) for p in pointers))


async def list_all(store: CosmosPointerStore, query: ListQuery) -> list[Pointer]:
    """Every page of a listing; checks that no page is empty yet promises more."""
    seen: list[Pointer] = []
    while True:
        page = await store.list(query)
        assert len(page.items) <= query.limit
        assert page.items or page.continuation is None, "empty page with a continuation token"
        seen += [stored.pointer for stored in page.items]
        if page.continuation is None:
            return seen
        query = msgspec.structs.replace(query, continuation=page.continuation)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- provisioning and start-up -----------------------------------------------------


async def test_cosmos_init_creates_then_reports_exists(target: Target) -> None:
    settings = target.settings(cosmos_database=target.database + "-init")
    assert await cosmos_init(settings) == (
        f"database {settings.cosmos_database}: created; container {CONTAINER}: created (partition key /jobId)"
    )
    assert "database" in await cosmos_init(settings)
    async with target.client() as client:
        again = await ensure_database_and_container(client, settings.cosmos_database, CONTAINER)
        assert again == {"database": "exists", "container": "exists", "partitionKey": "/jobId"}
        database = client.get_database_client(settings.cosmos_database)
        props = await database.get_container_client(CONTAINER).read()
    assert props["partitionKey"]["paths"] == ["/jobId"]
    assert props["defaultTtl"] == -1
    policy = props["indexingPolicy"]
    composite = [[(entry["path"], entry["order"]) for entry in index] for index in policy["compositeIndexes"]]
    assert [("/createdAt", "descending"), ("/id", "descending")] in composite
    assert {"path": "/*"} in policy["excludedPaths"]


async def test_second_cosmos_init_says_exists(target: Target) -> None:
    settings = target.settings(cosmos_database=target.database + "-twice")
    await cosmos_init(settings)
    summary = await cosmos_init(settings)
    assert summary == (
        f"database {settings.cosmos_database}: exists; container {CONTAINER}: exists (partition key /jobId)"
    )


async def test_existing_container_partitioned_otherwise_is_refused(target: Target) -> None:
    settings = target.settings(cosmos_database=target.database + "-pk")
    async with target.client() as client:
        db = await client.create_database(settings.cosmos_database)
        await db.create_container(CONTAINER, PartitionKey(path="/productId"), indexing_policy=INDEXING_POLICY)
    with pytest.raises(Unavailable, match="partitioned by /productId, not /jobId"):
        await cosmos_init(settings)
    store = CosmosPointerStore.from_settings(settings)
    try:
        with pytest.raises(Unavailable, match="partition key cannot be changed"):
            await store.open()
    finally:
        await store.close()


async def test_container_without_the_composite_index_is_refused(target: Target) -> None:
    settings = target.settings(cosmos_database=target.database + "-idx")
    async with target.client() as client:
        db = await client.create_database(settings.cosmos_database)
        await db.create_container(CONTAINER, PartitionKey(path="/jobId"))
    store = CosmosPointerStore.from_settings(settings)
    try:
        with pytest.raises(Unavailable, match=r"lacks the composite index \[/createdAt DESC, /id DESC\]"):
            await store.open()
    finally:
        await store.close()


async def test_missing_container_without_init_names_cosmos_init(target: Target) -> None:
    settings = target.settings(cosmos_database=target.database + "-absent")
    store = CosmosPointerStore.from_settings(settings)
    try:
        with pytest.raises(Unavailable) as caught:
            await store.open()
    finally:
        await store.close()
    assert f"container {settings.cosmos_database}/{CONTAINER} does not exist" in caught.value.detail
    assert "run `fleet-artifacts cosmos-init`" in caught.value.detail
    assert target.endpoint in caught.value.detail


async def test_wrong_key_fails_open_quickly_and_clearly(target: Target) -> None:
    wrong = base64.b64encode(secrets.token_bytes(64)).decode()
    store = CosmosPointerStore.from_settings(target.settings(cosmos_key=wrong))
    started = time.monotonic()
    try:
        with pytest.raises(Unavailable) as caught:
            await store.open()
    finally:
        await store.close()
    assert time.monotonic() - started < 5
    assert caught.value.detail.startswith(f"Cosmos DB at {target.endpoint}: authentication failed (401)")
    await store.close()  # closing twice is harmless


async def test_unreachable_endpoint_fails_open_clearly() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}/"
    store = CosmosPointerStore.from_settings(
        Target(endpoint, EMULATOR_KEY, "db", None).settings(azure_retry_total="0")
    )
    try:
        with pytest.raises(Unavailable, match=f"Cosmos DB at {endpoint}: Cosmos DB is unreachable"):
            await store.open()
    finally:
        await store.close()


# -- the pointer contract ------------------------------------------------------------


async def test_create_get_find_roundtrip(store: CosmosPointerStore) -> None:
    job_id = job()
    p = make(job_id, tags={"os": "linux"}, run_id="r1", expires_at=T0 + timedelta(days=30, microseconds=7))
    etag = await store.create(p)
    got = await store.get(job_id, p.id)
    assert got is not None and got.pointer == p and got.etag == etag
    found = await store.find(p.id)
    assert found is not None and found.pointer == p and found.etag == etag
    assert await store.get(job(), p.id) is None  # partition-scoped
    assert await store.get(job_id, "missing") is None
    assert await store.find("missing") is None


async def test_hot_paths_stay_in_one_partition(target: Target, store: CosmosPointerStore) -> None:
    gateway = gateway_of(target)
    job_id = job()
    p = make(job_id)
    await store.create(p)
    gateway.stats.reset()
    assert await store.get(job_id, p.id) is not None
    stats = gateway.stats
    assert (stats.point_reads, stats.queries, stats.cross_partition_queries) == (1, 0, 0)
    page = await store.list(ListQuery(job_id=job_id, product_id="prod-a"))
    assert [item.pointer.id for item in page.items] == [p.id]
    assert stats.cross_partition_queries == 0
    assert stats.query_log[-1].partition_key == json.dumps([job_id])
    assert await store.find(p.id) is not None
    assert stats.cross_partition_queries == 1


async def test_duplicate_create_conflicts(store: CosmosPointerStore) -> None:
    p = make(job())
    await store.create(p)
    with pytest.raises(Conflict):
        await store.create(msgspec.structs.replace(p, file_name="other.log"))


async def test_replace_is_compare_and_swap(store: CosmosPointerStore) -> None:
    job_id = job()
    p = make(job_id)
    etag = await store.create(p)
    deleting = msgspec.structs.replace(p, status=ArtifactStatus.DELETING)
    new_etag = await store.replace(deleting, etag=etag)
    assert new_etag != etag
    with pytest.raises(PreconditionFailed):
        await store.replace(p, etag=etag)  # stale
    got = await store.get(job_id, p.id)
    assert got is not None and got.pointer == deleting and got.etag == new_etag
    assert await store.delete(job_id, p.id)
    with pytest.raises(NotFound):
        await store.replace(p, etag=new_etag)


async def test_delete(store: CosmosPointerStore) -> None:
    job_id = job()
    p = make(job_id)
    await store.create(p)
    assert await store.delete(job(), p.id) is False
    assert await store.delete(job_id, p.id) is True
    assert await store.delete(job_id, p.id) is False
    assert await store.get(job_id, p.id) is None


async def test_list_filters_and_hides_non_active(store: CosmosPointerStore) -> None:
    j = job()
    a = make(j, 1, kind=ArtifactKind.LOG, run_id="r1", tags={"os": "linux", "arch": "x64"})
    b = make(j, 2, kind=ArtifactKind.COVERAGE, run_id="r1", tags={"os": "windows"})
    c = make(j, 3, kind=ArtifactKind.LOG, run_id="r2", status=ArtifactStatus.DELETING)
    await create_all(store, [a, b, c])

    async def ids(**kw: object) -> list[str]:
        page = await store.list(msgspec.convert({"job_id": j, "product_id": "prod-a", **kw}, ListQuery))
        return [s.pointer.id for s in page.items]

    assert await ids() == [b.id, a.id]
    assert await ids(kind="log") == [a.id]
    assert await ids(run_id="r1") == [b.id, a.id]
    assert await ids(run_id="r2") == []
    assert await ids(tags={"os": "linux"}) == [a.id]
    assert await ids(tags={"arch": "x64", "os": "linux"}) == [a.id]
    assert await ids(tags={"os": "linux", "arch": "arm"}) == []
    assert await ids(tags={"os": "linux' OR 1=1 --"}) == []  # values are parameters, never SQL
    assert await ids(statuses=["DELETING"]) == [c.id]
    assert await ids(statuses=["ACTIVE", "DELETING"]) == [c.id, b.id, a.id]
    assert await ids(statuses=["DELETING", "ACTIVE"]) == [c.id, b.id, a.id]
    assert await ids(product_id="prod-b") == []


async def test_pagination_is_exactly_once_newest_first_and_isolated(
    target: Target, store: CosmosPointerStore
) -> None:
    job_a, job_b = job(), job()
    # Nine instants half a second apart: ~111 items share each createdAt (ties
    # broken by id), and every other instant is a whole second (microsecond 0),
    # which only sorts right if timestamps are stored fixed-width.
    created = [make(job_a, T0 + timedelta(milliseconds=500 * (n % 9))) for n in range(1000)]
    assert {p.created_at.microsecond for p in created} == {0, 500_000}
    deleting = ArtifactStatus.DELETING
    others = [make(job_b, T0), make(job_a, T0, product="prod-b"), make(job_a, T0, status=deleting)]
    await create_all(store, created + others)

    if target.gateway is not None:
        target.gateway.stats.reset()
    seen = await list_all(store, ListQuery(job_id=job_a, product_id="prod-a", limit=37))
    if target.gateway is not None:
        assert target.gateway.stats.cross_partition_queries == 0
        assert target.gateway.stats.queries >= 1000 // 37

    assert len(seen) == 1000
    assert {p.id for p in seen} == {p.id for p in created}
    assert seen == sorted(created, key=lambda p: (p.created_at, p.id), reverse=True)
    only_b = await list_all(store, ListQuery(job_id=job_b, product_id="prod-a"))
    assert [p.id for p in only_b] == [others[0].id]


async def test_stored_document_is_the_pointer_and_nothing_else(
    target: Target, store: CosmosPointerStore
) -> None:
    job_id = job()
    whole_second = T0 + timedelta(hours=4, seconds=3)
    p = make(job_id, whole_second, tags={"os": "linux"}, expires_at=whole_second + timedelta(microseconds=42))
    await store.create(p)
    if target.gateway is not None:
        [doc] = [d for d in target.gateway.items(target.database, CONTAINER) if d["id"] == p.id]
    else:
        async with target.client() as client:
            container = client.get_database_client(target.database).get_container_client(CONTAINER)
            doc = dict(await container.read_item(p.id, partition_key=job_id))
    assert doc.keys() >= POINTER_FIELDS
    assert doc.keys() - POINTER_FIELDS <= SYSTEM_FIELDS | {"ttl"}
    # The ttl backstop reaches a grace day past expiresAt, or past now for one long past (this one).
    assert 86400 - 60 <= doc["ttl"] <= 86400
    assert doc["createdAt"] == "2026-11-01T04:00:03.000000Z"
    assert doc["expiresAt"] == "2026-11-01T04:00:03.000042Z"
    assert (doc["jobId"], doc["productId"], doc["kind"], doc["status"]) == (job_id, "prod-a", "log", "ACTIVE")
    decoded = from_document(doc).pointer
    assert decoded == p
    assert decoded.created_at.tzinfo is not None and decoded.created_at.utcoffset() == timedelta(0)


async def test_foreign_continuation_tokens_are_invalid_input(
    target: Target, store: CosmosPointerStore
) -> None:
    j = job()
    await create_all(store, [make(j, n) for n in range(5)])
    query = ListQuery(job_id=j, product_id="prod-a", limit=2)
    token = (await store.list(query)).continuation
    assert token is not None

    fingerprint, _ = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    forged_inner = base64.urlsafe_b64encode(json.dumps([fingerprint, "bm90LWEtdG9rZW4="]).encode()).decode()
    header_breaker = base64.urlsafe_b64encode(json.dumps([fingerprint, "a\r\nx: y"]).encode()).decode()
    if target.gateway is not None:
        target.gateway.stats.reset()
    for bad in ("garbage!", "e30", "WzEsMl0", header_breaker):
        with pytest.raises(InvalidInput) as caught:
            await store.list(msgspec.structs.replace(query, continuation=bad))
        assert caught.value.field == "continuationToken"
    for other in (ListQuery(job_id=j, product_id="prod-b"), ListQuery(job_id=job(), product_id="prod-a")):
        with pytest.raises(InvalidInput):  # issued for another query
            await store.list(msgspec.structs.replace(other, continuation=token))
    if target.gateway is not None:
        assert target.gateway.stats.queries == 0  # all refused by the adapter, before any request
    with pytest.raises(InvalidInput) as caught:  # well-formed wrapper, inner token not Cosmos's: its 400
        await store.list(msgspec.structs.replace(query, continuation=forged_inner))
    assert caught.value.field == "continuationToken"
    # The genuine token still works, and a client may change the page size between pages.
    rest = await store.list(msgspec.structs.replace(query, continuation=token, limit=10))
    assert len(rest.items) == 3 and rest.continuation is None


# -- faults (gateway only) -------------------------------------------------------------------


@pytest.fixture
async def faulty() -> AsyncIterator[tuple[CosmosGateway, CosmosPointerStore]]:
    """A gateway of its own, so leftover injected faults cannot leak into other tests."""
    with CosmosGateway(key=EMULATOR_KEY) as gw:
        target = Target(gw.url, EMULATOR_KEY, "faults", gw)
        pointers = CosmosPointerStore.from_settings(target.settings(cosmos_init_on_start="true"))
        await pointers.open()
        try:
            yield gw, pointers
        finally:
            await pointers.close()


async def test_throttling_beyond_the_sdk_retries_is_unavailable(
    faulty: tuple[CosmosGateway, CosmosPointerStore],
) -> None:
    gw, pointers = faulty
    p = make(job())
    await pointers.create(p)
    gw.stats.reset()
    gw.inject_fault(429, times=1, operation="read_item", headers={"x-ms-retry-after-ms": "5"})
    assert await pointers.get(p.job_id, p.id) is not None  # the SDK's own retry absorbed it
    gw.inject_fault(429, times=10, operation="read_item", headers={"x-ms-retry-after-ms": "5"})
    with pytest.raises(Unavailable, match=r"throttling requests \(429\)") as caught:
        await pointers.get(p.job_id, p.id)
    assert caught.value.retry_after == 1  # from x-ms-retry-after-ms (5 ms), not the default 5 s
    assert gw.stats.faults_injected == 1 + 2  # retry_total=1: one retry per call


async def test_server_errors_are_unavailable(faulty: tuple[CosmosGateway, CosmosPointerStore]) -> None:
    gw, pointers = faulty
    gw.inject_fault(503, times=10, operation="query")
    with pytest.raises(Unavailable, match="Cosmos DB answered 503"):
        await pointers.list(ListQuery(job_id=job(), product_id="prod-a"))
    gw.inject_fault(500, times=10, operation="create_item")
    with pytest.raises(Unavailable, match="Cosmos DB answered 500"):
        await pointers.create(make(job()))


async def test_a_job_from_before_the_journal_starts_from_its_artifacts_totals(
    store: CosmosPointerStore,
) -> None:
    from fleet_artifacts.core.journal import event_of

    job = "pre-" + secrets.token_hex(4)
    old = [make(job, n, size_bytes=10) for n in range(3)]
    for pointer in old:
        await store.create(pointer)  # written as a release without the journal did: no event
    gone = make(job, 9, size_bytes=10, status=ArtifactStatus.DELETED)
    await store.create(gone)  # not visible: not counted
    new = make(job, 20, size_bytes=5)
    event = event_of(None, new, at=datetime.now(UTC), event_id=secrets.token_hex(8))
    await store.create(new, event=event)
    state = await store.job("prod-a", job)
    assert state is not None and (state.artifact_count, state.total_bytes) == (4, 35)
    listed = await store.jobs("prod-a", limit=1000, continuation=None)
    assert job in [s.job_id for s in listed.items]
