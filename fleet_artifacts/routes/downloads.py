"""The content proxy, and streaming downloads with Range, ETag and conditional requests (RFC 9110).

``stream_blob`` serves the content proxy (``.../content``) on every backend and the
local backend's signed ``/blobs/`` route. Bytes flow from the blob store to the
socket chunk by chunk; nothing is buffered whole.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

from litestar import HttpMethod, Response, route
from litestar.params import FromQuery
from litestar.response import Redirect, Stream

from fleet_artifacts.core.errors import RangeNotSatisfiable
from fleet_artifacts.core.keys import content_disposition
from fleet_artifacts.core.models import Pointer
from fleet_artifacts.core.ports import BlobStore
from fleet_artifacts.routes.artifacts import Disposition, DispositionParam
from fleet_artifacts.routes.deps import (
    AnyRequest,
    ArtifactId,
    BaseUrl,
    JobId,
    ProductId,
    Services,
    Svc,
    aid,
    anchor,
    job,
    per_method,
)

CONTENT_DESCRIPTION = """Streams the artifact's bytes with Content-Type, Content-Length,
Content-Disposition and `ETag` (the sha256). `If-None-Match` answers 304; a single `Range`
answers 206 with Content-Range (416 if unsatisfiable). `?redirect=true` answers 302 to a fresh
signed URL instead."""


@route(
    "/jobs/{job_id:str}/artifacts/{artifact_id:str}/content",
    http_method=[HttpMethod.GET, HttpMethod.HEAD],
    operation_id=per_method("downloadJobArtifact"),
    description=CONTENT_DESCRIPTION,
)
async def content_in_job(
    request: AnyRequest,
    services: Svc,
    product_id: ProductId,
    base_url: BaseUrl,
    job_id: JobId,
    artifact_id: ArtifactId,
    disposition: DispositionParam = "attachment",
    redirect: FromQuery[bool] = False,
) -> Response[Any]:
    """Download the bytes through the service (Range, ETag), or redirect to a signed URL."""
    return await _content(
        request, services, (product_id, aid(artifact_id), job(job_id)), disposition, redirect, base_url
    )


@route(
    "/artifacts/{artifact_id:str}/content",
    http_method=[HttpMethod.GET, HttpMethod.HEAD],
    operation_id=per_method("downloadArtifact"),
    description=CONTENT_DESCRIPTION,
)
async def content_by_id(
    request: AnyRequest,
    services: Svc,
    product_id: ProductId,
    base_url: BaseUrl,
    artifact_id: ArtifactId,
    disposition: DispositionParam = "attachment",
    redirect: FromQuery[bool] = False,
) -> Response[Any]:
    """Download the bytes, the artifact looked up by id alone."""
    return await _content(
        request, services, (product_id, aid(artifact_id), None), disposition, redirect, base_url
    )


async def _content(
    request: AnyRequest,
    services: Services,
    which: tuple[str, str, str | None],
    disposition: Disposition,
    redirect: bool,
    base_url: str,
) -> Response[Any]:
    if redirect:
        url, _ = await services.artifacts.download_url(*which, disposition=disposition)
        return Redirect(anchor(url, base_url), status_code=302, headers={"Cache-Control": "no-store"})
    pointer: Pointer = await services.artifacts.content(*which)
    return await stream_blob(
        services.kernel.blobs,
        pointer.blob_key,
        size=pointer.size_bytes,
        content_type=pointer.content_type,
        content_disposition=content_disposition(pointer.file_name, disposition),
        etag=f'"{pointer.sha256}"' if pointer.sha256 else None,
        headers=dict(request.headers),
        head=request.method == "HEAD",
    )


_RANGE = re.compile(r"[Bb][Yy][Tt][Ee][Ss]\s*=\s*([0-9]{0,19})\s*-\s*([0-9]{0,19})")


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


async def stream_blob(
    blobs: BlobStore,
    key: str,
    *,
    size: int,
    content_type: str,
    content_disposition: str,
    etag: str | None,
    headers: dict[str, str],
    head: bool = False,
) -> Response[Any]:
    """Answer a GET (or, with ``head``, a HEAD) for one blob: 304, 206 with Content-Range, or 200."""
    common = {
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, max-age=0",
        # Artifacts are untrusted: an uploaded HTML page viewed inline must not run as this origin.
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
    }
    if etag:
        common["ETag"] = etag
        if etag_matches(headers.get("if-none-match"), etag):
            return Response(b"", status_code=304, headers=common)
    range_header = headers.get("range")
    if_range = headers.get("if-range")
    if if_range is not None and (etag is None or if_range.strip() != etag):
        range_header = None  # the client's copy is stale: send it all
    selected = parse_range(range_header, size)
    common["Content-Disposition"] = content_disposition
    # Explicit header: Litestar would append "; charset=utf-8" to a text/* media type,
    # and an artifact's stored type must reach the client unchanged.
    common["Content-Type"] = content_type
    if head:  # the same status and headers as the GET, and no body
        if selected is None:
            return Response(b"", status_code=200, headers={**common, "Content-Length": str(size)})
        first, last = selected
        ranged = {"Content-Length": str(last - first + 1), "Content-Range": f"bytes {first}-{last}/{size}"}
        return Response(b"", status_code=206, headers={**common, **ranged})
    if selected is None:
        return Stream(
            await _primed(blobs.read(key)),
            status_code=200,
            media_type=content_type,
            headers={**common, "Content-Length": str(size)},
        )
    first, last = selected
    return Stream(
        await _primed(blobs.read(key, offset=first, length=last - first + 1)),
        status_code=206,
        media_type=content_type,
        headers={
            **common,
            "Content-Length": str(last - first + 1),
            "Content-Range": f"bytes {first}-{last}/{size}",
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
        if first:
            yield first
        async for chunk in body:
            yield chunk

    return rest()
