"""Artifact metadata shared by every upload path: validation, blob keys, Content-Disposition.

Also ``Core``: what the upload flows (direct uploads, resumable sessions) need of the
artifact service, so they depend on this small surface rather than on the service module.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol
from urllib.parse import quote

import msgspec

from fleet_artifacts.idempotency import Idempotency
from fleet_artifacts.models import ArtifactKind, ArtifactOut, Pointer
from fleet_artifacts.ports import BlobStore, PointerStore, StoredPointer
from fleet_artifacts.validation import check_content_type, check_file_name, check_id, check_tags


class UploadMeta(msgspec.Struct, frozen=True, kw_only=True):
    """Validated metadata of an upload; build it with ``UploadMeta.checked``."""

    kind: ArtifactKind
    file_name: str
    content_type: str
    run_id: str | None = None
    tags: dict[str, str] = msgspec.field(default_factory=dict)

    @classmethod
    def checked(
        cls,
        *,
        kind: ArtifactKind,
        file_name: str,
        content_type: str | None,
        run_id: str | None,
        tags: dict[str, str],
    ) -> UploadMeta:
        """Validate every field; raise InvalidInput on the first bad one."""
        return cls(
            kind=kind,
            file_name=check_file_name(file_name),
            content_type=check_content_type(content_type or "application/octet-stream"),
            run_id=None if run_id is None else check_id(run_id, "runId"),
            tags=check_tags(tags),
        )


def blob_key(product_id: str, job_id: str, artifact_id: str, kind: ArtifactKind) -> str:
    """Return ``fleet/<productId>/<jobId>/<id>-<kind>``."""
    return f"fleet/{product_id}/{job_id}/{artifact_id}-{kind.value}"


def content_disposition(file_name: str, disposition: str = "attachment") -> str:
    """Build a Content-Disposition value safe for quotes and non-ASCII (RFC 6266).

    The quoted ``filename`` is an ASCII fallback (quotes, backslashes, percent
    signs and non-ASCII become ``_``); ``filename*`` carries the exact name.
    """
    fallback = "".join(ch if " " <= ch <= "~" and ch not in '"\\%' else "_" for ch in file_name)
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{quote(file_name, safe='')}"


def parse_blob_key(key: str) -> tuple[str, str] | None:
    """The (job id, artifact id) a key made by ``blob_key`` names; None for any other key."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] != "fleet":
        return None
    artifact_id = parts[3].rpartition("-")[0]
    return (parts[2], artifact_id) if artifact_id else None


def absolute_url(url: str, base_url: str) -> str:
    """A store that serves its own URLs (the local backend) signs root-relative ones: anchor them."""
    return base_url.rstrip("/") + url if url.startswith("/") else url


class Core(Protocol):
    """The artifact service as the upload flows see it."""

    blobs: BlobStore
    pointers: PointerStore
    idempotency: Idempotency
    max_upload_bytes: int
    now: Callable[[], datetime]
    new_id: Callable[[], str]

    def check_size(self, announced: int) -> None:
        """Refuse a size over the upload limit."""

    async def lookup(self, product_id: str, artifact_id: str, job_id: str | None) -> StoredPointer:
        """The caller's pointer in any state (NotFound otherwise)."""

    async def present(
        self, pointer: Pointer, *, disposition: str = "attachment", base_url: str = ""
    ) -> ArtifactOut:
        """The pointer with a fresh download URL."""

    async def commit_pointer(self, pointer: Pointer, *, concurrent_ok: bool = False) -> None:
        """Create the pointer of a committed blob, or delete the blob if that fails."""
