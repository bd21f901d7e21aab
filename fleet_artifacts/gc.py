"""Sweeping what clients left behind. Small, separate functions a fuller lifecycle sweeper can absorb."""

from __future__ import annotations

import logging
from datetime import datetime

from fleet_artifacts.models import ArtifactStatus
from fleet_artifacts.ports import BlobStore, PointerStore

log = logging.getLogger(__name__)


async def sweep_stale_uploads(
    blobs: BlobStore, pointers: PointerStore, *, now: datetime, dry_run: bool = False, batch: int = 500
) -> list[str]:
    """Remove direct uploads never finalized by their deadline: blob, staged blocks, then pointer.

    The pointer goes last, so an interrupted sweep is finished by the next one. Returns the
    blob keys of the uploads removed (or that would be, with ``dry_run``).
    """
    removed: list[str] = []
    while True:
        stale = await pointers.expired(ArtifactStatus.UPLOADING, before=now, limit=batch)
        stale = [s for s in stale if s.pointer.blob_key not in removed]
        if not stale:
            return removed
        for stored in stale:
            pointer = stored.pointer
            removed.append(pointer.blob_key)
            if dry_run:
                continue
            await blobs.delete(pointer.blob_key)
            await blobs.discard_uncommitted(pointer.blob_key)
            await pointers.delete(pointer.job_id, pointer.id)
            log.info("removed stale upload %s (deadline %s)", pointer.blob_key, pointer.expires_at)
        if dry_run or len(stale) < batch:
            return removed
