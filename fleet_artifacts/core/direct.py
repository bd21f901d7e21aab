"""Direct-to-blob uploads: the client writes the bytes straight to Blob Storage.

The service hands out an UPLOADING pointer and a create+write URL for exactly its
blob, then ``finalize`` checks what was committed against the client's claim and
flips the pointer to ACTIVE by etag. Unfinished uploads are swept by ``gc``.
"""

from __future__ import annotations

import hashlib
import logging
import re

import msgspec

from fleet_artifacts.core.audit import urls_signed
from fleet_artifacts.core.errors import (
    Conflict,
    InvalidInput,
    JobSealed,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    Unprocessable,
)
from fleet_artifacts.core.kernel import Kernel
from fleet_artifacts.core.keys import blob_key, parse_blob_key, staging_key
from fleet_artifacts.core.models import (
    ArtifactMeta,
    ArtifactOut,
    ArtifactStatus,
    CheckedMeta,
    FinalizeRequest,
    Pointer,
    UploadTicket,
)
from fleet_artifacts.core.ports import StoredPointer
from fleet_artifacts.core.retention import RetentionRules, carried, new_pointer
from fleet_artifacts.core.validation import check_id, checked_meta

log = logging.getLogger(__name__)
_SHA256 = re.compile(r"[0-9a-f]{64}")


class DirectUploads:
    """Start, finalize and police direct-to-blob uploads."""

    def __init__(self, kernel: Kernel) -> None:
        """Write URLs live ``limits.upload_url_ttl``; finalize hashes up to ``limits.verify_max_bytes``."""
        self.kernel = kernel
        self.rules = RetentionRules(kernel)

    async def start(
        self,
        product_id: str,
        job_id: str,
        requested: ArtifactMeta,
        size_bytes: int | None,
        *,
        key: str | None = None,
    ) -> tuple[UploadTicket, bool]:
        """Start a direct upload (once per Idempotency-Key ``key``); ``(ticket, replayed)``.

        A replay re-signs the write URL of the upload the key started.
        """
        meta = checked_meta(requested)
        check_id(job_id, "jobId")
        self.rules.check(meta)

        async def replay(artifact_id: str) -> UploadTicket:
            stored = await self.kernel.lookup(product_id, artifact_id, job_id)
            if stored.pointer.status is not ArtifactStatus.UPLOADING:
                raise Conflict("the upload started with this Idempotency-Key was already finalized")
            return await self._ticket(stored.pointer)

        async def undo(ticket: UploadTicket) -> None:
            await self.kernel.pointers.delete(ticket.job_id, ticket.id)

        return await self.kernel.idempotency.run(
            product_id=product_id,
            job_id=job_id,
            key=key,
            operation="direct",
            request={**meta.request_fields(), "sizeBytes": size_bytes},
            create=lambda: self._open(product_id, job_id, meta, size_bytes),
            created_id=lambda ticket: ticket.id,
            replay=replay,
            undo=undo,
        )

    async def _open(
        self, product_id: str, job_id: str, meta: CheckedMeta, size_bytes: int | None
    ) -> UploadTicket:
        """Create an UPLOADING pointer and a write URL for exactly its blob.

        The client writes the bytes straight to Blob Storage (or to the local backend's
        signed PUT route), then calls ``finalize``. Past ``expiresAt`` the upload is stale:
        never served, refused by finalize, and removed by ``fleet-artifacts gc --stale-uploads``.
        """
        if size_bytes is not None:
            if size_bytes < 0:
                raise InvalidInput("sizeBytes cannot be negative", field="sizeBytes")
            self.kernel.check_size(size_bytes)
        await self.kernel.check_open(product_id, job_id)
        retention = await self.rules.resolve(product_id, job_id, meta)
        artifact_id = self.kernel.new_id()
        now = self.kernel.now()
        pointer = new_pointer(
            meta,
            retention,
            now,
            id=artifact_id,
            product_id=product_id,
            job_id=job_id,
            blob_key=blob_key(product_id, job_id, artifact_id, meta.kind),
            size_bytes=size_bytes or 0,
            sha256_verified=False,
        )
        # Until finalize, expiresAt is the upload's deadline; the retention waits in the pointer.
        pointer = msgspec.structs.replace(
            pointer, expires_at=now + self.kernel.limits.upload_url_ttl, status=ArtifactStatus.UPLOADING
        )
        await self.kernel.pointers.create(pointer)
        return await self._ticket(pointer)

    async def _ticket(self, pointer: Pointer) -> UploadTicket:
        # The write URL never outlives the upload's deadline.
        assert pointer.expires_at is not None
        # The client writes a staging blob; finalize copies it to the artifact's key.
        url = await self.kernel.blobs.sign_write_url(
            staging_key(pointer.blob_key), expires_at=pointer.expires_at
        )
        urls_signed([pointer], "cw", pointer.expires_at)
        return UploadTicket(
            **msgspec.structs.asdict(pointer),
            upload_url=url,
            upload_url_expires_at=pointer.expires_at,
            # What a single-shot PUT of the whole file needs (curl -T FILE -H ...), on both backends.
            upload_headers={"x-ms-blob-type": "BlockBlob", "x-ms-blob-content-type": pointer.content_type},
        )

    async def finalize(
        self, product_id: str, job_id: str, artifact_id: str, claim: FinalizeRequest
    ) -> ArtifactOut:
        """Check the committed blob against the client's claim, then flip the pointer to ACTIVE.

        A size or digest mismatch removes blob and pointer (422): the upload must start over.
        Without a claimed sha256 the service hashes the blob and records that digest.
        Finalizing an ACTIVE artifact again with the same claim returns it (a retried call).
        """
        if claim.sha256 is not None and not _SHA256.fullmatch(claim.sha256):
            raise InvalidInput("sha256 must be 64 lowercase hex digits", field="sha256")
        stored = await self.kernel.lookup(product_id, artifact_id, job_id)
        pointer = stored.pointer
        if pointer.status is not ArtifactStatus.UPLOADING and pointer.visible_at(self.kernel.now()):
            if pointer.size_bytes == claim.size_bytes and claim.sha256 in (None, pointer.sha256):
                return await self.kernel.present(stored)  # a retried finalize: the artifact as it is now
            raise Conflict("the artifact was already finalized with another size or digest")
        if pointer.status is not ArtifactStatus.UPLOADING:
            raise NotFound("artifact not found")
        if pointer.expires_at is not None and pointer.expires_at <= self.kernel.now():
            raise Conflict("the upload's deadline has passed; start a new upload")
        blobs, staged, target = self.kernel.blobs, staging_key(pointer.blob_key), pointer.blob_key
        try:  # early; the store checks the seal again, atomically, with the pointer
            await self.kernel.check_open(product_id, job_id)
        except JobSealed:  # it can never finish: its staged bytes go now, not at its deadline
            await self._abandon(stored)
            raise
        if await blobs.info(staged) is None:
            raise Conflict("nothing is committed under the upload URL yet")
        # Locally no write through the upload URL lands after this. On Azure one still may, on the
        # staging blob: so the checks below look at the copy, which only this service writes.
        await blobs.seal(staged)
        try:
            info = await blobs.copy(staged, target)
        except NotFound:  # discarded meanwhile (a concurrent delete): start over
            raise Conflict("the upload was discarded meanwhile; start a new upload") from None
        if info.size_bytes > self.kernel.limits.max_upload_bytes:  # a SAS cannot cap a size: check it here
            await self._abandon(stored)
            raise PayloadTooLarge(self.kernel.limits.max_upload_bytes)
        announced = pointer.size_bytes or None  # sizeBytes given when the upload started
        for expected in (claim.size_bytes, announced):
            if expected is not None and info.size_bytes != expected:
                await self._abandon(stored)
                raise Unprocessable(
                    f"the committed blob has {info.size_bytes} bytes, not {expected}; "
                    "the upload was discarded"
                )
        sha256 = claim.sha256
        verified = claim.verify or sha256 is None or info.size_bytes <= self.kernel.limits.verify_max_bytes
        if verified:
            digest = hashlib.sha256()
            async for chunk in blobs.read(target):
                digest.update(chunk)
            if sha256 is not None and digest.hexdigest() != sha256:
                await self._abandon(stored)
                raise Unprocessable(
                    "the committed blob's sha256 differs from the claim; the upload was discarded"
                )
            sha256 = digest.hexdigest()
        retention = carried(
            pointer.retention_days, pointer.keep_forever, self.kernel.limits.default_retention_days
        )
        active = msgspec.structs.replace(
            pointer,
            status=ArtifactStatus.ACTIVE,
            size_bytes=info.size_bytes,
            sha256=sha256,
            sha256_verified=verified,
            expires_at=retention.expires_at(pointer.created_at),
            retention_days=retention.days,
        )
        await blobs.set_tags(target, self.kernel.blob_tags(active))
        try:
            etag = (await self.kernel.replace(stored, active)).etag
        except JobSealed:  # sealed since the upload started: it never becomes an artifact
            await self._abandon(stored)
            raise
        except PreconditionFailed:
            # A concurrent finalize (or delete) won; answer as a retry of that one would be answered.
            return await self.finalize(product_id, job_id, artifact_id, claim)
        # Only now: a finalize retried after a failure above still finds the staged bytes.
        await blobs.delete(staged)
        await blobs.discard_uncommitted(staged)
        return await self.kernel.present(StoredPointer(active, etag))

    async def upload_open(self, key: str) -> bool:
        """Whether ``key`` belongs to a direct upload that may still be written (UPLOADING, in time)."""
        named = parse_blob_key(key)
        if named is None:
            return False
        stored = await self.kernel.pointers.get(*named)
        if stored is None or staging_key(stored.pointer.blob_key) != key:
            return False
        pointer = stored.pointer
        deadline = pointer.expires_at
        return pointer.status is ArtifactStatus.UPLOADING and (
            deadline is None or deadline > self.kernel.now()
        )

    async def _abandon(self, stored: StoredPointer) -> None:
        await self.kernel.retire(stored)
