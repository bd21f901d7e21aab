"""``MemoryBlobStore``: the hosted blob port in dicts, with the semantics of ``LocalBlobStore``.

Access tiers and index tags are kept with each blob. Leaving Archive rehydrates at once, as on
the local backend and Azurite; ``MemoryBlobStore(..., instant_rehydration=False)`` keeps the blob
rehydrating, as Azure does for hours, until ``finish_rehydration(key)``. ``copy`` makes a new
Hot blob of the same bytes, and refuses an archived (or rehydrating) source, as the others do.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from urllib.parse import quote

from fleet_artifacts.core.errors import (
    Archived,
    Conflict,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    SignatureRejected,
)
from fleet_artifacts.core.hosted import HostedBlobStore, MayCommit
from fleet_artifacts.core.models import BlobTier
from fleet_artifacts.core.ports import (
    MAX_BLOCK_BYTES,
    MAX_STAGED_BLOCKS,
    BlobInfo,
    BlobWritten,
    StagedChunk,
    block_id_width,
    chunk_block_id,
)
from fleet_artifacts.stores.blob_tags import check_tags
from fleet_artifacts.stores.signing import UrlSigner
from tests.fakes.turns import Probe
from tests.fakes.turns import turn as _turn

_READ_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class _Blob:
    data: bytes
    content_type: str
    sha256: str
    modified: datetime
    tags: tuple[tuple[str, str], ...] = ()  # immutable: get_tags hands out a fresh dict
    tier: BlobTier = BlobTier.HOT
    rehydrating_to: BlobTier | None = None  # set only while tier is Archive


def _check_key(key: str) -> None:
    """Refuse the keys ``LocalBlobStore`` refuses, so the fake is no more lenient than it."""
    parts = key.split("/")
    odd_part = any(part in ("", ".", "..") for part in parts) or parts[-1].startswith(".tmp-")
    if not key or "\\" in key or "\0" in key or odd_part or key.endswith((".meta", ".sealed")):
        raise InvalidInput(f"invalid blob key {key[:80]!r}", field="key")


async def _gather(chunks: AsyncIterable[bytes], *, budget: int, limit: int, block: bool = False) -> bytes:
    """Collect a stream; PayloadTooLarge(limit) past ``budget`` (and past MAX_BLOCK_BYTES for a block)."""
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if block and size > MAX_BLOCK_BYTES:
            raise PayloadTooLarge(MAX_BLOCK_BYTES)
        if size > budget:
            raise PayloadTooLarge(limit)
        parts.append(bytes(chunk))
    return b"".join(parts)


class MemoryBlobStore(HostedBlobStore):
    """``HostedBlobStore`` in dicts, with the semantics of ``LocalBlobStore``.

    Staged blocks are kept per key under their raw ids, so ``stage_chunk`` (base64 ids)
    and ``stage_block`` (raw ids) share one namespace, as they share a staging directory
    on the local backend.
    """

    def __init__(self, signer: UrlSigner, *, url_prefix: str, instant_rehydration: bool = True) -> None:
        """Sign URLs with ``signer``, rooted at ``url_prefix`` (where the app serves them).

        ``instant_rehydration`` False: a blob set from Archive to an online tier stays
        rehydrating (unreadable) until ``finish_rehydration``, as on Azure.
        """
        self.signer = signer
        self.url_prefix = url_prefix
        self.instant_rehydration = instant_rehydration
        self._blobs: dict[str, _Blob] = {}
        self._staged: dict[str, dict[bytes, bytes]] = {}
        self._sealed: set[str] = set()
        self.probe = Probe()  # readiness: tell it to fail (``probe.error``) or to hang (``probe.stalled``)

    async def check(self) -> None:
        """Readiness: passes unless ``probe`` was told otherwise."""
        await self.probe.check()

    def _commit(
        self, key: str, data: bytes, content_type: str, tags: Mapping[str, str] | None = None
    ) -> BlobWritten:
        # A new blob starts Hot with the tags it was written with, as a Put Blob on Azure.
        sha256 = hashlib.sha256(data).hexdigest()
        stored_tags = tuple((tags or {}).items())
        self._blobs[key] = _Blob(data, content_type, sha256, datetime.now(UTC), stored_tags)
        return BlobWritten(size_bytes=len(data), sha256=sha256)

    def _committed(self, key: str) -> _Blob:
        blob = self._blobs.get(key)
        if blob is None:
            raise NotFound(f"blob {key}: not found")
        return blob

    def _still_staging(self, key: str, staging: dict[bytes, bytes]) -> None:
        # A commit or discard while the bytes streamed in dropped this staging area.
        if self._staged.get(key) is not staging:
            raise Conflict("the blob's staged blocks were committed or discarded during this upload")

    async def write(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        content_type: str,
        max_bytes: int,
        tags: Mapping[str, str] | None = None,
    ) -> BlobWritten:
        """Collect the stream, then commit it at once (nothing if it raises or crosses ``max_bytes``)."""
        _check_key(key)
        checked = check_tags(tags)
        data = await _gather(chunks, budget=max_bytes, limit=max_bytes)
        return self._commit(key, data, content_type, checked)

    async def read(self, key: str, *, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """Stream a committed blob (or a range of it) in 1 MiB pieces; NotFound, or Archived if offline."""
        _check_key(key)
        if offset < 0 or (length is not None and length < 0):
            raise ValueError("offset and length must not be negative")
        await _turn()
        blob = self._committed(key)
        if blob.tier is BlobTier.ARCHIVE:
            raise Archived(f"blob {key} is in the Archive tier: set an online tier to read it")
        end = len(blob.data) if length is None else min(len(blob.data), offset + length)
        for start in range(offset, end, _READ_BYTES):
            yield blob.data[start : min(end, start + _READ_BYTES)]

    async def info(self, key: str) -> BlobInfo | None:
        """Size, content type, digest and tier of a committed blob, or None."""
        _check_key(key)
        await _turn()
        blob = self._blobs.get(key)
        if blob is None:
            return None
        rehydrating = blob.rehydrating_to is not None
        return BlobInfo(len(blob.data), blob.content_type, blob.sha256, blob.tier, rehydrating)

    async def copy(self, source: str, target: str, *, tags: Mapping[str, str] | None = None) -> BlobInfo:
        """Copy the source's bytes, content type and digest to ``target`` (Hot, with ``tags``).

        NotFound if absent, Archived while offline (rehydrating too), as on the local backend.
        """
        _check_key(source)
        _check_key(target)
        checked = check_tags(tags)
        await _turn()
        blob = self._committed(source)
        if blob.tier is BlobTier.ARCHIVE:
            raise Archived(f"copy {source}: the blob is in the Archive tier")
        # A fresh blob: Hot, not rehydrating, its own tags and time; the bytes are shared (immutable).
        copied = _Blob(blob.data, blob.content_type, blob.sha256, datetime.now(UTC), tuple(checked.items()))
        self._blobs[target] = copied
        return BlobInfo(len(copied.data), copied.content_type, copied.sha256, copied.tier)

    async def set_tier(self, key: str, tier: BlobTier, *, high_priority: bool = False) -> None:
        """Move the blob to ``tier``; from Archive, rehydrate it (at once, or at ``finish_rehydration``)."""
        _check_key(key)
        await _turn()
        blob = self._committed(key)
        if blob.rehydrating_to is not None:
            if tier is not blob.rehydrating_to:  # the same target again only raises the priority on Azure
                raise Conflict(f"blob {key} is being rehydrated to {blob.rehydrating_to.value}")
            return
        if blob.tier is BlobTier.ARCHIVE and tier is not BlobTier.ARCHIVE and not self.instant_rehydration:
            self._blobs[key] = replace(blob, rehydrating_to=tier)
        else:
            self._blobs[key] = replace(blob, tier=tier)

    def finish_rehydration(self, key: str) -> None:
        """Complete a pending rehydration of ``key`` (what Azure does hours after ``set_tier``)."""
        blob = self._committed(key)
        if blob.rehydrating_to is None:
            raise ValueError(f"blob {key} is not rehydrating")
        self._blobs[key] = replace(blob, tier=blob.rehydrating_to, rehydrating_to=None)

    async def set_tags(self, key: str, tags: Mapping[str, str]) -> None:
        """Replace the blob's index tags (InvalidInput for a set Azure would refuse)."""
        _check_key(key)
        checked = check_tags(tags)
        await _turn()
        self._blobs[key] = replace(self._committed(key), tags=tuple(checked.items()))

    async def get_tags(self, key: str) -> dict[str, str]:
        """The blob's index tags (readable in every tier, as on Azure)."""
        _check_key(key)
        await _turn()
        return dict(self._committed(key).tags)

    async def delete(self, key: str) -> bool:
        """Delete a committed blob and its seal (its staged blocks stay, as on the local backend)."""
        _check_key(key)
        await _turn()
        self._sealed.discard(key)
        return self._blobs.pop(key, None) is not None

    async def committed(self, prefix: str) -> AsyncIterator[tuple[str, datetime]]:
        """Committed blobs under ``prefix`` (staged-only keys are not listed), in key order."""
        await _turn()
        for key, blob in sorted((k, b) for k, b in self._blobs.items() if k.startswith(prefix)):
            yield key, blob.modified

    async def stage_chunk(
        self, key: str, *, offset: int, nonce: str, chunks: AsyncIterable[bytes], max_bytes: int
    ) -> StagedChunk:
        """Stage a chunk as one block named by ``offset`` and ``nonce``."""
        _check_key(key)
        block_id = chunk_block_id(offset, nonce)
        staging = self._staged.setdefault(key, {})
        data = await _gather(chunks, budget=max_bytes, limit=max_bytes, block=True)
        self._still_staging(key, staging)
        staging[base64.b64decode(block_id)] = data
        return StagedChunk(
            block_ids=[block_id], size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest()
        )

    async def commit_chunks(
        self,
        key: str,
        block_ids: list[str],
        *,
        content_type: str,
        max_bytes: int,
        tags: Mapping[str, str] | None = None,
    ) -> BlobWritten:
        """Concatenate staged blocks in order into the blob, then drop all staged blocks of ``key``."""
        _check_key(key)
        checked = check_tags(tags)
        await _turn()
        try:
            raw_ids = [base64.b64decode(block_id, validate=True) for block_id in block_ids]
        except (binascii.Error, ValueError):
            raise InvalidInput("a block id is not base64") from None
        staging = self._staged.get(key, {})
        missing = [raw for raw in raw_ids if raw not in staging]
        if missing:
            raise Conflict(f"{len(missing)} staged block(s) of {key} are gone (discarded or committed)")
        data = b"".join(staging[raw] for raw in raw_ids)
        if len(data) > max_bytes:
            raise PayloadTooLarge(max_bytes)
        written = self._commit(key, data, content_type, checked)
        self._staged.pop(key, None)
        return written

    async def discard_uncommitted(self, key: str) -> None:
        """Drop every block staged for ``key``."""
        _check_key(key)
        await _turn()
        self._staged.pop(key, None)

    async def sweep_temporaries(self, *, older_than: datetime, dry_run: bool = False) -> list[str]:
        """Nothing to sweep: a write gathers its bytes in memory, which dies with the writer."""
        await _turn()
        return []

    async def sign_read_url(
        self, key: str, *, expires_at: datetime, content_disposition: str, content_type: str
    ) -> str:
        """Return a root-relative URL under ``url_prefix``, signed read-only."""
        _check_key(key)
        query = self.signer.sign(
            key, "r", expires_at=int(expires_at.timestamp()), rscd=content_disposition, rsct=content_type
        )
        return f"{self.url_prefix}{quote(key)}?{query}"

    async def sign_write_url(self, key: str, *, expires_at: datetime) -> str:
        """Return a root-relative URL under ``url_prefix``, signed create+write."""
        _check_key(key)
        query = self.signer.sign(key, "cw", expires_at=int(expires_at.timestamp()))
        return f"{self.url_prefix}{quote(key)}?{query}"

    def verify_url(self, key: str, needed: str, query: Mapping[str, str], *, now: float) -> dict[str, str]:
        """Check the key (InvalidInput), then the signature, permission and expiry (SignatureRejected)."""
        _check_key(key)
        return self.signer.verify(key, needed, query, now=now)

    async def stage_block(
        self, key: str, block_id: bytes, chunks: AsyncIterable[bytes], *, limit: int, declared: int | None
    ) -> None:
        """Put Block: stage ``chunks`` as ``block_id``, replacing an earlier block of that id."""
        _check_key(key)
        if declared is not None and declared > MAX_BLOCK_BYTES:
            raise PayloadTooLarge(MAX_BLOCK_BYTES)
        await _turn()
        staging = self._staged.setdefault(key, {})
        if any(block_id_width(len(other)) != block_id_width(len(block_id)) for other in staging):
            raise InvalidInput("the block ids of a blob must all have the same length", field="blockid")
        if block_id not in staging and len(staging) >= MAX_STAGED_BLOCKS:
            raise Conflict(f"a blob holds at most {MAX_STAGED_BLOCKS} uncommitted blocks")
        budget = limit - sum(len(data) for other, data in staging.items() if other != block_id)
        if declared is not None and declared > budget:
            raise PayloadTooLarge(limit)
        data = await _gather(chunks, budget=budget, limit=limit, block=True)
        self._still_staging(key, staging)
        staging[block_id] = data

    async def seal(self, key: str) -> None:
        """Mark ``key`` sealed: writes through signed URLs stop landing on it."""
        _check_key(key)
        await _turn()
        self._sealed.add(key)

    async def _may_land(self, key: str, may_commit: MayCommit) -> None:
        # Sealed is read after the last await, so a seal() during may_commit() is seen.
        if not await may_commit() or key in self._sealed:
            raise SignatureRejected("the upload this URL was issued for is finished or gone")

    async def put_blob(
        self, key: str, chunks: AsyncIterable[bytes], *, content_type: str, limit: int, may_commit: MayCommit
    ) -> BlobWritten:
        """Put Blob: the bytes become the blob only while unsealed and ``may_commit()``."""
        _check_key(key)
        data = await _gather(chunks, budget=limit, limit=limit)
        await self._may_land(key, may_commit)
        written = self._commit(key, data, content_type)
        self._staged.pop(key, None)
        return written

    async def commit_block_list(
        self,
        key: str,
        entries: list[tuple[str, bytes]],
        *,
        content_type: str,
        limit: int,
        may_commit: MayCommit,
    ) -> BlobWritten:
        """Put Block List: commit the listed staged blocks in order, then drop all staged blocks."""
        _check_key(key)
        await _turn()
        staging = self._staged.get(key, {})
        blocks: list[bytes] = []
        for kind, block_id in entries:
            if kind not in ("Latest", "Uncommitted"):
                raise InvalidInput(f"<{kind[:40]}> blocks cannot be listed: none are kept (InvalidBlockList)")
            if block_id not in staging:
                raise InvalidInput(
                    f"block {base64.b64encode(block_id).decode()} is not staged (InvalidBlockList)"
                )
            blocks.append(staging[block_id])
        if sum(map(len, blocks)) > limit:
            raise PayloadTooLarge(limit)
        await self._may_land(key, may_commit)
        written = self._commit(key, b"".join(blocks), content_type)
        self._staged.pop(key, None)
        return written
