"""Local-directory blob adapter: the embedded default, no Azure needed.

Bytes live under ``<data dir>/blobs/<blobKey>``. A write goes to a temporary
file in the same directory, is fsynced, then renamed into place, so a crash
never leaves a half file under a real key. Every path is resolved and checked
to stay inside the root. A small JSON sidecar (``<key>.meta``) keeps the
content type and digest. Signed URLs point at the service's own ``/blobs/``
route and are HMAC-signed (``fleet_artifacts.signing``), with SAS semantics.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import shutil
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

import msgspec

from fleet_artifacts.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge, Unavailable
from fleet_artifacts.ports import BlobInfo, BlobStore, BlobWritten, StagedChunk, chunk_block_id
from fleet_artifacts.signing import UrlSigner

BLOB_ROUTE = "/blobs/"
_FLUSH_BYTES = 1024 * 1024  # write to disk in 1 MiB batches: few thread hops, little memory
_READ_BYTES = 1024 * 1024
MAX_BLOCK_BYTES = 4000 * 1024 * 1024  # Azure's largest block
_BLOCK_SUFFIX = ".block"


class _Meta(msgspec.Struct):
    content_type: str
    sha256: str


class LocalBlobStore(BlobStore):
    """``BlobStore`` on a local directory."""

    def __init__(self, root: Path, signer: UrlSigner) -> None:
        """Use ``root`` (created if missing) and sign URLs with ``signer``."""
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()
        self.signer = signer
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

        name = base64.b64decode(block_id).hex() + _BLOCK_SUFFIX
        await stage_file(measured(), staging, name, budget=max_bytes, limit=max_bytes)
        return StagedChunk(block_ids=[block_id], size_bytes=size, sha256=digest.hexdigest())

    async def commit_chunks(
        self, key: str, block_ids: list[str], *, content_type: str, max_bytes: int
    ) -> BlobWritten:
        """Concatenate the staged blocks in order into the blob (atomically), then drop the staging dir."""
        staging = self.staging_dir(key)
        paths = [staging / (base64.b64decode(b).hex() + _BLOCK_SUFFIX) for b in block_ids]
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise Conflict(f"{len(missing)} staged block(s) of {key} are gone (discarded or committed)")
        written = await self.write(key, concatenate(paths), content_type=content_type, max_bytes=max_bytes)
        await self.discard_uncommitted(key)
        return written

    async def sign_write_url(self, key: str, *, expires_at: datetime) -> str:
        """Return a root-relative URL of the service's ``/blobs/`` route, signed create+write."""
        self.path_of(key)
        return (
            f"{BLOB_ROUTE}{quote(key)}?{self.signer.sign(key, 'cw', expires_at=int(expires_at.timestamp()))}"
        )

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
        temp = path.with_name(f".tmp-{uuid.uuid4().hex}")
        digest = hashlib.sha256()
        size = 0
        pending: list[bytes] = []
        pending_size = 0
        out: BinaryIO = await asyncio.to_thread(open, temp, "xb")
        try:
            try:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise PayloadTooLarge(max_bytes)
                    digest.update(chunk)
                    pending.append(chunk)
                    pending_size += len(chunk)
                    if pending_size >= _FLUSH_BYTES:
                        await asyncio.to_thread(out.write, b"".join(pending))
                        pending, pending_size = [], 0
                if pending:
                    await asyncio.to_thread(out.write, b"".join(pending))
                await asyncio.to_thread(fsync_file, out)
            finally:
                out.close()
            meta = msgspec.json.encode(_Meta(content_type=content_type, sha256=digest.hexdigest()))
            await asyncio.to_thread(_commit, temp, path, meta)
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
                want = _READ_BYTES if left is None else min(_READ_BYTES, left)
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
        return f"{BLOB_ROUTE}{quote(key)}?{query}"


def _commit(temp: Path, path: Path, meta: bytes) -> None:
    # The sidecar lands first: a crash between the renames leaves a sidecar
    # without data (invisible), never data without its sidecar.
    meta_temp = path.with_name(f".tmp-{uuid.uuid4().hex}")
    with open(meta_temp, "xb") as out:
        out.write(meta)
        fsync_file(out)
    os.replace(meta_temp, path.with_name(path.name + ".meta"))
    os.replace(temp, path)
    fsync_dir(path.parent)  # one directory fsync makes both renames durable


async def stage_file(
    chunks: AsyncIterator[bytes], staging: Path, name: str, *, budget: int, limit: int
) -> None:
    """Stream into a unique temp file, fsync, then rename over the block's file.

    Parallel uploads of blocks (and re-uploads of one id) never share a temp
    file, and the rename makes the last complete upload of an id win.
    """
    temp = staging / f".tmp-{uuid.uuid4().hex}"
    size = pending_size = 0
    pending: list[bytes] = []
    try:
        out: BinaryIO = await asyncio.to_thread(open, temp, "xb")
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > MAX_BLOCK_BYTES:
                    raise PayloadTooLarge(MAX_BLOCK_BYTES)
                if size > budget:
                    raise PayloadTooLarge(limit)
                pending.append(chunk)
                pending_size += len(chunk)
                if pending_size >= _FLUSH_BYTES:
                    await asyncio.to_thread(out.write, b"".join(pending))
                    pending, pending_size = [], 0
            await asyncio.to_thread(out.write, b"".join(pending))
            await asyncio.to_thread(fsync_file, out)
        finally:
            out.close()
        await asyncio.to_thread(rename_durably, temp, staging / name)
    except FileNotFoundError:
        raise Conflict("the blob's staged blocks were committed or discarded during this upload") from None
    except OSError as exc:
        raise Unavailable(f"local blob staging: {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def fsync_file(out: BinaryIO) -> None:
    """Flush and fsync an open file."""
    out.flush()
    os.fsync(out.fileno())


def rename_durably(temp: Path, target: Path) -> None:
    """Rename over ``target`` and fsync the directory, so the rename survives a crash."""
    os.replace(temp, target)
    fsync_dir(target.parent)


def fsync_dir(directory: Path) -> None:
    """Fsync a directory, so the renames in it survive a crash."""
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


async def concatenate(paths: list[Path]) -> AsyncIterator[bytes]:
    """Yield the blocks' bytes in list order, 1 MiB at a time."""
    for path in paths:
        try:
            src: BinaryIO = await asyncio.to_thread(open, path, "rb")
        except FileNotFoundError:
            raise Conflict("a listed block vanished during the commit (committed or discarded)") from None
        try:
            while chunk := await asyncio.to_thread(src.read, _FLUSH_BYTES):
                yield chunk
        finally:
            src.close()
