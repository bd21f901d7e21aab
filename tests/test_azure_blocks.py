"""An upload cut into blocks (stores/azure_blocks): the cutter's arithmetic; a small one is one Put Blob."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient
from hypothesis import given
from hypothesis import strategies as st

from fleet_artifacts.core.errors import PayloadTooLarge
from fleet_artifacts.stores.azure_blob import AzureBlobStore
from fleet_artifacts.stores.azure_blocks import BlockCutter
from tests.conftest import make_settings
from tests.servers import Azurite

KiB = 1024


async def stream(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def cut(parts: list[bytes], block_size: int, max_bytes: int) -> tuple[list[bytes], str, int]:
    cutter = BlockCutter(stream(parts), block_size=block_size, max_bytes=max_bytes)
    blocks = []
    while (block := await cutter.next()) is not None:
        blocks.append(block)
    return blocks, await cutter.sha256(), cutter.size


@given(
    parts=st.lists(st.binary(max_size=3000), max_size=12),
    block_size=st.integers(1, 4000),
    big=st.booleans(),
)
def test_blocks_are_the_stream_cut_at_block_size_and_hashed_in_order(
    parts: list[bytes], block_size: int, big: bool
) -> None:
    if big:  # blocks large enough to be hashed on a thread
        parts = [part * 200 for part in parts]
        block_size *= 200
    data = b"".join(parts)
    blocks, sha256, size = asyncio.run(cut(parts, block_size, len(data)))
    assert b"".join(blocks) == data
    assert all(len(block) == block_size for block in blocks[:-1])
    assert not blocks or 0 < len(blocks[-1]) <= block_size
    assert sha256 == hashlib.sha256(data).hexdigest()
    assert size == len(data)


def test_a_stream_past_max_bytes_is_refused_at_the_chunk_that_crosses_it() -> None:
    with pytest.raises(PayloadTooLarge):
        asyncio.run(cut([b"a" * 10, b"b" * 10], block_size=100, max_bytes=15))


@pytest.mark.parametrize(("size", "blocks"), [(0, 0), (100 * KiB, 0), (256 * KiB, 0), (300 * KiB, 2)])
def test_an_upload_within_one_block_is_one_put_blob(
    azurite: Azurite, tmp_path: Path, size: int, blocks: int
) -> None:
    settings = make_settings(azurite, tmp_path, block_size_bytes=str(256 * KiB))
    data = secrets.token_bytes(size)
    key = f"fleet/p/j/{secrets.token_hex(8)}-log"

    async def write() -> None:
        store = AzureBlobStore.from_settings(settings)
        await store.open()
        try:
            parts = [data[i : i + 64 * KiB] for i in range(0, size, 64 * KiB)]
            written = await store.write(key, stream(parts), content_type="a/b", max_bytes=10**9)
            assert written.sha256 == hashlib.sha256(data).hexdigest()
        finally:
            await store.close()

    asyncio.run(write())
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    blob = service.get_blob_client(settings.blob_container, key)
    committed, _ = blob.get_block_list("committed")
    assert len(committed) == blocks  # a Put Blob leaves no block list; staging leaves one per block
    assert blob.download_blob().readall() == data
    assert blob.get_blob_properties().metadata == {"sha256": hashlib.sha256(data).hexdigest()}
