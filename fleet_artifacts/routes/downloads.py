"""The content proxy: an artifact's bytes through the service (``routes.streaming``), or a redirect."""

from __future__ import annotations

from typing import Any

from litestar import HttpMethod, Response, route
from litestar.params import FromQuery
from litestar.response import Redirect

from fleet_artifacts.core.access import Scope
from fleet_artifacts.core.keys import content_disposition
from fleet_artifacts.core.models import Pointer
from fleet_artifacts.routes.artifacts import Disposition, DispositionParam
from fleet_artifacts.routes.deps import (
    AnyRequest,
    ArtifactId,
    Call,
    ExpiresIn,
    JobId,
    aid,
    anchor,
    context,
    job,
    needs,
    per_method,
    seconds,
)
from fleet_artifacts.routes.openapi import ANY_MEDIA_TYPE, DOWNLOAD_ANSWERS, REDIRECT_ANSWER, problems
from fleet_artifacts.routes.streaming import Served, stream_blob

CONTENT_DESCRIPTION = """Streams the artifact's bytes with Content-Type, Content-Length,
Content-Disposition, `ETag` (the sha256) and Last-Modified. `If-Match` and `If-Unmodified-Since`
answer 412 when they fail; `If-None-Match` answers 304; a single `Range` on a GET answers 206
with Content-Range (416 if unsatisfiable; HEAD ignores Range). `?redirect=true` answers 302 to
a fresh signed URL instead. An archived artifact (or one still being restored) answers 409:
restore it first."""


@route(
    "/jobs/{job_id:str}/artifacts/{artifact_id:str}/content",
    http_method=[HttpMethod.GET, HttpMethod.HEAD],
    media_type=ANY_MEDIA_TYPE,  # the artifact's own type
    operation_id=per_method("downloadJobArtifact"),
    **needs(Scope.READ),
    responses={**problems(400, 401, 403, 404, 409, 412, 416, 503), **DOWNLOAD_ANSWERS, **REDIRECT_ANSWER},
    description=CONTENT_DESCRIPTION,
)
async def content_in_job(
    request: AnyRequest,
    job_id: JobId,
    artifact_id: ArtifactId,
    disposition: DispositionParam = "attachment",
    redirect: FromQuery[bool] = False,
    expires_in: ExpiresIn = None,
) -> Response[Any]:
    """Download the bytes through the service (Range, ETag), or redirect to a signed URL."""
    ctx = context(request)
    which = (ctx.product, aid(artifact_id), job(job_id))
    return await _content(request, ctx, which, disposition, redirect, seconds(expires_in))


@route(
    "/artifacts/{artifact_id:str}/content",
    http_method=[HttpMethod.GET, HttpMethod.HEAD],
    media_type=ANY_MEDIA_TYPE,  # the artifact's own type
    operation_id=per_method("downloadArtifact"),
    **needs(Scope.READ),
    responses={**problems(400, 401, 403, 404, 409, 412, 416, 503), **DOWNLOAD_ANSWERS, **REDIRECT_ANSWER},
    description=CONTENT_DESCRIPTION,
)
async def content_by_id(
    request: AnyRequest,
    artifact_id: ArtifactId,
    disposition: DispositionParam = "attachment",
    redirect: FromQuery[bool] = False,
    expires_in: ExpiresIn = None,
) -> Response[Any]:
    """Download the bytes, the artifact looked up by id alone."""
    ctx = context(request)
    which = (ctx.product, aid(artifact_id), None)
    return await _content(request, ctx, which, disposition, redirect, seconds(expires_in))


async def _content(
    request: AnyRequest,
    ctx: Call,
    which: tuple[str, str, str | None],
    disposition: Disposition,
    redirect: bool,
    expires_in: int | None,
) -> Response[Any]:
    services = ctx.services
    if redirect:
        signed = await services.artifacts.download_url(*which, disposition=disposition, expires_in=expires_in)
        return Redirect(
            anchor(signed.url, ctx.base_url),
            status_code=302,
            headers={"Cache-Control": "no-store"},
            media_type="text/plain",  # not the route's "any type": a redirect has no artifact body
        )
    pointer: Pointer = await services.artifacts.content(*which)
    served = Served(
        key=pointer.blob_key,
        size=pointer.size_bytes,
        content_type=pointer.content_type,
        content_disposition=content_disposition(pointer.file_name, disposition),
        etag=f'"{pointer.sha256}"' if pointer.sha256 else None,
        last_modified=pointer.created_at,  # an artifact's bytes never change once it is ACTIVE
    )
    return await stream_blob(services.kernel.blobs, served, request.headers, head=request.method == "HEAD")
