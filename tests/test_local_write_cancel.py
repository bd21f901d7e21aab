"""A local write that commits nothing leaves no temp behind: cancelled, refused or cut short.

The temps (the bytes' and the sidecar's) are made by worker threads; a cancel can land while one
is at it.

Each scenario runs in its own event loop (``asyncio.run``): closing it waits for the default
executor's threads, so the directory is looked at only once the write's thread has ended too,
which a task's end alone does not promise.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from fleet_artifacts.core.errors import Conflict, PayloadTooLarge, Unavailable
from fleet_artifacts.stores.local_files import BlobMeta
from fleet_artifacts.stores.local_writes import SMALL_BODY, write_blob

CHUNK = 1024 * 1024
BODY_CHUNKS = SMALL_BODY // CHUNK + 2  # past SMALL_BODY: the streamed path, whose _start makes the temp


async def _body() -> AsyncIterator[bytes]:
    for index in range(BODY_CHUNKS):
        yield bytes([index]) * CHUNK


@contextlib.asynccontextmanager
async def _no_lock() -> AsyncIterator[None]:
    yield


async def _write(locate_target: Path, *, entered: threading.Event, release: threading.Event) -> None:
    def locate() -> Path:  # runs in the worker thread, as _start's first step
        entered.set()
        assert release.wait(timeout=10), "the test never released locate"
        return locate_target

    await write_blob(
        locate,
        _body(),
        BlobMeta(content_type="application/octet-stream", sha256=""),
        max_bytes=10 * SMALL_BODY,
        locked=_no_lock,
        guard=None,
        fsync=False,
    )


def test_a_streamed_write_still_commits_its_blob(tmp_path: Path) -> None:
    target = tmp_path / "blobs" / "blob"
    target.parent.mkdir(parents=True)
    release = threading.Event()
    release.set()
    asyncio.run(_write(target, entered=threading.Event(), release=release))
    assert sorted(p.name for p in target.parent.iterdir()) == ["blob", "blob.meta"]
    assert target.stat().st_size == BODY_CHUNKS * CHUNK


def test_a_cancel_while_the_temp_is_made_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "blobs" / "blob"
    target.parent.mkdir(parents=True)
    entered, release = threading.Event(), threading.Event()

    async def scenario() -> None:
        task = asyncio.create_task(_write(target, entered=entered, release=release))
        try:
            assert await asyncio.to_thread(entered.wait, 10), "the write never reached locate"
            task.cancel()
            # Lets the cancel land in the task while its thread is still held in locate.
            for _ in range(3):
                await asyncio.sleep(0)
        finally:
            release.set()  # the thread now makes the temp and writes the head into it
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())  # returns once the executor's threads have ended
    assert sorted(p.name for p in target.parent.iterdir()) == []


async def _refused(
    target: Path, *, body: AsyncIterator[bytes], max_bytes: int, guard_says: str | None
) -> None:
    async def guard() -> None:
        if guard_says is not None:
            raise Conflict(guard_says)

    await write_blob(
        lambda: target,
        body,
        BlobMeta(content_type="application/octet-stream", sha256=""),
        max_bytes=max_bytes,
        locked=_no_lock,
        guard=guard,
        fsync=False,
    )


async def _cut_short() -> AsyncIterator[bytes]:
    """A body past the head (the streamed path has made its temp) that then ends in an error."""
    async for chunk in _body():
        yield chunk
    raise RuntimeError("the body ended in an error")


@pytest.mark.parametrize(
    ("body", "max_bytes", "guard_says", "raised"),
    [
        (_body, 10 * SMALL_BODY, "the job is sealed", Conflict),  # streamed, refused at the commit
        (_cut_short, 10 * SMALL_BODY, None, RuntimeError),  # the body ends in an error past its head
        (_body, SMALL_BODY + CHUNK, None, PayloadTooLarge),  # too large, found while it is spooled
    ],
    ids=["streamed-refused", "cut-short", "too-large"],
)
def test_a_streamed_write_that_commits_nothing_leaves_no_temp(
    tmp_path: Path,
    body: Callable[[], AsyncIterator[bytes]],
    max_bytes: int,
    guard_says: str | None,
    raised: type[Exception],
) -> None:
    """Each case fails after the streamed path made its temp: the temp goes with the write."""
    target = tmp_path / "blobs" / "blob"
    target.parent.mkdir(parents=True)
    with pytest.raises(raised):
        asyncio.run(_refused(target, body=body(), max_bytes=max_bytes, guard_says=guard_says))
    assert sorted(p.name for p in target.parent.iterdir()) == []


def test_a_whole_write_that_fails_at_the_rename_leaves_no_temp(tmp_path: Path) -> None:
    """A small body whose rename fails (a directory holds the blob's name) takes its temp with it.

    The sidecar lands before the bytes' rename, so it may stay: a sidecar without data is
    invisible (``local_files.commit_files``). No ``.tmp-`` file may.
    """
    target = tmp_path / "blobs" / "blob"
    (target / "in-the-way").mkdir(parents=True)

    async def small() -> AsyncIterator[bytes]:
        yield b"small body"

    with pytest.raises(Unavailable):
        asyncio.run(_refused(target, body=small(), max_bytes=10 * SMALL_BODY, guard_says=None))
    assert [p.name for p in target.parent.iterdir() if p.name.startswith(".tmp-")] == []
    assert sorted(p.name for p in target.iterdir()) == ["in-the-way"]
