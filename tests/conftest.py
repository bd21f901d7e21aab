"""Shared fixtures: one Azurite per session, settings, and the app under uvicorn."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from fleet_artifacts.app import create_app
from fleet_artifacts.core.hosted import HostedBlobStore
from fleet_artifacts.settings import Settings, load_settings
from fleet_artifacts.stores.azure_blob import AzureBlobStore
from fleet_artifacts.stores.local_blob import LocalBlobStore
from fleet_artifacts.stores.signing import UrlSigner
from tests.cosmos_gateway import EMULATOR_KEY, CosmosGateway
from tests.helpers import BLOBS, hosted_blob_server
from tests.servers import Azurite, ThreadedServer

TOKEN_A = "token-product-a-" + "0" * 16
TOKEN_B = "token-product-b-" + "1" * 16


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """A fresh Azurite blob service for the whole session."""
    server = Azurite(tmp_path_factory.mktemp("azurite")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def cosmos_gateway() -> Iterator[CosmosGateway]:
    """The Cosmos test gateway (real azure-cosmos SDK over HTTP) for the whole session."""
    with CosmosGateway(key=EMULATOR_KEY) as gateway:
        yield gateway


def make_settings(
    azurite: Azurite | None, data_dir: Path, *, cosmos: CosmosGateway | None = None, **overrides: str
) -> Settings:
    """Settings with products 'prod-a' and 'prod-b'.

    Blob on this Azurite (local blobs if None); pointers in a fresh database of
    this Cosmos gateway (SQLite if None).
    """
    env = {
        "FLEET_ARTIFACTS_TOKENS": f"{TOKEN_A}:prod-a,{TOKEN_B}:prod-b",
        "FLEET_ARTIFACTS_DATA_DIR": str(data_dir),
        # Tests sweep when they mean to; the background sweeper has tests of its own.
        "FLEET_ARTIFACTS_SWEEP_INTERVAL_SECONDS": "0",
    }
    if cosmos is not None:
        env |= {
            "FLEET_ARTIFACTS_POINTER_BACKEND": "cosmos",
            "FLEET_ARTIFACTS_COSMOS_ENDPOINT": cosmos.url,
            "FLEET_ARTIFACTS_COSMOS_KEY": EMULATOR_KEY,
            "FLEET_ARTIFACTS_COSMOS_DATABASE": "db-" + secrets.token_hex(6),
            "FLEET_ARTIFACTS_COSMOS_INIT_ON_START": "true",
        }
    if azurite is not None:
        env |= {
            "FLEET_ARTIFACTS_AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
            "FLEET_ARTIFACTS_BLOB_CONTAINER": "c" + secrets.token_hex(6),
            "FLEET_ARTIFACTS_AZURE_RETRY_TOTAL": "1",
        }
    env.update({f"FLEET_ARTIFACTS_{k.upper()}": v for k, v in overrides.items()})
    return load_settings(env)


BLOB_BACKENDS = ["azure", "local"]


@pytest.fixture(scope="module", params=["azure-sqlite", "local-sqlite", "azure-cosmos"])
def settings(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings for each blob backend on SQLite, and once with Cosmos pointers.

    The upload limit is small so that 413 is cheap to provoke.
    """
    blobs, pointers = request.param.split("-")
    azurite: Azurite | None = request.getfixturevalue("azurite") if blobs == "azure" else None
    cosmos = request.getfixturevalue("cosmos_gateway") if pointers == "cosmos" else None
    return make_settings(
        azurite,
        tmp_path_factory.mktemp("data"),
        cosmos=cosmos,
        max_upload_bytes=str(80 * 1024 * 1024),
        verify_max_bytes=str(256 * 1024),
    )


@pytest.fixture(scope="module")
def server(settings: Settings) -> Iterator[ThreadedServer]:
    """The app on Azurite + SQLite, served by uvicorn on a free port."""
    srv = ThreadedServer(create_app(settings)).start()
    yield srv
    srv.stop()


@pytest.fixture
def server_url(server: ThreadedServer) -> str:
    """Base URL of the module's server."""
    return server.url


@pytest.fixture
def client(server: ThreadedServer) -> Iterator[httpx.Client]:
    """An HTTP client authenticated as product A."""
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN_A}"}, timeout=60) as c:
        yield c


@pytest.fixture
def job_id() -> str:
    """A job id no other test uses."""
    return "job-" + secrets.token_hex(6)


@pytest.fixture
async def azure_blobs(azurite: Azurite, tmp_path: Path) -> AsyncIterator[AzureBlobStore]:
    """An AzureBlobStore on a fresh container of the session's Azurite."""
    store = AzureBlobStore.from_settings(make_settings(azurite, tmp_path, block_size_bytes=str(256 * 1024)))
    await store.open()
    yield store
    await store.close()


@pytest.fixture
def local_blobs(tmp_path: Path) -> LocalBlobStore:
    """A LocalBlobStore in a fresh directory."""
    return LocalBlobStore(tmp_path / "blobs", UrlSigner(secrets.token_bytes(32)), url_prefix=BLOBS)


def blob_server(store: HostedBlobStore) -> ThreadedServer:
    """Serve a hosted store's signed /blobs/ URLs over real HTTP (as the app does)."""
    return hosted_blob_server(store)
