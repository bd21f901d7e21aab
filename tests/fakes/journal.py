"""``MemoryJournal``: the journal half of the pointer port in lists, with SqlitePointerStore's semantics."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import msgspec

from fleet_artifacts.core.errors import Gone, InvalidInput, JobSealed
from fleet_artifacts.core.journal import Event, EventPage, JobPage, JobState, StoredEvent

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _us(when: datetime) -> int:
    return (when - _EPOCH) // timedelta(microseconds=1)


class _JobCursor(msgspec.Struct, array_like=True, frozen=True):
    product_id: str
    active_us: int
    job_id: str


class MemoryJournal:
    """Events in a list (their index + 1 is the cursor), job states in a dict."""

    def __init__(self) -> None:
        self._events: list[Event | None] = []  # None: pruned (sequence numbers are never reused)
        self._jobs: dict[tuple[str, str], tuple[int, JobState]] = {}  # (active_us, state)

    def job(self, product_id: str, job_id: str) -> JobState | None:
        found = self._jobs.get((product_id, job_id))
        return None if found is None else found[1]

    def check(self, event: Event | None) -> None:
        """Refuse before anything is written: a sealed job takes no growth."""
        if event is None:
            return
        state = self.job(event.product_id, event.job_id)
        if state is not None and state.sealed and event.grows:
            raise JobSealed(f"job {event.job_id} is sealed: it takes no new artifacts")

    def apply(self, event: Event | None) -> None:
        """Apply a checked event to its job and log it."""
        if event is None:
            return
        key = (event.product_id, event.job_id)
        known = self._jobs.get(key)
        before = known[1] if known else JobState(product_id=event.product_id, job_id=event.job_id)
        after = before.applied(event)
        if after.last_upload_at is not None:
            active_us = _us(after.last_upload_at)
        else:
            active_us = known[0] if known else _us(event.at)
        self._jobs[key] = (active_us, after)
        self._events.append(event)

    def seal(self, event: Event) -> JobState:
        state = self.job(event.product_id, event.job_id)
        if state is not None and state.sealed:
            return state
        self.apply(event)
        sealed = self.job(event.product_id, event.job_id)
        assert sealed is not None
        return sealed

    def jobs(self, product_id: str, limit: int, continuation: str | None) -> JobPage:
        rows = sorted(
            (
                (active, state.job_id, state)
                for (p, _), (active, state) in self._jobs.items()
                if p == product_id
            ),
            key=lambda row: (row[0], row[1]),
            reverse=True,
        )
        if continuation:
            try:
                raw = base64.urlsafe_b64decode(continuation + "=" * (-len(continuation) % 4))
                cursor = msgspec.json.decode(raw, type=_JobCursor)
            except (ValueError, msgspec.DecodeError):
                cursor = None
            if cursor is None or cursor.product_id != product_id:
                raise InvalidInput(
                    "continuationToken is not one this service issued for this listing",
                    field="continuationToken",
                )
            rows = [row for row in rows if (row[0], row[1]) < (cursor.active_us, cursor.job_id)]
        page = rows[:limit]
        token = None
        if len(rows) > limit:
            last = page[-1]
            raw = msgspec.json.encode(_JobCursor(product_id, last[0], last[1]))
            token = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        return JobPage([row[2] for row in page], token)

    def events(self, product_id: str, since: str | None, limit: int, job_id: str | None) -> EventPage:
        if since is not None and not (since.isascii() and since.isdigit() and len(since) <= 18):
            raise InvalidInput("since is not a cursor this service issued", field="since")
        after = int(since or 0)
        if after > len(self._events):
            raise InvalidInput("since is not a cursor this service issued", field="since")
        if after and None in self._events[after:]:
            raise Gone("events after this cursor were dropped (older than the retention)")
        items: list[StoredEvent] = []
        for index in range(after, len(self._events)):
            event = self._events[index]
            if event is None or event.product_id != product_id:
                continue
            if job_id is not None and event.job_id != job_id:
                continue
            items.append(StoredEvent(event, str(index + 1)))
            if len(items) == limit:
                break
        return EventPage(items, items[-1].cursor if items else str(after))

    def prune(self, before: datetime, limit: int) -> list[str]:
        gone: list[str] = []
        for index, event in enumerate(self._events):
            if len(gone) == limit:
                break
            if event is not None and event.at < before:
                self._events[index] = None
                gone.append(str(index + 1))
        return gone
