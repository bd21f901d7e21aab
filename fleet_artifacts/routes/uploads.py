"""Creating artifacts: upload through the service (three forms), or start and finalize a direct upload."""

from __future__ import annotations

from typing import Annotated

from litestar import Response, post
from litestar.params import FromQuery, JSONBody, QueryParameter

from fleet_artifacts.core.access import Scope
from fleet_artifacts.core.models import ArtifactOut, DirectUploadRequest, FinalizeRequest, UploadTicket
from fleet_artifacts.routes.deps import (
    AnyRequest,
    ArtifactId,
    IdempotencyKey,
    JobId,
    Tag,
    aid,
    anchored_ticket,
    context,
    job,
    needs,
    replayed_header,
    served,
)
from fleet_artifacts.routes.forms import (
    ENVELOPE_MEDIA_TYPE,
    MULTIPART_MEDIA_TYPE,
    QueryMeta,
    read_upload,
    refuse_unknown_query,
)
from fleet_artifacts.routes.openapi import UploadOperation, problems
from fleet_artifacts.routes.openapi_links import LinkedOperation
from fleet_artifacts.routes.strict_json import StrictJSON

UPLOAD_DESCRIPTION = f"""Upload one artifact. The form is chosen by Content-Type alone:

* `{MULTIPART_MEDIA_TYPE}`: fields `kind`, `fileName`, `runId`, `contentType`, `tags`
  (repeat, `key:value`), `retentionDays`, `keepForever` first, then the part `file` last. Streams.
* `{ENVELOPE_MEDIA_TYPE}`: JSON `{{"kind", "fileName", "content" (base64), "contentType",
  "runId", "tags": {{}}, "retentionDays", "keepForever"}}`, for small payloads.
* any other type: the body is the artifact (streams), stored with that Content-Type;
  metadata in the query string (`kind`, `fileName`, `runId`, `tag`, optional `contentType`,
  `retentionDays`, `keepForever`).

Retention: `retentionDays` (1 to MAX_RETENTION_DAYS) or `keepForever=true`; neither: the
job's retention, else DEFAULT_RETENTION_DAYS. `expiresAt` is `createdAt` plus it.
"""


@post(
    "/jobs/{job_id:str}/artifacts",
    operation_id="uploadArtifact",
    **needs(Scope.WRITE),
    responses=problems(400, 401, 403, 409, 413, 415, 503),
    operation_class=UploadOperation,
    description=UPLOAD_DESCRIPTION,
    request_max_body_size=None,  # the service enforces MAX_UPLOAD_BYTES while streaming
    status_code=201,
)
async def upload(
    request: AnyRequest,
    job_id: JobId,
    kind: FromQuery[str | None] = None,
    file_name: Annotated[str | None, QueryParameter(name="fileName")] = None,
    run_id: Annotated[str | None, QueryParameter(name="runId")] = None,
    content_type: Annotated[str | None, QueryParameter(name="contentType")] = None,
    tag: Tag = None,
    retention_days: Annotated[str | None, QueryParameter(name="retentionDays")] = None,
    keep_forever: Annotated[str | None, QueryParameter(name="keepForever")] = None,
    idempotency_key: IdempotencyKey = None,
) -> Response[ArtifactOut]:
    """Upload an artifact (multipart, raw body or JSON envelope)."""
    ctx = context(request)
    job_id = job(job_id)
    refuse_unknown_query(request.query_params.keys())
    limits = ctx.services.kernel.limits
    meta, chunks = await read_upload(
        request.stream(),
        request.headers,
        QueryMeta(
            kind=kind,
            file_name=file_name,
            run_id=run_id,
            content_type=content_type,
            tag=tag,
            retention_days=retention_days,
            keep_forever=keep_forever,
        ),
        max_envelope_bytes=limits.max_envelope_bytes,
        check_size=ctx.services.kernel.check_size,
    )
    out, replayed = await ctx.services.artifacts.upload(
        ctx.product, job_id, meta, chunks, key=idempotency_key
    )
    headers = {"Location": f"/fleet/jobs/{job_id}/artifacts/{out.id}", **replayed_header(replayed)}
    return served(out, ctx.base_url, status_code=201, headers=headers)


@post(
    "/jobs/{job_id:str}/artifacts/uploads",
    dto=StrictJSON[DirectUploadRequest],
    return_dto=None,
    operation_id="startDirectUpload",
    operation_class=LinkedOperation,
    **needs(Scope.WRITE),
    responses=problems(400, 401, 403, 409, 413, 503),
    status_code=201,
    description="Start a direct-to-blob upload: answers an UPLOADING pointer with `uploadUrl`, a "
    "create+write URL for exactly its blob (an Azure SAS, or the local backend's signed PUT route). "
    "Write the bytes there (e.g. `BlobClient.from_blob_url(uploadUrl).upload_blob(...)`), then "
    "call `finalize`.",
)
async def start_direct_upload(
    request: AnyRequest,
    job_id: JobId,
    data: JSONBody[DirectUploadRequest],
    idempotency_key: IdempotencyKey = None,
) -> Response[UploadTicket]:
    """Start a direct-to-blob upload."""
    ctx = context(request)
    ticket, replayed = await ctx.services.direct.start(
        ctx.product, job_id, data, data.size_bytes, key=idempotency_key
    )
    return Response(anchored_ticket(ticket, ctx.base_url), status_code=201, headers=replayed_header(replayed))


@post(
    "/jobs/{job_id:str}/artifacts/{artifact_id:str}/finalize",
    dto=StrictJSON[FinalizeRequest],
    return_dto=None,
    operation_id="finalizeDirectUpload",
    operation_class=LinkedOperation,
    **needs(Scope.WRITE),
    responses=problems(400, 401, 403, 404, 409, 413, 422, 503),
    status_code=200,
    description="Check the committed blob against the client's `sizeBytes` and `sha256` (hashing it "
    "when `verify` is true or it is at most VERIFY_MAX_BYTES), then make the artifact ACTIVE. A "
    "mismatch answers 422 and discards the upload.",
)
async def finalize(
    request: AnyRequest,
    job_id: JobId,
    artifact_id: ArtifactId,
    data: JSONBody[FinalizeRequest],
) -> Response[ArtifactOut]:
    """Finalize a direct-to-blob upload."""
    ctx = context(request)
    out = await ctx.services.direct.finalize(ctx.product, job(job_id), aid(artifact_id), data)
    return served(out, ctx.base_url)
