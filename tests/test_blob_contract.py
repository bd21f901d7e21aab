"""BlobStore contract: every adapter must pass these (Azure on Azurite, local files, the in-memory fake)."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from typing import cast

import httpx
import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobClient, BlobProperties
from azure.storage.blob.aio import BlobClient as AsyncBlobClient

from fleet_artifacts.core.clock import utcnow
from fleet_artifacts.core.errors import (
    Archived,
    Conflict,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    SignatureRejected,
    Unavailable,
)
from fleet_artifacts.core.hosted import HostedBlobStore
from fleet_artifacts.core.models import BlobTier
from fleet_artifacts.core.ports import BlobStore
from fleet_artifacts.stores.azure_copy import copy_blob
from fleet_artifacts.stores.local_blob import LocalBlobStore
from fleet_artifacts.stores.signing import UrlSigner
from tests.conftest import BLOB_BACKENDS, blob_server
from tests.fakes import MemoryBlobStore
from tests.helpers import BLOBS


class Served:
    """A store, and where its root-relative signed URLs are served (the local backend's)."""

    def __init__(self, store: BlobStore, base: str = "") -> None:
        self.store, self.base = store, base

    async def url(self, key: str, expires_at: datetime, **kw: str) -> str:
        url = await self.store.sign_read_url(key, expires_at=expires_at, **kw)
        return self.base + url if url.startswith("/") else url


@pytest.fixture(params=[*BLOB_BACKENDS, "memory"])
def backend(request: pytest.FixtureRequest) -> Iterator[Served]:
    """Each BlobStore adapter in turn, with a server for its signed URLs where it needs one.

    The in-memory fake is a hosted store like the local one, so it is served the same way.
    """
    if request.param == "azure":
        yield Served(request.getfixturevalue("azure_blobs"))
        return
    store: HostedBlobStore
    if request.param == "memory":
        store = MemoryBlobStore(UrlSigner(secrets.token_bytes(32)), url_prefix=BLOBS)
    else:
        store = request.getfixturevalue("local_blobs")
    server = blob_server(store)
    yield Served(store, server.url)
    server.stop()


@pytest.fixture
def blobs(backend: Served) -> BlobStore:
    """The adapter under test."""
    return backend.store


async def chunks_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def read_all(blobs: BlobStore, key: str) -> bytes:
    return b"".join([chunk async for chunk in blobs.read(key)])


def key() -> str:
    return f"fleet/p/j/{secrets.token_hex(8)}-log"


@pytest.mark.parametrize("size", [0, 1, 256 * 1024 - 1, 256 * 1024, 3 * 256 * 1024 + 17])
async def test_write_then_read_is_byte_exact(blobs: BlobStore, size: int) -> None:
    data = secrets.token_bytes(size)
    k = key()
    written = await blobs.write(k, chunks_of(data, 10_000), content_type="text/plain", max_bytes=10**9)
    assert written.size_bytes == size
    assert written.sha256 == hashlib.sha256(data).hexdigest()
    assert await read_all(blobs, k) == data
    info = await blobs.info(k)
    assert info is not None and info.size_bytes == size and info.content_type == "text/plain"


async def test_crossing_the_limit_commits_nothing(blobs: BlobStore) -> None:
    k = key()
    with pytest.raises(PayloadTooLarge):
        await blobs.write(k, chunks_of(b"x" * 1_000_001, 4096), content_type="a/b", max_bytes=1_000_000)
    assert await blobs.info(k) is None


async def test_a_failing_stream_commits_nothing(blobs: BlobStore) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"a" * 600_000  # enough for blocks to be staged before the failure
        raise InvalidInput("client went away")

    k = key()
    with pytest.raises(InvalidInput):
        await blobs.write(k, broken(), content_type="a/b", max_bytes=10**9)
    assert await blobs.info(k) is None


async def test_delete_reports_whether_the_blob_existed(blobs: BlobStore) -> None:
    k = key()
    await blobs.write(k, chunks_of(b"bye", 3), content_type="a/b", max_bytes=10)
    assert await blobs.delete(k) is True
    assert await blobs.info(k) is None
    assert await blobs.delete(k) is False
    with pytest.raises(NotFound):
        await read_all(blobs, k)


async def test_ranges_read_exactly_the_requested_bytes(blobs: BlobStore) -> None:
    data = secrets.token_bytes(3 * 1024 * 1024 + 11)
    k = key()
    await blobs.write(k, chunks_of(data, 65536), content_type="a/b", max_bytes=10**9)
    for offset, length in ((0, 1), (5, 100), (1024 * 1024 - 3, 2 * 1024 * 1024), (len(data) - 7, 7)):
        got = b"".join([c async for c in blobs.read(k, offset=offset, length=length)])
        assert got == data[offset : offset + length]
    assert b"".join([c async for c in blobs.read(k, offset=len(data) - 5)]) == data[-5:]
    info = await blobs.info(k)
    assert info is not None and info.sha256 == hashlib.sha256(data).hexdigest()


async def test_a_blob_of_many_download_chunks_reads_byte_exact(blobs: BlobStore) -> None:
    # Beyond 2 x 8 MiB: the Azure adapter's first GET, then ranges two in flight (azure_reads).
    mib = 1024 * 1024
    data = secrets.token_bytes(20 * mib + 13)
    k = key()
    await blobs.write(k, chunks_of(data, mib), content_type="a/b", max_bytes=10**9)
    assert await read_all(blobs, k) == data
    for offset, length in ((8 * mib - 100, 8 * mib + 200), (3 * mib + 1, 17 * mib), (0, 16 * mib + 1)):
        got = b"".join([c async for c in blobs.read(k, offset=offset, length=length)])
        assert got == data[offset : offset + length]
    assert b"".join([c async for c in blobs.read(k, offset=5 * mib + 7)]) == data[5 * mib + 7 :]


async def test_a_download_closed_early_leaves_no_task_running(blobs: BlobStore) -> None:
    mib = 1024 * 1024
    data = secrets.token_bytes(40 * mib)
    k = key()
    await blobs.write(k, chunks_of(data, mib), content_type="a/b", max_bytes=10**9)
    before = asyncio.all_tasks()
    reader = blobs.read(k)
    first = await anext(reader)
    assert first == data[: len(first)]
    await reader.aclose()  # type: ignore[attr-defined]  # an async generator, as the port's callers get
    assert asyncio.all_tasks() == before


async def test_signed_url_reads_only_its_blob_until_expiry(backend: Served) -> None:
    blobs = backend.store
    k, other = key(), key()
    for name in (k, other):
        await blobs.write(name, chunks_of(name.encode(), 100), content_type="text/plain", max_bytes=1000)
    disposition = "attachment; filename=\"a.txt\"; filename*=UTF-8''a.txt"
    url = await backend.url(
        k, utcnow() + timedelta(minutes=5), content_disposition=disposition, content_type="text/x-log"
    )
    async with httpx.AsyncClient() as http:
        ok = await http.get(url)
        assert ok.status_code == 200 and ok.content == k.encode()
        assert ok.headers["content-disposition"] == disposition
        assert ok.headers["content-type"] == "text/x-log"
        assert (await http.get(url.replace(k, other))).status_code == 403
        put = await http.put(url, content=b"overwrite", headers={"x-ms-blob-type": "BlockBlob"})
        assert put.status_code in (403, 405)  # a read URL never writes (local: no PUT route at all)
        expired = await backend.url(
            k, utcnow() - timedelta(seconds=5), content_disposition=disposition, content_type="text/plain"
        )
        assert (await http.get(expired)).status_code == 403
    assert await read_all(blobs, k) == k.encode()


async def test_chunks_staged_out_of_order_commit_in_order(blobs: BlobStore) -> None:
    data = secrets.token_bytes(700_000)
    k = key()
    cuts = [(300_000, 700_000), (0, 120_000), (120_000, 300_000)]  # arrival order
    staged = {}
    for start, end in cuts:
        chunk = await blobs.stage_chunk(
            k,
            offset=start,
            nonce=secrets.token_hex(4),
            chunks=chunks_of(data[start:end], 50_000),
            max_bytes=10**9,
        )
        assert chunk.size_bytes == end - start and chunk.sha256 == hashlib.sha256(data[start:end]).hexdigest()
        staged[start] = chunk
    assert await blobs.info(k) is None  # staged is not committed
    ids = [block for start in sorted(staged) for block in staged[start].block_ids]
    written = await blobs.commit_chunks(k, ids, content_type="application/zip", max_bytes=10**9)
    assert written.size_bytes == len(data) and written.sha256 == hashlib.sha256(data).hexdigest()
    assert await read_all(blobs, k) == data
    info = await blobs.info(k)
    assert info is not None and info.content_type == "application/zip" and info.sha256 == written.sha256


async def test_discarded_chunks_cannot_be_committed(blobs: BlobStore) -> None:
    k = key()
    chunk = await blobs.stage_chunk(
        k, offset=0, nonce="abcd1234", chunks=chunks_of(b"x" * 1000, 100), max_bytes=10**6
    )
    await blobs.discard_uncommitted(k)
    with pytest.raises((Conflict, InvalidInput, NotFound)):
        await blobs.commit_chunks(k, chunk.block_ids, content_type="a/b", max_bytes=10**6)
    assert await blobs.info(k) is None


async def test_committed_lists_committed_blobs_under_a_prefix(blobs: BlobStore) -> None:
    prefix = f"fleet/p/{secrets.token_hex(4)}/"
    for name in ("a-log", "b-log"):
        await blobs.write(prefix + name, chunks_of(b"x", 1), content_type="a/b", max_bytes=10)
    await blobs.stage_chunk(
        prefix + "c-log", offset=0, nonce="00000000", chunks=chunks_of(b"y", 1), max_bytes=10
    )
    listed = {key: modified async for key, modified in blobs.committed(prefix)}
    assert set(listed) == {prefix + "a-log", prefix + "b-log"}  # staged-only is not committed
    assert all(modified.tzinfo is not None for modified in listed.values())


def hosted(blobs: BlobStore) -> HostedBlobStore:
    if not isinstance(blobs, HostedBlobStore):
        pytest.skip(
            "an Azure SAS cannot be revoked before it expires, so seal cannot stop it (README: Limits)"
        )
    return blobs


async def test_a_sealed_key_takes_no_more_writes_through_signed_urls(blobs: BlobStore) -> None:
    store, k = hosted(blobs), key()

    async def yes() -> bool:
        return True

    async def no() -> bool:
        return False

    await store.put_blob(k, chunks_of(b"first", 2), content_type="a/b", limit=100, may_commit=yes)
    with pytest.raises(SignatureRejected):  # the upload ended: the caller says no
        await store.put_blob(k, chunks_of(b"late", 2), content_type="a/b", limit=100, may_commit=no)
    await store.seal(k)
    await store.seal(k)  # sealing twice is sealing
    with pytest.raises(SignatureRejected):
        await store.put_blob(k, chunks_of(b"late", 2), content_type="a/b", limit=100, may_commit=yes)
    await store.stage_block(k, b"block-1", chunks_of(b"staged", 3), limit=100, declared=None)
    with pytest.raises(SignatureRejected):
        await store.commit_block_list(
            k, [("Latest", b"block-1")], content_type="a/b", limit=100, may_commit=yes
        )
    assert await read_all(store, k) == b"first"
    # The service's own writes are not writes through a URL; deleting ends the seal with the blob.
    await store.write(k, chunks_of(b"own", 3), content_type="a/b", max_bytes=100)
    assert await store.delete(k)
    await store.put_blob(k, chunks_of(b"anew", 2), content_type="a/b", limit=100, may_commit=yes)
    assert await read_all(store, k) == b"anew"
    assert [name async for name, _ in store.committed(k.rsplit("/", 1)[0] + "/")] == [k]  # no sidecars


async def test_a_seal_waits_for_a_write_about_to_land(blobs: BlobStore) -> None:
    store, k = hosted(blobs), key()
    asked = asyncio.Event()
    proceed = asyncio.Event()

    async def slow_yes() -> bool:  # the write has been checked and is about to land
        asked.set()
        await proceed.wait()
        return True

    writing = asyncio.create_task(
        store.put_blob(k, chunks_of(b"lands", 5), content_type="a/b", limit=100, may_commit=slow_yes)
    )
    await asyncio.wait_for(asked.wait(), 10)

    async def seal_then_look() -> bool:
        await store.seal(k)
        return await store.info(k) is not None  # what is there the moment the seal is done

    sealing = asyncio.create_task(seal_then_look())
    await asyncio.sleep(0.2)
    proceed.set()
    results = await asyncio.wait_for(asyncio.gather(writing, sealing, return_exceptions=True), 10)
    there_at_seal = results[1]
    assert isinstance(there_at_seal, bool)
    if isinstance(results[0], BaseException):  # the seal came first and refused the write
        assert isinstance(results[0], SignatureRejected) and not there_at_seal
        assert await store.info(k) is None
    else:  # the write came first: it was there before the seal finished, never after
        assert there_at_seal and await read_all(store, k) == b"lands"
    with pytest.raises(SignatureRejected):
        await store.put_blob(k, chunks_of(b"after", 5), content_type="a/b", limit=100, may_commit=slow_yes)


async def test_many_writers_to_one_key_all_finish(blobs: BlobStore) -> None:
    """A burst of writes through one URL queues on the key's lock; none waits forever."""
    store, k = hosted(blobs), key()

    async def yes() -> bool:
        await asyncio.sleep(0)
        return True

    writes = [
        store.put_blob(k, chunks_of(bytes([n]) * 10, 5), content_type="a/b", limit=100, may_commit=yes)
        for n in range(40)
    ]
    outcomes = await asyncio.wait_for(asyncio.gather(*writes, store.seal(k), return_exceptions=True), 30)
    landed = [o for o in outcomes[:-1] if not isinstance(o, BaseException)]
    refused = [o for o in outcomes[:-1] if isinstance(o, BaseException)]
    assert all(isinstance(o, SignatureRejected) for o in refused)  # those that came after the seal
    assert outcomes[-1] is None  # the seal finished too: nobody waited forever
    if landed:
        assert len(await read_all(store, k)) == 10


async def test_tags_given_at_write_and_at_commit_come_back(blobs: BlobStore) -> None:
    written, committed, untagged = key(), key(), key()
    tags = {"os": "linux", "run": "attempt-1", "path": "out/a b+c.log", "when": "t=10:00", "empty": ""}
    await blobs.write(written, chunks_of(b"w", 1), content_type="a/b", max_bytes=10, tags=tags)
    chunk = await blobs.stage_chunk(
        committed, offset=0, nonce="0000tags", chunks=chunks_of(b"c" * 300_000, 65536), max_bytes=10**6
    )
    await blobs.commit_chunks(
        committed, chunk.block_ids, content_type="a/b", max_bytes=10**6, tags={"kind": "coverage"}
    )
    await blobs.write(untagged, chunks_of(b"u", 1), content_type="a/b", max_bytes=10)
    assert await blobs.get_tags(written) == tags
    assert await blobs.get_tags(committed) == {"kind": "coverage"}
    assert await blobs.get_tags(untagged) == {}
    assert await read_all(blobs, committed) == b"c" * 300_000  # the digest metadata kept the tags
    assert await blobs.get_tags(committed) == {"kind": "coverage"}


async def test_set_tags_replaces_every_tag(blobs: BlobStore) -> None:
    k = key()
    await blobs.write(k, chunks_of(b"x", 1), content_type="a/b", max_bytes=10, tags={"a": "1", "b": "2"})
    await blobs.set_tags(k, {"b": "3", "c": "4"})
    assert await blobs.get_tags(k) == {"b": "3", "c": "4"}
    await blobs.set_tags(k, {})
    assert await blobs.get_tags(k) == {}


async def test_the_largest_tag_set_azure_takes_is_kept(blobs: BlobStore) -> None:
    k = key()
    tags = {f"k{n}": f"v{n}" for n in range(9)} | {"K" * 128: "v" * 256}
    await blobs.write(k, chunks_of(b"x", 1), content_type="a/b", max_bytes=10, tags=tags)
    assert await blobs.get_tags(k) == tags


TAGS_AZURE_REFUSES = {
    "eleven tags": {f"k{n}": "v" for n in range(11)},
    "key of 129": {"k" * 129: "v"},
    "empty key": {"": "v"},
    "value of 257": {"k": "v" * 257},
    "a '!'": {"k": "v!"},
    "a non-ASCII letter": {"k": "é"},
}


@pytest.mark.parametrize("tags", TAGS_AZURE_REFUSES.values(), ids=TAGS_AZURE_REFUSES.keys())
async def test_tags_azure_refuses_are_refused(blobs: BlobStore, tags: dict[str, str]) -> None:
    k, fresh = key(), key()
    await blobs.write(k, chunks_of(b"x", 1), content_type="a/b", max_bytes=10, tags={"kept": "yes"})
    with pytest.raises(InvalidInput):
        await blobs.set_tags(k, tags)
    assert await blobs.get_tags(k) == {"kept": "yes"}
    with pytest.raises(InvalidInput):
        await blobs.write(fresh, chunks_of(b"y", 1), content_type="a/b", max_bytes=10, tags=tags)
    chunk = await blobs.stage_chunk(
        fresh, offset=0, nonce="badtags0", chunks=chunks_of(b"z", 1), max_bytes=10
    )
    with pytest.raises(InvalidInput):
        await blobs.commit_chunks(fresh, chunk.block_ids, content_type="a/b", max_bytes=10, tags=tags)
    assert await blobs.info(fresh) is None


@pytest.mark.parametrize("tier", [BlobTier.COOL, BlobTier.COLD, BlobTier.HOT])
async def test_online_tiers_keep_the_bytes_readable(blobs: BlobStore, tier: BlobTier) -> None:
    data = secrets.token_bytes(300_000)
    k = key()
    await blobs.write(k, chunks_of(data, 65536), content_type="a/b", max_bytes=10**6, tags={"t": "1"})
    info = await blobs.info(k)
    assert info is not None and info.tier is BlobTier.HOT and not info.rehydrating  # a new blob is Hot
    await blobs.set_tier(k, tier)
    info = await blobs.info(k)
    assert info is not None and info.tier is tier and not info.rehydrating
    assert info.size_bytes == len(data) and info.sha256 == hashlib.sha256(data).hexdigest()
    assert await read_all(blobs, k) == data
    assert b"".join([c async for c in blobs.read(k, offset=10, length=20)]) == data[10:30]
    assert await blobs.get_tags(k) == {"t": "1"}  # a tier change keeps the tags


async def test_an_archived_blob_is_unreadable_until_rehydrated(blobs: BlobStore) -> None:
    data = secrets.token_bytes(300_000)
    k = key()
    await blobs.write(k, chunks_of(data, 65536), content_type="a/b", max_bytes=10**6, tags={"t": "1"})
    await blobs.set_tier(k, BlobTier.COOL)
    await blobs.set_tier(k, BlobTier.ARCHIVE)
    info = await blobs.info(k)  # properties stay readable offline
    assert info is not None and info.tier is BlobTier.ARCHIVE and info.size_bytes == len(data)
    with pytest.raises(Archived):
        await read_all(blobs, k)
    with pytest.raises(Archived):
        await anext(blobs.read(k, offset=5, length=10))
    assert await blobs.get_tags(k) == {"t": "1"}  # so do the tags
    await blobs.set_tags(k, {"t": "2"})
    await blobs.set_tier(k, BlobTier.HOT, high_priority=True)
    info = await blobs.info(k)
    # Every backend under test rehydrates at once (Azure would say rehydrating, for hours).
    assert info is not None and info.tier is BlobTier.HOT and not info.rehydrating
    assert await read_all(blobs, k) == data
    assert await blobs.get_tags(k) == {"t": "2"}


async def test_a_new_write_starts_hot_with_its_own_tags(blobs: BlobStore) -> None:
    k = key()
    await blobs.write(k, chunks_of(b"old", 3), content_type="a/b", max_bytes=10, tags={"v": "1"})
    await blobs.set_tier(k, BlobTier.ARCHIVE)
    await blobs.write(k, chunks_of(b"new", 3), content_type="a/b", max_bytes=10)
    info = await blobs.info(k)
    assert info is not None and info.tier is BlobTier.HOT and not info.rehydrating
    assert await blobs.get_tags(k) == {}
    assert await read_all(blobs, k) == b"new"


async def test_tiers_and_tags_of_an_absent_blob_are_not_found(blobs: BlobStore) -> None:
    k = key()
    with pytest.raises(NotFound):
        await blobs.set_tier(k, BlobTier.COOL)
    with pytest.raises(NotFound):
        await blobs.set_tags(k, {"a": "b"})
    with pytest.raises(NotFound):
        await blobs.get_tags(k)
    await blobs.write(k, chunks_of(b"x", 1), content_type="a/b", max_bytes=10)
    assert await blobs.delete(k)
    with pytest.raises(NotFound):
        await blobs.set_tier(k, BlobTier.ARCHIVE)
    with pytest.raises(NotFound):
        await blobs.get_tags(k)
    assert await blobs.info(k) is None  # a tier change on a deleted blob brings nothing back


async def test_a_signed_url_of_an_archived_blob_answers_409(backend: Served) -> None:
    blobs, k = backend.store, key()
    await blobs.write(k, chunks_of(b"offline", 3), content_type="text/plain", max_bytes=100)
    await blobs.set_tier(k, BlobTier.ARCHIVE)
    url = await backend.url(
        k, utcnow() + timedelta(minutes=5), content_disposition="attachment", content_type="text/plain"
    )
    async with httpx.AsyncClient() as http:
        refused = await http.get(url)
        assert refused.status_code == 409 and refused.headers["x-ms-error-code"] == "BlobArchived"
        ranged = await http.get(url, headers={"x-ms-range": "bytes=0-2"})
        assert ranged.status_code == 409 and ranged.headers["x-ms-error-code"] == "BlobArchived"
        # HEAD is Get Blob Properties on Azure: it answers offline too, and tells the tier.
        head = await http.head(url)
        assert head.status_code == 200 and head.headers["x-ms-access-tier"] == "Archive"
        assert head.headers["content-length"] == str(len(b"offline"))

    def sdk_download() -> bytes:
        with BlobClient.from_blob_url(url) as client:
            return client.download_blob().readall()

    # The Azure SDK reads the error code from either backend alike.
    with pytest.raises(ResourceExistsError) as caught:
        await asyncio.to_thread(sdk_download)
    assert getattr(caught.value, "error_code", None) == "BlobArchived"
    await blobs.set_tier(k, BlobTier.COOL)
    async with httpx.AsyncClient() as http:
        ok = await http.get(url)
        assert ok.status_code == 200 and ok.content == b"offline"


async def test_the_fake_can_keep_a_blob_rehydrating_as_azure_does() -> None:
    """Azurite and the local backend rehydrate at once; the fake can show the state between."""
    blobs = MemoryBlobStore(UrlSigner(secrets.token_bytes(32)), url_prefix=BLOBS, instant_rehydration=False)
    k = key()
    await blobs.write(k, chunks_of(b"later", 5), content_type="a/b", max_bytes=10)
    await blobs.set_tier(k, BlobTier.ARCHIVE)
    await blobs.set_tier(k, BlobTier.COOL)
    info = await blobs.info(k)
    assert info is not None and info.tier is BlobTier.ARCHIVE and info.rehydrating
    with pytest.raises(Archived):
        await read_all(blobs, k)
    await blobs.set_tier(k, BlobTier.COOL, high_priority=True)  # the same target again: allowed
    with pytest.raises(Conflict):
        await blobs.set_tier(k, BlobTier.HOT)
    blobs.finish_rehydration(k)
    info = await blobs.info(k)
    assert info is not None and info.tier is BlobTier.COOL and not info.rehydrating
    assert await read_all(blobs, k) == b"later"


def staging() -> str:
    return f"staging/p/j/{secrets.token_hex(8)}-log"


async def test_copy_gives_the_target_the_sources_bytes_type_and_digest(blobs: BlobStore) -> None:
    data = secrets.token_bytes(700_000)  # several blocks on Azurite (256 KiB blocks in the fixture)
    source, target = staging(), key()
    await blobs.write(
        source,
        chunks_of(data, 65536),
        content_type="text/plain; charset=utf-8",
        max_bytes=10**6,
        tags={"s": "1"},
    )
    tags = {"product": "p", "kind": "log", "expires": "2030-01-01"}
    copied = await blobs.copy(source, target, tags=tags)
    digest = hashlib.sha256(data).hexdigest()
    assert copied.size_bytes == len(data) and copied.sha256 == digest
    assert copied.content_type == "text/plain; charset=utf-8"
    assert copied.tier is BlobTier.HOT and not copied.rehydrating
    assert await blobs.info(target) == copied
    assert await read_all(blobs, target) == data
    assert b"".join([c async for c in blobs.read(target, offset=300_000, length=10)]) == data[300_000:300_010]
    assert await blobs.get_tags(target) == tags
    # The source is unchanged and still readable.
    source_info = await blobs.info(source)
    assert source_info is not None and source_info.sha256 == digest == copied.sha256
    assert source_info.content_type == copied.content_type and source_info.size_bytes == len(data)
    assert await read_all(blobs, source) == data
    assert await blobs.get_tags(source) == {"s": "1"}


async def test_copy_replaces_an_existing_target_and_its_tier_and_tags(blobs: BlobStore) -> None:
    source, target = staging(), key()
    await blobs.write(source, chunks_of(b"new bytes", 4), content_type="application/zip", max_bytes=100)
    await blobs.write(target, chunks_of(b"old", 3), content_type="text/plain", max_bytes=100, tags={"v": "1"})
    await blobs.set_tier(target, BlobTier.COOL)
    copied = await blobs.copy(source, target)  # no tags: the target has none
    assert copied.size_bytes == 9 and copied.content_type == "application/zip"
    assert copied.sha256 == hashlib.sha256(b"new bytes").hexdigest() and copied.tier is BlobTier.HOT
    assert await read_all(blobs, target) == b"new bytes"
    assert await blobs.get_tags(target) == {}
    info = await blobs.info(target)
    assert info is not None and info.tier is BlobTier.HOT
    await blobs.write(source, chunks_of(b"newer", 4), content_type="text/csv", max_bytes=100)
    await blobs.copy(source, target, tags={"v": "3"})  # copying again replaces the copy
    assert await read_all(blobs, target) == b"newer" and await blobs.get_tags(target) == {"v": "3"}
    info = await blobs.info(target)
    assert info is not None and info.content_type == "text/csv"


async def test_copy_of_an_absent_source_is_not_found_and_creates_nothing(blobs: BlobStore) -> None:
    source, target, kept = staging(), key(), key()
    with pytest.raises(NotFound):
        await blobs.copy(source, target, tags={"a": "b"})
    assert await blobs.info(target) is None
    # Staged but never committed is absent too; an existing target is left as it was.
    await blobs.stage_chunk(source, offset=0, nonce="00000000", chunks=chunks_of(b"staged", 3), max_bytes=10)
    await blobs.write(kept, chunks_of(b"kept", 2), content_type="a/b", max_bytes=10, tags={"k": "1"})
    with pytest.raises(NotFound):
        await blobs.copy(source, kept)
    assert await read_all(blobs, kept) == b"kept" and await blobs.get_tags(kept) == {"k": "1"}
    await blobs.discard_uncommitted(source)  # Azure refuses block ids of two lengths in one blob
    await blobs.write(source, chunks_of(b"gone", 2), content_type="a/b", max_bytes=10)
    assert await blobs.delete(source)
    with pytest.raises(NotFound):
        await blobs.copy(source, target)
    assert await blobs.info(target) is None


async def test_copy_of_an_archived_source_is_refused(blobs: BlobStore) -> None:
    source, target = staging(), key()
    await blobs.write(source, chunks_of(b"offline", 3), content_type="a/b", max_bytes=100, tags={"s": "1"})
    await blobs.set_tier(source, BlobTier.ARCHIVE)
    with pytest.raises(Archived):
        await blobs.copy(source, target, tags={"t": "1"})
    assert await blobs.info(target) is None
    info = await blobs.info(source)
    assert info is not None and info.tier is BlobTier.ARCHIVE  # the refusal changed nothing
    await blobs.set_tier(source, BlobTier.HOT)
    copied = await blobs.copy(source, target, tags={"t": "1"})
    assert copied.tier is BlobTier.HOT and await read_all(blobs, target) == b"offline"


async def test_copy_refuses_tags_azure_refuses_before_copying(blobs: BlobStore) -> None:
    source, target = staging(), key()
    await blobs.write(source, chunks_of(b"x", 1), content_type="a/b", max_bytes=10)
    with pytest.raises(InvalidInput):
        await blobs.copy(source, target, tags={"k": "v!"})
    assert await blobs.info(target) is None


async def test_a_large_blob_copies_byte_exact(blobs: BlobStore) -> None:
    data = secrets.token_bytes(5 * 1024 * 1024 + 12345)  # 21 blocks of 256 KiB on Azurite
    source, target = staging(), key()
    await blobs.write(source, chunks_of(data, 1024 * 1024), content_type="application/zip", max_bytes=10**8)
    copied = await blobs.copy(source, target, tags={"kind": "bundle"})
    assert copied.size_bytes == len(data) and copied.sha256 == hashlib.sha256(data).hexdigest()
    assert hashlib.sha256(await read_all(blobs, target)).hexdigest() == copied.sha256
    tail = b"".join([c async for c in blobs.read(target, offset=len(data) - 100)])
    assert tail == data[-100:]


async def test_the_copy_outlives_its_source(blobs: BlobStore) -> None:
    data = secrets.token_bytes(300_000)
    source, target = staging(), key()
    await blobs.write(source, chunks_of(data, 65536), content_type="a/b", max_bytes=10**6)
    await blobs.copy(source, target, tags={"t": "1"})
    assert await blobs.delete(source)
    assert await blobs.info(source) is None
    assert await read_all(blobs, target) == data and await blobs.get_tags(target) == {"t": "1"}
    info = await blobs.info(target)
    assert info is not None and info.sha256 == hashlib.sha256(data).hexdigest()
    assert [k async for k, _ in blobs.committed(target)] == [target]


MiB = 1024 * 1024


async def pausing(data: bytes, at: int, paused: asyncio.Event, resume: asyncio.Event) -> AsyncIterator[bytes]:
    """``data`` in 256 KiB chunks, waiting at byte ``at`` (``paused`` set) until ``resume`` is set.

    Past 4 MiB, the local backend is spooling the write to a temp file by then.
    """
    async for chunk in chunks_of(data[:at], 256 * 1024):
        yield chunk
    paused.set()
    await resume.wait()
    yield data[at:]


async def test_sweeping_temporaries_spares_blobs_staged_blocks_and_a_write_in_flight(
    blobs: BlobStore,
) -> None:
    done, staged, flying = key(), key(), key()
    await blobs.write(done, chunks_of(b"done", 2), content_type="a/b", max_bytes=10)
    chunk = await blobs.stage_chunk(
        staged, offset=0, nonce="abcd1234", chunks=chunks_of(b"staged", 3), max_bytes=100
    )
    data, paused, resume = secrets.token_bytes(6 * MiB), asyncio.Event(), asyncio.Event()
    writing = asyncio.create_task(
        blobs.write(flying, pausing(data, 5 * MiB, paused, resume), content_type="a/b", max_bytes=10**9)
    )
    await asyncio.wait_for(paused.wait(), 30)
    # A write in flight touched its temporaries moments ago: a sweep of older ones leaves them.
    assert await blobs.sweep_temporaries(older_than=utcnow() - timedelta(minutes=1)) == []
    resume.set()
    written = await asyncio.wait_for(writing, 60)
    assert written.sha256 == hashlib.sha256(data).hexdigest() and await read_all(blobs, flying) == data
    # At rest a store holds no temporaries (every write cleaned up after itself), and neither a
    # blob nor a staged block is one, however old it is.
    assert await blobs.sweep_temporaries(older_than=utcnow() + timedelta(days=1)) == []
    assert await read_all(blobs, done) == b"done"
    committed = await blobs.commit_chunks(staged, chunk.block_ids, content_type="a/b", max_bytes=100)
    assert committed.size_bytes == len(b"staged") and await read_all(blobs, staged) == b"staged"


async def test_a_write_whose_temporaries_were_swept_lands_whole_or_not_at_all(blobs: BlobStore) -> None:
    k, old = key(), b"old bytes"
    await blobs.write(k, chunks_of(old, 3), content_type="text/old", max_bytes=100)
    data, paused, resume = secrets.token_bytes(6 * MiB), asyncio.Event(), asyncio.Event()
    writing = asyncio.create_task(
        blobs.write(k, pausing(data, 5 * MiB, paused, resume), content_type="text/new", max_bytes=10**9)
    )
    await asyncio.wait_for(paused.wait(), 30)
    # As if the writer had been silent past any grace: the sweep takes what it spooled so far.
    later = utcnow() + timedelta(minutes=1)
    would = await blobs.sweep_temporaries(older_than=later, dry_run=True)
    swept = await blobs.sweep_temporaries(older_than=later)
    assert swept == would  # a dry run names exactly what goes, and removes nothing
    assert await blobs.sweep_temporaries(older_than=later) == []  # each removal is reported once
    if isinstance(blobs, LocalBlobStore):  # the backend that spools: the case is not vacuous there
        assert len(swept) == 1 and swept[0].rsplit("/", 1)[-1].startswith(".tmp-")
    assert {name async for name, _ in blobs.committed("")} == {k}  # never a blob, swept or not
    resume.set()
    try:
        written = await asyncio.wait_for(writing, 60)
    except (Unavailable, Conflict):  # the write lost its bytes: nothing of it lands
        info = await blobs.info(k)
        assert info is not None and info.content_type == "text/old"
        assert info.sha256 == hashlib.sha256(old).hexdigest() and await read_all(blobs, k) == old
    else:  # nothing was swept from under it
        assert written.sha256 == hashlib.sha256(data).hexdigest() and await read_all(blobs, k) == data
        info = await blobs.info(k)
        assert info is not None and info.content_type == "text/new" and info.sha256 == written.sha256


async def test_check_passes_on_a_working_store_and_writes_nothing(blobs: BlobStore) -> None:
    k = key()
    await blobs.write(k, chunks_of(b"kept", 4), content_type="a/b", max_bytes=10)
    for _ in range(3):  # a probe asks every few seconds: each ask leaves the store as it was
        await blobs.check()
    assert [name async for name, _ in blobs.committed("")] == [k]
    assert await read_all(blobs, k) == b"kept"


class PendingCopyTarget:
    """A stand-in target BlobClient whose copy Azure answers "pending", then settles as told.

    Azurite finishes every copy within the account before it answers, so the polling and
    clean-up of ``azure_copy`` are driven by this instead.
    """

    blob_name = "fleet/p/j/pending-log"

    def __init__(self, statuses: list[str]) -> None:
        self.statuses = statuses
        self.calls: list[str] = []

    async def start_copy_from_url(self, source_url: str, **kw: object) -> dict[str, str]:
        self.calls.append("start")
        return {"copy_id": "copy-1", "copy_status": "pending"}

    async def get_blob_properties(self) -> BlobProperties:
        props = BlobProperties()
        props.copy.status = self.statuses.pop(0)
        return props

    async def abort_copy(self, copy_id: str) -> None:
        self.calls.append(f"abort {copy_id}")

    async def delete_blob(self) -> None:
        self.calls.append("delete")


async def test_a_pending_azure_copy_is_waited_for() -> None:
    target = PendingCopyTarget(["pending", "pending", "success"])
    await copy_blob(cast(AsyncBlobClient, target), "http://source?sas", tags={})
    assert target.calls == ["start"] and target.statuses == []


@pytest.mark.parametrize(("status", "error"), [("failed", Unavailable), ("aborted", Conflict)])
async def test_a_failed_azure_copy_leaves_no_target(status: str, error: type[Exception]) -> None:
    target = PendingCopyTarget(["pending", status])
    with pytest.raises(error):
        await copy_blob(cast(AsyncBlobClient, target), "http://source?sas", tags={})
    assert target.calls == ["start", "abort copy-1", "delete"]
