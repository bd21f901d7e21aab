"""Reading and deleting artifacts: list a job's, fetch one with a fresh download URL, delete."""

from __future__ import annotations

from typing import Annotated, Literal

from litestar import Response, delete, get
from litestar.params import FromQuery, QueryParameter

from fleet_artifacts.core.access import Scope
from fleet_artifacts.core.models import (
    VISIBLE,
    ArtifactKind,
    ArtifactOut,
    ArtifactPage,
    ArtifactStatus,
    JobDeleted,
)
from fleet_artifacts.core.ports import ListQuery
from fleet_artifacts.core.validation import check_id, parse_tags
from fleet_artifacts.routes.deps import (
    AnyRequest,
    ArtifactId,
    ExpiresIn,
    JobId,
    Tag,
    aid,
    anchored_page,
    context,
    job,
    needs,
    seconds,
    served,
)
from fleet_artifacts.routes.openapi import problems
from fleet_artifacts.routes.openapi_links import LinkedOperation

Disposition = Literal["attachment", "inline"]
DispositionParam = Annotated[
    Disposition,
    QueryParameter(description="Content-Disposition of the download: attachment saves, inline views."),
]
Listed = Literal["ACTIVE", "ARCHIVED", "RESTORING", "DELETED", "UPLOADING"]
Purge = Annotated[
    bool,
    QueryParameter(description="Remove at once, even within the soft-delete window (and a DELETED one)."),
]


@get(
    "/jobs/{job_id:str}/artifacts",
    operation_id="listArtifacts",
    operation_class=LinkedOperation,
    **needs(Scope.READ),
    responses=problems(400, 401, 403, 503),
)
async def list_artifacts(
    request: AnyRequest,
    job_id: JobId,
    kind: FromQuery[ArtifactKind | None] = None,
    run_id: Annotated[str | None, QueryParameter(name="runId")] = None,
    tag: Tag = None,
    status: Annotated[
        Listed | None,
        QueryParameter(description="Only artifacts in this state (default: ACTIVE, ARCHIVED and RESTORING)."),
    ] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    continuation_token: Annotated[str | None, QueryParameter(name="continuationToken")] = None,
    expires_in: ExpiresIn = None,
) -> ArtifactPage:
    """List a job's artifacts, newest first; pass continuationToken for the next page."""
    ctx = context(request)
    query = list_query(ctx.product, job_id, kind, run_id, tag, status, limit, continuation_token)
    return anchored_page(
        await ctx.services.artifacts.list(query, expires_in=seconds(expires_in)), ctx.base_url
    )


def list_query(
    product: str,
    job_id: str,
    kind: ArtifactKind | None,
    run_id: str | None,
    tag: list[str] | None,
    status: str | None,
    limit: int,
    continuation: str | None,
) -> ListQuery:
    """The query of a list request (here and on the hot path), its ids and tags checked in this order."""
    return ListQuery(
        job_id=job(job_id),
        product_id=product,
        kind=kind,
        run_id=None if run_id is None else check_id(run_id, "runId"),
        tags=parse_tags(tag or []),
        statuses=tuple(VISIBLE) if status is None else (ArtifactStatus(status),),
        limit=limit,
        continuation=continuation,
    )


@get(
    "/jobs/{job_id:str}/artifacts/{artifact_id:str}",
    operation_id="getJobArtifact",
    operation_class=LinkedOperation,
    **needs(Scope.READ),
    responses=problems(400, 401, 403, 404, 503),
)
async def get_in_job(
    request: AnyRequest,
    job_id: JobId,
    artifact_id: ArtifactId,
    disposition: DispositionParam = "attachment",
    expires_in: ExpiresIn = None,
) -> Response[ArtifactOut]:
    """Fetch a pointer with a fresh download URL (a point read)."""
    ctx = context(request)
    out = await ctx.services.artifacts.get(
        ctx.product, aid(artifact_id), job(job_id), disposition=disposition, expires_in=seconds(expires_in)
    )
    return served(out, ctx.base_url)


@get(
    "/artifacts/{artifact_id:str}",
    operation_id="getArtifact",
    operation_class=LinkedOperation,
    **needs(Scope.READ),
    responses=problems(400, 401, 403, 404, 503),
)
async def get_by_id(
    request: AnyRequest,
    artifact_id: ArtifactId,
    disposition: DispositionParam = "attachment",
    expires_in: ExpiresIn = None,
) -> Response[ArtifactOut]:
    """Fetch a pointer by id alone (a cross-partition lookup on Cosmos)."""
    ctx = context(request)
    out = await ctx.services.artifacts.get(
        ctx.product, aid(artifact_id), disposition=disposition, expires_in=seconds(expires_in)
    )
    return served(out, ctx.base_url)


@delete(
    "/jobs/{job_id:str}/artifacts/{artifact_id:str}",
    operation_id="deleteJobArtifact",
    operation_class=LinkedOperation,
    **needs(Scope.DELETE),
    responses=problems(400, 401, 403, 404, 412, 503),
)
async def delete_in_job(
    request: AnyRequest, job_id: JobId, artifact_id: ArtifactId, purge: Purge = False
) -> None:
    """Delete an artifact: pointer and blob, or DELETED within the soft-delete window."""
    ctx = context(request)
    await ctx.services.artifacts.delete(ctx.product, aid(artifact_id), job_id=job(job_id), purge=purge)


@delete(
    "/artifacts/{artifact_id:str}",
    operation_id="deleteArtifact",
    operation_class=LinkedOperation,
    **needs(Scope.DELETE),
    responses=problems(400, 401, 403, 404, 412, 503),
)
async def delete_by_id(request: AnyRequest, artifact_id: ArtifactId, purge: Purge = False) -> None:
    """Delete an artifact found by id alone: pointer and blob, or DELETED within the soft-delete window."""
    ctx = context(request)
    await ctx.services.artifacts.delete(ctx.product, aid(artifact_id), purge=purge)


@delete(
    "/jobs/{job_id:str}/artifacts",
    operation_id="deleteJobArtifacts",
    **needs(Scope.DELETE),
    status_code=200,
    responses=problems(400, 401, 403, 503),
    description="Delete every artifact of the job (yours), narrowed by `kind` and `runId`; uploads in "
    "progress go too. Within the soft-delete window (without `purge`) they become DELETED instead. "
    "Answers how many; repeat it to finish an interrupted run.",
)
async def delete_job(
    request: AnyRequest,
    job_id: JobId,
    kind: FromQuery[ArtifactKind | None] = None,
    run_id: Annotated[str | None, QueryParameter(name="runId")] = None,
    purge: Purge = False,
) -> JobDeleted:
    """Delete a job's artifacts."""
    ctx = context(request)
    checked_run = None if run_id is None else check_id(run_id, "runId")
    return JobDeleted(
        await ctx.services.artifacts.delete_job(
            ctx.product, job(job_id), kind=kind, run_id=checked_run, purge=purge
        )
    )
