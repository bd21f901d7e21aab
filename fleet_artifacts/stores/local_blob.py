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
import hashlib
import shutil
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

import msgspec

from fleet_artifacts.core.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge, Unavailable
from fleet_artifacts.core.ports import (
    MAX_STAGED_BLOCKS,
    BlobInfo,
    BlobWritten,
    HostedBlobStore,
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
    resolve_blocks,
    spool,
    stage_file,
    staged_sizes,
    temp_beside,
)
from fleet_artifacts.stores.signing import UrlSigner


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
                if not path.is_file() or name.endswith(".meta") or name.startswith(".tmp-"):
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
        self, key: str, entries: list[tuple[str, bytes]], *, content_type: str, limit: int
    ) -> BlobWritten:
        """Put Block List: concatenate the listed staged blocks into the blob, then drop the staging dir."""
        paths, total = await asyncio.to_thread(resolve_blocks, self.staging_dir(key), entries)
        if total > limit:
            raise PayloadTooLarge(limit)
        written = await self.write(key, concatenate(paths), content_type=content_type, max_bytes=limit)
        await self.discard_uncommitted(key)  # committed or not listed: Azure drops them all
        return written

    def path_of(self, key: str) -> Path:
        """Resolve a key to its file, refusing anything that would leave the root."""
        parts = key.split("/")
        if (
            not key
            or "\\" in key
            or "\0" in key
            or any(part in ("", ".", "..") for part in parts)
            or key.endswith(".meta")
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
        """Remove the file and its sidecar; False if there was no file."""
        path = self.path_of(key)

        def remove() -> bool:
            with contextlib.suppress(FileNotFoundError):
                path.with_name(path.name + ".meta").unlink()
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
