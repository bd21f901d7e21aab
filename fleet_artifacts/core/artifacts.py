"""Artifacts of the caller's product: upload through the service, fetch, list, delete.

Every method is one use case; the shared protocols (lookup, present, commit a
pointer, retire) belong to the ``Kernel``.
"""

from __future__ import annotations

from collections.abc import AsyncIterable

import msgspec

from fleet_artifacts.core.errors import PreconditionFailed
from fleet_artifacts.core.kernel import Kernel, SignedUrl
from fleet_artifacts.core.keys import blob_key
from fleet_artifacts.core.models import (
    ArtifactKind,
    ArtifactMeta,
    ArtifactOut,
    ArtifactPage,
    ArtifactStatus,
    CheckedMeta,
    Pointer,
)
from fleet_artifacts.core.ports import ListQuery
from fleet_artifacts.core.validation import check_id, checked_meta

_JOB_PAGE = 100  # pointers retired per page of a job-wide delete


class ArtifactService:
    """Upload, find, list and delete artifacts of the caller's product."""

    def __init__(self, kernel: Kernel) -> None:
        """Serve artifacts through ``kernel``."""
        self.kernel = kernel

    async def upload(
        self,
        product_id: str,
        job_id: str,
        meta: ArtifactMeta,
        chunks: AsyncIterable[bytes],
        *,
        key: str | None = None,
    ) -> tuple[ArtifactOut, bool]:
        """Store the bytes, then the pointer (once per Idempotency-Key ``key``); ``(artifact, replayed)``.

        ``meta`` is checked here (InvalidInput) before a byte of ``chunks`` is read.
        """
        check_id(job_id, "jobId")
        checked = checked_meta(meta)

        async def create() -> ArtifactOut:
            return await self._store(product_id, job_id, checked, chunks)

        async def replay(artifact_id: str) -> ArtifactOut:
            return await self.kernel.present(await self.kernel.active(product_id, artifact_id, job_id))

        async def undo(out: ArtifactOut) -> None:
            await self.delete(product_id, out.id, job_id)

        return await self.kernel.idempotency.run(
            product_id=product_id,
            job_id=job_id,
            key=key,
            operation="upload",
            request=msgspec.structs.asdict(checked),
            create=create,
            created_id=lambda out: out.id,
            replay=replay,
            undo=undo,
        )

    async def _store(
        self, product_id: str, job_id: str, meta: CheckedMeta, chunks: AsyncIterable[bytes]
    ) -> ArtifactOut:
        kernel = self.kernel
        artifact_id = kernel.new_id()
        key = blob_key(product_id, job_id, artifact_id, meta.kind)
        written = await kernel.blobs.write(
            key, chunks, content_type=meta.content_type, max_bytes=kernel.limits.max_upload_bytes
        )
        pointer = Pointer.of(
            meta,
            id=artifact_id,
            product_id=product_id,
            job_id=job_id,
            blob_key=key,
            size_bytes=written.size_bytes,
            sha256=written.sha256,
            created_at=kernel.now(),
        )
        await kernel.commit_pointer(pointer)
        return await kernel.present(pointer)

    async def get(
        self, product_id: str, artifact_id: str, job_id: str | None = None, *, disposition: str = "attachment"
    ) -> ArtifactOut:
        """An active artifact with a fresh download URL (a point read with ``job_id``)."""
        return await self.kernel.present(
            await self.kernel.active(product_id, artifact_id, job_id), disposition=disposition
        )

    async def content(self, product_id: str, artifact_id: str, job_id: str | None = None) -> Pointer:
        """The active pointer whose bytes the content proxy streams from ``kernel.blobs``."""
        return await self.kernel.active(product_id, artifact_id, job_id)

    async def download_url(
        self, product_id: str, artifact_id: str, job_id: str | None = None, *, disposition: str = "attachment"
    ) -> SignedUrl:
        """A freshly signed download URL of an active artifact (for redirects)."""
        pointer = await self.kernel.active(product_id, artifact_id, job_id)
        return await self.kernel.sign(pointer, disposition=disposition)

    async def list(self, query: ListQuery) -> ArtifactPage:
        """One page of a job's active artifacts, each with a download URL."""
        page = await self.kernel.pointers.list(query)
        items = [await self.kernel.present(pointer) for pointer in page.items]
        return ArtifactPage(items=items, continuation_token=page.continuation)

    async def delete_job(
        self, product_id: str, job_id: str, *, kind: ArtifactKind | None = None, run_id: str | None = None
    ) -> int:
        """Delete every artifact of the caller's product in a job (narrowed by ``kind``, ``run_id``).

        Uploads still in progress and deletes a crash interrupted go too. Each artifact goes
        through ``Kernel.retire``, one page at a time and partition-locally, so a repeat finishes
        an interrupted run. Returns how many this call removed.
        """
        check_id(job_id, "jobId")
        if run_id is not None:
            check_id(run_id, "runId")
        removed = 0
        for status in (ArtifactStatus.ACTIVE, ArtifactStatus.UPLOADING, ArtifactStatus.DELETING):
            query = ListQuery(
                job_id=job_id, product_id=product_id, kind=kind, run_id=run_id, status=status, limit=_JOB_PAGE
            )
            while True:
                # Always the first page: what this loop retires leaves it, so no token is needed.
                page = await self.kernel.pointers.list(query)
                retired = 0
                for pointer in page.items:
                    stored = await self.kernel.pointers.get(pointer.job_id, pointer.id)
                    if stored is not None and await self.kernel.retire(stored):
                        retired += 1
                removed += retired
                if len(page.items) < _JOB_PAGE or retired == 0:
                    break  # the last page, or only pointers another writer holds: a repeat finishes
        return removed

    async def delete(self, product_id: str, artifact_id: str, job_id: str | None = None) -> None:
        """Remove pointer and blob; NotFound if absent (so a repeat answers 404)."""
        for _ in range(3):  # a lost etag race is retried: the other writer may be a DELETE too
            if await self.kernel.retire(await self.kernel.lookup(product_id, artifact_id, job_id)):
                return
        # Three lost races in a row: tell a vanished artifact from a busy one.
        await self.kernel.lookup(product_id, artifact_id, job_id)
        raise PreconditionFailed("artifact is being changed concurrently; retry")
