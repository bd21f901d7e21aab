"""The Cosmos test gateway, exercised with the real azure-cosmos SDK over HTTP.

What these tests cannot prove: the gateway evaluates ORDER BY, COUNT, TOP and
OFFSET/LIMIT itself, so the SDK's client-side query-plan/merge paths (used by
the real service for cross-partition queries) never run here. Run the store's
contract tests against the real emulator for those.
"""

from __future__ import annotations

import base64
import http.client
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from azure.core import MatchConditions
from azure.cosmos import ContainerProxy, CosmosClient, DatabaseProxy, PartitionKey
from azure.cosmos import exceptions as cosmos_errors
from azure.cosmos.aio import CosmosClient as AsyncCosmosClient

from tests.cosmos_gateway import EMULATOR_KEY, CosmosGateway
from tests.cosmos_gateway.auth import resource_type_and_link, sign

REPO_ROOT = Path(__file__).resolve().parent.parent

# Mirrors the pointer store: newest first, id as tie-break, which Cosmos only
# serves with a matching composite index.
INDEXING_POLICY: dict[str, Any] = {
    "indexingMode": "consistent",
    "automatic": True,
    "includedPaths": [{"path": "/*"}],
    "excludedPaths": [{"path": '/"_etag"/?'}],
    "compositeIndexes": [
        [{"path": "/createdAt", "order": "descending"}, {"path": "/id", "order": "descending"}],
    ],
}


@pytest.fixture(scope="module")
def gateway() -> Iterator[CosmosGateway]:
    with CosmosGateway(key=EMULATOR_KEY) as gw:
        yield gw


@pytest.fixture(scope="module")
def cosmos(gateway: CosmosGateway) -> Iterator[CosmosClient]:
    with CosmosClient(gateway.url, EMULATOR_KEY) as client:
        yield client


@pytest.fixture
def database(cosmos: CosmosClient) -> Iterator[DatabaseProxy]:
    name = "db-" + uuid.uuid4().hex[:12]
    yield cosmos.create_database(name)
    cosmos.delete_database(name)


@pytest.fixture
def jobs(database: DatabaseProxy) -> ContainerProxy:
    return database.create_container(
        "jobs", PartitionKey("/jobId"), default_ttl=-1, indexing_policy=INDEXING_POLICY
    )


def raw_request(
    gw: CosmosGateway,
    verb: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    key: str = EMULATOR_KEY,
) -> tuple[int, dict[str, str], Any]:
    """Sends one correctly signed request without the SDK, to reach odd corners."""
    segments = [part for part in path.split("/") if part]
    resource_type, link = resource_type_and_link(segments)
    date = formatdate(usegmt=True)
    signature = sign(base64.b64decode(key), verb, resource_type, link, date)
    all_headers = {
        "x-ms-date": date,
        "x-ms-version": "2020-07-15",
        "authorization": quote(f"type=master&ver=1.0&sig={signature}", safe="-_.!~*'()"),
        "Content-Type": "application/json",
        **(headers or {}),
    }
    payload = None if body is None else json.dumps(body).encode()
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
    try:
        conn.request(verb, path, body=payload, headers=all_headers)
        response = conn.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, json.loads(data or b"null")
    finally:
        conn.close()


def ids(items: Any) -> list[str]:
    return [item["id"] for item in items]


def values(items: Any) -> list[Any]:
    """Materialises SDK results whose static type (dicts) hides SELECT VALUE scalars."""
    return list(items)


def continuation_of(pager: Any) -> str:
    """Reads ``continuation_token`` from a ``by_page()`` iterator (untyped in the SDK)."""
    token = pager.continuation_token
    assert isinstance(token, str) and token
    return token


IF_NOT_MODIFIED = MatchConditions.IfNotModified


# -- auth and resources ------------------------------------------------------


def test_wrong_key_gets_401_and_right_key_works(gateway: CosmosGateway) -> None:
    wrong_key = base64.b64encode(b"not-the-key" * 6).decode()
    with pytest.raises(cosmos_errors.CosmosHttpResponseError) as caught, CosmosClient(gateway.url, wrong_key):
        pytest.fail("the client should not even start with a wrong key")
    assert caught.value.status_code == 401
    assert "authorization token" in str(caught.value)

    with CosmosClient(gateway.url, EMULATOR_KEY) as client:
        name = "db-" + uuid.uuid4().hex[:12]
        client.create_database(name)
        assert name in [db["id"] for db in client.list_databases()]
        client.delete_database(name)


def test_unsigned_and_stale_requests_are_rejected(gateway: CosmosGateway) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=5)
    conn.request("GET", "/dbs")
    response = conn.getresponse()
    assert response.status == 401
    assert json.loads(response.read())["code"] == "Unauthorized"
    conn.close()

    stale = formatdate(time.time() - 3600, usegmt=True)
    signature = sign(base64.b64decode(EMULATOR_KEY), "GET", "dbs", "", stale)
    headers = {"x-ms-date": stale, "authorization": quote(f"type=master&ver=1.0&sig={signature}")}
    status, _, body = raw_request(gateway, "GET", "/dbs/", headers=headers)
    assert status == 401
    assert "current time" in body["message"]


def test_create_if_not_exists_is_idempotent_and_echoes_properties(cosmos: CosmosClient) -> None:
    name = "db-" + uuid.uuid4().hex[:12]
    try:
        first = cosmos.create_database_if_not_exists(name)
        second = cosmos.create_database_if_not_exists(name)
        assert first.read()["_rid"] == second.read()["_rid"]

        containers = [
            first.create_container_if_not_exists(
                "jobs", PartitionKey("/jobId"), default_ttl=-1, indexing_policy=INDEXING_POLICY
            )
            for _ in range(2)
        ]
        props = containers[1].read()
        assert props["id"] == "jobs"
        assert props["partitionKey"]["paths"] == ["/jobId"]
        assert props["partitionKey"]["kind"] == "Hash"
        assert props["defaultTtl"] == -1
        assert props["indexingPolicy"] == INDEXING_POLICY
        assert {"_rid", "_self", "_etag", "_ts"} <= props.keys()
        assert [c["id"] for c in first.list_containers()] == ["jobs"]

        with pytest.raises(cosmos_errors.CosmosResourceExistsError):
            cosmos.create_database(name)
        with pytest.raises(cosmos_errors.CosmosResourceExistsError):
            first.create_container("jobs", PartitionKey("/jobId"))
    finally:
        cosmos.delete_database(name)
    with pytest.raises(cosmos_errors.CosmosResourceNotFoundError):
        cosmos.get_database_client(name).read()


def test_replace_container_keeps_partition_key(database: DatabaseProxy, jobs: ContainerProxy) -> None:
    database.replace_container(
        jobs, PartitionKey("/jobId"), default_ttl=3600, indexing_policy=INDEXING_POLICY
    )
    assert jobs.read()["defaultTtl"] == 3600
    with pytest.raises(cosmos_errors.CosmosHttpResponseError) as caught:
        database.replace_container(jobs, PartitionKey("/other"))
    assert caught.value.status_code == 400


# -- items -----------------------------------------------------------------------


def test_item_crud_round_trip(jobs: ContainerProxy) -> None:
    created = jobs.create_item({"id": "a1", "jobId": "job-1", "name": "first"})
    assert created["name"] == "first"
    assert created["_etag"].startswith('"') and created["_etag"].endswith('"')
    assert {"_rid", "_self", "_ts"} <= created.keys()

    read = jobs.read_item("a1", partition_key="job-1")
    assert read["name"] == "first" and read["_etag"] == created["_etag"]

    replaced = jobs.replace_item("a1", {"id": "a1", "jobId": "job-1", "name": "second"})
    assert replaced["name"] == "second"
    assert replaced["_etag"] != created["_etag"]
    assert replaced["_rid"] == created["_rid"]

    upserted = jobs.upsert_item({"id": "a1", "jobId": "job-1", "name": "third"})
    assert upserted["_etag"] != replaced["_etag"]
    jobs.upsert_item({"id": "a2", "jobId": "job-1", "name": "new"})
    assert sorted(ids(jobs.read_all_items())) == ["a1", "a2"]

    jobs.delete_item("a1", partition_key="job-1")
    with pytest.raises(cosmos_errors.CosmosResourceNotFoundError):
        jobs.read_item("a1", partition_key="job-1")
    with pytest.raises(cosmos_errors.CosmosResourceNotFoundError):
        jobs.delete_item("a1", partition_key="job-1")
    with pytest.raises(cosmos_errors.CosmosResourceNotFoundError):
        jobs.replace_item("a1", {"id": "a1", "jobId": "job-1"})


def test_duplicate_id_conflicts_only_within_its_partition(jobs: ContainerProxy) -> None:
    jobs.create_item({"id": "same", "jobId": "job-1", "v": 1})
    with pytest.raises(cosmos_errors.CosmosResourceExistsError) as caught:
        jobs.create_item({"id": "same", "jobId": "job-1", "v": 2})
    assert caught.value.status_code == 409

    jobs.create_item({"id": "same", "jobId": "job-2", "v": 3})
    assert jobs.read_item("same", partition_key="job-1")["v"] == 1
    assert jobs.read_item("same", partition_key="job-2")["v"] == 3


def test_read_missing_item_is_404(jobs: ContainerProxy) -> None:
    with pytest.raises(cosmos_errors.CosmosResourceNotFoundError) as caught:
        jobs.read_item("nope", partition_key="job-1")
    assert caught.value.status_code == 404
    jobs.create_item({"id": "there", "jobId": "job-1"})
    with pytest.raises(cosmos_errors.CosmosResourceNotFoundError):
        jobs.read_item("there", partition_key="job-2")


def test_stale_etag_is_412_for_replace_upsert_and_delete(jobs: ContainerProxy) -> None:
    v1 = jobs.create_item({"id": "doc", "jobId": "job-1", "n": 1})
    v2 = jobs.replace_item(
        "doc", {"id": "doc", "jobId": "job-1", "n": 2}, etag=v1["_etag"], match_condition=IF_NOT_MODIFIED
    )
    stale: dict[str, Any] = {"etag": v1["_etag"], "match_condition": IF_NOT_MODIFIED}
    with pytest.raises(cosmos_errors.CosmosAccessConditionFailedError) as caught:
        jobs.replace_item("doc", {"id": "doc", "jobId": "job-1", "n": 3}, **stale)
    assert caught.value.status_code == 412
    with pytest.raises(cosmos_errors.CosmosAccessConditionFailedError):
        jobs.upsert_item({"id": "doc", "jobId": "job-1", "n": 3}, **stale)
    with pytest.raises(cosmos_errors.CosmosAccessConditionFailedError):
        jobs.delete_item("doc", partition_key="job-1", **stale)
    assert jobs.read_item("doc", partition_key="job-1")["n"] == 2

    jobs.delete_item("doc", partition_key="job-1", etag=v2["_etag"], match_condition=IF_NOT_MODIFIED)


def test_patch_applies_operations_and_honours_condition(jobs: ContainerProxy) -> None:
    jobs.create_item({"id": "p", "jobId": "job-1", "n": 1, "tags": ["a"], "gone": True})
    patched = jobs.patch_item(
        "p",
        partition_key="job-1",
        patch_operations=[
            {"op": "incr", "path": "/n", "value": 4},
            {"op": "set", "path": "/state", "value": "done"},
            {"op": "add", "path": "/tags/-", "value": "b"},
            {"op": "remove", "path": "/gone"},
        ],
    )
    assert (patched["n"], patched["state"], patched["tags"]) == (5, "done", ["a", "b"])
    assert "gone" not in patched
    with pytest.raises(cosmos_errors.CosmosAccessConditionFailedError):
        jobs.patch_item(
            "p",
            partition_key="job-1",
            patch_operations=[{"op": "set", "path": "/n", "value": 0}],
            filter_predicate="FROM c WHERE c.n > 100",
        )


def test_delete_all_items_by_partition_key_spares_other_partitions(jobs: ContainerProxy) -> None:
    for job in ("job-1", "job-2"):
        for i in range(3):
            jobs.create_item({"id": str(i), "jobId": job})
    jobs.delete_all_items_by_partition_key("job-1")
    assert values(jobs.query_items("SELECT VALUE COUNT(1) FROM c", partition_key="job-1")) == [0]
    assert values(jobs.query_items("SELECT VALUE COUNT(1) FROM c", partition_key="job-2")) == [3]


def test_concurrent_etag_guarded_increments_lose_no_update(
    gateway: CosmosGateway, database: DatabaseProxy, jobs: ContainerProxy
) -> None:
    jobs.create_item({"id": "counter", "jobId": "job-1", "n": 0})
    conflicts: list[int] = []

    def bump(times: int) -> None:
        with CosmosClient(gateway.url, EMULATOR_KEY) as client:
            container = client.get_database_client(database.id).get_container_client("jobs")
            done = 0
            while done < times:
                doc = container.read_item("counter", partition_key="job-1")
                doc["n"] += 1
                try:
                    container.replace_item("counter", doc, etag=doc["_etag"], match_condition=IF_NOT_MODIFIED)
                    done += 1
                except cosmos_errors.CosmosAccessConditionFailedError:
                    conflicts.append(1)

    threads = [threading.Thread(target=bump, args=(15,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert jobs.read_item("counter", partition_key="job-1")["n"] == 60
    assert conflicts, "four writers on one item should have collided at least once"


def test_partition_key_header_must_match_document(gateway: CosmosGateway, jobs: ContainerProxy) -> None:
    path = f"/{jobs.container_link.strip('/')}/docs/"
    status, headers, body = raw_request(
        gateway,
        "POST",
        path,
        body={"id": "x", "jobId": "job-1"},
        headers={"x-ms-documentdb-partitionkey": '["job-2"]'},
    )
    assert status == 400
    assert headers["x-ms-substatus"] == "1001"
    assert "doesn't match" in body["message"]

    status, _, body = raw_request(gateway, "POST", path, body={"id": "x", "jobId": "job-1"})
    assert status == 400
    assert "PartitionKey value must be supplied" in body["message"]


def test_unknown_routes_and_verbs_answer_json_errors(gateway: CosmosGateway, jobs: ContainerProxy) -> None:
    db = jobs.container_link.split("/")[1]
    status, _, body = raw_request(gateway, "GET", "/offers/")
    assert status == 404 and body["code"] == "NotFound"
    status, _, body = raw_request(gateway, "POST", "/")
    assert status == 405 and "POST" in body["message"]
    status, _, body = raw_request(gateway, "DELETE", f"/dbs/{db}/colls/")
    assert status == 405
    status, _, body = raw_request(gateway, "GET", f"/dbs/{db}/colls/jobs/sprocs/")
    assert status == 404
    status, _, body = raw_request(
        gateway,
        "GET",
        f"/dbs/{db}/colls/missing/docs/x/",
        headers={"x-ms-documentdb-partitionkey": '["job-1"]'},
    )
    assert status == 404 and "missing" in body["message"]


# -- queries -----------------------------------------------------------------------


def test_single_partition_query_never_sees_other_partitions(
    gateway: CosmosGateway, jobs: ContainerProxy
) -> None:
    for job in ("job-A", "job-B"):
        for i in range(3):
            jobs.create_item({"id": f"{job}-{i}", "jobId": job, "status": "ready"})
    query = "SELECT * FROM c WHERE c.status = 'ready' OR c.jobId = 'job-B'"
    found = list(jobs.query_items(query, partition_key="job-A"))
    assert sorted(ids(found)) == ["job-A-0", "job-A-1", "job-A-2"]
    assert list(jobs.query_items("SELECT * FROM c WHERE c.jobId = 'job-B'", partition_key="job-A")) == []
    assert gateway.stats.query_log[-1].partition_key == '["job-A"]'


def test_order_by_two_fields_desc_with_parameters(jobs: ContainerProxy) -> None:
    rows = [("a", 1), ("b", 3), ("c", 2), ("d", 3), ("e", 2), ("f", 0)]
    for item_id, created in rows:
        jobs.create_item({"id": item_id, "jobId": "job-1", "createdAt": created, "kind": "log"})
    jobs.create_item({"id": "z", "jobId": "job-1", "createdAt": 9, "kind": "other"})
    found = jobs.query_items(
        "SELECT * FROM c WHERE c.kind = @kind AND c.createdAt >= @since ORDER BY c.createdAt DESC, c.id DESC",
        parameters=[{"name": "@kind", "value": "log"}, {"name": "@since", "value": 1}],
        partition_key="job-1",
    )
    assert ids(found) == ["d", "b", "e", "c", "a"]
    ascending = jobs.query_items(
        "SELECT VALUE c.id FROM c WHERE c.kind = 'log' ORDER BY c.createdAt ASC, c.id ASC",
        partition_key="job-1",
    )
    assert values(ascending) == ["f", "a", "c", "e", "b", "d"]


def test_multi_field_order_by_needs_a_composite_index(database: DatabaseProxy) -> None:
    plain = database.create_container("plain", PartitionKey("/jobId"))
    plain.create_item({"id": "1", "jobId": "j", "createdAt": 1})
    with pytest.raises(cosmos_errors.CosmosHttpResponseError) as caught:
        list(plain.query_items("SELECT * FROM c ORDER BY c.createdAt DESC, c.id DESC", partition_key="j"))
    assert caught.value.status_code == 400
    assert "composite index" in str(caught.value)
    assert ids(plain.query_items("SELECT * FROM c ORDER BY c.createdAt DESC", partition_key="j")) == ["1"]


def test_where_clause_operators_paths_and_functions(jobs: ContainerProxy) -> None:
    docs: list[dict[str, Any]] = [
        {"id": "1", "n": 1, "meta": {"owner": "ann"}, "tags": {"env": "prod"}, "labels": ["x", "y"]},
        {"id": "2", "n": 2, "meta": {"owner": "bob"}, "tags": {"env": "dev"}, "labels": ["y"]},
        {"id": "3", "n": "3", "meta": {"owner": "ann"}, "odd key": True},
        {"id": "4", "n": None},
    ]
    for doc in docs:
        jobs.create_item({**doc, "jobId": "job-1"})

    def query(sql: str, **params: Any) -> list[str]:
        parameters = [{"name": f"@{k}", "value": v} for k, v in params.items()]
        return sorted(ids(jobs.query_items(sql, parameters=parameters, partition_key="job-1")))

    assert query("SELECT * FROM c WHERE c.meta.owner = @o", o="ann") == ["1", "3"]
    assert query('SELECT * FROM c WHERE c.tags["env"] = "prod"') == ["1"]
    assert query('SELECT * FROM c WHERE c["odd key"] = true') == ["3"]
    assert query("SELECT * FROM c WHERE c.n > 1") == ["2"]  # "3" is a string: undefined, excluded
    assert query("SELECT * FROM c WHERE c.n != 1") == ["2"]  # mixed types are undefined, not "not equal"
    assert query("SELECT * FROM c WHERE c.n <> 2 AND IS_NUMBER(c.n)") == ["1"]
    assert query("SELECT * FROM c WHERE NOT (c.n = 1 OR c.n = 2)") == []
    assert query("SELECT * FROM c WHERE NOT IS_DEFINED(c.meta)") == ["4"]
    assert query("SELECT * FROM c WHERE IS_NULL(c.n)") == ["4"]
    assert query("SELECT * FROM c WHERE ARRAY_CONTAINS(c.labels, @l)", l="x") == ["1"]
    assert query("SELECT * FROM c WHERE c.n IN (1, 2, '3')") == ["1", "2", "3"]
    assert query("SELECT * FROM c WHERE c.n <= 2 AND c.n >= 2") == ["2"]
    assert query("SELECT * FROM c WHERE STARTSWITH(c.meta.owner, 'A', true)") == ["1", "3"]
    assert query("SELECT * FROM c WHERE c.n = null") == ["4"]


def test_value_count_top_and_offset_limit(gateway: CosmosGateway, jobs: ContainerProxy) -> None:
    for i in range(10):
        jobs.create_item({"id": f"{i:02}", "jobId": "job-1" if i < 7 else "job-2", "i": i})
    assert values(jobs.query_items("SELECT VALUE COUNT(1) FROM c", partition_key="job-1")) == [7]
    none = jobs.query_items("SELECT VALUE COUNT(1) FROM c WHERE c.i > 100", partition_key="job-1")
    assert values(none) == [0]
    top = jobs.query_items("SELECT TOP 3 * FROM c ORDER BY c.i DESC", partition_key="job-1")
    assert ids(top) == ["06", "05", "04"]
    top_param = jobs.query_items(
        "SELECT TOP @n c.id FROM c ORDER BY c.i",
        parameters=[{"name": "@n", "value": 2}],
        partition_key="job-1",
    )
    assert list(top_param) == [{"id": "00"}, {"id": "01"}]
    window = jobs.query_items("SELECT * FROM c ORDER BY c.i OFFSET 2 LIMIT 3", partition_key="job-1")
    assert ids(window) == ["02", "03", "04"]
    paged_window = jobs.query_items(
        "SELECT * FROM c ORDER BY c.i OFFSET 1 LIMIT 5", partition_key="job-1", max_item_count=2
    )
    assert ids(paged_window) == ["01", "02", "03", "04", "05"]
    assert values(jobs.query_items("SELECT VALUE MAX(c.i) FROM c", partition_key="job-1")) == [6]


def test_pagination_is_exactly_once_and_resumes_in_a_new_query(jobs: ContainerProxy) -> None:
    for i in range(1000):
        jobs.create_item({"id": f"item-{i:04}", "jobId": "job-1", "createdAt": i % 17})
    query = "SELECT * FROM c ORDER BY c.createdAt DESC, c.id DESC"
    pager = jobs.query_items(query, partition_key="job-1", max_item_count=37).by_page()
    first_pages = [ids(next(pager)) for _ in range(5)]
    token = continuation_of(pager)
    assert all(len(page) == 37 for page in first_pages)

    resumed = jobs.query_items(query, partition_key="job-1", max_item_count=37).by_page(token)
    rest = [ids(page) for page in resumed]
    assert all(0 < len(page) <= 37 for page in rest)
    seen = [item for page in first_pages + rest for item in page]
    assert len(seen) == 1000 and len(set(seen)) == 1000
    expected = sorted((i % 17, f"item-{i:04}") for i in range(1000))
    assert seen == [item_id for _, item_id in reversed(expected)]


def test_continuation_token_cannot_be_replayed_on_another_query(jobs: ContainerProxy) -> None:
    for i in range(5):
        jobs.create_item({"id": str(i), "jobId": "job-1"})
    pager = jobs.query_items("SELECT * FROM c", partition_key="job-1", max_item_count=2).by_page()
    next(pager)
    token = continuation_of(pager)
    with pytest.raises(cosmos_errors.CosmosHttpResponseError) as caught:
        other = jobs.query_items("SELECT * FROM c WHERE c.id != '9'", partition_key="job-1", max_item_count=2)
        list(other.by_page(token))
    assert caught.value.status_code == 400
    assert "continuation token" in str(caught.value)
    with pytest.raises(cosmos_errors.CosmosHttpResponseError):
        list(jobs.query_items("SELECT * FROM c", partition_key="job-1").by_page("bm90LWEtdG9rZW4="))


def test_paging_while_deleting_returned_items_skips_nothing(jobs: ContainerProxy) -> None:
    for i in range(25):
        jobs.create_item({"id": f"{i:02}", "jobId": "job-1"})
    reaped: list[str] = []
    pager = jobs.query_items("SELECT * FROM c", partition_key="job-1", max_item_count=10).by_page()
    for page in pager:
        for item in page:
            jobs.delete_item(item["id"], partition_key="job-1")
            reaped.append(item["id"])
    assert reaped == [f"{i:02}" for i in range(25)]


def test_cross_partition_queries_are_counted(gateway: CosmosGateway, jobs: ContainerProxy) -> None:
    jobs.create_item({"id": "1", "jobId": "job-1"})
    jobs.create_item({"id": "2", "jobId": "job-2"})
    gateway.stats.reset()

    jobs.read_item("1", partition_key="job-1")
    list(jobs.query_items("SELECT * FROM c", partition_key="job-1"))
    assert gateway.stats.cross_partition_queries == 0
    assert (gateway.stats.point_reads, gateway.stats.queries) == (1, 1)

    everything = jobs.query_items("SELECT VALUE COUNT(1) FROM c", enable_cross_partition_query=True)
    assert values(everything) == [2]
    assert gateway.stats.cross_partition_queries == 1
    assert gateway.stats.query_log[-1].cross_partition

    list(jobs.read_all_items())
    assert gateway.stats.cross_partition_queries == 2
    assert gateway.stats.query_log[-1].feed


def test_sync_query_without_partition_key_or_cross_partition_flag_is_refused(jobs: ContainerProxy) -> None:
    with pytest.raises(cosmos_errors.CosmosHttpResponseError) as caught:
        list(jobs.query_items("SELECT * FROM c"))
    assert caught.value.status_code == 400
    assert "Cross partition query is required but disabled" in str(caught.value)


@pytest.mark.parametrize(
    ("sql", "named"),
    [
        ("SELECT c.jobId, COUNT(1) AS n FROM c GROUP BY c.jobId", "GROUP BY"),
        ("SELECT * FROM c WHERE REGEXMATCH(c.id, 'a.*')", "REGEXMATCH"),
        ("SELECT * FROM c JOIN t IN c.tags", "JOIN"),
        ("SELECT DISTINCT c.jobId FROM c", "DISTINCT"),
        ("SELECT * FROM c WHERE c.n + 1 > 2", "'+'"),
        ("SELECT * FROM c WHERE EXISTS(SELECT VALUE t FROM t IN c.tags)", "EXISTS"),
    ],
)
def test_unsupported_queries_fail_loudly(
    gateway: CosmosGateway, jobs: ContainerProxy, sql: str, named: str
) -> None:
    jobs.create_item({"id": "1", "jobId": "job-1", "tags": []})
    plans_before = gateway.stats.query_plan_requests
    started = time.monotonic()
    for scope in ({"partition_key": "job-1"}, {"enable_cross_partition_query": True}):
        with pytest.raises(cosmos_errors.CosmosHttpResponseError) as caught:
            list(jobs.query_items(sql, **scope))
        assert caught.value.status_code == 400
        assert caught.value.sub_status == 1004
        assert "cannot evaluate this query" in str(caught.value)
        assert named in str(caught.value)
    assert time.monotonic() - started < 5
    # The SDK reacts to 1004 by asking for a query plan; that is refused too.
    assert gateway.stats.query_plan_requests == plans_before + 2


def test_unknown_alias_is_a_plain_bad_request(jobs: ContainerProxy) -> None:
    with pytest.raises(cosmos_errors.CosmosHttpResponseError) as caught:
        list(jobs.query_items("SELECT * FROM c WHERE d.id = '1'", partition_key="job-1"))
    assert caught.value.status_code == 400
    assert "could not be resolved" in str(caught.value)


# -- ttl, faults -----------------------------------------------------------------------


def test_item_ttl_expires_items_from_reads_and_queries(jobs: ContainerProxy) -> None:
    jobs.create_item({"id": "short", "jobId": "job-1", "ttl": 1})
    jobs.create_item({"id": "forever", "jobId": "job-1"})
    assert jobs.read_item("short", partition_key="job-1")["ttl"] == 1
    time.sleep(1.5)
    with pytest.raises(cosmos_errors.CosmosResourceNotFoundError):
        jobs.read_item("short", partition_key="job-1")
    assert ids(jobs.query_items("SELECT * FROM c", partition_key="job-1")) == ["forever"]
    jobs.create_item({"id": "short", "jobId": "job-1"})


def test_ttl_rules_with_a_fake_clock() -> None:
    now = [1_000_000.0]
    with CosmosGateway(clock=lambda: now[0]) as gw, CosmosClient(gw.url, EMULATOR_KEY) as client:
        db = client.create_database("ttl")
        off = db.create_container("off", PartitionKey("/p"))
        default = db.create_container("default", PartitionKey("/p"), default_ttl=60)
        for container in (off, default):
            container.create_item({"id": "plain", "p": "x"})
            container.create_item({"id": "short", "p": "x", "ttl": 10})
            container.create_item({"id": "never", "p": "x", "ttl": -1})
        now[0] += 30
        assert sorted(ids(off.read_all_items())) == ["never", "plain", "short"]  # ttl is ignored when off
        assert sorted(ids(default.read_all_items())) == ["never", "plain"]
        now[0] += 31
        assert ids(default.read_all_items()) == ["never"]
        assert default.read()["_ts"] == 1_000_000


def test_injected_throttling_is_retried_by_the_sdk(gateway: CosmosGateway, jobs: ContainerProxy) -> None:
    gateway.stats.reset()
    gateway.inject_fault(429, times=2, operation="create_item", headers={"x-ms-retry-after-ms": "5"})
    jobs.create_item({"id": "after-throttle", "jobId": "job-1"})
    assert gateway.stats.faults_injected == 2
    assert jobs.read_item("after-throttle", partition_key="job-1")


# -- async client ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_async_client_crud_and_typed_errors(gateway: CosmosGateway) -> None:
    name = "db-" + uuid.uuid4().hex[:12]
    async with AsyncCosmosClient(gateway.url, EMULATOR_KEY) as client:
        db = await client.create_database_if_not_exists(name)
        await client.create_database_if_not_exists(name)
        container = await db.create_container_if_not_exists("jobs", PartitionKey("/jobId"), default_ttl=-1)
        await db.create_container_if_not_exists("jobs", PartitionKey("/jobId"), default_ttl=-1)
        assert (await container.read())["defaultTtl"] == -1

        created = await container.create_item({"id": "a", "jobId": "job-1", "n": 1})
        with pytest.raises(cosmos_errors.CosmosResourceExistsError):
            await container.create_item({"id": "a", "jobId": "job-1"})
        await container.replace_item(
            "a", {"id": "a", "jobId": "job-1", "n": 2}, etag=created["_etag"], match_condition=IF_NOT_MODIFIED
        )
        with pytest.raises(cosmos_errors.CosmosAccessConditionFailedError):
            await container.replace_item(
                "a",
                {"id": "a", "jobId": "job-1", "n": 3},
                etag=created["_etag"],
                match_condition=IF_NOT_MODIFIED,
            )
        assert (await container.read_item("a", partition_key="job-1"))["n"] == 2
        await container.delete_item("a", partition_key="job-1")
        with pytest.raises(cosmos_errors.CosmosResourceNotFoundError):
            await container.read_item("a", partition_key="job-1")
        await client.delete_database(name)

    # The aio client reads the account while entering, so that is where a wrong key surfaces.
    bad = AsyncCosmosClient(gateway.url, base64.b64encode(b"wrong" * 12).decode())
    try:
        with pytest.raises(cosmos_errors.CosmosHttpResponseError) as caught:
            await bad.__aenter__()
        assert caught.value.status_code == 401
    finally:
        await bad.close()


@pytest.mark.asyncio
async def test_async_paging_resumes_from_token_and_counts_fan_out(gateway: CosmosGateway) -> None:
    name = "db-" + uuid.uuid4().hex[:12]
    async with AsyncCosmosClient(gateway.url, EMULATOR_KEY) as client:
        db = await client.create_database(name)
        container = await db.create_container("jobs", PartitionKey("/jobId"), indexing_policy=INDEXING_POLICY)
        for i in range(120):
            await container.create_item({"id": f"{i:03}", "jobId": f"job-{i % 2}", "createdAt": i // 10})
        query = "SELECT * FROM c WHERE c.createdAt >= @min ORDER BY c.createdAt DESC, c.id DESC"
        params: list[dict[str, Any]] = [{"name": "@min", "value": 0}]

        scoped: dict[str, Any] = {"parameters": params, "partition_key": "job-0", "max_item_count": 7}
        pages = container.query_items(query, **scoped).by_page()
        first = [item["id"] async for item in await pages.__anext__()]
        token = continuation_of(pages)
        assert len(first) == 7

        gateway.stats.reset()
        resumed = container.query_items(query, **scoped)
        rest = [item["id"] async for page in resumed.by_page(token) async for item in page]
        assert gateway.stats.cross_partition_queries == 0
        everything = first + rest
        assert len(everything) == 60 == len(set(everything))
        assert everything == sorted(everything, key=lambda i: (int(i) // 10, i), reverse=True)

        counted = values([n async for n in container.query_items("SELECT VALUE COUNT(1) FROM c")])
        assert counted == [120]
        assert gateway.stats.cross_partition_queries == 1

        with pytest.raises(cosmos_errors.CosmosHttpResponseError) as caught:
            [item async for item in container.query_items("SELECT * FROM c WHERE UNKNOWN_FN(c.id)")]
        assert caught.value.status_code == 400 and caught.value.sub_status == 1004
        await client.delete_database(name)


# -- standalone process ------------------------------------------------------------------------


def test_runs_as_a_standalone_process() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.cosmos_gateway", "--port", "0"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        with CosmosClient(url, EMULATOR_KEY) as client:
            db = client.create_database_if_not_exists("standalone")
            assert db.read()["id"] == "standalone"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
