"""``GET /ready``: both stores checked at once, each within its deadline; ``/health`` stays blind to them.

The core use case runs on the in-memory fakes (told to fail or to stall); each adapter's ``check``
fails on a real broken backend; over HTTP the real servers answer: three backends ready, an
Azurite killed and then one that accepts connections and never answers, a Cosmos gateway
stopped, and a pointer store that stalls.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from azure.cosmos.aio import CosmosClient
from azure.storage.blob import ContainerClient

from fleet_artifacts.app import create_app, open_stores
from fleet_artifacts.core.errors import NotFound, Unavailable
from fleet_artifacts.core.ports import BlobStore, PointerStore
from fleet_artifacts.core.readiness import Readiness, ReadyOut, reason
from fleet_artifacts.settings import Settings
from fleet_artifacts.stores.azure_blob import AzureBlobStore
from fleet_artifacts.stores.cosmos import CosmosPointerStore
from fleet_artifacts.stores.local_blob import LocalBlobStore
from fleet_artifacts.stores.signing import UrlSigner
from fleet_artifacts.stores.sqlite import SqlitePointerStore
from tests.conftest import make_settings
from tests.cosmos_gateway import EMULATOR_KEY, CosmosGateway
from tests.fakes import MemoryBlobStore, MemoryPointerStore
from tests.fakes.delegating import DelegatingPointerStore
from tests.helpers import BLOBS, assert_problem
from tests.servers import Azurite, ThreadedServer

MARGIN = 1.5  # seconds beyond the timeout an answer may take on a busy CI machine (HTTP, scheduling)


def fakes() -> tuple[MemoryBlobStore, MemoryPointerStore]:
    return MemoryBlobStore(UrlSigner(secrets.token_bytes(32)), url_prefix=BLOBS), MemoryPointerStore()


class CountedPointers(MemoryPointerStore):
    """The fake, counting its checks (each one a backend call on a real store)."""

    def __init__(self) -> None:
        super().__init__()
        self.checks = 0

    async def check(self) -> None:
        self.checks += 1
        await asyncio.sleep(0.05)  # long enough for concurrent asks to find it running
        await super().check()


# -- the core use case, on the fakes --------------------------------------------------------------


async def test_both_stores_answering_is_ready() -> None:
    out = await Readiness(*fakes(), timeout=1).check()
    assert out == ReadyOut(status="ready", checks={"blobs": "ok", "pointers": "ok"})
    assert out.ready and out.detail() == ""


async def test_a_failing_store_is_named_by_its_error_type_without_secrets() -> None:
    blobs, pointers = fakes()
    blobs.probe.error = Unavailable(
        "check container c1: https://acct.blob.core.windows.net/c1?sv=2024&sig=s3cr3t-sig answered 503 "
        "(AccountKey=s3cr3t-key;SharedAccessSignature=s3cr3t-sas)\nsecond line"
    )
    out = await Readiness(blobs, pointers, timeout=1, reuse=0).check()
    assert not out.ready and out.status == "not ready"
    said = out.checks["blobs"]
    assert said.startswith("Unavailable: check container c1: <url> answered 503"), said
    assert "s3cr3t" not in said and "second line" not in said
    assert out.checks["pointers"] == "ok" and out.detail() == f"blobs: {said}"


async def test_a_foreign_exception_is_told_by_its_type_only() -> None:
    blobs, pointers = fakes()
    pointers.probe.error = RuntimeError("DefaultEndpointsProtocol=https;AccountKey=s3cr3t")
    out = await Readiness(blobs, pointers, timeout=1, reuse=0).check()
    assert out.checks == {"blobs": "ok", "pointers": "RuntimeError"}
    assert reason(Unavailable("x" * 500)).endswith("…") and len(reason(Unavailable("x" * 500))) < 200


async def test_stalled_stores_time_out_together_within_the_deadline() -> None:
    blobs, pointers = fakes()
    blobs.probe.stalled = pointers.probe.stalled = True
    started = time.monotonic()
    out = await Readiness(blobs, pointers, timeout=0.3, reuse=0).check()
    took = time.monotonic() - started
    assert out.checks == {"blobs": "timed out after 0.3 s", "pointers": "timed out after 0.3 s"}
    assert out.detail() == "blobs: timed out after 0.3 s; pointers: timed out after 0.3 s"
    assert 0.3 <= took < 0.3 + MARGIN  # concurrent: one deadline, not two in a row


async def test_concurrent_asks_share_one_run_and_an_answer_is_reused_briefly() -> None:
    blobs, pointers = MemoryBlobStore(UrlSigner(secrets.token_bytes(32)), url_prefix=BLOBS), CountedPointers()
    readiness = Readiness(blobs, pointers, timeout=1, reuse=30)
    answers = await asyncio.gather(*(readiness.check() for _ in range(20)))
    assert pointers.checks == 1 and all(a.ready for a in answers)
    pointers.probe.error = Unavailable("down")
    assert (await readiness.check()).ready  # within the reuse window: the same answer
    assert pointers.checks == 1
    fresh = Readiness(blobs, pointers, timeout=1, reuse=0)
    assert not (await fresh.check()).ready and not (await fresh.check()).ready
    assert pointers.checks == 3


async def test_a_caller_that_leaves_does_not_cancel_the_others_answer() -> None:
    blobs, pointers = MemoryBlobStore(UrlSigner(secrets.token_bytes(32)), url_prefix=BLOBS), CountedPointers()
    readiness = Readiness(blobs, pointers, timeout=1, reuse=0)
    leaving = asyncio.create_task(readiness.check())
    staying = asyncio.create_task(readiness.check())
    await asyncio.sleep(0.01)
    leaving.cancel()
    assert (await staying).ready and pointers.checks == 1


# -- each adapter's check on a broken backend ------------------------------------------------------


async def test_local_blobs_are_not_ready_without_their_directory(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    store = LocalBlobStore(root, UrlSigner(secrets.token_bytes(32)), url_prefix=BLOBS)
    before = sorted(tmp_path.rglob("*"))
    await store.check()
    assert sorted(tmp_path.rglob("*")) == before  # the check wrote nothing
    shutil.rmtree(root)
    with pytest.raises(Unavailable) as gone:
        await store.check()
    root.write_bytes(b"not a directory")
    with pytest.raises(Unavailable) as replaced:
        await store.check()
    for failure in (gone.value, replaced.value):
        assert str(tmp_path) not in failure.detail  # an anonymous answer names no path
    assert "not a directory" in replaced.value.detail


async def test_a_closed_sqlite_store_is_not_ready(tmp_path: Path) -> None:
    store = SqlitePointerStore(tmp_path / "p.sqlite3")
    await store.check()
    await store.close()
    with pytest.raises(Unavailable, match="pointer database"):
        await store.check()


async def test_azure_blobs_are_not_ready_once_their_container_is_gone(
    azurite: Azurite, tmp_path: Path
) -> None:
    settings = make_settings(azurite, tmp_path)
    store = AzureBlobStore.from_settings(settings)
    await store.open()
    try:
        await store.check()
        ContainerClient.from_connection_string(
            azurite.connection_string, settings.blob_container
        ).delete_container()
        with pytest.raises(NotFound, match=f"check container {settings.blob_container}"):
            await store.check()
    finally:
        await store.close()


async def test_cosmos_pointers_are_not_ready_once_their_database_is_gone(
    cosmos_gateway: CosmosGateway, tmp_path: Path
) -> None:
    settings = make_settings(None, tmp_path, cosmos=cosmos_gateway)
    store = CosmosPointerStore.from_settings(settings)
    await store.open()
    try:
        await store.check()
        async with CosmosClient(cosmos_gateway.url, EMULATOR_KEY) as client:
            await client.delete_database(settings.cosmos_database)
        with pytest.raises(NotFound, match="check container"):
            await store.check()
    finally:
        await store.close()


# -- over HTTP, on the real servers ------------------------------------------------------------------


def test_ready_on_every_backend(server: ThreadedServer) -> None:
    r = httpx.get(f"{server.url}/ready")  # no token
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ready", "checks": {"blobs": "ok", "pointers": "ok"}}
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["cache-control"] == "no-store"
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}


def timed_ready(url: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    r = httpx.get(f"{url}/ready", timeout=30)
    return r, time.monotonic() - started


def wait_for_not_ready(url: str, timeout: float, until: str = "") -> dict[str, object]:
    """Ask until /ready answers 503 whose detail starts with ``until``; each answer within the bound."""
    deadline = time.monotonic() + 30
    while True:
        r, took = timed_ready(url)
        assert took < timeout + MARGIN, f"/ready took {took:.2f} s"
        if r.status_code == 503 and str(r.json().get("detail", "")).startswith(until):
            body = assert_problem(r, 503)
            assert r.headers["retry-after"] == "5"
            return body
        assert time.monotonic() < deadline, r.text
        time.sleep(0.2)


def assert_no_secret(body: dict[str, object], settings: Settings) -> None:
    text = str(body)
    for secret in (settings.azure_storage_connection_string, settings.cosmos_key):
        if secret:
            for part in secret.split(";"):
                if "key" in part.lower() and "=" in part:
                    assert part.split("=", 1)[1] not in text
    for url in (settings.cosmos_endpoint,):
        if url:
            assert url.rstrip("/") not in text


@pytest.fixture
def own_azurite(tmp_path: Path) -> Iterator[Azurite]:
    """An Azurite of this test's own, which the test kills."""
    server = Azurite(tmp_path / "azurite").start()
    yield server
    server.stop()


def test_a_dead_then_silent_azurite_makes_blobs_not_ready_but_health_stays_up(
    own_azurite: Azurite, tmp_path: Path
) -> None:
    settings = make_settings(own_azurite, tmp_path / "data", ready_timeout_seconds="1")
    server = ThreadedServer(create_app(settings)).start()
    try:
        assert httpx.get(f"{server.url}/ready").status_code == 200
        own_azurite.stop()  # killed: connections refused
        body = wait_for_not_ready(server.url, 1, until="blobs: ")
        detail = str(body["detail"])
        assert "pointers" not in detail
        assert body["checks"] == {"blobs": detail.removeprefix("blobs: "), "pointers": "ok"}
        assert (
            body["type"] == "https://fleet-artifacts.dev/problems/not-ready" and body["instance"] == "/ready"
        )
        assert_no_secret(body, settings)
        assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}  # liveness ignores it
        # Now a Blob endpoint that accepts connections and never answers: the deadline answers.
        with socket.create_server(("127.0.0.1", own_azurite.port)) as silent:
            silent.listen(64)
            body = wait_for_not_ready(server.url, 1, until="blobs: timed out")
            assert body["detail"] == "blobs: timed out after 1 s"
            assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
    finally:
        server.stop()


def test_a_stopped_cosmos_gateway_makes_pointers_not_ready(azurite: Azurite, tmp_path: Path) -> None:
    with CosmosGateway(key=EMULATOR_KEY) as gateway:
        settings = make_settings(azurite, tmp_path, cosmos=gateway, ready_timeout_seconds="1")
        server = ThreadedServer(create_app(settings)).start()
        try:
            assert httpx.get(f"{server.url}/ready").status_code == 200
            gateway.stop()
            body = wait_for_not_ready(server.url, 1, until="pointers: ")
            assert "blobs" not in str(body["detail"])
            assert body["checks"] == {
                "blobs": "ok",
                "pointers": str(body["detail"]).removeprefix("pointers: "),
            }
            assert_no_secret(body, settings)
            assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
        finally:
            server.stop()


class StalledPointers(DelegatingPointerStore):
    """A real pointer store whose check never answers, as a database that accepted and went quiet."""

    async def check(self) -> None:
        await asyncio.Event().wait()


@asynccontextmanager
async def stalled_pointers(settings: Settings) -> AsyncIterator[tuple[BlobStore, PointerStore]]:
    async with open_stores(settings) as (blobs, pointers):
        yield blobs, StalledPointers(pointers)


def test_a_stalled_pointer_store_is_answered_within_the_timeout(tmp_path: Path) -> None:
    settings = make_settings(None, tmp_path, ready_timeout_seconds="0.5")
    server = ThreadedServer(create_app(settings, open_stores=stalled_pointers)).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            started = time.monotonic()
            answers = [client.get("/ready") for _ in range(3)]
            assert time.monotonic() - started < 3 * (0.5 + MARGIN)
            for r in answers:
                body = assert_problem(r, 503)
                assert body["detail"] == "pointers: timed out after 0.5 s"
                assert body["checks"] == {"blobs": "ok", "pointers": "timed out after 0.5 s"}
            r, took = timed_ready(server.url)
            assert r.status_code == 503 and took < 0.5 + MARGIN
            assert client.get("/health").json() == {"status": "ok"}
    finally:
        server.stop()
