"""The kernel: the one owner of each protocol every artifact flow shares.

    lookup / visible   find the caller's pointer (another product's, or an expired one, answers as missing)
    present / sign     attach a freshly signed, short-lived download URL (when the bytes are online)
    commit_pointer     the pointer of a committed blob, or no blob at all
    replace            the one way a pointer changes: by etag, blob index tags kept in step
    event              the journal event each of those writes with the pointer (``core.journal``)
    retire             the one way an artifact (or an unfinished upload) is removed
    idempotency        the one idempotent-create helper (``Idempotency.run``)

Write order is blob first, pointer second; a failed pointer write deletes the
blob, so no pointer ever names missing bytes and no committed blob is left
without a pointer. Retiring marks the pointer DELETING (by etag) before touching
the blob, so a crash half-way leaves a pointer that is hidden from readers and
that a repeated DELETE or the next sweep finishes (the claim dates it now).

URLs a store signs are returned as the store made them: a store that serves its
own URLs (the local backend) makes root-relative ones, which ``routes/`` anchors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

import msgspec

from fleet_artifacts.core.audit import on_artifact, urls_signed
from fleet_artifacts.core.clock import new_id, utcnow
from fleet_artifacts.core.errors import (
    Archived,
    Conflict,
    InvalidInput,
    JobSealed,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
)
from fleet_artifacts.core.idempotency import Idempotency
from fleet_artifacts.core.journal import Event, event_of
from fleet_artifacts.core.keys import content_disposition, signed_disposition, staging_key
from fleet_artifacts.core.models import ArtifactOut, ArtifactStatus, BlobTier, Pointer
from fleet_artifacts.core.ports import BlobStore, PointerStore, StoredPointer

log = logging.getLogger(__name__)
_SIGNED_KEPT = 10_000  # read URLs kept for the current second, at most
_Key = tuple[str, int, str, str, str]  # a read URL's blob key, expiry, disposition, type, file name
_Url = tuple[str, str]  # a read URL and the disposition it was signed with
_SHAPES_KEPT = 4_096  # answers' shapes kept by pointer version, at most (a few MiB)


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """The service's bounds and lifetimes (from settings; defaults as documented there)."""

    max_upload_bytes: int = 10 * 1024**3
    max_envelope_bytes: int = 8 * 1024 * 1024
    sas_ttl: timedelta = timedelta(seconds=900)
    max_sas_ttl: timedelta = timedelta(days=1)  # the longest a caller may ask for (expiresIn)
    upload_url_ttl: timedelta = timedelta(hours=1)
    verify_max_bytes: int = 64 * 1024 * 1024
    idempotency_retention: timedelta = timedelta(days=1)
    session_ttl: timedelta = timedelta(days=1)
    default_retention_days: int = 30
    max_retention_days: int = 365
    soft_delete: timedelta = timedelta(0)  # 0: a delete removes at once
    event_retention: timedelta = timedelta(days=7)  # how long the event feed keeps an event
    # Automatic tier moves by age (None: off), applied by the sweeper.
    cool_after_days: int | None = None
    cold_after_days: int | None = None
    archive_after_days: int | None = None


class SignedUrl(msgspec.Struct, frozen=True, kw_only=True):
    """A read URL for one blob, as the store signed it."""

    url: str
    expires_at: datetime
    disposition: str  # as signed: "attachment" where "inline" was asked for an active type


def version(etag: str) -> str:
    """A store's etag as an HTTP entity tag (quoted once, whatever quoting the store used)."""
    return '"' + etag.strip('"') + '"'


_OFFLINE = {
    ArtifactStatus.ARCHIVED: "archived: its bytes are offline; POST .../restore to read them again",
    ArtifactStatus.RESTORING: "being restored from the Archive tier (hours on Azure); fetch it again later",
}


class Kernel:
    """The stores, the limits, the clock, and the protocols shared by every flow."""

    def __init__(
        self,
        blobs: BlobStore,
        pointers: PointerStore,
        *,
        limits: Limits | None = None,
        clock: Callable[[], datetime] = utcnow,
        new_id: Callable[[], str] = new_id,
    ) -> None:
        """Wire the kernel to its two stores."""
        self.blobs = blobs
        self.pointers = pointers
        self.limits = limits or Limits()
        self.now = clock
        self.new_id = new_id
        self.idempotency = Idempotency(pointers, retention=self.limits.idempotency_retention, clock=clock)
        # The read URLs signed in the current second (``_url``): the same page asked for again in
        # that second gets the same bytes a new signature would give, without signing again.
        self._signed: dict[_Key, _Url] = {}
        self._signed_in = 0
        # Each pointer version's answer without its URL (``_shape``): a stored version never changes.
        self._shapes: dict[tuple[str, str, str], ArtifactOut] = {}

    def check_size(self, announced: int) -> None:
        """Refuse an upload whose announced length is over the limit before reading it."""
        if announced > self.limits.max_upload_bytes:
            raise PayloadTooLarge(self.limits.max_upload_bytes)

    @staticmethod
    def blob_tags(pointer: Pointer) -> dict[str, str]:
        """The index tags of an artifact's blob: whose it is, and whether it is kept.

        ``keep`` is always written ("true" or "false") because an Azure lifecycle rule can
        only match tags (``==``), not exclude them: ``lifecycle-policy`` deletes keep == false.
        """
        return {
            "productId": pointer.product_id,
            "jobId": pointer.job_id,
            "kind": pointer.kind.value,
            "keep": "true" if pointer.keep_forever else "false",
        }

    async def check_open(self, product_id: str, job_id: str) -> None:
        """Refuse to start a new artifact in a sealed job (JobSealed) before a byte is read.

        An early answer only: the store checks the seal again, atomically, when the pointer commits.
        """
        state = await self.pointers.job(product_id, job_id)
        if state is not None and state.sealed:
            raise JobSealed(f"job {job_id} is sealed: it takes no new artifacts")

    async def lookup(self, product_id: str, artifact_id: str, job_id: str | None) -> StoredPointer:
        """The caller's pointer in any state: a point read with ``job_id``, else by id alone."""
        # Without a job id this is a cross-partition query on Cosmos.
        found = (
            await self.pointers.get(job_id, artifact_id)
            if job_id is not None
            else await self.pointers.find(artifact_id)
        )
        # Another product's artifact answers exactly like a missing one.
        if found is None or found.pointer.product_id != product_id:
            raise NotFound("artifact not found")
        return found

    async def visible(self, product_id: str, artifact_id: str, job_id: str | None = None) -> StoredPointer:
        """The caller's pointer as a reader sees it: ACTIVE, ARCHIVED or RESTORING, and not expired.

        A RESTORING one is checked against its blob first, so it reads ACTIVE once rehydrated.
        """
        stored = await self.lookup(product_id, artifact_id, job_id)
        if not stored.pointer.visible_at(self.now()):
            raise NotFound("artifact not found")
        if stored.pointer.status is ArtifactStatus.RESTORING:
            stored = await self.settle_restore(stored)
        return stored

    async def active(self, product_id: str, artifact_id: str, job_id: str | None = None) -> StoredPointer:
        """The caller's readable pointer: NotFound if not visible, Archived if its bytes are offline."""
        stored = await self.visible(product_id, artifact_id, job_id)
        if stored.pointer.status is not ArtifactStatus.ACTIVE:
            raise Archived(_OFFLINE[stored.pointer.status])
        return stored

    async def settle_restore(self, stored: StoredPointer) -> StoredPointer:
        """A RESTORING pointer whose blob is readable again becomes ACTIVE (by etag).

        One whose blob is still in Archive without a rehydration under way (a failed
        restore call) gets its rehydration asked for again.
        """
        pointer = stored.pointer
        info = await self.blobs.info(pointer.blob_key)
        if info is None:
            return stored  # the bytes are gone: a concurrent retire is finishing
        if info.tier is BlobTier.ARCHIVE and not info.rehydrating:
            await self.blobs.set_tier(pointer.blob_key, BlobTier.HOT)
            info = await self.blobs.info(pointer.blob_key)
            if info is None:
                return stored
        if info.tier is BlobTier.ARCHIVE or info.rehydrating:
            return stored
        try:
            readable = msgspec.structs.replace(
                pointer, status=ArtifactStatus.ACTIVE, tier=info.tier, restored_at=self.now()
            )
            return await self.replace(stored, readable)
        except PreconditionFailed:
            found = await self.pointers.get(pointer.job_id, pointer.id)
            return found or stored

    def lifetime(self, expires_in: int | None) -> timedelta:
        """How long a read URL lives: ``expires_in`` seconds (1 to ``max_sas_ttl``), else ``sas_ttl``."""
        if expires_in is None:
            return self.limits.sas_ttl
        longest = int(self.limits.max_sas_ttl.total_seconds())
        if not 1 <= expires_in <= longest:
            raise InvalidInput(f"expiresIn must be between 1 and {longest} seconds", field="expiresIn")
        return timedelta(seconds=expires_in)

    async def sign(
        self, pointer: Pointer, *, disposition: str = "attachment", expires_in: int | None = None
    ) -> SignedUrl:
        """Sign a fresh read URL for a pointer's blob, for ``expires_in`` seconds (default ``sas_ttl``).

        ``inline`` is granted only to types a browser shows without running them
        (``keys.inline_safe``); any other type is signed as an attachment, since the
        storage origin that serves the URL can add no Content-Security-Policy.
        """
        now = self.now()
        expires_at = now + self.lifetime(expires_in)
        key, found = self._kept(pointer, disposition, int(now.timestamp()), int(expires_at.timestamp()))
        url, signed_as = found or await self._signing(pointer, disposition, expires_at, key)
        urls_signed([pointer], "r", expires_at)
        return SignedUrl(url=url, expires_at=expires_at, disposition=signed_as)

    def _kept(self, pointer: Pointer, disposition: str, second: int, until: int) -> tuple[_Key, _Url | None]:
        """The key of a read URL of ``pointer``'s blob, and the URL if it was signed this second.

        A signature covers the key, the expiry in whole seconds (``until``) and the override
        headers, so within one second the same inputs give the same URL: it is kept for that
        second. Dashboards ask for the same pages many times a second, and on Azure a signature
        costs more than the rest of a page's item. ``second`` and ``until`` come in as ints so
        a page converts its clock once, not once per item; a URL found costs no await.
        """
        if second != self._signed_in or len(self._signed) >= _SIGNED_KEPT:
            self._signed.clear()
            self._signed_in = second
        key = (pointer.blob_key, until, disposition, pointer.content_type, pointer.file_name)
        return key, self._signed.get(key)

    async def _signing(self, pointer: Pointer, disposition: str, expires_at: datetime, key: _Key) -> _Url:
        """Sign what ``_kept`` did not find (and keep it): the URL and the disposition signed."""
        signed_as = signed_disposition(pointer.content_type, disposition)
        url = await self.blobs.sign_read_url(
            pointer.blob_key,
            expires_at=expires_at,
            content_disposition=content_disposition(pointer.file_name, signed_as),
            content_type=pointer.content_type,
        )
        self._signed[key] = (url, signed_as)
        return url, signed_as

    async def present(
        self, stored: StoredPointer, *, disposition: str = "attachment", expires_in: int | None = None
    ) -> ArtifactOut:
        """A pointer as served: with a freshly signed, short-lived download URL if its bytes are online."""
        return (await self.present_all([stored], disposition=disposition, expires_in=expires_in))[0]

    async def present_all(
        self, items: list[StoredPointer], *, disposition: str = "attachment", expires_in: int | None = None
    ) -> list[ArtifactOut]:
        """Pointers as served (``present``), their URLs valid until one time, audited in one record.

        A page of a hundred pays for the clock, the expiry and the audit record once.
        """
        now = self.now()
        expires_at = now + self.lifetime(expires_in)
        second, until = int(now.timestamp()), int(expires_at.timestamp())
        out: list[ArtifactOut] = []
        signed_for: list[Pointer] = []
        for stored in items:
            pointer = stored.pointer
            shape = self._shape(stored)
            if pointer.status is not ArtifactStatus.ACTIVE:
                out.append(msgspec.structs.replace(shape))  # a copy: routes may anchor URLs in place
                continue
            key, found = self._kept(pointer, disposition, second, until)
            url, signed_as = found or await self._signing(pointer, disposition, expires_at, key)
            signed_for.append(pointer)
            out.append(
                msgspec.structs.replace(
                    shape,
                    download_url=url,
                    download_url_expires_at=expires_at,
                    download_disposition=signed_as,
                )
            )
        urls_signed(signed_for, "r", expires_at)
        return out

    def _shape(self, stored: StoredPointer) -> ArtifactOut:
        """A pointer version's answer with no URL yet (``reason`` set if its bytes are offline).

        Building it from two dozen fields was the largest cost of a page's item, and it differs
        from one request to the next only by its URL. At most ``_SHAPES_KEPT``, then all dropped.
        """
        pointer = stored.pointer
        key = (pointer.job_id, pointer.id, stored.etag)
        shape = self._shapes.get(key)
        if shape is None:
            if len(self._shapes) >= _SHAPES_KEPT:
                self._shapes.clear()
            offline = pointer.status is not ArtifactStatus.ACTIVE
            shape = self._shapes[key] = ArtifactOut(
                **msgspec.structs.asdict(pointer),
                etag=version(stored.etag),
                download_url=None,
                download_url_expires_at=None,
                reason=_OFFLINE.get(pointer.status, pointer.status.value.lower()) if offline else None,
            )
        return shape

    async def commit_pointer(self, pointer: Pointer, *, concurrent_ok: bool = False) -> StoredPointer:
        """Create the pointer of a committed blob; if that fails, delete the blob (no orphan).

        With ``concurrent_ok``, an existing pointer of the same id (a concurrent request
        made it) counts as success and the blob, which is also its blob, stays.
        """
        try:
            etag = await self.pointers.create(pointer, event=self.event(None, pointer))
            return StoredPointer(pointer, etag)
        except Conflict:
            if concurrent_ok:
                found = await self.pointers.get(pointer.job_id, pointer.id)
                if found is not None:
                    return found
            await self._drop_orphan(pointer.blob_key)
            raise
        except BaseException:
            await self._drop_orphan(pointer.blob_key)  # then let the first error speak
            raise

    def event(self, old: Pointer | None, new: Pointer | None) -> Event | None:
        """The journal event of a pointer change, dated now (``journal.event_of``)."""
        return event_of(old, new, at=self.now(), event_id=self.new_id())

    async def _drop_orphan(self, key: str) -> None:
        try:
            await self.blobs.delete(key)
        except Exception:
            log.exception("orphan blob %s could not be removed after a failed pointer write", key)

    async def replace(self, stored: StoredPointer, new: Pointer) -> StoredPointer:
        """Change a pointer by etag (PreconditionFailed, NotFound), its blob's ``keep`` tag in step.

        The tag moves on the safe side of the pointer: to ``true`` before it, to ``false`` after
        it, so an Azure lifecycle rule that deletes ``keep == false`` never sees a kept artifact
        so tagged, whichever write fails.
        """
        old = stored.pointer
        online = new.status is not ArtifactStatus.UPLOADING  # an upload's blob gets its tags at finalize
        if online and new.keep_forever and not old.keep_forever:
            await self._tag(new)
        etag = await self.pointers.replace(new, etag=stored.etag, event=self.event(old, new))
        if online and old.keep_forever and not new.keep_forever:
            await self._tag(new)
        return StoredPointer(new, etag)

    async def _tag(self, pointer: Pointer) -> None:
        try:
            await self.blobs.set_tags(pointer.blob_key, self.blob_tags(pointer))
        except NotFound:
            log.warning("artifact %s/%s has no blob to tag", pointer.job_id, pointer.id)

    async def retire(self, stored: StoredPointer) -> bool:
        """Remove an artifact or an unfinished upload: claim it, then blob, staged blocks, pointer.

        The claim (status -> DELETING by etag, dated now so the sweeper finishes it if this
        call dies) comes first, so a concurrent writer that changed the pointer (a finalize
        that made it ACTIVE, another delete) wins and nothing is touched: False then, and the
        caller looks again. A pointer already DELETING is finished without a new claim.
        Returns True once this call removed the pointer.
        """
        pointer = stored.pointer
        if pointer.status is not ArtifactStatus.DELETING:
            claimed = msgspec.structs.replace(pointer, status=ArtifactStatus.DELETING, expires_at=self.now())
            try:
                await self.pointers.replace(claimed, etag=stored.etag, event=self.event(pointer, claimed))
            except (PreconditionFailed, NotFound):
                return False
        if pointer.status is ArtifactStatus.UPLOADING or pointer.status is ArtifactStatus.DELETING:
            # An unfinished upload's write URL may still be streaming into its staging blob: it
            # must not land again. (An artifact's staging blob went at finalize.)
            staged = staging_key(pointer.blob_key)
            await self.blobs.seal(staged)
            await self.blobs.delete(staged)
            await self.blobs.discard_uncommitted(staged)
        await self.blobs.delete(pointer.blob_key)
        await self.blobs.discard_uncommitted(pointer.blob_key)
        removed = await self.pointers.delete(pointer.job_id, pointer.id)
        if removed:
            on_artifact("artifact.removed", pointer)
        return removed
