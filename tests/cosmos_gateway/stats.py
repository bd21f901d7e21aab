"""Counters a test can assert on, e.g. "the hot path never fans out"."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

_COUNTERS = (
    "requests",
    "queries",
    "cross_partition_queries",
    "point_reads",
    "writes",
    "query_plan_requests",
    "unsupported_queries",
    "auth_failures",
    "faults_injected",
    "batches",
    "change_feed_reads",
)


@dataclass(frozen=True)
class QueryRecord:
    """One query (or feed read) request as the gateway received it.

    Attributes:
        query: The SQL text (``SELECT * FROM root`` for a plain feed read).
        parameters: Parameter values keyed by ``@name``.
        partition_key: The raw partition key header, or None.
        cross_partition: True when no partition key scoped the request.
        continuation: True when the request resumed from a continuation token.
        feed: True for a ``read_all_items``-style feed read rather than a query.
    """

    query: str
    parameters: dict[str, Any]
    partition_key: str | None
    cross_partition: bool
    continuation: bool
    feed: bool = False


@dataclass
class GatewayStats:
    """Request counters, updated by the server threads.

    Every query *request* counts, so a query read in N pages counts N times
    (that is also how Cosmos bills it); use ``query_log`` to tell pages apart.

    Attributes:
        requests: All authenticated requests.
        queries: Query and feed-read requests against containers.
        cross_partition_queries: Those without a partition key header.
        point_reads: ``GET`` of a single item.
        writes: Item creates, upserts, replaces, patches and deletes.
        query_plan_requests: Query plan requests (the SDK sends one after a 1004).
        unsupported_queries: Queries rejected because the gateway cannot run them.
        auth_failures: Requests answered with 401.
        faults_injected: Responses replaced by an injected fault.
        batches: Transactional batch requests (their operations are not in ``writes``).
        change_feed_reads: Change-feed page requests, 304s included.
        query_log: Details of every query request, oldest first.
    """

    requests: int = 0
    queries: int = 0
    cross_partition_queries: int = 0
    point_reads: int = 0
    writes: int = 0
    query_plan_requests: int = 0
    unsupported_queries: int = 0
    auth_failures: int = 0
    faults_injected: int = 0
    batches: int = 0
    change_feed_reads: int = 0
    query_log: list[QueryRecord] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def bump(self, counter: str, amount: int = 1) -> None:
        """Increments one counter.

        Args:
            counter: Attribute name, one of the counters above.
            amount: How much to add.
        """
        if counter not in _COUNTERS:
            raise AttributeError(counter)
        with self._lock:
            setattr(self, counter, getattr(self, counter) + amount)

    def record_query(self, record: QueryRecord) -> None:
        """Counts a query request and remembers its details.

        Args:
            record: What was asked.
        """
        with self._lock:
            self.queries += 1
            if record.cross_partition:
                self.cross_partition_queries += 1
            self.query_log.append(record)

    def reset(self) -> None:
        """Zeroes every counter and clears the query log."""
        with self._lock:
            for counter in _COUNTERS:
                setattr(self, counter, 0)
            self.query_log.clear()

    def snapshot(self) -> dict[str, int]:
        """Returns the counters as a plain dict (handy in assertion messages).

        Returns:
            Counter name to value.
        """
        with self._lock:
            return {counter: getattr(self, counter) for counter in _COUNTERS}
