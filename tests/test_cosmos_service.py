"""The service on Cosmos DB pointers (through the test gateway): partition discipline and CLI."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fleet_artifacts.app import create_app
from tests.conftest import TOKEN_A, make_settings
from tests.cosmos_gateway import EMULATOR_KEY, CosmosGateway
from tests.helpers import clean_env
from tests.servers import Azurite, ThreadedServer


@pytest.fixture
def counted_gateway() -> Iterator[CosmosGateway]:
    """A gateway of this test's own, so its query counters see only this test."""
    with CosmosGateway(key=EMULATOR_KEY) as gateway:
        yield gateway


def test_job_scoped_routes_never_fan_out(
    azurite: Azurite, counted_gateway: CosmosGateway, tmp_path: Path
) -> None:
    server = ThreadedServer(create_app(make_settings(azurite, tmp_path, cosmos=counted_gateway))).start()
    try:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN_A}"}) as c:
            counted_gateway.stats.reset()
            ids = []
            for i in range(5):
                r = c.post(
                    "/fleet/jobs/job-x/artifacts",
                    params={"kind": "log", "fileName": f"{i}.log"},
                    content=f"log {i}".encode(),
                )
                assert r.status_code == 201, r.text
                ids.append(r.json()["id"])
            page = c.get("/fleet/jobs/job-x/artifacts", params={"limit": 2}).json()
            while page["continuationToken"]:
                page = c.get(
                    "/fleet/jobs/job-x/artifacts",
                    params={"limit": 2, "continuationToken": page["continuationToken"]},
                ).json()
            for artifact_id in ids[:2]:
                assert c.get(f"/fleet/jobs/job-x/artifacts/{artifact_id}").status_code == 200
                assert c.get(f"/fleet/jobs/job-x/artifacts/{artifact_id}/content").content.startswith(b"log")
                assert c.delete(f"/fleet/jobs/job-x/artifacts/{artifact_id}").status_code == 204
            assert counted_gateway.stats.cross_partition_queries == 0
            assert counted_gateway.stats.point_reads >= 6

            # The id-only lookup is the one route that fans out, once per call.
            assert c.get(f"/fleet/artifacts/{ids[2]}").status_code == 200
            assert counted_gateway.stats.cross_partition_queries == 1
    finally:
        server.stop()


def cosmos_env(gateway: CosmosGateway, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = clean_env() | {
        "FLEET_ARTIFACTS_POINTER_BACKEND": "cosmos",
        "FLEET_ARTIFACTS_COSMOS_ENDPOINT": gateway.url,
        "FLEET_ARTIFACTS_COSMOS_KEY": EMULATOR_KEY,
        "FLEET_ARTIFACTS_COSMOS_DATABASE": "cli-db",
        "FLEET_ARTIFACTS_DATA_DIR": str(tmp_path),
        "FLEET_ARTIFACTS_AZURE_RETRY_TOTAL": "1",
    }
    return env | extra


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleet_artifacts", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_cosmos_init_cli_is_idempotent(counted_gateway: CosmosGateway, tmp_path: Path) -> None:
    first = run_cli(cosmos_env(counted_gateway, tmp_path), "cosmos-init")
    assert first.returncode == 0, first.stderr
    assert "database cli-db: created" in first.stdout and "container pointers: created" in first.stdout
    again = run_cli(cosmos_env(counted_gateway, tmp_path), "cosmos-init")
    assert again.returncode == 0, again.stderr
    assert "database cli-db: exists" in again.stdout and "container pointers: exists" in again.stdout
    assert counted_gateway.items("cli-db", "pointers") == []


def test_wrong_cosmos_key_is_a_clear_startup_error(counted_gateway: CosmosGateway, tmp_path: Path) -> None:
    wrong = "A" * 86 + "=="
    env = cosmos_env(counted_gateway, tmp_path, FLEET_ARTIFACTS_COSMOS_KEY=wrong)
    init = run_cli(env, "cosmos-init")
    assert init.returncode == 1 and "authentication failed (401)" in init.stderr
    serve = run_cli(env, "serve", "--port", "0")
    assert serve.returncode != 0
    assert "cannot open the Cosmos DB pointer store" in serve.stdout + serve.stderr
    assert "authentication failed (401)" in serve.stdout + serve.stderr


def test_missing_container_names_cosmos_init(counted_gateway: CosmosGateway, tmp_path: Path) -> None:
    serve = run_cli(
        cosmos_env(counted_gateway, tmp_path, FLEET_ARTIFACTS_COSMOS_DATABASE="absent"),
        "serve",
        "--port",
        "0",
    )
    assert serve.returncode != 0
    assert "fleet-artifacts cosmos-init" in serve.stdout + serve.stderr
