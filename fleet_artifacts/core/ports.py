"""Ports: the two storage seams of the service.

``BlobStore`` holds artifact bytes (``core.hosted.HostedBlobStore``: one whose signed URLs this
service serves itself); ``PointerStore`` holds the small pointer documents that
describe them, and side records beside them. Adapters live in ``fleet_artifacts.stores`` and
raise only the project's errors (``fleet_artifacts.core.errors``).
"""

from __future__ import annotations

import abc
import base64
import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from datetime import datetime

import msgspec

from fleet_artifacts.core.journal import Event
from fleet_artifacts.core.journal_port import JournalStore
from fleet_artifacts.core.models import ArtifactKind, ArtifactStatus, BlobTier, Pointer
from fleet_artifacts.core.records import (
    NEVER,
    IdempotencyRecord,
    JobPolicy,
    R,
    SessionChunk,
    ShareLink,
    SideRecord,
    StoredRecord,
    SweepLease,
    UploadSession,
)

__all__ = [
    "NEVER",
    "IdempotencyRecord",
    "JobPolicy",
    "R",
    "SessionChunk",
    "ShareLink",
    "SideRecord",
    "StoredRecord",
    "SweepLease",
    "UploadSession",
]  # the records are re-exported: adapters implement the port over them

MAX_BLOCK_BYTES = 4000 * 1024 * 1024  # Azure's largest block
MAX_BLOCKS = 50_000  # Azure's limit on the blocks of one committed blob
MAX_STAGED_BLOCKS = 100_000  # Azure's limit on the uncommitted blocks of one blob


def block_id_width(block_id_bytes: int) -> int:
    """Length of the base64 form of a block id of this many bytes (Azure compares that length)."""
    return 4 * -(-block_id_bytes // 3)


class BlobWritten(msgspec.Struct, frozen=True):
    """What a completed blob write measured on the way through."""

    size_bytes: int
    sha256: str


class BlobInfo(msgspec.Struct, frozen=True):
    """Properties of a committed blob."""

    size_bytes: int
    content_type: str
    sha256: str | None = None
    tier: BlobTier = BlobTier.HOT
    # Archive -> an online tier was asked for and has not finished (Azure: hours; Azurite and
    # the local backend: never pending). Reads still fail with Archived meanwhile.
    rehydrating: bool = False


class StagedChunk(msgspec.Struct, frozen=True):
    """Bytes staged for a blob but not committed: the blocks that hold them, measured."""

    block_ids: list[str]
    size_bytes: int
    sha256: str


def chunk_block_id(offset: int, nonce: str) -> str:
    """A block id naming a byte offset and the request that staged it (fixed length, as Azure wants).

    The nonce keeps two requests staging the same offset from overwriting each other's blocks.
    """
    if len(nonce) != 8:
        raise ValueError("the nonce must be 8 characters")
    return base64.b64encode(f"{offset:016x}-{nonce}".encode()).decode()


class BlobStore(abc.ABC):
    """Artifact bytes, addressed by blob key."""

    @abc.abstractmethod
    async def write(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        content_type: str,
        max_bytes: int,
        tags: Mapping[str, str] | None = None,
    ) -> BlobWritten:
        """Stream ``chunks`` into a new blob at ``key`` and commit it, with index ``tags``.

        The blob becomes visible only once every chunk was stored. If the
        stream raises, or crosses ``max_bytes`` (PayloadTooLarge), nothing is
        committed under ``key``.
        """

    @abc.abstractmethod
    def read(self, key: str, *, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """Stream a committed blob's bytes (from ``offset``, ``length`` of them).

        NotFound if absent; Archived if it is in the Archive tier or still rehydrating.
        """

    @abc.abstractmethod
    async def info(self, key: str) -> BlobInfo | None:
        """Return a committed blob's properties, or None if absent."""

    @abc.abstractmethod
    async def delete(self, key: str) -> bool:
        """Delete a blob; True if it existed. Deleting an absent blob is not an error."""

    @abc.abstractmethod
    async def sign_read_url(
        self, key: str, *, expires_at: datetime, content_disposition: str, content_type: str
    ) -> str:
        """Return a URL that lets anyone holding it read this one blob until ``expires_at``.

        The URL makes the download answer with the given Content-Disposition
        and Content-Type.
        """

    @abc.abstractmethod
    async def sign_write_url(self, key: str, *, expires_at: datetime) -> str:
        """Return a URL that lets its holder create and write this one blob until ``expires_at``.

        It accepts what a client sends to Azure Blob Storage for a block blob (Put Blob,
        Put Block, Put Block List), so ``BlobClient.from_blob_url(url).upload_blob(...)``
        works. It grants no read, and nothing on any other blob.
        """

    @abc.abstractmethod
    def committed(self, prefix: str) -> AsyncIterator[tuple[str, datetime]]:
        """Every committed blob whose key starts with ``prefix``, with its last-modified time."""

    @abc.abstractmethod
    async def stage_chunk(
        self, key: str, *, offset: int, nonce: str, chunks: AsyncIterable[bytes], max_bytes: int
    ) -> StagedChunk:
        """Stage bytes that start at ``offset`` of the blob-to-be, without committing anything.

        Raises PayloadTooLarge past ``max_bytes``; what was staged then is never committed.
        """

    @abc.abstractmethod
    async def commit_chunks(
        self,
        key: str,
        block_ids: list[str],
        *,
        content_type: str,
        max_bytes: int,
        tags: Mapping[str, str] | None = None,
    ) -> BlobWritten:
        """Commit staged blocks, in this order, as the blob (index ``tags`` on it); return size and sha256."""

    @abc.abstractmethod
    async def copy(self, source: str, target: str, *, tags: Mapping[str, str] | None = None) -> BlobInfo:
        """Copy a committed blob to ``target`` inside the store (replacing it), with index ``tags``.

        Server-side: on Azure a Copy Blob within the account, waited for until it succeeds, so
        no byte passes through the service. The target gets the source's bytes, content type
        and digest, in the Hot tier. NotFound if ``source`` is absent; a copy that fails leaves
        no ``target`` behind. Returns the target's properties.
        """

    @abc.abstractmethod
    async def set_tier(self, key: str, tier: BlobTier, *, high_priority: bool = False) -> None:
        """Move a committed blob to ``tier``; NotFound if absent.

        From Archive to an online tier this starts rehydration (``high_priority``: Azure's
        High rehydrate priority); ``info`` says ``rehydrating`` until the bytes are readable.
        Moving a rehydrating blob again is a Conflict.
        """

    @abc.abstractmethod
    async def set_tags(self, key: str, tags: Mapping[str, str]) -> None:
        """Replace a committed blob's index tags (at most 10); NotFound if absent."""

    @abc.abstractmethod
    async def get_tags(self, key: str) -> dict[str, str]:
        """A committed blob's index tags; NotFound if absent."""

    @abc.abstractmethod
    async def discard_uncommitted(self, key: str) -> None:
        """Drop blocks staged for ``key`` but never committed (an abandoned direct upload)."""

    @abc.abstractmethod
    async def sweep_temporaries(self, *, older_than: datetime, dry_run: bool = False) -> list[str]:
        """Remove what writes killed mid-stream left outside every blob, untouched since ``older_than``.

        The local backend's spooled temp files; a store that spools nothing (Azure drops
        uncommitted blocks by itself) returns ``[]``. Never a committed blob or a staged block,
        whatever its age. A write in flight keeps touching its temporaries, so a caller puts
        ``older_than`` far behind any pause of a live write; replicas may sweep at once, each
        returning only what it removed. Returns names (no blob key) of what was removed, or
        would be with ``dry_run``.
        """

    @abc.abstractmethod
    async def check(self) -> None:
        """Readiness: return if the store can serve now, else raise the project's error saying why.

        One cheap call that writes nothing (probes run it every few seconds); the caller bounds
        its time, so it need not retry.
        """

    @abc.abstractmethod
    async def seal(self, key: str) -> None:
        """From now on, no write through a URL from ``sign_write_url`` lands on ``key``.

        Finalize seals before it hashes the blob, and retire before it deletes one, so a
        write still streaming then can neither replace verified bytes nor recreate a deleted
        blob. A store whose write URLs it cannot revoke (an Azure SAS) does nothing here; the
        README says so under Limits.
        """


class StoredPointer(msgspec.Struct, frozen=True):
    """A pointer as read from the store, with the etag for compare-and-swap."""

    pointer: Pointer
    etag: str


class ListQuery(msgspec.Struct, frozen=True, kw_only=True):
    """A page request over one job's pointers, newest first."""

    job_id: str
    product_id: str
    kind: ArtifactKind | None = None
    run_id: str | None = None
    tags: dict[str, str] = msgspec.field(default_factory=dict)
    statuses: tuple[ArtifactStatus, ...] = (ArtifactStatus.ACTIVE,)  # any of these states
    limit: int = 100
    continuation: str | None = None

    def __post_init__(self) -> None:
        """Refuse a query for no state at all."""
        if not self.statuses:
            raise ValueError("a listing needs at least one status")

    def status_values(self) -> list[str]:
        """The states as sorted values: one set of states is one query (and continuation digest)."""
        return sorted({status.value for status in self.statuses})

    def filters_digest(self) -> str:
        """A short digest of what the query selects (not its page size or position).

        A store binds its continuation tokens to it, so a token reused with other filters
        is refused instead of resuming a different listing at a foreign position.
        """
        shape = [
            self.job_id,
            self.product_id,
            self.kind,
            self.run_id,
            sorted(self.tags.items()),
            self.status_values(),
        ]
        return hashlib.sha256(msgspec.json.encode(shape)).hexdigest()[:16]


class PointerPage(msgspec.Struct, frozen=True):
    """One page of pointers (with their etags) and the opaque token for the next, if any."""

    items: list[StoredPointer]
    continuation: str | None


class PointerStore(JournalStore):
    """Pointer documents, partitioned by job id, and their job's journal."""

    @abc.abstractmethod
    async def check(self) -> None:
        """Readiness: return if the store can serve now, else raise the project's error saying why.

        One cheap read that changes nothing (probes run it every few seconds); the caller bounds
        its time.
        """

    @abc.abstractmethod
    async def create(self, pointer: Pointer, *, event: Event | None = None) -> str:
        """Insert a new pointer and return its etag; Conflict if the id exists.

        With ``event``, the event is written and applied to its job's totals in the same unit of
        work; JobSealed (and nothing written) if it adds an artifact to a sealed job.
        """

    @abc.abstractmethod
    async def get(self, job_id: str, artifact_id: str) -> StoredPointer | None:
        """Point read within one job; None if absent."""

    @abc.abstractmethod
    async def find(self, artifact_id: str) -> StoredPointer | None:
        """Look a pointer up by id alone (may cost a cross-partition query)."""

    @abc.abstractmethod
    async def replace(self, pointer: Pointer, *, etag: str, event: Event | None = None) -> str:
        """Overwrite a pointer if its etag still matches; return the new etag.

        Raises PreconditionFailed if it changed meanwhile, NotFound if it is gone. ``event``
        as for ``create``.
        """

    @abc.abstractmethod
    async def delete(self, job_id: str, artifact_id: str) -> bool:
        """Delete a pointer; True if it existed."""

    @abc.abstractmethod
    async def get_record(self, job_id: str, record_id: str, kind: type[R]) -> StoredRecord[R] | None:
        """Read a side record of ``kind`` (a point read in the job's partition); None if absent."""

    @abc.abstractmethod
    async def put_record(self, record: SideRecord, *, etag: str | None) -> str:
        """Create a record (``etag`` None; Conflict if it exists) or replace it if ``etag`` matches.

        Returns the new etag; PreconditionFailed if the record changed, NotFound if it is gone.
        """

    @abc.abstractmethod
    async def records(self, job_id: str, kind: type[R], *, limit: int = 1000) -> list[StoredRecord[R]]:
        """The side records of ``kind`` in one job's partition (a single-partition query), up to ``limit``."""

    @abc.abstractmethod
    async def expired_records(
        self, kind: type[R], *, before: datetime, limit: int = 1000
    ) -> list[StoredRecord[R]]:
        """Side records of ``kind`` whose ``expiresAt`` is earlier than ``before``, across all jobs.

        Stores that expire records by themselves (Cosmos per-item TTL) may return only those
        not yet gone.
        """

    @abc.abstractmethod
    async def delete_record(self, job_id: str, record_id: str, *, etag: str) -> None:
        """Delete a record if it is unchanged since ``etag`` was read; otherwise do nothing."""

    @abc.abstractmethod
    async def expired(
        self, status: ArtifactStatus, *, before: datetime, limit: int = 1000
    ) -> list[StoredPointer]:
        """Pointers in ``status`` whose ``expiresAt`` is earlier than ``before``, across all jobs.

        For sweepers (a cross-partition query on Cosmos); at most ``limit`` of them, found
        through an index on ``expiresAt`` (never a scan of every pointer).
        """

    @abc.abstractmethod
    async def aged(
        self,
        status: ArtifactStatus,
        *,
        tiered_before: datetime,
        tiers: Sequence[BlobTier],
        limit: int = 1000,
    ) -> list[StoredPointer]:
        """Pointers in ``status`` whose ``tier`` is one of ``tiers``, aged since before ``tiered_before``.

        Age counts from the last restore (``restoredAt``), else from ``createdAt``. For the sweeper
        (tier moves by age, restores to check): a cross-partition query on Cosmos.
        """

    @abc.abstractmethod
    async def list(self, query: ListQuery) -> PointerPage:
        """Return one page of a job's pointers, newest first.

        Raises InvalidInput if ``query.continuation`` was not issued by this store.
        """
