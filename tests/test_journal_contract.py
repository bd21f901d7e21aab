"""The journal half of the PointerStore contract: events, job totals and seals, on every adapter.

Runs on SQLite, the Cosmos test gateway (and a real Cosmos when configured) and the in-memory fake,
through the ``pointers`` fixture of the pointer contract suite.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import timedelta

import msgspec
import pytest

from fleet_artifacts.core.errors import Gone, InvalidInput, JobSealed, PreconditionFailed
from fleet_artifacts.core.journal import Event, EventType, event_of, seal_event
from fleet_artifacts.core.models import ArtifactStatus, Pointer
from fleet_artifacts.core.ports import PointerStore
from tests.test_pointer_contract import T0, make, pointers

__all__ = ["pointers"]  # the fixture, used by name


def _event(old: Pointer | None, new: Pointer | None, minutes: int = 0) -> Event:
    event = event_of(old, new, at=T0 + timedelta(minutes=minutes), event_id=secrets.token_hex(8))
    assert event is not None
    return event


async def _created(
    pointers: PointerStore, job: str, *, product: str = "prod-a", size: int = 10, n: int = 0
) -> Pointer:
    pointer = make(job, n, product=product, size_bytes=size)
    await pointers.create(pointer, event=_event(None, pointer, n))
    return pointer


async def _all_events(pointers: PointerStore, product: str, **kw: object) -> list[Event]:
    seen: list[Event] = []
    since: str | None = None
    while True:
        page = await pointers.events(product, since=since, limit=3, job_id=kw.get("job_id"))  # type: ignore[arg-type]
        seen += [stored.event for stored in page.items]
        if not page.items:
            assert page.next == (since or page.next)  # an empty page keeps the position
            return seen
        since = page.next


async def test_a_create_writes_its_event_and_counts_in_its_job(pointers: PointerStore) -> None:
    job = "j-" + secrets.token_hex(4)
    a = await _created(pointers, job, size=10, n=1)
    b = await _created(pointers, job, size=32, n=2)
    state = await pointers.job("prod-a", job)
    assert state is not None
    assert (state.artifact_count, state.total_bytes, state.sealed) == (2, 42, False)
    assert state.last_upload_at == T0 + timedelta(minutes=2)
    assert await pointers.job("prod-b", job) is None  # totals are per product
    events = await _all_events(pointers, "prod-a", job_id=job)
    assert [(e.type, e.artifact_id) for e in events] == [(EventType.CREATED, a.id), (EventType.CREATED, b.id)]
    assert events[0].artifact is not None and events[0].artifact.size_bytes == 10


async def test_a_replace_writes_its_event_and_a_lost_swap_writes_none(pointers: PointerStore) -> None:
    job = "j-" + secrets.token_hex(4)
    pointer = make(job, size_bytes=7)
    etag = await pointers.create(pointer, event=_event(None, pointer))
    gone = msgspec.structs.replace(pointer, status=ArtifactStatus.DELETING)
    with pytest.raises(PreconditionFailed):
        await pointers.replace(gone, etag="stale", event=_event(pointer, gone, 1))
    state = await pointers.job("prod-a", job)
    assert state is not None and state.artifact_count == 1
    await pointers.replace(gone, etag=etag, event=_event(pointer, gone, 2))
    state = await pointers.job("prod-a", job)
    assert state is not None and (state.artifact_count, state.total_bytes) == (0, 0)
    types = [e.type for e in await _all_events(pointers, "prod-a", job_id=job)]
    assert types == [EventType.CREATED, EventType.DELETED]


async def test_a_sealed_job_refuses_growth_atomically_and_still_shrinks(pointers: PointerStore) -> None:
    job = "j-" + secrets.token_hex(4)
    kept = await _created(pointers, job)
    uploading = make(job, 5, status=ArtifactStatus.UPLOADING)
    upload_etag = await pointers.create(uploading)  # no event: an unfinished upload is nobody's news
    first = await pointers.seal(seal_event("prod-a", job, at=T0 + timedelta(hours=1), event_id="s1"))
    again = await pointers.seal(seal_event("prod-a", job, at=T0 + timedelta(hours=2), event_id="s2"))
    assert first.sealed and again.sealed_at == first.sealed_at == T0 + timedelta(hours=1)

    late = make(job, 9)
    with pytest.raises(JobSealed):
        await pointers.create(late, event=_event(None, late, 3))
    assert await pointers.get(job, late.id) is None  # nothing written
    finished = msgspec.structs.replace(uploading, status=ArtifactStatus.ACTIVE)
    with pytest.raises(JobSealed):
        await pointers.replace(finished, etag=upload_etag, event=_event(uploading, finished, 4))
    still = await pointers.get(job, uploading.id)
    assert still is not None and still.pointer.status is ArtifactStatus.UPLOADING

    stored = await pointers.get(job, kept.id)
    assert stored is not None
    gone = msgspec.structs.replace(kept, status=ArtifactStatus.DELETING)
    await pointers.replace(gone, etag=stored.etag, event=_event(kept, gone, 5))  # shrinking still works
    state = await pointers.job("prod-a", job)
    assert state is not None and state.sealed and state.artifact_count == 0
    types = [e.type for e in await _all_events(pointers, "prod-a", job_id=job)]
    assert types == [EventType.CREATED, EventType.SEALED, EventType.DELETED]  # one seal event


async def test_the_feed_resumes_exactly_once_per_product_and_job(pointers: PointerStore) -> None:
    mine, other = "p-" + secrets.token_hex(4), "p-" + secrets.token_hex(4)
    jobs = ["j1-" + secrets.token_hex(3), "j2-" + secrets.token_hex(3)]
    made = [await _created(pointers, jobs[n % 2], product=mine, n=n) for n in range(7)]
    await _created(pointers, jobs[0], product=other)
    seen = await _all_events(pointers, mine)
    assert [e.artifact_id for e in seen] == [p.id for p in made]  # written order, each once
    only = await _all_events(pointers, mine, job_id=jobs[1])
    assert [e.artifact_id for e in only] == [p.id for p in made if p.job_id == jobs[1]]
    first = await pointers.events(mine, since=None, limit=2, job_id=None)
    more = await _created(pointers, jobs[0], product=mine, n=20)
    rest = await pointers.events(mine, since=first.next, limit=100, job_id=None)
    assert [s.event.artifact_id for s in rest.items] == [p.id for p in made[2:]] + [more.id]
    for bad in ("x", "-1", "9" * 40):
        with pytest.raises(InvalidInput):
            await pointers.events(mine, since=bad, limit=10, job_id=None)


async def test_polls_of_an_idle_feed_get_back_the_cursor_they_sent(pointers: PointerStore) -> None:
    """A second apart too: a cursor that changed with the clock would read as a new position."""
    product, job = "p-" + secrets.token_hex(4), "j-" + secrets.token_hex(4)
    await _created(pointers, job, product=product)
    read = await pointers.events(product, since=None, limit=10, job_id=None)
    assert len(read.items) == 1
    idle = await pointers.events(product, since=read.next, limit=10, job_id=None)
    await asyncio.sleep(1.1)
    later = await pointers.events(product, since=idle.next, limit=10, job_id=None)
    assert idle.items == later.items == []
    assert later.next == idle.next == read.next


async def test_jobs_are_listed_most_recently_active_first_in_pages(pointers: PointerStore) -> None:
    product = "p-" + secrets.token_hex(4)
    names = [f"job-{n}-{secrets.token_hex(2)}" for n in range(5)]
    for n, job in enumerate(names):
        await _created(pointers, job, product=product, n=n, size=n + 1)
    await _created(pointers, names[1], product=product, n=9)  # job 1 is now the most recent
    listed: list[str] = []
    token: str | None = None
    while True:
        page = await pointers.jobs(product, limit=2, continuation=token)
        listed += [state.job_id for state in page.items]
        token = page.continuation
        if token is None:
            break
    assert listed == [names[1], names[4], names[3], names[2], names[0]]
    assert (await pointers.jobs("p-nobody", limit=10, continuation=None)).items == []
    first = await pointers.jobs(product, limit=2, continuation=None)
    assert first.continuation is not None
    with pytest.raises(InvalidInput):
        await pointers.jobs("p-nobody", limit=2, continuation=first.continuation)  # another product's
    with pytest.raises(InvalidInput):
        await pointers.jobs(product, limit=2, continuation="garbage!")


async def test_old_events_are_pruned_and_cursors_stay_valid(
    pointers: PointerStore, request: pytest.FixtureRequest
) -> None:
    product = "p-" + secrets.token_hex(4)
    job = "j-" + secrets.token_hex(4)
    old = await _created(pointers, job, product=product, n=0)
    new = await _created(pointers, job, product=product, n=60)  # an hour later
    page = await pointers.events(product, since=None, limit=1, job_id=None)
    gone = await pointers.prune_events(before=T0 + timedelta(minutes=30), limit=100)
    if "cosmos" in request.node.callspec.id:
        assert gone == []  # Cosmos drops events by their ttl, not by a sweep
        return
    assert len(gone) >= 1
    remaining = await _all_events(pointers, product)
    assert [e.artifact_id for e in remaining] == [new.id]
    resumed = await pointers.events(product, since=page.next, limit=10, job_id=None)
    assert [s.event.artifact_id for s in resumed.items] == [new.id]
    assert old.id not in [e.artifact_id for e in remaining]


async def test_a_cursor_behind_dropped_events_is_gone_not_silently_skipped(
    pointers: PointerStore, request: pytest.FixtureRequest
) -> None:
    if "cosmos" in request.node.callspec.id:
        pytest.skip("Cosmos drops events by ttl on its own clock; its cursors are judged by age (README)")
    product = "p-" + secrets.token_hex(4)
    job = "j-" + secrets.token_hex(4)
    await _created(pointers, job, product=product, n=0)
    await _created(pointers, job, product=product, n=10)
    last = await _created(pointers, job, product=product, n=60)
    behind = (await pointers.events(product, since=None, limit=1, job_id=None)).next
    await pointers.prune_events(before=T0 + timedelta(minutes=30), limit=100)  # drops the 2nd, unread
    with pytest.raises(Gone):
        await pointers.events(product, since=behind, limit=10, job_id=None)
    fresh = await pointers.events(product, since=None, limit=10, job_id=None)  # from the start: fine
    assert [s.event.artifact_id for s in fresh.items] == [last.id]
    with pytest.raises(InvalidInput):
        await pointers.events(product, since="999999999", limit=10, job_id=None)  # never issued
