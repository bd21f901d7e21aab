"""Durable file steps of the local blob backend: spool, fsync, rename, and the block staging dir.

A blob or a block is streamed into a unique temp file beside its target, fsynced,
then renamed into place, so a crash never leaves a half file under a real name. Every step
that fsyncs takes ``fsync``: False (``DURABILITY=process``) skips the fsyncs of files and
directories and nothing else, so each step is still complete in the OS, in the same order
(temp, rename), before it returns: it survives a crash of the process, not a power loss.
Blocks of one blob wait in a staging directory of their own, one file per block id,
named by the id's bytes in hex (never the id itself): ``<hex id>.block``. What Azure keeps
beside a blob's bytes (content type, digest, access tier, index tags) is a JSON sidecar,
``<name>.meta``, written the same way. A copy of a blob is spooled from the source's open
file the same way too. Keys are resolved to paths (never leaving the root) here as well.
How temp files are named, and the sweep of those a killed write left, is ``local_temps``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import os
import shutil
import stat
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import msgspec

from fleet_artifacts.core.errors import Conflict, InvalidInput, PayloadTooLarge, Unavailable
from fleet_artifacts.core.models import BlobTier
from fleet_artifacts.core.ports import MAX_BLOCK_BYTES
from fleet_artifacts.stores.local_temps import is_temp, temp_beside, temp_name

# Beside a blob: its properties and tags (.meta), and whether its write URLs are dead (.sealed).
SIDECARS = (".meta", ".sealed")
FLUSH_BYTES = 1024 * 1024  # write to disk in 1 MiB batches: few thread hops, little memory
BLOCK_SUFFIX = ".block"


class BlobMeta(msgspec.Struct, omit_defaults=True):
    """A blob's sidecar: its properties and index tags.

    Defaults are left out of the JSON, so a Hot, untagged blob's sidecar is what it was before tiers.
    """

    content_type: str
    sha256: str
    tier: BlobTier = BlobTier.HOT
    tags: dict[str, str] = msgspec.field(default_factory=dict)


def meta_path(path: Path) -> Path:
    """Where the sidecar of the blob at ``path`` is."""
    return path.with_name(path.name + ".meta")


def read_meta(path: Path) -> BlobMeta:
    """The sidecar of the blob at ``path``; FileNotFoundError if it has none."""
    return msgspec.json.decode(meta_path(path).read_bytes(), type=BlobMeta)


def committed_meta(path: Path) -> BlobMeta:
    """The sidecar of a committed blob; FileNotFoundError unless both it and the bytes are there."""
    meta = read_meta(path)
    if not path.is_file():  # a sidecar left without bytes by a crash is no blob
        raise FileNotFoundError(path)
    return meta


def change_meta(path: Path, change: Callable[[BlobMeta], BlobMeta], *, fsync: bool) -> None:
    """Replace a committed blob's sidecar with ``change`` of it (the caller holds the key's lock)."""
    replace_meta(path, change(committed_meta(path)), fsync=fsync)


def remove_blob(path: Path, sidecars: tuple[str, ...]) -> bool:
    """Remove a blob's ``sidecars`` (the sidecar first: the blob vanishes), then its bytes.

    False if there were no bytes.
    """
    for sidecar in sidecars:
        with contextlib.suppress(FileNotFoundError):
            path.with_name(path.name + sidecar).unlink()
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def open_online(path: Path) -> BinaryIO | None:
    """Open a committed blob's bytes, or None while its tier is Archive; FileNotFoundError if absent."""
    src, meta = open_with_meta(path)
    if meta.tier is BlobTier.ARCHIVE:
        src.close()
        return None
    return src


def open_with_meta(path: Path) -> tuple[BinaryIO, BlobMeta]:
    """Open a committed blob's bytes and read its sidecar; FileNotFoundError if absent."""
    src = open(path, "rb")  # noqa: SIM115 - the caller streams from it and closes it
    try:
        # The sidecar after the bytes: a blob being deleted (sidecar gone first) is not found.
        return src, read_meta(path)
    except BaseException:
        src.close()
        raise


async def stream_range(src: BinaryIO, offset: int, length: int | None) -> AsyncGenerator[bytes, None]:
    """Yield ``length`` bytes of ``src`` from ``offset`` (to its end if None) in 1 MiB reads; close it."""
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


def copy_to_temp(src: BinaryIO, temp: Path, *, fsync: bool) -> int:
    """Copy the rest of ``src`` into the new file ``temp`` (fsynced with ``fsync``); return how many bytes."""
    with open(temp, "xb") as out:
        shutil.copyfileobj(src, out, FLUSH_BYTES)
        if fsync:
            fsync_file(out)
        return out.tell()


def scan_committed(root: Path, prefix: str) -> list[tuple[str, datetime]]:
    """The committed blobs under ``root`` whose keys start with ``prefix`` (no sidecars, no temps)."""
    found = []
    for path in root.rglob("*"):
        name = path.name
        if not path.is_file() or name.endswith(SIDECARS) or is_temp(name):
            continue
        key = path.relative_to(root).as_posix()
        if key.startswith(prefix):
            try:
                modified = path.stat().st_mtime
            except FileNotFoundError:  # deleted since the walk saw it (a DELETE beside the sweep)
                continue
            found.append((key, datetime.fromtimestamp(modified, UTC)))
    return found


@functools.lru_cache(maxsize=4096)  # a dashboard signs the same keys page after page
def _plain(key: str) -> bool:
    parts = key.split("/")
    return not (
        not key
        or "\\" in key
        or "\0" in key
        or any(part in ("", ".", "..") for part in parts)
        or key.endswith(SIDECARS)
        or is_temp(parts[-1])
    )


def check_key(key: str) -> None:
    """InvalidInput unless ``key`` is a plain relative key (no empty, ``.`` or ``..`` part, no sidecar).

    What signing needs: it touches no file. ``key_path`` adds the filesystem's own check.
    """
    if not _plain(key):
        raise InvalidInput(f"invalid blob key {key[:80]!r}", field="key")


def key_path(root: Path, key: str) -> Path:
    """Resolve a key to its file under ``root``; InvalidInput for anything that would leave it."""
    check_key(key)
    # Resolved only where bytes are touched (symlinks included): a path per signed URL cost a
    # system call per path part on the hot read path.
    path = (root / key).resolve()
    if not path.is_relative_to(root) or path == root:
        raise InvalidInput(f"invalid blob key {key[:80]!r}", field="key")
    return path


def block_file(block_id: bytes) -> str:
    """The staging file name of a block id."""
    return block_id.hex() + BLOCK_SUFFIX


async def spool(
    chunks: AsyncIterable[bytes], out: BinaryIO, on_chunk: Callable[[bytes], None], *, fsync: bool
) -> None:
    """Write ``chunks`` to ``out`` in batches, ``on_chunk`` seeing each first (it may raise); fsync.

    Without ``fsync`` the last batch is flushed to the OS only (closing ``out`` would do it too).
    """
    pending: list[bytes] = []
    pending_size = 0
    async for chunk in chunks:
        on_chunk(chunk)
        if not chunk:  # a stream's closing empty chunk is no reason for a hop to a thread
            continue
        pending.append(chunk)
        pending_size += len(chunk)
        if pending_size >= FLUSH_BYTES:
            await asyncio.to_thread(out.write, b"".join(pending))
            pending, pending_size = [], 0
    if pending:
        await asyncio.to_thread(out.write, b"".join(pending))
    if fsync:
        await asyncio.to_thread(fsync_file, out)
    else:
        out.flush()  # at most a buffer's tail: the batches above went to the OS as written


async def stage_file(
    chunks: AsyncIterable[bytes], staging: Path, name: str, *, budget: int, limit: int, fsync: bool
) -> None:
    """Stream into a unique temp file, fsync (with ``fsync``), then rename over the block's file.

    Parallel uploads of blocks (and re-uploads of one id) never share a temp
    file, and the rename makes the last complete upload of an id win.
    """
    temp = staging / temp_name()
    size = 0

    def count(chunk: bytes) -> None:
        nonlocal size
        size += len(chunk)
        if size > MAX_BLOCK_BYTES:
            raise PayloadTooLarge(MAX_BLOCK_BYTES)
        if size > budget:
            raise PayloadTooLarge(limit)

    try:
        out: BinaryIO = await asyncio.to_thread(open, temp, "xb")
        try:
            await spool(chunks, out, count, fsync=fsync)
        finally:
            out.close()
        await asyncio.to_thread(rename_durably, temp, staging / name, fsync=fsync)
    except FileNotFoundError:
        raise Conflict("the blob's staged blocks were committed or discarded during this upload") from None
    except OSError as exc:
        raise Unavailable(f"local blob staging: {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def staged_sizes(staging: Path) -> dict[str, int]:
    """Size of every file in the staging dir (blocks and in-flight temps); created if missing."""
    staging.mkdir(parents=True, exist_ok=True)
    sizes: dict[str, int] = {}
    with os.scandir(staging) as entries:
        for entry in entries:
            with contextlib.suppress(FileNotFoundError):  # a temp renamed meanwhile
                sizes[entry.name] = entry.stat().st_size
    return sizes


def block_stems(staged: Mapping[str, int]) -> list[str]:
    """The hex ids of the staged blocks (temps left out)."""
    return [name.removesuffix(BLOCK_SUFFIX) for name in staged if name.endswith(BLOCK_SUFFIX)]


def resolve_blocks(staging: Path, entries: list[tuple[str, bytes]]) -> tuple[list[Path], int]:
    """Map the listed ids to staged files in order; return them and their total size."""
    paths: list[Path] = []
    total = 0
    sizes: dict[bytes, int] = {}
    for kind, block_id in entries:
        if kind == "Committed":
            raise InvalidInput(
                "the local blob backend keeps no committed blocks: list staged blocks "
                "as <Latest> or <Uncommitted>, or upload the whole blob again (InvalidBlockList)"
            )
        path = staging / block_file(block_id)
        if block_id not in sizes:
            try:
                sizes[block_id] = path.stat().st_size
            except FileNotFoundError:
                raise InvalidInput(
                    f"block {base64.b64encode(block_id).decode()} is not staged (InvalidBlockList)"
                ) from None
        paths.append(path)
        total += sizes[block_id]
    return paths, total


def commit_files(temp: Path, path: Path, meta: BlobMeta, *, fsync: bool) -> None:
    """Rename a written temp into place with its sidecar (``<name>.meta``); fsync the directory."""
    # The sidecar lands first: a crash between the renames leaves a sidecar
    # without data (invisible), never data without its sidecar. So the temp is looked for
    # before: one the temp sweep took from a write silent for too long must not give the
    # bytes already at ``path`` this write's sidecar (the rename would then fail).
    os.stat(temp)
    _place_meta(path, meta, fsync=fsync)
    os.replace(temp, path)
    if fsync:
        fsync_dir(path.parent)  # one directory fsync makes both renames durable


def replace_meta(path: Path, meta: BlobMeta, *, fsync: bool) -> None:
    """Replace the sidecar of a committed blob, durably (a crash leaves the old one or the new)."""
    _place_meta(path, meta, fsync=fsync)
    if fsync:
        fsync_dir(path.parent)


def _place_meta(path: Path, meta: BlobMeta, *, fsync: bool) -> None:
    meta_temp = temp_beside(path)
    try:
        with open(meta_temp, "xb") as out:  # buffered: its flush writes all of it, however short a write
            out.write(msgspec.json.encode(meta))
            if fsync:
                os.fsync(out.fileno())
        os.replace(meta_temp, meta_path(path))
    except BaseException:  # renamed, there is no temp left to remove: no unlink that fails
        with contextlib.suppress(FileNotFoundError):
            meta_temp.unlink()
        raise


def fsync_file(out: BinaryIO) -> None:
    """Flush and fsync an open file."""
    out.flush()
    os.fsync(out.fileno())


def rename_durably(temp: Path, target: Path, *, fsync: bool) -> None:
    """Rename over ``target``; with ``fsync``, fsync the directory so the rename survives a power loss."""
    os.replace(temp, target)
    if fsync:
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
            while chunk := await asyncio.to_thread(src.read, FLUSH_BYTES):
                yield chunk
        finally:
            src.close()


def check_root(root: Path) -> None:
    """Unavailable unless ``root`` is a directory this process may list and write (nothing written).

    The reason names no path: a readiness answer is anonymous.
    """
    try:
        is_dir = stat.S_ISDIR(root.stat().st_mode)
    except OSError as exc:
        raise Unavailable(f"the blob directory cannot be read: {exc.strerror or type(exc).__name__}") from exc
    if not is_dir:
        raise Unavailable("the blob directory is not a directory")
    if not os.access(root, os.R_OK | os.W_OK | os.X_OK):
        raise Unavailable("the blob directory is not readable and writable by the service")
