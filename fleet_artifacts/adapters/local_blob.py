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
import contextlib
import hashlib
import os
import shutil
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

import msgspec

from fleet_artifacts.errors import InvalidInput, NotFound, PayloadTooLarge, Unavailable
from fleet_artifacts.ports import BlobInfo, BlobStore, BlobWritten
from fleet_artifacts.signing import UrlSigner

BLOB_ROUTE = "/blobs/"
_FLUSH_BYTES = 1024 * 1024  # write to disk in 1 MiB batches: few thread hops, little memory
_READ_BYTES = 1024 * 1024


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
                await asyncio.to_thread(_sync_and_close, out)
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


def _sync_and_close(out: BinaryIO) -> None:
    out.flush()
    os.fsync(out.fileno())
    out.close()


def _commit(temp: Path, path: Path, meta: bytes) -> None:
    # The sidecar lands first: a crash between the renames leaves a sidecar
    # without data (invisible), never data without its sidecar.
    meta_temp = path.with_name(f".tmp-{uuid.uuid4().hex}")
    with open(meta_temp, "xb") as out:
        out.write(meta)
        out.flush()
        os.fsync(out.fileno())
    os.replace(meta_temp, path.with_name(path.name + ".meta"))
    os.replace(temp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the renames themselves durable
    finally:
        os.close(dir_fd)
