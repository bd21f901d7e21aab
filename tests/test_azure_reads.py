"""Azure downloads with read-ahead (stores/azure_reads): ranges pinned to the first answer's ETag."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
from azure.core.exceptions import ResourceModifiedError

from fleet_artifacts.core.errors import Conflict
from fleet_artifacts.stores.azure_blob import DOWNLOAD_CHUNK, AzureBlobStore

MiB = 1024 * 1024


async def chunks_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_read_ahead_keeps_ranges_in_flight_and_cancels_them_on_close(
    azure_blobs: AzureBlobStore,
) -> None:
    data = secrets.token_bytes(5 * DOWNLOAD_CHUNK)
    key = f"fleet/p/j/{secrets.token_hex(8)}-log"
    await azure_blobs.write(key, chunks_of(data, MiB), content_type="a/b", max_bytes=10**9)
    before = asyncio.all_tasks()
    reader = azure_blobs.read(key)
    assert await anext(reader) == data[:DOWNLOAD_CHUNK]  # the first GET's body, whole
    assert len(asyncio.all_tasks() - before) == 2  # two ranges fetched ahead, no more
    await reader.aclose()  # type: ignore[attr-defined]
    assert asyncio.all_tasks() == before


async def test_a_blob_replaced_mid_download_fails_it_rather_than_mix_versions(
    azure_blobs: AzureBlobStore,
) -> None:
    old, new = secrets.token_bytes(5 * DOWNLOAD_CHUNK), secrets.token_bytes(5 * DOWNLOAD_CHUNK)
    key = f"fleet/p/j/{secrets.token_hex(8)}-log"
    await azure_blobs.write(key, chunks_of(old, MiB), content_type="a/b", max_bytes=10**9)
    reader = azure_blobs.read(key)
    got = [await anext(reader)]
    await azure_blobs.write(key, chunks_of(new, MiB), content_type="a/b", max_bytes=10**9)
    # A 412 (If-Match) on a later range: the project's Conflict, not the SDK's error.
    with pytest.raises(Conflict, match="changed while it was being read") as raised:
        async for chunk in reader:
            got.append(chunk)
    assert isinstance(raised.value.__cause__, ResourceModifiedError)
    received = b"".join(got)
    # Ranges already fetched before the overwrite may be delivered; a byte of the new version never is.
    assert len(received) < len(old) and received == old[: len(received)]
