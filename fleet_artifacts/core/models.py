"""Wire and stored shapes, one msgspec Struct each.

``Pointer`` is the stored document: it describes a blob and never carries the
blob's bytes. ``ArtifactOut`` is what clients receive: the pointer plus a
freshly signed, short-lived download URL.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

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
    """Life-cycle state of a pointer; only ACTIVE artifacts are served.

    UPLOADING: a direct upload was started and not finalized; ``expiresAt`` is its deadline.
    DELETING: a delete began (blob removal may be pending); finished by a repeated DELETE.
    """

    UPLOADING = "UPLOADING"
    ACTIVE = "ACTIVE"
    DELETING = "DELETING"


class ArtifactMeta(msgspec.Struct, kw_only=True, rename="camel"):
    """What a client says about an artifact on every create path; ``validation.checked_meta`` checks it."""

    kind: ArtifactKind
    file_name: str
    content_type: str | None = None  # left out: guessed from file_name
    run_id: str | None = None
    tags: dict[str, str] = msgspec.field(default_factory=dict)


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

    @classmethod
    def of(cls, meta: CheckedMeta, **fields: Any) -> Pointer:
        """A pointer carrying ``meta``; ``fields`` give the rest (id, productId, jobId, blobKey...)."""
        return cls(**msgspec.structs.asdict(meta), **fields)


class ArtifactOut(Pointer, kw_only=True, rename="camel"):
    """A pointer as served: with a download URL signed for this response."""

    download_url: str
    download_url_expires_at: datetime
    # How downloadUrl presents the file: "inline" only for types safe to view from the storage
    # origin (images, media, PDF, plain text, JSON); else "attachment", whatever was asked.
    download_disposition: str = "attachment"


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
    """What a job-wide delete removed."""

    deleted: int


class Health(msgspec.Struct):
    """Liveness answer."""

    status: str
