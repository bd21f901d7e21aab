"""The job journal: artifact events and per-job totals, written with the pointer change they describe.

Every pointer change a reader could notice (an artifact appears, goes, is archived, restored,
undeleted or changed) makes one ``Event``. The pointer store writes the event, and applies its
``JobDelta`` to the job's totals (``JobState``), in the same unit of work as the pointer change
(SQLite: one transaction; Cosmos: one transactional batch in the job's partition). So the event
feed never shows a change that did not happen nor misses one that did, and a sealed job refuses
a new artifact atomically: the store checks the seal in that same unit of work.

``event_of`` is the one place that decides which change is which event.
"""

from __future__ import annotations

import enum
from datetime import datetime

import msgspec

from fleet_artifacts.core.models import VISIBLE, ArtifactKind, ArtifactStatus, Pointer


class EventType(enum.StrEnum):
    """What happened (the feed's ``type``)."""

    CREATED = "artifact.created"
    DELETED = "artifact.deleted"  # hidden: deleted (soft or not), expired, or purged
    UNDELETED = "artifact.undeleted"
    ARCHIVED = "artifact.archived"
    RESTORING = "artifact.restoring"
    RESTORED = "artifact.restored"
    UPDATED = "artifact.updated"  # retention, tags or tier changed
    SEALED = "job.sealed"


class EntryOut(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """An artifact as a manifest and an event describe it: what it is, never where its bytes are."""

    id: str
    file_name: str
    kind: ArtifactKind
    run_id: str | None
    size_bytes: int
    sha256: str | None
    content_type: str
    created_at: datetime

    @classmethod
    def of(cls, pointer: Pointer) -> EntryOut:
        """The entry of a pointer."""
        return cls(
            id=pointer.id,
            file_name=pointer.file_name,
            kind=pointer.kind,
            run_id=pointer.run_id,
            size_bytes=pointer.size_bytes,
            sha256=pointer.sha256,
            content_type=pointer.content_type,
            created_at=pointer.created_at,
        )


class JobDelta(msgspec.Struct, frozen=True):
    """How an event changes its job's totals (counted: the visible artifacts)."""

    artifacts: int = 0
    bytes: int = 0
    uploaded: bool = False  # a new artifact: lastUploadAt moves to the event's time


class Event(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """One journal entry: a change of one artifact (or of its job), as stored."""

    id: str  # unique; the event's identity in the store
    type: EventType
    product_id: str
    job_id: str
    artifact_id: str | None = None
    at: datetime
    artifact: EntryOut | None = None
    delta: JobDelta = msgspec.field(default_factory=JobDelta)

    @property
    def grows(self) -> bool:
        """Whether the event adds an artifact to its job (which a sealed job refuses)."""
        return self.delta.artifacts > 0


class EventOut(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """An event as the feed serves it, with the cursor that resumes right after it."""

    cursor: str
    type: EventType
    product_id: str
    job_id: str
    artifact_id: str | None
    at: datetime
    artifact: EntryOut | None


class StoredEvent(msgspec.Struct, frozen=True):
    """An event as read back, with its position in the store's order."""

    event: Event
    cursor: str


class EventPage(msgspec.Struct, frozen=True):
    """Events after a cursor, oldest first, and the cursor to continue from (even when empty)."""

    items: list[StoredEvent]
    next: str


class EventPageOut(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """The feed's answer."""

    items: list[EventOut]
    next: str


class JobState(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """One product's view of one job: its totals, its last upload and its seal."""

    product_id: str
    job_id: str
    artifact_count: int = 0
    total_bytes: int = 0
    last_upload_at: datetime | None = None
    sealed_at: datetime | None = None
    version: int = 0  # bumped by every change: newer totals win where copies are kept

    @property
    def sealed(self) -> bool:
        """Whether the job takes no new artifact."""
        return self.sealed_at is not None

    def applied(self, event: Event) -> JobState:
        """The totals after ``event`` (the one arithmetic every store mirrors)."""
        delta = event.delta
        return msgspec.structs.replace(
            self,
            artifact_count=max(0, self.artifact_count + delta.artifacts),
            total_bytes=max(0, self.total_bytes + delta.bytes),
            last_upload_at=event.at if delta.uploaded else self.last_upload_at,
            sealed_at=event.at if event.type is EventType.SEALED and not self.sealed else self.sealed_at,
            version=self.version + 1,
        )


class JobOut(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """A job as the job listing serves it."""

    job_id: str
    artifact_count: int
    total_bytes: int
    last_upload_at: datetime | None
    sealed: bool
    sealed_at: datetime | None

    @classmethod
    def of(cls, state: JobState) -> JobOut:
        """The listing entry of a job."""
        return cls(
            job_id=state.job_id,
            artifact_count=state.artifact_count,
            total_bytes=state.total_bytes,
            last_upload_at=state.last_upload_at,
            sealed=state.sealed,
            sealed_at=state.sealed_at,
        )


class JobPage(msgspec.Struct, frozen=True):
    """One page of a product's jobs, most recently active first."""

    items: list[JobState]
    continuation: str | None


class JobPageOut(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """The job listing's answer."""

    items: list[JobOut]
    continuation_token: str | None = None


class Manifest(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Every ACTIVE artifact of a job, oldest first: what a job digest is computed over."""

    product_id: str
    job_id: str
    sealed: bool
    artifacts: list[EntryOut]


class SealOut(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """A sealed job."""

    job_id: str
    sealed: bool
    sealed_at: datetime


def _counted(pointer: Pointer | None) -> bool:
    return pointer is not None and pointer.status in VISIBLE


_ONLINE_MOVES = {
    ArtifactStatus.ARCHIVED: EventType.ARCHIVED,
    ArtifactStatus.RESTORING: EventType.RESTORING,
}


def event_of(old: Pointer | None, new: Pointer | None, *, at: datetime, event_id: str) -> Event | None:
    """The event a pointer change makes (None: a change no reader can notice).

    ``old`` None: the pointer is new; ``new`` None: it is removed. Unfinished uploads and
    removals already announced (DELETING, DELETED -> gone) make none.
    """
    before, after = _counted(old), _counted(new)
    subject = new if new is not None else old
    if subject is None:
        return None
    kind: EventType | None
    if not before and after:
        assert new is not None
        was_deleted = old is not None and old.status is ArtifactStatus.DELETED
        kind = EventType.UNDELETED if was_deleted else EventType.CREATED
    elif before and not after:
        kind = EventType.DELETED
    elif before and after:
        assert old is not None and new is not None
        if new.status is old.status:
            kind = EventType.UPDATED if new != old else None
        elif new.status is ArtifactStatus.ACTIVE:
            kind = EventType.RESTORED
        else:
            kind = _ONLINE_MOVES.get(new.status)
    else:
        kind = None
    if kind is None:
        return None
    sign = (1 if after else 0) - (1 if before else 0)
    delta = JobDelta(artifacts=sign, bytes=sign * subject.size_bytes, uploaded=kind is EventType.CREATED)
    return Event(
        id=event_id,
        type=kind,
        product_id=subject.product_id,
        job_id=subject.job_id,
        artifact_id=subject.id,
        at=at,
        artifact=EntryOut.of(subject),
        delta=delta,
    )


def seal_event(product_id: str, job_id: str, *, at: datetime, event_id: str) -> Event:
    """The event of sealing a job."""
    return Event(id=event_id, type=EventType.SEALED, product_id=product_id, job_id=job_id, at=at)
