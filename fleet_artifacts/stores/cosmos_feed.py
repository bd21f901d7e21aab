"""The event feed on Cosmos: the container's change feed, read for one product's ``JournalEvent`` items.

Event items are written once and never changed, in their job's partition, in the batch of the
change they describe; the change feed (latest-version mode) returns each of them once, in commit
order per partition (so per job), from any replica, and resumes from the SDK's continuation
token. The feed of the whole container also carries pointers and records: they are read and
skipped (the README gives the cost); ``jobId`` narrows the read to one partition.

A cursor is the SDK's continuation at the start of a page plus how many of the product's events
on that page were delivered already: a response that stops part-way through a page (``limit``)
resumes exactly there, since events never move within the feed.
"""

from __future__ import annotations

import base64
import time
from typing import Any, cast

import msgspec
from azure.core.async_paging import AsyncPageIterator
from azure.cosmos.aio import ContainerProxy

from fleet_artifacts.core.errors import Gone, InvalidInput
from fleet_artifacts.core.journal import Event, EventPage, StoredEvent
from fleet_artifacts.stores.cosmos_docs import translate

PAGE_ITEMS = 100  # items (of every kind) per change-feed read
MAX_PAGES = 20  # reads per call at most: a quiet product on a busy container answers empty, but moves on
# A cursor resting at the feed's end takes the time of the read as its mark at most this often: a
# mark a little old only errs towards Gone by as much (against a ttl of days), and polls of an
# idle feed meanwhile are answered the very cursor they sent ("an empty page keeps the position").
MARK_REFRESH_SECONDS = 3600
_NOT_OURS = "since is not a cursor this service issued for this feed"


class FeedCursor(msgspec.Struct, array_like=True, frozen=True):
    """Where a reader of one product's (and maybe one job's) events stands."""

    product_id: str
    job_id: str  # "" for the whole product
    token: str  # the SDK's continuation at the start of the page; "" for the beginning
    skip: int  # the product's events on that page delivered already
    # When the last item before this position was written (Cosmos ``_ts``, seconds): what follows
    # is no older, so once this is past the events' ttl some may be gone. 0: not known.
    mark: int = 0

    def encode(self) -> str:
        """The opaque form clients hold."""
        return "c" + base64.urlsafe_b64encode(msgspec.json.encode(self)).decode().rstrip("=")

    @staticmethod
    def decode(since: str, product_id: str, job_id: str | None) -> FeedCursor:
        """A client's cursor; InvalidInput unless it was issued for this very feed."""
        try:
            raw = base64.urlsafe_b64decode(since[1:] + "=" * (-len(since[1:]) % 4))
            cursor = msgspec.json.decode(raw, type=FeedCursor)
        except (ValueError, msgspec.DecodeError):
            raise InvalidInput(_NOT_OURS, field="since") from None
        printable = cursor.token.isascii() and cursor.token.isprintable()  # it travels as a header
        if not since.startswith("c") or not printable or cursor.skip < 0:
            raise InvalidInput(_NOT_OURS, field="since")
        if (cursor.product_id, cursor.job_id) != (product_id, job_id or ""):
            raise InvalidInput(_NOT_OURS, field="since")
        return cursor


def _events_of(docs: list[dict[str, Any]], product_id: str) -> list[tuple[Event, int]]:
    return [
        (msgspec.convert(doc["event"], Event), int(doc.get("_ts") or 0))
        for doc in docs
        if doc.get("recordType") == "JournalEvent" and doc.get("eventProductId") == product_id
    ]


def _pages(container: ContainerProxy, token: str, job_id: str | None) -> AsyncPageIterator[dict[str, Any]]:
    try:
        if token:
            feed = container.query_items_change_feed(continuation=token, max_item_count=PAGE_ITEMS)
        elif job_id is not None:
            feed = container.query_items_change_feed(
                partition_key=job_id, start_time="Beginning", max_item_count=PAGE_ITEMS
            )
        else:
            feed = container.query_items_change_feed(start_time="Beginning", max_item_count=PAGE_ITEMS)
    except (ValueError, KeyError, TypeError):  # the SDK could not read the continuation inside the cursor
        raise InvalidInput(_NOT_OURS, field="since") from None
    return cast(AsyncPageIterator[dict[str, Any]], feed.by_page())


async def _next_page(pages: AsyncPageIterator[dict[str, Any]], resumed: bool) -> list[dict[str, Any]] | None:
    """The next page's items; None at the end of the feed (Cosmos answered 304)."""
    try:
        page = await anext(pages)
        return [doc async for doc in page]
    except StopAsyncIteration:
        return None
    except (ValueError, KeyError, TypeError):
        if resumed:  # the SDK parses the continuation when it sends the first request
            raise InvalidInput(_NOT_OURS, field="since") from None
        raise


async def read_events(
    container: ContainerProxy,
    product_id: str,
    *,
    since: str | None,
    limit: int,
    job_id: str | None,
    retention_seconds: int,
) -> EventPage:
    """Up to ``limit`` of the product's events after ``since`` (see the module docstring).

    Gone when the cursor's position is older than the events' ttl: some after it may be dropped.
    """
    at = (
        FeedCursor.decode(since, product_id, job_id) if since else FeedCursor(product_id, job_id or "", "", 0)
    )
    if at.mark and time.time() - at.mark > retention_seconds:
        raise Gone(
            "events after this cursor may have been dropped (older than EVENT_RETENTION_DAYS): read the "
            "state again (job listing, manifests), then follow the feed from its start"
        )
    items: list[StoredEvent] = []
    with translate(f"read the event feed of {product_id}", continuation_given=bool(at.token)):
        pages = _pages(container, at.token, job_id)
        for _ in range(MAX_PAGES):
            docs = await _next_page(pages, bool(at.token))
            if docs is None:  # the end of the feed: what comes next is written from now on
                now = int(time.time())
                if now - at.mark >= MARK_REFRESH_SECONDS:
                    at = msgspec.structs.replace(at, mark=now)
                break
            events = _events_of(docs, product_id)
            start, room = at.skip, limit - len(items)
            taken = events[start : start + room]
            for n, (event, ts) in enumerate(taken, start=start + 1):
                cursor = msgspec.structs.replace(at, skip=n, mark=ts or at.mark)
                items.append(StoredEvent(event, cursor.encode()))
            if start + len(taken) < len(events):  # stopped part-way: resume on this page
                at = msgspec.structs.replace(at, skip=start + len(taken), mark=taken[-1][1] or at.mark)
                break
            last_ts = int(docs[-1].get("_ts") or 0) if docs else 0
            at = msgspec.structs.replace(
                at, token=pages.continuation_token or at.token, skip=0, mark=last_ts or at.mark
            )
            if len(items) >= limit:
                break
    return EventPage(items, at.encode())
