"""The SQLite pointer store's job journal: events and job totals, in the pointer change's transaction.

Functions over a connection, called by ``SqlitePointerStore`` under its lock. A write runs inside
``transaction`` (BEGIN IMMEDIATE: SQLite's one writer at a time, across processes too), so an
event's ``seq`` order is its commit order and a reader resuming after a ``seq`` misses none.
"""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

from fleet_artifacts.core.errors import Gone, InvalidInput, JobSealed
from fleet_artifacts.core.journal import Event, EventPage, JobPage, JobState, StoredEvent
from fleet_artifacts.stores.sqlite_schema import us

T = TypeVar("T")

_state_decoder = msgspec.json.Decoder(JobState)
_event_decoder = msgspec.json.Decoder(Event)


def transaction(conn: sqlite3.Connection, work: Callable[[], T]) -> T:
    """Run ``work`` in one write transaction: all of it is committed, or none of it."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work()
        conn.execute("COMMIT")
    except BaseException:
        # Also when COMMIT itself failed (busy, I/O): a transaction left open would swallow the
        # connection's next writes.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def read_job(conn: sqlite3.Connection, product_id: str, job_id: str) -> JobState | None:
    """One product's state of one job."""
    row = conn.execute(
        "SELECT doc FROM jobs WHERE product_id = ? AND job_id = ?", (product_id, job_id)
    ).fetchone()
    return None if row is None else _state_decoder.decode(row[0])


def _write_job(conn: sqlite3.Connection, state: JobState, active_us: int) -> None:
    conn.execute(
        "INSERT INTO jobs (product_id, job_id, active_us, doc) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (product_id, job_id) DO UPDATE SET active_us = excluded.active_us, doc = excluded.doc",
        (state.product_id, state.job_id, active_us, msgspec.json.encode(state).decode()),
    )


def _append(conn: sqlite3.Connection, event: Event) -> None:
    conn.execute(
        "INSERT INTO events (product_id, job_id, at_us, doc) VALUES (?, ?, ?, ?)",
        (event.product_id, event.job_id, us(event.at), msgspec.json.encode(event).decode()),
    )


def apply_event(conn: sqlite3.Connection, event: Event) -> JobState:
    """Inside a transaction: refuse growth of a sealed job, apply ``event`` to the totals, log it."""
    row = conn.execute(
        "SELECT doc, active_us FROM jobs WHERE product_id = ? AND job_id = ?",
        (event.product_id, event.job_id),
    ).fetchone()
    state = None if row is None else _state_decoder.decode(row[0])
    if state is not None and state.sealed and event.grows:
        raise JobSealed(f"job {event.job_id} is sealed: it takes no new artifacts")
    before = state or JobState(product_id=event.product_id, job_id=event.job_id)
    after = before.applied(event)
    if after.last_upload_at is not None:
        active_us = us(after.last_upload_at)
    else:
        active_us = row[1] if row is not None else us(event.at)
    _write_job(conn, after, active_us)
    _append(conn, event)
    return after


def seal(conn: sqlite3.Connection, event: Event) -> JobState:
    """Inside a transaction: seal the job with ``event``, unless it is sealed already."""
    state = read_job(conn, event.product_id, event.job_id)
    if state is not None and state.sealed:
        return state
    return apply_event(conn, event)


class _JobCursor(msgspec.Struct, array_like=True):
    active_us: int
    job_id: str
    product_id: str


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def list_jobs(conn: sqlite3.Connection, product_id: str, limit: int, continuation: str | None) -> JobPage:
    """A product's jobs, most recently active first (keyset pages on ``jobs_by_activity``)."""
    clauses, params = ["product_id = ?"], [product_id]
    if continuation:
        try:
            cursor = msgspec.json.decode(_unb64(continuation), type=_JobCursor)
            if cursor.product_id != product_id or not -(2**63) <= cursor.active_us < 2**63:
                raise ValueError("not this product's")
        except (ValueError, msgspec.DecodeError):
            raise InvalidInput(
                "continuationToken is not one this service issued for this listing", field="continuationToken"
            ) from None
        clauses.append("(active_us < ? OR (active_us = ? AND job_id < ?))")
        params += [cursor.active_us, cursor.active_us, cursor.job_id]  # type: ignore[list-item]
    sql = (
        f"SELECT doc, active_us FROM jobs WHERE {' AND '.join(clauses)}"  # noqa: S608 - literal clauses
        " ORDER BY active_us DESC, job_id DESC LIMIT ?"
    )
    rows = conn.execute(sql, [*params, limit + 1]).fetchall()
    items = [_state_decoder.decode(doc) for doc, _ in rows[:limit]]
    token = None
    if len(rows) > limit:
        last = items[-1]
        token = _b64(msgspec.json.encode(_JobCursor(rows[limit - 1][1], last.job_id, product_id)))
    return JobPage(items, token)


def _since(since: str | None) -> int:
    if since is None:
        return 0
    if not (since.isascii() and since.isdigit()) or len(since) > 18:
        raise InvalidInput("since is not a cursor this service issued", field="since")
    return int(since)


def _check_kept(conn: sqlite3.Connection, after: int) -> None:
    """Gone if an event after ``after`` was pruned: sequence numbers run without gaps until pruning."""
    if after == 0:
        return
    oldest = conn.execute("SELECT MIN(seq) FROM events").fetchone()[0]
    last = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    if last is None or after > last[0]:  # never issued: resuming there would skip what comes
        raise InvalidInput("since is not a cursor this service issued", field="since")
    pruned_after = (oldest is not None and oldest > after + 1) or (
        oldest is None and last is not None and last[0] > after
    )
    if pruned_after:
        raise Gone(GONE)


GONE = (
    "events after this cursor were dropped (older than EVENT_RETENTION_DAYS): read the state again "
    "(job listing, manifests), then follow the feed from its start"
)


def list_events(
    conn: sqlite3.Connection, product_id: str, since: str | None, limit: int, job_id: str | None
) -> EventPage:
    """A product's events after ``since``, in commit order."""
    after = _since(since)
    _check_kept(conn, after)
    clauses: list[str] = ["product_id = ?", "seq > ?"]
    params: list[Any] = [product_id, after]
    if job_id is not None:
        clauses.append("job_id = ?")
        params.append(job_id)
    sql = f"SELECT seq, doc FROM events WHERE {' AND '.join(clauses)} ORDER BY seq LIMIT ?"  # noqa: S608
    rows = conn.execute(sql, [*params, limit]).fetchall()
    items = [StoredEvent(_event_decoder.decode(doc), str(seq)) for seq, doc in rows]
    return EventPage(items, items[-1].cursor if items else str(after))


def prune_events(conn: sqlite3.Connection, before_us: int, limit: int) -> list[str]:
    """Delete up to ``limit`` events older than ``before_us``; their cursors."""
    rows = conn.execute(
        "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE at_us < ? ORDER BY at_us LIMIT ?)"
        " RETURNING seq",
        (before_us, limit),
    ).fetchall()
    return [str(seq) for (seq,) in rows]
