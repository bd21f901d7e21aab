"""The kernel: the one owner of each protocol every artifact flow shares.

    lookup / active    find the caller's pointer (another product's answers as missing)
    present / sign     attach a freshly signed, short-lived download URL
    commit_pointer     the pointer of a committed blob, or no blob at all
    retire             the one way an artifact (or an unfinished upload) is removed
    idempotency        the one idempotent-create helper (``Idempotency.run``)

Write order is blob first, pointer second; a failed pointer write deletes the
blob, so no pointer ever names missing bytes and no committed blob is left
without a pointer. Retiring marks the pointer DELETING (by etag) before touching
the blob, so a crash half-way leaves a pointer that is hidden from readers and
that a repeated DELETE finishes (or, for an unfinished upload, the next
``gc --stale-uploads``).

URLs a store signs are returned as the store made them: a store that serves its
own URLs (the local backend) makes root-relative ones, which ``routes/`` anchors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

import msgspec

from fleet_artifacts.core.clock import new_id, utcnow
from fleet_artifacts.core.errors import Conflict, NotFound, PayloadTooLarge, PreconditionFailed
from fleet_artifacts.core.idempotency import Idempotency
from fleet_artifacts.core.keys import content_disposition, signed_disposition
from fleet_artifacts.core.models import ArtifactOut, ArtifactStatus, Pointer
from fleet_artifacts.core.ports import BlobStore, PointerStore, StoredPointer

log = logging.getLogger(__name__)


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """The service's bounds and lifetimes (from settings; defaults as documented there)."""

    max_upload_bytes: int = 10 * 1024**3
    max_envelope_bytes: int = 8 * 1024 * 1024
    sas_ttl: timedelta = timedelta(seconds=900)
    upload_url_ttl: timedelta = timedelta(hours=1)
    verify_max_bytes: int = 64 * 1024 * 1024
    idempotency_retention: timedelta = timedelta(days=1)
    session_ttl: timedelta = timedelta(days=1)


class SignedUrl(msgspec.Struct, frozen=True, kw_only=True):
    """A read URL for one blob, as the store signed it."""

    url: str
    expires_at: datetime
    disposition: str  # as signed: "attachment" where "inline" was asked for an active type


class Kernel:
    """The stores, the limits, the clock, and the protocols shared by every flow."""

    def __init__(
        self,
        blobs: BlobStore,
        pointers: PointerStore,
        *,
        limits: Limits | None = None,
        clock: Callable[[], datetime] = utcnow,
        new_id: Callable[[], str] = new_id,
    ) -> None:
        """Wire the kernel to its two stores."""
        self.blobs = blobs
        self.pointers = pointers
        self.limits = limits or Limits()
        self.now = clock
        self.new_id = new_id
        self.idempotency = Idempotency(pointers, retention=self.limits.idempotency_retention, clock=clock)

    def check_size(self, announced: int) -> None:
        """Refuse an upload whose announced length is over the limit before reading it."""
        if announced > self.limits.max_upload_bytes:
            raise PayloadTooLarge(self.limits.max_upload_bytes)

    async def lookup(self, product_id: str, artifact_id: str, job_id: str | None) -> StoredPointer:
        """The caller's pointer in any state: a point read with ``job_id``, else by id alone."""
        # Without a job id this is a cross-partition query on Cosmos.
        found = (
            await self.pointers.get(job_id, artifact_id)
            if job_id is not None
            else await self.pointers.find(artifact_id)
        )
        # Another product's artifact answers exactly like a missing one.
        if found is None or found.pointer.product_id != product_id:
            raise NotFound("artifact not found")
        return found

    async def active(self, product_id: str, artifact_id: str, job_id: str | None = None) -> Pointer:
        """The caller's ACTIVE pointer (NotFound otherwise)."""
        stored = await self.lookup(product_id, artifact_id, job_id)
        if stored.pointer.status is not ArtifactStatus.ACTIVE:
            raise NotFound("artifact not found")
        return stored.pointer

    async def sign(self, pointer: Pointer, *, disposition: str = "attachment") -> SignedUrl:
        """Sign a fresh read URL for a pointer's blob.

        ``inline`` is granted only to types a browser shows without running them
        (``keys.inline_safe``); any other type is signed as an attachment, since the
        storage origin that serves the URL can add no Content-Security-Policy.
        """
        expires_at = self.now() + self.limits.sas_ttl
        signed_as = signed_disposition(pointer.content_type, disposition)
        url = await self.blobs.sign_read_url(
            pointer.blob_key,
            expires_at=expires_at,
            content_disposition=content_disposition(pointer.file_name, signed_as),
            content_type=pointer.content_type,
        )
        log.debug("signed read URL for %s until %s", pointer.blob_key, expires_at.isoformat())
        return SignedUrl(url=url, expires_at=expires_at, disposition=signed_as)

    async def present(self, pointer: Pointer, *, disposition: str = "attachment") -> ArtifactOut:
        """Attach a freshly signed, short-lived download URL to a pointer."""
        signed = await self.sign(pointer, disposition=disposition)
        return ArtifactOut(
            **msgspec.structs.asdict(pointer),
            download_url=signed.url,
            download_url_expires_at=signed.expires_at,
            download_disposition=signed.disposition,
        )

    async def commit_pointer(self, pointer: Pointer, *, concurrent_ok: bool = False) -> None:
        """Create the pointer of a committed blob; if that fails, delete the blob (no orphan).

        With ``concurrent_ok``, an existing pointer of the same id (a concurrent request
        made it) counts as success and the blob, which is also its blob, stays.
        """
        try:
            await self.pointers.create(pointer)
        except Conflict:
            if concurrent_ok:
                return
            await self._drop_orphan(pointer.blob_key)
            raise
        except BaseException:
            await self._drop_orphan(pointer.blob_key)  # then let the first error speak
            raise

    async def _drop_orphan(self, key: str) -> None:
        try:
            await self.blobs.delete(key)
        except Exception:
            log.exception("orphan blob %s could not be removed after a failed pointer write", key)

    async def retire(self, stored: StoredPointer) -> bool:
        """Remove an artifact or an unfinished upload: claim it, then blob, staged blocks, pointer.

        The claim (status -> DELETING by etag) comes first, so a concurrent writer that
        changed the pointer (a finalize that made it ACTIVE, another delete) wins and
        nothing is touched: False then, and the caller looks again. A pointer already
        DELETING (a crash after an earlier claim) is finished without a new claim.
        Returns True once this call removed the pointer.
        """
        pointer = stored.pointer
        if pointer.status is not ArtifactStatus.DELETING:
            try:
                await self.pointers.replace(
                    msgspec.structs.replace(pointer, status=ArtifactStatus.DELETING), etag=stored.etag
                )
            except (PreconditionFailed, NotFound):
                return False
        if pointer.status is not ArtifactStatus.ACTIVE:
            # An unfinished upload's write URL may still be streaming: it must not recreate the
            # blob. An ACTIVE artifact's was sealed at finalize, or it never had one.
            await self.blobs.seal(pointer.blob_key)
        await self.blobs.delete(pointer.blob_key)
        await self.blobs.discard_uncommitted(pointer.blob_key)  # an UPLOADING one's staged blocks
        return await self.pointers.delete(pointer.job_id, pointer.id)
