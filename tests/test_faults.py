"""Faults in Azure or the pointer store never leave an orphan blob or a dangling pointer."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from fleet_artifacts.app import create_app, open_stores
from fleet_artifacts.core.errors import Unavailable
from fleet_artifacts.core.journal import Event
from fleet_artifacts.core.models import Pointer
from fleet_artifacts.core.ports import (
    BlobStore,
    PointerStore,
)
from fleet_artifacts.settings import Settings
from tests.conftest import TOKEN_A, make_settings
from tests.fakes.delegating import DelegatingPointerStore
from tests.helpers import assert_problem, blob_names, stored_doc
from tests.servers import Azurite, ThreadedServer


class PointerWritesFail(DelegatingPointerStore):
    """A real pointer store whose creates fail, as a Cosmos outage would make them."""

    async def create(self, pointer: Pointer, *, event: Event | None = None) -> str:
        raise Unavailable("pointer store is down (injected)")


@asynccontextmanager
async def failing_pointers(settings: Settings) -> AsyncIterator[tuple[BlobStore, PointerStore]]:
    async with open_stores(settings) as (blobs, pointers):
        yield blobs, PointerWritesFail(pointers)


async def test_failed_pointer_write_removes_the_blob(azurite: Azurite, tmp_path: Path) -> None:
    settings = make_settings(azurite, tmp_path)
    server = ThreadedServer(create_app(settings, open_stores=failing_pointers)).start()
    job = "job-" + secrets.token_hex(4)
    try:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN_A}"}) as c:
            r = c.post(
                f"/fleet/jobs/{job}/artifacts",
                params={"kind": "log", "fileName": "a"},
                content=secrets.token_bytes(700_000),
            )
            assert_problem(r, 503)
            assert int(r.headers["retry-after"]) > 0
    finally:
        server.stop()
    assert await blob_names(settings, f"fleet/prod-a/{job}/") == []


@pytest.fixture
def flaky_azurite(tmp_path: Path) -> Iterator[Azurite]:
    """An Azurite of this test's own, which the test stops and restarts."""
    server = Azurite(tmp_path / "azurite").start()
    yield server
    server.stop()


async def test_blob_outage_answers_503_and_half_done_delete_finishes_on_retry(
    flaky_azurite: Azurite, tmp_path: Path
) -> None:
    settings = make_settings(flaky_azurite, tmp_path / "data", azure_retry_total="0")
    server = ThreadedServer(create_app(settings)).start()
    job = "job-" + secrets.token_hex(4)
    try:
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {TOKEN_A}"}, timeout=60
        ) as c:
            kept = c.post(
                f"/fleet/jobs/{job}/artifacts",
                params={"kind": "log", "fileName": "a"},
                content=b"before the outage",
            ).json()
            flaky_azurite.stop(graceful=True)

            r = c.post(
                f"/fleet/jobs/{job}/artifacts",
                params={"kind": "log", "fileName": "b"},
                content=b"during the outage",
            )
            assert_problem(r, 503)
            assert r.headers["retry-after"].isdigit()
            listed = c.get(f"/fleet/jobs/{job}/artifacts").json()["items"]
            assert [item["id"] for item in listed] == [kept["id"]]  # no pointer without bytes

            r = c.delete(f"/fleet/artifacts/{kept['id']}")
            assert_problem(r, 503)
            # Half-done: hidden from readers, never served as a dangling link...
            assert_problem(c.get(f"/fleet/artifacts/{kept['id']}"), 404)
            assert stored_doc(settings, kept["id"])["status"] == "DELETING"

            flaky_azurite.start_again()
            assert await blob_names(settings, f"fleet/prod-a/{job}/") == [kept["blobKey"]]
            # ...and the retried DELETE finishes the job.
            assert c.delete(f"/fleet/artifacts/{kept['id']}").status_code == 204
            assert_problem(c.delete(f"/fleet/artifacts/{kept['id']}"), 404)
    finally:
        server.stop()
    assert await blob_names(settings, f"fleet/prod-a/{job}/") == []
