"""Transactional batch and the latest-version change feed, through the real SDK over HTTP.

Both run azure-cosmos 4.17.1 (sync and aio) against the Cosmos test gateway. The
gateway serves one partition key range, so the SDK's split/merge handling of
change-feed continuations is not exercised here; run against the real emulator
for that.
"""

from __future__ import annotations

import base64
import json
import random
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.cosmos import ContainerProxy, CosmosClient, PartitionKey
from azure.cosmos import exceptions as cosmos_errors
from azure.cosmos.aio import ContainerProxy as AsyncContainerProxy
from azure.cosmos.aio import CosmosClient as AsyncCosmosClient
from azure.cosmos.partition_key import PartitionKey as SdkPartitionKey

from tests.cosmos_gateway import EMULATOR_KEY, CosmosGateway
from tests.cosmos_gateway.epk import effective_partition_key, murmurhash3_x64_128
from tests.test_cosmos_gateway import cosmos, database, gateway, jobs, raw_request

__all__ = ["cosmos", "database", "gateway", "jobs"]  # fixtures, shared with the gateway's main suite

BatchOp = tuple[str, tuple[Any, ...]] | tuple[str, tuple[Any, ...], dict[str, Any]]
FEED_HEADERS = {"A-IM": "Incremental Feed", "x-ms-documentdb-partitionkeyrangeid": "0"}


def feed_token(container: ContainerProxy | AsyncContainerProxy) -> str:
    """The change-feed continuation the SDK leaves behind after a drained iteration."""
    token = container.client_connection.last_response_headers["etag"]
    assert isinstance(token, str) and token
    return token


def drain(container: ContainerProxy, **kwargs: Any) -> tuple[list[dict[str, Any]], str]:
    items = list(container.query_items_change_feed(**kwargs))
    return items, feed_token(container)


def db_of(container: ContainerProxy) -> str:
    """The database id, from the container link ``dbs/{db}/colls/{c}``."""
    return str(container.container_link.split("/")[1])


def ids(items: Any) -> list[str]:
    return [item["id"] for item in items]


def lsn_of(token: str) -> int:
    """Decodes the SDK's v2 token to the single range's server etag (an LSN)."""
    state = json.loads(base64.b64decode(token))
    ranges = state["continuation"]["continuation"]
    assert len(ranges) == 1
    return int(ranges[0]["token"].strip('"'))


def batch_error(
    container: ContainerProxy, ops: list[BatchOp], pk: str
) -> cosmos_errors.CosmosBatchOperationError:
    with pytest.raises(cosmos_errors.CosmosBatchOperationError) as caught:
        container.execute_item_batch(ops, partition_key=pk)
    return caught.value


# -- transactional batch -------------------------------------------------------------------


def test_batch_returns_every_result_with_documents_and_etags(jobs: ContainerProxy) -> None:
    jobs.create_item({"id": "old", "jobId": "j1", "n": 0})
    patch_ops = [
        {"op": "incr", "path": "/n", "value": 5},
        {"op": "set", "path": "/state", "value": "ready"},
        {"op": "add", "path": "/tags", "value": ["a"]},
        {"op": "replace", "path": "/kind", "value": "blob"},
        {"op": "remove", "path": "/tmp"},
    ]
    ops: list[BatchOp] = [
        ("create", ({"id": "a", "jobId": "j1", "n": 1, "kind": "x", "tmp": True},)),
        ("patch", ("a", patch_ops), {"filter_predicate": "FROM c WHERE c.n = 1"}),
        ("upsert", ({"id": "b", "jobId": "j1"},)),
        ("replace", ("old", {"id": "old", "jobId": "j1", "n": 9})),
        ("read", ("a",)),
        ("delete", ("b",)),
    ]
    results = jobs.execute_item_batch(ops, partition_key="j1")

    assert [r["statusCode"] for r in results] == [201, 200, 201, 200, 200, 204]
    patched = results[1]["resourceBody"]
    assert patched["n"] == 6 and patched["state"] == "ready" and patched["tags"] == ["a"]
    assert patched["kind"] == "blob" and "tmp" not in patched
    assert results[0]["resourceBody"]["_etag"] == results[0]["eTag"] != results[1]["eTag"]
    assert results[4]["resourceBody"] == patched  # the read sees the earlier ops of the same batch
    assert "resourceBody" not in results[5]
    stored = jobs.read_item("a", partition_key="j1")
    assert stored["_etag"] == results[1]["eTag"] and stored["n"] == 6
    assert jobs.read_item("old", partition_key="j1")["n"] == 9
    with pytest.raises(cosmos_errors.CosmosResourceNotFoundError):
        jobs.read_item("b", partition_key="j1")


def test_batch_whose_third_op_conflicts_writes_nothing(gateway: CosmosGateway, jobs: ContainerProxy) -> None:
    existing = jobs.create_item({"id": "c", "jobId": "j1", "n": 1})
    before = gateway.items(db_of(jobs), "jobs")
    ops: list[BatchOp] = [
        ("create", ({"id": "a", "jobId": "j1"},)),
        ("upsert", ({"id": "b", "jobId": "j1"},)),
        ("create", ({"id": "c", "jobId": "j1"},)),
        ("patch", ("c", [{"op": "incr", "path": "/n", "value": 1}])),
    ]
    error = batch_error(jobs, ops, "j1")

    assert error.error_index == 2 and error.status_code == 409
    assert [r["statusCode"] for r in error.operation_responses] == [424, 424, 409, 424]
    assert gateway.items(db_of(jobs), "jobs") == before
    assert jobs.read_item("c", partition_key="j1")["_etag"] == existing["_etag"]
    for missing in ("a", "b"):
        with pytest.raises(cosmos_errors.CosmosResourceNotFoundError):
            jobs.read_item(missing, partition_key="j1")


def test_batch_if_match_etags(jobs: ContainerProxy) -> None:
    first = jobs.create_item({"id": "a", "jobId": "j1", "n": 1})
    ok = jobs.execute_item_batch(
        [("patch", ("a", [{"op": "incr", "path": "/n", "value": 1}]), {"if_match_etag": first["_etag"]})],
        partition_key="j1",
    )
    fresh = ok[0]["eTag"]
    assert fresh != first["_etag"] and ok[0]["resourceBody"]["n"] == 2

    stale: list[BatchOp] = [
        ("create", ({"id": "z", "jobId": "j1"},)),
        ("replace", ("a", {"id": "a", "jobId": "j1", "n": 100}), {"if_match_etag": first["_etag"]}),
    ]
    error = batch_error(jobs, stale, "j1")
    assert (error.error_index, error.status_code) == (1, 412)
    assert [r["statusCode"] for r in error.operation_responses] == [424, 412]
    error = batch_error(jobs, [("delete", ("a",), {"if_match_etag": first["_etag"]})], "j1")
    assert (error.error_index, error.status_code) == (0, 412)

    done = jobs.execute_item_batch([("delete", ("a",), {"if_match_etag": fresh})], partition_key="j1")
    assert done[0]["statusCode"] == 204
    assert ids(jobs.read_all_items()) == []


def test_batch_patch_filter_predicate_that_fails_is_412_for_the_whole_batch(jobs: ContainerProxy) -> None:
    jobs.create_item({"id": "lease", "jobId": "j1", "owner": "w1", "n": 0})
    ops: list[BatchOp] = [
        ("create", ({"id": "new", "jobId": "j1"},)),
        (
            "patch",
            ("lease", [{"op": "incr", "path": "/n", "value": 1}]),
            {"filter_predicate": "FROM c WHERE c.owner = 'w2'"},
        ),
    ]
    error = batch_error(jobs, ops, "j1")
    assert (error.error_index, error.status_code) == (1, 412)
    assert [r["statusCode"] for r in error.operation_responses] == [424, 412]
    assert ids(jobs.read_all_items()) == ["lease"]
    assert jobs.read_item("lease", partition_key="j1")["n"] == 0


def test_batch_missing_item_and_wrong_partition_fail_at_their_index(jobs: ContainerProxy) -> None:
    error = batch_error(jobs, [("create", ({"id": "a", "jobId": "j1"},)), ("read", ("ghost",))], "j1")
    assert (error.error_index, error.status_code) == (1, 404)

    error = batch_error(jobs, [("create", ({"id": "a", "jobId": "other"},))], "j1")
    assert (error.error_index, error.status_code) == (0, 400)
    assert error.operation_responses[0]["subStatusCode"] == 1001
    assert ids(jobs.read_all_items()) == []


def test_batch_limit_is_100_operations(gateway: CosmosGateway, jobs: ContainerProxy) -> None:
    too_many: list[BatchOp] = [("create", ({"id": f"i{n}", "jobId": "j1"},)) for n in range(101)]
    with pytest.raises(cosmos_errors.CosmosHttpResponseError) as caught:
        jobs.execute_item_batch(too_many, partition_key="j1")
    assert caught.value.status_code == 400
    assert not isinstance(caught.value, cosmos_errors.CosmosBatchOperationError)
    assert ids(jobs.read_all_items()) == []

    results = jobs.execute_item_batch(too_many[:100], partition_key="j1")
    assert len(results) == 100 and {r["statusCode"] for r in results} == {201}
    assert len(ids(jobs.read_all_items())) == 100

    # On the wire: a JSON list in, a JSON list out; non-atomic (bulk) batches are refused loudly.
    batch_headers = {"x-ms-cosmos-is-batch-request": "True", "x-ms-documentdb-partitionkey": '["j1"]'}
    path, read = f"/dbs/{db_of(jobs)}/colls/jobs/docs/", [{"operationType": "Read", "id": "i7"}]
    status, _, body = raw_request(
        gateway, "POST", path, read, headers={**batch_headers, "x-ms-cosmos-batch-atomic": "True"}
    )
    assert status == 200 and body[0]["statusCode"] == 200 and body[0]["resourceBody"]["id"] == "i7"
    status, _, _ = raw_request(
        gateway, "POST", path, read, headers={**batch_headers, "x-ms-cosmos-batch-atomic": "False"}
    )
    assert status == 400


def test_faults_can_target_batches_only(gateway: CosmosGateway, jobs: ContainerProxy) -> None:
    gateway.stats.reset()
    gateway.inject_fault(429, operation="batch", headers={"x-ms-retry-after-ms": "5"})
    jobs.execute_item_batch([("create", ({"id": "retried", "jobId": "j1"},))], partition_key="j1")
    # The SDK retried the 429: two requests, only the second one reached the batch handler.
    assert (gateway.stats.faults_injected, gateway.stats.requests, gateway.stats.batches) == (1, 2, 1)

    gateway.inject_fault(400, operation="batch")
    jobs.create_item({"id": "plain", "jobId": "j1"})  # not a batch: the fault stays pending
    with pytest.raises(cosmos_errors.CosmosHttpResponseError) as caught:
        jobs.execute_item_batch([("create", ({"id": "lost", "jobId": "j1"},))], partition_key="j1")
    assert caught.value.status_code == 400
    assert sorted(ids(jobs.read_all_items())) == ["plain", "retried"]


# -- change feed -----------------------------------------------------------------------------


def test_feed_from_beginning_is_lsn_ordered_latest_versions_without_deletes(jobs: ContainerProxy) -> None:
    jobs.create_item({"id": "a", "jobId": "j1", "v": 1})
    jobs.create_item({"id": "b", "jobId": "j2", "v": 1})
    jobs.create_item({"id": "gone", "jobId": "j1"})
    jobs.create_item({"id": "c", "jobId": "j1", "v": 1})
    jobs.upsert_item({"id": "a", "jobId": "j1", "v": 2})
    jobs.patch_item("a", "j1", [{"op": "set", "path": "/v", "value": 3}])
    jobs.delete_item("gone", partition_key="j1")

    items, token = drain(jobs, start_time="Beginning")
    assert ids(items) == ["b", "c", "a"]  # each item once, at its latest version, in LSN order
    assert items[2]["v"] == 3
    lsns = [item["_lsn"] for item in items]
    assert lsns == sorted(lsns) and len(set(lsns)) == 3
    assert lsn_of(token) == lsns[-1]
    assert "_lsn" not in jobs.read_item("a", partition_key="j1")  # like Cosmos: feed-only field

    again, token_again = drain(jobs, continuation=token)
    assert again == [] and lsn_of(token_again) == lsn_of(token)


def test_resume_never_misses_or_repeats_a_write_while_writes_interleave(jobs: ContainerProxy) -> None:
    rng = random.Random(20240601)
    counter = iter(range(1, 10_000))
    live: dict[str, int] = {}  # id -> v of its latest write
    seen: set[tuple[str, int]] = set()
    consumer: dict[str, int] = {}

    def write(touched: set[str]) -> None:
        action = rng.choice(["create", "upsert", "patch", "batch", "delete"])
        pk = rng.choice(["j1", "j2"])
        existing = [i for i in live if i.startswith(pk)]
        if action in ("patch", "delete") and not existing:
            action = "create"
        if action in ("create", "upsert"):
            item_id = f"{pk}-{next(counter)}" if action == "create" else rng.choice([*existing, f"{pk}-u"])
            v = next(counter)
            jobs.upsert_item({"id": item_id, "jobId": pk, "v": v})
            live[item_id] = v
            touched.add(item_id)
        elif action == "patch":
            item_id, v = rng.choice(existing), next(counter)
            jobs.patch_item(item_id, pk, [{"op": "set", "path": "/v", "value": v}])
            live[item_id] = v
            touched.add(item_id)
        elif action == "delete":
            item_id = rng.choice(existing)
            jobs.delete_item(item_id, partition_key=pk)
            del live[item_id]
            touched.discard(item_id)
        else:
            new_id, v1, v2 = f"{pk}-{next(counter)}", next(counter), next(counter)
            jobs.execute_item_batch(
                [
                    ("create", ({"id": new_id, "jobId": pk, "v": v1},)),
                    ("patch", (new_id, [{"op": "set", "path": "/v", "value": v2}])),
                ],
                partition_key=pk,
            )
            live[new_id] = v2
            touched.add(new_id)

    _, token = drain(jobs, start_time="Now")
    for _ in range(15):
        touched: set[str] = set()
        for _ in range(rng.randint(1, 8)):
            write(touched)
        got: list[dict[str, Any]] = []
        for number, page in enumerate(
            jobs.query_items_change_feed(continuation=token, max_item_count=3).by_page()
        ):
            got.extend(page)
            if number == 0:
                write(touched)  # lands between two page requests of the same drain
        token = feed_token(jobs)
        for doc in got:
            assert (doc["id"], doc["v"]) not in seen, "a write was delivered twice"
            seen.add((doc["id"], doc["v"]))
            consumer[doc["id"]] = doc["v"]
        for item_id in touched:
            assert consumer[item_id] == live[item_id], f"missed the latest write of {item_id}"
    assert {item_id: consumer[item_id] for item_id in live} == live


def test_partition_key_feed_sees_only_its_logical_partition(jobs: ContainerProxy) -> None:
    for n in range(15):
        jobs.create_item({"id": f"x{n}", "jobId": "j1"})
        jobs.create_item({"id": f"y{n}", "jobId": "j2"})
        jobs.create_item({"id": f"z{n}", "jobId": n})  # numeric keys hash differently

    j1, token = drain(jobs, partition_key="j1", start_time="Beginning")
    assert ids(j1) == [f"x{n}" for n in range(15)]
    assert ids(jobs.query_items_change_feed(partition_key=3, start_time="Beginning")) == ["z3"]

    jobs.upsert_item({"id": "y0", "jobId": "j2", "touched": True})
    nothing, unchanged = drain(jobs, continuation=token)
    assert nothing == [] and lsn_of(unchanged) == lsn_of(token)  # 304 leaves the position where it was
    jobs.upsert_item({"id": "x4", "jobId": "j1", "touched": True})
    jobs.create_item({"id": "x99", "jobId": "j1"})
    resumed, _ = drain(jobs, continuation=token)
    assert ids(resumed) == ["x4", "x99"] and resumed[0]["touched"] is True


def test_start_now_yields_nothing_then_only_later_writes_and_304_keeps_the_etag(
    gateway: CosmosGateway, jobs: ContainerProxy
) -> None:
    jobs.create_item({"id": "before", "jobId": "j1"})
    gateway.stats.reset()
    nothing, token = drain(jobs, start_time="Now")
    assert nothing == [] and gateway.stats.change_feed_reads == 1

    jobs.create_item({"id": "after", "jobId": "j2"})
    later, token = drain(jobs, continuation=token)
    assert ids(later) == ["after"]

    db = db_of(jobs)
    position = f'"{lsn_of(token)}"'
    status, headers, body = raw_request(
        gateway, "GET", f"/dbs/{db}/colls/jobs/docs/", headers={**FEED_HEADERS, "If-None-Match": position}
    )
    assert (status, headers["etag"], body) == (304, position, None)
    status, headers, _ = raw_request(
        gateway, "GET", f"/dbs/{db}/colls/jobs/docs/", headers={**FEED_HEADERS, "If-None-Match": '"0"'}
    )
    assert status == 200 and headers["etag"] == position


def test_max_item_count_pages_the_feed(gateway: CosmosGateway, jobs: ContainerProxy) -> None:
    for n in range(7):
        jobs.create_item({"id": f"i{n}", "jobId": f"j{n % 3}"})
    gateway.stats.reset()
    pages = [
        ids(page) for page in jobs.query_items_change_feed(start_time="Beginning", max_item_count=2).by_page()
    ]
    assert pages == [["i0", "i1"], ["i2", "i3"], ["i4", "i5"], ["i6"]]
    assert gateway.stats.change_feed_reads == 5  # four pages, then the 304 that ends the drain


def test_plain_etag_continuation_and_unsupported_modes(gateway: CosmosGateway, jobs: ContainerProxy) -> None:
    for n in range(4):
        jobs.create_item({"id": f"i{n}", "jobId": "j1"})
    # A bare LSN etag is accepted as a v1 continuation (no range id: the whole container).
    assert ids(jobs.query_items_change_feed(continuation='"2"')) == ["i2", "i3"]

    with pytest.raises(cosmos_errors.CosmosHttpResponseError) as caught:
        list(jobs.query_items_change_feed(mode="AllVersionsAndDeletes", start_time="Now"))
    assert caught.value.status_code == 400

    db = db_of(jobs)
    headers = {**FEED_HEADERS, "x-ms-documentdb-partitionkeyrangeid": "7"}
    status, answer, _ = raw_request(gateway, "GET", f"/dbs/{db}/colls/jobs/docs/", headers=headers)
    assert (status, answer.get("x-ms-substatus")) == (410, "1002")


def test_batch_writes_get_lsns_and_a_failed_batch_consumes_none(jobs: ContainerProxy) -> None:
    _, token = drain(jobs, start_time="Now")
    jobs.execute_item_batch(
        [("create", ({"id": "a", "jobId": "j1"},)), ("create", ({"id": "b", "jobId": "j1"},))],
        partition_key="j1",
    )
    batch_items, token = drain(jobs, continuation=token)
    assert ids(batch_items) == ["a", "b"] and batch_items[1]["_lsn"] == batch_items[0]["_lsn"] + 1

    batch_error(
        jobs, [("create", ({"id": "c", "jobId": "j1"},)), ("create", ({"id": "a", "jobId": "j1"},))], "j1"
    )
    nothing, after_failure = drain(jobs, continuation=token)
    assert nothing == [] and lsn_of(after_failure) == lsn_of(token)
    jobs.create_item({"id": "d", "jobId": "j1"})
    assert [i["_lsn"] for i in drain(jobs, continuation=token)[0]] == [batch_items[1]["_lsn"] + 1]


def test_ttl_expired_items_leave_the_feed() -> None:
    now = [2_000_000.0]
    with CosmosGateway(clock=lambda: now[0]) as gw, CosmosClient(gw.url, EMULATOR_KEY) as client:
        container = client.create_database("ttl").create_container("c", PartitionKey("/p"), default_ttl=60)
        container.create_item({"id": "short", "p": "x", "ttl": 10})
        container.create_item({"id": "long", "p": "x"})
        assert ids(container.query_items_change_feed(start_time="Beginning")) == ["short", "long"]
        now[0] += 11
        assert ids(container.query_items_change_feed(start_time="Beginning")) == ["long"]


def test_point_in_time_start_returns_items_written_since() -> None:
    now = [3_000_000.0]
    with CosmosGateway(clock=lambda: now[0]) as gw, CosmosClient(gw.url, EMULATOR_KEY) as client:
        container = client.create_database("pit").create_container("c", PartitionKey("/p"))
        container.create_item({"id": "old", "p": "x"})
        container.create_item({"id": "touched", "p": "y"})
        now[0] += 10
        container.create_item({"id": "new", "p": "x"})
        container.upsert_item({"id": "touched", "p": "y", "again": True})
        since = datetime.fromtimestamp(now[0] - 5, tz=UTC)
        assert ids(container.query_items_change_feed(start_time=since)) == ["new", "touched"]


def test_effective_partition_key_matches_the_sdk_and_reference_vectors() -> None:
    # Reference MurmurHash3 x64 128 (seed 0): the empty input hashes to zero.
    assert murmurhash3_x64_128(b"") == (0, 0)
    hash_v2 = {"paths": ["/jobId"], "kind": "Hash", "version": 2}
    # Recorded from the SDK's x-ms-start-epk for partition_key="j1".
    assert effective_partition_key(["j1"], hash_v2) == "300725B99484145AA605839F9097D76C"
    sdk = SdkPartitionKey(path="/jobId", kind="Hash", version=2)
    samples: list[Any] = [
        "",
        "j1",
        "é-ü",
        "x" * 15,
        "x" * 16,
        "x" * 17,
        "x" * 300,
        0,
        5,
        5.5,
        -1e300,
        True,
        False,
        None,
    ]
    for value in samples:
        assert effective_partition_key([value], hash_v2) == sdk._get_epk_range_for_partition_key(value).min
    multi = {"paths": ["/a", "/b"], "kind": "MultiHash", "version": 2}
    sdk_multi = SdkPartitionKey(path=["/a", "/b"], kind="MultiHash", version=2)
    assert (
        effective_partition_key(["t", 7], multi) == sdk_multi._get_epk_range_for_partition_key(["t", 7]).min
    )


# -- aio client ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_async_batch_and_change_feed_resume(gateway: CosmosGateway) -> None:
    name = "db-" + uuid.uuid4().hex[:12]
    async with AsyncCosmosClient(gateway.url, EMULATOR_KEY) as client:
        db = await client.create_database(name)
        container = await db.create_container("jobs", PartitionKey("/jobId"))
        results = await container.execute_item_batch(
            [
                ("create", ({"id": "counter", "jobId": "j1", "n": 1, "owner": "w1"},)),
                (
                    "patch",
                    ("counter", [{"op": "incr", "path": "/n", "value": 41}]),
                    {"filter_predicate": "FROM c WHERE c.owner = 'w1'"},
                ),
            ],
            partition_key="j1",
        )
        assert [r["statusCode"] for r in results] == [201, 200]
        assert (
            results[1]["resourceBody"]["n"] == 42
            and results[1]["resourceBody"]["_etag"] == results[1]["eTag"]
        )

        with pytest.raises(cosmos_errors.CosmosBatchOperationError) as caught:
            await container.execute_item_batch(
                [
                    ("upsert", ({"id": "other", "jobId": "j1"},)),
                    (
                        "patch",
                        ("counter", [{"op": "incr", "path": "/n", "value": 1}]),
                        {"if_match_etag": '"stale"'},
                    ),
                ],
                partition_key="j1",
            )
        assert (caught.value.error_index, caught.value.status_code) == (1, 412)
        assert [item["id"] async for item in container.read_all_items()] == ["counter"]

        await container.create_item({"id": "elsewhere", "jobId": "j2"})
        first = [item["id"] async for item in container.query_items_change_feed(start_time="Beginning")]
        token = feed_token(container)
        assert first == ["counter", "elsewhere"]

        await container.upsert_item({"id": "elsewhere", "jobId": "j2", "n": 2})
        await container.create_item({"id": "third", "jobId": "j1"})
        resumed = [item async for item in container.query_items_change_feed(continuation=token)]
        assert ids(resumed) == ["elsewhere", "third"] and resumed[0]["n"] == 2
        token = feed_token(container)
        assert [item async for item in container.query_items_change_feed(continuation=token)] == []

        scoped = container.query_items_change_feed(
            partition_key="j1", start_time="Beginning", max_item_count=1
        )
        assert [item["id"] async for item in scoped] == ["counter", "third"]
        await client.delete_database(name)
