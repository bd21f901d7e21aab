"""``GET /fleet/jobs/{jobId}/archive.zip``: a job's artifacts as one zip, written as it streams.

The core plans the archive and reads the blobs (``core.archive``); here each entry becomes a
zip member through stream-zip, and the zip's bytes go to the socket as they are made: no
temporary file, memory flat whatever the job's size. Sizes are known from the pointers, so
``ZIP_AUTO`` writes ZIP64 records where an entry or an offset needs them (past 4 GiB).

stream-zip's async API runs its writer in the event loop's default thread pool, and that
thread waits while the loop reads the next blob chunk (which on the local backend takes a
thread of the same pool). So a process streams at most ``MAX_STREAMS`` archives at once and
answers 503 with Retry-After beyond that, before the pool could fill with writers waiting on
reads that have no thread left (every ``to_thread`` of the process, SQLite's too, would hang).
"""

from __future__ import annotations

import contextlib
import os
import stat
import weakref
from collections.abc import AsyncGenerator
from typing import Annotated

from litestar import get
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromQuery, QueryParameter
from litestar.response import Stream
from stream_zip import ZIP_AUTO, AsyncMemberFile, async_stream_zip

from fleet_artifacts.core.access import Scope
from fleet_artifacts.core.archive import Archive, ArchiveEntry
from fleet_artifacts.core.errors import Unavailable
from fleet_artifacts.core.keys import content_disposition
from fleet_artifacts.core.models import ArtifactKind
from fleet_artifacts.routes.deps import AnyRequest, JobId, context, job, needs
from fleet_artifacts.routes.openapi import problems

ZIP = "application/zip"
SKIPPED = "X-Skipped-Artifacts"
# Deflate levels. Text at 1: the writer is CPU-bound long before a client's network is (about
# 3x the throughput of level 6, for output about 20% larger on CI logs). The rest at 0: "stored"
# blocks inside deflate.
# A true STORE entry cannot be streamed here: its local header must carry the CRC-32 up front, which
# no pointer holds (stream-zip would buffer the whole file to compute it). Level 0 costs 5 bytes per
# 64 KiB block and no compression work.
TEXT_LEVEL = 1
STORED_LEVEL = 0
CHUNK_BYTES = 1024 * 1024  # the writer's output unit: fewer thread hand-offs than its 64 KiB default
FILE_MODE = stat.S_IFREG | 0o644
# A third of asyncio's default pool size (min(32, cpus + 4)): the writers' threads, plus one read
# each on the local backend, leave threads for the rest of the process.
MAX_STREAMS = max(1, min(32, (os.cpu_count() or 1) + 4) // 3)


class _Slot:
    """One archive being streamed: held by its body, so it is counted while that body lives."""


_streaming: weakref.WeakSet[_Slot] = weakref.WeakSet()

ARCHIVE_DESCRIPTION = f"""The job's artifacts (yours; narrowed by `kind` and `runId`) as one zip,
streamed as it is built (no Content-Length; ZIP64 past 4 GiB). Only ACTIVE, unexpired artifacts
are in it, oldest first (createdAt, then id), each named by its fileName made safe to extract
(no path, no reserved character) and unique (`report.txt`, `report (2).txt`), dated by createdAt.
Text and uncompressed data are deflated; images, archives and other binaries are stored.
Archived (or restoring) artifacts are left out; `{SKIPPED}` says how many (409 if that is all of
them). Nothing matching: 404. An artifact deleted while the archive streams is left out if its
turn had not come; a blob that fails part-way cuts the transfer short (an incomplete download,
never a complete-looking zip). 503 with Retry-After when this replica is streaming as many
archives as it allows."""


@get(
    "/jobs/{job_id:str}/archive.zip",
    operation_id="downloadJobArchive",
    media_type=ZIP,
    **needs(Scope.READ),
    responses={
        200: ResponseSpec(
            data_container=bytes, media_type=ZIP, description="the zip, streamed", generate_examples=False
        ),
        **problems(400, 401, 403, 404, 409, 503),
    },
    description=ARCHIVE_DESCRIPTION,
)
async def job_archive(
    request: AnyRequest,
    job_id: JobId,
    kind: FromQuery[ArtifactKind | None] = None,
    run_id: Annotated[str | None, QueryParameter(name="runId")] = None,
) -> Stream:
    """Download a job's artifacts as one zip."""
    ctx = context(request)
    archive = await ctx.services.archives.open(ctx.product, job(job_id), kind=kind, run_id=run_id)
    if len(_streaming) >= MAX_STREAMS:
        raise Unavailable("this replica streams as many archives as it allows; retry later", retry_after=10)
    slot = _Slot()
    _streaming.add(slot)  # weakly: a body never iterated (the client left first) frees it when collected
    return Stream(
        zipped(archive, slot),
        media_type=ZIP,
        headers={
            "Content-Disposition": content_disposition(f"{archive.job_id}.zip"),
            "Cache-Control": "private, no-store",
            "X-Content-Type-Options": "nosniff",
            SKIPPED: str(archive.skipped),
        },
    )


def member(entry: ArchiveEntry) -> AsyncMemberFile:
    """An archive entry as a stream-zip member: deflated if text, stored otherwise."""
    method = ZIP_AUTO(entry.size_bytes, level=TEXT_LEVEL if entry.compress else STORED_LEVEL)
    return entry.name, entry.modified_at, FILE_MODE, method, entry.chunks


async def zipped(archive: Archive, slot: _Slot | None = None) -> AsyncGenerator[bytes, None]:
    """The archive's zip bytes; an entry that fails raises here, which cuts the response short."""
    entries = archive.entries()

    async def members() -> AsyncGenerator[AsyncMemberFile, None]:
        async for entry in entries:
            yield member(entry)

    try:
        async for chunk in async_stream_zip(members(), chunk_size=CHUNK_BYTES):
            yield chunk
    finally:
        # Stopped part-way (an error, or the client left): release the blob being read.
        with contextlib.suppress(RuntimeError):  # still running in the writer's thread: GC closes it
            await entries.aclose()
        if slot is not None:
            _streaming.discard(slot)
