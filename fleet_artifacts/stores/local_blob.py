"""Local-directory blob adapter: the embedded default, no Azure needed.

Bytes live under ``<data dir>/blobs/<blobKey>``. A write goes to a temporary
file in the same directory, is fsynced, then renamed into place, so a crash
never leaves a half file under a real key. Every path is resolved and checked
to stay inside the root. A small JSON sidecar (``<key>.meta``) keeps the
content type and digest. Signed URLs point at the service's own ``/blobs/``
route and are HMAC-signed (``fleet_artifacts.stores.signing``), with SAS semantics.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import hashlib
import os
import shutil
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

import msgspec

from fleet_artifacts.core.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    SignatureRejected,
    Unavailable,
)
from fleet_artifacts.core.ports import (
    MAX_STAGED_BLOCKS,
    BlobInfo,
    BlobWritten,
    HostedBlobStore,
    MayCommit,
    StagedChunk,
    block_id_width,
    chunk_block_id,
)
from fleet_artifacts.stores.local_files import (
    FLUSH_BYTES,
    block_file,
    block_stems,
    commit_files,
    concatenate,
    fsync_dir,
    resolve_blocks,
    spool,
    stage_file,
    staged_sizes,
    temp_beside,
)
from fleet_artifacts.stores.signing import UrlSigner

# Beside a blob: its content type and digest (.meta), and whether its write URLs are dead (.sealed).
_SIDECARS = (".meta", ".sealed")


class _Meta(msgspec.Struct):
    content_type: str
    sha256: str


class LocalBlobStore(HostedBlobStore):
    """``BlobStore`` on a local directory, its signed URLs served by this service."""

    def __init__(self, root: Path, signer: UrlSigner, *, url_prefix: str) -> None:
        """Use ``root`` (created if missing); sign URLs under ``url_prefix`` with ``signer``."""
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()
        self.signer = signer
        self.url_prefix = url_prefix
        # Blocks of direct uploads wait here (outside the blob root) until committed.
        self.staging_root = self.root.parent / "staging"
        self.lock_root = self.root.parent / "locks"
        self.lock_root.mkdir(exist_ok=True)
        self._stripe_locks: dict[tuple[int, str], asyncio.Lock] = {}

    def staging_dir(self, key: str) -> Path:
        """Where the uncommitted blocks of ``key`` are kept (one directory per blob)."""
        self.path_of(key)
        return self.staging_root / hashlib.sha256(key.encode()).hexdigest()

    async def discard_uncommitted(self, key: str) -> None:
        """Remove the blocks staged for ``key``."""
        await asyncio.to_thread(shutil.rmtree, self.staging_dir(key), ignore_errors=True)

    async def committed(self, prefix: str) -> AsyncIterator[tuple[str, datetime]]:
        """Walk the blob root for committed files under ``prefix`` (not sidecars, not temps)."""

        def scan() -> list[tuple[str, datetime]]:
            found = []
            for path in self.root.rglob("*"):
                name = path.name
                if not path.is_file() or name.endswith(_SIDECARS) or name.startswith(".tmp-"):
                    continue
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    found.append((key, datetime.fromtimestamp(path.stat().st_mtime, UTC)))
            return found

        for item in await asyncio.to_thread(scan):
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
        await stage_file(measured(), staging, name, budget=max_bytes, limit=max_bytes)
        return StagedChunk(block_ids=[block_id], size_bytes=size, sha256=digest.hexdigest())

    async def commit_chunks(
        self, key: str, block_ids: list[str], *, content_type: str, max_bytes: int
    ) -> BlobWritten:
        """Concatenate the staged blocks in order into the blob (atomically), then drop the staging dir."""
        staging = self.staging_dir(key)
        paths = [staging / block_file(base64.b64decode(b)) for b in block_ids]
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise Conflict(f"{len(missing)} staged block(s) of {key} are gone (discarded or committed)")
        written = await self.write(key, concatenate(paths), content_type=content_type, max_bytes=max_bytes)
        await self.discard_uncommitted(key)
        return written

    async def sign_write_url(self, key: str, *, expires_at: datetime) -> str:
        """Return a root-relative URL of the service's ``/blobs/`` route, signed create+write."""
        self.path_of(key)
        return self._url(key, self.signer.sign(key, "cw", expires_at=int(expires_at.timestamp())))

    def _url(self, key: str, query: str) -> str:
        return f"{self.url_prefix}{quote(key)}?{query}"

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
        await stage_file(chunks, staging, name, budget=budget, limit=limit)

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
        async with self._key_lock(key):

            def touch() -> None:
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.touch()
                fsync_dir(marker.parent)

            await asyncio.to_thread(touch)

    def _sealed(self, key: str) -> Path:
        path = self.path_of(key)
        return path.with_name(path.name + ".sealed")

    @contextlib.asynccontextmanager
    async def _key_lock(self, key: str) -> AsyncIterator[None]:
        """An exclusive lock on ``key`` across processes sharing the data dir (striped over 256 files).

        Within this process an asyncio lock queues the waiters; across processes the file lock
        is polled without blocking, so no waiter ever holds one of the loop's worker threads
        (a blocking flock in ``to_thread`` let a burst of PUTs to one URL starve the pool the
        lock holder needs to finish).
        """
        stripe = hashlib.sha256(key.encode()).hexdigest()[:2]
        # One asyncio lock per stripe and event loop (a lock belongs to the loop that uses it).
        loop_key = (id(asyncio.get_running_loop()), stripe)
        async with self._stripe_locks.setdefault(loop_key, asyncio.Lock()):
            fd = os.open(self.lock_root / stripe, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:  # another process holds it: look again soon
                        await asyncio.sleep(0.005)
                yield
            finally:
                os.close(fd)  # closing the descriptor releases the lock

    def path_of(self, key: str) -> Path:
        """Resolve a key to its file, refusing anything that would leave the root."""
        parts = key.split("/")
        if (
            not key
            or "\\" in key
            or "\0" in key
            or any(part in ("", ".", "..") for part in parts)
            or key.endswith(_SIDECARS)
            or parts[-1].startswith(".tmp-")
        ):
            raise InvalidInput(f"invalid blob key {key[:80]!r}", field="key")
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise InvalidInput(f"invalid blob key {key[:80]!r}", field="key")
        return path

    async def write(
        self, key: str, chunks: AsyncIterable[bytes], *, content_type: str, max_bytes: int
    ) -> BlobWritten:
        """Stream into a temp file beside the target, fsync, then rename into place."""
        return await self._write(key, chunks, content_type=content_type, max_bytes=max_bytes, guard=None)

    async def _write(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        content_type: str,
        max_bytes: int,
        guard: Callable[[], Awaitable[None]] | None,
    ) -> BlobWritten:
        path = self.path_of(key)
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        temp = temp_beside(path)
        digest = hashlib.sha256()
        size = 0

        def measure(chunk: bytes) -> None:
            nonlocal size
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLarge(max_bytes)
            digest.update(chunk)

        try:
            out: BinaryIO = await asyncio.to_thread(open, temp, "xb")
            try:
                await spool(chunks, out, measure)
            finally:
                out.close()
            meta = msgspec.json.encode(_Meta(content_type=content_type, sha256=digest.hexdigest()))
            if guard is None:
                await asyncio.to_thread(commit_files, temp, path, meta)
            else:  # the check and the rename under one lock: seal() cannot slip in between
                async with self._key_lock(key):
                    await guard()
                    await asyncio.to_thread(commit_files, temp, path, meta)
        except OSError as exc:
            raise Unavailable(f"local blob store: {exc.strerror or exc}") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        return BlobWritten(size_bytes=size, sha256=digest.hexdigest())

    async def read(self, key: str, *, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """Stream the file (or a range of it) in 1 MiB reads."""
        path = self.path_of(key)
        try:
            src: BinaryIO = await asyncio.to_thread(open, path, "rb")
        except FileNotFoundError:
            raise NotFound(f"blob {key}: not found") from None
        try:
            await asyncio.to_thread(src.seek, offset)
            left = length
            while left is None or left > 0:
                want = FLUSH_BYTES if left is None else min(FLUSH_BYTES, left)
                chunk = await asyncio.to_thread(src.read, want)
                if not chunk:
                    break
                if left is not None:
                    left -= len(chunk)
                yield chunk
        finally:
            src.close()

    async def info(self, key: str) -> BlobInfo | None:
        """Size from the file, content type from its sidecar."""
        path = self.path_of(key)

        def stat() -> BlobInfo | None:
            try:
                size = path.stat().st_size
                meta = msgspec.json.decode(path.with_name(path.name + ".meta").read_bytes(), type=_Meta)
            except FileNotFoundError:
                return None
            return BlobInfo(size_bytes=size, content_type=meta.content_type, sha256=meta.sha256)

        return await asyncio.to_thread(stat)

    async def delete(self, key: str) -> bool:
        """Remove the file and its sidecars; False if there was no file."""
        path = self.path_of(key)

        def remove() -> bool:
            for sidecar in _SIDECARS:
                with contextlib.suppress(FileNotFoundError):
                    path.with_name(path.name + sidecar).unlink()
            try:
                path.unlink()
            except FileNotFoundError:
                return False
            return True

        return await asyncio.to_thread(remove)

    async def sign_read_url(
        self, key: str, *, expires_at: datetime, content_disposition: str, content_type: str
    ) -> str:
        """Return a root-relative URL of the service's ``/blobs/`` route, signed read-only."""
        self.path_of(key)
        query = self.signer.sign(
            key, "r", expires_at=int(expires_at.timestamp()), rscd=content_disposition, rsct=content_type
        )
        return self._url(key, query)
