"""``DelegatingPointerStore``: a real pointer store behind the port, for fault-injecting subclasses.

A test overrides the one operation it breaks (a create that fails, a delete that dies half-way)
and everything else reaches the real adapter unchanged.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime

from fleet_artifacts.core.journal import Event, EventPage, JobPage, JobState
from fleet_artifacts.core.models import ArtifactStatus, BlobTier, Pointer
from fleet_artifacts.core.ports import (
    ListQuery,
    PointerPage,
    PointerStore,
    R,
    SideRecord,
    StoredPointer,
    StoredRecord,
)


class DelegatingPointerStore(PointerStore):
    """Every operation passed to ``inner``."""

    def __init__(self, inner: PointerStore) -> None:
        self.inner = inner

    async def check(self) -> None:
        await self.inner.check()

    async def create(self, pointer: Pointer, *, event: Event | None = None) -> str:
        return await self.inner.create(pointer, event=event)

    async def get(self, job_id: str, artifact_id: str) -> StoredPointer | None:
        return await self.inner.get(job_id, artifact_id)

    async def find(self, artifact_id: str) -> StoredPointer | None:
        return await self.inner.find(artifact_id)

    async def replace(self, pointer: Pointer, *, etag: str, event: Event | None = None) -> str:
        return await self.inner.replace(pointer, etag=etag, event=event)

    async def delete(self, job_id: str, artifact_id: str) -> bool:
        return await self.inner.delete(job_id, artifact_id)

    async def get_record(self, job_id: str, record_id: str, kind: type[R]) -> StoredRecord[R] | None:
        return await self.inner.get_record(job_id, record_id, kind)

    async def put_record(self, record: SideRecord, *, etag: str | None) -> str:
        return await self.inner.put_record(record, etag=etag)

    async def records(self, job_id: str, kind: type[R], *, limit: int = 1000) -> list[StoredRecord[R]]:
        return await self.inner.records(job_id, kind, limit=limit)

    async def expired_records(
        self, kind: type[R], *, before: datetime, limit: int = 1000
    ) -> list[StoredRecord[R]]:
        return await self.inner.expired_records(kind, before=before, limit=limit)

    async def delete_record(self, job_id: str, record_id: str, *, etag: str) -> None:
        await self.inner.delete_record(job_id, record_id, etag=etag)

    async def expired(
        self, status: ArtifactStatus, *, before: datetime, limit: int = 1000
    ) -> list[StoredPointer]:
        return await self.inner.expired(status, before=before, limit=limit)

    async def aged(
        self,
        status: ArtifactStatus,
        *,
        tiered_before: datetime,
        tiers: Sequence[BlobTier],
        limit: int = 1000,
    ) -> list[StoredPointer]:
        return await self.inner.aged(status, tiered_before=tiered_before, tiers=tiers, limit=limit)

    async def list(self, query: ListQuery) -> PointerPage:
        return await self.inner.list(query)

    async def job(self, product_id: str, job_id: str) -> JobState | None:
        return await self.inner.job(product_id, job_id)

    async def seal(self, event: Event) -> JobState:
        return await self.inner.seal(event)

    async def jobs(self, product_id: str, *, limit: int, continuation: str | None) -> JobPage:
        return await self.inner.jobs(product_id, limit=limit, continuation=continuation)

    async def events(
        self, product_id: str, *, since: str | None, limit: int, job_id: str | None
    ) -> EventPage:
        return await self.inner.events(product_id, since=since, limit=limit, job_id=job_id)

    async def prune_events(self, *, before: datetime, limit: int = 1000) -> builtins.list[str]:
        return await self.inner.prune_events(before=before, limit=limit)
