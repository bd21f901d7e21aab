"""The artifact service: the rules between the HTTP layer and the ports.

Write order is blob first, pointer second; a failed pointer write deletes the
blob, so no pointer ever names missing bytes and no committed blob is left
without a pointer. Deletion marks the pointer DELETING before touching the
blob, so a crash half-way leaves a pointer that is hidden from readers and that
a repeated DELETE finishes.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterable, Callable
from datetime import datetime, timedelta

import msgspec

from fleet_artifacts.adapters.delegation import utcnow
from fleet_artifacts.direct import DirectUploads
from fleet_artifacts.errors import (
    Conflict,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
)
from fleet_artifacts.idempotency import Idempotency, fingerprint
from fleet_artifacts.meta import UploadMeta, absolute_url, blob_key, content_disposition
from fleet_artifacts.models import (
    ArtifactOut,
    ArtifactPage,
    ArtifactStatus,
    Pointer,
)
from fleet_artifacts.ports import BlobStore, ListQuery, PointerStore, StoredPointer
from fleet_artifacts.sessions import SessionService
from fleet_artifacts.validation import check_id

__all__ = ["ArtifactService", "UploadMeta", "blob_key", "content_disposition"]

log = logging.getLogger(__name__)
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ArtifactService:
    """Upload, find, list and delete artifacts of the caller's product."""

    def __init__(
        self,
        blobs: BlobStore,
        pointers: PointerStore,
        *,
        sas_ttl: timedelta,
        max_upload_bytes: int,
        max_envelope_bytes: int = 8 * 1024 * 1024,
        upload_url_ttl: timedelta = timedelta(hours=1),
        verify_max_bytes: int = 64 * 1024 * 1024,
        idempotency_retention: timedelta = timedelta(days=1),
        session_ttl: timedelta = timedelta(days=1),
        clock: Callable[[], datetime] = utcnow,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        """Wire the service to its two stores."""
        self.blobs = blobs
        self.pointers = pointers
        self.sas_ttl = sas_ttl
        self.max_upload_bytes = max_upload_bytes
        self.max_envelope_bytes = max_envelope_bytes
        self._clock = clock
        self.now = clock
        self.new_id = new_id
        self.idempotency = Idempotency(pointers, retention=idempotency_retention, clock=clock)
        self.direct = DirectUploads(self, upload_url_ttl=upload_url_ttl, verify_max_bytes=verify_max_bytes)
        self.sessions = SessionService(self, ttl=session_ttl)

    async def upload_once(
        self,
        product_id: str,
        job_id: str,
        meta: UploadMeta,
        chunks: AsyncIterable[bytes],
        *,
        key: str | None,
        base_url: str = "",
    ) -> tuple[ArtifactOut, bool]:
        """``upload``, made idempotent by ``key`` when given; returns ``(artifact, replayed)``."""
        if key is None:
            return await self.upload(product_id, job_id, meta, chunks, base_url=base_url), False

        async def replay(artifact_id: str) -> ArtifactOut:
            return await self.present(await self.pointer(product_id, artifact_id, job_id), base_url=base_url)

        async def undo(out: ArtifactOut) -> None:
            await self.delete(product_id, out.id, job_id)

        return await self.idempotency.run(
            product_id=product_id,
            job_id=check_id(job_id, "jobId"),
            key=key,
            fingerprint=fingerprint("upload", msgspec.to_builtins(meta)),
            create=lambda: self.upload(product_id, job_id, meta, chunks, base_url=base_url),
            created_id=lambda out: out.id,
            replay=replay,
            undo=undo,
        )

    def check_size(self, announced: int) -> None:
        """Refuse an upload whose announced length is over the limit before reading it."""
        if announced > self.max_upload_bytes:
            raise PayloadTooLarge(self.max_upload_bytes)

    async def upload(
        self,
        product_id: str,
        job_id: str,
        meta: UploadMeta,
        chunks: AsyncIterable[bytes],
        *,
        base_url: str = "",
    ) -> ArtifactOut:
        """Store the bytes, then the pointer; return the pointer with a download URL."""
        check_id(job_id, "jobId")
        artifact_id = self.new_id()
        key = blob_key(product_id, job_id, artifact_id, meta.kind)
        written = await self.blobs.write(
            key, chunks, content_type=meta.content_type, max_bytes=self.max_upload_bytes
        )
        pointer = Pointer(
            id=artifact_id,
            product_id=product_id,
            job_id=job_id,
            run_id=meta.run_id,
            kind=meta.kind,
            file_name=meta.file_name,
            blob_key=key,
            content_type=meta.content_type,
            size_bytes=written.size_bytes,
            sha256=written.sha256,
            created_at=self._clock(),
            tags=meta.tags,
        )
        await self.commit_pointer(pointer)
        return await self.present(pointer, base_url=base_url)

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

    async def signed_url(
        self, pointer: Pointer, *, disposition: str = "attachment", base_url: str = ""
    ) -> tuple[str, datetime]:
        """Sign a fresh read URL for a pointer's blob; return it with its expiry.

        A store that serves its own URLs (the local backend) returns a root-relative
        one, made absolute here against ``base_url``.
        """
        expires_at = self._clock() + self.sas_ttl
        url = await self.blobs.sign_read_url(
            pointer.blob_key,
            expires_at=expires_at,
            content_disposition=content_disposition(pointer.file_name, disposition),
            content_type=pointer.content_type,
        )
        return absolute_url(url, base_url), expires_at

    async def present(
        self, pointer: Pointer, *, disposition: str = "attachment", base_url: str = ""
    ) -> ArtifactOut:
        """Attach a freshly signed, short-lived download URL to a pointer."""
        url, expires_at = await self.signed_url(pointer, disposition=disposition, base_url=base_url)
        log.info("signed read URL for %s until %s", pointer.blob_key, expires_at.isoformat())
        return ArtifactOut(
            **msgspec.structs.asdict(pointer),
            download_url=url,
            download_url_expires_at=expires_at,
        )

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

    async def pointer(self, product_id: str, artifact_id: str, job_id: str | None = None) -> Pointer:
        """Return an active pointer of the caller's product."""
        stored = await self.lookup(product_id, artifact_id, job_id)
        if stored.pointer.status is not ArtifactStatus.ACTIVE:
            raise NotFound("artifact not found")
        return stored.pointer

    async def list(self, query: ListQuery, *, base_url: str = "") -> ArtifactPage:
        """One page of a job's active artifacts, each with a download URL."""
        page = await self.pointers.list(query)
        items = [await self.present(pointer, base_url=base_url) for pointer in page.items]
        return ArtifactPage(items=items, continuation_token=page.continuation)

    async def delete(self, product_id: str, artifact_id: str, job_id: str | None = None) -> None:
        """Remove pointer and blob; NotFound if absent (so a repeat answers 404)."""
        for _ in range(3):  # a lost etag race is retried: the other writer may be a DELETE too
            stored = await self.lookup(product_id, artifact_id, job_id)
            pointer = stored.pointer
            if pointer.status is not ArtifactStatus.DELETING:
                try:
                    await self.pointers.replace(
                        msgspec.structs.replace(pointer, status=ArtifactStatus.DELETING),
                        etag=stored.etag,
                    )
                except PreconditionFailed:
                    continue
            await self.blobs.delete(pointer.blob_key)
            await self.blobs.discard_uncommitted(pointer.blob_key)  # an UPLOADING one's staged blocks
            if not await self.pointers.delete(pointer.job_id, pointer.id):
                raise NotFound("artifact not found")
            return
        raise PreconditionFailed("artifact is being changed concurrently; retry")
