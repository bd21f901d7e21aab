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
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fleet_artifacts.core.errors import Conflict, PayloadTooLarge
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
    yield b"x" * CHUNK
    raise RuntimeError("the body ended in an error")


@pytest.mark.parametrize(
    ("body", "max_bytes", "guard_says", "raised"),
    [
        (_body, 10 * SMALL_BODY, "the job is sealed", Conflict),  # streamed, refused at the commit
        (lambda: _cut_short(), 10 * SMALL_BODY, None, RuntimeError),  # the body ends in an error
        (_body, 3 * CHUNK, None, PayloadTooLarge),  # too large, found while the head arrives
        (lambda: _small(), 10 * SMALL_BODY, "the job is sealed", Conflict),  # whole body, refused
    ],
    ids=["streamed-refused", "cut-short", "too-large", "whole-refused"],
)
def test_a_write_that_commits_nothing_leaves_no_temp(
    tmp_path: Path, body: Any, max_bytes: int, guard_says: str | None, raised: type[Exception]
) -> None:
    """The temps made as the body started go with a write refused or failed at any step."""
    target = tmp_path / "blobs" / "blob"
    target.parent.mkdir(parents=True)
    with pytest.raises(raised):
        asyncio.run(_refused(target, body=body(), max_bytes=max_bytes, guard_says=guard_says))
    assert sorted(p.name for p in target.parent.iterdir()) == []


async def _small() -> AsyncIterator[bytes]:
    yield b"small body"
