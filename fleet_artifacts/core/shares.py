"""Share links: the service's own URL, answering with a fresh short-lived SAS while the link lives.

So a link pasted into a pull request works days later, while no SAS ever lives long.

The link is ``/s/<job>.<secret>``: the job (base64url) makes the lookup a point read, the
secret (192 random bits) is the capability. Only the sha256 of the secret is stored, as the
record's id. A link dies when it expires, is revoked, or its artifact is deleted or expires.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from datetime import timedelta

import msgspec

from fleet_artifacts.core.audit import audit, on_artifact
from fleet_artifacts.core.errors import InvalidInput, NotFound
from fleet_artifacts.core.kernel import Kernel, SignedUrl
from fleet_artifacts.core.ports import ShareLink
from fleet_artifacts.core.validation import check_id

_SECRET = re.compile(r"[A-Za-z0-9_-]{32}")
_RECORD = re.compile(r"[0-9a-f]{64}")


class ShareMade(msgspec.Struct, frozen=True):
    """A new link: its record, and the token of its URL (``/s/<token>``), shown this once."""

    link: ShareLink
    token: str


def _job_part(job_id: str) -> str:
    return base64.urlsafe_b64encode(job_id.encode()).decode().rstrip("=")


def _job_of(part: str) -> str:
    try:
        job_id = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)).decode()
        return check_id(job_id, "jobId")
    except (binascii.Error, UnicodeDecodeError, ValueError, InvalidInput):
        raise NotFound("share link not found") from None


def share_id(link: ShareLink) -> str:
    """The link's public id (for listing and revoking): its job and record id, never the secret."""
    return f"{_job_part(link.job_id)}.{link.id}"


class Shares:
    """Create, list, revoke and follow share links."""

    def __init__(self, kernel: Kernel, *, max_lifetime: timedelta) -> None:
        """Links live at most ``max_lifetime``."""
        self.kernel = kernel
        self.max_lifetime = max_lifetime

    async def create(
        self, product_id: str, artifact_id: str, job_id: str | None, *, expires_in: int, disposition: str
    ) -> ShareMade:
        """A new link to a visible artifact, for ``expires_in`` seconds (1 to the maximum)."""
        limit = int(self.max_lifetime.total_seconds())
        if not 1 <= expires_in <= limit:
            raise InvalidInput(f"expiresIn must be between 1 and {limit} seconds", field="expiresIn")
        stored = await self.kernel.visible(product_id, artifact_id, job_id)
        pointer = stored.pointer
        secret = secrets.token_urlsafe(24)  # 192 bits, 32 characters
        now = self.kernel.now()
        link = ShareLink(
            id=hashlib.sha256(secret.encode()).hexdigest(),
            job_id=pointer.job_id,
            expires_at=now + timedelta(seconds=expires_in),
            product_id=product_id,
            artifact_id=pointer.id,
            disposition=disposition,
            created_at=now,
        )
        await self.kernel.pointers.put_record(link, etag=None)
        on_artifact("share.created", pointer, share=share_id(link), expiresAt=link.expires_at.isoformat())
        return ShareMade(link, f"{_job_part(pointer.job_id)}.{secret}")

    async def list(self, product_id: str, artifact_id: str, job_id: str | None) -> list[ShareLink]:
        """The live links of a visible artifact, newest first."""
        pointer = (await self.kernel.visible(product_id, artifact_id, job_id)).pointer
        now = self.kernel.now()
        links = [
            stored.record
            for stored in await self.kernel.pointers.records(pointer.job_id, ShareLink)
            if stored.record.artifact_id == pointer.id
            and stored.record.product_id == product_id
            and stored.record.expires_at > now
        ]
        return sorted(links, key=lambda link: link.created_at, reverse=True)

    async def revoke(self, product_id: str, public_id: str) -> None:
        """Revoke a link at once; NotFound if unknown, expired, revoked already, or another product's."""
        part, _, record_id = public_id.partition(".")
        if not _RECORD.fullmatch(record_id):
            raise NotFound("share link not found")
        job_id = _job_of(part)
        stored = await self.kernel.pointers.get_record(job_id, record_id, ShareLink)
        if stored is None or stored.record.product_id != product_id:
            raise NotFound("share link not found")
        await self.kernel.pointers.delete_record(job_id, record_id, etag=stored.etag)
        audit("share.revoked", product=product_id, artifactId=stored.record.artifact_id, share=public_id)

    async def follow(self, token: str) -> tuple[ShareLink, SignedUrl]:
        """A fresh short-lived SAS for a link's artifact; NotFound for any link that is not live.

        Archived is what the artifact's own content route would say (409 until restored).
        """
        part, _, secret = token.partition(".")
        if not _SECRET.fullmatch(secret):
            raise NotFound("share link not found")
        job_id = _job_of(part)
        record_id = hashlib.sha256(secret.encode()).hexdigest()
        stored = await self.kernel.pointers.get_record(job_id, record_id, ShareLink)
        if stored is None or stored.record.expires_at <= self.kernel.now():
            raise NotFound("share link not found")
        link = stored.record
        try:
            pointer = (await self.kernel.active(link.product_id, link.artifact_id, link.job_id)).pointer
        except NotFound:
            raise NotFound("share link not found: its artifact is gone") from None
        audit("share.used", product=link.product_id, artifactId=link.artifact_id, share=share_id(link))
        return link, await self.kernel.sign(pointer, disposition=link.disposition)
