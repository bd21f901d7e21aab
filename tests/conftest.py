"""Shared fixtures: one Azurite per session, settings, and the app under uvicorn."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from fleet_artifacts.adapters.azure_blob import AzureBlobStore
from fleet_artifacts.app import create_app
from fleet_artifacts.settings import Settings, load_settings
from tests.servers import Azurite, ThreadedServer

TOKEN_A = "token-product-a-" + "0" * 16
TOKEN_B = "token-product-b-" + "1" * 16


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """A fresh Azurite blob service for the whole session."""
    server = Azurite(tmp_path_factory.mktemp("azurite")).start()
    yield server
    server.stop()


def make_settings(azurite: Azurite, data_dir: Path, **overrides: str) -> Settings:
    """Settings for an app on this Azurite, with products 'prod-a' and 'prod-b'."""
    env = {
        "FLEET_ARTIFACTS_TOKENS": f"{TOKEN_A}:prod-a,{TOKEN_B}:prod-b",
        "FLEET_ARTIFACTS_AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
        "FLEET_ARTIFACTS_BLOB_CONTAINER": "c" + secrets.token_hex(6),
        "FLEET_ARTIFACTS_DATA_DIR": str(data_dir),
        "FLEET_ARTIFACTS_AZURE_RETRY_TOTAL": "1",
    }
    env.update({f"FLEET_ARTIFACTS_{k.upper()}": v for k, v in overrides.items()})
    return load_settings(env)


@pytest.fixture(scope="module")
def settings(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings with a small upload limit so 413 is cheap to provoke."""
    return make_settings(azurite, tmp_path_factory.mktemp("data"), max_upload_bytes=str(80 * 1024 * 1024))


@pytest.fixture(scope="module")
def server(settings: Settings) -> Iterator[ThreadedServer]:
    """The app on Azurite + SQLite, served by uvicorn on a free port."""
    srv = ThreadedServer(create_app(settings)).start()
    yield srv
    srv.stop()


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
