"""The SQLite pointer store's connections, tables and rows, and its listings' keyset cursor.

Also the migration of a database made by an older release.
"""

from __future__ import annotations

import base64
import logging
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import msgspec

from fleet_artifacts.core.errors import InvalidInput
from fleet_artifacts.core.journal import JobState
from fleet_artifacts.core.models import Pointer
from fleet_artifacts.core.ports import ListQuery

SCHEMA = """
CREATE TABLE IF NOT EXISTS pointers (
    id          TEXT PRIMARY KEY,
    job_id      TEXT NOT NULL,
    product_id  TEXT NOT NULL,
    created_us  INTEGER NOT NULL,
    status      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    run_id      TEXT,
    etag        TEXT NOT NULL,
    doc         TEXT NOT NULL,
    expires_us  INTEGER,
    tier        TEXT NOT NULL DEFAULT 'Hot',
    tier_us     INTEGER
);
CREATE INDEX IF NOT EXISTS pointers_by_job ON pointers (job_id, created_us DESC, id DESC);
CREATE TABLE IF NOT EXISTS records (
    job_id  TEXT NOT NULL,
    id      TEXT NOT NULL,
    kind    TEXT NOT NULL,
    etag    TEXT NOT NULL,
    doc     TEXT NOT NULL,
    PRIMARY KEY (job_id, id)
);
"""

# The job journal (core.journal): the event log in commit order, and each product's job totals.
JOURNAL = """
CREATE TABLE IF NOT EXISTS events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: a cursor stays valid
    product_id  TEXT NOT NULL,
    job_id      TEXT NOT NULL,
    at_us       INTEGER NOT NULL,
    doc         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_product ON events (product_id, seq);
CREATE INDEX IF NOT EXISTS events_by_age ON events (at_us);
CREATE TABLE IF NOT EXISTS jobs (
    product_id  TEXT NOT NULL,
    job_id      TEXT NOT NULL,
    active_us   INTEGER NOT NULL,  -- last upload, else first event: what the job listing sorts by
    doc         TEXT NOT NULL,
    PRIMARY KEY (product_id, job_id)
);
CREATE INDEX IF NOT EXISTS jobs_by_activity ON jobs (product_id, active_us DESC, job_id DESC);
"""

# Sweeper lookups: expired pointers of a state, and old ones of a state for tier moves. Created after
# the migration below, which adds their columns to a database made before they existed.
SWEEP_INDEXES = """
CREATE INDEX IF NOT EXISTS pointers_by_expiry ON pointers (status, expires_us);
CREATE INDEX IF NOT EXISTS pointers_by_tier_age ON pointers (status, tier_us);
"""

log = logging.getLogger(__name__)
_pointer_decoder = msgspec.json.Decoder(Pointer)
_encoder = msgspec.json.Encoder()

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def us(when: datetime) -> int:
    """Microseconds since the epoch (integer arithmetic: a float timestamp loses the last digits)."""
    return (when - _EPOCH) // timedelta(microseconds=1)


def micros(pointer: Pointer) -> int:
    """The ``created_us`` column: what listings sort by."""
    return us(pointer.created_at)


def expires_us(pointer: Pointer) -> int | None:
    """The ``expires_us`` column: what the sweeper finds expired pointers by."""
    return None if pointer.expires_at is None else us(pointer.expires_at)


def tier_us(pointer: Pointer) -> int:
    """The ``tier_us`` column: where tier moves by age count from (the last restore, or creation)."""
    return us(pointer.restored_at or pointer.created_at)


def pointer_row(pointer: Pointer, etag: str) -> dict[str, Any]:
    """A pointer version as the named parameters of its row in ``pointers``."""
    return {
        "id": pointer.id,
        "job_id": pointer.job_id,
        "product_id": pointer.product_id,
        "created_us": micros(pointer),
        "status": pointer.status.value,
        "kind": pointer.kind.value,
        "run_id": pointer.run_id,
        "etag": etag,
        "doc": _encoder.encode(pointer).decode(),
        "expires_us": expires_us(pointer),
        "tier": pointer.tier.value,
        "tier_us": tier_us(pointer),
    }


class ListCursor(msgspec.Struct, array_like=True):
    """Keyset position after the last item of a page, bound to the query's filters (opaque to clients)."""

    created_us: int
    id: str
    filters: str  # ListQuery.filters_digest() of the query that issued it


def encode_cursor(cursor: ListCursor) -> str:
    """The opaque continuation token of ``cursor``."""
    return base64.urlsafe_b64encode(_encoder.encode(cursor)).decode().rstrip("=")


def decode_cursor(token: str, query: ListQuery) -> ListCursor:
    """The cursor a continuation token names, if this service issued it for ``query``; else InvalidInput."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        cursor = msgspec.json.decode(raw, type=ListCursor)
        if not -(2**63) <= cursor.created_us < 2**63:  # SQLite integers are 64-bit
            raise ValueError("out of range")
        if cursor.filters != query.filters_digest():
            raise ValueError("issued for other filters")
        return cursor
    except (ValueError, msgspec.DecodeError):
        raise InvalidInput(
            "continuationToken is not one this service issued for this query", field="continuationToken"
        ) from None


# The sweeper's columns, filled from the docs when a database made before them is opened.
ADDED_COLUMNS = {"expires_us": "INTEGER", "tier": "TEXT NOT NULL DEFAULT 'Hot'", "tier_us": "INTEGER"}


# FULL: a commit is fsynced (to the WAL) before it returns, so a power loss keeps it. NORMAL (in WAL
# mode): a commit is written to the WAL, not fsynced (only checkpoints are), so it survives a crash
# of the process, not a power loss (``DURABILITY=process``).
Synchronous = Literal["FULL", "NORMAL"]


def connect_writer(path: Path | str, *, synchronous: Synchronous) -> sqlite3.Connection:
    """The writer's connection to the database at ``path`` (created if missing), schema up to date."""
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'NORMAL' if synchronous == 'NORMAL' else 'FULL'}")
    conn.execute("PRAGMA busy_timeout=5000")
    create_schema(conn)
    return conn


def connect_reader(path: Path | str) -> sqlite3.Connection | None:
    """A read-only connection for reads on the event loop's thread; None for ``:memory:``.

    ``:memory:`` has one connection: its writer's thread reads too.
    """
    if str(path) == ":memory:":
        return None
    reader = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    reader.execute("PRAGMA query_only=1")
    # Never wait on the loop's thread: a busy database (a WAL recovery) sends the read to the
    # writer's thread, which waits as long as writes do.
    reader.execute("PRAGMA busy_timeout=0")
    return reader


def connect_loop_writer(path: Path | str, *, synchronous: Synchronous) -> sqlite3.Connection | None:
    """A second writer connection, for an upload's commit on the event loop's thread; else None.

    Only with ``NORMAL`` (a commit is a few writes to the WAL, no fsync: shorter than the hop to
    a thread and back) and a file. It never waits (a busy database sends the commit to the
    writer's thread) and never checkpoints (a checkpoint fsyncs): ``checkpoint`` does that, in
    the writer's thread, every ``LOOP_CHECKPOINT_EVERY`` of its commits.
    """
    if synchronous != "NORMAL" or str(path) == ":memory:":
        return None
    conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=0")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    return conn


LOOP_CHECKPOINT_EVERY = 100  # commits of the loop's writer between checkpoints (~1,200 WAL pages)


def checkpoint(conn: sqlite3.Connection) -> None:
    """Copy the WAL into the database without waiting on anyone (PASSIVE); a failure is logged only.

    The WAL is then reused from its start, so it stays as small as the writer's automatic
    checkpoints keep it.
    """
    try:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    except sqlite3.Error as exc:
        log.warning("SQLite checkpoint failed (the next one tries again): %s", exc)


def create_schema(conn: sqlite3.Connection) -> None:
    """Create the tables if missing, bring an older database's columns up to date, add the indexes."""
    conn.executescript(SCHEMA)
    _migrate(conn)
    conn.executescript(SWEEP_INDEXES)
    _add_journal(conn)


def _missing_columns(conn: sqlite3.Connection) -> list[str]:
    present = {row[1] for row in conn.execute("PRAGMA table_info(pointers)")}
    return [name for name in ADDED_COLUMNS if name not in present]


def _migrate(conn: sqlite3.Connection) -> None:
    """Add the sweeper's columns to a database made before they existed, filled from the docs.

    Several processes may open an old database at once (the service and a cron ``gc``): the
    columns are looked at again under the write lock, so only the first one migrates.
    """
    if not _missing_columns(conn):
        return
    conn.execute("PRAGMA busy_timeout=120000")  # a big table takes a while to fill
    conn.execute("BEGIN IMMEDIATE")
    try:
        missing = _missing_columns(conn)
        for name in missing:
            conn.execute(f"ALTER TABLE pointers ADD COLUMN {name} {ADDED_COLUMNS[name]}")
        if missing:
            for row_id, doc in conn.execute("SELECT id, doc FROM pointers").fetchall():
                pointer = _pointer_decoder.decode(doc)
                conn.execute(
                    "UPDATE pointers SET expires_us = ?, tier = ?, tier_us = ? WHERE id = ?",
                    (expires_us(pointer), pointer.tier.value, tier_us(pointer), row_id),
                )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    finally:
        conn.execute("PRAGMA busy_timeout=5000")


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return (
        conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
        is not None
    )


def _add_journal(conn: sqlite3.Connection) -> None:
    """Create the journal's tables; in a database made before them, fill each job's totals.

    The totals of a job are those of its visible artifacts, its last upload the newest of them. Old
    artifacts get no events: the feed starts when the journal does. Done under the write lock,
    looked at again there, so of several processes opening an old database one fills it.
    """
    if _has_table(conn, "jobs"):
        return
    conn.execute("PRAGMA busy_timeout=120000")  # filling a big database's totals takes a while
    conn.execute("BEGIN IMMEDIATE")
    try:
        if not _has_table(conn, "jobs"):
            # One statement at a time: executescript would commit the transaction first.
            for statement in JOURNAL.split(";"):
                if statement.strip():
                    conn.execute(statement)
            _fill_jobs(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        conn.execute("PRAGMA busy_timeout=5000")


def _fill_jobs(conn: sqlite3.Connection) -> None:
    totals: dict[tuple[str, str], JobState] = {}
    rows = conn.execute(
        "SELECT doc FROM pointers WHERE status IN ('ACTIVE', 'ARCHIVED', 'RESTORING')"
    ).fetchall()
    for (doc,) in rows:
        pointer = _pointer_decoder.decode(doc)
        key = (pointer.product_id, pointer.job_id)
        state = totals.get(key) or JobState(product_id=pointer.product_id, job_id=pointer.job_id)
        last = state.last_upload_at
        totals[key] = msgspec.structs.replace(
            state,
            artifact_count=state.artifact_count + 1,
            total_bytes=state.total_bytes + pointer.size_bytes,
            last_upload_at=pointer.created_at if last is None or pointer.created_at > last else last,
            version=1,
        )
    for (product_id, job_id), state in totals.items():
        assert state.last_upload_at is not None
        conn.execute(
            "INSERT INTO jobs (product_id, job_id, active_us, doc) VALUES (?, ?, ?, ?)",
            (product_id, job_id, us(state.last_upload_at), msgspec.json.encode(state).decode()),
        )
