"""The core's use cases on the in-memory fakes: no server, no files, milliseconds per test.

The same flows run over HTTP against real backends elsewhere; here the rules of the
core itself are pinned: write order, the retire protocol, idempotent creates, direct
uploads, sessions and sweeps, with a clock the test moves.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from fleet_artifacts.core.artifacts import ArtifactService
from fleet_artifacts.core.direct import DirectUploads
from fleet_artifacts.core.errors import (
    Archived,
    Conflict,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    Unavailable,
    Unprocessable,
)
from fleet_artifacts.core.gc import sweep_stale_uploads
from fleet_artifacts.core.journal import Event
from fleet_artifacts.core.kernel import Kernel, Limits
from fleet_artifacts.core.keys import staging_key
from fleet_artifacts.core.lifecycle import Lifecycle
from fleet_artifacts.core.models import (
    ArtifactKind,
    ArtifactPatch,
    ArtifactStatus,
    BlobTier,
    CheckedMeta,
    FinalizeRequest,
    JobRetention,
    Pointer,
    SessionOpen,
)
from fleet_artifacts.core.ports import ListQuery
from fleet_artifacts.core.sessions import SessionService, public_id
from fleet_artifacts.core.sweeper import Sweeper
from fleet_artifacts.stores.signing import UrlSigner
from tests.fakes import MemoryBlobStore, MemoryPointerStore
from tests.helpers import BLOBS

META = CheckedMeta(kind=ArtifactKind.LOG, file_name="run.log", content_type="text/plain")


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class World:
    """A kernel on fresh fakes, and the services built on it."""

    def __init__(
        self,
        pointers: MemoryPointerStore | None = None,
        limits: Limits | None = None,
        *,
        instant: bool = True,
    ) -> None:
        self.clock = Clock()
        self.blobs = MemoryBlobStore(
            UrlSigner(secrets.token_bytes(32)), url_prefix=BLOBS, instant_rehydration=instant
        )
        self.pointers = pointers or MemoryPointerStore()
        self.kernel = Kernel(self.blobs, self.pointers, limits=limits, clock=self.clock)
        self.artifacts = ArtifactService(self.kernel)
        self.direct = DirectUploads(self.kernel)
        self.sessions = SessionService(self.kernel)
        self.lifecycle = Lifecycle(self.kernel)

    async def read(self, key: str) -> bytes:
        return b"".join([chunk async for chunk in self.blobs.read(key)])

    async def keys(self) -> list[str]:
        return [key async for key, _ in self.blobs.committed("fleet/")]


async def body(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_upload_get_list_delete() -> None:
    w = World()
    out, replayed = await w.artifacts.upload("p", "j1", META, body(b"hello ", b"world"))
    assert not replayed and out.size_bytes == 11
    assert out.sha256 == hashlib.sha256(b"hello world").hexdigest()
    assert out.blob_key == f"fleet/p/j1/{out.id}-log" and await w.read(out.blob_key) == b"hello world"
    # The core hands out the store's URL as signed: root-relative here; routes/ anchors it.
    assert out.download_url is not None and out.download_url.startswith(BLOBS + out.blob_key + "?")
    assert out.download_url_expires_at == w.clock.now + timedelta(seconds=900)

    fetched = await w.artifacts.get("p", out.id, "j1", disposition="inline")
    assert "rscd=inline" in (fetched.download_url or "") and fetched.id == out.id
    assert (await w.artifacts.get("p", out.id)).id == out.id  # by id alone
    page = await w.artifacts.list(ListQuery(job_id="j1", product_id="p"))
    assert [item.id for item in page.items] == [out.id]

    await w.artifacts.delete("p", out.id, "j1")
    assert await w.keys() == [] and await w.pointers.get("j1", out.id) is None
    with pytest.raises(NotFound):
        await w.artifacts.delete("p", out.id, "j1")


async def test_another_products_artifact_is_not_found() -> None:
    w = World()
    out, _ = await w.artifacts.upload("p", "j1", META, body(b"x"))
    for call in (
        w.artifacts.get("q", out.id, "j1"),
        w.artifacts.get("q", out.id),
        w.artifacts.delete("q", out.id),
    ):
        with pytest.raises(NotFound):
            await call
    assert await w.read(out.blob_key) == b"x"


class CreatesFail(MemoryPointerStore):
    """A pointer store whose creates fail, as a Cosmos outage would make them."""

    async def create(self, pointer: Pointer, *, event: Event | None = None) -> str:
        raise Unavailable("pointer store is down (injected)")


async def test_a_failed_pointer_write_leaves_no_blob() -> None:
    w = World(CreatesFail())
    with pytest.raises(Unavailable):
        await w.artifacts.upload("p", "j1", META, body(b"bytes"))
    assert await w.keys() == []


async def test_an_upload_over_the_limit_commits_nothing() -> None:
    w = World(limits=Limits(max_upload_bytes=4))
    with pytest.raises(PayloadTooLarge):
        await w.artifacts.upload("p", "j1", META, body(b"12", b"345"))
    assert await w.keys() == []
    assert (await w.pointers.list(ListQuery(job_id="j1", product_id="p"))).items == []


async def test_an_idempotency_key_replays_and_refuses_other_metadata() -> None:
    w = World()
    first, replayed = await w.artifacts.upload("p", "j1", META, body(b"a"), key="k1")
    again, replayed_again = await w.artifacts.upload("p", "j1", META, body(b"a"), key="k1")
    assert (replayed, replayed_again) == (False, True) and again.id == first.id
    other = msgspec.structs.replace(META, file_name="other.log")
    with pytest.raises(Conflict, match="different request"):
        await w.artifacts.upload("p", "j1", other, body(b"a"), key="k1")
    assert len(await w.keys()) == 1


async def test_retire_loses_to_a_concurrent_change_and_touches_nothing() -> None:
    w = World()
    out, _ = await w.artifacts.upload("p", "j1", META, body(b"keep"))
    stale = await w.pointers.get("j1", out.id)
    assert stale is not None
    current = await w.kernel.lookup("p", out.id, "j1")
    await w.pointers.replace(msgspec.structs.replace(current.pointer, tags={"t": "1"}), etag=current.etag)
    assert await w.kernel.retire(stale) is False
    assert await w.read(out.blob_key) == b"keep"
    assert (await w.kernel.active("p", out.id, "j1")).pointer.tags == {"t": "1"}


async def test_direct_upload_finalize_and_a_wrong_claim() -> None:
    w = World()
    ticket, _ = await w.direct.start("p", "j1", META, 5)
    assert ticket.status is ArtifactStatus.UPLOADING and ticket.upload_url.startswith(BLOBS)
    with pytest.raises(NotFound):  # not served before finalize
        await w.artifacts.get("p", ticket.id, "j1")
    # The client writes the upload's staging blob; finalize copies it to the artifact's key.
    staged = staging_key(ticket.blob_key)
    assert ticket.upload_url.startswith(BLOBS + staged + "?")
    assert await w.direct.upload_open(staged) and not await w.direct.upload_open(ticket.blob_key)
    await w.blobs.write(staged, body(b"12345"), content_type="text/plain", max_bytes=10)
    claim = FinalizeRequest(size_bytes=5, sha256=hashlib.sha256(b"12345").hexdigest())
    done = await w.direct.finalize("p", "j1", ticket.id, claim)
    assert done.status is ArtifactStatus.ACTIVE and done.sha256_verified
    assert not await w.direct.upload_open(staged)  # its write URL is dead now
    assert await w.read(ticket.blob_key) == b"12345" and await w.blobs.info(staged) is None
    # A late write to staging (an Azure SAS cannot be revoked) changes nothing anyone reads.
    await w.blobs.write(staged, body(b"54321"), content_type="text/plain", max_bytes=10)
    assert await w.read((await w.artifacts.content("p", ticket.id, "j1")).blob_key) == b"12345"

    bad, _ = await w.direct.start("p", "j1", META, None)
    await w.blobs.write(staging_key(bad.blob_key), body(b"other"), content_type="text/plain", max_bytes=10)
    with pytest.raises(Unprocessable):
        await w.direct.finalize("p", "j1", bad.id, claim)
    assert await w.blobs.info(bad.blob_key) is None and await w.pointers.get("j1", bad.id) is None
    assert await w.blobs.info(staging_key(bad.blob_key)) is None


async def test_a_session_commits_chunks_sent_out_of_order() -> None:
    w = World()
    request = SessionOpen(job_id="j1", kind=ArtifactKind.DATA, file_name="d.bin", size_bytes=6)
    session, _ = await w.sessions.open("p", request)
    sid = public_id(session.job_id, session.id)
    await w.sessions.put_chunk("p", sid, "bytes 3-5/6", body(b"def"))
    await w.sessions.put_chunk("p", sid, "bytes 0-2/6", body(b"abc"))
    await w.sessions.put_chunk("p", sid, "bytes 0-2/6", body(b"abc"))  # a retry: a no-op
    with pytest.raises(Conflict):
        await w.sessions.put_chunk("p", sid, "bytes 0-2/6", body(b"xyz"))
    out = await w.sessions.complete("p", sid)
    assert await w.read(out.blob_key) == b"abcdef" and out.id == session.artifact_id
    assert (await w.sessions.complete("p", sid)).id == out.id  # completing again: the same artifact


async def test_the_sweep_removes_only_uploads_past_their_deadline() -> None:
    w = World()
    stale, _ = await w.direct.start("p", "j1", META, None)
    staged = await w.blobs.stage_chunk(
        stale.blob_key, offset=0, nonce="abcd1234", chunks=body(b"x"), max_bytes=10
    )
    w.clock.now += timedelta(minutes=30)
    fresh, _ = await w.direct.start("p", "j1", META, None)
    later = w.clock.now + timedelta(minutes=45)  # past the first deadline, not the second
    assert await sweep_stale_uploads(w.kernel, now=later, dry_run=True) == [stale.blob_key]
    assert await sweep_stale_uploads(w.kernel, now=later) == [stale.blob_key]
    assert await w.pointers.get("j1", stale.id) is None and await w.pointers.get("j1", fresh.id) is not None
    with pytest.raises(Conflict):  # its staged blocks went with it
        await w.blobs.commit_chunks(stale.blob_key, staged.block_ids, content_type="a/b", max_bytes=10)


async def test_the_sweep_finishes_a_removal_a_crash_interrupted() -> None:
    w = World()
    ticket, _ = await w.direct.start("p", "j1", META, None)
    await w.blobs.write(ticket.blob_key, body(b"half"), content_type="text/plain", max_bytes=10)
    stored = await w.kernel.lookup("p", ticket.id, "j1")
    # The claim of a removal landed, then the process died before blob and pointer went.
    await w.pointers.replace(
        msgspec.structs.replace(stored.pointer, status=ArtifactStatus.DELETING), etag=stored.etag
    )
    later = w.clock.now + timedelta(hours=2)
    assert await sweep_stale_uploads(w.kernel, now=later) == [ticket.blob_key]
    assert await w.pointers.get("j1", ticket.id) is None and await w.keys() == []


async def test_a_slow_rehydration_stays_restoring_until_the_blob_is_readable() -> None:
    w = World(instant=False)  # as on Azure: hours, not at once
    out, _ = await w.artifacts.upload("p", "j", META, body(b"cold bytes"))
    archived = await w.lifecycle.archive("p", out.id, "j", BlobTier.ARCHIVE)
    assert (archived.status, archived.download_url) == (ArtifactStatus.ARCHIVED, None)
    with pytest.raises(Archived):
        await w.artifacts.content("p", out.id, "j")
    restoring = await w.lifecycle.restore("p", out.id, "j", high_priority=True)
    assert restoring.status is ArtifactStatus.RESTORING and restoring.download_url is None
    assert (await w.artifacts.get("p", out.id)).status is ArtifactStatus.RESTORING  # checked, still pending
    sweeper = Sweeper(w.kernel)
    assert await sweeper.restores(w.clock.now) == []
    w.blobs.finish_rehydration(out.blob_key)
    assert await sweeper.restores(w.clock.now, dry_run=True) == [out.blob_key]
    assert await sweeper.restores(w.clock.now) == [out.blob_key]
    assert await sweeper.restores(w.clock.now) == []  # a second sweep changes nothing
    again = await w.artifacts.get("p", out.id, "j")
    assert (again.status, again.tier) == (ArtifactStatus.ACTIVE, BlobTier.HOT)
    assert await w.read(out.blob_key) == b"cold bytes"


async def test_one_of_two_replicas_takes_the_sweep_lease_until_it_lapses() -> None:
    w = World()
    first, second = Sweeper(w.kernel), Sweeper(w.kernel)
    interval = timedelta(minutes=10)
    won = await asyncio.gather(first.take_lease(interval), second.take_lease(interval))
    assert sorted(won) == [False, True]
    holder, other = (first, second) if won[0] else (second, first)
    assert await other.run_if_due(interval) is None  # the other replica does not repeat the work
    assert await holder.take_lease(interval)  # the holder renews its own
    w.clock.now += interval
    assert await other.run_if_due(interval) is not None  # lapsed: the next interval is the other's
    assert not await holder.take_lease(interval)


async def test_retention_comes_from_the_upload_then_the_job_then_the_default() -> None:
    w = World(limits=Limits(default_retention_days=30, max_retention_days=90))
    plain, _ = await w.artifacts.upload("p", "j", META, body(b"a"))
    assert plain.expires_at == w.clock.now + timedelta(days=30) and plain.retention_days == 30
    own, _ = await w.artifacts.upload("p", "j", msgspec.structs.replace(META, retention_days=90), body(b"b"))
    assert own.expires_at == w.clock.now + timedelta(days=90)
    with pytest.raises(InvalidInput):
        await w.artifacts.upload("p", "j", msgspec.structs.replace(META, retention_days=91), body(b"c"))
    await w.artifacts.retention.set_job("p", "j", JobRetention(keep_forever=True))
    kept, _ = await w.artifacts.upload("p", "j", META, body(b"d"))
    assert kept.keep_forever and kept.expires_at is None
    assert (await w.blobs.get_tags(kept.blob_key))["keep"] == "true"
    other, _ = await w.artifacts.upload("q", "j", META, body(b"e"))  # another product's job policy
    assert other.expires_at == w.clock.now + timedelta(days=30)
    w.clock.now += timedelta(days=31)
    page = await w.artifacts.list(ListQuery(job_id="j", product_id="p"))
    assert {item.id for item in page.items} == {own.id, kept.id}  # expired: gone for readers at once
    with pytest.raises(NotFound):
        await w.artifacts.get("p", plain.id, "j")


async def test_what_readers_no_longer_see_stays_gone_for_every_writer_but_a_purge() -> None:
    w = World(limits=Limits(default_retention_days=30, soft_delete=timedelta(days=7)))
    old, _ = await w.artifacts.upload("p", "j", META, body(b"old"))
    w.clock.now += timedelta(days=31)  # past its retention, not yet swept
    # A job's re-dating skips it: an expired artifact stays expired (the sweeper's).
    done = await w.artifacts.retention.set_job(
        "p", "j", JobRetention(keep_forever=True, apply_to_existing=True)
    )
    assert done.updated == 0
    with pytest.raises(NotFound):
        await w.artifacts.get("p", old.id, "j")
    with pytest.raises(NotFound):
        await w.artifacts.delete("p", old.id, "j")  # not soft-deleted back into view for a week
    await w.artifacts.delete("p", old.id, "j", purge=True)
    assert await w.pointers.get("j", old.id) is None and await w.keys() == []

    # A session whose artifact was deleted since completing answers 404, and commits nothing again.
    opened, _ = await w.sessions.open("p", SessionOpen(job_id="j", kind=ArtifactKind.LOG, file_name="s.log"))
    sid = public_id(opened.job_id, opened.id)
    await w.sessions.put_chunk("p", sid, "bytes 0-2/3", body(b"abc"))
    made = await w.sessions.complete("p", sid)
    await w.artifacts.delete("p", made.id, "j")  # soft: DELETED
    with pytest.raises(NotFound):
        await w.sessions.complete("p", sid)
    assert (await w.pointers.get("j", made.id)).pointer.status is ArtifactStatus.DELETED  # type: ignore[union-attr]


async def test_ending_keep_forever_counts_from_now_and_a_repeated_archive_mends_the_blob() -> None:
    w = World(limits=Limits(default_retention_days=30))
    kept, _ = await w.artifacts.upload("p", "j", msgspec.structs.replace(META, keep_forever=True), body(b"k"))
    w.clock.now += timedelta(days=400)
    ended = await w.lifecycle.update("p", kept.id, "j", ArtifactPatch(keep_forever=False))
    assert ended.expires_at == w.clock.now + timedelta(days=30) and not ended.keep_forever
    assert (await w.blobs.get_tags(kept.blob_key))["keep"] == "false"
    await w.lifecycle.archive("p", kept.id, "j", BlobTier.ARCHIVE)
    await w.blobs.set_tier(kept.blob_key, BlobTier.HOT)  # as if a move died between pointer and blob
    again = await w.lifecycle.archive("p", kept.id, "j", BlobTier.ARCHIVE)
    assert again.status is ArtifactStatus.ARCHIVED
    assert (await w.blobs.info(kept.blob_key)).tier is BlobTier.ARCHIVE  # type: ignore[union-attr]
