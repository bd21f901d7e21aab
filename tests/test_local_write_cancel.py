"""A streamed local write cancelled while its worker thread makes the temp leaves no file behind.

Each scenario runs in its own event loop (``asyncio.run``): closing it waits for the default
executor's threads, so the directory is looked at only once the write's thread has ended too,
which a task's end alone does not promise.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

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
