"""Jobs as a whole: the job listing, a job's manifest, sealing, and the product's event feed."""

from __future__ import annotations

import hashlib
from typing import Annotated

import msgspec
from litestar import Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import QueryParameter

from fleet_artifacts.core.access import Scope
from fleet_artifacts.core.journal import EventPageOut, JobPageOut, Manifest, SealOut
from fleet_artifacts.routes.deps import AnyRequest, JobId, context, job, needs
from fleet_artifacts.routes.encodings import CBOR, JSON, canonical, negotiated, strong_etag
from fleet_artifacts.routes.openapi import problems
from fleet_artifacts.routes.openapi_links import LinkedOperation
from fleet_artifacts.routes.streaming import etag_matches

Limit = Annotated[int, QueryParameter(ge=1, le=1000, description="At most this many items (1-1000).")]
Continuation = Annotated[str | None, QueryParameter(name="continuationToken")]

MANIFEST_DESCRIPTION = """Every ACTIVE artifact of the job, oldest first, in canonical JSON (RFC 8785),
or in deterministic CBOR (RFC 8949) with `Accept: application/cbor`. The body's sha256 is the
strong `ETag` (`If-None-Match` answers 304); `X-Job-Digest` is the sha256 of the canonical JSON
whichever encoding was asked for: a stable digest of the job. A sealed job's manifest can no
longer grow."""

EVENTS_DESCRIPTION = """The product's artifact events (`artifact.created`, `artifact.deleted`,
`artifact.archived`, `artifact.restoring`, `artifact.restored`, `artifact.undeleted`,
`artifact.updated`, `job.sealed`) after the cursor `since`, oldest first; pass the answer's
`next` as `since` to continue. With `wait`, an empty answer waits up to that many seconds for an
event. Every event reaches a reader that resumes from `next` exactly once, in per-job order.
JSON, or CBOR with `Accept: application/cbor`."""


def _encoded_answers(struct: type, description: str) -> dict[int, ResponseSpec]:
    return {
        200: ResponseSpec(data_container=struct, description=description, media_type=JSON),
    }


@get(
    "/jobs",
    operation_id="listJobs",
    operation_class=LinkedOperation,
    **needs(Scope.READ),
    responses=problems(400, 401, 403, 503),
)
async def list_jobs(
    request: AnyRequest, limit: Limit = 100, continuation_token: Continuation = None
) -> JobPageOut:
    """The product's jobs, most recently active first, with artifact count, total bytes and last upload."""
    ctx = context(request)
    return await ctx.services.jobs.list(ctx.product, limit=limit, continuation=continuation_token)


@get(
    "/jobs/{job_id:str}/manifest",
    operation_id="getJobManifest",
    media_type=JSON,
    **needs(Scope.READ),
    responses={
        **_encoded_answers(Manifest, "the manifest (application/cbor on Accept)"),
        304: ResponseSpec(data_container=None, description="If-None-Match names this ETag"),
        **problems(400, 401, 403, 404, 503),
    },
    description=MANIFEST_DESCRIPTION,
)
async def manifest(request: AnyRequest, job_id: JobId) -> Response[bytes]:
    """A job's manifest and its digest."""
    ctx = context(request)
    found = await ctx.services.jobs.manifest(ctx.product, job(job_id))
    encoding = negotiated(request)
    digest_body = canonical(found)
    body = digest_body if encoding == JSON else canonical(found, encoding)
    etag = strong_etag(body)
    headers = {
        "ETag": etag,
        "Vary": "Accept",
        "X-Job-Digest": "sha256:" + hashlib.sha256(digest_body).hexdigest(),
    }
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(b"", status_code=304, headers=headers)
    return Response(body, media_type=encoding, headers=headers)


@post(
    "/jobs/{job_id:str}/seal",
    operation_id="sealJob",
    operation_class=LinkedOperation,
    status_code=200,
    **needs(Scope.WRITE),
    responses=problems(400, 401, 403, 503),
)
async def seal(request: AnyRequest, job_id: JobId) -> SealOut:
    """Seal the job: from now on every create path answers 409; deletes and expiry still work."""
    ctx = context(request)
    return await ctx.services.jobs.seal(ctx.product, job(job_id))


@get(
    "/events",
    operation_id="listEvents",
    media_type=JSON,
    **needs(Scope.READ),
    responses={
        **_encoded_answers(EventPageOut, "events after the cursor (application/cbor on Accept)"),
        **problems(400, 401, 403, 410, 503),
    },
    description=EVENTS_DESCRIPTION,
)
async def events(
    request: AnyRequest,
    since: Annotated[str | None, QueryParameter(description="The `next` of the previous answer.")] = None,
    limit: Limit = 100,
    wait: Annotated[int, QueryParameter(ge=0, le=30, description="Seconds to wait for an event.")] = 0,
    job_id: Annotated[str | None, QueryParameter(name="jobId")] = None,
) -> Response[bytes]:
    """The product's events after a cursor, long-polling up to ``wait`` seconds."""
    ctx = context(request)
    page = await ctx.services.jobs.events(
        ctx.product, since=since, limit=limit, wait=wait, job_id=None if job_id is None else job(job_id)
    )
    encoding = negotiated(request)
    # Plain (fast) JSON: the feed is not digested.
    body = canonical(page, encoding) if encoding == CBOR else msgspec.json.encode(page)
    return Response(body, media_type=encoding, headers={"Vary": "Accept", "Cache-Control": "no-store"})
