"""The Cosmos pointer store's job journal: events and job totals in the pointer change's batch.

Layout, all in the pointer container (partition key ``/jobId``):

    job partition      the pointers, one ``JournalEvent`` item per event, and one ``JobState``
                       item per product (id ``job.<productId>``) with the job's totals and seal
    ``~jobs.<product>`` one ``JobIndex`` item per job of the product: a copy of its totals,
                       sorted by last activity (kept in ``createdAt``, so the container's
                       existing composite index serves the listing)

A pointer change with an event is one transactional batch in the job's partition: the pointer
write, the event's create, and a patch of the job's totals, which for a growing event carries
the condition "not sealed". So an event exists exactly when its change does, and a seal and a
late create cannot both win. The product's job index is then brought up to date by a patch
conditioned on its version (a newer copy is never overwritten); it is a copy, so a crash between
the two leaves it one change behind until the job's next change (the README says so).
The job listing reads one partition: it never fans out over the product's jobs.

The feed (``events``) reads the container's change feed (``cosmos_feed``).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import msgspec
from azure.cosmos.aio import ContainerProxy
from azure.cosmos.exceptions import CosmosBatchOperationError

from fleet_artifacts.core.errors import (
    ArtifactError,
    Conflict,
    JobSealed,
    NotFound,
    PreconditionFailed,
    Unavailable,
)
from fleet_artifacts.core.journal import Event, EventPage, JobPage, JobState
from fleet_artifacts.core.models import Pointer
from fleet_artifacts.stores.cosmos_docs import (
    one_page,
    timestamp,
    translate,
)
from fleet_artifacts.stores.cosmos_feed import read_events

log = logging.getLogger(__name__)

EVENT_TYPE = "JournalEvent"
STATE_TYPE = "JobState"
INDEX_TYPE = "JobIndex"
_SYSTEM = ("_rid", "_etag", "_ts", "_self", "_attachments", "_lsn", "id", "recordType", "ttl", "firstEventAt")
_NOT_SEALED = "FROM c WHERE NOT IS_DEFINED(c.sealedAt) OR IS_NULL(c.sealedAt)"


def state_id(product_id: str) -> str:
    """The id of a product's ``JobState`` item in a job's partition."""
    return f"job.{product_id}"


def index_partition(product_id: str) -> str:
    """The partition of a product's job index (no job id starts with ``~``)."""
    return f"~jobs.{product_id}"


def state_of(doc: dict[str, Any]) -> JobState:
    """A ``JobState`` (or a ``JobIndex`` item's copy of one) as stored.

    Cosmos's ``incr`` does not stop at zero as ``JobState.applied`` does: clamped here.
    """
    body = doc.get("state", doc)
    state = msgspec.convert({k: v for k, v in body.items() if k not in _SYSTEM}, JobState)
    return msgspec.structs.replace(
        state, artifact_count=max(0, state.artifact_count), total_bytes=max(0, state.total_bytes)
    )


def _state_doc(state: JobState, first_event_at: str) -> dict[str, Any]:
    doc: dict[str, Any] = msgspec.to_builtins(state)
    doc |= {"id": state_id(state.product_id), "recordType": STATE_TYPE, "firstEventAt": first_event_at}
    return doc


def event_doc(event: Event, ttl_seconds: int) -> dict[str, Any]:
    """An event as its item: immutable, dropped by Cosmos after the retention (``ttl``)."""
    return {
        "id": "ev." + event.id,
        "jobId": event.job_id,
        "recordType": EVENT_TYPE,
        "eventProductId": event.product_id,  # not ``productId``: no pointer query may match it
        "event": msgspec.to_builtins(event),
        "ttl": ttl_seconds,
    }


def _totals_patch(event: Event) -> list[dict[str, Any]]:
    delta = event.delta
    ops: list[dict[str, Any]] = [{"op": "incr", "path": "/version", "value": 1}]
    if delta.artifacts:
        ops.append({"op": "incr", "path": "/artifactCount", "value": delta.artifacts})
    if delta.bytes:
        ops.append({"op": "incr", "path": "/totalBytes", "value": delta.bytes})
    if delta.uploaded:
        ops.append({"op": "set", "path": "/lastUploadAt", "value": timestamp(event.at)})
    if event.type == "job.sealed":
        ops.append({"op": "set", "path": "/sealedAt", "value": timestamp(event.at)})
    return ops


def _etag(result: dict[str, Any]) -> str:
    body = result.get("resourceBody") or {}
    return str(result.get("eTag") or body["_etag"])


class CosmosJournal:
    """The journal operations over one container (mixed into ``CosmosPointerStore``)."""

    _container: ContainerProxy
    _event_ttl: int
    _known_jobs: set[tuple[str, str]]

    async def _ensure_state(self, event: Event) -> None:
        """Create the job's ``JobState`` item for the product unless this process saw it (409: it exists).

        A job with artifacts from before the journal starts from their totals (one aggregate query in
        its partition): no batch can have changed them yet, since every batch needs this item.
        """
        key = (event.product_id, event.job_id)
        if key in self._known_jobs or await self.job(event.product_id, event.job_id) is not None:
            self._remember(key)  # a point read (1 RU) spares the aggregate query when another replica made it
            return
        blank = await self._existing_totals(event.product_id, event.job_id)
        try:
            with translate(f"create job state {event.job_id}"):
                await self._container.create_item(_state_doc(blank, timestamp(event.at)))
        except Conflict:
            pass
        self._remember(key)

    def _remember(self, key: tuple[str, str]) -> None:
        if len(self._known_jobs) > 100_000:  # a bounded memo, not a cache anyone relies on
            self._known_jobs.clear()
        self._known_jobs.add(key)

    async def _existing_totals(self, product_id: str, job_id: str) -> JobState:
        sql = (
            "SELECT COUNT(1) AS n, SUM(c.sizeBytes) AS bytes, MAX(c.createdAt) AS last FROM c"
            " WHERE c.productId = @product AND c.status IN ('ACTIVE', 'ARCHIVED', 'RESTORING')"
            " AND NOT IS_DEFINED(c.recordType)"
        )
        parameters: list[dict[str, Any]] = [{"name": "@product", "value": product_id}]
        with translate(f"count the artifacts of job {job_id}"):
            rows = [
                row
                async for row in self._container.query_items(sql, parameters=parameters, partition_key=job_id)
            ]
        found = rows[0] if rows else {}
        return msgspec.convert(
            {
                "productId": product_id,
                "jobId": job_id,
                "artifactCount": int(found.get("n") or 0),
                "totalBytes": int(found.get("bytes") or 0),
                "lastUploadAt": found.get("last"),
            },
            JobState,
        )

    async def _batch(self, event: Event, first: tuple[Any, ...] | None, what: str) -> list[dict[str, Any]]:
        """Run ``first`` (a pointer write, or nothing) + the event + the totals patch as one batch.

        Returns the operations' results (the last one's ``resourceBody``: the patched ``JobState``).
        """
        await self._ensure_state(event)
        patch: tuple[Any, ...] = ("patch", (state_id(event.product_id), _totals_patch(event)))
        if event.grows or event.type == "job.sealed":
            patch = (*patch, {"filter_predicate": _NOT_SEALED})
        operations = [op for op in (first, ("create", (event_doc(event, self._event_ttl),)), patch) if op]
        for attempt in range(2):
            failure: CosmosBatchOperationError | None = None
            with translate(what):
                try:
                    results = await self._container.execute_item_batch(operations, partition_key=event.job_id)
                except CosmosBatchOperationError as exc:  # an operation refused: nothing was written
                    failure = exc
            if failure is None:
                await self._publish(results[-1]["resourceBody"])
                return list(results)
            failed = failure.error_index or 0
            responses = failure.operation_responses or []
            status = responses[failed].get("statusCode") if failed < len(responses) else failure.status_code
            on_totals = failed == len(operations) - 1
            if on_totals and status == 404 and attempt == 0:
                self._known_jobs.discard((event.product_id, event.job_id))  # its state item went
                await self._ensure_state(event)
                continue
            raise self._refusal(event, on_totals, status, what) from failure
        raise AssertionError("unreachable")

    @staticmethod
    def _refusal(event: Event, on_totals: bool, status: object, what: str) -> Exception:
        if on_totals and status == 412:
            return JobSealed(f"job {event.job_id} is sealed: it takes no new artifacts")
        if status == 409:
            return Conflict(f"{what}: already exists")
        if status == 412:
            return PreconditionFailed(f"{what}: changed since it was read")
        if status == 404:
            return NotFound(f"{what}: not found")
        if status == 429 or not isinstance(status, int) or status >= 500 or status == 408:
            return Unavailable(f"{what}: Cosmos DB answered {status}")
        return RuntimeError(f"{what}: Cosmos DB refused the batch ({status})")  # a bug here: a loud 500

    async def journaled_create(self, doc: dict[str, Any], pointer: Pointer, event: Event) -> str:
        """Create a pointer with its event, atomically; its etag."""
        results = await self._batch(
            event, ("create", (doc,)), f"create pointer {pointer.job_id}/{pointer.id}"
        )
        return _etag(results[0])

    async def journaled_replace(self, doc: dict[str, Any], pointer: Pointer, etag: str, event: Event) -> str:
        """Replace a pointer by etag with its event, atomically; the new etag."""
        write = ("replace", (pointer.id, doc), {"if_match_etag": etag})
        results = await self._batch(event, write, f"replace pointer {pointer.job_id}/{pointer.id}")
        return _etag(results[0])

    async def _publish(self, state_doc: dict[str, Any]) -> None:
        """Bring the product's job index up to ``state_doc``: failures are logged, never raised.

        The change is committed by now; the index is a copy that the job's next change repairs.
        """
        try:
            await self._index(state_doc)
        except Exception as exc:  # any: raising here would undo a committed change's blob
            detail = exc.detail if isinstance(exc, ArtifactError) else repr(exc)
            log.warning("job index of %s not updated: %s", state_doc.get("jobId"), detail)

    async def _index(self, state_doc: dict[str, Any]) -> None:
        state = state_of(state_doc)
        active = state_doc.get("lastUploadAt") or state_doc.get("firstEventAt")
        partition = index_partition(state.product_id)
        ops = [
            {"op": "set", "path": "/state", "value": msgspec.to_builtins(state)},
            {"op": "set", "path": "/createdAt", "value": active},
            {"op": "set", "path": "/version", "value": state.version},
        ]
        for _ in range(2):
            try:
                with translate(f"index job {state.job_id}"):
                    await self._container.patch_item(
                        state.job_id,
                        partition_key=partition,
                        patch_operations=ops,
                        filter_predicate=f"FROM c WHERE c.version < {int(state.version)}",
                    )
                return
            except PreconditionFailed:
                return  # a newer copy is there already
            except NotFound:
                doc = {
                    "id": state.job_id,
                    "jobId": partition,
                    "recordType": INDEX_TYPE,
                    "state": msgspec.to_builtins(state),
                    "createdAt": active,
                    "version": state.version,
                }
                try:
                    with translate(f"index job {state.job_id}"):
                        await self._container.create_item(doc)
                    return
                except Conflict:
                    continue  # created meanwhile by another write: patch that one

    async def job(self, product_id: str, job_id: str) -> JobState | None:
        """One product's state of one job: a point read."""
        try:
            with translate(f"read job state {job_id}"):
                doc = await self._container.read_item(state_id(product_id), partition_key=job_id)
        except NotFound:
            return None
        return state_of(doc) if doc.get("recordType") == STATE_TYPE else None

    async def seal(self, event: Event) -> JobState:
        """Seal the job with its event in one batch; sealed already: the state as it is."""
        try:
            results = await self._batch(event, None, f"seal job {event.job_id}")
        except JobSealed:
            state = await self.job(event.product_id, event.job_id)
            assert state is not None
            return state
        return state_of(results[-1]["resourceBody"])

    async def jobs(self, product_id: str, *, limit: int, continuation: str | None) -> JobPage:
        """A product's jobs, most recently active first: one single-partition query on its index."""
        sql = "SELECT * FROM c WHERE c.jobId = @partition ORDER BY c.createdAt DESC, c.id DESC"
        parameters: list[dict[str, Any]] = [{"name": "@partition", "value": index_partition(product_id)}]
        docs, token = await one_page(
            self._container, sql, parameters, partition=index_partition(product_id), limit=limit,
            continuation=continuation, what=f"list jobs of {product_id}",
        )  # fmt: skip
        return JobPage([state_of(doc) for doc in docs], token)

    async def events(
        self, product_id: str, *, since: str | None, limit: int, job_id: str | None
    ) -> EventPage:
        """The product's events after ``since``, from the change feed (``cosmos_feed``)."""
        return await read_events(
            self._container,
            product_id,
            since=since,
            limit=limit,
            job_id=job_id,
            retention_seconds=self._event_ttl,
        )

    async def prune_events(self, *, before: datetime, limit: int = 1000) -> list[str]:
        """Nothing to do: Cosmos drops each event by its ``ttl``."""
        return []
