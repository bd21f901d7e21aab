"""How the local backend writes a blob: a small body in one hop to a thread, a large one streamed.

Either way the bytes are written (and fsynced, unless ``fsync`` is off: ``DURABILITY=process``)
to a temp file beside the target, then renamed into place with their sidecar
(``local_files.commit_files``) under the key's lock, after the caller's guard agreed; a crash
leaves at most a ``.tmp-`` file (never a half-written blob), which the sweep's ``temps`` step
removes once no live write could own it (``local_temps``).

A small body (most artifacts) is hashed by one worker thread while another writes it: once the
body is in, the client waits for both, and the two are about as long as each other (a MiB takes
a millisecond to hash and most of one to write into the page cache), so doing them side by side
halves that wait.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import os
import threading
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TypeVar

import msgspec

from fleet_artifacts.core.errors import PayloadTooLarge, Unavailable
from fleet_artifacts.core.ports import BlobWritten
from fleet_artifacts.stores.local_files import BlobMeta, commit_files, fsync_dir, fsync_file, spool
from fleet_artifacts.stores.local_temps import temp_beside

if TYPE_CHECKING:
    from hashlib import _Hash

T = TypeVar("T")
SMALL_BODY = 4 * 1024 * 1024  # bodies up to this are written in one hop to a thread (``head_of``)
_IOV_MAX = 1024  # buffers one writev takes (Linux's IOV_MAX)

Locked = Callable[[], AbstractAsyncContextManager[None]]
Guard = Callable[[], Awaitable[None]] | None


class _Abandoned(Exception):
    """The request was cancelled while its body was being written: commit nothing."""


async def write_blob(
    locate: Callable[[], Path],
    chunks: AsyncIterable[bytes],
    meta: BlobMeta,
    *,
    max_bytes: int,
    locked: Locked,
    guard: Guard,
    fsync: bool,
) -> BlobWritten:
    """Write ``chunks`` as the blob at ``locate()`` with ``meta`` (its sha256 filled in).

    ``locate`` resolves the key to its file (symlinks and all); it runs in a worker thread, not
    on the event loop. ``locked`` holds the key's lock around the rename, so a seal cannot slip
    in between the guard's check and it, nor a tier change rewrite the sidecar of the bytes it
    replaces. PayloadTooLarge past ``max_bytes``.
    """
    stream = aiter(chunks)
    try:
        parts, size, ended = await head_of(stream, SMALL_BODY, max_bytes)
        if ended:
            return await _write_whole(locate, parts, size, meta, locked, guard, fsync)
        return await _write_streamed(locate, parts, size, stream, meta, max_bytes, locked, guard, fsync)
    except OSError as exc:
        raise Unavailable(f"local blob store: {exc.strerror or exc}") from exc


async def _write_whole(
    locate: Callable[[], Path],
    parts: list[bytes],
    size: int,
    meta: BlobMeta,
    locked: Locked,
    guard: Guard,
    fsync: bool,
) -> BlobWritten:
    """A whole body: hashed in one thread while ``write_and_commit`` writes it in another."""
    abandoned = threading.Event()
    async with locked():
        if guard is not None:
            await guard()
        hashed: concurrent.futures.Future[str] = concurrent.futures.Future()
        # Queued before the write, so a thread takes it first: the write, which waits for it,
        # never waits on a job queued behind itself, however busy the pool.
        asyncio.get_running_loop().run_in_executor(None, _hash, parts, hashed)
        done = await to_the_end(
            partial(write_and_commit, locate, parts, meta, hashed, fsync=fsync, abandoned=abandoned),
            on_cancel=abandoned.set,  # the thread now removes its temp instead of committing
        )
    return BlobWritten(size_bytes=size, sha256=done.sha256)


async def to_the_end(
    work: Callable[[], T],
    *,
    on_cancel: Callable[[], None] = lambda: None,
    undo: Callable[[T], None] | None = None,
) -> T:
    """``work()`` in a worker thread; a cancel calls ``on_cancel`` and waits for the thread to end.

    The callers hold the key's lock: leaving it while the thread may still rename and write the
    sidecar would let a seal, delete or tier change run in the middle of it. If ``work`` returned
    all the same, its result goes to ``undo``: nobody else will ever see it.
    """
    future = asyncio.get_running_loop().run_in_executor(None, work)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        on_cancel()
        while not future.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([future])
        # retrieved either way: the cancel is what the caller sees, whatever ``undo`` meets (a
        # temp it could not remove is the sweep's)
        if not future.cancelled() and future.exception() is None and undo is not None:
            with contextlib.suppress(OSError):
                undo(future.result())
        raise


def _hash(parts: list[bytes], into: concurrent.futures.Future[str]) -> None:
    """Set ``into`` to the sha256 of ``parts`` (hashlib lets go of the GIL: it runs beside the write)."""
    try:
        digest = hashlib.sha256()
        for part in parts:
            digest.update(part)
        into.set_result(digest.hexdigest())
    except BaseException as exc:  # handed to the writer, which waits for it
        into.set_exception(exc)


def write_and_commit(
    locate: Callable[[], Path],
    parts: list[bytes],
    meta: BlobMeta,
    hashed: concurrent.futures.Future[str],
    *,
    fsync: bool,
    abandoned: threading.Event,
) -> BlobMeta:
    """A whole body: written (and fsynced) to a temp, then committed with its sha256 (``hashed``).

    Returns ``meta`` with the sha256. As durable as the streamed path: with ``fsync`` the data,
    the sidecar and the directory are fsynced before it returns; without, all of it is in the
    OS, renamed into place. Nothing is committed once ``abandoned`` is set.
    """
    path = locate()
    temp, out = create_temp(path, fsync=fsync)
    try:
        with out:
            write_all(out, parts)
            if fsync:
                fsync_file(out)
        done = msgspec.structs.replace(meta, sha256=hashed.result())
        if abandoned.is_set():
            raise _Abandoned
        commit_files(temp, path, done, fsync=fsync)
    except BaseException:
        _drop(temp, out)  # (``out`` is closed already; closing again does nothing)
        raise
    return done


async def _write_streamed(
    locate: Callable[[], Path],
    head: list[bytes],
    size: int,
    stream: AsyncIterator[bytes],
    meta: BlobMeta,
    max_bytes: int,
    locked: Locked,
    guard: Guard,
    fsync: bool,
) -> BlobWritten:
    """A body past ``SMALL_BODY``: its head hashed and written as the temp is made, the rest spooled."""
    digest = hashlib.sha256()
    # The thread makes the temp; a cancel while it runs (client gone, shutdown) would otherwise
    # leave that temp behind for a day, until the sweep's ``temps`` step, as the ``finally``
    # below that removes it is entered only once ``_start`` has returned here.
    path, temp, out = await to_the_end(
        partial(_start, locate, head, digest, fsync), undo=lambda started: _drop(started[1], started[2])
    )
    committed = False
    try:
        head.clear()

        def measure(chunk: bytes) -> None:
            nonlocal size
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLarge(max_bytes)
            digest.update(chunk)

        try:
            await spool(stream, out, measure, fsync=fsync)
        finally:
            out.close()
        done = msgspec.structs.replace(meta, sha256=digest.hexdigest())
        async with locked():
            if guard is not None:
                await guard()
            await to_the_end(partial(commit_files, temp, path, done, fsync=fsync))
        committed = True
        return BlobWritten(size_bytes=size, sha256=done.sha256)
    finally:
        if not committed:
            _drop(temp, out)


def _start(
    locate: Callable[[], Path], head: list[bytes], digest: _Hash, fsync: bool
) -> tuple[Path, Path, BinaryIO]:
    """Resolve the blob's path, make its temp, hash and write ``head``: the path, the temp, the file."""
    path = locate()
    temp, out = create_temp(path, fsync=fsync)
    try:
        for part in head:
            digest.update(part)
        write_all(out, head)
    except BaseException:
        _drop(temp, out)
        raise
    return path, temp, out


def _drop(temp: Path, out: BinaryIO) -> None:
    """Close and remove a temp that will not be committed."""
    try:
        out.close()
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def create_temp(target: Path, *, fsync: bool) -> tuple[Path, BinaryIO]:
    """Create a fresh temp file beside ``target``: its path, open for writing.

    Missing directories are made only when the create finds them missing (a job's uploads after
    its first cost no mkdir that fails), and with ``fsync`` each new one is fsynced into its
    parent, so the blob's directory outlives a power loss as its rename does.
    """
    temp = temp_beside(target)
    try:
        return temp, open(temp, "xb")  # the caller writes and closes it
    except FileNotFoundError:
        make_dirs(target.parent, fsync=fsync)
        return temp, open(temp, "xb")


def make_dirs(directory: Path, *, fsync: bool) -> None:
    """``mkdir -p directory``; with ``fsync``, each directory made is fsynced into its parent."""
    missing: list[Path] = []
    while not directory.is_dir():
        missing.append(directory)
        directory = directory.parent
    for made in reversed(missing):
        with contextlib.suppress(FileExistsError):  # a concurrent write made it first
            made.mkdir()
        if fsync:
            fsync_dir(made.parent)


async def head_of(chunks: AsyncIterator[bytes], limit: int, max_bytes: int) -> tuple[list[bytes], int, bool]:
    """Take chunks until more than ``limit`` bytes came or the stream ended: them, their size, whether it did.

    PayloadTooLarge past ``max_bytes``. A body that ends within ``limit`` (most artifacts) is then
    hashed, written and committed in one hop to the worker threads (``_write_whole``), where
    streaming it took seven.
    """
    parts: list[bytes] = []
    size = 0
    while size <= limit:
        try:
            chunk = await anext(chunks)
        except StopAsyncIteration:
            return parts, size, True
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(max_bytes)
        if chunk:
            parts.append(chunk)
    return parts, size, False


def write_all(out: BinaryIO, parts: list[bytes]) -> None:
    """Write ``parts`` to ``out`` with as few system calls as the OS takes.

    One ``writev`` for a body's chunks, where ``writelines`` made one write for each.
    """
    out.flush()
    fd = out.fileno()
    views = [memoryview(part) for part in parts if part]
    while views:
        written = os.writev(fd, views[:_IOV_MAX])
        while written:  # drop what was written; a short write leaves a part's tail
            if written >= len(views[0]):
                written -= len(views.pop(0))
            else:
                views[0], written = views[0][written:], 0
