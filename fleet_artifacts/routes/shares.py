"""Share links: make, list and revoke them (scope ``share``), and follow one (no token: the link is it)."""

from __future__ import annotations

from typing import Annotated

from litestar import HttpMethod, Response, delete, get, post, route
from litestar.params import JSONBody, PathParameter
from litestar.response import Redirect

from fleet_artifacts.core.access import Scope
from fleet_artifacts.core.models import ShareOut, ShareRequest
from fleet_artifacts.core.ports import ShareLink
from fleet_artifacts.core.shares import share_id
from fleet_artifacts.routes.deps import (
    AnyRequest,
    ArtifactId,
    Call,
    JobId,
    aid,
    anchor,
    base_url_of,
    context,
    job,
    needs,
    per_method,
    services_of,
)
from fleet_artifacts.routes.openapi import REDIRECT_ANSWER, problems
from fleet_artifacts.routes.openapi_links import LinkedOperation
from fleet_artifacts.routes.strict_json import StrictJSON

SHARE_PATH = "/s"  # where a share link is followed: /s/<token>
IN_JOB = "/jobs/{job_id:str}/artifacts/{artifact_id:str}/shares"
BY_ID = "/artifacts/{artifact_id:str}/shares"
MAKE = (
    "Make a share link: a URL of this service (`/s/...`, no token needed) that answers every GET with "
    "302 to a freshly signed, short-lived download URL until `expiresIn` seconds pass (at most "
    "MAX_SHARE_SECONDS), it is revoked, or the artifact is deleted or expires. The `url` is in this "
    "answer only: the service keeps just its hash."
)
ShareToken = Annotated[str, PathParameter(description="The token of a share link's URL.")]


def out(link: ShareLink, url: str | None = None) -> ShareOut:
    """A link as answered (its URL only when it was just made)."""
    return ShareOut(
        id=share_id(link),
        url=url,
        artifact_id=link.artifact_id,
        disposition=link.disposition,
        created_at=link.created_at,
        expires_at=link.expires_at,
    )


async def _make(ctx: Call, artifact_id: str, job_id: str | None, data: ShareRequest) -> Response[ShareOut]:
    made = await ctx.services.shares.create(
        ctx.product, artifact_id, job_id, expires_in=data.expires_in, disposition=data.disposition
    )
    url = anchor(f"{SHARE_PATH}/{made.token}", ctx.base_url)
    return Response(out(made.link, url), status_code=201, headers={"Cache-Control": "no-store"})


@post(
    IN_JOB,
    dto=StrictJSON[ShareRequest],
    return_dto=None,
    operation_id="shareJobArtifact",
    operation_class=LinkedOperation,
    **needs(Scope.SHARE),
    responses=problems(400, 401, 403, 404, 503),
    description=MAKE,
)
async def share_in_job(
    request: AnyRequest,
    job_id: JobId,
    artifact_id: ArtifactId,
    data: JSONBody[ShareRequest],
) -> Response[ShareOut]:
    """Make a share link of an artifact."""
    return await _make(context(request), aid(artifact_id), job(job_id), data)


@post(
    BY_ID,
    dto=StrictJSON[ShareRequest],
    return_dto=None,
    operation_id="shareArtifact",
    operation_class=LinkedOperation,
    **needs(Scope.SHARE),
    responses=problems(400, 401, 403, 404, 503),
    description=MAKE,
)
async def share_by_id(
    request: AnyRequest,
    artifact_id: ArtifactId,
    data: JSONBody[ShareRequest],
) -> Response[ShareOut]:
    """Make a share link of an artifact found by id alone."""
    return await _make(context(request), aid(artifact_id), None, data)


@get(
    IN_JOB,
    operation_id="listJobArtifactShares",
    **needs(Scope.SHARE),
    responses=problems(400, 401, 403, 404, 503),
)
async def shares_in_job(request: AnyRequest, job_id: JobId, artifact_id: ArtifactId) -> list[ShareOut]:
    """An artifact's live share links, newest first (without their URLs)."""
    ctx = context(request)
    return [out(link) for link in await ctx.services.shares.list(ctx.product, aid(artifact_id), job(job_id))]


@get(
    BY_ID,
    operation_id="listArtifactShares",
    **needs(Scope.SHARE),
    responses=problems(400, 401, 403, 404, 503),
)
async def shares_by_id(request: AnyRequest, artifact_id: ArtifactId) -> list[ShareOut]:
    """An artifact's live share links, found by id alone."""
    ctx = context(request)
    return [out(link) for link in await ctx.services.shares.list(ctx.product, aid(artifact_id), None)]


@delete(
    "/shares/{share:str}",
    operation_id="revokeShare",
    **needs(Scope.SHARE),
    responses=problems(400, 401, 403, 404, 503),
)
async def revoke_share(
    request: AnyRequest, share: Annotated[str, PathParameter(description="The link's id.")]
) -> None:
    """Revoke a share link at once (404 afterwards)."""
    ctx = context(request)
    await ctx.services.shares.revoke(ctx.product, share)


@route(
    SHARE_PATH + "/{token:str}",
    http_method=[HttpMethod.GET, HttpMethod.HEAD],
    operation_id=per_method("followShare"),
    tags=["share links"],
    responses={**problems(400, 404, 409, 503), **REDIRECT_ANSWER},
    description="Follow a share link (no token: the link is the capability): 302 to a freshly signed "
    "download URL of a few minutes; 404 once the link expired, was revoked, or its artifact is gone.",
)
async def follow_share(request: AnyRequest, token: ShareToken) -> Redirect:
    """Follow a share link."""
    services = services_of(request.app.state)
    _, signed = await services.shares.follow(token)
    return Redirect(
        anchor(signed.url, base_url_of(request, services)),
        status_code=302,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
        media_type="text/plain",
    )
