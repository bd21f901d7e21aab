"""The artifact service: the rules between the HTTP layer and the ports.

Write order is blob first, pointer second; a failed pointer write deletes the
blob, so no pointer ever names missing bytes and no committed blob is left
without a pointer. Deletion marks the pointer DELETING before touching the
blob, so a crash half-way leaves a pointer that is hidden from readers and that
a repeated DELETE finishes.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import uuid
from collections.abc import AsyncIterable, Callable
from datetime import datetime, timedelta
from urllib.parse import quote

import msgspec

from fleet_artifacts.adapters.delegation import utcnow
from fleet_artifacts.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    Unprocessable,
)
from fleet_artifacts.gc import discard_upload
from fleet_artifacts.idempotency import Idempotency, fingerprint
from fleet_artifacts.models import (
    ArtifactKind,
    ArtifactOut,
    ArtifactPage,
    ArtifactStatus,
    FinalizeRequest,
    Pointer,
    UploadTicket,
)
from fleet_artifacts.ports import BlobStore, ListQuery, PointerStore, StoredPointer
from fleet_artifacts.sessions import SessionOpen, SessionOut, SessionService, missing_ranges
from fleet_artifacts.validation import check_content_type, check_file_name, check_id, check_tags

log = logging.getLogger(__name__)
_SHA256 = re.compile(r"[0-9a-f]{64}")


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
        self.upload_url_ttl = upload_url_ttl
        self.verify_max_bytes = verify_max_bytes
        self._clock = clock
        self._new_id = new_id
        self.idempotency = Idempotency(pointers, retention=idempotency_retention, clock=clock)
        self.sessions = SessionService(
            blobs, pointers, ttl=session_ttl, max_upload_bytes=max_upload_bytes, clock=clock, new_id=new_id
        )

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

    async def start_direct_upload_once(
        self,
        product_id: str,
        job_id: str,
        meta: UploadMeta,
        size_bytes: int | None,
        *,
        key: str | None,
        base_url: str = "",
    ) -> tuple[UploadTicket, bool]:
        """``start_direct_upload``, made idempotent by ``key``; a replay re-signs the write URL."""
        if key is None:
            return await self.start_direct_upload(
                product_id, job_id, meta, size_bytes, base_url=base_url
            ), False

        async def replay(artifact_id: str) -> UploadTicket:
            stored = await self._lookup(product_id, artifact_id, job_id)
            if stored.pointer.status is not ArtifactStatus.UPLOADING:
                raise Conflict("the upload started with this Idempotency-Key was already finalized")
            return await self._ticket(stored.pointer, base_url)

        async def undo(ticket: UploadTicket) -> None:
            await self.pointers.delete(ticket.job_id, ticket.id)

        return await self.idempotency.run(
            product_id=product_id,
            job_id=check_id(job_id, "jobId"),
            key=key,
            fingerprint=fingerprint("direct", {**msgspec.to_builtins(meta), "sizeBytes": size_bytes}),
            create=lambda: self.start_direct_upload(product_id, job_id, meta, size_bytes, base_url=base_url),
            created_id=lambda ticket: ticket.id,
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

    async def start_direct_upload(
        self, product_id: str, job_id: str, meta: UploadMeta, size_bytes: int | None, *, base_url: str = ""
    ) -> UploadTicket:
        """Create an UPLOADING pointer and a write URL for exactly its blob.

        The client writes the bytes straight to Blob Storage (or to the local backend's
        signed PUT route), then calls ``finalize``. Past ``expiresAt`` the upload is stale:
        never served, refused by finalize, and removed by ``fleet-artifacts gc --stale-uploads``.
        """
        check_id(job_id, "jobId")
        if size_bytes is not None:
            if size_bytes < 0:
                raise InvalidInput("sizeBytes cannot be negative", field="sizeBytes")
            self.check_size(size_bytes)
        artifact_id = self._new_id()
        now = self._clock()
        deadline = now + self.upload_url_ttl
        pointer = Pointer(
            id=artifact_id,
            product_id=product_id,
            job_id=job_id,
            run_id=meta.run_id,
            kind=meta.kind,
            file_name=meta.file_name,
            blob_key=blob_key(product_id, job_id, artifact_id, meta.kind),
            content_type=meta.content_type,
            size_bytes=size_bytes or 0,
            sha256="",
            created_at=now,
            expires_at=deadline,
            tags=meta.tags,
            status=ArtifactStatus.UPLOADING,
        )
        await self.pointers.create(pointer)
        return await self._ticket(pointer, base_url)

    async def _ticket(self, pointer: Pointer, base_url: str) -> UploadTicket:
        # The write URL never outlives the upload's deadline.
        assert pointer.expires_at is not None
        url = await self.blobs.sign_write_url(pointer.blob_key, expires_at=pointer.expires_at)
        log.info("signed write URL for %s until %s", pointer.blob_key, pointer.expires_at.isoformat())
        if url.startswith("/"):
            url = base_url.rstrip("/") + url
        return UploadTicket(
            **msgspec.structs.asdict(pointer), upload_url=url, upload_url_expires_at=pointer.expires_at
        )

    async def finalize(
        self, product_id: str, job_id: str, artifact_id: str, claim: FinalizeRequest, *, base_url: str = ""
    ) -> ArtifactOut:
        """Check the committed blob against the client's claim, then flip the pointer to ACTIVE.

        A size or digest mismatch removes blob and pointer (422): the upload must start over.
        Finalizing an ACTIVE artifact again with the same claim returns it (a retried call).
        """
        if not _SHA256.fullmatch(claim.sha256):
            raise InvalidInput("sha256 must be 64 lowercase hex digits", field="sha256")
        stored = await self._lookup(product_id, artifact_id, job_id)
        pointer = stored.pointer
        if pointer.status is ArtifactStatus.ACTIVE:
            if (pointer.size_bytes, pointer.sha256) == (claim.size_bytes, claim.sha256):
                return await self.present(pointer, base_url=base_url)
            raise Conflict("the artifact was already finalized with another size or digest")
        if pointer.status is not ArtifactStatus.UPLOADING:
            raise NotFound("artifact not found")
        if pointer.expires_at is not None and pointer.expires_at <= self._clock():
            raise Conflict("the upload's deadline has passed; start a new upload")
        info = await self.blobs.info(pointer.blob_key)
        if info is None:
            raise Conflict("nothing is committed under the upload URL yet")
        if info.size_bytes > self.max_upload_bytes:  # a SAS cannot cap a size: check it here
            await self._abandon(stored)
            raise PayloadTooLarge(self.max_upload_bytes)
        announced = pointer.size_bytes or None  # sizeBytes given when the upload started
        for expected in (claim.size_bytes, announced):
            if expected is not None and info.size_bytes != expected:
                await self._abandon(stored)
                raise Unprocessable(
                    f"the committed blob has {info.size_bytes} bytes, not {expected}; "
                    "the upload was discarded"
                )
        verified = claim.verify or info.size_bytes <= self.verify_max_bytes
        if verified:
            digest = hashlib.sha256()
            async for chunk in self.blobs.read(pointer.blob_key):
                digest.update(chunk)
            if digest.hexdigest() != claim.sha256:
                await self._abandon(stored)
                raise Unprocessable(
                    "the committed blob's sha256 differs from the claim; the upload was discarded"
                )
        active = msgspec.structs.replace(
            pointer,
            status=ArtifactStatus.ACTIVE,
            size_bytes=info.size_bytes,
            sha256=claim.sha256,
            sha256_verified=verified,
            expires_at=None,
        )
        try:
            await self.pointers.replace(active, etag=stored.etag)
        except PreconditionFailed:
            # A concurrent finalize (or delete) won; answer as a retry of that one would be answered.
            return await self.finalize(product_id, job_id, artifact_id, claim, base_url=base_url)
        return await self.present(active, base_url=base_url)

    async def open_session(
        self, product_id: str, request: SessionOpen, *, key: str | None, base_url: str = ""
    ) -> tuple[SessionOut, bool]:
        """Open a resumable upload session (idempotent with ``key``); returns ``(session, replayed)``."""
        meta = UploadMeta.checked(
            kind=request.kind,
            file_name=request.file_name,
            content_type=request.content_type,
            run_id=request.run_id,
            tags=request.tags,
        )
        session = self.sessions.new_session(
            product_id,
            request,
            file_name=meta.file_name,
            content_type=meta.content_type,
            run_id=meta.run_id,
            tags=meta.tags,
            blob_key=lambda artifact_id: blob_key(product_id, request.job_id, artifact_id, meta.kind),
        )
        if key is None:
            return self.sessions.out(await self.sessions.open(session), base_url), False

        async def replay(session_id: str) -> SessionOut:
            found, _ = await self.sessions.load(product_id, session_id)
            return self.sessions.out(found, base_url)

        async def undo(out: SessionOut) -> None:
            await self.sessions.abort(product_id, out.id)

        async def create() -> SessionOut:
            return self.sessions.out(await self.sessions.open(session), base_url)

        return await self.idempotency.run(
            product_id=product_id,
            job_id=session.job_id,
            key=key,
            fingerprint=fingerprint(
                "session", {**msgspec.to_builtins(meta), "sizeBytes": request.size_bytes}
            ),
            create=create,
            created_id=lambda out: out.id,
            replay=replay,
            undo=undo,
        )

    async def complete_session(self, product_id: str, session_id: str, *, base_url: str = "") -> ArtifactOut:
        """Commit a session's chunks in order as the blob, then create its ACTIVE pointer.

        Completing again answers the same artifact (the session is kept, marked completed,
        until it expires). If the pointer cannot be written, the committed blob is deleted (no
        orphan) and the session must start over.
        """
        session, etag = await self.sessions.load(product_id, session_id)
        done = await self.pointers.get(session.job_id, session.artifact_id)
        if done is not None and done.pointer.status is ArtifactStatus.ACTIVE:
            return await self.present(done.pointer, base_url=base_url)
        if session.total_bytes is None:
            raise Conflict("the total size is unknown: send sizeBytes on open or a chunk with /<total>")
        gaps = missing_ranges(session.chunks, session.total_bytes)
        if gaps:
            shown = ", ".join(f"{g.first}-{g.last}" for g in gaps[:5])
            raise Conflict(f"bytes are missing: {shown}{' ...' if len(gaps) > 5 else ''}")
        block_ids = [block for chunk in session.chunks for block in chunk.block_ids]
        written = await self.blobs.commit_chunks(
            session.blob_key, block_ids, content_type=session.content_type, max_bytes=self.max_upload_bytes
        )
        pointer = Pointer(
            id=session.artifact_id,
            product_id=product_id,
            job_id=session.job_id,
            run_id=session.run_id,
            kind=session.kind,
            file_name=session.file_name,
            blob_key=session.blob_key,
            content_type=session.content_type,
            size_bytes=written.size_bytes,
            sha256=written.sha256,
            created_at=self._clock(),
            tags=session.tags,
        )
        try:
            await self.pointers.create(pointer)
        except Conflict:
            pass  # a concurrent complete of the same session made it: answer the same artifact
        except BaseException:
            try:
                await self.blobs.delete(session.blob_key)
            except Exception:
                log.exception(
                    "orphan blob %s could not be removed after a failed pointer write", session.blob_key
                )
            raise
        # Kept, marked completed, until it expires: a retried complete answers this artifact.
        with contextlib.suppress(PreconditionFailed, NotFound):
            await self.pointers.put_record(msgspec.structs.replace(session, completed=True), etag=etag)
        return await self.present(pointer, base_url=base_url)

    async def upload_open(self, key: str) -> bool:
        """Whether ``key`` belongs to a direct upload that may still be written (UPLOADING, in time)."""
        parts = key.split("/")
        if len(parts) != 4 or parts[0] != "fleet":
            return False
        artifact_id = parts[3].rpartition("-")[0]
        stored = await self.pointers.get(parts[2], artifact_id)
        if stored is None or stored.pointer.blob_key != key:
            return False
        pointer = stored.pointer
        deadline = pointer.expires_at
        return pointer.status is ArtifactStatus.UPLOADING and (deadline is None or deadline > self._clock())

    async def _abandon(self, stored: StoredPointer) -> None:
        await discard_upload(self.blobs, self.pointers, stored)

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
            await self.blobs.discard_uncommitted(pointer.blob_key)  # an UPLOADING one's staged blocks
            if not await self.pointers.delete(pointer.job_id, pointer.id):
                raise NotFound("artifact not found")
            return
        raise PreconditionFailed("artifact is being changed concurrently; retry")
