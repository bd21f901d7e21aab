"""Copy Blob within the account, waited for: the Azure side of ``BlobStore.copy``.

``start_copy_from_url`` asks the service to copy; within one account it usually finishes
before it answers (``copy_status`` "success"), but Azure copies on a best-effort basis and
may answer "pending", so the target's ``copy.status`` is polled until it settles. A copy
that fails, is aborted or is given up on leaves no target: Azure would leave a zero-length
blob with the source's metadata behind, which must never pass for the artifact.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from azure.storage.blob import StandardBlobTier
from azure.storage.blob.aio import BlobClient

from fleet_artifacts.core.errors import Conflict, Unavailable
from fleet_artifacts.stores.azure_blob_errors import translate

# How long a pending copy is waited for, and how long its source SAS stays valid: Azure
# reads the source while the copy is pending, so the SAS must outlive the wait.
COPY_WAIT = timedelta(minutes=30)
_POLL_FIRST, _POLL_MAX = 0.05, 2.0  # seconds between polls of a pending copy, doubling


async def copy_blob(target: BlobClient, source_url: str, *, tags: dict[str, str]) -> None:
    """Copy the blob at ``source_url`` over ``target`` (Hot, with ``tags``) and wait until it is done.

    Metadata is not passed, so Azure copies the source's (its ``sha256``), as it copies the
    content type. NotFound if the source is absent; Unavailable if the copy failed or took
    longer than ``COPY_WAIT``, Conflict if it was aborted: no target is left in any of those.
    """
    what = f"copy to {target.blob_name}"
    with translate(what):
        started = await target.start_copy_from_url(
            source_url,
            # Without it the target takes the account's default tier; a new blob is Hot (the port's rule).
            standard_blob_tier=StandardBlobTier.HOT,
            tags=tags or None,
        )
    if started.get("copy_status") == "success":
        return
    try:
        try:
            await asyncio.wait_for(_settled(target, what), COPY_WAIT.total_seconds())
        except TimeoutError:
            raise Unavailable(f"{what}: the copy was still pending after {COPY_WAIT}") from None
    except BaseException:
        # Failed, aborted, timed out or cancelled: stop a copy still pending, then drop the target.
        with contextlib.suppress(Exception), translate(f"abort {what}"):
            await target.abort_copy(str(started["copy_id"]))
        with contextlib.suppress(Exception), translate(f"delete the target of a failed {what}"):
            await target.delete_blob()
        raise


async def _settled(target: BlobClient, what: str) -> None:
    """Poll the target's copy status until it is "success"; raise for "failed" or "aborted"."""
    pause = _POLL_FIRST
    while True:
        await asyncio.sleep(pause)
        pause = min(pause * 2, _POLL_MAX)
        with translate(f"status of {what}"):
            props = await target.get_blob_properties()
        status, why = props.copy.status, props.copy.status_description or "no reason given"
        if status == "success":
            return
        if status == "failed":  # e.g. the source changed or vanished while it was being copied
            raise Unavailable(f"{what}: Blob Storage failed the copy ({why})")
        if status == "aborted":
            raise Conflict(f"{what}: the copy was aborted")
        if status != "pending":  # None: a write replaced the target meanwhile
            raise Conflict(f"{what}: the target was replaced while it was being copied")
