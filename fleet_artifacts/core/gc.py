"""The sweeper's removal steps (``core.sweeper`` runs them in order).

Every removal of an artifact or an unfinished upload goes through ``Kernel.retire``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from fleet_artifacts.core.errors import ArtifactError
from fleet_artifacts.core.kernel import Kernel
from fleet_artifacts.core.keys import BLOB_PREFIX, STAGING_PREFIX, parse_blob_key, staging_key
from fleet_artifacts.core.models import ArtifactStatus, Pointer
from fleet_artifacts.core.ports import (
    IdempotencyRecord,
    ShareLink,
    SideRecord,
    StoredPointer,
    UploadSession,
)

log = logging.getLogger(__name__)


async def sweep_stale_uploads(
    kernel: Kernel, *, now: datetime, dry_run: bool = False, batch: int = 500
) -> list[str]:
    """Remove direct uploads never finalized by their deadline: blob, staged blocks, then pointer.

    Also finishes the removals a crash interrupted: an upload claimed for removal (DELETING,
    its deadline kept) whose blob or pointer is still there. The pointer goes last, so an
    interrupted sweep is finished by the next one. Returns the blob keys of the uploads
    removed (or that would be, with ``dry_run``).
    """
    statuses = (ArtifactStatus.UPLOADING, ArtifactStatus.DELETING)
    return await sweep_statuses(kernel, statuses, now=now, dry_run=dry_run, batch=batch)


async def sweep_statuses(
    kernel: Kernel,
    statuses: Sequence[ArtifactStatus],
    *,
    now: datetime,
    dry_run: bool = False,
    batch: int = 500,
) -> list[str]:
    """Retire pointers in ``statuses`` whose ``expiresAt`` passed (blob first, then pointer); their blob keys.

    Found through the pointer store's expiry index, a batch at a time.
    """
    removed: list[str] = []
    for status in statuses:
        removed += await _sweep_expired(kernel, status, now=now, dry_run=dry_run, batch=batch)
    return removed


async def _sweep_expired(
    kernel: Kernel, status: ArtifactStatus, *, now: datetime, dry_run: bool, batch: int
) -> list[str]:
    removed: list[str] = []
    seen: set[str] = set()
    while True:
        stale = [
            s
            for s in await kernel.pointers.expired(status, before=now, limit=batch)
            if s.pointer.id not in seen
        ]
        if not stale:
            return removed
        for stored in stale:
            seen.add(stored.pointer.id)
            if dry_run:
                removed.append(stored.pointer.blob_key)
            elif await _retired(kernel, stored):
                removed.append(stored.pointer.blob_key)
                log.info(
                    "removed %s (%s, expired %s)",
                    stored.pointer.blob_key,
                    status.value,
                    stored.pointer.expires_at,
                )
        if dry_run or len(stale) < batch:
            return removed


async def _retired(kernel: Kernel, stored: StoredPointer) -> bool:
    """Retire one pointer; a failure is logged and left to the next sweep (the claim dated it)."""
    try:
        return await kernel.retire(stored)
    except ArtifactError as exc:
        log.warning("could not remove %s: %s", stored.pointer.blob_key, exc.detail)
        return False


async def sweep_orphan_blobs(kernel: Kernel, *, older_than: datetime, dry_run: bool = False) -> list[str]:
    """Delete committed blobs that no pointer names, last modified before ``older_than``.

    Such blobs are left when the process dies between writing a blob and its pointer,
    or when deleting a blob after a failed pointer write fails too. The grace period
    (``older_than``) keeps the sweep off uploads whose pointer is still being written.
    Staging blobs go too once their upload is finalized or gone (a write through an old
    upload URL after finalize lands there, and nothing reads it).
    """
    blobs, pointers = kernel.blobs, kernel.pointers
    removed: list[str] = []
    for prefix in (BLOB_PREFIX, STAGING_PREFIX):
        async for key, modified in blobs.committed(prefix):
            if modified >= older_than:
                continue
            named = parse_blob_key(key)
            stored = await pointers.get(*named) if named else None
            if stored is not None and _names(stored.pointer, key):
                continue
            removed.append(key)
            if not dry_run:
                await blobs.delete(key)
                log.info("removed orphan blob %s (modified %s)", key, modified.isoformat())
    return removed


async def sweep_temporaries(kernel: Kernel, *, older_than: datetime, dry_run: bool = False) -> list[str]:
    """Remove what writes killed mid-stream left in the blob store, untouched since ``older_than``.

    The local backend's temp files (Azure has none: it drops uncommitted blocks itself). No
    pointer names them, so unlike orphans nothing is looked up: their age alone says that their
    writer is dead, which is why ``older_than`` lies far behind any pause of a live upload.
    """
    removed = await kernel.blobs.sweep_temporaries(older_than=older_than, dry_run=dry_run)
    for name in () if dry_run else removed:
        log.info("removed temp file %s (untouched since before %s)", name, older_than.isoformat())
    return removed


def _names(pointer: Pointer, key: str) -> bool:
    """Whether ``pointer`` still needs the blob ``key``: its own, or its upload's staging blob."""
    if key.startswith(STAGING_PREFIX):
        return pointer.status is ArtifactStatus.UPLOADING and staging_key(pointer.blob_key) == key
    return pointer.blob_key == key


async def sweep_expired_sessions(kernel: Kernel, *, now: datetime, dry_run: bool = False) -> list[str]:
    """Drop expired resumable sessions with their staged bytes; return the sessions' blob keys.

    Cosmos removes expired records by its own TTL (staged blocks on Azure go after seven
    days); SQLite and the local staging dir need this.
    """
    blobs, pointers = kernel.blobs, kernel.pointers
    dropped: list[str] = []
    for stored in await pointers.expired_records(UploadSession, before=now):
        session = stored.record
        dropped.append(session.blob_key)
        if dry_run:
            continue
        if not session.completed:  # a completed session's blocks are its artifact now
            await blobs.discard_uncommitted(session.blob_key)
        await pointers.delete_record(session.job_id, session.id, etag=stored.etag)
        log.info("removed expired upload session %s/%s", session.job_id, session.id)
    return dropped


async def sweep_expired_shares(kernel: Kernel, *, now: datetime, dry_run: bool = False) -> list[str]:
    """Drop share links past their lifetime (Cosmos's ttl drops them too); ``jobId/<hash prefix>`` each.

    Only 12 characters of a link's record id are named: the id is the hash of its secret.
    """
    return await _drop_expired(kernel, ShareLink, now=now, dry_run=dry_run, shown=12)


async def sweep_expired_keys(kernel: Kernel, *, now: datetime, dry_run: bool = False) -> list[str]:
    """Drop Idempotency-Key records past their retention; return them as ``jobId/recordId``."""
    return await _drop_expired(kernel, IdempotencyRecord, now=now, dry_run=dry_run)


async def _drop_expired(
    kernel: Kernel, kind: type[SideRecord], *, now: datetime, dry_run: bool, shown: int | None = None
) -> list[str]:
    dropped: list[str] = []
    for stored in await kernel.pointers.expired_records(kind, before=now):
        record = stored.record
        dropped.append(f"{record.job_id}/{record.id[:shown]}")
        if not dry_run:
            await kernel.pointers.delete_record(record.job_id, record.id, etag=stored.etag)
    return dropped
