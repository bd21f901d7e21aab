"""Helpers shared by the tests: HTTP calls as clients make them, looks behind the service's back."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
from azure.storage.blob import BlobClient, ContentSettings
from litestar import Litestar

from fleet_artifacts.core.artifacts import ArtifactService
from fleet_artifacts.core.direct import DirectUploads
from fleet_artifacts.core.hosted import HostedBlobStore
from fleet_artifacts.core.jobs import Jobs
from fleet_artifacts.core.kernel import Kernel, Limits
from fleet_artifacts.core.lifecycle import Lifecycle
from fleet_artifacts.core.sessions import SessionService
from fleet_artifacts.core.shares import Shares
from fleet_artifacts.routes.auth import TokenAuthority
from fleet_artifacts.routes.deps import BLOB_PATH, Services
from fleet_artifacts.routes.local_blobs import signed_blob, signed_blob_put
from fleet_artifacts.routes.problems import EXCEPTION_HANDLERS
from fleet_artifacts.settings import Settings
from fleet_artifacts.stores.sqlite import SqlitePointerStore
from tests.servers import REPO, ThreadedServer

BLOBS = BLOB_PATH + "/"  # the URL prefix a hosted store signs under, as the app configures it


def upload_raw(client: httpx.Client, job_id: str, data: bytes, **params: str) -> httpx.Response:
    """Upload ``data`` as a raw body (a text log unless ``params`` say otherwise)."""
    params.setdefault("kind", "log")
    params.setdefault("fileName", "out.log")
    return client.post(
        f"/fleet/jobs/{job_id}/artifacts",
        params=params,
        content=data,
        headers={"Content-Type": params.pop("_ct", "text/plain")},
    )


def assert_problem(response: httpx.Response, status: int) -> dict[str, object]:
    """Assert ``response`` is a problem+json document of ``status``; return it."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, object] = response.json()
    assert body["status"] == status
    assert body["title"] and body["detail"]
    return body


def stored_doc(settings: Settings, artifact_id: str) -> dict[str, object]:
    """The pointer document as the pointer store holds it (Cosmos system fields dropped)."""
    if settings.pointer_backend == "cosmos":
        from azure.cosmos import CosmosClient

        assert settings.cosmos_endpoint and settings.cosmos_key
        with CosmosClient(settings.cosmos_endpoint, settings.cosmos_key) as cosmos:
            container = cosmos.get_database_client(settings.cosmos_database).get_container_client(
                settings.cosmos_container
            )
            found = list(
                container.query_items(
                    "SELECT * FROM c WHERE c.id = @id",
                    parameters=[{"name": "@id", "value": artifact_id}],
                    enable_cross_partition_query=True,
                )
            )
        assert len(found) == 1
        return {k: v for k, v in found[0].items() if not k.startswith("_")}
    import sqlite3

    with sqlite3.connect(settings.data_dir / "pointers.sqlite3") as conn:
        row = conn.execute("SELECT doc FROM pointers WHERE id = ?", (artifact_id,)).fetchone()
    assert row is not None
    doc: dict[str, object] = json.loads(row[0])
    return doc


async def blob_bytes(settings: Settings, key: str) -> bytes | None:
    """The committed bytes under ``key``, read behind the service's back."""
    if settings.blob_backend == "local":
        path = settings.data_dir / "blobs" / key
        return path.read_bytes() if path.is_file() else None
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.blob.aio import BlobServiceClient

    assert settings.azure_storage_connection_string
    async with BlobServiceClient.from_connection_string(settings.azure_storage_connection_string) as svc:
        try:
            downloader = await svc.get_blob_client(settings.blob_container, key).download_blob()
        except ResourceNotFoundError:
            return None
        return await downloader.readall()


async def blob_names(settings: Settings, prefix: str) -> list[str]:
    """Every committed blob (or, locally, any file at all) whose key starts with ``prefix``."""
    if settings.blob_backend == "local":
        root = settings.data_dir / "blobs"
        return sorted(
            str(p.relative_to(root))
            for p in root.rglob("*")
            if p.is_file() and str(p.relative_to(root)).startswith(prefix)
        )
    from azure.storage.blob.aio import BlobServiceClient

    assert settings.azure_storage_connection_string
    async with BlobServiceClient.from_connection_string(settings.azure_storage_connection_string) as svc:
        container = svc.get_container_client(settings.blob_container)
        return [b.name async for b in container.list_blobs(name_starts_with=prefix)]


def clean_env() -> dict[str, str]:
    """The environment for a CLI process: no FLEET_ARTIFACTS_* of ours, the package importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_ARTIFACTS_")}
    env["PYTHONPATH"] = str(REPO)  # the package, even where it is not installed
    return env


def start(client: httpx.Client, job_id: str, **fields: Any) -> dict[str, Any]:
    """Start a direct upload (a build tarball unless ``fields`` say otherwise); the ticket."""
    body = {"kind": "build", "fileName": "dist.tar.gz", "contentType": "application/gzip", **fields}
    r = client.post(f"/fleet/jobs/{job_id}/artifacts/uploads", json=body)
    assert r.status_code == 201, r.text
    ticket: dict[str, Any] = r.json()
    return ticket


def write(url: str, data: bytes, *, blocks: bool = True) -> None:
    """Upload as a worker would: the SDK's own client on the returned URL, staged blocks in parallel."""
    options: dict[str, Any] = (
        {"max_single_put_size": 64 * 1024, "max_block_size": 64 * 1024} if blocks else {}
    )
    with BlobClient.from_blob_url(url, **options) as blob:
        blob.upload_blob(
            data,
            overwrite=True,
            max_concurrency=4,
            content_settings=ContentSettings(content_type="application/gzip"),
        )


def finalize(client: httpx.Client, ticket: dict[str, Any], data: bytes, **extra: Any) -> httpx.Response:
    """Finalize a direct upload claiming ``data``'s size and sha256."""
    body = {"sizeBytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), **extra}
    return client.post(f"/fleet/jobs/{ticket['jobId']}/artifacts/{ticket['id']}/finalize", json=body)


async def _any_key(_key: str) -> bool:
    return True


def hosted_blob_server(store: HostedBlobStore, *, max_upload_bytes: int = 10 * 1024**3) -> ThreadedServer:
    """Serve a hosted store's signed ``/blobs/`` URLs (GET, HEAD, PUT) over real HTTP, as the app does.

    The tests sign write URLs themselves, with no direct upload behind them, so every
    write a valid URL asks for is allowed.
    """

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        pointers = SqlitePointerStore(":memory:")
        kernel = Kernel(store, pointers, limits=Limits(max_upload_bytes=max_upload_bytes))
        app.state.services = Services(
            kernel=kernel,
            artifacts=ArtifactService(kernel),
            lifecycle=Lifecycle(kernel),
            shares=Shares(kernel, max_lifetime=timedelta(days=1)),
            direct=DirectUploads(kernel),
            sessions=SessionService(kernel),
            jobs=Jobs(kernel),
            auth=TokenAuthority(()),
            public_base_url=None,
            hosted=store,
            write_allowed=_any_key,
        )
        yield
        await pointers.close()

    app = Litestar(
        route_handlers=[signed_blob, signed_blob_put],
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
    )
    return ThreadedServer(app).start()
