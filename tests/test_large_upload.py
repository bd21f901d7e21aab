"""A 300 MiB proxied upload, streamed both ways, byte-exact on each blob backend."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fleet_artifacts.app import create_app
from tests.conftest import TOKEN_A, make_settings
from tests.servers import Azurite, ThreadedServer

MiB = 1024 * 1024
SIZE = 300 * MiB


@pytest.mark.slow
@pytest.mark.parametrize("blob_backend", ["azure", "local"])
def test_300_mib_proxied_upload_is_byte_exact(
    request: pytest.FixtureRequest, tmp_path: Path, blob_backend: str
) -> None:
    azurite: Azurite | None = request.getfixturevalue("azurite") if blob_backend == "azure" else None
    server = ThreadedServer(create_app(make_settings(azurite, tmp_path, max_upload_bytes=str(SIZE)))).start()
    block = secrets.token_bytes(MiB)
    sent = hashlib.sha256()

    def body() -> Iterator[bytes]:
        for i in range(SIZE // MiB):
            piece = block[i % 97 :] + block[: i % 97]  # every MiB differs, so a misplaced block shows
            sent.update(piece)
            yield piece

    try:
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {TOKEN_A}"}, timeout=600
        ) as c:
            r = c.post(
                "/fleet/jobs/big/artifacts",
                params={"kind": "build", "fileName": "big.bin"},
                content=body(),
                headers={"Content-Type": "application/octet-stream"},
            )
            assert r.status_code == 201, r.text
            assert r.json()["sizeBytes"] == SIZE and r.json()["sha256"] == sent.hexdigest()
            got = hashlib.sha256()
            with httpx.stream("GET", r.json()["downloadUrl"], timeout=600) as download:
                assert download.status_code == 200
                for chunk in download.iter_bytes(MiB):
                    got.update(chunk)
            assert got.hexdigest() == sent.hexdigest()
    finally:
        server.stop()
