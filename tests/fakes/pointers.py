"""``MemoryPointerStore``: the pointer port in dicts, with the semantics of ``SqlitePointerStore``."""

from __future__ import annotations

import base64
import builtins
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec

from fleet_artifacts.core.errors import Conflict, InvalidInput, NotFound, PreconditionFailed
from fleet_artifacts.core.journal import Event, EventPage, JobPage, JobState
from fleet_artifacts.core.models import ArtifactStatus, BlobTier, Pointer
from fleet_artifacts.core.ports import (
    ListQuery,
    PointerPage,
    PointerStore,
    R,
    SideRecord,
    StoredPointer,
    StoredRecord,
)
from tests.fakes.journal import MemoryJournal
from tests.fakes.turns import Probe
from tests.fakes.turns import turn as _turn

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_encoder = msgspec.json.Encoder()
_sorted_encoder = msgspec.json.Encoder(order="sorted")  # tags in any order name one query
_pointer_decoder = msgspec.json.Decoder(Pointer)


def _micros(pointer: Pointer) -> int:
    # As in SqlitePointerStore: integers order exactly, and a naive created_at fails the same way.
    return (pointer.created_at - _EPOCH) // timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class _PointerRow:
    job_id: str
    created_us: int
    etag: str
    doc: bytes

    def stored(self) -> StoredPointer:
        return StoredPointer(_pointer_decoder.decode(self.doc), self.etag)


@dataclass(frozen=True, slots=True)
class _RecordRow:
    kind: str  # the record class's name, as the real adapters store it
    etag: str
    doc: bytes

    def stored(self, kind: type[R]) -> StoredRecord[R]:
        return StoredRecord(msgspec.json.decode(self.doc, type=kind), self.etag)


class _Cursor(msgspec.Struct, array_like=True, frozen=True):
    """Keyset position after a page's last item, bound to the query that issued it."""

    query: str
    created_us: int
    id: str

    def encode(self) -> str:
        return base64.urlsafe_b64encode(_encoder.encode(self)).decode().rstrip("=")

    @staticmethod
    def decode(token: str, fingerprint: str) -> tuple[int, str]:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            cursor = msgspec.json.decode(raw, type=_Cursor)
        except (ValueError, msgspec.DecodeError):
            cursor = None
        if cursor is None or cursor.query != fingerprint:
            raise InvalidInput(
                "continuationToken is not one this service issued for this query", field="continuationToken"
            )
        return cursor.created_us, cursor.id


def _fingerprint(query: ListQuery) -> str:
    """Everything in a query but its page size and position: a token resumes only the same listing."""
    shape = msgspec.structs.replace(
        query, limit=0, continuation=None, statuses=tuple(sorted(set(query.statuses)))
    )
    return hashlib.sha256(_sorted_encoder.encode(shape)).hexdigest()[:16]


def _matches(pointer: Pointer, query: ListQuery) -> bool:
    return (
        pointer.job_id == query.job_id
        and pointer.product_id == query.product_id
        and pointer.status in query.statuses
        and (query.kind is None or pointer.kind == query.kind)
        and (query.run_id is None or pointer.run_id == query.run_id)
        and all(pointer.tags.get(key) == value for key, value in query.tags.items())
    )


class MemoryPointerStore(PointerStore):
    """``PointerStore`` in dicts, with the semantics of ``SqlitePointerStore``.

    Pointer ids are unique across jobs (SQLite's primary key); side records are unique per
    (job, id) whatever their kind, and live apart from the pointers.
    """

    def __init__(self) -> None:
        """Start empty."""
        self._pointers: dict[str, _PointerRow] = {}
        self._records: dict[tuple[str, str], _RecordRow] = {}
        self.journal = MemoryJournal()
        self.probe = Probe()  # readiness: tell it to fail (``probe.error``) or to hang (``probe.stalled``)

    async def check(self) -> None:
        """Readiness: passes unless ``probe`` was told otherwise."""
        await self.probe.check()

    @staticmethod
    def _row(pointer: Pointer) -> _PointerRow:
        return _PointerRow(pointer.job_id, _micros(pointer), uuid.uuid4().hex, _encoder.encode(pointer))

    async def create(self, pointer: Pointer, *, event: Event | None = None) -> str:
        """Insert (and apply ``event`` with it); Conflict if the id is taken (in any job)."""
        await _turn()
        if pointer.id in self._pointers:
            raise Conflict(f"artifact {pointer.id} exists already")
        self.journal.check(event)
        row = self._pointers[pointer.id] = self._row(pointer)
        self.journal.apply(event)
        return row.etag

    def _in_job(self, job_id: str, artifact_id: str) -> _PointerRow | None:
        row = self._pointers.get(artifact_id)
        return row if row is not None and row.job_id == job_id else None

    async def get(self, job_id: str, artifact_id: str) -> StoredPointer | None:
        """Read one pointer of one job."""
        await _turn()
        row = self._in_job(job_id, artifact_id)
        return None if row is None else row.stored()

    async def find(self, artifact_id: str) -> StoredPointer | None:
        """Read one pointer by id."""
        await _turn()
        row = self._pointers.get(artifact_id)
        return None if row is None else row.stored()

    async def replace(self, pointer: Pointer, *, etag: str, event: Event | None = None) -> str:
        """Compare-and-swap on the etag (and apply ``event`` with it); NotFound, PreconditionFailed."""
        await _turn()
        row = self._in_job(pointer.job_id, pointer.id)
        if row is None:
            raise NotFound(f"artifact {pointer.id} not found")
        if row.etag != etag:
            raise PreconditionFailed(f"artifact {pointer.id} changed since it was read")
        self.journal.check(event)
        row = self._pointers[pointer.id] = self._row(pointer)
        self.journal.apply(event)
        return row.etag

    async def delete(self, job_id: str, artifact_id: str) -> bool:
        """Delete; False if it was not there."""
        await _turn()
        if self._in_job(job_id, artifact_id) is None:
            return False
        del self._pointers[artifact_id]
        return True

    async def get_record(self, job_id: str, record_id: str, kind: type[R]) -> StoredRecord[R] | None:
        """Read one side record, only if it is of ``kind``."""
        await _turn()
        row = self._records.get((job_id, record_id))
        return None if row is None or row.kind != kind.__name__ else row.stored(kind)

    async def put_record(self, record: SideRecord, *, etag: str | None) -> str:
        """Insert (Conflict if the id is taken), or compare-and-swap on the etag (NotFound if gone)."""
        await _turn()
        at = (record.job_id, record.id)
        row = self._records.get(at)
        if etag is None and row is not None:
            raise Conflict("the record exists already")
        if etag is not None and row is None:
            raise NotFound("the record is gone")
        if etag is not None and row is not None and row.etag != etag:
            raise PreconditionFailed("the record changed since it was read")
        new = self._records[at] = _RecordRow(type(record).__name__, uuid.uuid4().hex, _encoder.encode(record))
        return new.etag

    async def records(self, job_id: str, kind: type[R], *, limit: int = 1000) -> list[StoredRecord[R]]:
        """The records of ``kind`` in one job."""
        await _turn()
        found = [
            row.stored(kind)
            for (job, _), row in self._records.items()
            if job == job_id and row.kind == kind.__name__
        ]
        return found[:limit]

    async def expired_records(
        self, kind: type[R], *, before: datetime, limit: int = 1000
    ) -> list[StoredRecord[R]]:
        """Records of ``kind`` past their expiry (nothing here expires by itself)."""
        await _turn()
        records = [row.stored(kind) for row in self._records.values() if row.kind == kind.__name__]
        return [r for r in records if r.record.expires_at < before][:limit]

    async def delete_record(self, job_id: str, record_id: str, *, etag: str) -> None:
        """Delete if unchanged; a changed or missing record is left as it is."""
        await _turn()
        row = self._records.get((job_id, record_id))
        if row is not None and row.etag == etag:
            del self._records[(job_id, record_id)]

    async def expired(
        self, status: ArtifactStatus, *, before: datetime, limit: int = 1000
    ) -> list[StoredPointer]:
        """Pointers in ``status`` whose ``expiresAt`` is set and earlier than ``before``."""
        await _turn()
        found = (row.stored() for row in self._pointers.values())
        return [
            s
            for s in found
            if s.pointer.status == status
            and s.pointer.expires_at is not None
            and s.pointer.expires_at < before
        ][:limit]

    async def aged(
        self,
        status: ArtifactStatus,
        *,
        tiered_before: datetime,
        tiers: Sequence[BlobTier],
        limit: int = 1000,
    ) -> list[StoredPointer]:
        """Pointers in ``status`` made before ``tiered_before`` in ``tiers``, oldest first."""
        await _turn()
        found = sorted(
            (row.stored() for row in self._pointers.values()),
            key=lambda s: s.pointer.restored_at or s.pointer.created_at,
        )
        return [
            s
            for s in found
            if s.pointer.status is status
            and (s.pointer.restored_at or s.pointer.created_at) < tiered_before
            and s.pointer.tier in tiers
        ][:limit]

    async def list(self, query: ListQuery) -> PointerPage:
        """One page newest first, ties by id descending; InvalidInput for a token not issued for ``query``."""
        if query.limit < 1:
            raise ValueError("limit must be at least 1")
        await _turn()
        fingerprint = _fingerprint(query)
        after = _Cursor.decode(query.continuation, fingerprint) if query.continuation else None
        # Ids are unique, so the docs are never compared.
        rows = sorted(((row.created_us, id_, row) for id_, row in self._pointers.items()), reverse=True)
        decoded = (row.stored() for us, id_, row in rows if after is None or (us, id_) < after)
        matching = [stored for stored in decoded if _matches(stored.pointer, query)]
        items = matching[: query.limit]
        if len(matching) <= query.limit:
            return PointerPage(items, None)
        last = items[-1].pointer
        return PointerPage(items, _Cursor(fingerprint, _micros(last), last.id).encode())

    async def job(self, product_id: str, job_id: str) -> JobState | None:
        """One product's state of one job."""
        await _turn()
        return self.journal.job(product_id, job_id)

    async def seal(self, event: Event) -> JobState:
        """Seal a job, writing its event (once)."""
        await _turn()
        return self.journal.seal(event)

    async def jobs(self, product_id: str, *, limit: int, continuation: str | None) -> JobPage:
        """A product's jobs, most recently active first."""
        await _turn()
        return self.journal.jobs(product_id, limit, continuation)

    async def events(
        self, product_id: str, *, since: str | None, limit: int, job_id: str | None
    ) -> EventPage:
        """A product's events after ``since``, in the order written."""
        await _turn()
        return self.journal.events(product_id, since, limit, job_id)

    async def prune_events(self, *, before: datetime, limit: int = 1000) -> builtins.list[str]:
        """Forget events older than ``before``."""
        await _turn()
        return self.journal.prune(before, limit)
