"""Multi-step operations written once, as generators both clients drive (sans-IO).

A flow yields steps (a ``Call``, a ``BlobWrite`` to a direct upload's URL, a ``Fetch``
into a ``Sink``) and receives each step's result; a failed step is thrown back into it
as a ``FleetError``. ``Client`` runs the steps with blocking I/O, ``AsyncClient`` with
awaits: the decisions (which upload path, what to verify, what to clean up) live here.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import fleet_artifacts.client.calls as calls
import fleet_artifacts.client.jobcalls as jobcalls
from fleet_artifacts.client.calls import Call
from fleet_artifacts.client.errors import DigestMismatch, FleetError
from fleet_artifacts.client.kinds import guess_kind
from fleet_artifacts.client.models import Problem, UploadSession
from fleet_artifacts.client.sources import Progress, Sink, Source
from fleet_artifacts.core.models import ArtifactOut, UploadTicket

T = TypeVar("T")
MiB = 1024 * 1024
Form = Literal["auto", "raw", "direct", "multipart", "envelope", "resumable"]
ENVELOPE = "application/vnd.fleet-artifact+json"


@dataclass(frozen=True)
class UploadOptions:
    """How uploads choose their path and size their pieces.

    Attributes:
        direct_threshold: files this large or larger go straight to Blob Storage (when offered).
        direct_concurrency: blocks in flight to Blob Storage per direct upload.
        block_size: bytes per staged block of a direct upload.
        session_chunk: bytes per chunk of a resumable upload.
        verify: ask finalize to hash the blob even past the service's VERIFY_MAX_BYTES.
    """

    direct_threshold: int = 64 * MiB
    direct_concurrency: int = 4
    block_size: int = 8 * MiB
    session_chunk: int = 8 * MiB
    verify: bool = False


@dataclass
class BlobWrite:
    """Write a source to a direct upload's URL with the Azure SDK (staged blocks in parallel)."""

    url: str
    source: Source
    content_type: str
    concurrency: int
    block_size: int


@dataclass
class Fetch:
    """GET ``url`` into ``sink`` (checked and renamed into place, or discarded)."""

    url: str
    sink: Sink
    authorized: bool = False  # signed URLs carry their own authority: the token never goes there
    params: list[tuple[str, str]] = field(default_factory=list)


Step = Call[Any] | BlobWrite | Fetch
Flow = Generator[Step, Any, T]


@dataclass(frozen=True)
class Meta:
    """What the caller says about an artifact (kind None: guessed from the file name)."""

    file_name: str
    kind: str | None = None
    run_id: str | None = None
    content_type: str | None = None
    tags: dict[str, str] | None = None
    retention_days: int | None = None
    keep_forever: bool = False

    def fields(self) -> dict[str, Any]:
        """Keyword arguments of ``calls.meta_json``."""
        return {
            "run_id": self.run_id,
            "content_type": self.content_type,
            "tags": self.tags,
            "retention_days": self.retention_days,
            "keep_forever": self.keep_forever,
        }

    @property
    def resolved_kind(self) -> str:
        """The kind given, else the one the file name suggests."""
        return self.kind or guess_kind(self.file_name).value


def upload(
    job_id: str, source: Source, meta: Meta, *, key: str, form: Form, options: UploadOptions
) -> Flow[ArtifactOut]:
    """Upload one artifact by the path ``form`` names; ``auto`` picks direct for large files."""
    kind = meta.resolved_kind
    body = calls.meta_json(kind, meta.file_name, **meta.fields())
    chosen = form
    if form == "auto":
        large = source.size is not None and source.size >= options.direct_threshold
        chosen = "direct" if large else "raw"
    if chosen == "direct":
        try:
            ticket: UploadTicket = yield calls.start_direct(job_id, body, source.size, key)
        except FleetError as exc:
            # A service without direct uploads (an older one, or a proxy in front refusing it).
            if form != "auto" or exc.status not in (404, 405, 501):
                raise
        else:
            content_type = meta.content_type or ticket.content_type
            yield BlobWrite(
                ticket.upload_url, source, content_type, options.direct_concurrency, options.block_size
            )
            out: ArtifactOut = yield calls.finalize(
                job_id, ticket.id, source.sent, source.sha256, options.verify
            )
            return out
        chosen = "raw"
    if chosen == "resumable":
        return (yield from _resumable(job_id, source, body, key=key, options=options))
    if chosen == "envelope":
        data = b"".join(source.chunks())
        payload = {**body, "content": base64.b64encode(data).decode("ascii")}
        created: calls.Made = yield calls.upload_json(job_id, payload, key, ENVELOPE)
    elif chosen == "multipart":
        created = yield calls.upload_multipart(job_id, body, source, key)
    else:
        # The content type travels as the body's Content-Type header, not in the query.
        query = {name: value for name, value in body.items() if name != "contentType"}
        params = calls.meta_pairs(query, tag_field="tag")
        created = yield calls.upload_raw(job_id, params, source, key, meta.content_type)
    if source.size is None or source.sent == source.size:  # a replay need not have read the body
        yield from _check_stored(job_id, created.artifact, source, replayed=created.replayed)
    return created.artifact


def _check_stored(job_id: str, out: ArtifactOut, source: Source, *, replayed: bool = False) -> Flow[None]:
    """The service stored what was sent, or the artifact is removed and DigestMismatch raised.

    A replayed create (the Idempotency-Key made an artifact before) is never removed: it is
    another upload's artifact, and the key was reused for other bytes.
    """
    if out.sha256 == source.sha256 and out.size_bytes == source.sent:
        return
    if replayed:
        raise DigestMismatch(
            Problem(
                title="the Idempotency-Key already made another artifact",
                detail=f"{out.file_name}: the key answered with artifact {out.id} ({out.size_bytes} bytes, "
                f"sha256 {out.sha256}), not these bytes; that artifact was kept: use a new key",
            )
        )
    # The mismatch is the error to report; should the delete fail too, the leftover is the sweeper's.
    with contextlib.suppress(FleetError):
        yield calls.delete(out.id, job_id, purge=True)
    raise DigestMismatch(
        Problem(
            title="stored artifact does not match what was sent",
            detail=f"{out.file_name}: sent {source.sent} bytes with sha256 {source.sha256}, the service "
            f"stored {out.size_bytes} bytes with sha256 {out.sha256}; the artifact was deleted",
        )
    )


def _resumable(
    job_id: str, source: Source, body: dict[str, Any], *, key: str, options: UploadOptions
) -> Flow[ArtifactOut]:
    """Open a session, send the body chunk by chunk (each retried on its own), complete it."""
    session: UploadSession = yield jobcalls.open_session({**body, "jobId": job_id}, source.size, key)
    reader = source.reader()
    offset = 0
    try:
        chunk = reader.read(options.session_chunk)
        while chunk:
            ahead = reader.read(options.session_chunk)
            # A stream of unknown size says its total with its last chunk, so complete can commit.
            total = source.size if source.size is not None or ahead else offset + len(chunk)
            yield jobcalls.session_chunk(session.id, offset, Source(chunk), total)
            offset += len(chunk)
            chunk = ahead
    finally:
        reader.close()
    out: ArtifactOut = yield jobcalls.session(session.id, "complete")
    yield from _check_stored(job_id, out, source)
    return out


def download(
    artifact: ArtifactOut | str,
    dest: Path,
    *,
    job_id: str | None,
    progress: Progress | None,
    fsync: bool = False,
    now: datetime | None = None,
) -> Flow[Path]:
    """Fetch a fresh pointer if needed, stream its bytes into ``dest``, verify size and sha256."""
    if isinstance(artifact, str) or calls.expired(artifact.download_url_expires_at, now or datetime.now(UTC)):
        artifact_id = artifact if isinstance(artifact, str) else artifact.id
        artifact = yield calls.get(artifact_id, job_id, None, None)
    assert not isinstance(artifact, str)
    if artifact.download_url is None:
        raise FleetError(
            Problem(
                status=409,
                title="artifact not readable now",
                detail=f"{artifact.file_name} ({artifact.id}) is {artifact.status.value}: "
                f"{artifact.reason or 'no download URL'}",
            )
        )
    target = dest / artifact.file_name if dest.is_dir() else dest
    sink = Sink(target, sha256=artifact.sha256, size=artifact.size_bytes, progress=progress, fsync=fsync)
    yield Fetch(artifact.download_url, sink)
    return target
