"""Wire and stored shapes, one msgspec Struct each.

``Pointer`` is the stored document: it describes a blob and never carries the
blob's bytes. ``ArtifactOut`` is what clients receive: the pointer plus a
freshly signed, short-lived download URL.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, Literal

import msgspec


class ArtifactKind(enum.StrEnum):
    """What a run produced; part of the blob key."""

    LOG = "log"
    COVERAGE = "coverage"
    SCREENSHOT = "screenshot"
    BUILD = "build"
    OTHER = "other"
    CODE = "code"
    DOCUMENT = "document"
    IMAGE = "image"
    DATA = "data"


class ArtifactStatus(enum.StrEnum):
    """Life-cycle state of a pointer (README: "Lifecycle" draws the transitions).

    UPLOADING: a direct upload was started and not finalized; ``expiresAt`` is its deadline.
    ACTIVE: readable; ``expiresAt`` is the end of its retention (null: kept forever).
    ARCHIVED: its blob is in the Archive tier: listed and fetchable, but with no download URL.
    RESTORING: rehydration from Archive was asked for and has not finished.
    DELETED: deleted within the soft-delete window: hidden, ``undelete`` brings it back;
        ``expiresAt`` is when the sweeper purges it.
    DELETING: removal began (blob removal may be pending); finished by a repeat or the sweeper.
    """

    UPLOADING = "UPLOADING"
    ACTIVE = "ACTIVE"
    ARCHIVED = "ARCHIVED"
    RESTORING = "RESTORING"
    DELETED = "DELETED"
    DELETING = "DELETING"


class BlobTier(enum.StrEnum):
    """Azure Blob access tiers (the local backend emulates them): colder is cheaper to keep, dearer to read.

    Archive is offline: its bytes cannot be read until rehydrated to an online tier.
    """

    HOT = "Hot"
    COOL = "Cool"
    COLD = "Cold"
    ARCHIVE = "Archive"


VISIBLE = frozenset({ArtifactStatus.ACTIVE, ArtifactStatus.ARCHIVED, ArtifactStatus.RESTORING})
"""The states a reader sees (until ``expiresAt``); the others answer as missing."""


class ArtifactMeta(msgspec.Struct, kw_only=True, rename="camel"):
    """What a client says about an artifact on every create path; ``validation.checked_meta`` checks it."""

    kind: ArtifactKind
    file_name: str
    content_type: str | None = None  # left out: guessed from file_name
    run_id: str | None = None
    tags: dict[str, str] = msgspec.field(default_factory=dict)
    # Retention (both left out: the job's retention, else the service default); the Kernel checks them.
    retention_days: int | None = None
    keep_forever: bool = False

    def request_fields(self) -> dict[str, Any]:
        """The fields as an idempotency fingerprint sees them: retention only when given.

        So keys recorded before retention existed still match a retry that gives none.
        """
        fields = msgspec.structs.asdict(self)
        if fields["retention_days"] is None:
            del fields["retention_days"]
        if not fields["keep_forever"]:
            del fields["keep_forever"]
        return fields


class CheckedMeta(ArtifactMeta, kw_only=True, rename="camel"):
    """Metadata whose every field was checked (``validation.checked_meta``); its content type is known."""

    content_type: str


class Pointer(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=False):
    """The stored pointer document (Cosmos item / SQLite row)."""

    id: str
    product_id: str
    job_id: str
    run_id: str | None = None
    kind: ArtifactKind
    file_name: str
    blob_key: str
    content_type: str
    size_bytes: int
    sha256: str | None  # None while UPLOADING: no bytes are known yet
    created_at: datetime
    expires_at: datetime | None = None
    tags: dict[str, str] = msgspec.field(default_factory=dict)
    status: ArtifactStatus = ArtifactStatus.ACTIVE
    # False when the sha256 is the client's claim (a large direct upload finalized without
    # verification) or there is none yet (UPLOADING); True when the service hashed the bytes itself.
    sha256_verified: bool = True
    keep_forever: bool = False  # then expiresAt is null and no sweep removes it
    # The retention it was given, in days from createdAt (null: kept forever, or dated explicitly).
    retention_days: int | None = None
    tier: BlobTier = BlobTier.HOT  # the blob's access tier, as this service last set it
    # When it was last restored from Archive: tier moves by age count from then (never restored:
    # from createdAt), so the next sweep does not archive again what a user just brought back.
    restored_at: datetime | None = None
    # While DELETED: the status and expiry an undelete brings back.
    undelete_to: UndeleteTo | None = None

    @classmethod
    def of(cls, meta: CheckedMeta, **fields: Any) -> Pointer:
        """A pointer carrying ``meta``; ``fields`` give the rest (id, productId, jobId, blobKey...)."""
        described = {name: getattr(meta, name) for name in _DESCRIPTIVE}
        return cls(**described, **fields)

    def visible_at(self, now: datetime) -> bool:
        """Whether a reader sees it at ``now``: in a visible state and not past ``expiresAt``."""
        return self.status in VISIBLE and (self.expires_at is None or self.expires_at > now)


class UndeleteTo(msgspec.Struct, kw_only=True, rename="camel"):
    """What a soft-deleted pointer was before its delete."""

    status: ArtifactStatus
    expires_at: datetime | None = None


# The fields a pointer copies from a client's metadata (retention is turned into expiresAt instead).
_DESCRIPTIVE = ("kind", "file_name", "content_type", "run_id", "tags")


class ArtifactOut(Pointer, kw_only=True, rename="camel"):
    """A pointer as served: with a download URL signed for this response (when its bytes are online)."""

    # Null when the bytes cannot be read now (ARCHIVED, RESTORING): ``reason`` says why.
    download_url: str | None
    download_url_expires_at: datetime | None
    # How downloadUrl presents the file: "inline" only for types safe to view from the storage
    # origin (images, media, PDF, plain text, JSON); else "attachment", whatever was asked.
    download_disposition: str = "attachment"
    reason: str | None = None
    etag: str  # this version of the pointer, as If-Match on a PATCH wants it (also the ETag header)


class ArtifactPage(msgspec.Struct, rename="camel"):
    """One page of a job's artifacts, newest first."""

    items: list[ArtifactOut]
    continuation_token: str | None = None


class UploadEnvelope(ArtifactMeta, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """JSON upload of a small payload, base64 in ``content``.

    Sent as ``application/vnd.fleet-artifact+json`` so a raw ``.json`` file
    (``application/json``) is never mistaken for an envelope.
    """

    content: str


class DirectUploadRequest(ArtifactMeta, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """Start a direct-to-blob upload: the client then writes the bytes with the returned URL."""

    size_bytes: int | None = None


class SessionOpen(ArtifactMeta, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """Open a resumable upload session for one artifact of a job."""

    job_id: str
    size_bytes: int | None = None


class UploadTicket(Pointer, kw_only=True, rename="camel"):
    """An UPLOADING pointer with the URL that may write its blob, once, until it expires."""

    upload_url: str
    upload_url_expires_at: datetime
    upload_headers: dict[str, str]  # send these with a single PUT of the whole file to upload_url


class FinalizeRequest(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """What the client claims it uploaded; checked against the committed blob."""

    size_bytes: int
    sha256: str | None = None  # left out: the service hashes the blob and records its digest
    verify: bool = False


class JobDeleted(msgspec.Struct):
    """What a job-wide delete removed (or, with a soft-delete window, marked DELETED)."""

    deleted: int


class ArtifactPatch(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """A change of one artifact's retention or tags; what is left out stays as it is.

    At most one of ``expiresAt``, ``retentionDays`` (counted from ``createdAt``) and
    ``keepForever``; a time in the past expires the artifact at once.
    """

    expires_at: datetime | msgspec.UnsetType = msgspec.UNSET
    retention_days: int | msgspec.UnsetType = msgspec.UNSET
    keep_forever: bool | msgspec.UnsetType = msgspec.UNSET
    tags: dict[str, str] | msgspec.UnsetType = msgspec.UNSET  # replaces all tags


class ArchiveRequest(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """Move an artifact's blob to a colder tier; Archive makes it ARCHIVED (offline)."""

    tier: Literal["Cool", "Cold", "Archive"] = "Archive"


class RestoreRequest(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """Rehydrate an archived artifact to Hot (High: faster on Azure, dearer)."""

    priority: Literal["Standard", "High"] = "Standard"


class JobRetention(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """A job's retention: the default for its later uploads; ``applyToExisting`` re-dates the rest.

    Give ``retentionDays`` or ``keepForever: true``.
    """

    retention_days: int | None = None
    keep_forever: bool = False
    apply_to_existing: bool = False


class JobRetentionOut(msgspec.Struct, kw_only=True, rename="camel"):
    """A job's retention as stored (``retentionDays`` null and ``keepForever`` false: the default)."""

    job_id: str
    retention_days: int | None
    keep_forever: bool
    default_retention_days: int  # the service's default, for comparison
    updated_at: datetime | None = None
    updated: int | None = None  # with applyToExisting: how many artifacts were re-dated


class ShareRequest(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """Make a share link: how long it lives, and how its downloads present the file."""

    expires_in: int  # seconds, 1 to MAX_SHARE_SECONDS
    disposition: Literal["attachment", "inline"] = "attachment"


class ShareOut(msgspec.Struct, kw_only=True, rename="camel"):
    """A share link; ``url`` only in the answer that made it (the service keeps no copy of it)."""

    id: str  # for listing and revoking (DELETE /fleet/shares/{id}); not the link's secret
    url: str | None = None
    artifact_id: str
    disposition: str
    created_at: datetime
    expires_at: datetime


class Health(msgspec.Struct):
    """Liveness answer."""

    status: str


class SessionOut(msgspec.Struct, kw_only=True, rename="camel"):
    """A resumable upload session's state, as clients see it (``/uploads/{id}``)."""

    id: str
    url: str
    job_id: str
    artifact_id: str
    kind: ArtifactKind
    file_name: str
    content_type: str
    run_id: str | None
    tags: dict[str, str]
    total_bytes: int | None
    received_bytes: int
    missing: list[tuple[int, int]]  # inclusive [first, last] ranges not received yet
    created_at: datetime
    expires_at: datetime
    completed: bool
