"""Artifacts of the caller's product: upload through the service, fetch, list, delete.

Every method is one use case; the shared protocols (lookup, present, commit a
pointer, retire) belong to the ``Kernel``.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from datetime import timedelta

import msgspec

from fleet_artifacts.core.audit import on_artifact
from fleet_artifacts.core.errors import NotFound, PreconditionFailed
from fleet_artifacts.core.kernel import Kernel, SignedUrl
from fleet_artifacts.core.keys import blob_key
from fleet_artifacts.core.models import (
    VISIBLE,
    ArtifactKind,
    ArtifactMeta,
    ArtifactOut,
    ArtifactPage,
    ArtifactStatus,
    CheckedMeta,
    Pointer,
    UndeleteTo,
)
from fleet_artifacts.core.ports import ListQuery, StoredPointer
from fleet_artifacts.core.retention import RetentionRules, new_pointer
from fleet_artifacts.core.validation import check_id, checked_meta

_JOB_PAGE = 100  # pointers retired per page of a job-wide delete
_LIST_ROUNDS = 10  # pages fetched at most to fill one page around expired, unswept pointers


class ArtifactService:
    """Upload, find, list and delete artifacts of the caller's product."""

    def __init__(self, kernel: Kernel) -> None:
        """Serve artifacts through ``kernel``."""
        self.kernel = kernel
        self.retention = RetentionRules(kernel)

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
        self.retention.check(checked)

        async def create() -> ArtifactOut:
            await self.kernel.check_open(product_id, job_id)
            return await self._store(product_id, job_id, checked, chunks)

        async def replay(artifact_id: str) -> ArtifactOut:
            # As it is now: archived since, it answers without a URL rather than failing the retry.
            return await self.kernel.present(await self.kernel.visible(product_id, artifact_id, job_id))

        async def undo(out: ArtifactOut) -> None:
            await self.delete(product_id, out.id, job_id, purge=True)

        return await self.kernel.idempotency.run(
            product_id=product_id,
            job_id=job_id,
            key=key,
            operation="upload",
            request=checked.request_fields(),
            create=create,
            created_id=lambda out: out.id,
            replay=replay,
            undo=undo,
        )

    async def _store(
        self, product_id: str, job_id: str, meta: CheckedMeta, chunks: AsyncIterable[bytes]
    ) -> ArtifactOut:
        kernel = self.kernel
        retention = await self.retention.resolve(product_id, job_id, meta)
        artifact_id = kernel.new_id()
        key = blob_key(product_id, job_id, artifact_id, meta.kind)
        now = kernel.now()
        pointer = new_pointer(
            meta, retention, now, id=artifact_id, product_id=product_id, job_id=job_id, blob_key=key
        )
        written = await kernel.blobs.write(
            key,
            chunks,
            content_type=meta.content_type,
            max_bytes=kernel.limits.max_upload_bytes,
            tags=kernel.blob_tags(pointer),
        )
        pointer = msgspec.structs.replace(pointer, size_bytes=written.size_bytes, sha256=written.sha256)
        return await kernel.present(await kernel.commit_pointer(pointer))

    async def get(
        self,
        product_id: str,
        artifact_id: str,
        job_id: str | None = None,
        *,
        disposition: str = "attachment",
        expires_in: int | None = None,
    ) -> ArtifactOut:
        """A visible artifact: with a fresh download URL (a point read with ``job_id``) if online."""
        self.kernel.lifetime(expires_in)  # a bad expiresIn is refused before any read
        stored = await self.kernel.visible(product_id, artifact_id, job_id)
        return await self.kernel.present(stored, disposition=disposition, expires_in=expires_in)

    async def content(self, product_id: str, artifact_id: str, job_id: str | None = None) -> Pointer:
        """The readable pointer whose bytes the content proxy streams (Archived if they are offline)."""
        return (await self.kernel.active(product_id, artifact_id, job_id)).pointer

    async def download_url(
        self,
        product_id: str,
        artifact_id: str,
        job_id: str | None = None,
        *,
        disposition: str = "attachment",
        expires_in: int | None = None,
    ) -> SignedUrl:
        """A freshly signed download URL of a readable artifact (for redirects)."""
        self.kernel.lifetime(expires_in)
        stored = await self.kernel.active(product_id, artifact_id, job_id)
        return await self.kernel.sign(stored.pointer, disposition=disposition, expires_in=expires_in)

    async def list(self, query: ListQuery, *, expires_in: int | None = None) -> ArtifactPage:
        """One page of a job's artifacts in ``query.statuses``, each with a download URL if online.

        Artifacts past ``expiresAt`` are left out at once, before a sweep removes them; a page
        may then hold fewer than ``limit`` items (never none while more may follow).
        """
        self.kernel.lifetime(expires_in)
        now = self.kernel.now()
        hide_expired = set(query.statuses) <= VISIBLE
        items: list[StoredPointer] = []
        for _ in range(_LIST_ROUNDS):
            page = await self.kernel.pointers.list(query)
            items += [s for s in page.items if not hide_expired or s.pointer.visible_at(now)]
            if items or page.continuation is None:
                break
            query = msgspec.structs.replace(query, continuation=page.continuation)
        out = await self.kernel.present_all(items, expires_in=expires_in)
        return ArtifactPage(items=out, continuation_token=page.continuation)

    async def delete_job(
        self,
        product_id: str,
        job_id: str,
        *,
        kind: ArtifactKind | None = None,
        run_id: str | None = None,
        purge: bool = False,
    ) -> int:
        """Delete every artifact of the caller's product in a job (narrowed by ``kind``, ``run_id``).

        Uploads still in progress and deletes a crash interrupted go too. Within a soft-delete
        window (and without ``purge``) artifacts are marked DELETED instead. Each artifact goes
        through ``delete_stored``, one page at a time and partition-locally, so a repeat
        finishes an interrupted run. Returns how many this call deleted.
        """
        check_id(job_id, "jobId")
        if run_id is not None:
            check_id(run_id, "runId")
        soft = self._soft(purge)
        statuses = [*VISIBLE, ArtifactStatus.UPLOADING, ArtifactStatus.DELETING]
        if not soft:
            statuses.append(ArtifactStatus.DELETED)
        removed = 0
        for status in statuses:
            query = ListQuery(
                job_id=job_id,
                product_id=product_id,
                kind=kind,
                run_id=run_id,
                statuses=(status,),
                limit=_JOB_PAGE,
            )
            while True:
                # Always the first page: what this loop deletes leaves it, so no token is needed.
                page = await self.kernel.pointers.list(query)
                done = 0
                for stored in page.items:
                    if await self.delete_stored(stored, soft=soft and status is not ArtifactStatus.UPLOADING):
                        done += 1
                removed += done
                if len(page.items) < _JOB_PAGE or done == 0:
                    break  # the last page, or only pointers another writer holds: a repeat finishes
        return removed

    def _soft(self, purge: bool) -> bool:
        return not purge and self.kernel.limits.soft_delete > timedelta(0)

    async def delete_stored(self, stored: StoredPointer, *, soft: bool) -> bool:
        """Delete a pointer as read: DELETED (``soft``, if visible) or retired; False if it lost a race."""
        pointer = stored.pointer
        if not soft or pointer.status not in VISIBLE:
            if await self.kernel.retire(stored):
                on_artifact("artifact.deleted", pointer, soft=False)
                return True
            return False
        marked = msgspec.structs.replace(
            pointer,
            status=ArtifactStatus.DELETED,
            expires_at=self.kernel.now() + self.kernel.limits.soft_delete,
            undelete_to=UndeleteTo(status=pointer.status, expires_at=pointer.expires_at),
        )
        try:
            await self.kernel.replace(stored, marked)
        except (PreconditionFailed, NotFound):
            return False
        on_artifact("artifact.deleted", pointer, soft=True)
        return True

    async def delete(
        self, product_id: str, artifact_id: str, job_id: str | None = None, *, purge: bool = False
    ) -> None:
        """Delete an artifact: DELETED within a soft-delete window, else (or with ``purge``) removed.

        NotFound if absent, so a repeat answers 404; ``purge`` also removes a DELETED one.
        """
        soft = self._soft(purge)
        for _ in range(3):  # a lost etag race is retried: the other writer may be a DELETE too
            stored = await self._deletable(product_id, artifact_id, job_id, purge=purge)
            if await self.delete_stored(stored, soft=soft):
                return
        # Three lost races in a row: tell a vanished artifact from a busy one.
        await self._deletable(product_id, artifact_id, job_id, purge=purge)
        raise PreconditionFailed("artifact is being changed concurrently; retry")

    async def _deletable(
        self, product_id: str, artifact_id: str, job_id: str | None, *, purge: bool
    ) -> StoredPointer:
        stored = await self.kernel.lookup(product_id, artifact_id, job_id)
        pointer = stored.pointer
        # What readers no longer see answers as missing, except to a purge: a soft-deleted one,
        # and one past expiresAt (the sweeper's now).
        hidden = pointer.status is ArtifactStatus.DELETED or (
            pointer.status in VISIBLE and not pointer.visible_at(self.kernel.now())
        )
        if hidden and not purge:
            raise NotFound("artifact not found")
        return stored
