"""Resumable upload sessions: chunks in any order, across restarts, then one commit.

    POST   /uploads                 open a session (JSON metadata), answers its id and URL
    PATCH  /uploads/{id}            one chunk, placed by ``Content-Range: bytes a-b/total|*``
    GET    /uploads/{id}            bytes received and the ranges still missing
    POST   /uploads/{id}/complete   commit the chunks in order and create the artifact
    DELETE /uploads/{id}            abort: drop the session and its staged bytes

State lives in the pointer store (an ``UploadSession`` record in the job's
partition) and the bytes in the blob store as staged, uncommitted blocks, so a
session survives a restart of the service and any replica can take the next
chunk. The session id carries its job id, so every call is a point read.

A chunk must either repeat a stored chunk exactly (same start and length: the
same bytes answer as before, other bytes are a 409) or touch no stored byte;
a chunk that overlaps stored ranges partially is a 409 too, since bytes already
staged cannot be read back to compare.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import re
import secrets
from collections.abc import AsyncIterable

import msgspec

from fleet_artifacts.core.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge, PreconditionFailed
from fleet_artifacts.core.kernel import Kernel
from fleet_artifacts.core.keys import blob_key
from fleet_artifacts.core.models import ArtifactOut, SessionOpen
from fleet_artifacts.core.ports import SessionChunk, UploadSession
from fleet_artifacts.core.retention import RetentionRules, carried, new_pointer
from fleet_artifacts.core.validation import check_id, checked_meta

_CONTENT_RANGE = re.compile(r"bytes (\d{1,19})-(\d{1,19})/(\d{1,19}|\*)")


class ByteRange(msgspec.Struct, array_like=True):
    """An inclusive byte range, as in Content-Range."""

    first: int
    last: int


def public_id(job_id: str, record_id: str) -> str:
    """The session id clients use: the job (for point reads) and the record, URL-safe."""
    return base64.urlsafe_b64encode(job_id.encode()).decode().rstrip("=") + "." + record_id


def parse_public_id(session_id: str) -> tuple[str, str]:
    """Split a client's session id; NotFound for anything this service did not issue."""
    encoded, _, record_id = session_id.partition(".")
    try:
        job_id = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
        check_id(job_id, "jobId")
    except (binascii.Error, UnicodeDecodeError, ValueError, InvalidInput):
        raise NotFound("upload session not found") from None
    if not re.fullmatch(r"us-[0-9a-f]{32}", record_id):
        raise NotFound("upload session not found")
    return job_id, record_id


def parse_content_range(header: str | None) -> tuple[int, int, int | None]:
    """``bytes a-b/total`` or ``bytes a-b/*`` -> (first, last, total or None)."""
    found = _CONTENT_RANGE.fullmatch((header or "").strip())
    if not found:
        raise InvalidInput(
            "a chunk needs Content-Range: bytes <first>-<last>/<total or *>", field="Content-Range"
        )
    first, last = int(found[1]), int(found[2])
    total = None if found[3] == "*" else int(found[3])
    if last < first or (total is not None and last >= total):
        raise InvalidInput("Content-Range is not a range within the total", field="Content-Range")
    return first, last, total


def missing_ranges(chunks: list[SessionChunk], total: int | None) -> list[ByteRange]:
    """Gaps between received chunks (up to the total, when known)."""
    gaps: list[ByteRange] = []
    position = 0
    for chunk in sorted(chunks, key=lambda c: c.start):
        if chunk.start > position:
            gaps.append(ByteRange(position, chunk.start - 1))
        position = max(position, chunk.start + chunk.length)
    if total is not None and position < total:
        gaps.append(ByteRange(position, total - 1))
    return gaps


class SessionService:
    """Opens, fills, completes and aborts resumable upload sessions."""

    def __init__(self, kernel: Kernel) -> None:
        """Keep sessions ``limits.session_ttl`` after opening; artifacts up to the upload limit."""
        self.kernel = kernel
        self._blobs = kernel.blobs
        self._pointers = kernel.pointers
        self._max = kernel.limits.max_upload_bytes
        self.rules = RetentionRules(kernel)

    async def open(
        self, product_id: str, request: SessionOpen, *, key: str | None = None
    ) -> tuple[UploadSession, bool]:
        """Open a resumable upload session (once per Idempotency-Key ``key``); ``(session, replayed)``."""
        meta = checked_meta(request)
        self.rules.check(meta)
        if request.size_bytes is not None:
            if request.size_bytes < 0:
                raise InvalidInput("sizeBytes cannot be negative", field="sizeBytes")
            self.kernel.check_size(request.size_bytes)
        job_id = check_id(request.job_id, "jobId")
        retention = await self.rules.resolve(product_id, job_id, meta)
        now = self.kernel.now()
        artifact_id = self.kernel.new_id()
        session = UploadSession(
            **(
                msgspec.structs.asdict(meta)
                | {"retention_days": retention.days, "keep_forever": retention.keep_forever}
            ),
            id="us-" + secrets.token_hex(16),
            job_id=job_id,
            product_id=product_id,
            artifact_id=artifact_id,
            blob_key=blob_key(product_id, job_id, artifact_id, meta.kind),
            total_bytes=request.size_bytes,
            created_at=now,
            expires_at=now + self.kernel.limits.session_ttl,
        )

        async def create() -> UploadSession:
            await self.kernel.check_open(product_id, job_id)
            await self._pointers.put_record(session, etag=None)
            return session

        async def replay(session_id: str) -> UploadSession:
            return (await self.load(product_id, session_id))[0]

        async def undo(made: UploadSession) -> None:
            await self.abort(product_id, public_id(made.job_id, made.id))

        return await self.kernel.idempotency.run(
            product_id=product_id,
            job_id=job_id,
            key=key,
            operation="session",
            request={**meta.request_fields(), "sizeBytes": request.size_bytes},
            create=create,
            created_id=lambda made: public_id(made.job_id, made.id),
            replay=replay,
            undo=undo,
        )

    async def load(self, product_id: str, session_id: str) -> tuple[UploadSession, str]:
        """The caller's live session and its etag; NotFound otherwise (another product's too)."""
        job_id, record_id = parse_public_id(session_id)
        stored = await self._pointers.get_record(job_id, record_id, UploadSession)
        if (
            stored is None
            or stored.record.product_id != product_id
            or stored.record.expires_at <= self.kernel.now()
        ):
            raise NotFound("upload session not found")
        return stored.record, stored.etag

    async def put_chunk(
        self, product_id: str, session_id: str, content_range: str | None, body: AsyncIterable[bytes]
    ) -> UploadSession:
        """Stage one chunk and record it; a repeated chunk with the same bytes is a no-op."""
        first, last, total = parse_content_range(content_range)
        length = last - first + 1
        session, _ = await self.load(product_id, session_id)
        if session.completed:
            raise Conflict("the session was completed; its artifact takes no more bytes")
        if total is not None and session.total_bytes is not None and total != session.total_bytes:
            raise Conflict(f"the session's total is {session.total_bytes} bytes, not {total}")
        if (total or 0) > self._max or last >= self._max:
            raise PayloadTooLarge(self._max)
        same = _overlap(session.chunks, first, length)
        if same is not None:  # a retry of a stored chunk: compare, never stage twice
            digest, size = await _hash(body, length)
            if (size, digest) != (same.length, same.sha256):
                raise Conflict(f"bytes {first}-{last} were received already, with other content")
            return session
        staged = await self._blobs.stage_chunk(
            session.blob_key, offset=first, nonce=secrets.token_hex(4), chunks=body, max_bytes=length
        )
        if staged.size_bytes != length:
            raise InvalidInput(
                f"Content-Range announces {length} bytes but the body had {staged.size_bytes}",
                field="Content-Range",
            )
        chunk = SessionChunk(first, length, staged.sha256, staged.block_ids)
        for _ in range(5):  # another chunk may have landed meanwhile: merge, compare-and-swap
            session, etag = await self.load(product_id, session_id)
            same = _overlap(session.chunks, first, length)
            if same is not None:
                if same.sha256 != chunk.sha256:
                    raise Conflict(f"bytes {first}-{last} were received already, with other content")
                return session
            if session.total_bytes is not None and total is not None and total != session.total_bytes:
                raise Conflict(f"the session's total is {session.total_bytes} bytes, not {total}")
            updated = msgspec.structs.replace(
                session,
                chunks=sorted([*session.chunks, chunk], key=lambda c: c.start),
                total_bytes=session.total_bytes if session.total_bytes is not None else total,
            )
            try:
                await self._pointers.put_record(updated, etag=etag)
            except PreconditionFailed:
                continue
            return updated
        raise Conflict("the session is changing too fast; retry the chunk")

    async def complete(self, product_id: str, session_id: str) -> ArtifactOut:
        """Commit a session's chunks in order as the blob, then create its ACTIVE pointer.

        Completing again answers the same artifact (the session is kept, marked completed,
        until it expires). If the pointer cannot be written, the committed blob is deleted (no
        orphan) and the session must start over.
        """
        session, etag = await self.load(product_id, session_id)
        done = await self.kernel.pointers.get(session.job_id, session.artifact_id)
        if done is not None:  # completed before: never commit again, answer the artifact as it is now
            if not done.pointer.visible_at(self.kernel.now()):
                raise NotFound("the session's artifact was deleted or expired")
            return await self.kernel.present(done)
        if session.total_bytes is None:
            raise Conflict("the total size is unknown: send sizeBytes on open or a chunk with /<total>")
        # Sealed since the session opened: refuse before committing (the store checks again, atomically).
        await self.kernel.check_open(product_id, session.job_id)
        gaps = missing_ranges(session.chunks, session.total_bytes)
        if gaps:
            shown = ", ".join(f"{g.first}-{g.last}" for g in gaps[:5])
            raise Conflict(f"bytes are missing: {shown}{' ...' if len(gaps) > 5 else ''}")
        block_ids = [block for chunk in session.chunks for block in chunk.block_ids]
        retention = carried(
            session.retention_days, session.keep_forever, self.kernel.limits.default_retention_days
        )
        pointer = new_pointer(
            session.meta(),
            retention,
            self.kernel.now(),
            id=session.artifact_id,
            product_id=product_id,
            job_id=session.job_id,
            blob_key=session.blob_key,
        )
        written = await self.kernel.blobs.commit_chunks(
            session.blob_key,
            block_ids,
            content_type=session.content_type,
            max_bytes=self._max,
            tags=self.kernel.blob_tags(pointer),
        )
        pointer = msgspec.structs.replace(pointer, size_bytes=written.size_bytes, sha256=written.sha256)
        # A concurrent complete of the same session may have made it: the same artifact then.
        made = await self.kernel.commit_pointer(pointer, concurrent_ok=True)
        # Kept, marked completed, until it expires: a retried complete answers this artifact.
        with contextlib.suppress(PreconditionFailed, NotFound):
            await self.kernel.pointers.put_record(msgspec.structs.replace(session, completed=True), etag=etag)
        return await self.kernel.present(made)

    async def abort(self, product_id: str, session_id: str) -> None:
        """Drop the session and whatever it staged (a completed session: only the session)."""
        session, etag = await self.load(product_id, session_id)
        if not session.completed:  # a completed session's blocks are its artifact now
            await self._blobs.discard_uncommitted(session.blob_key)
        await self._pointers.delete_record(session.job_id, session.id, etag=etag)


def _overlap(chunks: list[SessionChunk], first: int, length: int) -> SessionChunk | None:
    """The stored chunk this one repeats exactly; Conflict on a partial overlap; None if disjoint."""
    for chunk in chunks:
        if chunk.start < first + length and first < chunk.start + chunk.length:
            if (chunk.start, chunk.length) == (first, length):
                return chunk
            raise Conflict(
                f"bytes {first}-{first + length - 1} overlap the stored range "
                f"{chunk.start}-{chunk.start + chunk.length - 1}; "
                "resend exactly a stored range, or only missing bytes"
            )
    return None


async def _hash(body: AsyncIterable[bytes], limit: int) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    async for piece in body:
        size += len(piece)
        if size > limit:
            break
        digest.update(piece)
    return digest.hexdigest(), size
