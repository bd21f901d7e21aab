"""Idempotency-Key: a retried create never makes a second artifact."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from fleet_artifacts.core.errors import Conflict
from fleet_artifacts.core.idempotency import Idempotency, KeyInUse
from fleet_artifacts.settings import Settings
from fleet_artifacts.stores.sqlite import SqlitePointerStore
from tests.conftest import TOKEN_B
from tests.helpers import assert_problem, blob_names


def post(client: httpx.Client, job_id: str, data: bytes, key: str, **params: str) -> httpx.Response:
    params = {"kind": "log", "fileName": "run.log", **params}
    return client.post(
        f"/fleet/jobs/{job_id}/artifacts",
        params=params,
        content=data,
        headers={"Content-Type": "text/plain", "Idempotency-Key": key},
    )


def ids(client: httpx.Client, job_id: str) -> list[str]:
    return [item["id"] for item in client.get(f"/fleet/jobs/{job_id}/artifacts").json()["items"]]


async def test_a_retried_upload_returns_the_same_artifact(
    client: httpx.Client, settings: Settings, job_id: str
) -> None:
    first = post(client, job_id, b"attempt 1", "build-7-log")
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    again = post(client, job_id, b"attempt 1", "build-7-log")
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert ids(client, job_id) == [first.json()["id"]]
    assert len(await blob_names(settings, f"fleet/prod-a/{job_id}/")) in (1, 2)  # local adds a .meta sidecar


def test_the_same_key_with_other_metadata_is_409(client: httpx.Client, job_id: str) -> None:
    assert post(client, job_id, b"x", "key-1").status_code == 201
    assert_problem(post(client, job_id, b"x", "key-1", fileName="other.log"), 409)
    assert_problem(post(client, job_id, b"x", "key-1", kind="coverage"), 409)
    assert len(ids(client, job_id)) == 1


def test_keys_are_scoped_to_job_and_product(client: httpx.Client, server_url: str, job_id: str) -> None:
    a = post(client, job_id, b"x", "shared-key").json()
    b = post(client, job_id + "-2", b"x", "shared-key").json()
    with httpx.Client(base_url=server_url, headers={"Authorization": f"Bearer {TOKEN_B}"}) as other:
        c = post(other, job_id, b"x", "shared-key").json()
    assert len({a["id"], b["id"], c["id"]}) == 3


def test_every_upload_form_honours_the_key(client: httpx.Client, job_id: str) -> None:
    multipart = [
        client.post(
            f"/fleet/jobs/{job_id}/artifacts",
            data={"kind": "image"},
            files={"file": ("a.png", b"png", "image/png")},
            headers={"Idempotency-Key": "mp"},
        )
        for _ in range(2)
    ]
    envelope = json.dumps({"kind": "data", "fileName": "d.json", "content": base64.b64encode(b"{}").decode()})
    enveloped = [
        client.post(
            f"/fleet/jobs/{job_id}/artifacts",
            content=envelope,
            headers={"Content-Type": "application/vnd.fleet-artifact+json", "Idempotency-Key": "env"},
        )
        for _ in range(2)
    ]
    for pair in (multipart, enveloped):
        assert [r.status_code for r in pair] == [201, 201]
        assert pair[0].json()["id"] == pair[1].json()["id"]
    assert len(ids(client, job_id)) == 2


def test_a_failed_attempt_frees_the_key(client: httpx.Client, settings: Settings, job_id: str) -> None:
    too_big = b"\0" * (settings.max_upload_bytes + 1)
    assert_problem(post(client, job_id, too_big, "retry-me"), 413)
    retried = post(client, job_id, b"smaller", "retry-me")
    assert retried.status_code == 201 and "idempotent-replayed" not in retried.headers


def test_a_concurrent_duplicate_waits_for_the_first(
    client: httpx.Client, server_url: str, job_id: str
) -> None:
    started, release = threading.Event(), threading.Event()

    def slow_body() -> Iterator[bytes]:
        yield b"first part, "
        started.set()
        release.wait(30)
        yield b"second part"

    results: dict[str, httpx.Response] = {}

    def first() -> None:
        with httpx.Client(base_url=server_url, headers=dict(client.headers), timeout=60) as c:
            results["first"] = c.post(
                f"/fleet/jobs/{job_id}/artifacts",
                params={"kind": "log", "fileName": "a"},
                content=slow_body(),
                headers={"Idempotency-Key": "slow"},
            )

    thread = threading.Thread(target=first)
    thread.start()
    assert started.wait(30)
    time.sleep(0.3)  # let the first request claim the key
    busy = client.post(
        f"/fleet/jobs/{job_id}/artifacts",
        params={"kind": "log", "fileName": "a"},
        content=b"first part, second part",
        headers={"Idempotency-Key": "slow"},
    )
    release.set()
    thread.join(60)
    assert_problem(busy, 409)
    assert "in progress" in busy.json()["detail"]
    assert results["first"].status_code == 201
    replay = client.post(
        f"/fleet/jobs/{job_id}/artifacts",
        params={"kind": "log", "fileName": "a"},
        content=b"ignored",
        headers={"Idempotency-Key": "slow"},
    )
    assert replay.json()["id"] == results["first"].json()["id"]
    assert ids(client, job_id) == [results["first"].json()["id"]]


def test_direct_upload_start_is_idempotent(client: httpx.Client, job_id: str) -> None:
    body: dict[str, Any] = {"kind": "build", "fileName": "dist.tgz", "sizeBytes": 3}
    tickets = [
        client.post(f"/fleet/jobs/{job_id}/artifacts/uploads", json=body, headers={"Idempotency-Key": "dist"})
        for _ in range(2)
    ]
    assert [t.status_code for t in tickets] == [201, 201]
    assert tickets[0].json()["id"] == tickets[1].json()["id"]
    assert tickets[1].headers["idempotent-replayed"] == "true"
    other = client.post(
        f"/fleet/jobs/{job_id}/artifacts/uploads",
        json={**body, "sizeBytes": 4},
        headers={"Idempotency-Key": "dist"},
    )
    assert_problem(other, 409)


@pytest.mark.parametrize("key", ["", "x" * 256, "naïve", "tab\tkey"])
def test_malformed_keys_are_400(client: httpx.Client, job_id: str, key: str) -> None:
    r = client.post(
        f"/fleet/jobs/{job_id}/artifacts",
        params={"kind": "log", "fileName": "a"},
        content=b"x",
        headers={b"Idempotency-Key": key.encode("utf-8")},  # bytes: httpx refuses non-ASCII str
    )
    assert_problem(r, 400)
    assert ids(client, job_id) == []


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 22, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


async def test_a_dead_claim_is_taken_over_and_the_late_holder_undoes_its_work(tmp_path: Path) -> None:
    store = SqlitePointerStore(tmp_path / "p.sqlite3")
    clock = Clock()
    guard = Idempotency(store, retention=timedelta(days=1), lease=timedelta(minutes=15), clock=clock)
    made: list[str] = []
    undone: list[str] = []

    async def replay(artifact_id: str) -> str:
        return artifact_id

    async def undo(artifact_id: str) -> None:
        undone.append(artifact_id)

    def runner(name: str, during: Any = None) -> Any:
        async def create() -> str:
            if during is not None:
                await during()
            made.append(name)
            return name

        return guard.run(
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

    async def meanwhile() -> None:
        # While "slow" holds the claim: a duplicate is refused, then the lease lapses and
        # "fast" takes the key over and finishes first.
        with pytest.raises(KeyInUse):
            await runner("dup")
        clock.now += timedelta(minutes=16)
        assert await runner("fast") == ("fast", False)

    with pytest.raises(KeyInUse, match="took over"):
        await runner("slow", during=meanwhile)
    assert made == ["fast", "slow"] and undone == ["slow"]
    assert await runner("later") == ("fast", True)  # the key names exactly one artifact
    with pytest.raises(Conflict, match="different request"):
        await guard.run(
            product_id="p",
            job_id="j",
            key="k",
            operation="other",
            request={},
            create=lambda: replay("x"),
            created_id=lambda r: r,
            replay=replay,
            undo=undo,
        )
    clock.now += timedelta(days=2)  # past retention, the key is free again
    assert await runner("next-day") == ("next-day", False)
    await store.close()
