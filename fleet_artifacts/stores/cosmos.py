"""Azure Cosmos DB (NoSQL API) adapter for pointer documents (azure-cosmos, async client).

One container, partitioned by ``/jobId`` (see ``stores.cosmos_setup``). Items are
the pointers and side records as ``stores.cosmos_docs`` writes them: no payload, no
extra fields; Cosmos adds ``_rid``, ``_etag``, ``_ts``, ``_self`` and
``_attachments``, which decoding strips.

Every hot path stays in one partition: ``get`` is a point read and ``list`` a single-partition
query. Only ``find`` (an id without its job) fans out.

One ``CosmosClient`` per process, opened and closed by the app lifespan. SDK errors become the
project's errors in ``cosmos_docs.translate`` and nowhere else; the SDK's own retry policy (429
throttling, connection errors) runs first. The job journal is ``stores.cosmos_journal``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from azure.core import MatchConditions
from azure.core.credentials_async import AsyncTokenCredential
from azure.cosmos.aio import CosmosClient
from azure.identity.aio import DefaultAzureCredential

from fleet_artifacts.core.errors import NotFound, PreconditionFailed, Unavailable
from fleet_artifacts.core.journal import Event
from fleet_artifacts.core.models import ArtifactStatus, BlobTier, Pointer
from fleet_artifacts.core.ports import (
    NEVER,
    ListQuery,
    PointerPage,
    PointerStore,
    R,
    SideRecord,
    StoredPointer,
    StoredRecord,
)
from fleet_artifacts.settings import PREFIX, Settings, SettingsError
from fleet_artifacts.stores.cosmos_docs import (
    aged_query,
    from_document,
    list_query,
    one_page,
    record_from,
    timestamp,
    to_document,
    translate,
)
from fleet_artifacts.stores.cosmos_journal import CosmosJournal
from fleet_artifacts.stores.cosmos_setup import container_problem, ensure_database_and_container


class CosmosPointerStore(CosmosJournal, PointerStore):
    """``PointerStore`` on one Cosmos DB container partitioned by ``/jobId``.

    The store owns the client (and the credential, if given) and closes them in ``close``. Cosmos
    keeps ids unique per partition only; pointer ids are random, so a clash across jobs is not
    expected, and ``find`` returns the first match if one ever happens.
    """

    def __init__(
        self,
        client: CosmosClient,
        *,
        endpoint: str,
        database: str,
        container: str,
        credential: AsyncTokenCredential | None = None,
        init_on_start: bool = False,
        event_retention_days: int = 7,
    ) -> None:
        """Wrap a client for ``database``/``container``; ``open`` connects.

        Args:
            client: An (unopened) ``azure.cosmos.aio.CosmosClient``.
            endpoint: The account URL, named in start-up errors.
            database: Database id.
            container: Container id.
            credential: The Entra ID credential the client uses, to close with it.
            init_on_start: ``open`` creates the database and container if missing
                instead of only checking that they exist.
            event_retention_days: How long Cosmos keeps a journal event (its ``ttl``).
        """
        self._client = client
        self._endpoint = endpoint
        self._database = database
        self._container_id = container
        self._container = client.get_database_client(database).get_container_client(container)
        self._credential = credential
        self._init_on_start = init_on_start
        self._connected = False
        self._closed = False
        self._event_ttl = event_retention_days * 24 * 3600
        self._known_jobs = set()

    @classmethod
    def from_settings(cls, settings: Settings) -> CosmosPointerStore:
        """Build the store from ``cosmos_endpoint`` and ``cosmos_key`` (or Entra ID if no key).

        The SDK's retry policies are kept: ``azure_retry_total`` sets its 429 retries (honouring
        ``x-ms-retry-after-ms``; 0 means its default, 9) and caps its connection retries, which
        ``connect_retries`` sets (``retry_connect``/``retry_read`` of its ``_ConnectionRetryPolicy``).

        Raises:
            SettingsError: No Cosmos endpoint is configured.
        """
        if not settings.cosmos_endpoint:
            raise SettingsError(f"the cosmos pointer backend needs {PREFIX}COSMOS_ENDPOINT")
        options: dict[str, Any] = {
            "retry_total": settings.azure_retry_total,
            "retry_connect": settings.connect_retries,
            "retry_read": settings.connect_retries,
            "retry_backoff_factor": 0.5,  # RetryMode.Fixed: 0 s, then 0.5 s apart (SDK default 1 s)
            "connection_timeout": settings.connect_timeout_seconds,  # ConnectionPolicy.RequestTimeout
        }
        credential: AsyncTokenCredential | None = None
        if settings.cosmos_key:
            client = CosmosClient(settings.cosmos_endpoint, settings.cosmos_key, **options)
        else:
            credential = DefaultAzureCredential()
            client = CosmosClient(settings.cosmos_endpoint, credential, **options)
        return cls(
            client,
            endpoint=settings.cosmos_endpoint,
            database=settings.cosmos_database,
            container=settings.cosmos_container,
            credential=credential,
            init_on_start=settings.cosmos_init_on_start,
            event_retention_days=settings.event_retention_days,
        )

    @property
    def _where(self) -> str:
        return f"Cosmos DB at {self._endpoint}"

    async def _connect(self) -> None:
        if self._connected:
            return
        with translate(self._where, show_cause=True):
            # What ``async with client`` does: reads the account, so a wrong key or
            # an unreachable endpoint fails here rather than on the first request.
            await self._client.__aenter__()
        self._connected = True

    async def open(self) -> None:
        """Connect, then check the container (or create it, if ``init_on_start``).

        Raises:
            Unavailable: The endpoint is unreachable, the credentials are
                refused, the container does not exist (run
                ``fleet-artifacts cosmos-init``), or it is partitioned or indexed
                differently. The message names the endpoint and the cause.
        """
        if self._init_on_start:
            await self.initialise()
            return
        await self._connect()
        name = f"{self._database}/{self._container_id}"
        try:
            with translate(self._where, show_cause=True):
                props = await self._container.read()
        except NotFound as exc:
            raise Unavailable(
                f"{self._where}: container {name} does not exist: run `fleet-artifacts cosmos-init` "
                f"(or set {PREFIX}COSMOS_INIT_ON_START=true)"
            ) from exc.__cause__
        problem = container_problem(props, self._database, self._container_id)
        if problem is not None:
            raise Unavailable(f"{self._where}: {problem}")

    async def initialise(self) -> dict[str, Any]:
        """Connect and create the database and container if missing (see ``cosmos_init``).

        Returns:
            What was created and what existed already.
        """
        await self._connect()
        with translate(self._where, show_cause=True):
            return await ensure_database_and_container(self._client, self._database, self._container_id)

    async def close(self) -> None:
        """Close the client and the credential it uses; safe to call twice or without ``open``."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._client.close()
        finally:
            if self._credential is not None:
                await self._credential.close()

    async def check(self) -> None:
        """Readiness: read the container (its properties; no item is touched)."""
        with translate(f"check container {self._container_id}"):
            await self._container.read()

    async def create(self, pointer: Pointer, *, event: Event | None = None) -> str:
        """Insert with ``create_item`` (with ``event``: one batch); Conflict if the id exists in the job."""
        if event is not None:
            return await self.journaled_create(to_document(pointer), pointer, event)
        with translate(f"create pointer {pointer.job_id}/{pointer.id}"):
            created = await self._container.create_item(to_document(pointer))
        return str(created["_etag"])

    async def get(self, job_id: str, artifact_id: str) -> StoredPointer | None:
        """Point read (id + partition key, about 1 RU); None if absent."""
        try:
            with translate(f"read pointer {job_id}/{artifact_id}"):
                doc = await self._container.read_item(artifact_id, partition_key=job_id)
        except NotFound:
            return None
        if "recordType" in doc:  # an idempotency record shares the partition; it is no pointer
            return None
        return from_document(doc)

    async def find(self, artifact_id: str) -> StoredPointer | None:
        """Look a pointer up by id alone: a cross-partition query.

        Cost: the query is sent to every physical partition of the container
        (a few RUs each, using the id index), so it grows with the container's
        size, unlike ``get`` (one partition, about 1 RU). Use ``get`` whenever
        the job id is known; keep ``find`` off hot paths.
        """
        parameters: list[dict[str, Any]] = [{"name": "@id", "value": artifact_id}]
        results = self._container.query_items(
            "SELECT * FROM c WHERE c.id = @id AND NOT IS_DEFINED(c.recordType)", parameters=parameters
        )
        with translate(f"find pointer {artifact_id}"):
            async for doc in results:
                return from_document(doc)
        return None

    async def replace(self, pointer: Pointer, *, etag: str, event: Event | None = None) -> str:
        """Compare-and-swap with ``if-match`` (with ``event``: one batch); PreconditionFailed, NotFound."""
        if event is not None:
            return await self.journaled_replace(to_document(pointer), pointer, etag, event)
        with translate(f"replace pointer {pointer.job_id}/{pointer.id}"):
            replaced = await self._container.replace_item(
                pointer.id, to_document(pointer), etag=etag, match_condition=MatchConditions.IfNotModified
            )
        return str(replaced["_etag"])

    async def delete(self, job_id: str, artifact_id: str) -> bool:
        """Delete by id + partition key; False if it was not there."""
        try:
            with translate(f"delete pointer {job_id}/{artifact_id}"):
                await self._container.delete_item(artifact_id, partition_key=job_id)
        except NotFound:
            return False
        return True

    async def get_record(self, job_id: str, record_id: str, kind: type[R]) -> StoredRecord[R] | None:
        """Point read of a side record in the job's partition."""
        try:
            with translate(f"read record {job_id}/{record_id}"):
                doc = await self._container.read_item(record_id, partition_key=job_id)
        except NotFound:
            return None
        if doc.get("recordType") != kind.__name__:
            return None
        return record_from(doc, kind)

    async def put_record(self, record: SideRecord, *, etag: str | None) -> str:
        """Create or compare-and-swap a record; Cosmos deletes it by itself once its ``ttl`` lapses.

        Records share the container with pointers (same partition key) and are marked
        with ``recordType``, which every pointer read and query excludes. A record that
        names a ``productId`` (a session) still has no ``status``, so no listing matches it.
        """
        doc = msgspec.to_builtins(record)
        doc["recordType"] = type(record).__name__
        if record.expires_at < NEVER:  # kept for good: no ttl (the container's default, never)
            remaining = (record.expires_at - datetime.now(UTC)).total_seconds()
            doc["ttl"] = min(2**31 - 1, max(60, math.ceil(remaining) + 60))
        with translate(f"write record {record.job_id}/{record.id}"):
            if etag is None:
                written = await self._container.create_item(doc)
            else:
                written = await self._container.replace_item(
                    record.id, doc, etag=etag, match_condition=MatchConditions.IfNotModified
                )
        return str(written["_etag"])

    async def records(self, job_id: str, kind: type[R], *, limit: int = 1000) -> list[StoredRecord[R]]:
        """The records of ``kind`` in one job: a single-partition query."""
        parameters: list[dict[str, Any]] = [{"name": "@kind", "value": kind.__name__}]
        results = self._container.query_items(
            "SELECT * FROM c WHERE c.recordType = @kind",
            parameters=parameters,
            partition_key=job_id,
            max_item_count=min(limit, 1000),
        )
        found: list[StoredRecord[R]] = []
        with translate(f"list {kind.__name__} records of job {job_id}"):
            async for doc in results:
                found.append(record_from(doc, kind))
                if len(found) >= limit:
                    break
        return found

    async def expired_records(
        self, kind: type[R], *, before: datetime, limit: int = 1000
    ) -> list[StoredRecord[R]]:
        """Records of ``kind`` past their expiry that Cosmos's TTL has not removed yet.

        A cross-partition query, for sweepers only; filtered here because record timestamps
        are stored as msgspec writes them (not fixed-width).
        """
        parameters: list[dict[str, Any]] = [{"name": "@kind", "value": kind.__name__}]
        results = self._container.query_items(
            "SELECT * FROM c WHERE c.recordType = @kind", parameters=parameters, max_item_count=1000
        )
        found: list[StoredRecord[R]] = []
        with translate(f"find expired {kind.__name__} records"):
            async for doc in results:
                stored = record_from(doc, kind)
                if stored.record.expires_at < before:
                    found.append(stored)
                    if len(found) >= limit:
                        break
        return found

    async def delete_record(self, job_id: str, record_id: str, *, etag: str) -> None:
        """Delete a record if unchanged; a changed or missing record is left as it is."""
        with (
            contextlib.suppress(NotFound, PreconditionFailed),
            translate(f"delete idempotency record {record_id}"),
        ):
            await self._container.delete_item(
                record_id, partition_key=job_id, etag=etag, match_condition=MatchConditions.IfNotModified
            )

    async def expired(
        self, status: ArtifactStatus, *, before: datetime, limit: int = 1000
    ) -> list[StoredPointer]:
        """Pointers in ``status`` past their ``expiresAt``: a cross-partition query, for sweepers only.

        Timestamps are stored fixed-width, so the string comparison is a time comparison; a
        null ``expiresAt`` compares as undefined (another type) and is left out.
        """
        sql = "SELECT * FROM c WHERE c.status = @status AND c.expiresAt < @before"
        parameters = [
            {"name": "@status", "value": status.value},
            {"name": "@before", "value": timestamp(before)},
        ]
        return await self._sweep_query(sql, parameters, limit, f"find expired {status.value} pointers")

    async def aged(
        self,
        status: ArtifactStatus,
        *,
        tiered_before: datetime,
        tiers: Sequence[BlobTier],
        limit: int = 1000,
    ) -> list[StoredPointer]:
        """Pointers in ``status`` in ``tiers`` since before ``tiered_before`` (cross-partition; sweepers)."""
        if not tiers:
            return []
        sql, parameters = aged_query(status, tiered_before, tiers)
        return await self._sweep_query(sql, parameters, limit, "find pointers due a tier move")

    async def _sweep_query(
        self, sql: str, parameters: list[dict[str, Any]], limit: int, what: str
    ) -> list[StoredPointer]:
        results = self._container.query_items(sql, parameters=parameters, max_item_count=min(limit, 1000))
        found: list[StoredPointer] = []
        with translate(what):
            async for doc in results:
                if "recordType" not in doc:  # records have no status; belt and braces
                    found.append(from_document(doc))
                if len(found) >= limit:
                    break
        return found

    async def list(self, query: ListQuery) -> PointerPage:
        """One page of a job's pointers, newest first, ties broken by id (descending).

        A single-partition query served by the composite index
        ``[/createdAt DESC, /id DESC]``. Pages resume from the SDK's
        continuation token, wrapped (urlsafe base64) together with a
        fingerprint of the query, so a token is opaque to clients and one
        issued for another query, or not by us, is InvalidInput.

        Cosmos may answer a page with no items but a continuation token; such
        pages are skipped here (the SDK does too), so a client never receives an
        empty page with a token. The last page can still carry a token that
        leads to an empty page: Cosmos cannot tell "no more" without looking.
        """
        sql, parameters = list_query(query)
        docs, token = await one_page(
            self._container, sql, parameters, partition=query.job_id, limit=query.limit,
            continuation=query.continuation, what=f"list pointers of job {query.job_id}",
        )  # fmt: skip
        return PointerPage([from_document(doc) for doc in docs], token)
