"""Local-directory blob adapter: the embedded default, no Azure needed.

Bytes live under ``<data dir>/blobs/<blobKey>``. A write goes to a temporary
file in the same directory, is fsynced, then renamed into place, so a crash
never leaves a half file under a real key. With ``fsync=False`` (``DURABILITY=process``) no
file or directory is fsynced: every write is still complete in the OS and renamed into place
before it returns, so it survives a crash of the process, not a power loss. Every path is
resolved and checked to stay inside the root. A small JSON sidecar (``<key>.meta``) keeps the
content type, digest, access tier and index tags. Signed URLs point at the service's own
``/blobs/`` route and are HMAC-signed (``fleet_artifacts.stores.signing``), with SAS semantics.

Tiers are emulated, not priced: every tier is on the same disk, but an archived blob cannot
be read (Archived) until it is set to an online tier, which rehydrates it at once.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import shutil
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime
from pathlib import Path

import msgspec

from fleet_artifacts.core.errors import (
    Archived,
    Conflict,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    SignatureRejected,
    Unavailable,
)
from fleet_artifacts.core.hosted import HostedBlobStore, MayCommit
from fleet_artifacts.core.models import BlobTier
from fleet_artifacts.core.ports import (
    MAX_STAGED_BLOCKS,
    BlobInfo,
    BlobWritten,
    StagedChunk,
    block_id_width,
    chunk_block_id,
)
from fleet_artifacts.stores.blob_tags import check_tags
from fleet_artifacts.stores.local_files import (
    SIDECARS,
    BlobMeta,
    block_file,
    block_stems,
    change_meta,
    check_key,
    check_root,
    commit_files,
    committed_meta,
    concatenate,
    copy_to_temp,
    fsync_dir,
    key_path,
    open_online,
    open_with_meta,
    read_meta,
    remove_blob,
    resolve_blocks,
    scan_committed,
    stage_file,
    staged_sizes,
    stream_range,
)
from fleet_artifacts.stores.local_locks import KeyLocks
from fleet_artifacts.stores.local_temps import sweep_temps, temp_beside
from fleet_artifacts.stores.local_writes import make_dirs, write_blob
from fleet_artifacts.stores.signing import UrlSigner, url_path


class LocalBlobStore(HostedBlobStore):
    """``BlobStore`` on a local directory, its signed URLs served by this service."""

    def __init__(self, root: Path, signer: UrlSigner, *, url_prefix: str, fsync: bool = True) -> None:
        """Use ``root`` (created if missing); sign URLs under ``url_prefix`` with ``signer``.

        ``fsync``: fsync every write's file and directory before it returns (a power loss keeps
        it); False keeps a write across a crash of the process only (see the module docstring).
        """
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()
        self.signer = signer
        self.url_prefix = url_prefix
        self.fsync = fsync
        # Blocks of direct uploads wait here (outside the blob root) until committed.
        self.staging_root = self.root.parent / "staging"
        self._locks = KeyLocks(self.root.parent / "locks")

    def staging_dir(self, key: str) -> Path:
        """Where the uncommitted blocks of ``key`` are kept (one directory per blob)."""
        self.path_of(key)
        return self.staging_root / hashlib.sha256(key.encode()).hexdigest()

    async def discard_uncommitted(self, key: str) -> None:
        """Remove the blocks staged for ``key``."""
        await asyncio.to_thread(shutil.rmtree, self.staging_dir(key), ignore_errors=True)

    async def sweep_temporaries(self, *, older_than: datetime, dry_run: bool = False) -> list[str]:
        """Remove temp files untouched since ``older_than``, beside blobs and among staged blocks."""
        roots = (self.root, self.staging_root)
        return await asyncio.to_thread(
            sweep_temps, self.root.parent, roots, older_than=older_than, dry_run=dry_run
        )

    async def committed(self, prefix: str) -> AsyncIterator[tuple[str, datetime]]:
        """Walk the blob root for committed files under ``prefix`` (not sidecars, not temps)."""
        for item in await asyncio.to_thread(scan_committed, self.root, prefix):
            yield item

    async def stage_chunk(
        self, key: str, *, offset: int, nonce: str, chunks: AsyncIterable[bytes], max_bytes: int
    ) -> StagedChunk:
        """Stage a chunk as one block file in the key's staging dir (fsynced, renamed into place)."""
        block_id = chunk_block_id(offset, nonce)
        staging = self.staging_dir(key)
        await asyncio.to_thread(staging.mkdir, parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0

        async def measured() -> AsyncIterator[bytes]:
            nonlocal size
            async for chunk in chunks:
                size += len(chunk)
                digest.update(chunk)
                yield chunk

        name = block_file(base64.b64decode(block_id))
        await stage_file(measured(), staging, name, budget=max_bytes, limit=max_bytes, fsync=self.fsync)
        return StagedChunk(block_ids=[block_id], size_bytes=size, sha256=digest.hexdigest())

    async def commit_chunks(
        self,
        key: str,
        block_ids: list[str],
        *,
        content_type: str,
        max_bytes: int,
        tags: Mapping[str, str] | None = None,
    ) -> BlobWritten:
        """Concatenate the staged blocks in order into the blob (atomically), then drop the staging dir."""
        staging = self.staging_dir(key)
        paths = [staging / block_file(base64.b64decode(b)) for b in block_ids]
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise Conflict(f"{len(missing)} staged block(s) of {key} are gone (discarded or committed)")
        written = await self.write(
            key, concatenate(paths), content_type=content_type, max_bytes=max_bytes, tags=tags
        )
        await self.discard_uncommitted(key)
        return written

    async def sign_write_url(self, key: str, *, expires_at: datetime) -> str:
        """Return a root-relative URL of the service's ``/blobs/`` route, signed create+write."""
        check_key(key)  # no file is touched here; the /blobs/ route resolves it (verify_url)
        return self._url(key, self.signer.sign(key, "cw", expires_at=int(expires_at.timestamp())))

    def _url(self, key: str, query: str) -> str:
        return f"{self.url_prefix}{url_path(key)}?{query}"

    def verify_url(self, key: str, needed: str, query: Mapping[str, str], *, now: float) -> dict[str, str]:
        """Check the signature, permission and expiry of a URL this store signed."""
        granted = self.signer.verify(key, needed, query, now=now)
        self.path_of(key)
        return granted

    async def stage_block(
        self, key: str, block_id: bytes, chunks: AsyncIterable[bytes], *, limit: int, declared: int | None
    ) -> None:
        """Put Block: one file per id in the key's staging dir; the last complete upload of an id wins."""
        staging = self.staging_dir(key)
        name = block_file(block_id)
        staged = await asyncio.to_thread(staged_sizes, staging)
        stems = block_stems(staged)
        if any(block_id_width(len(other) // 2) != block_id_width(len(block_id)) for other in stems):
            raise InvalidInput("the block ids of a blob must all have the same length", field="blockid")
        if name not in staged and len(stems) >= MAX_STAGED_BLOCKS:
            raise Conflict(f"a blob holds at most {MAX_STAGED_BLOCKS} uncommitted blocks")
        # A guard against filling the disk, not the size rule itself (Put Block List checks that):
        # blocks staged in parallel may each see the others' temp files before they grow.
        budget = limit - sum(size for other, size in staged.items() if other != name)
        if declared is not None and declared > budget:
            raise PayloadTooLarge(limit)
        await stage_file(chunks, staging, name, budget=budget, limit=limit, fsync=self.fsync)

    async def commit_block_list(
        self,
        key: str,
        entries: list[tuple[str, bytes]],
        *,
        content_type: str,
        limit: int,
        may_commit: MayCommit,
    ) -> BlobWritten:
        """Put Block List: concatenate the listed staged blocks into the blob, then drop the staging dir."""
        paths, total = await asyncio.to_thread(resolve_blocks, self.staging_dir(key), entries)
        if total > limit:
            raise PayloadTooLarge(limit)
        return await self.put_blob(
            key, concatenate(paths), content_type=content_type, limit=limit, may_commit=may_commit
        )

    async def put_blob(
        self, key: str, chunks: AsyncIterable[bytes], *, content_type: str, limit: int, may_commit: MayCommit
    ) -> BlobWritten:
        """Put Blob: spool the bytes, then rename them into place only if the write may still land."""

        async def guard() -> None:
            # Asked first, sealed looked at last: a seal during may_commit() is seen too.
            if not await may_commit() or await asyncio.to_thread(self._sealed(key).exists):
                raise SignatureRejected("the upload this URL was issued for is finished or gone")

        written = await self._write(key, chunks, content_type=content_type, max_bytes=limit, guard=guard)
        await self.discard_uncommitted(key)  # committed or not listed: Azure drops them all
        return written

    async def seal(self, key: str) -> None:
        """Mark ``key`` sealed (``<key>.sealed``), excluding a write that is about to land."""
        marker = self._sealed(key)
        async with self._locks.hold(key):

            def touch() -> None:
                make_dirs(marker.parent, fsync=self.fsync)
                marker.touch()
                if self.fsync:
                    fsync_dir(marker.parent)

            await asyncio.to_thread(touch)

    def _sealed(self, key: str) -> Path:
        path = self.path_of(key)
        return path.with_name(path.name + ".sealed")

    def path_of(self, key: str) -> Path:
        """Resolve a key to its file, refusing anything that would leave the root."""
        return key_path(self.root, key)

    async def write(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        content_type: str,
        max_bytes: int,
        tags: Mapping[str, str] | None = None,
    ) -> BlobWritten:
        """Stream into a temp file beside the target, fsync, then rename into place (Hot, with ``tags``)."""
        return await self._write(
            key, chunks, content_type=content_type, max_bytes=max_bytes, guard=None, tags=tags
        )

    async def _write(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        content_type: str,
        max_bytes: int,
        guard: Callable[[], Awaitable[None]] | None,
        tags: Mapping[str, str] | None = None,
    ) -> BlobWritten:
        # A new blob starts Hot with the tags it was written with, as a Put Blob on Azure; the tags
        # are checked before a byte is spooled, not after the last.
        meta = BlobMeta(content_type=content_type, sha256="", tags=check_tags(tags))
        check_key(key)  # a bad key is refused before a byte is read; the writer's thread resolves it
        return await write_blob(
            lambda: self.path_of(key),
            chunks,
            meta,
            max_bytes=max_bytes,
            locked=lambda: self._locks.hold(key),
            guard=guard,
            fsync=self.fsync,
        )

    async def read(self, key: str, *, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """Stream the file (or a range of it) in 1 MiB reads; Archived while its tier is Archive."""
        try:
            src = await asyncio.to_thread(open_online, self.path_of(key))
        except FileNotFoundError:
            raise NotFound(f"blob {key}: not found") from None
        if src is None:
            raise Archived(f"blob {key} is in the Archive tier: set an online tier to read it")
        async with contextlib.aclosing(stream_range(src, offset, length)) as chunks:  # closes src now
            async for chunk in chunks:
                yield chunk

    async def info(self, key: str) -> BlobInfo | None:
        """Size from the file, the rest from its sidecar (never rehydrating: that is instant here)."""
        path = self.path_of(key)

        def stat() -> BlobInfo | None:
            try:
                size = path.stat().st_size
                meta = read_meta(path)
            except FileNotFoundError:
                return None
            return BlobInfo(size, meta.content_type, meta.sha256, tier=meta.tier)

        return await asyncio.to_thread(stat)

    async def copy(self, source: str, target: str, *, tags: Mapping[str, str] | None = None) -> BlobInfo:
        """Copy the bytes into a temp file beside ``target``, fsync, then rename it into place (as ``write``).

        The target's sidecar has the source's content type and digest, the Hot tier and ``tags``.
        NotFound if the source is absent, Archived while it is offline (Azure refuses that copy too).
        """
        checked = check_tags(tags)
        src_path, path = self.path_of(source), self.path_of(target)
        try:
            # The bytes and the sidecar under the source's lock, so both are of one write; never
            # under both keys' locks at once: two keys may share a stripe, and a lock is not reentrant.
            async with self._locks.hold(source):
                src, meta = await asyncio.to_thread(open_with_meta, src_path)
        except FileNotFoundError:
            raise NotFound(f"copy {source}: not found") from None
        temp = temp_beside(path)
        try:
            with src:
                if meta.tier is BlobTier.ARCHIVE:
                    raise Archived(f"copy {source}: the blob is in the Archive tier")
                await asyncio.to_thread(make_dirs, path.parent, fsync=self.fsync)
                size = await asyncio.to_thread(copy_to_temp, src, temp, fsync=self.fsync)
            copied = BlobMeta(content_type=meta.content_type, sha256=meta.sha256, tags=checked)
            async with self._locks.hold(target):
                await asyncio.to_thread(commit_files, temp, path, copied, fsync=self.fsync)
        except OSError as exc:
            raise Unavailable(f"local blob store: {exc.strerror or exc}") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        return BlobInfo(size, copied.content_type, copied.sha256, tier=copied.tier)

    async def set_tier(self, key: str, tier: BlobTier, *, high_priority: bool = False) -> None:
        """Record ``tier``; leaving Archive rehydrates at once (``high_priority`` has nothing to hurry)."""
        await self._change_meta(key, lambda meta: msgspec.structs.replace(meta, tier=tier))

    async def set_tags(self, key: str, tags: Mapping[str, str]) -> None:
        """Replace the blob's index tags (InvalidInput for a set Azure would refuse)."""
        checked = check_tags(tags)
        await self._change_meta(key, lambda meta: msgspec.structs.replace(meta, tags=checked))

    async def get_tags(self, key: str) -> dict[str, str]:
        """The blob's index tags (readable in every tier, as on Azure)."""
        try:
            return (await asyncio.to_thread(committed_meta, self.path_of(key))).tags
        except FileNotFoundError:
            raise NotFound(f"blob {key}: not found") from None

    async def _change_meta(self, key: str, change: Callable[[BlobMeta], BlobMeta]) -> None:
        """Replace a committed blob's sidecar with ``change`` of it; NotFound if absent.

        Under the key's lock, as every commit and delete is: a sidecar rewritten from a stale
        read would give new bytes the old digest, or bring back the sidecar of a deleted blob.
        """
        try:
            async with self._locks.hold(key):
                await asyncio.to_thread(change_meta, self.path_of(key), change, fsync=self.fsync)
        except FileNotFoundError:
            raise NotFound(f"blob {key}: not found") from None
        except OSError as exc:
            raise Unavailable(f"local blob store: {exc.strerror or exc}") from exc

    async def delete(self, key: str) -> bool:
        """Remove the file and its sidecars; False if there was no file."""
        path = self.path_of(key)
        async with self._locks.hold(key):  # a set_tier() waiting on it then finds no blob
            return await asyncio.to_thread(remove_blob, path, SIDECARS)

    async def check(self) -> None:
        """Readiness: the blob root is a directory the service may read and write (a stat, no write)."""
        await asyncio.to_thread(check_root, self.root)

    async def sign_read_url(
        self, key: str, *, expires_at: datetime, content_disposition: str, content_type: str
    ) -> str:
        """Return a root-relative URL of the service's ``/blobs/`` route, signed read-only."""
        check_key(key)  # no file is touched here; the /blobs/ route resolves it (verify_url)
        query = self.signer.sign(
            key, "r", expires_at=int(expires_at.timestamp()), rscd=content_disposition, rsct=content_type
        )
        return self._url(key, query)
