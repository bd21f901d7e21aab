"""Jobs as a whole: the product's job listing, a job's manifest, sealing, and the event feed."""

from __future__ import annotations

import asyncio
import time

from fleet_artifacts.core.errors import InvalidInput, NotFound
from fleet_artifacts.core.journal import (
    EntryOut,
    EventOut,
    EventPageOut,
    JobOut,
    JobPageOut,
    Manifest,
    SealOut,
    seal_event,
)
from fleet_artifacts.core.kernel import Kernel
from fleet_artifacts.core.models import ArtifactStatus
from fleet_artifacts.core.ports import ListQuery
from fleet_artifacts.core.validation import check_id

MAX_WAIT_SECONDS = 30  # a long poll answers within this, below the idle timeouts of common proxies
MAX_PAGE = 1000


def _page_size(limit: int, name: str = "limit") -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"{name} must be between 1 and {MAX_PAGE}", field=name)
    return limit


class Jobs:
    """What dashboards and workers ask of a job as a whole."""

    def __init__(self, kernel: Kernel, *, poll_interval: float = 0.25) -> None:
        """``poll_interval``: how often a long poll looks at the store again (every replica writes there)."""
        self.kernel = kernel
        self.poll_interval = poll_interval

    async def list(self, product_id: str, *, limit: int = 100, continuation: str | None = None) -> JobPageOut:
        """The product's jobs, most recently active first, with their totals."""
        page = await self.kernel.pointers.jobs(product_id, limit=_page_size(limit), continuation=continuation)
        return JobPageOut(
            items=[JobOut.of(state) for state in page.items], continuation_token=page.continuation
        )

    async def manifest(self, product_id: str, job_id: str) -> Manifest:
        """Every readable (ACTIVE, unexpired) artifact of the job, oldest first, and whether it is sealed.

        NotFound for a job the product never wrote to.
        """
        check_id(job_id, "jobId")
        kernel = self.kernel
        state = await kernel.pointers.job(product_id, job_id)
        now = kernel.now()
        entries: list[EntryOut] = []
        continuation: str | None = None
        while True:
            query = ListQuery(
                job_id=job_id,
                product_id=product_id,
                statuses=(ArtifactStatus.ACTIVE,),
                limit=MAX_PAGE,
                continuation=continuation,
            )
            page = await kernel.pointers.list(query)
            entries += [EntryOut.of(s.pointer) for s in page.items if s.pointer.visible_at(now)]
            continuation = page.continuation
            if continuation is None:
                break
        if state is None and not entries:
            raise NotFound("job not found")
        entries.sort(key=lambda entry: (entry.created_at, entry.id))
        return Manifest(
            product_id=product_id,
            job_id=job_id,
            sealed=state is not None and state.sealed,
            artifacts=entries,
        )

    async def seal(self, product_id: str, job_id: str) -> SealOut:
        """Seal the job for the product: it takes no new artifact from now on. Sealing again: no change."""
        check_id(job_id, "jobId")
        event = seal_event(product_id, job_id, at=self.kernel.now(), event_id=self.kernel.new_id())
        state = await self.kernel.pointers.seal(event)
        assert state.sealed_at is not None
        return SealOut(job_id=job_id, sealed=True, sealed_at=state.sealed_at)

    async def events(
        self,
        product_id: str,
        *,
        since: str | None = None,
        limit: int = 100,
        wait: int = 0,
        job_id: str | None = None,
    ) -> EventPageOut:
        """The product's events after ``since``, waiting up to ``wait`` seconds for one when there is none."""
        _page_size(limit)
        if not 0 <= wait <= MAX_WAIT_SECONDS:
            raise InvalidInput(f"wait must be between 0 and {MAX_WAIT_SECONDS} seconds", field="wait")
        if job_id is not None:
            check_id(job_id, "jobId")
        deadline = time.monotonic() + wait
        while True:
            page = await self.kernel.pointers.events(product_id, since=since, limit=limit, job_id=job_id)
            left = deadline - time.monotonic()
            if page.items or left <= 0:
                break
            since = page.next
            await asyncio.sleep(min(self.poll_interval, left))
        items = [
            EventOut(
                cursor=stored.cursor,
                type=stored.event.type,
                product_id=stored.event.product_id,
                job_id=stored.event.job_id,
                artifact_id=stored.event.artifact_id,
                at=stored.event.at,
                artifact=stored.event.artifact,
            )
            for stored in page.items
        ]
        return EventPageOut(items=items, next=page.next)
