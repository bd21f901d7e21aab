"""Side records: service state the pointer store keeps beside the pointers, in a job's partition.

Idempotency keys, resumable upload sessions, a job's retention, the sweeper's lease. A record
is read back only as its own kind; it lives until ``expires_at`` (Cosmos: per-item ttl).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Generic, TypeVar

import msgspec

from fleet_artifacts.core.models import ArtifactKind, CheckedMeta

# A side record kept until this is kept for good (stores keep no expiry for it: no Cosmos ttl).
NEVER = datetime(9999, 12, 31, tzinfo=UTC)


class SideRecord(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Service state kept beside the pointers, in the job's partition, until ``expires_at``.

    Subclasses are the record kinds; a record is read back only as its own kind.
    """

    id: str
    job_id: str
    expires_at: datetime


class JobPolicy(SideRecord, frozen=True, kw_only=True, rename="camel"):
    """A product's retention for one job (id ``retention.<productId>``), kept ``NEVER`` to expire."""

    product_id: str
    retention_days: int | None = None
    keep_forever: bool = False
    updated_at: datetime

    @staticmethod
    def record_id(product_id: str) -> str:
        """The record id of a product's policy in a job (jobs are shared by products)."""
        return f"retention.{product_id}"


class SweepLease(SideRecord, frozen=True, kw_only=True, rename="camel"):
    """Which replica runs the background sweep until ``expires_at`` (one record for the service)."""

    holder: str
    acquired_at: datetime


class IdempotencyRecord(SideRecord, frozen=True, kw_only=True, rename="camel"):
    """Which artifact a create with an Idempotency-Key made, kept for the retention window.

    ``artifact_id`` is None while the first request holding the key is still at work.
    """

    fingerprint: str
    artifact_id: str | None = None
    claimed_at: datetime


class SessionChunk(msgspec.Struct, frozen=True, array_like=True):
    """One received range of a resumable upload and the blocks that hold it."""

    start: int
    length: int
    sha256: str
    block_ids: list[str]


class UploadSession(SideRecord, frozen=True, kw_only=True, rename="camel"):
    """A resumable upload: its artifact-to-be and the byte ranges received so far."""

    product_id: str
    artifact_id: str
    blob_key: str
    kind: ArtifactKind
    file_name: str
    content_type: str
    run_id: str | None = None
    tags: dict[str, str] = msgspec.field(default_factory=dict)
    retention_days: int | None = None  # resolved at open: the artifact's retention
    keep_forever: bool = False
    total_bytes: int | None = None
    created_at: datetime
    chunks: list[SessionChunk] = msgspec.field(default_factory=list)
    completed: bool = False

    def meta(self) -> CheckedMeta:
        """The metadata the session's artifact will carry (checked when the session was opened)."""
        return CheckedMeta(**{name: getattr(self, name) for name in CheckedMeta.__struct_fields__})


class ShareLink(SideRecord, frozen=True, kw_only=True, rename="camel"):
    """A share link of one artifact, until ``expires_at``; its id is the sha256 of the link's secret.

    The secret itself (in the URL) is never stored, so the store cannot give a link away.
    """

    product_id: str
    artifact_id: str
    disposition: str
    created_at: datetime


R = TypeVar("R", bound=SideRecord)


class StoredRecord(msgspec.Struct, Generic[R], frozen=True):
    """A side record with the etag for compare-and-swap."""

    record: R
    etag: str
