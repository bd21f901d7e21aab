"""The sweeper: one pass over everything that lapsed, in a fixed order, safe to run anywhere.

    expired       artifacts past expiresAt (ACTIVE, ARCHIVED, RESTORING; DELETED past the window)
    tiers         ACTIVE artifacts old enough for a colder tier (COOL/COLD/ARCHIVE_AFTER_DAYS)
    restores      RESTORING artifacts whose blob is readable again become ACTIVE
    stale-uploads direct uploads never finalized, and removals a crash interrupted
    sessions      expired resumable upload sessions and their staged bytes
    keys          expired Idempotency-Key records
    orphans       committed blobs no pointer names, past a grace period

Every step claims a pointer by etag before it acts (``Kernel.retire``, ``move_tier``,
``settle_restore``), so two sweeps at once never act twice on one artifact and a sweep
right after another finds nothing. In the service, a lease record in the pointer store
lets one replica sweep per interval (``Sweeper.run_if_due``); ``fleet-artifacts gc``
sweeps whenever an operator asks.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

from fleet_artifacts.core.errors import Conflict, PreconditionFailed
from fleet_artifacts.core.gc import (
    sweep_expired_keys,
    sweep_expired_sessions,
    sweep_orphan_blobs,
    sweep_stale_uploads,
    sweep_statuses,
)
from fleet_artifacts.core.kernel import Kernel
from fleet_artifacts.core.lifecycle import move_tier, warmer_tiers
from fleet_artifacts.core.models import ArtifactStatus, BlobTier
from fleet_artifacts.core.ports import NEVER, SweepLease

log = logging.getLogger(__name__)

STEPS = ("expired", "tiers", "restores", "stale-uploads", "sessions", "keys", "orphans")
LEASE_JOB = "~service"  # the lease's partition: no job id can be it (ids start with a letter or digit)
LEASE_ID = "sweep-lease"
_EXPIRING = (ArtifactStatus.ACTIVE, ArtifactStatus.ARCHIVED, ArtifactStatus.RESTORING, ArtifactStatus.DELETED)
_BATCH = 500


class Sweeper:
    """Runs the sweep steps against one kernel's stores."""

    def __init__(self, kernel: Kernel, *, orphan_grace: timedelta = timedelta(hours=1)) -> None:
        """Sweep with ``kernel``'s limits; orphans younger than ``orphan_grace`` are left alone."""
        self.kernel = kernel
        self.orphan_grace = orphan_grace
        self.holder = secrets.token_hex(8)

    async def sweep(
        self, *, steps: Sequence[str] = STEPS, dry_run: bool = False, now: datetime | None = None
    ) -> dict[str, list[str]]:
        """Run ``steps`` in the fixed order; what each removed or changed (would, with ``dry_run``)."""
        unknown = set(steps) - set(STEPS)
        if unknown:
            raise ValueError(f"unknown sweep steps: {', '.join(sorted(unknown))}")
        kernel = self.kernel
        at = now or kernel.now()
        done: dict[str, list[str]] = {}
        for step in (s for s in STEPS if s in steps):
            if step == "expired":
                done[step] = await sweep_statuses(kernel, _EXPIRING, now=at, dry_run=dry_run, batch=_BATCH)
            elif step == "tiers":
                done[step] = await self.tier_moves(at, dry_run=dry_run)
            elif step == "restores":
                done[step] = await self.restores(at, dry_run=dry_run)
            elif step == "stale-uploads":
                done[step] = await sweep_stale_uploads(kernel, now=at, dry_run=dry_run, batch=_BATCH)
            elif step == "sessions":
                done[step] = await sweep_expired_sessions(kernel, now=at, dry_run=dry_run)
            elif step == "keys":
                done[step] = await sweep_expired_keys(kernel, now=at, dry_run=dry_run)
            else:
                cutoff = at - self.orphan_grace
                done[step] = await sweep_orphan_blobs(kernel, older_than=cutoff, dry_run=dry_run)
        return done

    async def tier_moves(self, now: datetime, *, dry_run: bool = False) -> list[str]:
        """Move ACTIVE artifacts older than a threshold to that tier, coldest threshold first."""
        limits = self.kernel.limits
        plan = [
            (BlobTier.ARCHIVE, limits.archive_after_days),
            (BlobTier.COLD, limits.cold_after_days),
            (BlobTier.COOL, limits.cool_after_days),
        ]
        moved: list[str] = []
        seen: set[str] = set()  # across tiers too: a dry run names each artifact once, at its coldest
        for tier, days in plan:
            if days is None:
                continue
            while True:
                due = [
                    s
                    for s in await self.kernel.pointers.aged(
                        ArtifactStatus.ACTIVE,
                        created_before=now - timedelta(days=days),
                        tiers=warmer_tiers(tier),
                        limit=_BATCH,
                    )
                    if s.pointer.id not in seen and s.pointer.visible_at(now)
                ]
                if not due:
                    break
                for stored in due:
                    seen.add(stored.pointer.id)
                    if not dry_run:
                        try:
                            await move_tier(self.kernel, stored, tier)
                        except (PreconditionFailed, Conflict):
                            continue  # changed meanwhile (another sweep moved it): not ours to count
                    moved.append(f"{stored.pointer.blob_key} -> {tier.value}")
                if dry_run:
                    break
        return moved

    async def restores(self, now: datetime, *, dry_run: bool = False) -> list[str]:
        """RESTORING artifacts whose blob is readable again become ACTIVE; returns those."""
        finished: list[str] = []
        restoring = await self.kernel.pointers.aged(
            ArtifactStatus.RESTORING, created_before=NEVER, tiers=list(BlobTier), limit=10_000
        )
        for stored in restoring:
            if dry_run:
                info = await self.kernel.blobs.info(stored.pointer.blob_key)
                if info is not None and info.tier is not BlobTier.ARCHIVE and not info.rehydrating:
                    finished.append(stored.pointer.blob_key)
                continue
            settled = await self.kernel.settle_restore(stored)
            if settled.pointer.status is ArtifactStatus.ACTIVE:
                finished.append(stored.pointer.blob_key)
        return finished

    async def take_lease(self, interval: timedelta) -> bool:
        """Hold the service's sweep lease until ``now + interval`` if no other replica holds it now.

        A compare-and-swap on one record: of replicas asking at once, exactly one wins.
        """
        pointers, now = self.kernel.pointers, self.kernel.now()
        current = await pointers.get_record(LEASE_JOB, LEASE_ID, SweepLease)
        if current is not None and current.record.expires_at > now and current.record.holder != self.holder:
            return False
        lease = SweepLease(
            id=LEASE_ID, job_id=LEASE_JOB, expires_at=now + interval, holder=self.holder, acquired_at=now
        )
        try:
            await pointers.put_record(lease, etag=None if current is None else current.etag)
        except (Conflict, PreconditionFailed):
            return False  # another replica took it first
        return True

    async def run_if_due(self, interval: timedelta) -> dict[str, list[str]] | None:
        """Sweep once if this replica gets the lease for ``interval``; None if another holds it."""
        if not await self.take_lease(interval):
            return None
        done = await self.sweep()
        counts = {step: len(items) for step, items in done.items()}
        log.info("sweep done: %s", ", ".join(f"{n} {step}" for step, n in counts.items()))
        return done


def summary(done: dict[str, list[str]]) -> str:
    """``3 expired, 0 tiers, ...``: a sweep's counts per step."""
    return ", ".join(f"{len(items)} {step}" for step, items in done.items())
