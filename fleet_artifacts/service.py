"""The artifact service: the rules between the HTTP layer and the ports.

Write order is blob first, pointer second; a failed pointer write deletes the
blob, so no pointer ever names missing bytes and no committed blob is left
without a pointer. Deletion marks the pointer DELETING before touching the
blob, so a crash half-way leaves a pointer that is hidden from readers and that
a repeated DELETE finishes.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterable, Callable
from datetime import datetime, timedelta
from urllib.parse import quote

import msgspec

from fleet_artifacts.adapters.delegation import utcnow
from fleet_artifacts.errors import NotFound, PayloadTooLarge, PreconditionFailed
from fleet_artifacts.models import ArtifactKind, ArtifactOut, ArtifactPage, ArtifactStatus, Pointer
from fleet_artifacts.ports import BlobStore, ListQuery, PointerStore, StoredPointer
from fleet_artifacts.validation import check_content_type, check_file_name, check_id, check_tags

log = logging.getLogger(__name__)


class UploadMeta(msgspec.Struct, frozen=True, kw_only=True):
    """Validated metadata of an upload; build it with ``UploadMeta.checked``."""

    kind: ArtifactKind
    file_name: str
    content_type: str
    run_id: str | None = None
    tags: dict[str, str] = msgspec.field(default_factory=dict)

    @classmethod
    def checked(
        cls,
        *,
        kind: ArtifactKind,
        file_name: str,
        content_type: str | None,
        run_id: str | None,
        tags: dict[str, str],
    ) -> UploadMeta:
        """Validate every field; raise InvalidInput on the first bad one."""
        return cls(
            kind=kind,
            file_name=check_file_name(file_name),
            content_type=check_content_type(content_type or "application/octet-stream"),
            run_id=None if run_id is None else check_id(run_id, "runId"),
            tags=check_tags(tags),
        )


def blob_key(product_id: str, job_id: str, artifact_id: str, kind: ArtifactKind) -> str:
    """Return ``fleet/<productId>/<jobId>/<id>-<kind>``."""
    return f"fleet/{product_id}/{job_id}/{artifact_id}-{kind.value}"


def content_disposition(file_name: str, disposition: str = "attachment") -> str:
    """Build a Content-Disposition value safe for quotes and non-ASCII (RFC 6266).

    The quoted ``filename`` is an ASCII fallback (quotes, backslashes, percent
    signs and non-ASCII become ``_``); ``filename*`` carries the exact name.
    """
    fallback = "".join(ch if " " <= ch <= "~" and ch not in '"\\%' else "_" for ch in file_name)
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{quote(file_name, safe='')}"


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
        self._new_id = new_id

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
        artifact_id = self._new_id()
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
        try:
            await self.pointers.create(pointer)
        except BaseException:
            # No pointer, so no blob: undo the write, then let the first error speak.
            try:
                await self.blobs.delete(key)
            except Exception:
                log.exception("orphan blob %s could not be removed after a failed pointer write", key)
            raise
        return await self.present(pointer, base_url=base_url)

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
        if url.startswith("/"):
            url = base_url.rstrip("/") + url
        return url, expires_at

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

    async def _lookup(self, product_id: str, artifact_id: str, job_id: str | None) -> StoredPointer:
        # With a job id: a point read. Without: a lookup by id alone (cross-partition on Cosmos).
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
        stored = await self._lookup(product_id, artifact_id, job_id)
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
            stored = await self._lookup(product_id, artifact_id, job_id)
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
            if not await self.pointers.delete(pointer.job_id, pointer.id):
                raise NotFound("artifact not found")
            return
        raise PreconditionFailed("artifact is being changed concurrently; retry")
