"""The Azure Storage SDK, unmodified, on every URL the service signs: Azure SAS and local signed URLs alike.

A worker that already speaks Blob Storage must not care which backend is behind the service.
"""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest
from azure.storage.blob import BlobClient
from azure.storage.blob.aio import BlobClient as AioBlobClient

from tests.helpers import upload_raw

SMALL = 64 * 1024  # SDK GET sizes small enough that a 300 KiB blob takes several ranged GETs


def signed_url(client: httpx.Client, job_id: str, data: bytes) -> str:
    r = upload_raw(client, job_id, data, kind="data", fileName="blob.bin", _ct="application/octet-stream")
    assert r.status_code == 201, r.text
    url: str = client.get(f"/fleet/artifacts/{r.json()['id']}").json()["downloadUrl"]
    return url


@pytest.mark.parametrize("size", [0, 1, 300 * 1024 + 7])
def test_download_whole(client: httpx.Client, job_id: str, size: int) -> None:
    data = secrets.token_bytes(size)
    with BlobClient.from_blob_url(signed_url(client, job_id, data)) as blob:
        downloader = blob.download_blob()
        assert downloader.size == size
        assert downloader.readall() == data


def test_download_chunked_in_parallel(client: httpx.Client, job_id: str) -> None:
    data = secrets.token_bytes(300 * 1024 + 7)
    options: dict[str, Any] = {"max_single_get_size": SMALL, "max_chunk_get_size": SMALL}
    with BlobClient.from_blob_url(signed_url(client, job_id, data), **options) as blob:
        assert blob.download_blob(max_concurrency=4).readall() == data  # each chunk sends If-Match
        assert (
            blob.download_blob(offset=1000, length=200_000, max_concurrency=3).readall() == data[1000:201_000]
        )
        assert blob.download_blob(offset=len(data) - 5).readall() == data[-5:]
        assert blob.get_blob_properties().size == len(data)


async def test_download_with_the_async_client(client: httpx.Client, job_id: str) -> None:
    data = secrets.token_bytes(200 * 1024)
    url = signed_url(client, job_id, data)
    async with AioBlobClient.from_blob_url(url, max_single_get_size=SMALL, max_chunk_get_size=SMALL) as blob:
        downloader = await blob.download_blob(max_concurrency=2)
        assert await downloader.readall() == data
        chunks = [chunk async for chunk in (await blob.download_blob()).chunks()]
        assert b"".join(chunks) == data
