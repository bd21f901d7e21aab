"""Retention: how long an artifact is kept, and a job's default for its uploads.

An artifact's retention is, first of what is given: its own (``retentionDays`` or
``keepForever`` on the create), its job's (``PUT /jobs/{jobId}/retention``), the
service default (``DEFAULT_RETENTION_DAYS``). ``expiresAt = createdAt + retention``;
kept forever, ``expiresAt`` is null. Past ``expiresAt`` an artifact is gone for
readers at once; the sweeper removes its bytes and pointer later.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import msgspec

from fleet_artifacts.core.errors import Conflict, InvalidInput, PreconditionFailed
from fleet_artifacts.core.kernel import Kernel
from fleet_artifacts.core.models import (
    VISIBLE,
    ArtifactMeta,
    CheckedMeta,
    JobRetention,
    JobRetentionOut,
    Pointer,
)
from fleet_artifacts.core.ports import NEVER, JobPolicy, ListQuery, StoredPointer

log = logging.getLogger(__name__)
_PAGE = 100


class Retention(msgspec.Struct, frozen=True):
    """A resolved retention: ``days`` from creation, or kept forever (``days`` None)."""

    days: int | None
    keep_forever: bool = False

    def expires_at(self, created_at: datetime) -> datetime | None:
        """When an artifact created at ``created_at`` expires under it (None: never)."""
        return None if self.keep_forever or self.days is None else created_at + timedelta(days=self.days)


def check_retention(retention_days: int | None, keep_forever: bool, *, max_days: int) -> None:
    """InvalidInput unless ``retention_days`` is 1..``max_days`` and not given beside ``keep_forever``."""
    if retention_days is None:
        return
    if keep_forever:
        raise InvalidInput("give retentionDays or keepForever, not both", field="retentionDays")
    if not 1 <= retention_days <= max_days:
        raise InvalidInput(f"retentionDays must be between 1 and {max_days}", field="retentionDays")


def new_pointer(meta: CheckedMeta, retention: Retention, created_at: datetime, **fields: Any) -> Pointer:
    """A new artifact's pointer with its retention applied (size and digest still to be filled in)."""
    return Pointer.of(
        meta,
        created_at=created_at,
        expires_at=retention.expires_at(created_at),
        keep_forever=retention.keep_forever,
        retention_days=retention.days,
        size_bytes=fields.pop("size_bytes", 0),
        sha256=fields.pop("sha256", None),
        **fields,
    )


def carried(retention_days: int | None, keep_forever: bool, default_days: int) -> Retention:
    """The retention an UPLOADING pointer or a session carries for its artifact-to-be.

    Both unset (one made before retention existed): the default.
    """
    return Retention(None, keep_forever=True) if keep_forever else Retention(retention_days or default_days)


class RetentionRules:
    """Resolves retention for new artifacts; reads and sets a job's retention."""

    def __init__(self, kernel: Kernel) -> None:
        """Apply ``kernel.limits``' default and maximum."""
        self.kernel = kernel

    def check(self, meta: ArtifactMeta) -> None:
        """Refuse a create's retention before any byte is read (InvalidInput)."""
        check_retention(
            meta.retention_days, meta.keep_forever, max_days=self.kernel.limits.max_retention_days
        )

    async def resolve(self, product_id: str, job_id: str, meta: ArtifactMeta) -> Retention:
        """A new artifact's retention: its own, else its job's, else the service default."""
        self.check(meta)
        if meta.keep_forever:
            return Retention(None, keep_forever=True)
        if meta.retention_days is not None:
            return Retention(meta.retention_days)
        policy = await self._policy(product_id, job_id)
        if policy is not None and (policy.keep_forever or policy.retention_days is not None):
            return Retention(policy.retention_days, keep_forever=policy.keep_forever)
        return Retention(self.kernel.limits.default_retention_days)

    async def _policy(self, product_id: str, job_id: str) -> JobPolicy | None:
        stored = await self.kernel.pointers.get_record(job_id, JobPolicy.record_id(product_id), JobPolicy)
        return None if stored is None else stored.record

    async def job(self, product_id: str, job_id: str) -> JobRetentionOut:
        """A job's retention (the default when none was set)."""
        policy = await self._policy(product_id, job_id)
        return self._out(job_id, policy)

    def _out(self, job_id: str, policy: JobPolicy | None, updated: int | None = None) -> JobRetentionOut:
        return JobRetentionOut(
            job_id=job_id,
            retention_days=None if policy is None else policy.retention_days,
            keep_forever=False if policy is None else policy.keep_forever,
            default_retention_days=self.kernel.limits.default_retention_days,
            updated_at=None if policy is None else policy.updated_at,
            updated=updated,
        )

    async def set_job(self, product_id: str, job_id: str, request: JobRetention) -> JobRetentionOut:
        """Set a job's retention for its later uploads; with ``apply_to_existing``, re-date the others.

        Re-dating goes page by page, one compare-and-swap per artifact, and sets every visible
        artifact to exactly the new rule, so repeating an interrupted request finishes it.
        """
        if request.retention_days is None and not request.keep_forever:
            raise InvalidInput("give retentionDays or keepForever: true", field="retentionDays")
        check_retention(
            request.retention_days, request.keep_forever, max_days=self.kernel.limits.max_retention_days
        )
        pointers = self.kernel.pointers
        record_id = JobPolicy.record_id(product_id)
        policy = JobPolicy(
            id=record_id,
            job_id=job_id,
            expires_at=NEVER,
            product_id=product_id,
            retention_days=request.retention_days,
            keep_forever=request.keep_forever,
            updated_at=self.kernel.now(),
        )
        for _ in range(5):
            current = await pointers.get_record(job_id, record_id, JobPolicy)
            try:
                await pointers.put_record(policy, etag=None if current is None else current.etag)
                break
            except (PreconditionFailed, Conflict):  # changed or created meanwhile: look again
                continue
        else:
            raise PreconditionFailed("the job's retention is changing concurrently; retry")
        updated = None
        if request.apply_to_existing:
            rule = Retention(request.retention_days, keep_forever=request.keep_forever)
            updated = await self._apply(product_id, job_id, rule)
        return self._out(job_id, policy, updated)

    async def _apply(self, product_id: str, job_id: str, rule: Retention) -> int:
        query = ListQuery(job_id=job_id, product_id=product_id, statuses=tuple(VISIBLE), limit=_PAGE)
        updated = 0
        while True:
            page = await self.kernel.pointers.list(query)
            for stored in page.items:
                if await self.redate(stored, rule):
                    updated += 1
            if page.continuation is None:
                return updated
            query = msgspec.structs.replace(query, continuation=page.continuation)

    async def redate(self, stored: StoredPointer, rule: Retention) -> bool:
        """Give one artifact ``rule`` (by etag, retried on a race); False if it needed no change or went."""
        for _ in range(3):
            pointer = stored.pointer
            new = msgspec.structs.replace(
                pointer,
                expires_at=rule.expires_at(pointer.created_at),
                keep_forever=rule.keep_forever,
                retention_days=rule.days,
            )
            # Only what a reader still sees: an expired one stays expired (the sweeper's).
            if new == pointer or not pointer.visible_at(self.kernel.now()):
                return False
            try:
                await self.kernel.replace(stored, new)
                return True
            except PreconditionFailed:
                found = await self.kernel.pointers.get(pointer.job_id, pointer.id)
                if found is None:
                    return False
                stored = found
        log.warning("could not re-date %s/%s: it keeps changing", stored.pointer.job_id, stored.pointer.id)
        return False
