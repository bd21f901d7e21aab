"""Changing an artifact after it was made: retention and tags, tiers, undelete.

    update     PATCH: expiresAt / retentionDays / keepForever / tags, guarded by the pointer's etag
    archive    move the blob to Cool, Cold or Archive (Archive: ARCHIVED, no download URL)
    restore    rehydrate an archived blob to Hot: RESTORING until readable, then ACTIVE
    undelete   bring a DELETED artifact back within the soft-delete window

Every change is a compare-and-swap through ``Kernel.replace``. For a tier move the
pointer changes first, so no download URL is signed for bytes going offline; a
crash before the blob moves leaves a pointer that a repeat (or a restore) mends.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

import msgspec

from fleet_artifacts.core.errors import Conflict, InvalidInput, NotFound, PreconditionFailed
from fleet_artifacts.core.kernel import Kernel, version
from fleet_artifacts.core.models import (
    ArtifactOut,
    ArtifactPatch,
    ArtifactStatus,
    BlobTier,
    Pointer,
)
from fleet_artifacts.core.ports import StoredPointer
from fleet_artifacts.core.retention import Retention, check_retention
from fleet_artifacts.core.validation import check_tags

log = logging.getLogger(__name__)
_TIER_ORDER = (BlobTier.HOT, BlobTier.COOL, BlobTier.COLD, BlobTier.ARCHIVE)


def colder(tier: BlobTier, than: BlobTier) -> bool:
    """Whether ``tier`` is colder than ``than``."""
    return _TIER_ORDER.index(tier) > _TIER_ORDER.index(than)


def warmer_tiers(than: BlobTier) -> list[BlobTier]:
    """The tiers warmer than ``than``, hottest first."""
    return list(_TIER_ORDER[: _TIER_ORDER.index(than)])


def check_if_match(stored: StoredPointer, if_match: Sequence[str] | None) -> None:
    """PreconditionFailed unless ``if_match`` (entity tags, or ``*``) names the stored version."""
    if if_match is None or "*" in if_match:
        return
    if version(stored.etag) not in if_match:
        raise PreconditionFailed("the artifact changed since that ETag was read; fetch it again")


class Lifecycle:
    """Retention, tag, tier and undelete changes of one artifact of the caller's product."""

    def __init__(self, kernel: Kernel) -> None:
        """Change artifacts through ``kernel``."""
        self.kernel = kernel

    async def update(
        self,
        product_id: str,
        artifact_id: str,
        job_id: str | None,
        patch: ArtifactPatch,
        *,
        if_match: Sequence[str] | None = None,
    ) -> ArtifactOut:
        """Apply a PATCH to a visible artifact; with ``if_match``, only to that version (else 412).

        Without ``if_match`` a concurrent change is retried on the fresh version.
        """
        given = [
            name
            for name in ("expires_at", "retention_days", "keep_forever")
            if getattr(patch, name) is not msgspec.UNSET
        ]
        if len(given) > 1:
            raise InvalidInput("give one of expiresAt, retentionDays, keepForever", field="expiresAt")
        if isinstance(patch.retention_days, int):
            check_retention(patch.retention_days, False, max_days=self.kernel.limits.max_retention_days)
        tags = None if isinstance(patch.tags, msgspec.UnsetType) else check_tags(patch.tags)
        for _ in range(3 if if_match is None else 1):
            stored = await self.kernel.visible(product_id, artifact_id, job_id)
            check_if_match(stored, if_match)
            new = self._patched(stored.pointer, patch)
            if tags is not None:
                new = msgspec.structs.replace(new, tags=tags)
            if new == stored.pointer:
                return await self.kernel.present(stored)
            try:
                changed = await self.kernel.replace(stored, new)
            except NotFound:
                raise NotFound("artifact not found") from None
            except PreconditionFailed:
                if if_match is not None:
                    raise PreconditionFailed("the artifact changed meanwhile; fetch it again") from None
                continue
            return await self.kernel.present(changed)
        raise PreconditionFailed("the artifact is changing concurrently; retry")

    def _patched(self, pointer: Pointer, patch: ArtifactPatch) -> Pointer:
        limits = self.kernel.limits
        if isinstance(patch.expires_at, datetime):
            when = patch.expires_at
            if when.tzinfo is None:
                raise InvalidInput("expiresAt needs a time zone (e.g. Z)", field="expiresAt")
            latest = Retention(limits.max_retention_days).expires_at(pointer.created_at)
            assert latest is not None
            if when > latest:
                raise InvalidInput(
                    f"expiresAt is past the longest retention ({limits.max_retention_days} days from "
                    "createdAt); use keepForever",
                    field="expiresAt",
                )
            return msgspec.structs.replace(pointer, expires_at=when, keep_forever=False, retention_days=None)
        if isinstance(patch.retention_days, int):
            rule = Retention(patch.retention_days)
        elif patch.keep_forever is True:
            rule = Retention(None, keep_forever=True)
        elif patch.keep_forever is False:
            if not pointer.keep_forever:
                return pointer
            # Counted from now: ending keep-forever on an old artifact must not expire it on the spot.
            days = pointer.retention_days or limits.default_retention_days
            return msgspec.structs.replace(
                pointer,
                expires_at=self.kernel.now() + timedelta(days=days),
                keep_forever=False,
                retention_days=None,
            )
        else:
            return pointer
        return msgspec.structs.replace(
            pointer,
            expires_at=rule.expires_at(pointer.created_at),
            keep_forever=rule.keep_forever,
            retention_days=rule.days,
        )

    async def archive(
        self, product_id: str, artifact_id: str, job_id: str | None, tier: BlobTier
    ) -> ArtifactOut:
        """Move a visible artifact's blob to a colder ``tier`` (the same tier again: a no-op)."""
        for _ in range(3):
            stored = await self.kernel.visible(product_id, artifact_id, job_id)
            pointer = stored.pointer
            if pointer.status is not ArtifactStatus.ACTIVE:
                if pointer.status is ArtifactStatus.ARCHIVED and tier is BlobTier.ARCHIVE:
                    # A repeat mends a move that died between the pointer and the blob.
                    info = await self.kernel.blobs.info(pointer.blob_key)
                    if info is not None and info.tier is not BlobTier.ARCHIVE:
                        await self.kernel.blobs.set_tier(pointer.blob_key, BlobTier.ARCHIVE)
                    return await self.kernel.present(stored)
                raise Conflict(f"the artifact is {pointer.status.value.lower()}; restore it first")
            if pointer.tier is tier:
                return await self.kernel.present(stored)
            if not colder(tier, pointer.tier):
                raise Conflict(f"the artifact is in {pointer.tier.value} already; a move up is a restore")
            try:
                return await self.kernel.present(await move_tier(self.kernel, stored, tier))
            except PreconditionFailed:
                continue
        raise PreconditionFailed("the artifact is changing concurrently; retry")

    async def restore(
        self, product_id: str, artifact_id: str, job_id: str | None, *, high_priority: bool = False
    ) -> ArtifactOut:
        """Bring an artifact back to Hot: RESTORING (then ACTIVE once readable) from Archive.

        An ACTIVE one in Cool or Cold moves to Hot at once; one whose blob was archived behind
        the service's back (an Azure lifecycle rule) is restored like an archived one.
        """
        kernel = self.kernel
        for _ in range(3):
            stored = await kernel.visible(product_id, artifact_id, job_id)
            pointer = stored.pointer
            if pointer.status is ArtifactStatus.RESTORING:
                return await kernel.present(stored)
            if pointer.status is ArtifactStatus.ACTIVE:
                info = await kernel.blobs.info(pointer.blob_key)
                if info is None or (info.tier is BlobTier.HOT and pointer.tier is BlobTier.HOT):
                    return await kernel.present(stored)
                if info.tier is not BlobTier.ARCHIVE:  # Cool or Cold: online, one call away from Hot
                    warm = msgspec.structs.replace(pointer, tier=BlobTier.HOT, restored_at=kernel.now())
                    try:
                        moved = await kernel.replace(stored, warm)
                    except PreconditionFailed:
                        continue
                    await kernel.blobs.set_tier(pointer.blob_key, BlobTier.HOT)
                    return await kernel.present(moved)
            try:
                claimed = await kernel.replace(
                    stored,
                    msgspec.structs.replace(pointer, status=ArtifactStatus.RESTORING, tier=BlobTier.ARCHIVE),
                )
            except PreconditionFailed:
                continue
            await kernel.blobs.set_tier(pointer.blob_key, BlobTier.HOT, high_priority=high_priority)
            return await kernel.present(await kernel.settle_restore(claimed))
        raise PreconditionFailed("the artifact is changing concurrently; retry")

    async def undelete(self, product_id: str, artifact_id: str, job_id: str | None) -> ArtifactOut:
        """Bring a DELETED artifact back as it was; NotFound once purged (or never deleted)."""
        for _ in range(3):
            stored = await self.kernel.lookup(product_id, artifact_id, job_id)
            pointer = stored.pointer
            if pointer.status is not ArtifactStatus.DELETED or pointer.undelete_to is None:
                if pointer.visible_at(self.kernel.now()):
                    return await self.kernel.present(stored)  # a repeated undelete
                raise NotFound("no deleted artifact with this id")
            if pointer.expires_at is not None and pointer.expires_at <= self.kernel.now():
                raise NotFound("its soft-delete window ended: it is being purged")
            was = pointer.undelete_to.expires_at
            if was is not None and was <= self.kernel.now():
                raise Conflict("its retention ended while it was deleted; the sweeper removes it")
            back = msgspec.structs.replace(
                pointer,
                status=pointer.undelete_to.status,
                expires_at=pointer.undelete_to.expires_at,
                undelete_to=None,
            )
            try:
                restored = await self.kernel.replace(stored, back)
            except PreconditionFailed:
                continue
            return await self.kernel.present(restored)
        raise PreconditionFailed("the artifact is changing concurrently; retry")


async def move_tier(kernel: Kernel, stored: StoredPointer, tier: BlobTier) -> StoredPointer:
    """Move an ACTIVE artifact to a colder ``tier``: pointer first (by etag), then the blob.

    To Archive the pointer becomes ARCHIVED first, so no URL is signed for bytes going
    offline. PreconditionFailed if the pointer changed meanwhile (nothing moved then).
    """
    pointer = stored.pointer
    status = ArtifactStatus.ARCHIVED if tier is BlobTier.ARCHIVE else pointer.status
    moved = await kernel.replace(stored, msgspec.structs.replace(pointer, tier=tier, status=status))
    await kernel.blobs.set_tier(pointer.blob_key, tier)
    log.info("moved %s to %s", pointer.blob_key, tier.value)
    return moved
