"""The sweeper: one pass over everything that lapsed, in a fixed order, safe to run anywhere.

    expired       artifacts past expiresAt (ACTIVE, ARCHIVED, RESTORING; DELETED past the window)
    tiers         ACTIVE artifacts old enough for a colder tier (COOL/COLD/ARCHIVE_AFTER_DAYS)
    restores      RESTORING artifacts whose blob is readable again become ACTIVE
    stale-uploads direct uploads never finalized, and removals a crash interrupted
    sessions      expired resumable upload sessions and their staged bytes
    keys          expired Idempotency-Key records
    shares        expired share links
    events        journal events older than EVENT_RETENTION_DAYS (Cosmos: its ttl does it)
    orphans       committed blobs no pointer names, past a grace period
    temps         what writes killed mid-stream left beside the blobs (local temp files), a day old

Every step claims a pointer by etag before it acts (``Kernel.retire``, ``move_tier``,
``settle_restore``), so two sweeps at once never act twice on one artifact and a sweep
right after another finds nothing. In the service, a lease record in the pointer store
lets one replica sweep per interval (``Sweeper.run_if_due``); ``fleet-artifacts gc``
sweeps whenever an operator asks.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

from fleet_artifacts.core.errors import ArtifactError, Conflict, NotFound, PreconditionFailed
from fleet_artifacts.core.gc import (
    sweep_expired_keys,
    sweep_expired_sessions,
    sweep_expired_shares,
    sweep_orphan_blobs,
    sweep_stale_uploads,
    sweep_statuses,
    sweep_temporaries,
)
from fleet_artifacts.core.kernel import Kernel
from fleet_artifacts.core.lifecycle import move_tier, warmer_tiers
from fleet_artifacts.core.models import ArtifactStatus, BlobTier
from fleet_artifacts.core.ports import NEVER, SweepLease

log = logging.getLogger(__name__)

STEPS = (
    "expired",
    "tiers",
    "restores",
    "stale-uploads",
    "sessions",
    "keys",
    "shares",
    "events",
    "orphans",
    "temps",
)
LEASE_JOB = "~service"  # the lease's partition: no job id can be it (ids start with a letter or digit)
LEASE_ID = "sweep-lease"
_EXPIRING = (ArtifactStatus.ACTIVE, ArtifactStatus.ARCHIVED, ArtifactStatus.RESTORING, ArtifactStatus.DELETED)
_BATCH = 500
# A temp file's age is how long its writer has been silent: a live upload grows it with every MiB
# it receives and renames it moments after its last byte. No setting bounds that silence (the
# header timeout ends with the request head), but no client or proxy keeps a body silent for
# hours; a day is far past that and past any clock skew between replicas sharing the directory,
# and costs only a dead upload's bytes on disk until then. Not the orphans' grace: that one is
# about a pointer write in flight, and an operator may set it to 0 beside a running service.
TEMP_GRACE = timedelta(days=1)


class Sweeper:
    """Runs the sweep steps against one kernel's stores."""

    def __init__(
        self,
        kernel: Kernel,
        *,
        orphan_grace: timedelta = timedelta(hours=1),
        temp_grace: timedelta = TEMP_GRACE,
    ) -> None:
        """Sweep with ``kernel``'s limits; orphans younger than ``orphan_grace`` are left alone.

        So are temp files untouched for less than ``temp_grace``.
        """
        self.kernel = kernel
        self.orphan_grace = orphan_grace
        self.temp_grace = temp_grace
        self.holder = secrets.token_hex(8)

    async def sweep(
        self,
        *,
        steps: Sequence[str] = STEPS,
        dry_run: bool = False,
        now: datetime | None = None,
        keep_going: Callable[[], Awaitable[bool]] | None = None,
    ) -> dict[str, list[str]]:
        """Run ``steps`` in the fixed order; what each removed or changed (would, with ``dry_run``).

        A step that fails (a backend outage) is reported under ``errors`` and the next step
        runs; an item that fails is logged and left to the next sweep. ``keep_going`` is asked
        between steps (the background sweep renews its lease there) and False stops the sweep.
        """
        unknown = set(steps) - set(STEPS)
        if unknown:
            raise ValueError(f"unknown sweep steps: {', '.join(sorted(unknown))}")
        at = now or self.kernel.now()
        done: dict[str, list[str]] = {}
        errors: list[str] = []
        for n, step in enumerate(s for s in STEPS if s in steps):
            if n and keep_going is not None and not await keep_going():
                log.info("sweep stopped before %s: the lease went to another replica", step)
                break
            try:
                done[step] = await self._step(step, at, dry_run=dry_run)
            except ArtifactError as exc:
                log.warning("sweep step %s failed: %s", step, exc.detail)
                errors.append(f"{step}: {exc.detail}")
        if errors:
            done["errors"] = errors
        return done

    async def _step(self, step: str, at: datetime, *, dry_run: bool) -> list[str]:
        kernel = self.kernel
        if step == "expired":
            return await sweep_statuses(kernel, _EXPIRING, now=at, dry_run=dry_run, batch=_BATCH)
        if step == "tiers":
            return await self.tier_moves(at, dry_run=dry_run)
        if step == "restores":
            return await self.restores(at, dry_run=dry_run)
        if step == "stale-uploads":
            return await sweep_stale_uploads(kernel, now=at, dry_run=dry_run, batch=_BATCH)
        if step == "sessions":
            return await sweep_expired_sessions(kernel, now=at, dry_run=dry_run)
        if step == "keys":
            return await sweep_expired_keys(kernel, now=at, dry_run=dry_run)
        if step == "shares":
            return await sweep_expired_shares(kernel, now=at, dry_run=dry_run)
        if step == "events":
            return await self.old_events(at, dry_run=dry_run)
        if step == "orphans":
            return await sweep_orphan_blobs(kernel, older_than=at - self.orphan_grace, dry_run=dry_run)
        return await sweep_temporaries(kernel, older_than=at - self.temp_grace, dry_run=dry_run)

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
                        tiered_before=now - timedelta(days=days),
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
                        except (PreconditionFailed, Conflict, NotFound):
                            continue  # changed or gone meanwhile (another sweep, a delete): not ours
                        except ArtifactError as exc:
                            log.warning(
                                "could not move %s to %s: %s", stored.pointer.blob_key, tier, exc.detail
                            )
                            continue
                    moved.append(f"{stored.pointer.blob_key} -> {tier.value}")
                if dry_run:
                    break
        return moved

    async def old_events(self, now: datetime, *, dry_run: bool = False) -> list[str]:
        """Drop journal events past their retention; the cursors of those dropped (a dry run drops none)."""
        if dry_run:
            return []
        before, gone = now - self.kernel.limits.event_retention, []
        while batch := await self.kernel.pointers.prune_events(before=before, limit=_BATCH):
            gone += batch
            if len(batch) < _BATCH:
                break
        return gone

    async def restores(self, now: datetime, *, dry_run: bool = False) -> list[str]:
        """RESTORING artifacts whose blob is readable again become ACTIVE; returns those."""
        finished: list[str] = []
        restoring = await self.kernel.pointers.aged(
            ArtifactStatus.RESTORING, tiered_before=NEVER, tiers=list(BlobTier), limit=10_000
        )
        for stored in restoring:
            if dry_run:
                info = await self.kernel.blobs.info(stored.pointer.blob_key)
                if info is not None and info.tier is not BlobTier.ARCHIVE and not info.rehydrating:
                    finished.append(stored.pointer.blob_key)
                continue
            try:
                settled = await self.kernel.settle_restore(stored)
            except ArtifactError as exc:
                log.warning("could not check the restore of %s: %s", stored.pointer.blob_key, exc.detail)
                continue
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
        except (Conflict, PreconditionFailed, NotFound):
            return False  # another replica took it first (or Cosmos's ttl dropped the old one meanwhile)
        return True

    async def run_if_due(self, interval: timedelta) -> dict[str, list[str]] | None:
        """Sweep once if this replica gets the lease for ``interval``; None if another holds it."""
        if not await self.take_lease(interval):
            return None
        # Renewed between steps, so a sweep longer than the interval keeps the others out.
        done = await self.sweep(keep_going=lambda: self.take_lease(interval))
        counts = {step: len(items) for step, items in done.items()}
        log.info("sweep done: %s", ", ".join(f"{n} {step}" for step, n in counts.items()))
        return done


def summary(done: dict[str, list[str]]) -> str:
    """``3 expired, 0 tiers, ...``: a sweep's counts per step."""
    return ", ".join(f"{len(items)} {step}" for step, items in done.items())
