"""Direct-to-blob uploads: the client writes the bytes straight to Blob Storage.

The service hands out an UPLOADING pointer and a create+write URL for exactly its
blob, then ``finalize`` checks what was committed against the client's claim and
flips the pointer to ACTIVE by etag. Unfinished uploads are swept by ``gc``.
"""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import timedelta

import msgspec

from fleet_artifacts.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    Unprocessable,
)
from fleet_artifacts.gc import discard_upload
from fleet_artifacts.idempotency import fingerprint
from fleet_artifacts.meta import Core, UploadMeta, absolute_url, blob_key, parse_blob_key
from fleet_artifacts.models import ArtifactOut, ArtifactStatus, FinalizeRequest, Pointer, UploadTicket
from fleet_artifacts.ports import StoredPointer
from fleet_artifacts.validation import check_id

log = logging.getLogger(__name__)
_SHA256 = re.compile(r"[0-9a-f]{64}")


class DirectUploads:
    """Start, finalize and police direct-to-blob uploads."""

    def __init__(self, core: Core, *, upload_url_ttl: timedelta, verify_max_bytes: int) -> None:
        """Write URLs live ``upload_url_ttl``; finalize hashes blobs up to ``verify_max_bytes`` itself."""
        self.core = core
        self.upload_url_ttl = upload_url_ttl
        self.verify_max_bytes = verify_max_bytes

    async def start(
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
            self.core.check_size(size_bytes)
        artifact_id = self.core.new_id()
        now = self.core.now()
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
        await self.core.pointers.create(pointer)
        return await self._ticket(pointer, base_url)

    async def start_once(
        self,
        product_id: str,
        job_id: str,
        meta: UploadMeta,
        size_bytes: int | None,
        *,
        key: str | None,
        base_url: str = "",
    ) -> tuple[UploadTicket, bool]:
        """``start``, made idempotent by ``key``; a replay re-signs the write URL."""
        if key is None:
            return await self.start(product_id, job_id, meta, size_bytes, base_url=base_url), False

        async def replay(artifact_id: str) -> UploadTicket:
            stored = await self.core.lookup(product_id, artifact_id, job_id)
            if stored.pointer.status is not ArtifactStatus.UPLOADING:
                raise Conflict("the upload started with this Idempotency-Key was already finalized")
            return await self._ticket(stored.pointer, base_url)

        async def undo(ticket: UploadTicket) -> None:
            await self.core.pointers.delete(ticket.job_id, ticket.id)

        return await self.core.idempotency.run(
            product_id=product_id,
            job_id=check_id(job_id, "jobId"),
            key=key,
            fingerprint=fingerprint("direct", {**msgspec.to_builtins(meta), "sizeBytes": size_bytes}),
            create=lambda: self.start(product_id, job_id, meta, size_bytes, base_url=base_url),
            created_id=lambda ticket: ticket.id,
            replay=replay,
            undo=undo,
        )

    async def _ticket(self, pointer: Pointer, base_url: str) -> UploadTicket:
        # The write URL never outlives the upload's deadline.
        assert pointer.expires_at is not None
        url = await self.core.blobs.sign_write_url(pointer.blob_key, expires_at=pointer.expires_at)
        log.info("signed write URL for %s until %s", pointer.blob_key, pointer.expires_at.isoformat())
        return UploadTicket(
            **msgspec.structs.asdict(pointer),
            upload_url=absolute_url(url, base_url),
            upload_url_expires_at=pointer.expires_at,
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
        stored = await self.core.lookup(product_id, artifact_id, job_id)
        pointer = stored.pointer
        if pointer.status is ArtifactStatus.ACTIVE:
            if (pointer.size_bytes, pointer.sha256) == (claim.size_bytes, claim.sha256):
                return await self.core.present(pointer, base_url=base_url)
            raise Conflict("the artifact was already finalized with another size or digest")
        if pointer.status is not ArtifactStatus.UPLOADING:
            raise NotFound("artifact not found")
        if pointer.expires_at is not None and pointer.expires_at <= self.core.now():
            raise Conflict("the upload's deadline has passed; start a new upload")
        info = await self.core.blobs.info(pointer.blob_key)
        if info is None:
            raise Conflict("nothing is committed under the upload URL yet")
        if info.size_bytes > self.core.max_upload_bytes:  # a SAS cannot cap a size: check it here
            await self._abandon(stored)
            raise PayloadTooLarge(self.core.max_upload_bytes)
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
            async for chunk in self.core.blobs.read(pointer.blob_key):
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
            await self.core.pointers.replace(active, etag=stored.etag)
        except PreconditionFailed:
            # A concurrent finalize (or delete) won; answer as a retry of that one would be answered.
            return await self.finalize(product_id, job_id, artifact_id, claim, base_url=base_url)
        return await self.core.present(active, base_url=base_url)

    async def upload_open(self, key: str) -> bool:
        """Whether ``key`` belongs to a direct upload that may still be written (UPLOADING, in time)."""
        named = parse_blob_key(key)
        if named is None:
            return False
        stored = await self.core.pointers.get(*named)
        if stored is None or stored.pointer.blob_key != key:
            return False
        pointer = stored.pointer
        deadline = pointer.expires_at
        return pointer.status is ArtifactStatus.UPLOADING and (deadline is None or deadline > self.core.now())

    async def _abandon(self, stored: StoredPointer) -> None:
        await discard_upload(self.core.blobs, self.core.pointers, stored)
