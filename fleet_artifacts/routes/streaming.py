"""Streaming one blob over HTTP: conditional requests, Range, and the headers every download carries.

Serves the content proxy (``.../content``) on every backend and the local backend's signed
``/blobs/`` URLs, which answer like an Azure SAS URL (so the Azure SDK downloads through
them: ``x-ms-range``, ``If-Match`` on every chunk). Bytes flow from the blob store to the
socket chunk by chunk; nothing is buffered whole.

Preconditions are evaluated in the order of RFC 9110, 13.2.2: If-Match (else
If-Unmodified-Since) -> 412; If-None-Match -> 304; then Range, honoured only for GET and
only when If-Range (if any) still names this representation.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

from litestar import Response
from litestar.datastructures import Headers
from litestar.response import Stream

from fleet_artifacts.core.errors import PreconditionFailed, RangeNotSatisfiable
from fleet_artifacts.core.ports import BlobStore

_RANGE = re.compile(r"[Bb][Yy][Tt][Ee][Ss]\s*=\s*([0-9]{0,19})\s*-\s*([0-9]{0,19})")


@dataclass(frozen=True)
class Served:
    """What one download serves: the blob, and how it presents itself."""

    key: str
    size: int
    content_type: str
    content_disposition: str
    etag: str | None  # quoted, strong
    last_modified: datetime | None = None
    # Headers an Azure SDK client reads from Get Blob (the local backend's signed URLs).
    extra: tuple[tuple[str, str], ...] = ()


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Return the inclusive (first, last) byte of a single range, or None for the whole body.

    Malformed headers and multi-range requests are ignored (whole body), as RFC
    9110 allows; a well-formed range that selects nothing raises RangeNotSatisfiable.

    >>> parse_range("bytes=0-9", 100), parse_range("bytes=-10", 100), parse_range("bytes=90-", 100)
    ((0, 9), (90, 99), (90, 99))
    """
    if not header:
        return None
    # ASCII digits only, at most 19 of them: str.isdigit() would take "²", and int() refuses
    # strings past 4,300 digits; either would be a 500 instead of "ignore the header".
    found = _RANGE.fullmatch(header.strip())
    if not found:
        return None
    first_s, last_s = found[1], found[2]
    if not first_s:  # suffix range: the last N bytes
        if not last_s:
            return None
        suffix = int(last_s)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return max(0, size - suffix), size - 1
    first = int(first_s)
    if last_s and int(last_s) < first:
        return None  # invalid syntax per RFC 9110: ignore the header
    if first >= size:
        raise RangeNotSatisfiable(size)
    last = min(int(last_s), size - 1) if last_s else size - 1
    return first, last


def etag_matches(header: str | None, etag: str) -> bool:
    """Weak comparison of an If-None-Match list against our strong ETag."""
    if not header:
        return False
    candidates = [c.strip().removeprefix("W/") for c in header.split(",")]
    return "*" in candidates or etag in candidates


def strong_match(header: str, etag: str | None) -> bool:
    """Strong comparison of an If-Match list: a weak tag never matches; ``*`` matches what exists."""
    candidates = [c.strip() for c in header.split(",")]
    return "*" in candidates or (etag is not None and etag in candidates)


def _http_date(value: str) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None  # an invalid date makes the condition ignored (RFC 9110, 13.1.4)
    return parsed if parsed.tzinfo is not None else None


def check_preconditions(served: Served, headers: Headers) -> bool:
    """Raise PreconditionFailed for a failed If-Match / If-Unmodified-Since; True to answer 304."""
    if_match = headers.get("if-match")
    if if_match is not None:
        if not strong_match(if_match, served.etag):
            raise PreconditionFailed("the artifact does not match If-Match (ConditionNotMet)")
    elif (since := headers.get("if-unmodified-since")) and served.last_modified is not None:
        date = _http_date(since)
        if date is not None and served.last_modified.replace(microsecond=0) > date:
            raise PreconditionFailed("the artifact was modified after If-Unmodified-Since (ConditionNotMet)")
    return served.etag is not None and etag_matches(headers.get("if-none-match"), served.etag)


def selected_range(served: Served, headers: Headers) -> tuple[int, int] | None:
    """The single byte range a GET asks for, or None for the whole body."""
    # Azure reads x-ms-range before Range; the Azure SDK sends only x-ms-range.
    values = headers.getall("x-ms-range", []) or headers.getall("range", [])
    if len(values) != 1:
        return None  # several Range fields form a multi-range request: served whole, like one
    if_range = headers.get("if-range")
    if if_range is not None and (served.etag is None or if_range.strip() != served.etag):
        return None  # the client's copy is stale: send it all
    return parse_range(values[0], served.size)


async def stream_blob(
    blobs: BlobStore, served: Served, headers: Headers, *, head: bool = False
) -> Response[Any]:
    """Answer a GET (or, with ``head``, a HEAD) for one blob: 412, 304, 206 with Content-Range, or 200."""
    common = {
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, max-age=0",
        # Artifacts are untrusted: an uploaded HTML page viewed inline must not run as this origin.
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
        **dict(served.extra),
    }
    if served.etag:
        common["ETag"] = served.etag
    if served.last_modified is not None:
        common["Last-Modified"] = format_datetime(served.last_modified, usegmt=True)
    if check_preconditions(served, headers):
        return Response(b"", status_code=304, headers=common)
    # HEAD has no range semantics (RFC 9110, 14.2): its answer is the whole representation's.
    selected = None if head else selected_range(served, headers)
    common["Content-Disposition"] = served.content_disposition
    # Explicit header: Litestar would append "; charset=utf-8" to a text/* media type,
    # and an artifact's stored type must reach the client unchanged.
    common["Content-Type"] = served.content_type
    if head:  # the same headers as the GET, and no body
        return Response(b"", status_code=200, headers={**common, "Content-Length": str(served.size)})
    if selected is None:
        return Stream(
            await _primed(blobs.read(served.key)),
            status_code=200,
            media_type=served.content_type,
            headers={**common, "Content-Length": str(served.size)},
        )
    first, last = selected
    return Stream(
        await _primed(blobs.read(served.key, offset=first, length=last - first + 1)),
        status_code=206,
        media_type=served.content_type,
        headers={
            **common,
            "Content-Length": str(last - first + 1),
            "Content-Range": f"bytes {first}-{last}/{served.size}",
        },
    )


async def _primed(body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Read the first chunk now, so a missing blob or an outage is still an error status.

    Once headers are out, a failure can only cut the body short (the client sees
    fewer bytes than Content-Length).
    """
    try:
        first = await anext(body)
    except StopAsyncIteration:
        first = b""

    async def rest() -> AsyncIterator[bytes]:
        try:
            if first:
                yield first
            async for chunk in body:
                yield chunk
        finally:  # at once when the client goes away, so the store's reads in flight stop with it
            close = getattr(body, "aclose", None)
            if close is not None:
                await close()

    return rest()
