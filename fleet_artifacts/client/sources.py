"""Bytes in and out: an upload's source (hashed as it is read) and a download's sink.

A ``Source`` reads a path, a file object or bytes in large chunks, computing sha256 and
counting bytes on the way, and can start over for a retry when its origin allows it. A
``Sink`` writes into a temporary file beside the target, checks size and sha256, fsyncs
and renames it into place: a download that fails or does not match leaves no file.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from fleet_artifacts.client.errors import DigestMismatch
from fleet_artifacts.client.models import Problem

# 1 MiB: large enough that per-chunk costs (h11 events, syscalls, hashing calls) vanish next
# to the copy itself, small enough to keep memory flat. httpx reads file bodies 64 KiB at a time.
CHUNK_SIZE = 1024 * 1024

Progress = Callable[[int], None]  # called with the number of bytes just moved


class Source:
    """An upload body: a path, a binary file object or bytes, read in ``chunk_size`` pieces.

    Args:
        origin: what to upload.
        chunk_size: bytes per read.
        progress: called with each chunk's length as it is read.
    """

    def __init__(
        self,
        origin: str | os.PathLike[str] | bytes | BinaryIO,
        *,
        chunk_size: int = CHUNK_SIZE,
        progress: Progress | None = None,
    ) -> None:
        self.chunk_size = chunk_size
        self.progress = progress
        self._data: bytes | None = None
        self._path: Path | None = None
        self._file: BinaryIO | None = None
        self._start = 0
        if isinstance(origin, bytes | bytearray | memoryview):
            self._data = bytes(origin)
            self.size: int | None = len(self._data)
        elif isinstance(origin, str | os.PathLike):
            self._path = Path(origin)
            self.size = self._path.stat().st_size
        else:
            self._file = origin
            self.size = _remaining(origin)
            self._start = origin.tell() if _seekable(origin) else 0
        self._hash = hashlib.sha256()
        self.sent = 0
        self._begun = False

    @property
    def name(self) -> str | None:
        """The file name the origin suggests (a path's, or a file object's ``name``)."""
        if self._path is not None:
            return self._path.name
        name = getattr(self._file, "name", None)
        return Path(name).name if isinstance(name, str) else None

    @property
    def rewindable(self) -> bool:
        """Whether the body can be read again from its start (for a retry)."""
        return self._file is None or _seekable(self._file)

    @property
    def sha256(self) -> str:
        """Hex sha256 of the bytes read so far (the whole body once read to the end)."""
        return self._hash.hexdigest()

    def begin(self) -> None:
        """Start (again) from the first byte; ValueError if the origin cannot go back."""
        if self._begun and not self.rewindable:
            raise ValueError("the upload's file object cannot be read again (not seekable)")
        self._begun = True
        if self.progress is not None and self.sent:
            self.progress(-self.sent)  # a retry: what was counted is sent again
        self._hash = hashlib.sha256()
        self.sent = 0
        if self._file is not None and _seekable(self._file):
            self._file.seek(self._start)

    def _count(self, chunk: bytes) -> bytes:
        self._hash.update(chunk)
        self.sent += len(chunk)
        if self.progress is not None:
            self.progress(len(chunk))
        return chunk

    def chunks(self) -> Iterator[bytes]:
        """The body from its start, chunk by chunk (hashed and counted)."""
        self.begin()
        if self._data is not None:
            for offset in range(0, len(self._data), self.chunk_size):
                yield self._count(self._data[offset : offset + self.chunk_size])
            return
        with self._opened() as src:
            while chunk := src.read(self.chunk_size):
                yield self._count(chunk)

    async def achunks(self) -> AsyncIterator[bytes]:
        """The body from its start for an async client: file reads run in a worker thread."""
        self.begin()
        if self._data is not None:
            for offset in range(0, len(self._data), self.chunk_size):
                yield self._count(self._data[offset : offset + self.chunk_size])
            return
        src = await asyncio.to_thread(self._open_raw)
        try:
            while chunk := await asyncio.to_thread(src.read, self.chunk_size):
                yield self._count(chunk)
        finally:
            if self._path is not None:
                src.close()

    def reader(self) -> HashingReader:
        """A read-only, non-seekable file object over the body (what the Azure SDK reads from).

        Not seekable on purpose: the SDK then reads it front to back in one thread (and
        uploads blocks in parallel), so the running sha256 sees the bytes in order.
        """
        self.begin()
        return HashingReader(self)

    def _open_raw(self) -> BinaryIO:
        if self._path is not None:
            return self._path.open("rb")
        assert self._file is not None
        return self._file

    def _opened(self) -> _Opened:
        return _Opened(self._open_raw(), close=self._path is not None)


class _Opened:
    """A context manager closing the file only when this source opened it."""

    def __init__(self, file: BinaryIO, *, close: bool) -> None:
        self.file, self.close = file, close

    def __enter__(self) -> BinaryIO:
        return self.file

    def __exit__(self, *exc: object) -> None:
        if self.close:
            self.file.close()


class HashingReader:
    """``read(n)`` over a Source, hashing and counting as it goes; opened on first read."""

    def __init__(self, source: Source) -> None:
        self._source = source
        self._data = source._data
        self._offset = 0
        self._file: BinaryIO | None = None

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all the rest when negative); b"" at the end."""
        if self._data is not None:
            end = len(self._data) if size < 0 else self._offset + size
            chunk = self._data[self._offset : end]
            self._offset += len(chunk)
        else:
            if self._file is None:
                self._file = self._source._open_raw()
            chunk = self._file.read(size)
        return self._source._count(chunk) if chunk else b""

    def close(self) -> None:
        """Close the file if the source opened it."""
        if self._file is not None and self._source._path is not None:
            self._file.close()


def _seekable(file: BinaryIO) -> bool:
    try:
        return bool(file.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _remaining(file: BinaryIO) -> int | None:
    """Bytes from the file's position to its end, when that can be known without reading."""
    try:
        return os.fstat(file.fileno()).st_size - file.tell()
    except (AttributeError, OSError, ValueError):
        pass
    if _seekable(file):
        here = file.tell()
        end = file.seek(0, os.SEEK_END)
        file.seek(here)
        return end - here
    return None


class Sink:
    """A download target: a temp file beside ``target``, renamed into place once verified.

    Args:
        target: the final path.
        sha256: the digest the bytes must have (None: not checked).
        size: the byte count they must have (None: not checked).
        progress: called with each chunk's length as it is written.
        fsync: flush the bytes (and the rename) to disk before returning, so they survive a power
            loss. Off by default: it costs a disk flush (seconds per GiB) and curl does not either;
            the rename alone already guarantees the target is whole or absent.
    """

    def __init__(
        self,
        target: Path,
        *,
        sha256: str | None,
        size: int | None,
        progress: Progress | None = None,
        fsync: bool = False,
    ) -> None:
        self.target, self.sha256, self.size, self.progress = target, sha256, size, progress
        self.fsync = fsync
        self._file: BinaryIO | None = None
        self._temp: Path | None = None
        self._hash = hashlib.sha256()
        self.written = 0

    def open(self) -> None:
        """Start (or start over) with an empty temp file in the target's directory."""
        self.discard()
        self.target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.target.parent, prefix=f".{self.target.name}.", suffix=".part")
        self._file = os.fdopen(fd, "wb")
        self._temp = Path(name)
        self._hash = hashlib.sha256()
        if self.progress is not None and self.written:
            self.progress(-self.written)  # a retry starts over
        self.written = 0

    def write(self, chunk: bytes) -> None:
        """Append one chunk (hashed and counted)."""
        assert self._file is not None
        self._file.write(chunk)
        self._hash.update(chunk)
        self.written += len(chunk)
        if self.progress is not None:
            self.progress(len(chunk))

    def commit(self) -> Path:
        """Check size and sha256, make the bytes durable, rename into place; DigestMismatch otherwise."""
        assert self._file is not None and self._temp is not None
        digest = self._hash.hexdigest()
        wrong = []
        if self.size is not None and self.written != self.size:
            wrong.append(f"{self.written} bytes received, {self.size} expected")
        if self.sha256 is not None and digest != self.sha256.lower():
            wrong.append(f"sha256 {digest} received, {self.sha256} expected")
        if wrong:
            self.discard()
            raise DigestMismatch(
                Problem(
                    title="download does not match its artifact",
                    detail=f"{self.target.name}: {'; '.join(wrong)}; nothing was kept",
                )
            )
        if self.fsync:  # durable: the bytes are on disk before the name says they are there
            self._file.flush()
            os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        os.replace(self._temp, self.target)  # atomic: the target is whole or absent, never partial
        self._temp = None
        if self.fsync:
            _fsync_dir(self.target.parent)
        return self.target

    def discard(self) -> None:
        """Drop the temp file (nothing is left behind)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._temp is not None:
            self._temp.unlink(missing_ok=True)
            self._temp = None


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (best effort: some file systems refuse to open directories)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class BackgroundWriter:
    """Writes a sink's chunks from a second thread, so hashing and disk writes overlap the network.

    ``hashlib`` and file writes release the GIL on large buffers, so the receiving thread keeps
    reading the socket while this one hashes and writes. At most ``depth`` chunks wait in between.
    """

    def __init__(self, sink: Sink, depth: int = 8) -> None:
        import queue
        import threading

        self._sink = sink
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fleet-sink", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._sink.write(chunk)
                except BaseException as exc:  # handed to the receiving thread in ``close``
                    self._error = exc

    def write(self, chunk: bytes) -> None:
        """Queue a chunk (blocks while ``depth`` chunks wait); raises an earlier write's error."""
        if self._error is not None:
            raise self._error
        self._queue.put(chunk)

    def close(self) -> None:
        """Wait until every queued chunk is written; raise the first write error, if any."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
