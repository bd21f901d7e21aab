"""Cosmos DB documents: pointers and records as items, error translation, continuation tokens.

An item is exactly the ``Pointer`` as msgspec encodes it (camelCase), except
that timestamps are written fixed-width (``2026-11-22T04:05:03.000000Z``): Cosmos
compares strings, and msgspec drops the fraction when it is zero, which would
sort ``...:03Z`` after ``...:03.5Z``. SDK errors become the project's errors in
``translate`` and nowhere else.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import math
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import msgspec
from azure.core.async_paging import AsyncPageIterator
from azure.core.exceptions import AzureError, ClientAuthenticationError
from azure.cosmos.aio import ContainerProxy
from azure.cosmos.exceptions import (
    CosmosAccessConditionFailedError,
    CosmosHttpResponseError,
    CosmosResourceExistsError,
    CosmosResourceNotFoundError,
)

from fleet_artifacts.core.errors import Conflict, InvalidInput, NotFound, PreconditionFailed, Unavailable
from fleet_artifacts.core.models import ArtifactStatus, BlobTier, Pointer
from fleet_artifacts.core.ports import ListQuery, R, StoredPointer, StoredRecord

SYSTEM_FIELDS = frozenset({"_rid", "_etag", "_ts", "_self", "_attachments"})
# Cosmos deletes an item this long after its expiresAt by itself (per-item ``ttl``): a backstop
# only, since such a delete never reaches the blob; the sweeper removes blob and pointer first.
TTL_GRACE = timedelta(days=1)
_TOKEN_FIELD = "continuationToken"  # noqa: S105 - a field name, not a secret
_NOT_OURS = "continuationToken is not one this service issued for this query"
# Pointer fields holding datetimes, as (attribute, camelCase document key).
_TIMESTAMPS = tuple(
    (field.name, field.encode_name)
    for field in msgspec.structs.fields(Pointer)
    if field.type in (datetime, datetime | None)
)
_json = msgspec.json.Encoder()


def _retry_after(exc: CosmosHttpResponseError) -> int:
    # Cosmos tells how long to back off in milliseconds; Retry-After wants whole seconds.
    raw: Any = (exc.headers or {}).get("x-ms-retry-after-ms")
    try:
        return max(1, math.ceil(float(raw) / 1000))
    except (TypeError, ValueError):
        return 5


def _cause(exc: Exception) -> str:
    text = str(getattr(exc, "message", None) or exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


@contextlib.contextmanager
def translate(what: str, *, show_cause: bool = False, continuation_given: bool = False) -> Iterator[None]:
    """Turn an Azure SDK failure during ``what`` into the project's error.

    The SDK has already retried what it retries (429 up to ``retry_total``
    times, honouring ``x-ms-retry-after-ms``; connection errors) before an
    exception reaches this point.

    Args:
        what: The operation, first in the message (``read pointer job-1/abc``).
        show_cause: Append the SDK's own first line for network failures. Only
            for operator-facing messages (start-up): client-facing details must
            not carry the Cosmos host name.
        continuation_given: A continuation token was sent, so a 400 means
            Cosmos rejected it (it answers 400 to a token it did not issue).
    """
    try:
        yield
    except CosmosResourceNotFoundError as exc:
        raise NotFound(f"{what}: not found") from exc
    except CosmosResourceExistsError as exc:
        raise Conflict(f"{what}: already exists") from exc
    except CosmosAccessConditionFailedError as exc:
        raise PreconditionFailed(f"{what}: changed since it was read") from exc
    except CosmosHttpResponseError as exc:
        status = exc.status_code
        if status == 429:
            raise Unavailable(
                f"{what}: Cosmos DB is throttling requests (429)", retry_after=_retry_after(exc)
            ) from exc
        if status in (401, 403):
            raise Unavailable(
                f"{what}: authentication failed ({status}): Cosmos DB refused the service's credentials"
            ) from exc
        if status == 400 and continuation_given:
            raise InvalidInput(_NOT_OURS, field=_TOKEN_FIELD) from exc
        if not status or status == 408 or status >= 500:
            raise Unavailable(f"{what}: Cosmos DB answered {status or 'nothing'}") from exc
        raise  # 400 and the like: a bug in this adapter, better a loud 500 than a wrong answer
    except ClientAuthenticationError as exc:  # azure.identity found no usable credential
        detail = f": {_cause(exc)}" if show_cause else ""
        raise Unavailable(f"{what}: no Entra ID token for Cosmos DB could be obtained{detail}") from exc
    except AzureError as exc:  # DNS, connection refused, timeouts (after the SDK's retries)
        detail = f": {_cause(exc)}" if show_cause else ""
        raise Unavailable(f"{what}: Cosmos DB is unreachable ({type(exc).__name__}){detail}") from exc


def timestamp(value: datetime) -> str:
    """Fixed-width UTC, so that string order is time order."""
    if value.tzinfo is None:
        raise ValueError("pointer timestamps must be timezone-aware")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def to_document(pointer: Pointer, *, now: datetime | None = None) -> dict[str, Any]:
    """Encode a pointer as its Cosmos item (camelCase, fixed-width timestamps, ``ttl`` as a backstop).

    A pointer with an ``expiresAt`` gets a ``ttl`` reaching a grace day past it (counted from
    this write, at least an hour); one kept forever gets none (the container's default: never).
    """
    doc: dict[str, Any] = msgspec.to_builtins(pointer)
    for attribute, key in _TIMESTAMPS:
        value = getattr(pointer, attribute)
        if value is not None:
            doc[key] = timestamp(value)
    if pointer.expires_at is not None:
        at = now or datetime.now(UTC)
        # A grace day past expiresAt, or past now when that passed already (a PATCH to the past):
        # the sweeper gets a day to remove the blob before Cosmos drops the pointer.
        left = (max(pointer.expires_at, at) + TTL_GRACE - at).total_seconds()
        doc["ttl"] = min(2**31 - 1, math.ceil(left))
    return doc


def from_document(doc: Mapping[str, Any]) -> StoredPointer:
    """Decode a Cosmos item into the pointer and its etag, dropping system fields and ``ttl``."""
    fields = {key: value for key, value in doc.items() if key not in SYSTEM_FIELDS and key != "ttl"}
    return StoredPointer(msgspec.convert(fields, Pointer), str(doc["_etag"]))


class _Continuation(msgspec.Struct, array_like=True, frozen=True):
    """The client-facing token: the SDK's token, bound to the query it resumes."""

    query: str  # fingerprint of the SQL text and parameters
    cosmos: str  # the SDK's continuation token, verbatim


def query_fingerprint(sql: str, parameters: list[dict[str, Any]]) -> str:
    """A short digest of a query, which binds a continuation token to it."""
    return hashlib.sha256(_json.encode([sql, parameters])).hexdigest()[:16]


def wrap_token(fingerprint: str, cosmos_token: str) -> str:
    """The client-facing continuation token for the SDK's token of a query."""
    raw = _json.encode(_Continuation(fingerprint, cosmos_token))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def unwrap_token(token: str, fingerprint: str) -> str:
    """The SDK's token inside a client's token; InvalidInput unless issued for this very query."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        decoded = msgspec.json.decode(raw, type=_Continuation)
    except (ValueError, msgspec.DecodeError):
        raise InvalidInput(_NOT_OURS, field=_TOKEN_FIELD) from None
    # The inner token travels as an HTTP header: refuse anything that could not be one.
    printable = decoded.cosmos.isascii() and decoded.cosmos.isprintable() and decoded.cosmos
    if decoded.query != fingerprint or not printable:
        raise InvalidInput(_NOT_OURS, field=_TOKEN_FIELD)
    return decoded.cosmos


def list_query(query: ListQuery) -> tuple[str, list[dict[str, Any]]]:
    """Build the listing SQL; every user value is a parameter, never SQL text."""
    # jobId is also the partition key: filtering on it again is defence in depth.
    statuses = query.status_values()
    marks = ", ".join(f"@status{n}" for n in range(len(statuses)))
    clauses = ["c.jobId = @jobId", "c.productId = @productId", f"c.status IN ({marks})"]
    params: dict[str, Any] = {"@jobId": query.job_id, "@productId": query.product_id}
    params |= {f"@status{n}": status for n, status in enumerate(statuses)}
    if query.kind is not None:
        clauses.append("c.kind = @kind")
        params["@kind"] = query.kind.value
    if query.run_id is not None:
        clauses.append("c.runId = @runId")
        params["@runId"] = query.run_id
    # Sorted, so the same filter always gives the same SQL (and continuation fingerprint).
    for n, (key, value) in enumerate(sorted(query.tags.items())):
        clauses.append(f"c.tags[@tagKey{n}] = @tagValue{n}")
        params[f"@tagKey{n}"] = key
        params[f"@tagValue{n}"] = value
    sql = f"SELECT * FROM c WHERE {' AND '.join(clauses)} ORDER BY c.createdAt DESC, c.id DESC"  # noqa: S608 - literal clauses
    return sql, [{"name": name, "value": value} for name, value in params.items()]


def aged_query(
    status: ArtifactStatus, tiered_before: datetime, tiers: Sequence[BlobTier]
) -> tuple[str, list[dict[str, Any]]]:
    """The sweeper's tier query: pointers in ``status`` and ``tiers`` since before ``tiered_before``.

    Served by the ``/status``, ``/restoredAt``, ``/createdAt`` and ``/tier`` indexes; a pointer
    never restored has a null (or, written before tiers existed, no) ``restoredAt`` and counts
    from ``createdAt``, and without ``tier`` it counts as Hot.
    """
    marks = ", ".join(f"@tier{n}" for n in range(len(tiers)))
    tier_clause = f"c.tier IN ({marks})"
    if BlobTier.HOT in tiers:
        tier_clause = f"({tier_clause} OR NOT IS_DEFINED(c.tier))"
    since = (
        "(c.restoredAt < @before OR ((NOT IS_DEFINED(c.restoredAt) OR IS_NULL(c.restoredAt))"
        " AND c.createdAt < @before))"
    )
    sql = f"SELECT * FROM c WHERE c.status = @status AND {since} AND {tier_clause}"  # noqa: S608
    parameters: list[dict[str, Any]] = [
        {"name": "@status", "value": status.value},
        {"name": "@before", "value": timestamp(tiered_before)},
        *({"name": f"@tier{n}", "value": tier.value} for n, tier in enumerate(tiers)),
    ]
    return sql, parameters


def record_from(doc: Mapping[str, Any], kind: type[R]) -> StoredRecord[R]:
    """A side record as stored, without Cosmos's system fields and our ttl/recordType markers."""
    body = {k: v for k, v in doc.items() if k not in SYSTEM_FIELDS and k not in ("ttl", "recordType")}
    return StoredRecord(msgspec.convert(body, kind), str(doc["_etag"]))


async def one_page(
    container: ContainerProxy,
    sql: str,
    parameters: list[dict[str, Any]],
    *,
    partition: str,
    limit: int,
    continuation: str | None,
    what: str,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of a single-partition query, and the client-facing token for the next.

    The SDK's continuation token is wrapped (urlsafe base64) with a fingerprint of the query, so a
    token is opaque to clients and one issued for another query, or not by us, is InvalidInput.
    Cosmos may answer a page with no items but a token; such pages are skipped (the SDK does too),
    so a client never gets an empty page with a token (the last page may still carry one).
    """
    fingerprint = query_fingerprint(sql, parameters)
    resume = unwrap_token(continuation, fingerprint) if continuation else None
    results = container.query_items(sql, parameters=parameters, partition_key=partition, max_item_count=limit)
    pages = cast(AsyncPageIterator[dict[str, Any]], results.by_page(resume))
    docs: list[dict[str, Any]] = []
    with translate(what, continuation_given=resume is not None):
        async for page in pages:
            docs = [doc async for doc in page]
            if docs:
                break
    token = pages.continuation_token
    return docs, wrap_token(fingerprint, token) if token else None
