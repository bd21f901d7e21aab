"""The journal half of the pointer-store port: job totals, seals and the event feed.

``PointerStore`` extends it. Events are written by ``PointerStore.create`` and ``replace`` (their
``event`` argument) in the same unit of work as the pointer change, and by ``seal``.
"""

from __future__ import annotations

import abc
from datetime import datetime

from fleet_artifacts.core.journal import Event, EventPage, JobPage, JobState


class JournalStore(abc.ABC):
    """Job totals, seals and the ordered event log, kept by the pointer store."""

    @abc.abstractmethod
    async def job(self, product_id: str, job_id: str) -> JobState | None:
        """One product's state of one job (a point read); None if it never had an event."""

    @abc.abstractmethod
    async def seal(self, event: Event) -> JobState:
        """Seal ``event``'s job for its product, writing ``event`` (of type SEALED) with the seal.

        Sealing a sealed job changes nothing and writes no event; it returns the state as it is.
        """

    @abc.abstractmethod
    async def jobs(self, product_id: str, *, limit: int, continuation: str | None) -> JobPage:
        """A product's jobs, most recently active first (last upload, else first event).

        InvalidInput if ``continuation`` was not issued by this store for this product.
        """

    @abc.abstractmethod
    async def events(
        self, product_id: str, *, since: str | None, limit: int, job_id: str | None
    ) -> EventPage:
        """Up to ``limit`` of a product's events after the cursor ``since`` (None: from the oldest kept).

        In the order they were written, per job at least; every event exactly once to a reader
        that resumes from the returned ``next``, across replicas and restarts. InvalidInput if
        ``since`` is not a cursor of this store; Gone if events after it were dropped already
        (past the retention), so resuming there would skip them without a word.
        """

    @abc.abstractmethod
    async def prune_events(self, *, before: datetime, limit: int = 1000) -> list[str]:
        """Remove up to ``limit`` events written before ``before``; the cursors of those that went.

        Stores that expire events by themselves (Cosmos per-item TTL) remove none here.
        """
