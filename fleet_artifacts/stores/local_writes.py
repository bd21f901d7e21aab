"""How the local backend writes a blob: a small body in one hop to a thread, a large one streamed.

Either way the bytes are fsynced to a temp file beside the target, then renamed into place with
their sidecar (``local_files.commit_files``) under the key's lock, after the caller's guard
agreed; a crash leaves at most a ``.tmp-`` file (never a half-written blob), which the sweep's
``temps`` step removes once no live write could own it (``local_temps``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import BinaryIO

import msgspec

from fleet_artifacts.core.errors import PayloadTooLarge, Unavailable
from fleet_artifacts.core.ports import BlobWritten
from fleet_artifacts.stores.local_files import BlobMeta, commit_files, fsync_file, spool, temp_beside

SMALL_BODY = 4 * 1024 * 1024  # bodies up to this are written in one hop to a thread (``head_of``)


async def write_blob(
    path: Path,
    chunks: AsyncIterable[bytes],
    meta: BlobMeta,
    *,
    max_bytes: int,
    locked: Callable[[], AbstractAsyncContextManager[None]],
    guard: Callable[[], Awaitable[None]] | None,
) -> BlobWritten:
    """Write ``chunks`` as the blob at ``path`` with ``meta`` (its sha256 filled in).

    ``locked`` holds the key's lock around the rename, so a seal cannot slip in between the
    guard's check and it, nor a tier change rewrite the sidecar of the bytes it replaces.
    """
    temp = temp_beside(path)
    stream = aiter(chunks)
    try:
        parts, ended = await head_of(stream, SMALL_BODY, max_bytes)
        if ended:
            async with locked():
                if guard is not None:
                    await guard()
                done = await asyncio.to_thread(write_and_commit, temp, path, parts, meta)
            return BlobWritten(size_bytes=sum(map(len, parts)), sha256=done.sha256)
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0

        async def body() -> AsyncIterator[bytes]:
            for part in parts:
                yield part
            parts.clear()
            async for chunk in stream:
                yield chunk

        def measure(chunk: bytes) -> None:
            nonlocal size
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLarge(max_bytes)
            digest.update(chunk)

        out: BinaryIO = await asyncio.to_thread(open, temp, "xb")
        try:
            await spool(body(), out, measure)
        finally:
            out.close()
        done = msgspec.structs.replace(meta, sha256=digest.hexdigest())
        async with locked():
            if guard is not None:
                await guard()
            await asyncio.to_thread(commit_files, temp, path, done)
        return BlobWritten(size_bytes=size, sha256=done.sha256)
    except OSError as exc:
        raise Unavailable(f"local blob store: {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


async def head_of(chunks: AsyncIterator[bytes], limit: int, max_bytes: int) -> tuple[list[bytes], bool]:
    """Take chunks until more than ``limit`` bytes came or the stream ended: them, and whether it did.

    PayloadTooLarge past ``max_bytes``. A body that ends within ``limit`` (most artifacts) is then
    written, hashed and committed in one hop to a thread (``write_and_commit``), where streaming it
    took seven.
    """
    parts: list[bytes] = []
    size = 0
    while size <= limit:
        try:
            chunk = await anext(chunks)
        except StopAsyncIteration:
            return parts, True
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(max_bytes)
        if chunk:
            parts.append(chunk)
    return parts, False


def write_and_commit(temp: Path, path: Path, parts: list[bytes], meta: BlobMeta) -> BlobMeta:
    """A whole body: hashed, written and fsynced to ``temp``, then committed (``commit_files``).

    Returns ``meta`` with the body's sha256. As durable as the streamed path: the data, the
    sidecar and the directory are fsynced before it returns.
    """
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    done = msgspec.structs.replace(meta, sha256=digest.hexdigest())
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(temp, "xb") as out:
        out.writelines(parts)
        fsync_file(out)
    commit_files(temp, path, done)
    return done
