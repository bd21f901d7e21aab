"""SQLite adapter for pointer documents (the embedded default).

The document is stored whole as JSON beside the few columns that queries use,
mirroring the Cosmos layout (partition = job id). sqlite3 is synchronous: writes
(which fsync, unless ``synchronous="NORMAL"``) run in a worker thread behind one lock; the
reads a request makes run on the event loop's thread through a second, read-only
connection, since an indexed read takes microseconds and the hop to a thread and back cost
ten times that. WAL mode keeps those readers from ever waiting on the writer. With
``synchronous="NORMAL"`` an upload's commit (no fsync: a few writes to the WAL) runs on the
loop's thread too, through a third connection that never waits (``_write``).
"""

from __future__ import annotations

import asyncio
import builtins
import sqlite3
import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from fleet_artifacts.core.errors import Conflict, NotFound, PreconditionFailed, Unavailable
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
from fleet_artifacts.stores import sqlite_journal as journal
from fleet_artifacts.stores.sqlite_schema import (
    LOOP_CHECKPOINT_EVERY,
    ListCursor,
    Synchronous,
    checkpoint,
    connect_loop_writer,
    connect_reader,
    connect_writer,
    decode_cursor,
    encode_cursor,
    micros,
    pointer_row,
    us,
)

T = TypeVar("T")

_encoder = msgspec.json.Encoder()
_pointer_decoder = msgspec.json.Decoder(Pointer)
_DECODED_KEPT = 4096  # pointer versions kept decoded for listings, at most (a few MiB)


class SqlitePointerStore(PointerStore):
    """``PointerStore`` in one SQLite file."""

    def __init__(self, path: Path | str, *, synchronous: Synchronous = "FULL") -> None:
        """Open (and create if needed) the database at ``path`` (``:memory:`` works).

        ``synchronous``: FULL fsyncs every commit (a power loss keeps it); NORMAL keeps a commit
        across a crash of the process only (``sqlite_schema.Synchronous``).
        """
        self.synchronous = synchronous
        self._conn = connect_writer(path, synchronous=synchronous)
        self._lock = threading.Lock()
        # Listed pointers by etag: a version's document never changes, and dashboards list the
        # same pages many times a second (decoding was half a listed row's cost). Shared, so never
        # changed in place: the core replaces pointers, it does not mutate them.
        self._decoded: dict[str, Pointer] = {}
        self._reader = connect_reader(path)
        self._loop_writer = connect_loop_writer(path, synchronous=synchronous)
        self._loop_commits = 0
        self._checkpointing: asyncio.Future[None] | None = None

    async def close(self) -> None:
        """Close the database connections."""
        if self._checkpointing is not None:
            await self._checkpointing
        for conn in (self._reader, self._loop_writer):
            if conn is not None:
                conn.close()
        await self._run(self._conn.close)

    async def check(self) -> None:
        """Readiness: a read on the writer's connection, so a writer stuck behind its lock shows too."""

        def probe() -> None:
            try:
                self._conn.execute("SELECT 1 FROM pointers LIMIT 1").fetchall()
            except sqlite3.Error as exc:  # closed or broken, not only busy
                raise Unavailable(f"pointer database: {exc}") from exc

        await self._run(probe)

    async def _run(self, fn: Callable[[], T]) -> T:
        def locked() -> T:
            with self._lock:
                try:
                    return fn()
                except sqlite3.OperationalError as exc:  # locked, disk full, I/O error
                    raise Unavailable(f"pointer database: {exc}") from exc

        return await asyncio.to_thread(locked)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A short read a request makes: here, on the read-only connection; else as ``_run`` does.

        Only reads bounded by an index belong here (one row, one page of a job): they take
        microseconds, and anything the reader cannot do at once goes to the writer's thread.
        """
        if self._reader is not None:
            try:
                return fn(self._reader)
            except sqlite3.OperationalError:
                pass  # busy, or worse: the writer's thread waits, and reports what is wrong
        return await self._run(lambda: fn(self._conn))

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """A short write a request makes, in one transaction: on the loop's own writer if it is free.

        That writer exists with ``synchronous="NORMAL"`` only (``connect_loop_writer``): a commit
        there is a few writes to the WAL, cheaper than two thread hops. A busy database (another
        writer's transaction) or any other trouble sends the work to the writer's thread instead,
        and so does a checkpoint under way: it completes only if no commit lands meanwhile, and
        then the WAL is reused from its start rather than grown.
        """
        checkpointing = self._checkpointing
        if checkpointing is not None and checkpointing.done():
            # The first write after a checkpoint restarts the WAL, which syncs its header even with
            # NORMAL: the writer's thread takes it, not the event loop.
            self._checkpointing = None
        if (conn := self._loop_writer) is not None and checkpointing is None:
            try:
                result = journal.transaction(conn, lambda: work(conn))
            except sqlite3.OperationalError:
                pass  # rolled back: the writer's thread waits its turn, and reports what is wrong
            else:
                self._loop_commits += 1
                if self._loop_commits % LOOP_CHECKPOINT_EVERY == 0:
                    self._checkpointing = asyncio.ensure_future(self._run(lambda: checkpoint(self._conn)))
                return result
        return await self._run(lambda: journal.transaction(self._conn, lambda: work(self._conn)))

    async def create(self, pointer: Pointer, *, event: Event | None = None) -> str:
        """Insert (with ``event``, in one transaction with it); Conflict if the id is taken."""
        etag = uuid.uuid4().hex
        row = pointer_row(pointer, etag)

        def insert(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO pointers (id, job_id, product_id, created_us, status, kind, run_id,"
                    " etag, doc, expires_us, tier, tier_us) VALUES (:id, :job_id, :product_id, :created_us,"
                    " :status, :kind, :run_id, :etag, :doc, :expires_us, :tier, :tier_us)",
                    row,
                )
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"artifact {pointer.id} exists already") from exc
            if event is not None:
                journal.apply_event(conn, event)

        await self._write(insert)
        return etag

    @staticmethod
    def _select_one(conn: sqlite3.Connection, where: str, params: tuple[str, ...]) -> StoredPointer | None:
        sql = f"SELECT doc, etag FROM pointers WHERE {where}"  # noqa: S608 - where is a literal of this module
        found = conn.execute(sql, params).fetchone()
        if found is None:
            return None
        return StoredPointer(_pointer_decoder.decode(found[0]), found[1])

    def _listed(self, doc: str, etag: str) -> StoredPointer:
        pointer = self._decoded.get(etag)
        if pointer is None:
            if len(self._decoded) >= _DECODED_KEPT:
                self._decoded.clear()
            pointer = self._decoded[etag] = _pointer_decoder.decode(doc)
        return StoredPointer(pointer, etag)

    async def get(self, job_id: str, artifact_id: str) -> StoredPointer | None:
        """Read one pointer of one job."""
        return await self._read(
            lambda conn: self._select_one(conn, "job_id = ? AND id = ?", (job_id, artifact_id))
        )

    async def find(self, artifact_id: str) -> StoredPointer | None:
        """Read one pointer by id (a primary-key lookup here)."""
        return await self._read(lambda conn: self._select_one(conn, "id = ?", (artifact_id,)))

    async def replace(self, pointer: Pointer, *, etag: str, event: Event | None = None) -> str:
        """Compare-and-swap on the etag (with ``event``, in one transaction with it)."""
        new_etag = uuid.uuid4().hex
        row = pointer_row(pointer, new_etag)
        row["old_etag"] = etag

        def update() -> None:
            changed = self._conn.execute(
                "UPDATE pointers SET status = :status, kind = :kind, run_id = :run_id,"
                " etag = :etag, doc = :doc, created_us = :created_us, expires_us = :expires_us, tier = :tier,"
                " tier_us = :tier_us"
                " WHERE id = :id AND job_id = :job_id AND etag = :old_etag",
                row,
            ).rowcount
            if changed:
                if event is not None:
                    journal.apply_event(self._conn, event)
                return
            if self._select_one(self._conn, "job_id = ? AND id = ?", (pointer.job_id, pointer.id)) is None:
                raise NotFound(f"artifact {pointer.id} not found")
            raise PreconditionFailed(f"artifact {pointer.id} changed since it was read")

        await self._run(lambda: journal.transaction(self._conn, update))
        return new_etag

    async def delete(self, job_id: str, artifact_id: str) -> bool:
        """Delete; False if it was not there."""
        return await self._run(
            lambda: (
                self._conn.execute(
                    "DELETE FROM pointers WHERE job_id = ? AND id = ?", (job_id, artifact_id)
                ).rowcount
                > 0
            )
        )

    async def get_record(self, job_id: str, record_id: str, kind: type[R]) -> StoredRecord[R] | None:
        """Read one side record of ``kind``."""

        def select(conn: sqlite3.Connection) -> StoredRecord[R] | None:
            row = conn.execute(
                "SELECT doc, etag FROM records WHERE job_id = ? AND id = ? AND kind = ?",
                (job_id, record_id, kind.__name__),
            ).fetchone()
            return None if row is None else StoredRecord(msgspec.json.decode(row[0], type=kind), row[1])

        return await self._read(select)

    async def put_record(self, record: SideRecord, *, etag: str | None) -> str:
        """Insert, or compare-and-swap on the etag."""
        new_etag = uuid.uuid4().hex
        doc = _encoder.encode(record).decode()

        def write() -> None:
            if etag is None:
                try:
                    self._conn.execute(
                        "INSERT INTO records VALUES (?, ?, ?, ?, ?)",
                        (record.job_id, record.id, type(record).__name__, new_etag, doc),
                    )
                except sqlite3.IntegrityError as exc:
                    raise Conflict("the record exists already") from exc
                return
            changed = self._conn.execute(
                "UPDATE records SET etag = ?, doc = ? WHERE job_id = ? AND id = ? AND etag = ?",
                (new_etag, doc, record.job_id, record.id, etag),
            ).rowcount
            if not changed:
                raise PreconditionFailed("the record changed since it was read")

        await self._run(write)
        return new_etag

    async def records(self, job_id: str, kind: type[R], *, limit: int = 1000) -> list[StoredRecord[R]]:
        """The records of ``kind`` in one job (primary-key prefix scan)."""
        rows = await self._run(
            lambda: self._conn.execute(
                "SELECT doc, etag FROM records WHERE job_id = ? AND kind = ? LIMIT ?",
                (job_id, kind.__name__, limit),
            ).fetchall()
        )
        return [StoredRecord(msgspec.json.decode(doc, type=kind), etag) for doc, etag in rows]

    async def expired_records(
        self, kind: type[R], *, before: datetime, limit: int = 1000
    ) -> list[StoredRecord[R]]:
        """Records of ``kind`` past their expiry (SQLite has no TTL: this is how they go)."""
        rows = await self._run(
            lambda: self._conn.execute(
                "SELECT doc, etag FROM records WHERE kind = ?", (kind.__name__,)
            ).fetchall()
        )
        records = [StoredRecord(msgspec.json.decode(doc, type=kind), etag) for doc, etag in rows]
        return [r for r in records if r.record.expires_at < before][:limit]

    async def delete_record(self, job_id: str, record_id: str, *, etag: str) -> None:
        """Delete if unchanged."""
        await self._run(
            lambda: self._conn.execute(
                "DELETE FROM records WHERE job_id = ? AND id = ? AND etag = ?", (job_id, record_id, etag)
            )
        )

    async def expired(
        self, status: ArtifactStatus, *, before: datetime, limit: int = 1000
    ) -> list[StoredPointer]:
        """Pointers in ``status`` past their expiry, oldest first (index ``pointers_by_expiry``)."""
        rows = await self._run(
            lambda: self._conn.execute(
                "SELECT doc, etag FROM pointers WHERE status = ? AND expires_us < ?"
                " ORDER BY expires_us LIMIT ?",
                (status.value, us(before), limit),
            ).fetchall()
        )
        return [StoredPointer(_pointer_decoder.decode(doc), etag) for doc, etag in rows]

    async def aged(
        self,
        status: ArtifactStatus,
        *,
        tiered_before: datetime,
        tiers: Sequence[BlobTier],
        limit: int = 1000,
    ) -> list[StoredPointer]:
        """Pointers in ``status`` in ``tiers`` since before ``tiered_before``, oldest first (by tier age)."""
        if not tiers:
            return []
        marks = ", ".join("?" for _ in tiers)
        sql = (
            "SELECT doc, etag FROM pointers WHERE status = ? AND tier_us < ?"  # noqa: S608 - placeholders only
            f" AND tier IN ({marks}) ORDER BY tier_us LIMIT ?"
        )
        params = [status.value, us(tiered_before), *(t.value for t in tiers), limit]
        rows = await self._run(lambda: self._conn.execute(sql, params).fetchall())
        return [StoredPointer(_pointer_decoder.decode(doc), etag) for doc, etag in rows]

    async def list(self, query: ListQuery) -> PointerPage:
        """Keyset-paginated listing, newest first, ties broken by id."""
        statuses = query.status_values()
        marks = ", ".join("?" for _ in statuses)
        clauses = ["job_id = ?", "product_id = ?", f"status IN ({marks})"]
        params: list[Any] = [query.job_id, query.product_id, *statuses]
        if query.kind is not None:
            clauses.append("kind = ?")
            params.append(query.kind.value)
        if query.run_id is not None:
            clauses.append("run_id = ?")
            params.append(query.run_id)
        for key, value in query.tags.items():
            # Tag keys are validated to a quote-free alphabet, so the quoted JSON path is exact.
            clauses.append("json_extract(doc, ?) = ?")
            params += [f'$.tags."{key}"', value]
        if query.continuation:
            cursor = decode_cursor(query.continuation, query)
            clauses.append("(created_us < ? OR (created_us = ? AND id < ?))")
            params += [cursor.created_us, cursor.created_us, cursor.id]
        sql = (
            f"SELECT doc, etag FROM pointers WHERE {' AND '.join(clauses)}"  # noqa: S608 - literal clauses
            " ORDER BY created_us DESC, id DESC LIMIT ?"
        )
        params.append(query.limit + 1)
        if query.kind is None and query.run_id is None and not query.tags:  # one page of the job's index
            rows = await self._read(lambda conn: conn.execute(sql, params).fetchall())
        else:  # a filter may scan much of a big job: not on the event loop's thread
            rows = await self._run(lambda: self._conn.execute(sql, params).fetchall())
        items = [self._listed(doc, etag) for doc, etag in rows[: query.limit]]
        token = None
        if len(rows) > query.limit:
            last = items[-1].pointer
            token = encode_cursor(ListCursor(micros(last), last.id, query.filters_digest()))
        return PointerPage(items, token)

    async def job(self, product_id: str, job_id: str) -> JobState | None:
        """One product's state of one job."""
        return await self._read(lambda conn: journal.read_job(conn, product_id, job_id))

    async def seal(self, event: Event) -> JobState:
        """Seal a job, writing its event (once)."""
        return await self._run(
            lambda: journal.transaction(self._conn, lambda: journal.seal(self._conn, event))
        )

    async def jobs(self, product_id: str, *, limit: int, continuation: str | None) -> JobPage:
        """A product's jobs, most recently active first."""
        return await self._read(lambda conn: journal.list_jobs(conn, product_id, limit, continuation))

    async def events(
        self, product_id: str, *, since: str | None, limit: int, job_id: str | None
    ) -> EventPage:
        """A product's events after ``since``, in commit order."""
        # In the writer's thread: a job's events are found among its product's, which may take a scan.
        return await self._run(lambda: journal.list_events(self._conn, product_id, since, limit, job_id))

    async def prune_events(self, *, before: datetime, limit: int = 1000) -> builtins.list[str]:
        """Delete events older than ``before`` (SQLite has no TTL: this is how they go)."""
        return await self._run(lambda: journal.prune_events(self._conn, us(before), limit))
