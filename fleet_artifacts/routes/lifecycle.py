"""Changing artifacts after upload: PATCH retention and tags, archive, restore, undelete; a job's retention.

Every route has a job-scoped form (a point read) and an id-only twin (a cross-partition
lookup on Cosmos), as fetch and delete do.
"""

from __future__ import annotations

from litestar import Response, get, patch, post, put
from litestar.params import JSONBody

from fleet_artifacts.core.access import Scope
from fleet_artifacts.core.models import (
    ArchiveRequest,
    ArtifactOut,
    ArtifactPatch,
    BlobTier,
    JobRetention,
    JobRetentionOut,
    RestoreRequest,
)
from fleet_artifacts.routes.deps import (
    AnyRequest,
    ArtifactId,
    IfMatch,
    JobId,
    aid,
    context,
    if_match_tags,
    job,
    needs,
    served,
)
from fleet_artifacts.routes.openapi import problems
from fleet_artifacts.routes.openapi_links import LinkedOperation
from fleet_artifacts.routes.strict_json import StrictJSON

IN_JOB = "/jobs/{job_id:str}/artifacts/{artifact_id:str}"
BY_ID = "/artifacts/{artifact_id:str}"
PATCH_DESCRIPTION = (
    "Change retention (one of `expiresAt`, `retentionDays` from createdAt, `keepForever`) and/or replace "
    "`tags`. With `If-Match` (the pointer's ETag) only that version changes (else 412). A past "
    "`expiresAt` expires the artifact at once."
)
ARCHIVE_DESCRIPTION = (
    "Move the blob to a colder access tier (`Cool`, `Cold`, or `Archive`, the default; body optional). "
    "Archived, the artifact is still listed and fetchable but has no `downloadUrl`; its content answers "
    "409 until restored."
)
RESTORE_DESCRIPTION = (
    "Rehydrate an archived artifact to Hot (body optional; `priority` High is faster and dearer on "
    "Azure). Answers 202 while RESTORING (hours on Azure), 200 once ACTIVE; fetching it checks again."
)


def _tier(request: ArchiveRequest | None) -> BlobTier:
    return BlobTier((request or ArchiveRequest()).tier)


def _high(request: RestoreRequest | None) -> bool:
    return (request or RestoreRequest()).priority == "High"


@patch(
    IN_JOB,
    dto=StrictJSON[ArtifactPatch],
    return_dto=None,
    operation_id="updateJobArtifact",
    operation_class=LinkedOperation,
    **needs(Scope.ADMIN),
    responses=problems(400, 401, 403, 404, 412, 503),
    description=PATCH_DESCRIPTION,
)
async def update_in_job(
    request: AnyRequest,
    job_id: JobId,
    artifact_id: ArtifactId,
    data: JSONBody[ArtifactPatch],
    if_match: IfMatch = None,
) -> Response[ArtifactOut]:
    """Change an artifact's retention or tags."""
    ctx = context(request)
    out = await ctx.services.lifecycle.update(
        ctx.product, aid(artifact_id), job(job_id), data, if_match=if_match_tags(if_match)
    )
    return served(out, ctx.base_url)


@patch(
    BY_ID,
    dto=StrictJSON[ArtifactPatch],
    return_dto=None,
    operation_id="updateArtifact",
    operation_class=LinkedOperation,
    **needs(Scope.ADMIN),
    responses=problems(400, 401, 403, 404, 412, 503),
    description=PATCH_DESCRIPTION,
)
async def update_by_id(
    request: AnyRequest,
    artifact_id: ArtifactId,
    data: JSONBody[ArtifactPatch],
    if_match: IfMatch = None,
) -> Response[ArtifactOut]:
    """Change an artifact's retention or tags, found by id alone."""
    ctx = context(request)
    out = await ctx.services.lifecycle.update(
        ctx.product, aid(artifact_id), None, data, if_match=if_match_tags(if_match)
    )
    return served(out, ctx.base_url)


@post(
    IN_JOB + "/archive",
    dto=StrictJSON[ArchiveRequest],
    return_dto=None,
    status_code=200,
    operation_id="archiveJobArtifact",
    operation_class=LinkedOperation,
    **needs(Scope.ADMIN),
    responses=problems(400, 401, 403, 404, 409, 503),
    description=ARCHIVE_DESCRIPTION,
)
async def archive_in_job(
    request: AnyRequest,
    job_id: JobId,
    artifact_id: ArtifactId,
    data: JSONBody[ArchiveRequest | None] = None,
) -> Response[ArtifactOut]:
    """Move an artifact to a colder tier."""
    ctx = context(request)
    out = await ctx.services.lifecycle.archive(ctx.product, aid(artifact_id), job(job_id), _tier(data))
    return served(out, ctx.base_url)


@post(
    BY_ID + "/archive",
    dto=StrictJSON[ArchiveRequest],
    return_dto=None,
    status_code=200,
    operation_id="archiveArtifact",
    operation_class=LinkedOperation,
    **needs(Scope.ADMIN),
    responses=problems(400, 401, 403, 404, 409, 503),
    description=ARCHIVE_DESCRIPTION,
)
async def archive_by_id(
    request: AnyRequest,
    artifact_id: ArtifactId,
    data: JSONBody[ArchiveRequest | None] = None,
) -> Response[ArtifactOut]:
    """Move an artifact found by id alone to a colder tier."""
    ctx = context(request)
    out = await ctx.services.lifecycle.archive(ctx.product, aid(artifact_id), None, _tier(data))
    return served(out, ctx.base_url)


def _restored(out: ArtifactOut, base_url: str) -> Response[ArtifactOut]:
    return served(out, base_url, status_code=200 if out.download_url is not None else 202)


@post(
    IN_JOB + "/restore",
    dto=StrictJSON[RestoreRequest],
    return_dto=None,
    status_code=200,
    operation_id="restoreJobArtifact",
    operation_class=LinkedOperation,
    **needs(Scope.ADMIN),
    responses=problems(400, 401, 403, 404, 409, 503),
    description=RESTORE_DESCRIPTION,
)
async def restore_in_job(
    request: AnyRequest,
    job_id: JobId,
    artifact_id: ArtifactId,
    data: JSONBody[RestoreRequest | None] = None,
) -> Response[ArtifactOut]:
    """Restore an archived artifact."""
    ctx = context(request)
    high = _high(data)
    out = await ctx.services.lifecycle.restore(ctx.product, aid(artifact_id), job(job_id), high_priority=high)
    return _restored(out, ctx.base_url)


@post(
    BY_ID + "/restore",
    dto=StrictJSON[RestoreRequest],
    return_dto=None,
    status_code=200,
    operation_id="restoreArtifact",
    operation_class=LinkedOperation,
    **needs(Scope.ADMIN),
    responses=problems(400, 401, 403, 404, 409, 503),
    description=RESTORE_DESCRIPTION,
)
async def restore_by_id(
    request: AnyRequest,
    artifact_id: ArtifactId,
    data: JSONBody[RestoreRequest | None] = None,
) -> Response[ArtifactOut]:
    """Restore an archived artifact found by id alone."""
    ctx = context(request)
    high = _high(data)
    out = await ctx.services.lifecycle.restore(ctx.product, aid(artifact_id), None, high_priority=high)
    return _restored(out, ctx.base_url)


UNDELETE = "Bring back an artifact deleted within the soft-delete window (FLEET_ARTIFACTS_SOFT_DELETE_DAYS)."


@post(
    IN_JOB + "/undelete",
    status_code=200,
    operation_id="undeleteJobArtifact",
    operation_class=LinkedOperation,
    **needs(Scope.DELETE),
    responses=problems(400, 401, 403, 404, 409, 412, 503),
    description=UNDELETE,
)
async def undelete_in_job(
    request: AnyRequest, job_id: JobId, artifact_id: ArtifactId
) -> Response[ArtifactOut]:
    """Undelete an artifact."""
    ctx = context(request)
    return served(
        await ctx.services.lifecycle.undelete(ctx.product, aid(artifact_id), job(job_id)), ctx.base_url
    )


@post(
    BY_ID + "/undelete",
    status_code=200,
    operation_id="undeleteArtifact",
    operation_class=LinkedOperation,
    **needs(Scope.DELETE),
    responses=problems(400, 401, 403, 404, 409, 412, 503),
    description=UNDELETE,
)
async def undelete_by_id(request: AnyRequest, artifact_id: ArtifactId) -> Response[ArtifactOut]:
    """Undelete an artifact found by id alone."""
    ctx = context(request)
    return served(await ctx.services.lifecycle.undelete(ctx.product, aid(artifact_id), None), ctx.base_url)


@get(
    "/jobs/{job_id:str}/retention",
    operation_id="getJobRetention",
    operation_class=LinkedOperation,
    **needs(Scope.READ),
    responses=problems(400, 401, 403, 503),
)
async def get_job_retention(request: AnyRequest, job_id: JobId) -> JobRetentionOut:
    """A job's retention for its later uploads (the service default if none was set)."""
    ctx = context(request)
    return await ctx.services.artifacts.retention.job(ctx.product, job(job_id))


@put(
    "/jobs/{job_id:str}/retention",
    dto=StrictJSON[JobRetention],
    return_dto=None,
    operation_id="setJobRetention",
    operation_class=LinkedOperation,
    **needs(Scope.ADMIN),
    responses=problems(400, 401, 403, 412, 503),
    description="Set the job's retention (`retentionDays` or `keepForever: true`) for its later uploads; "
    "with `applyToExisting`, re-date its artifacts too (repeat to finish an interrupted run).",
)
async def set_job_retention(
    request: AnyRequest, job_id: JobId, data: JSONBody[JobRetention]
) -> JobRetentionOut:
    """Set a job's retention."""
    ctx = context(request)
    return await ctx.services.artifacts.retention.set_job(ctx.product, job(job_id), data)
